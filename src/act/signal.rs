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
pub fn last_checks_then_send(
    order: &SignalOrder,
    probe: &mut dyn Probe,
    signaller: &mut dyn Signaller,
) -> Outcome {
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
    deliver(order, signaller, &mut |pid| probe.start_time(pid))
}

/// How a signal reaches its process once the last checks have passed: the
/// kernel's way (`Kernel`), or replay's (`Replay`), which sends nothing.
/// `deliver` holds the identity rule; a signaller only pins and sends.
pub trait Signaller: Send {
    /// Pin `pid` for the identity check and the signal that follows (Linux:
    /// a pidfd, so a reused pid cannot be hit). `ESRCH`: it is gone.
    fn pin(&mut self, pid: Pid) -> std::io::Result<()>;
    /// Send `sig` to the process pinned last: `Done`, or `DryRun` from a
    /// signaller that performs nothing.
    fn send(&mut self, sig: Sig) -> std::io::Result<Outcome>;
    /// The same kind of signaller, for a pending SIGTERM's own thread.
    fn twin(&self) -> Box<dyn Signaller>;
}

/// Real signals: a pidfd (or the bare pid where there is none) and
/// pidfd_send_signal / kill.
#[derive(Default)]
pub struct Kernel {
    pinned: Option<ProcessHandle>,
}

impl Signaller for Kernel {
    fn pin(&mut self, pid: Pid) -> std::io::Result<()> {
        self.pinned = Some(ProcessHandle::open(pid.0)?);
        Ok(())
    }

    fn send(&mut self, sig: Sig) -> std::io::Result<Outcome> {
        let handle = self
            .pinned
            .take()
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
        handle.signal(signo(sig))?;
        Ok(Outcome::Done)
    }

    fn twin(&self) -> Box<dyn Signaller> {
        Box::new(Kernel::default())
    }
}

/// Replay's signaller: every process is there to pin (whether it is the
/// same one is the probe's start time, from the snapshot), and nothing is sent.
pub struct Replay;

impl Signaller for Replay {
    fn pin(&mut self, _pid: Pid) -> std::io::Result<()> {
        Ok(())
    }

    fn send(&mut self, _sig: Sig) -> std::io::Result<Outcome> {
        Ok(Outcome::DryRun)
    }

    fn twin(&self) -> Box<dyn Signaller> {
        Box::new(Replay)
    }
}

fn signo(s: Sig) -> i32 {
    match s {
        Sig::Term => libc::SIGTERM,
        Sig::Kill => libc::SIGKILL,
    }
}

/// Confirm identity and send. `start_time_of` reads the pid's start time
/// now (None if gone); it is called after the process is pinned, so on
/// Linux the pidfd already holds the process that was checked.
pub fn deliver(
    order: &SignalOrder,
    signaller: &mut dyn Signaller,
    start_time_of: &mut dyn FnMut(Pid) -> Option<u64>,
) -> Outcome {
    let pid = order.process.pid;
    match signaller.pin(pid) {
        Ok(()) => {}
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
    match signaller.send(order.signal) {
        Ok(outcome) => outcome,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            Outcome::Skipped(format!("pid {pid} exited before the signal"))
        }
        Err(e) => Outcome::Failed(format!("signal to pid {pid} failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bytes, MlxProcess};

    fn order(pid: i32, start_time: u64) -> SignalOrder {
        SignalOrder {
            signal: Sig::Term,
            process: MlxProcess::test_job(pid, start_time),
            available_bytes: Bytes::gib(1),
            red_line_bytes: Bytes::gib(2),
            reason: "test".into(),
        }
    }

    /// Replay runs the daemon's identity rule, only with nothing sent: a
    /// reused pid and a gone one are skipped as they would be live (issue 15:
    /// replay had its own copy of the check).
    #[test]
    fn the_replay_signaller_goes_through_the_same_identity_check() {
        let o = order(4242, 100);
        let reused = deliver(&o, &mut Replay, &mut |_| Some(101));
        assert!(
            matches!(&reused, Outcome::Skipped(w) if w.contains("another process")),
            "{reused:?}"
        );
        let gone = deliver(&o, &mut Replay, &mut |_| None);
        assert!(
            matches!(&gone, Outcome::Skipped(w) if w.contains("already exited")),
            "{gone:?}"
        );
        assert_eq!(
            deliver(&o, &mut Replay, &mut |_| Some(100)),
            Outcome::DryRun
        );
    }
}
