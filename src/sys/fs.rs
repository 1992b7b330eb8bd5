//! Opening one entry of an open directory without ever following a symlink
//! or blocking on a FIFO (openat(2)), for readers of folders that a hostile
//! user may control (`advise --model`).
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// What the entry must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Open `name` — one path component, no '/' — in `dir` for reading:
/// `O_NOFOLLOW` (a symlink is `ELOOP`, never followed), `O_NONBLOCK` (a FIFO
/// with no writer opens at once instead of waiting), close-on-exec, and
/// `O_DIRECTORY` for `Kind::Dir`. The caller still checks the type with
/// fstat: this only guarantees the open itself neither follows nor waits.
pub fn open_at(dir: &impl AsFd, name: &OsStr, kind: Kind) -> io::Result<OwnedFd> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let c = CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if kind == Kind::Dir {
        flags |= libc::O_DIRECTORY;
    }
    // SAFETY: `c` is NUL-terminated and outlives the call; the directory fd
    // is borrowed, so it stays open for the call; openat keeps no pointer.
    let fd = unsafe { libc::openat(dir.as_fd().as_raw_fd(), c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat: open, and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
