//! A PSI trigger on /proc/pressure/memory: the kernel wakes the daemon as
//! soon as tasks stall on memory for longer than a threshold within a
//! window, instead of the daemon finding out at its next sample. On macOS
//! the same wake-up comes from the kernel's memory-pressure event (warning
//! or critical, `sys::macos_pressure`), armed by the same `poll.psi_trigger`
//! key ([`PsiTrigger::arm_native`]).
//!
//! Kernel rules (Documentation/accounting/psi.rst, kernel/sched/psi.c):
//! - the trigger is `"<some|full> <stall µs> <window µs>"`, NUL-terminated
//!   (psi_write overwrites the last byte written with NUL);
//! - the window must be 500 ms … 10 s;
//! - before 6.5 creating a trigger needs CAP_SYS_RESOURCE (EPERM otherwise,
//!   or EACCES when the file is 0444); from 6.5 an unprivileged user may
//!   create one only with a window that is a multiple of 2 s (EINVAL
//!   otherwise) — so a 1 s window is tried first and a 2 s one second;
//! - no PSI at all (kernel < 4.20, CONFIG_PSI off, `psi=0`, some
//!   containers) is ENOENT or EOPNOTSUPP.
//!
//! On Linux the trigger's file joins the loop's own poller (tokio's
//! `AsyncFd` with priority interest, registered in src/sys/poll.rs): no
//! thread. Elsewhere one small thread (64 KiB stack) sits in poll(2) for
//! POLLPRI and sends a wake-up on a channel of one, so wake-ups coalesce; a
//! plain thread, not `spawn_blocking`: tokio waits for blocking tasks at
//! shutdown, and this one never ends on its own. Every failure is a
//! fallback to plain polling, never an error of the daemon.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use tokio::sync::mpsc;

/// The real file.
pub const PSI_MEMORY: &str = "/proc/pressure/memory";

/// Tried in order: 150 ms of "some" stall in 1 s (privileged), then in 2 s
/// (what an unprivileged user may ask for on 6.5+).
pub const SPECS: [&str; 2] = ["some 150000 1000000", "some 150000 2000000"];

/// Open `path` read-write and write one trigger spec. The file must stay
/// open: closing it removes the trigger.
pub fn write_trigger(path: &Path, spec: &str) -> io::Result<File> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut buf = Vec::with_capacity(spec.len() + 1);
    buf.extend_from_slice(spec.as_bytes());
    buf.push(0);
    f.write_all(&buf)?;
    Ok(f)
}

/// Why a trigger could not be created, in words a log reader can act on.
pub fn explain(e: &io::Error) -> String {
    let why = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => "no PSI on this kernel (or psi=0)",
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "not permitted (kernels before 6.5 need CAP_SYS_RESOURCE for PSI triggers)"
        }
        Some(libc::EINVAL) => {
            "trigger rejected (unprivileged users need a window that is a multiple of 2s)"
        }
        Some(libc::EBUSY) => "a trigger already exists on this file descriptor",
        _ => "cannot create a PSI trigger",
    };
    format!("{why}: {e}")
}

/// An armed trigger: wake-ups arrive on [`PsiTrigger::fired`].
pub struct PsiTrigger {
    rx: mpsc::Receiver<()>,
    spec: &'static str,
    /// Linux: the trigger on the loop's poller (then `rx` never receives).
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<File>>,
}

impl PsiTrigger {
    /// Arm the first of [`SPECS`] the kernel accepts on `path`: on the
    /// loop's poller on Linux (call it inside the runtime), else with a
    /// waiter thread. The error says why none was accepted (the last
    /// attempt's reason).
    pub fn arm(path: &Path) -> Result<PsiTrigger, String> {
        let mut last = String::from("no trigger spec tried");
        for spec in SPECS {
            match write_trigger(path, spec) {
                #[cfg(target_os = "linux")]
                Ok(f) => {
                    let fd = crate::sys::poll::async_fd(f, tokio::io::Interest::PRIORITY)
                        .map_err(|e| format!("cannot poll the PSI trigger: {e}"))?;
                    let (_tx, rx) = mpsc::channel(1);
                    return Ok(PsiTrigger {
                        rx,
                        spec,
                        fd: Some(fd),
                    });
                }
                #[cfg(not(target_os = "linux"))]
                Ok(f) => {
                    let (tx, rx) = mpsc::channel(1);
                    std::thread::Builder::new()
                        .name("psi-trigger".into())
                        .stack_size(64 * 1024)
                        .spawn(move || wait_loop(&f, &tx))
                        .map_err(|e| format!("cannot start the PSI waiter thread: {e}"))?;
                    return Ok(PsiTrigger { rx, spec });
                }
                Err(e) => {
                    last = explain(&e);
                    // No PSI or no file: a longer window will not help.
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP)
                    ) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// Arm this OS's early wake-up: the PSI trigger on Linux, the kernel's
    /// memory-pressure event on macOS (issue 16: a Mac has no
    /// /proc/pressure/memory, so every start logged `armed: false`).
    pub fn arm_native() -> Result<PsiTrigger, String> {
        #[cfg(target_os = "macos")]
        {
            arm_memory_pressure()
        }
        #[cfg(not(target_os = "macos"))]
        {
            PsiTrigger::arm(Path::new(PSI_MEMORY))
        }
    }

    /// The spec the kernel accepted.
    pub fn spec(&self) -> &'static str {
        self.spec
    }

    /// Wait until the trigger fires. `false`: the waiter has stopped (the
    /// trigger reported POLLERR or poll failed); stop waiting on it.
    pub async fn fired(&mut self) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            return match fd
                .ready(tokio::io::Interest::PRIORITY | tokio::io::Interest::ERROR)
                .await
            {
                Ok(mut guard) => {
                    let ready = guard.ready();
                    guard.clear_ready();
                    // POLLERR: the trigger is gone (its cgroup was removed);
                    // the kernel then reports POLLPRI with it, so an error
                    // wins over priority.
                    !ready.is_error()
                }
                Err(_) => false,
            };
        }
        self.rx.recv().await.is_some()
    }
}

/// poll(2) for POLLPRI until the trigger breaks or the daemon is gone.
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn wait_loop(f: &File, tx: &mpsc::Sender<()>) {
    loop {
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLPRI)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return;
        }
        if revents.contains(PollFlags::POLLPRI) && !wake(tx) {
            return;
        }
    }
}

/// Send one wake-up; false once the daemon is gone.
fn wake(tx: &mpsc::Sender<()>) -> bool {
    match tx.try_send(()) {
        // Full: a wake-up is already pending; this one coalesces.
        Ok(()) | Err(mpsc::error::TrySendError::Full(())) => true,
        Err(mpsc::error::TrySendError::Closed(())) => false,
    }
}

/// The kernel's memory-pressure event on a kqueue, waited on by the same
/// kind of small thread.
#[cfg(target_os = "macos")]
fn arm_memory_pressure() -> Result<PsiTrigger, String> {
    use crate::sys::macos_pressure as mp;
    let kq = mp::pressure_queue()
        .map_err(|e| format!("cannot register the kernel's memory-pressure event: {e}"))?;
    let (tx, rx) = mpsc::channel(1);
    std::thread::Builder::new()
        .name("memory-pressure".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            match mp::wait(&kq) {
                Ok(true) if !wake(&tx) => return,
                Ok(_) => {}
                Err(_) => return,
            }
        })
        .map_err(|e| format!("cannot start the memory-pressure waiter thread: {e}"))?;
    Ok(PsiTrigger { rx, spec: mp::SPEC })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_a_fallback_with_a_reason() {
        let err = PsiTrigger::arm(Path::new("/nonexistent/pressure/memory"))
            .err()
            .expect("no trigger on a missing file");
        assert!(err.starts_with("no PSI"), "{err}");
    }

    #[test]
    fn a_regular_file_is_not_a_trigger_but_accepts_the_write() {
        // Writing to a plain file "works"; only /proc rejects bad specs. This
        // pins that the spec is NUL-terminated, as psi_write expects.
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("memory");
        std::fs::write(&p, "").expect("create");
        drop(write_trigger(&p, SPECS[0]).expect("write"));
        assert_eq!(std::fs::read(&p).expect("read"), b"some 150000 1000000\0");
    }

    #[test]
    fn explains_each_errno() {
        for (errno, starts) in [
            (libc::ENOENT, "no PSI"),
            (libc::EPERM, "not permitted"),
            (libc::EACCES, "not permitted"),
            (libc::EINVAL, "trigger rejected"),
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(explain(&e).starts_with(starts), "{errno}");
        }
    }

    /// On a kernel with PSI (this VM, and any systemd-era distro kernel),
    /// arming works; elsewhere the fallback reason is checked above.
    #[test]
    fn arms_on_the_real_file_when_psi_exists() {
        if !Path::new(PSI_MEMORY).exists() {
            return;
        }
        // Inside a runtime: the trigger joins its poller.
        let rt = crate::runtime().expect("runtime");
        let _in_runtime = rt.enter();
        match PsiTrigger::arm(Path::new(PSI_MEMORY)) {
            Ok(t) => assert!(SPECS.contains(&t.spec())),
            // Unprivileged on an old kernel: the reason must say so.
            Err(why) => assert!(why.starts_with("not permitted"), "{why}"),
        }
        // The daemon's entry point arms the same trigger here (on macOS it
        // arms the kernel's pressure event instead, a Mac-only test).
        #[cfg(target_os = "linux")]
        match PsiTrigger::arm_native() {
            Ok(t) => assert!(SPECS.contains(&t.spec())),
            Err(why) => assert!(why.starts_with("not permitted"), "{why}"),
        }
    }
}
