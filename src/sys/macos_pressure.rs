//! The kernel's memory-pressure event on macOS, headroom's early wake-up
//! (the twin of Linux's PSI trigger): a kqueue with an EVFILT_MEMORYSTATUS
//! filter for the warning and critical transitions — the event libdispatch's
//! DISPATCH_SOURCE_TYPE_MEMORYPRESSURE is built on. Any process may register
//! it (xnu bsd/kern/kern_memorystatus_notify.c `memorystatus_knote_register`
//! checks only the flags); the values are from bsd/sys/event_private.h.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

const EVFILT_MEMORYSTATUS: i16 = -14;
const NOTE_MEMORYSTATUS_PRESSURE_WARN: u32 = 0x2;
const NOTE_MEMORYSTATUS_PRESSURE_CRITICAL: u32 = 0x4;

/// What the `psi_trigger` log event names as the armed spec on macOS.
pub const SPEC: &str = "EVFILT_MEMORYSTATUS pressure warn|critical";

fn event(flags: u16) -> libc::kevent {
    libc::kevent {
        ident: 0,
        filter: EVFILT_MEMORYSTATUS,
        flags,
        fflags: NOTE_MEMORYSTATUS_PRESSURE_WARN | NOTE_MEMORYSTATUS_PRESSURE_CRITICAL,
        data: 0,
        udata: ptr::null_mut(),
    }
}

/// A kqueue with the pressure filter registered; the registration's own
/// answer is checked (EV_RECEIPT), so an unsupported filter is an error here
/// rather than a queue that never fires.
pub fn pressure_queue() -> io::Result<OwnedFd> {
    // SAFETY: kqueue takes no arguments and returns a new fd or -1.
    let fd = unsafe { libc::kqueue() };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by kqueue and nothing else owns it.
    let kq = unsafe { OwnedFd::from_raw_fd(fd) };
    let change = event(libc::EV_ADD | libc::EV_CLEAR | libc::EV_RECEIPT);
    let mut receipt = event(0);
    // SAFETY: one readable change and one writable result slot, both live
    // for the call; a null timeout is allowed with EV_RECEIPT (no waiting).
    let n = unsafe { libc::kevent(kq.as_raw_fd(), &change, 1, &mut receipt, 1, ptr::null()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 1 && receipt.flags & libc::EV_ERROR != 0 && receipt.data != 0 {
        return Err(io::Error::from_raw_os_error(receipt.data as i32));
    }
    Ok(kq)
}

/// Block until the pressure level moves to warning or critical. Ok(true):
/// it fired; Err: the queue is broken (the waiter stops).
pub fn wait(kq: &OwnedFd) -> io::Result<bool> {
    let mut out = event(0);
    // SAFETY: no changes, one writable result slot; a null timeout blocks.
    let n = unsafe { libc::kevent(kq.as_raw_fd(), ptr::null(), 0, &mut out, 1, ptr::null()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    if out.flags & libc::EV_ERROR != 0 {
        return Err(io::Error::from_raw_os_error(out.data as i32));
    }
    Ok(n == 1)
}

/// These run only on a Mac (Linux CI type-checks them for the macOS target).
#[cfg(test)]
mod tests {
    #[test]
    fn an_unprivileged_process_can_register_the_pressure_filter() {
        super::pressure_queue().expect("EVFILT_MEMORYSTATUS registers");
    }
}
