//! Which processes are MLX — by what runs, never by what an argument
//! mentions: the MLX library mapped, or a program string (src/cmdline.rs)
//! matching `mlx.patterns`. New pids are examined; known MLX pids are only
//! re-measured; non-MLX pids are re-examined on a backoff (a `python
//! train.py` maps libmlx only after its imports run, and a wrapper script
//! may exec into mlx_lm).

use crate::cmdline::{basename, Program};
use crate::model::{Bytes, JobUsage, MlxProcess, Pid, Scope, TopProcess};
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Who a process is: read once per new pid.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcIdentity {
    pub uid: u32,
    pub start_time: u64,
    /// The kernel's name for it (Linux `comm`, macOS `pbi_name`).
    pub name: String,
    /// The arguments, argv[0] first (empty when unreadable).
    pub argv: Vec<String>,
    /// The executable's path (Linux /proc/PID/exe, macOS proc_pidpath);
    /// empty when unreadable (another user's process, without root).
    pub exe: String,
}

impl ProcIdentity {
    /// Arguments joined by single spaces, for display and remedies.
    pub fn cmdline(&self) -> String {
        self.argv.join(" ")
    }
}

/// What a process uses now: read every cycle for MLX processes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcMeasure {
    pub start_time: u64,
    pub footprint: Bytes,
    pub rss: Bytes,
    /// Its process group (`None` where the OS does not say).
    pub job: Option<Pid>,
}

/// Any process's footprint and job: what the jobs list sums.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub footprint: Bytes,
    pub job: Pid,
}

/// The OS side of discovery. A process that vanished or belongs to a user
/// we cannot read is `None`, never an error.
pub trait ProcSource {
    /// Every pid on the system now.
    fn pids(&mut self, out: &mut Vec<Pid>) -> std::io::Result<()>;
    fn identity(&mut self, pid: Pid) -> Option<ProcIdentity>;
    /// The path of a loaded MLX library, if the process has one mapped.
    fn mlx_library(&mut self, pid: Pid) -> Option<String>;
    fn measure(&mut self, pid: Pid) -> Option<ProcMeasure>;
    /// Any process's footprint and job, with its kernel name written into
    /// `name`: the jobs and top lists while memory is not quiet. Linux: one
    /// stat read.
    fn usage(&mut self, pid: Pid, name: &mut String) -> Option<Usage> {
        self.name(pid, name)?;
        self.measure(pid).map(|m| Usage {
            footprint: m.footprint,
            job: m.job.unwrap_or(pid),
        })
    }

    /// Whether `pid` names a process now: `None` when no task has that id,
    /// `Some(false)` when it is a thread's id (Linux hands out thread and
    /// process ids from one counter; /proc/TID is readable but never
    /// listed, and must never be taken for a process).
    fn is_process(&mut self, pid: Pid) -> Option<bool>;
    /// The cheap recheck of a known non-MLX pid: its start time, with its
    /// short name written into `name` (cleared first). On Linux one small
    /// read (/proc/PID/stat) instead of the four of `identity` + maps.
    fn name(&mut self, pid: Pid, name: &mut String) -> Option<u64> {
        let id = self.identity(pid)?;
        name.clear();
        name.push_str(&id.name);
        Some(id.start_time)
    }
}

/// Whether a mapped file is the MLX library: `libmlx.so` (Linux wheel,
/// also `libmlx.so.0.21`, `libmlx-<hash>.so`), MLX's Metal kernels
/// `mlx.metallib`, or `libmlx.dylib` inside an MLX Python package
/// (`…/site-packages/mlx/…`). A `libmlx.dylib` anywhere else is not enough
/// on its own (issue 16): MiniLibX, a graphics library every 42-school
/// project links, has that name; MLX's own processes map `mlx.metallib`
/// as well. `mlx_cpu.libs/libgfortran…` is not MLX, and neither is
/// Mellanox's `libmlx5.so` (RDMA), which any process using InfiniBand maps.
pub fn is_mlx_library(path: &str) -> bool {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let base = basename(path);
    if base == "mlx.metallib" {
        return true;
    }
    let libmlx = base
        .strip_prefix("libmlx")
        .is_some_and(|rest| rest.starts_with(['.', '-', '_']));
    if base.ends_with(".dylib") {
        let in_mlx_package = ["/site-packages/mlx/", "/dist-packages/mlx/"]
            .iter()
            .any(|d| path.contains(d));
        return libmlx && in_mlx_package;
    }
    libmlx && base.contains(".so")
}

/// Whether a process not (yet) found to be MLX is worth asking whether it
/// maps the MLX library, now and on later rechecks: a Python interpreter
/// (it may `import mlx` at any time) or a program whose name or program
/// string says MLX, or whose executable is an interpreter (a process may
/// rename itself, `prctl(PR_SET_NAME)` or setproctitle, before it imports
/// MLX: issue 26). The same rule on Linux (a maps read) and macOS (one
/// syscall per mapped region). A non-Python program that loads libmlx
/// under another name is found while memory is not quiet, when the largest
/// holders are checked for the library whatever they are called
/// (`Discovery::holders`), or by adding its program to `mlx.patterns`.
pub fn may_host_mlx(name: &str, program: &Program, exe: &str) -> bool {
    let says_mlx = |s: &str| s.to_ascii_lowercase().contains("mlx");
    let exe = basename(exe.strip_suffix(" (deleted)").unwrap_or(exe));
    program.interpreter
        || crate::cmdline::is_interpreter(name)
        || (!exe.is_empty() && crate::cmdline::is_interpreter(exe))
        || says_mlx(name)
        || says_mlx(&program.name)
}

/// An MLX process appeared or went away.
#[derive(Clone, Debug, PartialEq)]
pub enum ProcessEvent {
    Found(MlxProcess),
    Exited {
        process: MlxProcess,
        /// How long it was watched.
        watched: Duration,
    },
}

/// An MLX process's growth is measured over at least this long (the one
/// rate rule, src/rate.rs; over all it has until then): a training step
/// allocates and frees, and 5 s smooths that into the trend a projection
/// needs…
const GROWTH_WINDOW: Duration = Duration::from_secs(5);
/// …and starts again after a gap longer than this between two samples.
const GROWTH_MAX_GAP: Duration = Duration::from_secs(5);
/// Longest wait before a non-MLX pid is looked at again.
const MAX_RECHECK: Duration = Duration::from_secs(60);
/// At most this many absent candidate ids are carried to the next look.
const MAX_ABSENT: usize = 64;
/// The jobs list holds at most this many largest and this many fastest-growing jobs.
pub const JOBS: usize = 8;
/// This many fastest-growing processes (and the largest) are checked for
/// the MLX library whatever they are called…
const HOLDERS_CHECKED: usize = 4;
/// …each at most this often.
const HOLDER_RECHECK: Duration = Duration::from_secs(10);

/// One job summed by `Discovery::holders`.
#[derive(Default)]
struct JobAcc {
    total: u64,
    count: u32,
    mlx: bool,
    /// Its largest process.
    largest: (Bytes, Pid),
}

struct Tracked {
    process: MlxProcess,
    since: Duration,
    growth: crate::rate::Window,
}

struct Ignored {
    next_check: Duration,
    backoff: Duration,
    /// Recheck with a full examine (an interpreter, or unreadable before);
    /// otherwise only `name` and `start_time` are compared.
    full: bool,
    /// Unreadable when last looked at (a kernel thread, another user's
    /// process under hidepid, one caught mid-exec): rechecked by listings
    /// only, so thousands of kernel threads never make a quiet look due.
    unreadable: bool,
    name: String,
    start_time: u64,
}

impl Ignored {
    /// Due for a recheck by a quiet look (one that examines new pids
    /// only): an interpreter (it may `import mlx` late) or a young process
    /// (still on its first backoff steps, ~1 minute: a `bash run.sh` that
    /// activates an environment and then execs `python -m mlx_lm.lora`).
    fn quiet_due(&self, at: Duration) -> bool {
        at >= self.next_check && !self.unreadable && (self.full || self.backoff < MAX_RECHECK)
    }
}

pub struct Discovery {
    patterns: Vec<Regex>,
    detect_library: bool,
    scope: Scope,
    self_pid: Pid,
    mlx: HashMap<Pid, Tracked>,
    ignored: HashMap<Pid, Ignored>,
    events: Vec<ProcessEvent>,
    pids: Vec<Pid>,
    seen: HashSet<Pid>,
    /// Reused by rechecks, so a steady-state cycle does not allocate.
    name_buf: String,
    /// The pid being read now (`report_reading_to`).
    reading: Arc<AtomicI32>,
    /// Ids to look at once more by the next look for new pids: candidate
    /// ids of the last `scan_candidates` that named no task yet (a fork
    /// between handing out the id and showing it under /proc) or changed
    /// between two reads, and the pid of a tracked process replaced under
    /// the same pid. Each is carried once; a listing clears them.
    absent: Vec<Pid>,
    /// How many pids the last listing found.
    listed: usize,
    /// A probe had more absent ids than it may carry: list next time.
    overflowed: bool,
    /// The first listing is done: pids found after it are young.
    started: bool,
    /// `holders`: its own listing, what each pid and job held at the last
    /// read, and when a holder may next be checked for the library.
    holder_pids: Vec<Pid>,
    last_usage: HashMap<Pid, u64>,
    last_jobs: HashMap<Pid, u64>,
    holder_checked: HashMap<Pid, Duration>,
}

/// Why a process is MLX, or `None`: the first pattern that matches its
/// program string ("pattern:<regex>"), else — when `library` says which
/// library it maps — "library:<path>". The one rule on every platform.
///
/// Patterns match only a program read off argv and backed by the kernel's
/// name: not the kernel's name alone (argv empty — a process caught
/// mid-exec, or one that cleared its arguments — or contradicting it),
/// which any process can set for itself (`prctl(PR_SET_NAME)`).
pub fn mlx_rule(
    patterns: &[Regex],
    program: &Program,
    library: impl FnOnce() -> Option<String>,
) -> Option<String> {
    if !program.name.is_empty() && program.via != crate::cmdline::Via::KernelName {
        if let Some(p) = patterns.iter().find(|p| p.is_match(&program.name)) {
            return Some(format!("pattern:{}", p.as_str()));
        }
    }
    library().map(|lib| format!("library:{lib}"))
}

impl Discovery {
    pub fn new(
        patterns: Vec<Regex>,
        detect_library: bool,
        scope: Scope,
        self_pid: Pid,
    ) -> Discovery {
        Discovery {
            patterns,
            detect_library,
            scope,
            self_pid,
            mlx: HashMap::new(),
            ignored: HashMap::new(),
            events: Vec::new(),
            pids: Vec::new(),
            seen: HashSet::new(),
            name_buf: String::new(),
            reading: Arc::default(),
            absent: Vec::new(),
            listed: 0,
            overflowed: false,
            started: false,
            holder_pids: Vec::new(),
            last_usage: HashMap::new(),
            last_jobs: HashMap::new(),
            holder_checked: HashMap::new(),
        }
    }

    /// Where to say which pid a scan is reading right now (0 between
    /// scans): when a read never returns (a process in uninterruptible
    /// sleep holding its memory map lock), the daemon names the pid.
    pub fn report_reading_to(&mut self, reading: Arc<AtomicI32>) {
        self.reading = reading;
    }

    /// Look at the system once; returns the MLX processes now alive, largest first.
    pub fn scan(
        &mut self,
        src: &mut dyn ProcSource,
        at: Duration,
    ) -> std::io::Result<Vec<MlxProcess>> {
        self.scan_with(src, at, false)
    }

    /// `scan`, but only pids not seen before are examined (and the MLX
    /// ones re-measured), and of the known non-MLX pids only those that may
    /// still load MLX (interpreters: a `python train.py` maps libmlx only
    /// after its imports) are rechecked on their backoff; the name-only
    /// recheck of everything else waits for a full `scan` (the daemon's
    /// listings while memory is not quiet). O(new pids + interpreters).
    pub fn scan_new_only(
        &mut self,
        src: &mut dyn ProcSource,
        at: Duration,
    ) -> std::io::Result<Vec<MlxProcess>> {
        self.scan_with(src, at, true)
    }

    fn scan_with(
        &mut self,
        src: &mut dyn ProcSource,
        at: Duration,
        new_only: bool,
    ) -> std::io::Result<Vec<MlxProcess>> {
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        src.pids(&mut pids)?;
        self.seen.clear();
        for &pid in &pids {
            self.seen.insert(pid);
            if pid == self.self_pid || pid.0 <= 1 {
                continue;
            }
            self.reading.store(pid.0, Ordering::Relaxed);
            if self.mlx.contains_key(&pid) {
                if self.remeasure(src, pid, at) {
                    // Replaced under the same pid: a listing runs off the
                    // loop, so the new one is examined now.
                    self.examine(src, pid, at);
                }
            } else {
                match self.ignored.get(&pid) {
                    None => self.examine(src, pid, at),
                    Some(i) if (!new_only && at >= i.next_check) || i.quiet_due(at) => {
                        self.recheck(src, pid, at)
                    }
                    Some(_) => {}
                }
            }
        }
        self.reading.store(0, Ordering::Relaxed);
        self.listed = pids.len();
        self.overflowed = false;
        self.started = true;
        // A listing saw every pid there is: nothing to carry.
        self.absent.clear();
        self.pids = pids;
        // Pids no longer listed have exited.
        if self.mlx.keys().any(|p| !self.seen.contains(p)) {
            let gone: Vec<Pid> = self
                .mlx
                .keys()
                .filter(|p| !self.seen.contains(p))
                .copied()
                .collect();
            for pid in gone {
                self.exit(pid, at);
            }
        }
        let seen = &self.seen;
        self.ignored.retain(|p, _| seen.contains(p));
        Ok(self.tracked())
    }

    /// The quiet listing without a listing: the ids handed out since the
    /// last look (`candidates`, from the kernel's last-pid counter) are
    /// examined as new processes, threads' ids skipped; the MLX processes
    /// known are re-measured (exits seen) and interpreters due for their
    /// recheck rechecked (gone ones forgotten). O(new ids + interpreters),
    /// whatever the number of processes. Known non-MLX pids that exit are
    /// forgotten only by the next `scan`/`scan_new_only`, which the caller
    /// runs every so often and whenever too many ids were handed out.
    pub fn scan_candidates(
        &mut self,
        src: &mut dyn ProcSource,
        candidates: std::ops::RangeInclusive<i32>,
        at: Duration,
    ) -> Vec<MlxProcess> {
        self.remeasure_tracked(src, at);
        // Ids carried from the last look are looked at this once more.
        let carried = std::mem::take(&mut self.absent);
        let mut absent = Vec::new();
        for (pid, fresh) in carried
            .into_iter()
            .map(|p| (p, false))
            .chain(candidates.map(|p| (Pid(p), true)))
        {
            if pid == self.self_pid || pid.0 <= 1 || self.mlx.contains_key(&pid) {
                continue;
            }
            self.reading.store(pid.0, Ordering::Relaxed);
            match src.is_process(pid) {
                None if fresh => absent.push(pid),
                None | Some(false) => {}
                Some(true) => {
                    // A new id: whatever was known under it has exited.
                    self.ignored.remove(&pid);
                    self.examine(src, pid, at);
                    // Replaced between two reads ("look again"): once more.
                    if fresh && !self.mlx.contains_key(&pid) && !self.ignored.contains_key(&pid) {
                        absent.push(pid);
                    }
                }
            }
        }
        if absent.len() > MAX_ABSENT {
            // More than a probe should carry: the next look lists instead.
            self.overflowed = true;
            absent.truncate(MAX_ABSENT);
        }
        self.absent = absent;
        let due: Vec<Pid> = self
            .ignored
            .iter()
            .filter(|(_, i)| i.quiet_due(at))
            .map(|(p, _)| *p)
            .collect();
        for pid in due {
            self.reading.store(pid.0, Ordering::Relaxed);
            if src.is_process(pid) == Some(true) {
                self.recheck(src, pid, at);
            } else {
                self.ignored.remove(&pid);
            }
        }
        self.reading.store(0, Ordering::Relaxed);
        self.tracked()
    }

    /// Whether the pids remembered have outgrown the last listing (pids
    /// that exited are forgotten only by a listing): the caller then lists
    /// instead of probing candidates, so memory stays bounded.
    pub fn needs_listing(&self) -> bool {
        self.overflowed || self.ignored.len() + self.mlx.len() > 2 * self.listed + 1024
    }

    /// Whether a known pid that may still load MLX is due for its recheck
    /// at `at` (a quiet listing is then worth it even with no new pid).
    pub fn rechecks_due(&self, at: Duration) -> bool {
        !self.absent.is_empty() || self.ignored.values().any(|i| i.quiet_due(at))
    }

    /// Re-measure only the MLX processes already tracked, without listing
    /// pids: the cheap cycle while memory is quiet (src/daemon.rs decides).
    /// An exit or a reused pid is still seen; a new process waits for the
    /// next `scan`.
    pub fn remeasure_tracked(&mut self, src: &mut dyn ProcSource, at: Duration) -> Vec<MlxProcess> {
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        pids.extend(self.mlx.keys().copied());
        for &pid in &pids {
            self.reading.store(pid.0, Ordering::Relaxed);
            if self.remeasure(src, pid, at) {
                // The new process is examined by the next look for new
                // pids, not here: this may run on the loop's thread, where
                // cmdline and maps (which take a lock a stuck process
                // holds) are not read.
                self.absent.push(pid);
            }
        }
        self.reading.store(0, Ordering::Relaxed);
        self.pids = pids;
        self.tracked()
    }

    /// Whether an MLX process was found at `at` (by this sample).
    pub fn found_since(&self, at: Duration) -> bool {
        self.mlx.values().any(|t| t.since >= at)
    }

    /// The tracked MLX processes now, largest first.
    pub fn current(&self) -> Vec<MlxProcess> {
        self.tracked()
    }

    /// The tracked MLX processes, largest first.
    fn tracked(&self) -> Vec<MlxProcess> {
        let mut out: Vec<MlxProcess> = self.mlx.values().map(|t| t.process.clone()).collect();
        out.sort_by(|a, b| {
            b.footprint_bytes
                .cmp(&a.footprint_bytes)
                .then(a.pid.cmp(&b.pid))
        });
        out
    }

    /// Every process now, any user's, read once (one usage read each):
    /// the `n` largest, and the jobs (process groups, summed) that hold the
    /// most or grew the most since the last read — at most JOBS of each,
    /// largest first. The largest holders and the fastest growers not known
    /// as MLX are checked for the MLX library whatever they are called, each
    /// at most once per HOLDER_RECHECK (issue 26: a job that renamed itself
    /// was never looked at). Read only while memory is not quiet.
    pub fn holders(
        &mut self,
        src: &mut dyn ProcSource,
        at: Duration,
        n: usize,
    ) -> (Vec<TopProcess>, Vec<JobUsage>) {
        let mut pids = std::mem::take(&mut self.holder_pids);
        pids.clear();
        if src.pids(&mut pids).is_err() {
            self.holder_pids = pids;
            return (Vec::new(), Vec::new());
        }
        let mut name = std::mem::take(&mut self.name_buf);
        let mut top: Vec<(Bytes, Pid, String)> = Vec::with_capacity(n + 1);
        let mut jobs: HashMap<Pid, JobAcc> = HashMap::new();
        let mut grew: Vec<(i64, Pid)> = Vec::new();
        let mut usage_now: HashMap<Pid, u64> = HashMap::with_capacity(pids.len());
        for &pid in &pids {
            if pid == self.self_pid || pid.0 <= 1 {
                continue;
            }
            self.reading.store(pid.0, Ordering::Relaxed);
            let Some(u) = src.usage(pid, &mut name) else {
                continue;
            };
            let size = u.footprint;
            usage_now.insert(pid, size.0);
            let before = self.last_usage.get(&pid).copied().unwrap_or(0);
            grew.push((size.0 as i64 - before as i64, pid));
            let acc = jobs.entry(u.job).or_default();
            acc.total += size.0;
            acc.count += 1;
            acc.mlx |= self.mlx.contains_key(&pid);
            if size >= acc.largest.0 {
                acc.largest = (size, pid);
            }
            if top.len() == n && top.last().is_some_and(|t| t.0 >= size) {
                continue;
            }
            let at = top.partition_point(|t| t.0 >= size);
            top.insert(at, (size, pid, name.clone()));
            top.truncate(n);
        }
        self.reading.store(0, Ordering::Relaxed);
        self.name_buf = name;
        self.holder_pids = pids;
        // The largest holders and the fastest growers, whatever they are
        // called: does one map MLX?
        grew.sort_by_key(|g| std::cmp::Reverse(g.0));
        let mut check: Vec<Pid> = top.iter().map(|t| t.1).collect();
        check.extend(
            grew.iter()
                .take(HOLDERS_CHECKED)
                .filter(|g| g.0 > 0)
                .map(|g| g.1),
        );
        for pid in check {
            if self.mlx.contains_key(&pid) || self.holder_checked.get(&pid).is_some_and(|t| at < *t)
            {
                continue;
            }
            self.holder_checked.insert(pid, at + HOLDER_RECHECK);
            self.reading.store(pid.0, Ordering::Relaxed);
            self.examine_with(src, pid, at, true);
            if let Some(job) = self.mlx.get(&pid).map(|t| t.process.job_id()) {
                if let Some(acc) = jobs.get_mut(&job) {
                    acc.mlx = true;
                }
            }
        }
        self.reading.store(0, Ordering::Relaxed);
        self.holder_checked.retain(|p, _| usage_now.contains_key(p));
        // Jobs: the largest JOBS and the JOBS that grew most since the last read.
        let grown = |job: &Pid, acc: &JobAcc| {
            acc.total as i64 - self.last_jobs.get(job).copied().unwrap_or(0) as i64
        };
        let mut by_size: Vec<(&Pid, &JobAcc)> = jobs.iter().collect();
        by_size.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
        let mut chosen: Vec<Pid> = by_size.iter().take(JOBS).map(|(j, _)| **j).collect();
        let mut by_growth: Vec<(i64, Pid)> = jobs
            .iter()
            .map(|(j, acc)| (grown(j, acc), *j))
            .filter(|(g, _)| *g > 0)
            .collect();
        by_growth.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, j) in by_growth.into_iter().take(JOBS) {
            if !chosen.contains(&j) {
                chosen.push(j);
            }
        }
        let mut out: Vec<JobUsage> = chosen
            .into_iter()
            .filter_map(|job| {
                let acc = jobs.get(&job)?;
                let pid = acc.largest.1;
                let id = src.identity(pid);
                Some(JobUsage {
                    job,
                    uid: id.as_ref().map(|id| id.uid),
                    name: id
                        .as_ref()
                        .map(|id| Program::of(&id.argv, &id.name).display())
                        .unwrap_or_else(|| format!("pid {pid}")),
                    processes: acc.count,
                    footprint_bytes: Bytes(acc.total),
                    mlx: acc.mlx,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.footprint_bytes
                .cmp(&a.footprint_bytes)
                .then(a.job.cmp(&b.job))
        });
        self.last_jobs = jobs.iter().map(|(j, a)| (*j, a.total)).collect();
        self.last_usage = usage_now;
        let top = top
            .into_iter()
            .map(|(size, pid, kernel_name)| {
                let id = src.identity(pid);
                let name = id
                    .as_ref()
                    .map(|id| Program::of(&id.argv, &id.name).display())
                    .unwrap_or(kernel_name);
                TopProcess {
                    pid,
                    uid: id.map(|id| id.uid),
                    name,
                    footprint_bytes: size,
                    mlx: self.mlx.contains_key(&pid),
                }
            })
            .collect();
        (top, out)
    }

    /// Memory is quiet again: what the last holders read saw is stale by
    /// the next incident (a process's "growth since the last read").
    pub fn forget_holders(&mut self) {
        self.last_usage.clear();
        self.last_jobs.clear();
        self.holder_checked.clear();
    }

    pub fn take_events(&mut self) -> Vec<ProcessEvent> {
        std::mem::take(&mut self.events)
    }

    fn exit(&mut self, pid: Pid, at: Duration) {
        if let Some(t) = self.mlx.remove(&pid) {
            self.events.push(ProcessEvent::Exited {
                process: t.process,
                watched: at.saturating_sub(t.since),
            });
        }
    }

    /// Re-measure a tracked pid; `true` when the pid now names another
    /// process (the one watched has exited), which the caller examines.
    fn remeasure(&mut self, src: &mut dyn ProcSource, pid: Pid, at: Duration) -> bool {
        let Some(m) = src.measure(pid) else {
            self.exit(pid, at);
            return false;
        };
        let Some(t) = self.mlx.get_mut(&pid) else {
            return false;
        };
        if m.start_time != t.process.start_time {
            self.exit(pid, at);
            return true;
        }
        update(t, m, at);
        false
    }

    /// A known non-MLX pid whose backoff ran out: an interpreter is examined
    /// afresh; anything else only if its name or start time changed.
    fn recheck(&mut self, src: &mut dyn ProcSource, pid: Pid, at: Duration) {
        let Some(i) = self.ignored.get(&pid) else {
            return;
        };
        if i.full {
            self.examine(src, pid, at);
            return;
        }
        let mut name = std::mem::take(&mut self.name_buf);
        let start = src.name(pid, &mut name);
        let unchanged = self
            .ignored
            .get(&pid)
            .is_some_and(|i| start == Some(i.start_time) && name == i.name);
        self.name_buf = name;
        if unchanged {
            self.backoff(pid, at, false);
        } else {
            self.examine(src, pid, at);
        }
    }

    fn examine(&mut self, src: &mut dyn ProcSource, pid: Pid, at: Duration) {
        self.examine_with(src, pid, at, false);
    }

    /// `examine`; with `any_name`, the library is looked for whatever the
    /// process is called (a large holder while memory is not quiet).
    fn examine_with(&mut self, src: &mut dyn ProcSource, pid: Pid, at: Duration, any_name: bool) {
        let Some(id) = src.identity(pid) else {
            self.ignore(pid, at, None);
            return;
        };
        if !self.scope.watches(id.uid) {
            // Out of scope for good: uid does not change without exec-as-root.
            self.ignored.insert(
                pid,
                Ignored {
                    next_check: Duration::MAX,
                    backoff: MAX_RECHECK,
                    full: false,
                    unreadable: false,
                    name: String::new(),
                    start_time: id.start_time,
                },
            );
            return;
        }
        let program = Program::of(&id.argv, &id.name);
        let hosts = self.detect_library && may_host_mlx(&id.name, &program, &id.exe);
        let matched = mlx_rule(&self.patterns, &program, || {
            if hosts || (self.detect_library && any_name) {
                src.mlx_library(pid)
            } else {
                None
            }
        });
        let Some(matched_by) = matched else {
            // A holder looked at whatever its name is rechecked like any
            // other process (not by its maps on every backoff: that is the
            // holders check's, at most once per HOLDER_RECHECK).
            self.ignore(pid, at, Some((&id, hosts)));
            return;
        };
        let Some(m) = src.measure(pid) else { return };
        if m.start_time != id.start_time {
            return; // replaced between reads; look again next cycle
        }
        self.ignored.remove(&pid);
        let process = MlxProcess {
            pid,
            uid: id.uid,
            start_time: id.start_time,
            cmdline: id.cmdline(),
            name: id.name,
            program: program.name,
            footprint_bytes: m.footprint,
            rss_bytes: m.rss,
            peak_bytes: m.footprint,
            growth_bytes_per_sec: 0.0,
            matched_by,
            job: m.job,
        };
        self.events.push(ProcessEvent::Found(process.clone()));
        let mut growth = crate::rate::Window::new(GROWTH_WINDOW).with_max_gap(GROWTH_MAX_GAP);
        growth.push(at, m.footprint.0 as f64);
        self.mlx.insert(
            pid,
            Tracked {
                process,
                since: at,
                growth,
            },
        );
    }

    /// Not MLX (`id` known, with whether it may still load the library) or
    /// unreadable (`None`): look again later.
    fn ignore(&mut self, pid: Pid, at: Duration, id: Option<(&ProcIdentity, bool)>) {
        let first_sight = !self.ignored.contains_key(&pid);
        let at_start = !self.started;
        let e = self.ignored.entry(pid).or_insert(Ignored {
            next_check: at,
            backoff: Duration::from_secs(1),
            full: true,
            unreadable: false,
            name: String::new(),
            start_time: 0,
        });
        e.unreadable = id.is_none();
        match id {
            Some((id, hosts)) => {
                e.full = hosts;
                e.name.clone_from(&id.name);
                e.start_time = id.start_time;
            }
            None => e.full = true,
        }
        if first_sight && at_start && !e.full {
            // Running before headroom started: not young (a young process
            // is rechecked by quiet looks; thousands found by the first
            // listing would make every quiet look read them all).
            e.backoff = MAX_RECHECK;
        }
        self.backoff(pid, at, id.is_none());
    }

    fn backoff(&mut self, pid: Pid, at: Duration, unreadable: bool) {
        let Some(e) = self.ignored.get_mut(&pid) else {
            return;
        };
        if unreadable {
            e.backoff = MAX_RECHECK;
        }
        e.next_check = at + e.backoff;
        e.backoff = (e.backoff * 2).min(MAX_RECHECK);
    }
}

fn update(t: &mut Tracked, m: ProcMeasure, at: Duration) {
    let p = &mut t.process;
    p.footprint_bytes = m.footprint;
    p.rss_bytes = m.rss;
    p.job = m.job.or(p.job);
    p.peak_bytes = p.peak_bytes.max(m.footprint);
    // After a gap longer than GROWTH_MAX_GAP (the daemon was SIGSTOPped,
    // or the machine stalled it) the rate starts again (issue 9).
    p.growth_bytes_per_sec = t.growth.push(at, m.footprint.0 as f64).unwrap_or(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// An in-memory process table: the ProcSource contract without an OS.
    #[derive(Default)]
    struct Table {
        procs: HashMap<Pid, (ProcIdentity, Option<String>, ProcMeasure)>,
        identity_reads: usize,
        name_reads: usize,
        /// The listing fails (macOS: proc_listpids answered 0).
        list_fails: bool,
        /// Ids that are threads of a process in `procs` (readable, never
        /// listed): `is_process` says so.
        threads: HashMap<Pid, Pid>,
        maps_reads: usize,
    }

    impl ProcSource for Table {
        fn pids(&mut self, out: &mut Vec<Pid>) -> std::io::Result<()> {
            if self.list_fails {
                return Err(std::io::Error::other("proc_listpids listed no processes"));
            }
            out.extend(self.procs.keys().copied());
            Ok(())
        }
        fn identity(&mut self, pid: Pid) -> Option<ProcIdentity> {
            self.identity_reads += 1;
            // A thread's id reads as its process (as /proc/TID does).
            let pid = self.threads.get(&pid).copied().unwrap_or(pid);
            self.procs.get(&pid).map(|p| p.0.clone())
        }
        fn is_process(&mut self, pid: Pid) -> Option<bool> {
            if self.threads.contains_key(&pid) {
                return Some(false);
            }
            self.procs.get(&pid).map(|_| true)
        }
        fn mlx_library(&mut self, pid: Pid) -> Option<String> {
            self.maps_reads += 1;
            self.procs.get(&pid).and_then(|p| p.1.clone())
        }
        fn measure(&mut self, pid: Pid) -> Option<ProcMeasure> {
            self.procs.get(&pid).map(|p| p.2)
        }
        fn name(&mut self, pid: Pid, name: &mut String) -> Option<u64> {
            self.name_reads += 1;
            let id = &self.procs.get(&pid)?.0;
            name.clear();
            name.push_str(&id.name);
            Some(id.start_time)
        }
    }

    /// Issue 26: while memory is not quiet every process is summed into its
    /// job, and the largest holders and fastest growers are checked for the
    /// MLX library whatever they are called (a renamed job is found); a
    /// holder that is not MLX is not read again before HOLDER_RECHECK, and
    /// the quiet rechecks do not read its maps.
    #[test]
    fn holders_are_summed_by_job_and_the_largest_checked_for_mlx_whatever_their_name() {
        let mut t = Table::default();
        let lib = "/v/lib/python3.12/site-packages/mlx/lib/libmlx.so";
        add(&mut t, 10, 501, "trainer-0 run.py", Some(lib), 3000);
        add(&mut t, 20, 501, "/usr/lib/firefox/firefox", None, 2000);
        for pid in 30..38 {
            add(&mut t, pid, 501, "workers.py --rank 1", None, 100);
            if let Some(p) = t.procs.get_mut(&Pid(pid)) {
                p.2.job = Some(Pid(30));
            }
        }
        let mut d = discovery(Scope::user(501));
        let found = d.scan(&mut t, Duration::ZERO).expect("scan");
        assert!(found.is_empty(), "its name says nothing: {found:?}");
        assert_eq!(t.maps_reads, 0);
        d.take_events();
        let (top, jobs) = d.holders(&mut t, Duration::from_secs(1), 3);
        assert_eq!((top[0].pid, top[0].mlx), (Pid(10), true), "{top:?}");
        assert!(matches!(d.take_events().as_slice(), [ProcessEvent::Found(p)] if p.pid == Pid(10)));
        let workers = jobs
            .iter()
            .find(|j| j.job == Pid(30))
            .expect("the workers' job");
        assert_eq!(
            (workers.processes, workers.footprint_bytes),
            (8, Bytes::mib(800))
        );
        assert!(!workers.mlx);
        assert!(jobs.iter().any(|j| j.job == Pid(10) && j.mlx), "{jobs:?}");
        let reads = t.maps_reads;
        assert!(reads >= 2, "firefox was looked at too: {reads}");
        d.holders(&mut t, Duration::from_secs(2), 3);
        assert_eq!(t.maps_reads, reads, "not again within HOLDER_RECHECK");
        d.scan_new_only(&mut t, Duration::from_secs(70))
            .expect("scan");
        assert_eq!(
            t.maps_reads, reads,
            "a quiet recheck reads no holder's maps"
        );
        d.holders(&mut t, Duration::from_secs(12), 3);
        assert!(t.maps_reads > reads, "again after HOLDER_RECHECK");
    }

    #[test]
    fn those_that_may_host_mlx_are_interpreters_or_say_mlx() {
        // (kernel name, command line, may host)
        let rows = [
            ("python3", "python3 train.py", true),
            ("python3.12", "/v/bin/python3.12 -m foo", true),
            (
                "Python",
                "/Library/Frameworks/Python.framework/Python x.py",
                true,
            ),
            // A #! script is named after itself; its argv[0] is the interpreter.
            ("train.py", "/usr/bin/python3 ./train.py", true),
            ("mlx-server", "/usr/local/bin/mlx-server", true),
            ("bash", "bash run.sh", false),
            ("tail", "tail -f mlx_lm.log", false),
            (
                "Safari",
                "/Applications/Safari.app/Contents/MacOS/Safari",
                false,
            ),
            ("systemd", "/sbin/init", false),
            ("py", "py", false),
        ];
        for (name, cmd, want) in rows {
            let argv: Vec<&str> = cmd.split(' ').collect();
            assert_eq!(
                may_host_mlx(name, &Program::of(&argv, name), ""),
                want,
                "{name} {cmd}"
            );
        }
        // Issue 26: a Python that renamed itself (prctl / setproctitle)
        // is still asked, by its executable; another program is not.
        let renamed = Program::of(&["trainer-0"], "trainer-0");
        assert!(may_host_mlx("trainer-0", &renamed, "/usr/bin/python3.12"));
        assert!(may_host_mlx(
            "trainer-0",
            &renamed,
            "/opt/venv/bin/python3 (deleted)"
        ));
        assert!(!may_host_mlx("trainer-0", &renamed, "/usr/bin/make"));
        assert!(!may_host_mlx("trainer-0", &renamed, ""));
    }

    #[test]
    fn mlx_library_paths() {
        let yes = [
            "/Users/a/venv/lib/python3.12/site-packages/mlx/lib/libmlx.dylib",
            "/opt/homebrew/lib/python3.13/site-packages/mlx/lib/libmlx.dylib",
            "/usr/lib/python3/dist-packages/mlx/lib/libmlx.dylib",
            "/opt/homebrew/lib/mlx.metallib",
            "/v/lib/python3.11/site-packages/mlx/lib/libmlx.so",
            "/usr/lib/libmlx.so.0.21",
            "/v/mlx.libs/libmlx-3b2a1c.so",
            "/v/lib/libmlx.so (deleted)",
            "/Users/a/venv/lib/python3.12/site-packages/mlx/lib/mlx.metallib",
        ];
        let no = [
            "/Users/a/venv/lib/python3.12/site-packages/mlx/core.cpython-312-darwin.so",
            "/usr/lib/x86_64-linux-gnu/libmlx5.so.1",
            "/v/mlx_cpu.libs/libgfortran-040039e1.so.5.0.0",
            "/usr/lib/libmlxfoo.dylib",
            "/Users/a/libmlx.txt",
            "/Users/a/notes/mlx.metallib.md",
            // Issue 16: MiniLibX (a graphics library) is libmlx.dylib too.
            "/Users/a/so_long/mlx/libmlx.dylib",
            "/usr/local/lib/libmlx.dylib",
            "/Users/a/site-packages-notes/minilibx/libmlx.dylib",
        ];
        for p in yes {
            assert!(is_mlx_library(p), "{p}");
        }
        for p in no {
            assert!(!is_mlx_library(p), "{p}");
        }
    }

    #[test]
    fn non_interpreters_are_rechecked_by_name_only_and_caught_after_exec() {
        let mut t = Table::default();
        for pid in 2..102 {
            add(&mut t, pid, 501, "bash run.sh", None, 1);
        }
        let mut d = discovery(Scope::user(501));
        d.scan(&mut t, Duration::ZERO).expect("scan");
        assert_eq!(t.identity_reads, 100);
        // Running before headroom: their first recheck comes after the
        // longest backoff (60 s), not after 1 s.
        d.scan(&mut t, Duration::from_secs(1)).expect("scan");
        assert_eq!(t.name_reads, 0, "not young: no recheck yet");
        d.scan(&mut t, Duration::from_secs(60)).expect("scan");
        assert_eq!(t.identity_reads, 100, "unchanged names: no full examine");
        assert_eq!(
            t.name_reads, 100,
            "one cheap read each when the backoff ran out"
        );

        // pid 7 execs into mlx_lm (same pid and start time, new name).
        let p = t.procs.get_mut(&Pid(7)).expect("pid 7");
        p.0.name = "python3".into();
        p.0.argv = vec!["python3".into(), "-m".into(), "mlx_lm.lora".into()];
        let found = d.scan(&mut t, Duration::from_secs(120)).expect("scan");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pid, Pid(7));
        assert_eq!(t.identity_reads, 101);
    }

    #[test]
    fn a_new_pids_only_scan_reads_only_the_new_pids() {
        let mut t = Table::default();
        for pid in 2..1002 {
            let cmd = if pid % 2 == 0 {
                "bash run.sh"
            } else {
                "python3 x.py"
            };
            add(&mut t, pid, 501, cmd, None, 1);
        }
        let mut d = discovery(Scope::user(501));
        d.scan(&mut t, Duration::ZERO).expect("scan");
        assert_eq!(t.identity_reads, 999, "every pid but headroom's (999)");
        // Running before headroom started, so not young: a quiet look
        // reads none of the shells (only the interpreters on backoff).
        d.scan_new_only(&mut t, Duration::from_secs(1))
            .expect("scan");
        assert_eq!(t.name_reads, 0, "no shell read by a quiet look");
        age(&mut d, &mut t);
        let (ids, names) = (t.identity_reads, t.name_reads);
        // Long after every backoff ran out: no read of a known shell.
        add(&mut t, 5000, 501, "python3 -m mlx_lm.lora", None, 64);
        let found = d
            .scan_new_only(&mut t, Duration::from_secs(600))
            .expect("scan");
        assert_eq!(found.len(), 1, "the new MLX process is found");
        assert_eq!(
            t.identity_reads - ids,
            1 + 499,
            "the new pid, and the 499 interpreters (not 999, headroom) whose backoff ran out"
        );
        assert_eq!(t.name_reads, names, "no recheck of an old non-interpreter");
        assert!(!d.rechecks_due(Duration::from_secs(601)));
        assert!(d.rechecks_due(Duration::from_secs(600 + 61)));
        // A full scan rechecks them again (memory no longer quiet).
        let before = t.identity_reads + t.name_reads;
        d.scan(&mut t, Duration::from_secs(1000)).expect("scan");
        assert!(t.identity_reads + t.name_reads - before >= 999);
    }

    /// Scans until every known pid's backoff has reached its longest (no
    /// longer young): at 1, 3, 7, 15 and 31 s after a first scan at 0.
    fn age(d: &mut Discovery, t: &mut Table) {
        for s in [1, 3, 7, 15, 31] {
            d.scan(t, Duration::from_secs(s)).expect("scan");
        }
    }

    /// No id handed out since the last look.
    #[allow(clippy::reversed_empty_ranges)]
    const NONE: std::ops::RangeInclusive<i32> = 1..=0;

    #[test]
    fn probing_new_ids_finds_new_processes_never_threads_and_reads_nothing_known() {
        let mut t = Table::default();
        for pid in 2..502 {
            add(&mut t, pid, 501, "bash run.sh", None, 1);
        }
        add(&mut t, 600, 501, "python3 -m mlx_lm.lora --train", None, 64);
        let mut d = discovery(Scope::user(501));
        let found = d.scan(&mut t, Duration::ZERO).expect("scan");
        assert_eq!(found.len(), 1);
        age(&mut d, &mut t);
        let (reads, names) = (t.identity_reads, t.name_reads);
        // Ids 601..=610 handed out since: 603 a new MLX job, 604 and 605
        // threads of the tracked one (/proc/TID reads as the trainer: taken
        // for a process they would be a second and third "MLX job"), 606
        // a new shell, 607 not shown under /proc yet, the rest gone.
        add(
            &mut t,
            603,
            501,
            "python3 -m mlx_lm.generate --model m",
            None,
            8,
        );
        t.threads.insert(Pid(604), Pid(600));
        t.threads.insert(Pid(605), Pid(600));
        add(&mut t, 606, 501, "bash", None, 1);
        let found = d.scan_candidates(&mut t, 601..=610, Duration::from_secs(40));
        let pids: Vec<i32> = found.iter().map(|p| p.pid.0).collect();
        assert_eq!(
            pids,
            vec![600, 603],
            "the trainer and the new job, no thread"
        );
        assert_eq!(
            t.identity_reads - reads,
            2,
            "only the two new processes were read, none of the 500 known"
        );
        assert_eq!(t.name_reads, names);
        // 607 shows up after the look: the next look (no new ids) finds it.
        add(&mut t, 607, 501, "python3 -m mlx_lm.server", None, 8);
        let found = d.scan_candidates(&mut t, NONE.clone(), Duration::from_secs(50));
        assert!(found.iter().any(|p| p.pid == Pid(607)), "{found:?}");
        // A known shell's id handed out again (it exited, its id was
        // reused by an MLX job): examined afresh, not skipped as known.
        add(&mut t, 42, 501, "python3 -m mlx_lm.lora --train", None, 8);
        let found = d.scan_candidates(&mut t, 42..=42, Duration::from_secs(60));
        assert!(found.iter().any(|p| p.pid == Pid(42)), "{found:?}");
        // The tracked trainer exits: seen without a listing.
        t.procs.remove(&Pid(600));
        let found = d.scan_candidates(&mut t, NONE.clone(), Duration::from_secs(70));
        assert!(!found.iter().any(|p| p.pid == Pid(600)));
    }

    #[test]
    fn an_absent_id_is_looked_at_once_more_then_dropped() {
        let mut t = Table::default();
        add(&mut t, 10, 501, "bash", None, 1);
        let mut d = discovery(Scope::user(501));
        d.scan(&mut t, Duration::ZERO).expect("scan");
        // 20 never shows up (a thread that exited, a failed fork).
        d.scan_candidates(&mut t, 20..=20, Duration::from_secs(1));
        assert!(
            d.rechecks_due(Duration::from_secs(1)),
            "a carried id makes a look due"
        );
        let reads = t.identity_reads;
        d.scan_candidates(&mut t, NONE.clone(), Duration::from_secs(2));
        assert!(!d.absent.contains(&Pid(20)), "carried once only");
        // Shown only now: too late for the probe; a listing finds it.
        add(&mut t, 20, 501, "python3 -m mlx_lm.lora", None, 8);
        let found = d.scan_candidates(&mut t, NONE.clone(), Duration::from_secs(3));
        assert!(found.is_empty());
        assert_eq!(t.identity_reads, reads, "no read of an id dropped");
        let found = d
            .scan_new_only(&mut t, Duration::from_secs(4))
            .expect("scan");
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn a_young_shell_that_execs_a_trainer_is_found_by_a_quiet_look() {
        let mut t = Table::default();
        add(&mut t, 5, 501, "bash", None, 1);
        let mut d = discovery(Scope::user(501));
        d.scan(&mut t, Duration::ZERO).expect("scan");
        // A script starts after headroom (found by the ids handed out)...
        add(&mut t, 10, 501, "bash run.sh", None, 1);
        assert!(d
            .scan_candidates(&mut t, 10..=10, Duration::from_secs(1))
            .is_empty());
        // ...and 3 s in execs the trainer (same pid and start time, a new
        // name and command line): a quiet look with no new id finds it.
        add(&mut t, 10, 501, "python3 -m mlx_lm.lora --train", None, 8);
        let found = d.scan_candidates(&mut t, NONE.clone(), Duration::from_secs(4));
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn a_tracked_pid_reused_is_examined_by_the_next_look_not_on_the_loop() {
        let mut t = Table::default();
        add(&mut t, 10, 501, "python3 -m mlx_lm.lora --train", None, 8);
        let mut d = discovery(Scope::user(501));
        assert_eq!(d.scan(&mut t, Duration::ZERO).expect("scan").len(), 1);
        // The trainer exits; a new MLX job gets the same pid.
        t.procs.remove(&Pid(10));
        add(&mut t, 10, 501, "python3 -m mlx_lm.generate", None, 8);
        if let Some(p) = t.procs.get_mut(&Pid(10)) {
            p.0.start_time += 1;
            p.2.start_time += 1;
        }
        let reads = t.identity_reads;
        let found = d.remeasure_tracked(&mut t, Duration::from_secs(1));
        assert!(found.is_empty(), "the old trainer has exited");
        assert_eq!(t.identity_reads, reads, "no cmdline/maps read on the loop");
        let found = d.scan_candidates(&mut t, NONE.clone(), Duration::from_secs(2));
        assert_eq!(found.len(), 1, "the new job, by the next look");
        assert_eq!(found[0].start_time, 111);
    }

    #[test]
    fn remembered_pids_outgrowing_the_listing_ask_for_one() {
        let mut t = Table::default();
        for pid in 2..12 {
            add(&mut t, pid, 501, "bash", None, 1);
        }
        let mut d = discovery(Scope::user(501));
        d.scan(&mut t, Duration::ZERO).expect("scan");
        assert!(!d.needs_listing());
        // Short-lived processes come and go between looks; probing never
        // sees them exit, so they pile up until a listing.
        for pid in 100..1200 {
            add(&mut t, pid, 501, "bash", None, 1);
        }
        d.scan_candidates(&mut t, 100..=1199, Duration::from_secs(1));
        assert!(d.needs_listing());
        for pid in 100..1200 {
            t.procs.remove(&Pid(pid));
        }
        d.scan_new_only(&mut t, Duration::from_secs(2))
            .expect("scan");
        assert!(!d.needs_listing(), "the listing forgot the exited pids");
    }

    fn add(t: &mut Table, pid: i32, uid: u32, cmd: &str, lib: Option<&str>, mib: u64) {
        let argv: Vec<String> = cmd.split(' ').map(String::from).collect();
        let id = ProcIdentity {
            uid,
            start_time: 100 + pid as u64,
            name: kernel_name(&argv),
            argv,
            exe: String::new(),
        };
        let m = ProcMeasure {
            start_time: 100 + pid as u64,
            footprint: Bytes::mib(mib),
            rss: Bytes::mib(mib),
            job: None,
        };
        t.procs.insert(Pid(pid), (id, lib.map(String::from), m));
    }

    /// The name the kernel would give: the script's for a `#!` script run
    /// by path, else argv[0]'s basename.
    fn kernel_name(argv: &[String]) -> String {
        let base = |s: &str| basename(s).chars().take(15).collect::<String>();
        match argv.get(1) {
            Some(s) if s.contains('/') && crate::cmdline::is_interpreter(basename(&argv[0])) => {
                base(s)
            }
            _ => base(argv.first().map_or("", |s| s)),
        }
    }

    fn discovery(scope: Scope) -> Discovery {
        let c = Config::embedded().expect("defaults");
        Discovery::new(c.patterns, true, scope, Pid(999))
    }

    #[test]
    fn default_patterns_match_mlx_programs_and_not_lookalikes() {
        let c = Config::embedded().expect("defaults");
        let is_mlx = |cmd: &str| {
            let argv: Vec<String> = cmd.split(' ').map(String::from).collect();
            let name = kernel_name(&argv);
            mlx_rule(&c.patterns, &Program::of(&argv, &name), || None).is_some()
        };
        let yes = [
            "/Users/a/venv/bin/python3 /Users/a/venv/bin/mlx_lm.lora --model m --train --batch-size 4",
            "/v/bin/python3 /v/bin/mlx_lm.generate --model mlx-community/Llama-3.2-3B-Instruct-4bit --prompt hi",
            "python -m mlx_lm.lora --train",
            "python3 -m mlx_lm generate --model x",
            "/opt/homebrew/bin/python3.12 /opt/homebrew/bin/mlx_lm server",
            "python -m mlx_vlm.generate --model x",
            "/v/bin/python3 /v/bin/mlx_vlm.chat",
            "/usr/bin/python3 /venv/bin/mlx.launch --hosts a,b train.py",
            "python3 -m mlx_lm.models.llama",
        ];
        // The lookalikes of issue 12: an argument mentions MLX, the program is not.
        let no = [
            "tail -f ./mlx_lm.log",
            "grep mlx_vlm.generate",
            "vim mlx_vlm.md",
            "tmux new -s mlx-lm",
            "/v/bin/python3 /v/bin/pip install -U mlx-lm",
            "git clone https://github.com/ml-explore/mlx-lm",
            "/usr/lib/git-core/git-remote-https origin https://github.com/ml-explore/mlx-lm",
            "ls /home/a/src/mlx_lm",
            "rsync -a /data/mlx_lm /backup",
            "docker run --name mlx-lm img",
            "man mlx.launch",
            "ssh box python -m mlx_lm.lora --train",
            "bash -c python -m mlx_lm.lora",
            "python train.py",
            "cat mlx_lm",
            "/usr/bin/headroom run",
            "/bin/sh /home/a/mlx-lm/run.sh",
        ];
        // The kernel's name alone never matches: no argv (mid-exec), or
        // argv that contradicts it (a process may name itself anything).
        for (argv, name) in [
            (vec![], "mlx_lm.lora"),
            (vec!["python3", "-m", "foo"], "mlx_lm.lora"),
            (vec!["/usr/bin/sleep", "9"], "mlx_lm.lora"),
        ] {
            let p = Program::of(&argv, name);
            assert!(
                mlx_rule(&c.patterns, &p, || None).is_none(),
                "{argv:?} named {name}"
            );
        }
        for cmd in yes {
            assert!(is_mlx(cmd), "should be MLX: {cmd}");
        }
        for cmd in no {
            assert!(!is_mlx(cmd), "should not be MLX: {cmd}");
        }
    }

    #[test]
    fn finds_by_pattern_or_library_skips_others_self_and_other_users() {
        let mut t = Table::default();
        add(&mut t, 10, 501, "python -m mlx_lm.lora --train", None, 100);
        add(
            &mut t,
            11,
            501,
            "python train.py",
            Some("/v/lib/libmlx.so"),
            300,
        );
        add(&mut t, 12, 501, "python other.py", None, 900);
        add(&mut t, 13, 502, "python -m mlx_lm.lora", None, 50);
        add(
            &mut t,
            999,
            501,
            "python -m mlx_lm.lora (the daemon itself)",
            None,
            5,
        );
        let mut d = discovery(Scope::user(501));
        let found = d.scan(&mut t, Duration::ZERO).expect("scan");
        let pids: Vec<i32> = found.iter().map(|p| p.pid.0).collect();
        assert_eq!(
            pids,
            vec![11, 10],
            "largest first; not 12 (no mlx), 13 (other user), 999 (self)"
        );
        assert!(found[0].matched_by.starts_with("library:"));
        assert!(found[1].matched_by.starts_with("pattern:"));
        assert_eq!(d.take_events().len(), 2);

        let mut all = discovery(Scope::root([]));
        assert_eq!(all.scan(&mut t, Duration::ZERO).expect("scan").len(), 3);
    }

    #[test]
    fn known_pids_are_not_re_examined_every_cycle() {
        let mut t = Table::default();
        for pid in 2..200 {
            add(&mut t, pid, 501, "bash", None, 1);
        }
        let mut d = discovery(Scope::user(501));
        d.scan(&mut t, Duration::ZERO).expect("scan");
        let first = t.identity_reads;
        assert_eq!(first, 198);
        d.scan(&mut t, Duration::from_millis(500)).expect("scan");
        assert_eq!(
            t.identity_reads, first,
            "no identity reads for known non-MLX pids inside the backoff"
        );
    }

    #[test]
    fn remeasuring_tracked_pids_lists_nothing_yet_sees_growth_exits_and_reuse() {
        let mut t = Table::default();
        for pid in 2..50 {
            add(&mut t, pid, 501, "bash", None, 1);
        }
        add(&mut t, 60, 501, "mlx_lm.lora --train", None, 100);
        add(&mut t, 61, 501, "mlx_lm.generate", None, 50);
        let mut d = discovery(Scope::user(501));
        assert_eq!(d.scan(&mut t, Duration::ZERO).expect("scan").len(), 2);
        d.take_events();
        let reads = t.identity_reads;

        // A new MLX process is not looked for; the known one's growth is seen.
        add(&mut t, 70, 501, "mlx_lm.lora", None, 10);
        t.procs.get_mut(&Pid(60)).expect("pid").2.footprint = Bytes::mib(300);
        let found = d.remeasure_tracked(&mut t, Duration::from_secs(1));
        let pids: Vec<i32> = found.iter().map(|p| p.pid.0).collect();
        assert_eq!(pids, vec![60, 61], "largest first, 70 not yet");
        assert!(found[0].growth_bytes_per_sec > 100.0 * Bytes::MIB as f64);
        assert_eq!(t.identity_reads, reads, "no examine of anything");
        assert!(d.take_events().is_empty());

        // 61 exits, 60's pid is reused by another process: both seen.
        t.procs.remove(&Pid(61));
        add(&mut t, 60, 501, "vim", None, 1);
        t.procs.get_mut(&Pid(60)).expect("pid").2.start_time = 7;
        t.procs.get_mut(&Pid(60)).expect("pid").0.start_time = 7;
        assert!(d
            .remeasure_tracked(&mut t, Duration::from_secs(2))
            .is_empty());
        let exited: Vec<i32> = d
            .take_events()
            .iter()
            .filter_map(|e| match e {
                ProcessEvent::Exited { process, .. } => Some(process.pid.0),
                _ => None,
            })
            .collect();
        assert_eq!(exited.len(), 2, "{exited:?}");

        // The next full scan finds the new one.
        let found = d.scan(&mut t, Duration::from_secs(3)).expect("scan");
        assert_eq!(found.iter().map(|p| p.pid.0).collect::<Vec<_>>(), vec![70]);
    }

    #[test]
    fn late_import_of_mlx_is_caught_on_recheck() {
        let mut t = Table::default();
        add(&mut t, 20, 501, "python train.py", None, 10);
        let mut d = discovery(Scope::user(501));
        assert!(d.scan(&mut t, Duration::ZERO).expect("scan").is_empty());
        t.procs.get_mut(&Pid(20)).expect("pid 20").1 = Some("/v/libmlx.so".into());
        assert!(d.scan(&mut t, Duration::from_secs(1)).expect("scan").len() == 1);
    }

    #[test]
    fn growth_peak_exit_and_pid_reuse() {
        let mut t = Table::default();
        add(&mut t, 30, 501, "mlx_lm.lora --train", None, 100);
        let mut d = discovery(Scope::user(501));
        d.scan(&mut t, Duration::ZERO).expect("scan");
        for (s, mib) in [(1, 200), (2, 300)] {
            t.procs.get_mut(&Pid(30)).expect("pid").2.footprint = Bytes::mib(mib);
            d.scan(&mut t, Duration::from_secs(s)).expect("scan");
        }
        t.procs.get_mut(&Pid(30)).expect("pid").2.footprint = Bytes::mib(250);
        let p = d
            .scan(&mut t, Duration::from_secs(3))
            .expect("scan")
            .remove(0);
        assert_eq!(p.peak_bytes, Bytes::mib(300));
        assert!(
            (p.growth_bytes_per_sec - 50.0 * Bytes::MIB as f64).abs() < 1.0,
            "{}",
            p.growth_bytes_per_sec
        );
        d.take_events();

        // Same pid, new start time: the old process exited, the new one is examined afresh.
        add(&mut t, 30, 501, "vim", None, 1);
        t.procs.get_mut(&Pid(30)).expect("pid").0.start_time = 7;
        t.procs.get_mut(&Pid(30)).expect("pid").2.start_time = 7;
        assert!(d
            .scan(&mut t, Duration::from_secs(4))
            .expect("scan")
            .is_empty());
        let ev = d.take_events();
        assert!(
            matches!(&ev[..], [ProcessEvent::Exited { process, .. }] if process.peak_bytes == Bytes::mib(300))
        );

        add(&mut t, 31, 501, "mlx_lm.lora", None, 1);
        d.scan(&mut t, Duration::from_secs(5)).expect("scan");
        t.procs.remove(&Pid(31));
        d.scan(&mut t, Duration::from_secs(6)).expect("scan");
        let ev = d.take_events();
        assert!(
            matches!(ev.last(), Some(ProcessEvent::Exited { process, .. }) if process.pid == Pid(31))
        );
    }

    /// Issue 16: libproc's proc_listpids answers 0 on failure, which the
    /// macOS source turns into an error (`macos_vm::listed_pid_count`). A
    /// failed listing is not every tracked job exiting at once.
    #[test]
    fn a_failed_process_listing_is_an_error_not_every_job_exiting() {
        let mut t = Table::default();
        add(&mut t, 7, 501, "python3 -m mlx_lm.lora", None, 100);
        add(&mut t, 8, 501, "bash run.sh", None, 1);
        let mut d = discovery(Scope::user(501));
        assert_eq!(d.scan(&mut t, Duration::ZERO).expect("scan").len(), 1);
        d.take_events();
        t.list_fails = true;
        let e = d
            .scan(&mut t, Duration::from_secs(1))
            .expect_err("a failed listing");
        assert!(e.to_string().contains("proc_listpids"), "{e}");
        assert!(d.take_events().is_empty(), "no exit for a failed read");
        t.list_fails = false;
        let found = d.scan(&mut t, Duration::from_secs(2)).expect("scan");
        assert_eq!(found.len(), 1, "still tracked");
        assert!(d.take_events().is_empty(), "not found a second time");
    }
}
