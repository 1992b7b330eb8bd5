//! Signalling a process so that a reused pid can never be hit: on Linux a
//! pidfd pins the process before its identity is checked; on macOS 14.4+ an
//! audit token (pid + pid version, `sys::macos_signal`); elsewhere kill(2).
#![allow(unsafe_code)]

use std::io;

/// A handle on one process, taken before its identity is confirmed.
pub struct ProcessHandle {
    pid: i32,
    #[cfg(target_os = "linux")]
    pidfd: Option<std::os::fd::OwnedFd>,
    #[cfg(target_os = "macos")]
    token: Option<[u32; 8]>,
}

/// Whether signals on this system go through a handle that pins the process
/// (pidfd on Linux 5.3+, audit token on macOS 14.4+). Handles fall back to
/// the bare pid only when the system lacks the call, so this is what every
/// `ProcessHandle::pinned` says here (the `pinned` log field).
pub fn pins_signals() -> bool {
    #[cfg(target_os = "linux")]
    {
        static PIDFD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *PIDFD.get_or_init(|| {
            // SAFETY: pidfd_open on our own pid, flags 0; no memory passed.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
            if fd < 0 {
                return io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS);
            }
            // SAFETY: `fd` was just returned by pidfd_open and nothing else owns it.
            unsafe { libc::close(fd as i32) };
            true
        })
    }
    #[cfg(target_os = "macos")]
    {
        super::macos_signal::available()
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        false
    }
}

impl ProcessHandle {
    /// Open a handle on `pid`. On Linux this is a pidfd (Linux 5.3+): once
    /// open it refers to that process even if the pid is later reused, so the
    /// caller checks the start time *after* opening and signals through the
    /// fd. Where pidfd_open is unavailable (ENOSYS) the handle falls back to
    /// the bare pid. A pid that does not exist is `ESRCH`.
    pub fn open(pid: i32) -> io::Result<ProcessHandle> {
        if pid <= 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to signal pid {pid}"),
            ));
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: pidfd_open takes a pid and flags (0) by value and
            // returns a new fd or -1 with errno; no memory is passed.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if fd >= 0 {
                use std::os::fd::FromRawFd;
                // SAFETY: `fd` was just returned by pidfd_open, is open, and
                // nothing else owns it.
                let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
                return Ok(ProcessHandle {
                    pid,
                    pidfd: Some(owned),
                });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(e);
            }
            Ok(ProcessHandle { pid, pidfd: None })
        }
        #[cfg(target_os = "macos")]
        {
            // The token is read now, before the caller checks the start
            // time: if the pid is reused after that check, the token's pid
            // version no longer matches and the kernel answers ESRCH.
            let token = if super::macos_signal::available() {
                Some(super::macos_signal::token(pid)?)
            } else {
                None
            };
            Ok(ProcessHandle { pid, token })
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        {
            Ok(ProcessHandle { pid })
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the handle pins the process (pidfd) rather than a bare pid.
    pub fn pinned(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.pidfd.is_some()
        }
        #[cfg(target_os = "macos")]
        {
            self.token.is_some()
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        {
            false
        }
    }

    /// Send `sig` (libc::SIGTERM / SIGKILL) to the process.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.pidfd {
            use std::os::fd::AsRawFd;
            // SAFETY: the fd is a live pidfd we own; siginfo is NULL (the
            // kernel then fills it as for kill(2)); flags 0.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            return if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            };
        }
        #[cfg(target_os = "macos")]
        if let Some(t) = &self.token {
            return super::macos_signal::signal(t, sig);
        }
        // SAFETY: kill(2) takes plain integers; pid > 1 was checked in open().
        let rc = unsafe { libc::kill(self.pid, sig) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}
