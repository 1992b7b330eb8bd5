//! `openat(2)`: open a name inside a directory that is already open (and
//! was checked through that same fd), so no rename or symlink swap of the
//! directory between the check and the open can redirect a write (log,
//! record) or a read (`advise --model` folders) — issue 13.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// `openat(dir, name, flags, mode)`: the one call.
fn openat_fd(dir: &impl AsFd, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "file name contains a NUL byte")
    })?;
    // SAFETY: the directory fd is borrowed, so it stays open for the call;
    // `c` is a NUL-terminated string that outlives the call; `mode` is passed
    // as the c_uint openat's variadic argument expects; openat keeps no pointer.
    let fd = unsafe {
        libc::openat(
            dir.as_fd().as_raw_fd(),
            c.as_ptr(),
            flags,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir, name, flags, mode)` as a `File`.
pub fn openat(dir: &File, name: &OsStr, flags: i32, mode: u32) -> io::Result<File> {
    openat_fd(dir, name, flags, mode).map(File::from)
}

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
    let mut flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if kind == Kind::Dir {
        flags |= libc::O_DIRECTORY;
    }
    openat_fd(dir, name, flags, 0)
}
