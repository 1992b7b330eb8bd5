//! Sending SIGTERM / SIGKILL to a victim, with the last checks right before
//! the signal: memory re-read (stand down if it recovered) and the pid's
//! identity confirmed through a handle that pins the process.

use crate::action::{stand_down, Outcome, Sig, SignalOrder};
use crate::model::Pid;
use crate::sample::Probe;
use crate::sys::unix::ProcessHandle;

/// The last checks right before a signal, then the signal: memory re-read
/// (stand down if it recovered; a failed read acts on the decision already
/// made), then the pid's identity through a pinned handle. The one sequence
/// both the loop and a pending SIGTERM's job use.
pub fn last_checks_then_send(order: &SignalOrder, probe: &mut dyn Probe) -> Outcome {
    match probe.fresh() {
        Ok(f) => {
            if let Some(why) = stand_down(order, &f) {
                return Outcome::Skipped(why);
            }
        }
        Err(e) => {
            tracing::warn!(event = "error", error = %format!("fresh memory reading failed: {e}"))
        }
    }
    deliver(order, &mut |pid| probe.start_time(pid))
}

fn signo(s: Sig) -> i32 {
    match s {
        Sig::Term => libc::SIGTERM,
        Sig::Kill => libc::SIGKILL,
    }
}

/// Confirm identity and send. `start_time_of` reads the pid's start time
/// now (None if gone); it is called after the handle is open, so on Linux
/// the pidfd already pins the process that was checked.
pub fn deliver(order: &SignalOrder, start_time_of: &mut dyn FnMut(Pid) -> Option<u64>) -> Outcome {
    let pid = order.process.pid;
    let handle = match ProcessHandle::open(pid.0) {
        Ok(h) => h,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            return Outcome::Skipped(format!("pid {pid} has already exited"))
        }
        Err(e) => return Outcome::Failed(format!("cannot open pid {pid}: {e}")),
    };
    match start_time_of(pid) {
        Some(t) if t == order.process.start_time => {}
        Some(t) => {
            return Outcome::Skipped(format!(
                "pid {pid} now belongs to another process (start time {t}, victim's {})",
                order.process.start_time
            ))
        }
        None => return Outcome::Skipped(format!("pid {pid} has already exited")),
    }
    match handle.signal(signo(order.signal)) {
        Ok(()) => Outcome::Done,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            Outcome::Skipped(format!("pid {pid} exited before the signal"))
        }
        Err(e) => Outcome::Failed(format!("signal to pid {pid} failed: {e}")),
    }
}
