//! `openat(2)`: open a name inside a directory that is already open (and
//! was checked through that same fd), so no rename or symlink swap of the
//! directory between the check and the open can redirect a write (issue 13).
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;

/// `openat(dir, name, flags, mode)` as a `File`.
pub fn openat(dir: &File, name: &OsStr, flags: i32, mode: u32) -> io::Result<File> {
    let c = CString::new(name.as_bytes()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "file name contains a NUL byte")
    })?;
    // SAFETY: `dir` is an open fd borrowed for the call; `c` is a
    // NUL-terminated string that outlives the call; `mode` is passed as the
    // c_uint openat's variadic argument expects.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat, is open, and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}
