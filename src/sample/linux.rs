//! Linux sampler: /proc/meminfo, /proc/pressure/memory, /proc/vmstat and /proc/PID.
//!
//! The parsers are pure functions of the file text, checked against real
//! files in tests/fixtures/linux/ (see its README.md). The readers take a
//! root directory shaped like `/`, so tests point them at a fake /proc.

use crate::config::Config;
use crate::discover::{ProcIdentity, ProcMeasure, ProcSource, Usage};
use crate::model::Scope;
use crate::model::{Bytes, Pid, Pressure, Snapshot, SystemMemory};
use crate::sample::{Processes, SampleError, Sampler};
use nix::unistd::SysconfVar;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use std::time::Instant;

// ------------------------------------------------------------ /proc/meminfo

/// The /proc/meminfo figures headroom uses. Only MemTotal and MemAvailable
/// are required; the rest are `None` when this kernel does not print them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub mem_total: Bytes,
    /// The kernel's estimate of memory available without swapping (3.14+).
    pub mem_available: Bytes,
    pub mem_free: Option<Bytes>,
    /// Page cache. Includes Shmem (tmpfs), which cannot be dropped without swap.
    pub cached: Option<Bytes>,
    pub anon_pages: Option<Bytes>,
    pub unevictable: Option<Bytes>,
    /// A subset of Unevictable (mlocked pages live on the unevictable list).
    pub mlocked: Option<Bytes>,
    pub shmem: Option<Bytes>,
    /// Compressed size of the zswap pool (6.5+).
    pub zswap: Option<Bytes>,
    pub swap_total: Option<Bytes>,
    pub swap_free: Option<Bytes>,
}

impl MemInfo {
    /// The Snapshot's view of these figures.
    ///
    /// `wired_bytes` is Unevictable alone: Mlocked is already counted in it,
    /// so adding the two would count mlocked pages twice. It is a lower
    /// bound of what macOS calls wired: kernel memory (slab, page tables,
    /// stacks) and driver-pinned pages (e.g. CUDA pinned host buffers) are
    /// not in it. `compressed_bytes` is the zswap pool (0 when zswap is off).
    pub fn system_memory(&self) -> SystemMemory {
        SystemMemory {
            total_bytes: self.mem_total,
            available_bytes: self.mem_available,
            app_bytes: self.anon_pages,
            wired_bytes: self.unevictable,
            compressed_bytes: self.zswap,
            cached_bytes: self.cached,
            free_bytes: self.mem_free,
            swap_total_bytes: self.swap_total,
            swap_used_bytes: match (self.swap_total, self.swap_free) {
                (Some(t), Some(f)) => Some(t.saturating_sub(f)),
                _ => None,
            },
            // Apple Silicon's GPU wired limit: absent, not zero.
            gpu_wired_limit_mb: None,
            gpu_wired_lwm_mb: None,
        }
    }
}

const MEMINFO: &str = "/proc/meminfo";

/// Parse /proc/meminfo. Lines headroom does not read are skipped; a line it
/// does read must be `Key: <n> kB`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, SampleError> {
    let mut total = None;
    let mut available = None;
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "MemFree" => &mut m.mem_free,
            "Cached" => &mut m.cached,
            "AnonPages" => &mut m.anon_pages,
            "Unevictable" => &mut m.unevictable,
            "Mlocked" => &mut m.mlocked,
            "Shmem" => &mut m.shmem,
            "Zswap" => &mut m.zswap,
            "SwapTotal" => &mut m.swap_total,
            "SwapFree" => &mut m.swap_free,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(kib(key, value)?);
        }
    }
    m.mem_total = total.ok_or_else(|| SampleError::parse(MEMINFO, "no MemTotal line"))?;
    m.mem_available = available.ok_or_else(|| {
        SampleError::parse(MEMINFO, "no MemAvailable line (kernel older than 3.14?)")
    })?;
    if m.mem_total.0 == 0 {
        return Err(SampleError::parse(MEMINFO, "MemTotal is 0"));
    }
    Ok(m)
}

/// `"   24731708 kB"` → bytes.
fn kib(key: &str, value: &str) -> Result<Bytes, SampleError> {
    let bad = || {
        SampleError::parse(
            MEMINFO,
            format!("{key} value {:?} is not a number of kB", clip(value.trim())),
        )
    };
    let n: u64 = value
        .trim()
        .strip_suffix("kB")
        .ok_or_else(bad)?
        .trim_end()
        .parse()
        .map_err(|_| bad())?;
    n.checked_mul(1024).map(Bytes).ok_or_else(bad)
}

// ---------------------------------------------------- /proc/pressure/memory

/// One PSI line: percentages of wall time stalled, and the total in µs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total_us: u64,
}

/// /proc/pressure/memory: "some" (at least one task stalled on memory) and
/// "full" (all non-idle tasks stalled), the latter absent on old kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Psi {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

const PSI: &str = "/proc/pressure/memory";

/// Parse /proc/pressure/memory. Lines of other kinds are skipped, so a new
/// kernel adding one does not blind the daemon.
pub fn parse_psi(text: &str) -> Result<Psi, SampleError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        if slot.is_some() {
            return Err(SampleError::parse(
                PSI,
                format!("repeated line {:?}", clip(line)),
            ));
        }
        *slot = Some(psi_line(line, words)?);
    }
    let some = some.ok_or_else(|| SampleError::parse(PSI, "no 'some' line"))?;
    Ok(Psi { some, full })
}

fn psi_line<'a>(line: &str, words: impl Iterator<Item = &'a str>) -> Result<PsiLine, SampleError> {
    let bad = |why: &str| SampleError::parse(PSI, format!("{why} in {:?}", clip(line)));
    let (mut a10, mut a60, mut a300, mut total) = (None, None, None, None);
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| bad("a word without '='"))?;
        let avg = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| (0.0..=100.0).contains(x))
                .ok_or_else(|| bad(&format!("{k}={v:?} is not a percentage")))
        };
        match k {
            "avg10" => a10 = Some(avg(v)?),
            "avg60" => a60 = Some(avg(v)?),
            "avg300" => a300 = Some(avg(v)?),
            "total" => {
                total = Some(
                    v.parse::<u64>()
                        .map_err(|_| bad(&format!("total={v:?} is not a count")))?,
                )
            }
            _ => {}
        }
    }
    match (a10, a60, a300, total) {
        (Some(avg10), Some(avg60), Some(avg300), Some(total_us)) => Ok(PsiLine {
            avg10,
            avg60,
            avg300,
            total_us,
        }),
        _ => Err(bad("avg10, avg60, avg300 or total missing")),
    }
}

// ------------------------------------------------------------- /proc/vmstat

/// The cumulative count of pages swapped out, from /proc/vmstat.
pub fn parse_vmstat_pswpout(text: &str) -> Result<u64, SampleError> {
    const VMSTAT: &str = "/proc/vmstat";
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("pswpout"))
        .ok_or_else(|| SampleError::parse(VMSTAT, "no pswpout line"))?;
    let mut words = line.split_whitespace().skip(1);
    match (words.next().map(str::parse::<u64>), words.next()) {
        (Some(Ok(n)), None) => Ok(n),
        _ => Err(SampleError::parse(
            VMSTAT,
            format!("pswpout line {:?} is not 'pswpout <pages>'", clip(line)),
        )),
    }
}

// ----------------------------------------------------------- /proc/PID/stat

/// The /proc/PID/stat fields headroom uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// Field 2: the executable's name, at most 15 bytes, any characters.
    pub comm: String,
    /// Field 3: R, S, D, Z, T, …
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: i32,
    /// Field 5: the process group.
    pub pgrp: i32,
    /// Field 9: PF_* flags.
    pub flags: u64,
    /// Field 22: start time, clock ticks after boot.
    pub start_time: u64,
    /// Field 24: resident set size, pages.
    pub rss_pages: u64,
}

/// PF_KTHREAD from include/linux/sched.h.
const PF_KTHREAD: u64 = 0x0020_0000;

impl ProcStat {
    /// A kernel thread, or a process that has exited (zombie or dead): no
    /// memory of its own and nothing to signal.
    pub fn is_kernel_or_gone(&self) -> bool {
        self.flags & PF_KTHREAD != 0 || matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parse /proc/PID/stat. The name may contain spaces and parentheses, so it
/// runs from the first '(' to the LAST ')'.
pub fn parse_stat(text: &str) -> Result<ProcStat, SampleError> {
    const STAT: &str = "/proc/PID/stat";
    let bad = |why: String| SampleError::parse(STAT, format!("{why} in {:?}", clip(text)));
    let (open, close) = match (text.find('('), text.rfind(')')) {
        (Some(o), Some(c)) if o < c => (o, c),
        _ => return Err(bad("no '(name)'".into())),
    };
    let pid: i32 = text[..open]
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("no pid before the name".into()))?;
    let comm = text[open + 1..close].to_string();
    // Field 3 onwards. Each `num` call passes over `skip` fields after the
    // last one read: none (4), none (5), then 6..=8, then 10..=21, then 23.
    let mut f = text[close + 1..].split_ascii_whitespace();
    let mut state_chars = f.next().unwrap_or("").chars();
    let state = match (state_chars.next(), state_chars.next()) {
        (Some(c), None) => c,
        _ => return Err(bad("field 3 (state) is not one character".into())),
    };
    let mut num = |field: usize, skip: usize| -> Result<u64, SampleError> {
        f.nth(skip)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(format!("field {field} missing or not a number")))
    };
    let ppid = i32::try_from(num(4, 0)?).map_err(|_| bad("field 4 (ppid) out of range".into()))?;
    let pgrp = i32::try_from(num(5, 0)?).map_err(|_| bad("field 5 (pgrp) out of range".into()))?;
    let flags = num(9, 3)?;
    let start_time = num(22, 12)?;
    let rss_pages = num(24, 1)?;
    Ok(ProcStat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
        flags,
        start_time,
        rss_pages,
    })
}

// ------------------------------------------ /proc/PID/{status,cmdline,maps}

/// The real uid: the first number of the "Uid:" line of /proc/PID/status.
pub fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

/// The thread group (process) id from /proc/ID/status (`Tgid:`).
pub fn parse_status_tgid(text: &str) -> Option<i32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// /proc/PID/cmdline: NUL-separated arguments joined by single spaces,
/// invalid UTF-8 replaced, trailing NULs dropped. Empty for kernel threads
/// and zombies.
pub fn parse_cmdline(bytes: &[u8]) -> String {
    parse_argv(bytes).join(" ")
}

/// /proc/PID/cmdline as argv: NUL-separated arguments, invalid UTF-8
/// replaced, trailing NULs dropped. Empty for kernel threads and zombies.
pub fn parse_argv(bytes: &[u8]) -> Vec<String> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if end == 0 {
        return Vec::new();
    }
    bytes[..end]
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The path of the first mapping in /proc/PID/maps that is the MLX library
/// (`crate::discover::is_mlx_library`).
pub fn maps_mlx_library(text: &str) -> Option<String> {
    text.lines().filter_map(maps_path).find_map(|path| {
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        crate::discover::is_mlx_library(path).then(|| path.to_string())
    })
}

/// The path column of a maps line (`addr perms offset dev inode path`);
/// `None` for anonymous mappings and `[heap]`-style pseudo paths. A path
/// may contain spaces, so it is the rest of the line, not the 6th word.
fn maps_path(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = &rest[rest.find(char::is_whitespace)?..];
    }
    let path = rest.trim_start();
    path.starts_with('/').then_some(path)
}

/// At most 40 characters of `s`, for one-line error messages.
fn clip(s: &str) -> &str {
    s.char_indices().nth(40).map_or(s, |(i, _)| &s[..i])
}

// ---------------------------------------------------------------- readers

/// The kernel's page size, the unit of /proc/PID/stat rss and of pswpout.
pub fn page_size() -> Result<u64, SampleError> {
    match nix::unistd::sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => Ok(n as u64),
        other => Err(SampleError::Unsupported(format!(
            "sysconf(_SC_PAGESIZE) gave {other:?}"
        ))),
    }
}

/// A process's job: its process group (a stat without one, 0, is its own).
fn job_of(st: &ProcStat) -> Pid {
    Pid(if st.pgrp > 0 { st.pgrp } else { st.pid })
}

/// `ProcSource` over a /proc directory. A process that vanishes between
/// reads, or whose files we may not read, is `None`.
pub struct LinuxProcs {
    proc_dir: PathBuf,
    page_size: u64,
    buf: Vec<u8>,
    /// proc_dir/PID/file, rebuilt in place for each read (no allocation
    /// once it has grown to the longest path).
    path: PathBuf,
    digits: String,
}

impl LinuxProcs {
    /// `proc_dir` is usually `/proc`; `page_size` from [`page_size`].
    pub fn new(proc_dir: PathBuf, page_size: u64) -> LinuxProcs {
        LinuxProcs {
            proc_dir,
            page_size,
            buf: Vec::new(),
            path: PathBuf::new(),
            digits: String::new(),
        }
    }

    /// Read proc_dir/PID/file into the reused buffer.
    fn read(&mut self, pid: Pid, file: &str) -> Option<&[u8]> {
        use std::fmt::Write as _;
        self.digits.clear();
        let _ = write!(self.digits, "{}", pid.0);
        let path = self.path.as_mut_os_string();
        path.clear();
        path.push(self.proc_dir.as_os_str());
        path.push("/");
        path.push(&self.digits);
        path.push("/");
        path.push(file);
        self.buf.clear();
        File::open(&self.path)
            .ok()?
            .read_to_end(&mut self.buf)
            .ok()?;
        Some(&self.buf)
    }

    fn stat(&mut self, pid: Pid) -> Option<ProcStat> {
        self.stat_any(pid).filter(|st| !st.is_kernel_or_gone())
    }

    /// /proc/PID/stat of any process, kernel threads and zombies included.
    fn stat_any(&mut self, pid: Pid) -> Option<ProcStat> {
        let st = parse_stat(&String::from_utf8_lossy(self.read(pid, "stat")?)).ok()?;
        (st.pid == pid.0).then_some(st)
    }
}

impl ProcSource for LinuxProcs {
    fn pids(&mut self, out: &mut Vec<Pid>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(&self.proc_dir)? {
            // An entry that errors is a process that just went away.
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(pid) = name.parse::<i32>() {
                out.push(Pid(pid));
            }
        }
        Ok(())
    }

    /// The uid is the real uid from status rather than the owner of
    /// /proc/PID: that owner is the effective uid, and root for any
    /// non-dumpable process, while kill(2) checks the real uid.
    /// A thread's id is never a process's identity (/proc/TID is readable
    /// and reads like its process): `None` unless `Tgid` is the id itself.
    fn identity(&mut self, pid: Pid) -> Option<ProcIdentity> {
        let st = self.stat(pid)?;
        let status = String::from_utf8_lossy(self.read(pid, "status")?);
        // Every kernel prints Tgid; a tree without it (a test's) has no
        // threads to tell apart.
        if parse_status_tgid(&status).is_some_and(|tgid| tgid != pid.0) {
            return None;
        }
        let uid = parse_status_uid(&status)?;
        let argv = parse_argv(self.read(pid, "cmdline")?);
        // Another user's exe is unreadable without root: empty.
        let exe = std::fs::read_link(self.proc_dir.join(pid.0.to_string()).join("exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some(ProcIdentity {
            uid,
            start_time: st.start_time,
            name: st.comm,
            argv,
            exe,
        })
    }

    fn mlx_library(&mut self, pid: Pid) -> Option<String> {
        maps_mlx_library(&String::from_utf8_lossy(self.read(pid, "maps")?))
    }

    /// /proc/ID/status's Tgid: a process leads its thread group.
    fn is_process(&mut self, pid: Pid) -> Option<bool> {
        let status = String::from_utf8_lossy(self.read(pid, "status")?);
        Some(parse_status_tgid(&status).is_none_or(|tgid| tgid == pid.0))
    }

    /// Only /proc/PID/stat: the name (comm) and start time.
    fn name(&mut self, pid: Pid, name: &mut String) -> Option<u64> {
        let st = self.stat(pid)?;
        name.clear();
        name.push_str(&st.comm);
        Some(st.start_time)
    }

    /// One stat read: comm, RSS and the process group.
    fn usage(&mut self, pid: Pid, name: &mut String) -> Option<Usage> {
        let st = self.stat(pid)?;
        name.clear();
        name.push_str(&st.comm);
        Some(Usage {
            footprint: Bytes(st.rss_pages.saturating_mul(self.page_size)),
            job: job_of(&st),
        })
    }

    /// RSS is both footprint and rss on Linux. It misses GPU memory (CUDA
    /// device buffers) and counts shared file pages in full.
    fn measure(&mut self, pid: Pid) -> Option<ProcMeasure> {
        let st = self.stat(pid)?;
        let rss = Bytes(st.rss_pages.saturating_mul(self.page_size));
        Some(ProcMeasure {
            start_time: st.start_time,
            footprint: rss,
            rss,
            job: Some(job_of(&st)),
        })
    }
}

/// A /proc file kept open and re-read with one `pread` at offset 0 into a
/// reused buffer (seq_file regenerates its text when read from 0): one
/// syscall per sample instead of open, fstat, read, read, close.
struct KeptOpen {
    path: PathBuf,
    file: Option<File>,
    /// The file's text is one seq_file record (meminfo, pressure, loadavg:
    /// `single_open`): a read that comes back short of the buffer has it
    /// all. Otherwise (vmstat: a record per line, at most a page per read)
    /// reads go on until one returns 0.
    one_record: bool,
    /// For a file that may not exist (PSI): when opening it last failed;
    /// it is tried again only after REOPEN_AFTER, not on every sample.
    optional: bool,
    failed_at: Option<Instant>,
}

/// An optional kept-open file that could not be opened is tried again
/// after this.
const REOPEN_AFTER: Duration = Duration::from_secs(60);

impl KeptOpen {
    fn new(path: PathBuf) -> KeptOpen {
        KeptOpen {
            path,
            file: None,
            one_record: false,
            optional: false,
            failed_at: None,
        }
    }

    /// One record, and perhaps absent (no PSI on this kernel).
    fn optional_record(path: PathBuf) -> KeptOpen {
        KeptOpen {
            optional: true,
            ..KeptOpen::one_record(path)
        }
    }

    /// A file whose text is one seq_file record: one `pread` per read.
    fn one_record(path: PathBuf) -> KeptOpen {
        KeptOpen {
            one_record: true,
            ..KeptOpen::new(path)
        }
    }

    /// The whole file into `buf` (cleared first). The file is opened on
    /// first use and reopened after an error, so a file that appears later
    /// (PSI enabled at runtime) or a read that failed once is tried again.
    fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<(), SampleError> {
        use std::os::unix::fs::FileExt;
        let io = |source| SampleError::Io {
            path: self.path.clone(),
            source,
        };
        let file = match &self.file {
            Some(f) => f,
            None => {
                if self.failed_at.is_some_and(|t| t.elapsed() < REOPEN_AFTER) {
                    return Err(io(std::io::Error::from(std::io::ErrorKind::NotFound)));
                }
                match File::open(&self.path) {
                    Ok(f) => {
                        self.failed_at = None;
                        self.file.insert(f)
                    }
                    Err(e) => {
                        if self.optional {
                            self.failed_at = Some(Instant::now());
                        }
                        return Err(io(e));
                    }
                }
            }
        };
        if buf.capacity() < 4096 {
            buf.reserve(4096);
        }
        // seq_file hands out at most a page per read of a file of many
        // records (/proc/vmstat is longer than one): read on from where the
        // last read ended until a read returns 0, not until one comes back
        // short — unless the text is one record (`one_record`).
        buf.clear();
        loop {
            let len = buf.len();
            if buf.capacity() - len < 1024 {
                buf.reserve(4096);
            }
            buf.resize(buf.capacity(), 0);
            match file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => {
                    buf.truncate(len);
                    return Ok(());
                }
                Ok(n) if self.one_record && len + n < buf.len() => {
                    buf.truncate(len + n);
                    return Ok(());
                }
                Ok(n) => buf.truncate(len + n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(len),
                Err(e) => {
                    buf.clear();
                    self.file = None;
                    return Err(io(e));
                }
            }
        }
    }
}

/// A quiet look for new pids probes at most this many ids (each a read of
/// /proc/ID/status, ~10 listing entries' cost); more, and it lists.
const MAX_CANDIDATES: i32 = 256;

/// /proc is listed at least this often, even while quiet and probing ids
/// would do (exited pids forgotten; a safety net for the counter): the
/// daemon asks `listing_overdue` before each quiet look.
const FULL_LISTING_EVERY: Duration = Duration::from_secs(300);

/// Whether /proc/loadavg's last-pid counter counts the ids /proc shows,
/// so new pids can be found by probing the ids it handed out: /proc is the
/// kernel's procfs (not a FUSE stand-in such as lxcfs, whose loadavg is
/// another thing), of this process's pid namespace (/proc/self is our pid),
/// (a counter that reads 0, as gVisor prints, is refused by `candidates`).
/// Whatever else could make the counter miss a pid is bounded by the
/// listing every FULL_LISTING_EVERY.
fn counter_counts_our_pids(proc_dir: &Path, self_pid: Pid) -> bool {
    #[cfg(target_os = "linux")]
    let procfs = nix::sys::statfs::statfs(&proc_dir.join("loadavg"))
        .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
    // This sampler reads fake trees elsewhere (tests): never probe there.
    #[cfg(not(target_os = "linux"))]
    let procfs = false;
    let ours = std::fs::read_link(proc_dir.join("self"))
        .ok()
        .and_then(|p| p.to_str()?.parse::<i32>().ok())
        == Some(self_pid.0);
    procfs && ours
}

/// The last pid the kernel handed out: the fifth field of /proc/loadavg
/// (`0.00 0.01 0.05 1/123 4567`).
fn parse_loadavg_last_pid(text: &str) -> Option<i32> {
    text.split_ascii_whitespace().nth(4)?.parse().ok()
}

/// The Linux sampler: system figures from /proc, MLX processes through
/// [`crate::discover::Discovery`] over [`LinuxProcs`].
pub struct LinuxSampler {
    proc_dir: PathBuf,
    start: Instant,
    page_size: u64,
    processes: Processes,
    procs: LinuxProcs,
    /// pswpout readings, for the swap-out rate (src/rate.rs).
    swapouts: crate::rate::Window,
    meminfo: KeptOpen,
    psi: KeptOpen,
    vmstat: KeptOpen,
    loadavg: KeptOpen,
    /// The last pid handed out when pids were last listed (`new_pids`).
    listed_last_pid: Option<i32>,
    /// When every pid was last listed (Snapshot clock).
    last_full_listing: Option<Duration>,
    /// /proc is this process's pid namespace (/proc/self is our pid), so
    /// /proc/loadavg's last pid counts the ids /proc shows: new pids may
    /// be probed by id instead of listed.
    probe_by_id: bool,
    /// Reused for meminfo, pressure, vmstat and loadavg text.
    buf: Vec<u8>,
}

impl LinuxSampler {
    /// Sample the real /proc.
    pub fn new(cfg: &Config, scope: Scope, start: Instant) -> Result<LinuxSampler, SampleError> {
        LinuxSampler::with_root(Path::new("/"), cfg, scope, start)
    }

    /// Sample `root`/proc, for tests with a fake tree. The daemon's own pid
    /// (never a candidate) and the page size are still this process's.
    pub fn with_root(
        root: &Path,
        cfg: &Config,
        scope: Scope,
        start: Instant,
    ) -> Result<LinuxSampler, SampleError> {
        let page_size = page_size()?;
        let proc_dir = root.join("proc");
        let self_pid = Pid(nix::unistd::getpid().as_raw());
        Ok(LinuxSampler {
            procs: LinuxProcs::new(proc_dir.clone(), page_size),
            meminfo: KeptOpen::one_record(proc_dir.join("meminfo")),
            psi: KeptOpen::optional_record(proc_dir.join("pressure/memory")),
            vmstat: KeptOpen::new(proc_dir.join("vmstat")),
            loadavg: KeptOpen::one_record(proc_dir.join("loadavg")),
            listed_last_pid: None,
            last_full_listing: None,
            probe_by_id: counter_counts_our_pids(&proc_dir, self_pid),
            proc_dir,
            start,
            page_size,
            processes: Processes::new(cfg, scope, self_pid),
            swapouts: crate::rate::Window::new(crate::rate::COUNTER_WINDOW),
            buf: Vec::new(),
        })
    }

    /// The ids handed out since the last look, when probing them is both
    /// sound and cheaper than a listing: same pid namespace, the counter
    /// real (not 0) and did not wrap, at most MAX_CANDIDATES of them, a
    /// full listing less than FULL_LISTING_EVERY ago, and not too many
    /// exited pids remembered.
    fn candidates(&self, now: Option<i32>, at: Duration) -> Option<std::ops::RangeInclusive<i32>> {
        let (then, now) = (self.listed_last_pid?, now?);
        let ok = self.probe_by_id
            && !self.listing_overdue_at(at)
            && then > 0
            && now >= then
            && now - then <= MAX_CANDIDATES
            && !self.processes.needs_listing();
        ok.then(|| then.saturating_add(1)..=now)
    }

    /// No listing of /proc for FULL_LISTING_EVERY (or none yet).
    fn listing_overdue_at(&self, at: Duration) -> bool {
        self.last_full_listing
            .is_none_or(|t| at.saturating_sub(t) >= FULL_LISTING_EVERY)
    }

    /// The last pid handed out, from /proc/loadavg (`None`: unreadable).
    fn last_pid(&mut self) -> Option<i32> {
        self.loadavg.read_into(&mut self.buf).ok()?;
        parse_loadavg_last_pid(&String::from_utf8_lossy(&self.buf))
    }
}

/// `buf` as text for a parser (the files are ASCII).
fn text(buf: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(buf)
}

impl Sampler for LinuxSampler {
    fn sample(&mut self) -> Result<Snapshot, SampleError> {
        let at = self.start.elapsed();
        self.meminfo.read_into(&mut self.buf)?;
        let mem = parse_meminfo(&text(&self.buf))?;
        // No PSI (kernel < 4.20, CONFIG_PSI off, psi=0, some containers) is
        // not an error; PSI we cannot parse is.
        let psi = match self.psi.read_into(&mut self.buf) {
            Ok(()) => Some(parse_psi(&text(&self.buf))?),
            Err(_) => None,
        };
        // Without swap, pswpout cannot move: /proc/vmstat (the longest of
        // the three) is read only while swap exists.
        let swap = mem.swap_total.is_some_and(|t| t.0 > 0);
        let swapout_bytes_per_sec = if swap {
            self.vmstat.read_into(&mut self.buf)?;
            let pswpout = parse_vmstat_pswpout(&text(&self.buf))?;
            self.swapouts
                .push_counter(at, pswpout)
                .map(|pages| pages * self.page_size as f64)
        } else {
            None
        };
        let looked = (self.listed_last_pid, self.last_full_listing);
        let parent = if self.processes.lists_next() {
            // Before the listing: a pid made after this read is seen next time.
            let last = self.last_pid();
            match self.candidates(last, at) {
                Some(ids) if self.processes.new_only_next() => self.processes.candidates_once(ids),
                _ => self.last_full_listing = Some(at),
            }
            self.listed_last_pid = last;
            nix::unistd::getppid().as_raw()
        } else {
            0 // not read: the parent chain is followed only on a listing
        };
        let procs = self
            .processes
            .read(&mut self.procs, at, parent, |procs, pid| {
                procs.stat_any(Pid(pid)).map(|st| st.ppid)
            })
            .map_err(|source| {
                // A listing that failed looked at nothing: the ids since
                // the last look stay to be looked at.
                (self.listed_last_pid, self.last_full_listing) = looked;
                SampleError::Io {
                    path: self.proc_dir.clone(),
                    source,
                }
            })?;
        let pressure = Pressure {
            kernel_level: None,
            psi_some_avg10: psi.map(|p| p.some.avg10),
            psi_full_avg10: psi.and_then(|p| p.full).map(|f| f.avg10),
            swapout_bytes_per_sec,
        };
        Ok(procs.snapshot(at, mem.system_memory(), pressure))
    }

    fn processes(&mut self) -> &mut Processes {
        &mut self.processes
    }

    fn listing_overdue(&mut self, at: Duration) -> bool {
        self.listing_overdue_at(at)
    }

    /// One read of /proc/loadavg: has the kernel handed out a pid since
    /// the last listing? (Unreadable: assume so.)
    fn new_pids(&mut self) -> bool {
        match (self.listed_last_pid, self.last_pid()) {
            (Some(then), Some(now)) => then != now,
            _ => true,
        }
    }
}

impl crate::sample::Probe for LinuxSampler {
    fn fresh(&mut self) -> Result<crate::sample::Fresh, SampleError> {
        ProcProbe::fresh_at(&self.proc_dir)
    }

    fn start_time(&mut self, pid: Pid) -> Option<u64> {
        ProcProbe::start_time_at(&self.proc_dir, pid)
    }

    fn detach(&self) -> Option<Box<dyn crate::sample::Probe + Send>> {
        Some(Box::new(ProcProbe {
            proc_dir: self.proc_dir.clone(),
        }))
    }
}

/// The last checks before a signal, read from a /proc tree apart from the
/// sampler, so a pending SIGTERM's job can take them on its own thread.
pub struct ProcProbe {
    proc_dir: PathBuf,
}

impl ProcProbe {
    /// MemAvailable read afresh (one small file).
    fn fresh_at(proc_dir: &Path) -> Result<crate::sample::Fresh, SampleError> {
        let path = proc_dir.join("meminfo");
        let text =
            std::fs::read_to_string(&path).map_err(|source| SampleError::Io { path, source })?;
        let mem = parse_meminfo(&text)?;
        Ok(crate::sample::Fresh {
            available: mem.system_memory().available_bytes,
            kernel_critical: false,
        })
    }

    fn start_time_at(proc_dir: &Path, pid: Pid) -> Option<u64> {
        let text = std::fs::read_to_string(proc_dir.join(pid.0.to_string()).join("stat")).ok()?;
        parse_stat(&text).ok().map(|s| s.start_time)
    }
}

impl crate::sample::Probe for ProcProbe {
    fn fresh(&mut self) -> Result<crate::sample::Fresh, SampleError> {
        ProcProbe::fresh_at(&self.proc_dir)
    }

    fn start_time(&mut self, pid: Pid) -> Option<u64> {
        ProcProbe::start_time_at(&self.proc_dir, pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tgid_from_status() {
        let status = "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4250\n";
        assert_eq!(parse_status_tgid(status), Some(4242));
        assert_eq!(parse_status_tgid("Name:\tx\n"), None);
        assert_eq!(parse_status_tgid("Tgid:\tjunk\n"), None);
    }

    #[test]
    fn the_last_pid_is_the_fifth_field_of_loadavg() {
        assert_eq!(
            parse_loadavg_last_pid("0.00 0.01 0.05 1/123 4567\n"),
            Some(4567)
        );
        assert_eq!(parse_loadavg_last_pid("0.00 0.01 0.05 1/123"), None);
        assert_eq!(parse_loadavg_last_pid(""), None);
    }

    /// A kept-open file is read whole from offset 0 each time, whatever it
    /// grew or shrank to, and a missing one is an error naming it, tried
    /// again on the next read.
    #[test]
    fn a_kept_open_file_is_reread_whole_and_reopened_after_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("meminfo");
        let mut f = KeptOpen::new(p.clone());
        let mut buf = Vec::new();
        let err = f.read_into(&mut buf).expect_err("missing");
        assert!(err.to_string().contains("meminfo"), "{err}");
        let long = "x".repeat(10_000);
        std::fs::write(&p, &long).expect("write");
        f.read_into(&mut buf).expect("read");
        assert_eq!(buf, long.as_bytes());
        std::fs::write(&p, "short").expect("write");
        f.read_into(&mut buf).expect("read");
        assert_eq!(buf, b"short");
    }
}
