//! The one macOS file with `unsafe`: Mach host statistics, sysctl and
//! libproc calls, each returning plain Rust data. The arithmetic on that
//! data is in `crate::macos_vm`, which is tested on every OS.
#![allow(unsafe_code)]

use crate::macos_vm::{self, SwapUsage, VmCounters};
use crate::model::Bytes;
use mach2::kern_return::KERN_SUCCESS;
use std::ffi::{c_int, c_void, CStr};
use std::io;
use std::mem::{offset_of, size_of, MaybeUninit};
use std::ptr;
use std::sync::OnceLock;

extern "C" {
    /// The kernel's page size: 16384 on Apple Silicon even for a process
    /// under Rosetta, where `vm_page_size` and sysconf say 4096
    /// (mach/vm_page_size.h, macOS 10.9+; mach2 0.4 does not declare it).
    static vm_kernel_page_size: libc::vm_size_t;
    /// A send right to the host port (mach/mach_init.h). libc's copy is
    /// deprecated and mach2 0.4 lacks it.
    fn mach_host_self() -> libc::mach_port_t;
}

// ------------------------------------------------------------ layouts
//
// The `repr(C)` layouts read here, pinned at compile time for the macOS
// target: if libc (or our own mirror of sys/proc_info.h) ever disagrees
// with the SDK, the crate stops building instead of misreading memory.

/// HOST_VM_INFO64_REV1_COUNT: the vm_statistics64 fields up to
/// `total_uncompressed_pages_in_compressor`, in `integer_t`s. xnu fills
/// exactly this much for a count this size (osfmk/kern/host.c `vm_stats`);
/// newer SDKs (and libc 0.2.19x) append fields we do not read.
const HOST_VM_INFO64_REV1_COUNT: libc::mach_msg_type_number_t = 38;

const _: () = {
    type V = libc::vm_statistics64;
    assert!(size_of::<V>() >= HOST_VM_INFO64_REV1_COUNT as usize * size_of::<libc::integer_t>());
    assert!(offset_of!(V, free_count) == 0);
    assert!(offset_of!(V, active_count) == 4);
    assert!(offset_of!(V, inactive_count) == 8);
    assert!(offset_of!(V, wire_count) == 12);
    assert!(offset_of!(V, pageins) == 32);
    assert!(offset_of!(V, pageouts) == 40);
    assert!(offset_of!(V, purgeable_count) == 88);
    assert!(offset_of!(V, speculative_count) == 92);
    assert!(offset_of!(V, decompressions) == 96);
    assert!(offset_of!(V, compressions) == 104);
    assert!(offset_of!(V, swapins) == 112);
    assert!(offset_of!(V, swapouts) == 120);
    assert!(offset_of!(V, compressor_page_count) == 128);
    assert!(offset_of!(V, throttled_count) == 132);
    assert!(offset_of!(V, external_page_count) == 136);
    assert!(offset_of!(V, internal_page_count) == 140);
    assert!(offset_of!(V, total_uncompressed_pages_in_compressor) == 144);

    type R = libc::rusage_info_v4;
    assert!(size_of::<R>() == 296);
    assert!(offset_of!(R, ri_resident_size) == 64);
    assert!(offset_of!(R, ri_phys_footprint) == 72);
    assert!(offset_of!(R, ri_lifetime_max_phys_footprint) == 240);

    type B = libc::proc_bsdinfo;
    assert!(size_of::<B>() == 136);
    assert!(offset_of!(B, pbi_uid) == 20);
    assert!(offset_of!(B, pbi_comm) == 48);
    assert!(offset_of!(B, pbi_name) == 64);
    assert!(offset_of!(B, pbi_start_tvsec) == 120);
    assert!(offset_of!(B, pbi_start_tvusec) == 128);

    assert!(size_of::<libc::xsw_usage>() == 32);
    assert!(offset_of!(libc::xsw_usage, xsu_used) == 16);

    assert!(size_of::<ProcRegionInfo>() == 96);
    assert!(offset_of!(ProcRegionInfo, pri_address) == 80);
    assert!(size_of::<libc::vnode_info_path>() == 1176);
    assert!(size_of::<ProcRegionWithPathInfo>() == 1272);
    assert!(offset_of!(ProcRegionWithPathInfo, prp_vip) == 96);
};

/// `struct proc_regioninfo` (sys/proc_info.h); libc does not have it.
#[repr(C)]
#[derive(Clone, Copy)]
struct ProcRegionInfo {
    /// protection, max_protection, inheritance, flags.
    _head: [u32; 4],
    _offset: u64,
    /// behavior … depth: fourteen `uint32_t`s.
    _counts: [u32; 14],
    pri_address: u64,
    pri_size: u64,
}

/// `struct proc_regionwithpathinfo`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ProcRegionWithPathInfo {
    prp_prinfo: ProcRegionInfo,
    prp_vip: libc::vnode_info_path,
}

/// Region info restricted to regions backed by a file, one call per region
/// (sys/proc_info.h, private but stable; what lsof and proc_regionfilename use).
const PROC_PIDREGIONPATHINFO2: c_int = 22;

// ------------------------------------------------------------ system

/// `vm_kernel_page_size`.
pub fn page_size() -> u64 {
    // SAFETY: a read-only global libSystem initialises before main.
    unsafe { vm_kernel_page_size as u64 }
}

fn host_port() -> libc::mach_port_t {
    static HOST: OnceLock<libc::mach_port_t> = OnceLock::new();
    // SAFETY: no arguments; returns a send right we keep for the process lifetime.
    *HOST.get_or_init(|| unsafe { mach_host_self() })
}

/// host_statistics64(HOST_VM_INFO64). Rate-limited by the kernel for
/// non-Apple binaries (2–10 calls a second, then a cached copy).
pub fn host_vm_counters() -> io::Result<VmCounters> {
    let mut stats = MaybeUninit::<libc::vm_statistics64>::zeroed();
    let mut count = HOST_VM_INFO64_REV1_COUNT;
    // SAFETY: `stats` is zeroed and at least `count` integers long (asserted
    // above); the kernel writes at most `count` integers and sets `count` to
    // how many it wrote.
    let kr = unsafe {
        libc::host_statistics64(
            host_port(),
            libc::HOST_VM_INFO64,
            stats.as_mut_ptr().cast(),
            &mut count,
        )
    };
    if kr != KERN_SUCCESS {
        return Err(io::Error::other(format!("kern_return {kr}")));
    }
    if count < HOST_VM_INFO64_REV1_COUNT {
        return Err(io::Error::other(format!(
            "kernel filled {count} of {HOST_VM_INFO64_REV1_COUNT} vm_statistics64 fields"
        )));
    }
    // SAFETY: zero-initialised and made only of integers, so every bit
    // pattern is valid; the fields we read were filled (count checked).
    let s = unsafe { stats.assume_init() };
    Ok(VmCounters {
        free: s.free_count.into(),
        active: s.active_count.into(),
        inactive: s.inactive_count.into(),
        speculative: s.speculative_count.into(),
        throttled: s.throttled_count.into(),
        wired: s.wire_count.into(),
        purgeable: s.purgeable_count.into(),
        external: s.external_page_count.into(),
        internal: s.internal_page_count.into(),
        compressor: s.compressor_page_count.into(),
        stored_in_compressor: s.total_uncompressed_pages_in_compressor,
        pageins: s.pageins,
        pageouts: s.pageouts,
        swapins: s.swapins,
        swapouts: s.swapouts,
        compressions: s.compressions,
        decompressions: s.decompressions,
    })
}

/// Plain integer types (and structs of them) that sysctl may fill: every
/// bit pattern is a valid value.
trait Pod: Copy {}
impl Pod for i32 {}
impl Pod for u64 {}
impl Pod for libc::xsw_usage {}

/// A fixed-size sysctl by name; the kernel must return exactly `size_of::<T>()` bytes.
fn sysctl_value<T: Pod>(name: &CStr) -> io::Result<T> {
    let mut v = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>();
    // SAFETY: `name` is NUL-terminated; `v` is writable for `len` bytes and
    // the kernel writes at most `len` bytes, updating `len`.
    let rc = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            v.as_mut_ptr().cast(),
            &mut len,
            ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len != size_of::<T>() {
        return Err(io::Error::other(format!(
            "{}: {len} bytes, expected {}",
            name.to_string_lossy(),
            size_of::<T>()
        )));
    }
    // SAFETY: T is Pod (any bits valid) and the kernel filled all of it.
    Ok(unsafe { v.assume_init() })
}

/// `hw.memsize`: installed RAM in bytes.
pub fn mem_size() -> io::Result<Bytes> {
    sysctl_value::<u64>(c"hw.memsize").map(Bytes)
}

/// `kern.memorystatus_vm_pressure_level`: 1 normal, 2 warn, 4 critical.
/// Hidden from `sysctl -a` on release kernels but readable by name, unprivileged.
pub fn pressure_level() -> io::Result<i32> {
    sysctl_value::<i32>(c"kern.memorystatus_vm_pressure_level")
}

/// `kern.memorystatus_level`: ANC as a percentage of RAM (what
/// memory_pressure prints as "System-wide memory free percentage").
pub fn memorystatus_level() -> io::Result<i32> {
    sysctl_value::<i32>(c"kern.memorystatus_level")
}

/// `iogpu.wired_limit_mb` and `iogpu.wired_lwm_mb` (Apple Silicon; MiB,
/// 0 = the system default), unprivileged. `None` where this Mac has no
/// such sysctl (Intel, older macOS) or it cannot be read: unknown, not an error.
pub fn gpu_wired_mb() -> (Option<u64>, Option<u64>) {
    (
        iogpu_mb(c"iogpu.wired_limit_mb"),
        iogpu_mb(c"iogpu.wired_lwm_mb"),
    )
}

/// An `iogpu` MB sysctl: an `int` on the kernels seen; a 64-bit one is read too.
fn iogpu_mb(name: &CStr) -> Option<u64> {
    match sysctl_value::<i32>(name) {
        Ok(v) => u64::try_from(v).ok(),
        Err(_) => sysctl_value::<u64>(name).ok(),
    }
}

/// `vm.swapusage` (struct xsw_usage).
pub fn swap_usage() -> io::Result<SwapUsage> {
    let x = sysctl_value::<libc::xsw_usage>(c"vm.swapusage")?;
    Ok(SwapUsage {
        total: Bytes(x.xsu_total),
        used: Bytes(x.xsu_used),
        free: Bytes(x.xsu_avail),
        encrypted: x.xsu_encrypted != 0,
    })
}

/// `machdep.cpu.brand_string`: "Apple M2 Max".
pub fn cpu_brand() -> io::Result<String> {
    let name = c"machdep.cpu.brand_string";
    let mut len = 0usize;
    // SAFETY: a null buffer asks only for the length.
    let rc =
        unsafe { libc::sysctlbyname(name.as_ptr(), ptr::null_mut(), &mut len, ptr::null_mut(), 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; len.max(1)];
    let mut len = buf.len();
    // SAFETY: `buf` is writable for `len` bytes; the kernel writes at most that.
    let rc = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(len);
    Ok(c_string(&buf))
}

/// Bytes up to the first NUL, lossily as UTF-8.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn c_chars(chars: impl IntoIterator<Item = libc::c_char>) -> String {
    // `c_char` is i8 here; `as u8` reinterprets the byte.
    let bytes: Vec<u8> = chars
        .into_iter()
        .map(|c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ------------------------------------------------------------ processes

/// libproc.h `PROC_ALL_PIDS` and `PROC_UID_ONLY` (the effective uid, the
/// one `PROC_PIDTBSDINFO`'s same-user check compares).
const PROC_ALL_PIDS: u32 = 1;
const PROC_UID_ONLY: u32 = 4;

fn list_error() -> io::Error {
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(0) | None => io::Error::other("proc_listpids listed no processes"),
        _ => e,
    }
}

/// Every pid now, or with `uid` only that user's (proc_listpids). A normal
/// user can read only their own processes (xnu `proc_pidinfo` checks the
/// same user for PROC_PIDTBSDINFO), so listing the rest would re-probe
/// hundreds of root pids that answer EPERM. `buf` is the caller's scratch.
/// An answer of 0 is an error (`macos_vm::listed_pid_count`).
pub fn list_pids(buf: &mut Vec<i32>, uid: Option<u32>) -> io::Result<()> {
    let (kind, info) = match uid {
        Some(u) => (PROC_UID_ONLY, u),
        None => (PROC_ALL_PIDS, 0),
    };
    // SAFETY: a null buffer asks only for the size needed, in bytes.
    let need = unsafe { libc::proc_listpids(kind, info, ptr::null_mut(), 0) };
    // Room for processes started between the two calls.
    let cap = macos_vm::listed_pid_count(need, usize::MAX).ok_or_else(list_error)? + 64;
    buf.clear();
    buf.resize(cap, 0);
    let bytes = c_int::try_from(cap * size_of::<i32>()).unwrap_or(c_int::MAX);
    // SAFETY: `buf` holds `cap` pids, `bytes` is at most its size in bytes.
    let got = unsafe { libc::proc_listpids(kind, info, buf.as_mut_ptr().cast::<c_void>(), bytes) };
    let n = macos_vm::listed_pid_count(got, cap).ok_or_else(list_error)?;
    buf.truncate(n);
    buf.retain(|&p| p > 0);
    Ok(())
}

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Who a process is (PROC_PIDTBSDINFO).
#[derive(Clone, Debug, PartialEq)]
pub struct BsdInfo {
    /// Effective uid (the USER column of ps).
    pub uid: u32,
    /// Microseconds since the epoch.
    pub start_time_us: u64,
    pub name: String,
    /// The parent's pid.
    pub ppid: u32,
    /// The process group.
    pub pgid: u32,
    /// Exited and not yet reaped (`pbi_status == SZOMB`): no memory of its
    /// own, nothing to signal.
    pub zombie: bool,
}

/// `SZOMB` from xnu bsd/sys/proc.h (SIDL 1, SRUN 2, SSLEEP 3, SSTOP 4, SZOMB 5).
const SZOMB: u32 = 5;

/// `None` when the process is gone or not ours to read.
pub fn bsd_info(pid: i32) -> Option<BsdInfo> {
    let mut info = MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = size_of::<libc::proc_bsdinfo>() as c_int;
    // SAFETY: `info` is writable for `size` bytes; the kernel writes at most that.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    if n != size {
        return None;
    }
    // SAFETY: all-integer struct, zero-initialised and fully written (n == size).
    let b = unsafe { info.assume_init() };
    // pbi_name holds up to 32 bytes; pbi_comm is cut at 16.
    let mut name = c_chars(b.pbi_name);
    if name.is_empty() {
        name = c_chars(b.pbi_comm);
    }
    Some(BsdInfo {
        uid: b.pbi_uid,
        start_time_us: macos_vm::start_time_us(b.pbi_start_tvsec, b.pbi_start_tvusec),
        name,
        ppid: b.pbi_ppid,
        pgid: b.pbi_pgid,
        zombie: b.pbi_status == SZOMB,
    })
}

/// The executable's path (proc_pidpath); `None` when the process is gone
/// or not ours to read.
pub fn exe_path(pid: i32) -> Option<String> {
    let mut buf = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    // SAFETY: `buf` is writable for its length, which is passed; the kernel
    // writes at most that many bytes and returns how many.
    let n = unsafe { libc::proc_pidpath(pid, buf.as_mut_ptr().cast(), buf.len() as u32) };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A process's start time, microseconds since the epoch: with the pid, its
/// identity (pids are reused). For re-checking a victim before a signal.
/// A zombie has exited: `None`, as for a pid that is gone.
pub fn start_time_us(pid: i32) -> Option<u64> {
    bsd_info(pid).filter(|b| !b.zombie).map(|b| b.start_time_us)
}

/// Memory one process uses (proc_pid_rusage, RUSAGE_INFO_V4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcRusage {
    /// What Activity Monitor calls Memory: includes Metal/IOKit buffers and
    /// compressed pages of the process, which RSS misses.
    pub phys_footprint: Bytes,
    pub resident: Bytes,
    pub lifetime_max_phys_footprint: Bytes,
}

/// `None` when the process is gone or belongs to another user (without root).
pub fn rusage(pid: i32) -> Option<ProcRusage> {
    let mut info = MaybeUninit::<libc::rusage_info_v4>::zeroed();
    // SAFETY: `info` is writable and sized for RUSAGE_INFO_V4 (size asserted above).
    let rc = unsafe { libc::proc_pid_rusage(pid, libc::RUSAGE_INFO_V4, info.as_mut_ptr().cast()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: all-integer struct, zero-initialised, filled on success.
    let r = unsafe { info.assume_init() };
    Some(ProcRusage {
        phys_footprint: Bytes(r.ri_phys_footprint),
        resident: Bytes(r.ri_resident_size),
        lifetime_max_phys_footprint: Bytes(r.ri_lifetime_max_phys_footprint),
    })
}

fn arg_max() -> usize {
    static ARG_MAX: OnceLock<usize> = OnceLock::new();
    *ARG_MAX.get_or_init(|| {
        sysctl_value::<i32>(c"kern.argmax")
            .ok()
            .and_then(|v| usize::try_from(v).ok())
            .filter(|v| *v > 0)
            // ARG_MAX on every macOS since 10.6, should kern.argmax fail.
            .unwrap_or(1 << 20)
    })
}

/// A process's arguments (KERN_PROCARGS2). `None` when gone, a zombie, or
/// another user's (without root). `buf` is scratch space kept by the caller.
pub fn proc_args(pid: i32, buf: &mut Vec<u8>) -> Option<Vec<String>> {
    // Sized once to the largest possible answer; only `..len` is read back.
    if buf.len() < arg_max() {
        buf.resize(arg_max(), 0);
    }
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid];
    let mut len = buf.len();
    // SAFETY: `mib` holds 3 valid ints; `buf` is writable for `len` bytes
    // and the kernel writes at most that, updating `len`.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            mib.len() as libc::c_uint,
            buf.as_mut_ptr().cast(),
            &mut len,
            ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    macos_vm::parse_procargs2(&buf[..len.min(buf.len())])
}

/// Walk a process's file-backed regions (PROC_PIDREGIONPATHINFO2) and return
/// the first path `want` accepts, looking at no more than `max_regions`.
/// `None` when there is none, or the process is gone or not ours to read.
pub fn find_mapped_file(
    pid: i32,
    max_regions: usize,
    mut want: impl FnMut(&str) -> bool,
) -> Option<String> {
    let mut info = MaybeUninit::<ProcRegionWithPathInfo>::zeroed();
    let size = size_of::<ProcRegionWithPathInfo>() as c_int;
    let mut addr: u64 = 0;
    for _ in 0..max_regions {
        // SAFETY: `info` is writable for `size` bytes (layout asserted
        // above); the kernel writes at most that.
        let n = unsafe {
            libc::proc_pidinfo(
                pid,
                PROC_PIDREGIONPATHINFO2,
                addr,
                info.as_mut_ptr().cast(),
                size,
            )
        };
        if n != size {
            return None; // past the last region, gone, or not permitted
        }
        // SAFETY: all-integer struct, zero-initialised and fully written.
        let r = unsafe { info.assume_init_ref() };
        let path = c_chars(r.prp_vip.vip_path.iter().flatten().copied());
        if want(&path) {
            return Some(path);
        }
        let next = r
            .prp_prinfo
            .pri_address
            .saturating_add(r.prp_prinfo.pri_size);
        if next <= addr {
            return None;
        }
        addr = next;
    }
    None
}

/// These run only on a Mac (Linux CI type-checks them for the macOS target).
#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> i32 {
        i32::try_from(std::process::id()).expect("pid fits")
    }

    #[test]
    fn system_figures_are_sane() {
        let ps = page_size();
        #[cfg(target_arch = "aarch64")]
        assert_eq!(ps, 16384);
        assert!(ps.is_power_of_two());
        let total = mem_size().expect("hw.memsize");
        let c = host_vm_counters().expect("host_statistics64");
        let counted = c.free + c.active + c.inactive + c.wired + c.compressor;
        assert!(counted > 0 && counted * ps <= total.0, "{c:?} vs {total:?}");
        let m = macos_vm::breakdown(&c, ps, total);
        assert!(m.available_bytes <= total);
        let level = pressure_level().expect("pressure level");
        assert!(matches!(level, 1 | 2 | 4), "{level}");
        assert!((0..=100).contains(&memorystatus_level().expect("memorystatus_level")));
        let swap = swap_usage().expect("vm.swapusage");
        assert!(swap.used <= swap.total);
        assert!(!cpu_brand().expect("brand").is_empty());
    }

    #[test]
    fn this_process_is_readable() {
        let mut pids = Vec::new();
        list_pids(&mut pids, None).expect("pids");
        assert!(pids.contains(&me()));
        list_pids(&mut pids, Some(effective_uid())).expect("own pids");
        assert!(pids.contains(&me()));
        if effective_uid() != 0 {
            assert!(!pids.contains(&1), "launchd is root's");
        }
        let b = bsd_info(me()).expect("bsd info");
        // SAFETY: getuid cannot fail.
        assert_eq!(b.uid, unsafe { libc::getuid() });
        assert!(b.start_time_us > 1_600_000_000_000_000, "{b:?}");
        assert_eq!(start_time_us(me()), Some(b.start_time_us));
        let r = rusage(me()).expect("rusage");
        assert!(r.phys_footprint.0 > 0 && r.resident.0 > 0, "{r:?}");
        assert!(r.lifetime_max_phys_footprint >= r.phys_footprint);
        let mut buf = Vec::new();
        let args = proc_args(me(), &mut buf).expect("args");
        assert!(!args.is_empty());
        // The test binary itself is a file-backed region.
        assert!(find_mapped_file(me(), 8192, |p| !p.is_empty()).is_some());
        assert_eq!(find_mapped_file(me(), 8192, |_| false), None);
        assert_eq!(bsd_info(-5), None);
        assert_eq!(rusage(-5), None);
    }
}
