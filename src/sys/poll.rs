//! Files on the loop's own poller (tokio's reactor): a timerfd, a PSI
//! trigger. tokio's registration is `unsafe` because it cannot know that
//! the descriptor stays open and the same while registered; here only
//! types that own their descriptor may register.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// A type that owns its file descriptor: it is open for the value's whole
/// life and closed only when the value is dropped. Implement it only for
/// such types (`File`, a `TimerFd` wrapper), never for a borrowed or raw fd.
pub(crate) trait OwnsFd: AsRawFd {}

impl OwnsFd for std::fs::File {}

/// Register `inner` with the current runtime's poller for `interest`.
/// Must be called inside a runtime.
pub(crate) fn async_fd<T: OwnsFd>(
    inner: T,
    interest: tokio::io::Interest,
) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `T: OwnsFd` owns its descriptor, which moves into the
    // AsyncFd: it stays open and the same until the AsyncFd (deregistered
    // first when dropped) drops it.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(inner, interest) }
        .map_err(std::io::Error::from)
}
