//! The daemon's sleep between samples: one wake-up per sleep.
//!
//! tokio's timer wheel wakes a 2 s sleep twice (once at the start of the
//! 64 ms slot the deadline falls in, then again for the rest) and rounds to
//! whole milliseconds. On Linux the sleep is a timerfd on the loop's own
//! poller instead: the kernel wakes the loop once, at the deadline (with
//! the thread's 50 µs timer slack). Elsewhere, or if no timerfd can be
//! made, it is tokio's sleep.

use std::time::Duration;

/// A reusable one-shot sleep.
pub struct Sleep {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<linux::Fd>>,
}

impl Sleep {
    /// Must be called inside the runtime (the timerfd joins its poller).
    pub fn new() -> Sleep {
        Sleep {
            #[cfg(target_os = "linux")]
            fd: linux::Fd::new()
                .and_then(|f| crate::sys::poll::async_fd(f, tokio::io::Interest::READABLE))
                .ok(),
        }
    }

    /// Sleep for `d`. Cancel-safe: a sleep dropped before its end leaves
    /// nothing behind that the next one would take for its own end.
    pub async fn sleep(&mut self, d: Duration) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            if linux::sleep(fd, d).await.is_ok() {
                return;
            }
            // The timerfd failed: tokio's sleep from now on.
            self.fd = None;
            return tokio::time::sleep(d).await;
        }
        tokio::time::sleep(d).await
    }
}

impl Default for Sleep {
    fn default() -> Sleep {
        Sleep::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::time::Duration;
    use tokio::io::unix::AsyncFd;

    /// A non-blocking CLOCK_MONOTONIC timerfd (AsyncFd wants `AsRawFd`).
    pub struct Fd(TimerFd);

    impl Fd {
        pub fn new() -> io::Result<Fd> {
            TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )
            .map(Fd)
            .map_err(io::Error::from)
        }
    }

    impl AsRawFd for Fd {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    // The TimerFd owns its descriptor, closed when it drops.
    impl crate::sys::poll::OwnsFd for Fd {}

    pub async fn sleep(fd: &AsyncFd<Fd>, d: Duration) -> io::Result<()> {
        // A zero it_value disarms a timerfd: at least 1 µs.
        let d = d.max(Duration::from_micros(1));
        // Arming resets the expiry count, so an earlier sleep that was
        // cancelled after its timer fired does not end this one.
        fd.get_ref()
            .0
            .set(
                Expiration::OneShot(TimeSpec::from_duration(d)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(io::Error::from)?;
        loop {
            let mut guard = fd.readable().await?;
            // `wait` reads the expiry count; EAGAIN (stale readiness from
            // an earlier sleep) clears the readiness and waits again.
            match guard.try_io(|f| f.get_ref().0.wait().map_err(io::Error::from)) {
                Ok(r) => {
                    // Read: not readable until it fires again (the next
                    // sleep then waits without a read that finds nothing).
                    guard.clear_ready();
                    return r;
                }
                Err(_would_block) => continue,
            }
        }
    }
}
