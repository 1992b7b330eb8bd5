//! Signals that cannot hit a reused pid on macOS: `proc_signal_with_audittoken`
//! (libproc, macOS 14.4+, looked up with dlsym so older systems still run)
//! with a token naming the pid *and* its pid version, which the kernel bumps
//! at every fork and exec (xnu bsd/kern/proc_info.c `psignal_by_audit_token`
//! → `proc_find_audit_token` compares `val[5]` and `val[7]`). Where the call
//! is missing, `ProcessHandle` falls back to kill(2) after the start-time
//! check, and says so (`pinned: false`).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::sync::OnceLock;

/// `int proc_signal_with_audittoken(audit_token_t *, int sig)`: 0, or an errno.
type SignalWithToken = unsafe extern "C" fn(*mut [u32; 8], c_int) -> c_int;

/// xnu bsd/sys/proc_info_private.h; 56 bytes (the header asserts it).
#[repr(C)]
struct ProcUniqIdentifierInfo {
    p_uuid: [u8; 16],
    p_uniqueid: u64,
    p_puniqueid: u64,
    p_idversion: i32,
    p_orig_ppidversion: i32,
    p_reserve2: u64,
    p_reserve3: u64,
}
const _: () = assert!(size_of::<ProcUniqIdentifierInfo>() == 56);
const PROC_PIDUNIQIDENTIFIERINFO: c_int = 17;

fn signal_with_token() -> Option<SignalWithToken> {
    static FN: OnceLock<Option<SignalWithToken>> = OnceLock::new();
    *FN.get_or_init(|| {
        // SAFETY: RTLD_DEFAULT searches the loaded images; the name is a
        // NUL-terminated literal. A null answer means the symbol is absent.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"proc_signal_with_audittoken".as_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: libproc.h declares the symbol with exactly this signature.
        Some(unsafe { std::mem::transmute::<*mut c_void, SignalWithToken>(p) })
    })
}

/// Whether this Mac can signal by audit token (macOS 14.4 and later).
pub fn available() -> bool {
    signal_with_token().is_some()
}

/// A token pinning `pid` as it is now: ESRCH when there is no such process.
/// PROC_PIDUNIQIDENTIFIERINFO needs no privilege over the target.
pub fn token(pid: i32) -> io::Result<[u32; 8]> {
    let mut info = MaybeUninit::<ProcUniqIdentifierInfo>::zeroed();
    let size = size_of::<ProcUniqIdentifierInfo>() as c_int;
    // SAFETY: `info` is writable for `size` bytes; the kernel writes at most that.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            PROC_PIDUNIQIDENTIFIERINFO,
            0,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    if n != size {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(0) | None => io::Error::from_raw_os_error(libc::ESRCH),
            _ => e,
        });
    }
    // SAFETY: all-integer struct, zero-initialised and fully written (n == size).
    let info = unsafe { info.assume_init() };
    Ok(crate::macos_vm::audit_token_for(pid, info.p_idversion))
}

/// Send `sig` to the process the token names, if it is still that process
/// (ESRCH otherwise). `Unsupported` when the call does not exist here.
pub fn signal(token: &[u32; 8], sig: i32) -> io::Result<()> {
    let Some(f) = signal_with_token() else {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    };
    let mut t = *token;
    // SAFETY: `t` is a live audit_token_t (8 u32s) the call only reads;
    // `f` is libproc's proc_signal_with_audittoken (see signal_with_token).
    let rc = unsafe { f(&mut t, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// These run only on a Mac (Linux CI type-checks them for the macOS target).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_signalled_through_its_token_and_a_stale_token_is_refused() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        let t = token(pid).expect("token");
        assert_eq!(t[5] as i32, pid);
        if available() {
            let mut stale = t;
            stale[7] = stale[7].wrapping_add(1);
            let e = signal(&stale, libc::SIGTERM).expect_err("another pid version");
            assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
            signal(&t, libc::SIGTERM).expect("signal");
        } else {
            let _ = child.kill();
        }
        let _ = child.wait();
        assert!(token(pid).is_err(), "reaped: no token");
    }
}
