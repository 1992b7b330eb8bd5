//! Samplers: read the platform's memory figures and MLX processes into a
//! Snapshot. A sampler only reads; it never decides.

use crate::config::Config;
use crate::discover::{Discovery, ProcSource, ProcessEvent};
use crate::model::Scope;
use crate::model::{
    Bytes, JobUsage, MlxProcess, Pid, Pressure, Snapshot, SystemMemory, TopProcess,
};
use std::path::PathBuf;
use std::sync::atomic::AtomicI32;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod linux;
pub mod macos;
pub mod psi_trigger;

/// Why a sample could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {detail}")]
    Parse { what: String, detail: String },
    #[error("{0}")]
    Unsupported(String),
}

impl SampleError {
    pub fn parse(what: impl Into<String>, detail: impl Into<String>) -> SampleError {
        SampleError::Parse {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// A fresh reading taken right before signalling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fresh {
    pub available: Bytes,
    /// The kernel says critical (macOS); red regardless of available memory.
    pub kernel_critical: bool,
}

/// The last readings an actuator takes right before a signal (the sampler
/// provides them; tests can point them anywhere).
pub trait Probe {
    /// Available memory now, read afresh.
    fn fresh(&mut self) -> Result<Fresh, SampleError>;
    /// The start time of `pid` now; `None` if it is gone.
    fn start_time(&mut self, pid: Pid) -> Option<u64>;
    /// A probe reading the same sources that may move to another thread
    /// (a pending SIGTERM's job takes its last checks there); `None` when
    /// this one cannot, and the hook then runs where it is asked for.
    fn detach(&self) -> Option<Box<dyn Probe + Send>> {
        None
    }
}

/// A sampler is also the actuator's probe: it re-reads memory and a pid's
/// start time right before a signal. Each platform reads its own memory
/// figures; what it does with processes is `Processes`, shared.
pub trait Sampler: Probe {
    /// One Snapshot of system memory, pressure and MLX processes.
    fn sample(&mut self) -> Result<Snapshot, SampleError>;
    /// The processes part of this sampler.
    fn processes(&mut self) -> &mut Processes;
    /// MLX processes found or exited since the last call.
    fn take_events(&mut self) -> Vec<ProcessEvent> {
        self.processes().discovery.take_events()
    }
    /// Let the next `sample` skip listing pids and only re-measure the MLX
    /// processes already tracked (exits and reused pids are still seen; new
    /// processes wait for a full sample). Applies to one sample only.
    fn skip_discovery_once(&mut self) {
        self.processes().skip_discovery = true;
    }
    /// Let the next `sample` list pids but examine only pids it has not
    /// seen before, rechecking only known interpreters (`scan_new_only`):
    /// the quiet listing. Applies to one sample only.
    fn new_pids_only_once(&mut self) {
        self.processes().new_only = true;
    }
    /// Whether a pid may have been created since pids were last listed
    /// (`true` when this sampler cannot tell): a quiet listing is skipped
    /// when not.
    fn new_pids(&mut self) -> bool {
        true
    }
    /// Whether every pid should be listed now even though only new ones
    /// were asked for (the way new pids are found is trusted only so long:
    /// Linux's last-pid counter).
    fn listing_overdue(&mut self, _at: Duration) -> bool {
        false
    }
    /// Whether a known pid that may still load MLX (an interpreter) is due
    /// for its recheck at `at` (Snapshot clock): a quiet listing then runs
    /// even with no new pid.
    fn rechecks_due(&mut self, at: Duration) -> bool {
        self.processes().discovery.rechecks_due(at)
    }
    /// Fill `Snapshot::top_processes` and `jobs` from now on: the daemon
    /// asks while memory is yellow or red, so that who eats the memory can
    /// be told (src/attribute.rs); `Keep` repeats the last lists without a
    /// fresh read (red is about to be crossed: that sample must be fast).
    fn want_top_processes(&mut self, want: Holders) {
        self.processes().top.want = want;
    }
    /// Whether a fresh read of every process for those lists is due at
    /// `at` (it reads maps and argv: a sample asked to read them is taken
    /// off the loop's thread).
    fn holders_due(&mut self, at: Duration) -> bool {
        self.processes().top.due(at)
    }
    /// Where to say which pid is being read now (0 between reads), for the
    /// daemon's error about a sample that does not return.
    fn report_reading_to(&mut self, reading: Arc<AtomicI32>) {
        self.processes().discovery.report_reading_to(reading);
    }
}

/// What both samplers do with processes: list them (or, once when asked,
/// only re-measure the MLX processes already tracked), read headroom's
/// parent chain, and the top list while it is wanted.
pub struct Processes {
    discovery: Discovery,
    /// Set by `skip_discovery_once`, cleared by the next sample.
    skip_discovery: bool,
    /// Set by `new_pids_only_once`, cleared by the next sample.
    new_only: bool,
    /// Set by `candidates_once`: the new pids are these ids, probed
    /// instead of listed (Linux); cleared by the next sample.
    candidates: Option<std::ops::RangeInclusive<i32>>,
    top: TopCache,
    /// headroom's parent chain, re-read on every sample that lists pids.
    ancestors: Vec<Pid>,
}

/// The process fields of a Snapshot.
pub struct ProcessRead {
    pub mlx_processes: Vec<MlxProcess>,
    pub top_processes: Vec<TopProcess>,
    pub jobs: Vec<JobUsage>,
    pub ancestors: Vec<Pid>,
}

impl ProcessRead {
    /// The Snapshot at `at`: these processes with the platform's figures.
    pub fn snapshot(self, at: Duration, memory: SystemMemory, pressure: Pressure) -> Snapshot {
        Snapshot {
            at,
            memory,
            pressure,
            mlx_processes: self.mlx_processes,
            top_processes: self.top_processes,
            jobs: self.jobs,
            ancestors: self.ancestors,
        }
    }
}

impl Processes {
    pub fn new(cfg: &Config, scope: Scope, self_pid: Pid) -> Processes {
        Processes {
            discovery: Discovery::new(cfg.patterns.clone(), cfg.detect_library, scope, self_pid),
            skip_discovery: false,
            new_only: false,
            candidates: None,
            top: TopCache::default(),
            ancestors: Vec::new(),
        }
    }

    /// Whether the next `read` lists pids.
    pub fn lists_next(&self) -> bool {
        !self.skip_discovery
    }

    /// Whether the next `read` looks only for new pids (the quiet listing).
    pub fn new_only_next(&self) -> bool {
        !self.skip_discovery && self.new_only
    }

    /// Let the next quiet listing probe these ids (every one the kernel
    /// handed out since the last look) instead of listing every pid.
    pub fn candidates_once(&mut self, ids: std::ops::RangeInclusive<i32>) {
        self.candidates = Some(ids);
    }

    /// Whether a real listing is needed before candidates may be probed
    /// again (see `Discovery::needs_listing`).
    pub fn needs_listing(&self) -> bool {
        self.discovery.needs_listing()
    }

    /// The processes at `at`, through `src`; `parent` is headroom's parent
    /// and `parent_of` the OS's read of a pid's parent. An error is the
    /// listing's (the caller names what it read).
    pub fn read<S: ProcSource>(
        &mut self,
        src: &mut S,
        at: Duration,
        parent: i32,
        mut parent_of: impl FnMut(&mut S, i32) -> Option<i32>,
    ) -> std::io::Result<ProcessRead> {
        let listed = !std::mem::take(&mut self.skip_discovery);
        let new_only = std::mem::take(&mut self.new_only);
        let candidates = std::mem::take(&mut self.candidates);
        let mut mlx_processes = if listed {
            let found = match (new_only, candidates) {
                (true, Some(ids)) => self.discovery.scan_candidates(src, ids, at),
                (true, None) => self.discovery.scan_new_only(src, at)?,
                (false, _) => self.discovery.scan(src, at)?,
            };
            read_ancestors(&mut self.ancestors, parent, |pid| parent_of(src, pid));
            found
        } else {
            self.discovery.remeasure_tracked(src, at)
        };
        let (top_processes, jobs) = self.top.get(at, &mut self.discovery, src);
        if self.discovery.found_since(at) {
            // A holder checked for the library turned out to be MLX: in
            // this very sample.
            mlx_processes = self.discovery.current();
        }
        Ok(ProcessRead {
            mlx_processes,
            top_processes,
            jobs,
            ancestors: self.ancestors.clone(),
        })
    }
}

/// What a sample taken off the loop hands back: the sampler, the Snapshot
/// (or why not) and the process events it saw.
pub type Taken = (
    Box<dyn Sampler + Send>,
    Result<Snapshot, SampleError>,
    Vec<ProcessEvent>,
);

/// Take one sample here, with the process events it saw.
pub fn take(mut sampler: Box<dyn Sampler + Send>) -> Taken {
    let r = sampler.sample();
    let ev = sampler.take_events();
    (sampler, r, ev)
}

/// Take one sample on a blocking thread (a read under /proc can hang in
/// the kernel): how the daemon and `record` sample.
pub fn take_off_loop(sampler: Box<dyn Sampler + Send>) -> tokio::task::JoinHandle<Taken> {
    tokio::task::spawn_blocking(move || take(sampler))
}

/// How many of the largest processes a red snapshot names.
pub const TOP_PROCESSES: usize = 3;
/// The top list is read at most this often (one stat read per process).
pub const TOP_EVERY: Duration = Duration::from_secs(1);
/// The parent chain is followed at most this far.
pub const MAX_ANCESTORS: usize = 64;

/// headroom's parent, grandparent, … up to (not including) pid 1, into
/// `out`: the walk both platforms share; `parent_of` is the OS's read.
pub fn read_ancestors(
    out: &mut Vec<Pid>,
    mut pid: i32,
    mut parent_of: impl FnMut(i32) -> Option<i32>,
) {
    out.clear();
    while pid > 1 && out.len() < MAX_ANCESTORS {
        out.push(Pid(pid));
        match parent_of(pid) {
            Some(p) => pid = p,
            None => break,
        }
    }
}

/// Whether a sample fills the top and jobs lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Holders {
    /// No lists (memory is green).
    #[default]
    Off,
    /// The last lists again, no fresh read.
    Keep,
    /// Read afresh now (the caller asked `holders_due` first: only it
    /// looks at the clock, so a sample it takes on its own thread never
    /// reads them — review of issue 26).
    Read,
}

/// The top and jobs lists, read while wanted, at most every TOP_EVERY
/// (each read lists every pid); the last lists are repeated in between.
#[derive(Default)]
pub struct TopCache {
    pub want: Holders,
    last: Option<(Duration, Vec<TopProcess>, Vec<JobUsage>)>,
}

impl TopCache {
    /// Whether a fresh read is due at `at` (none for TOP_EVERY).
    pub fn due(&self, at: Duration) -> bool {
        self.last
            .as_ref()
            .is_none_or(|(t, _, _)| at.saturating_sub(*t) >= TOP_EVERY)
    }

    pub fn get(
        &mut self,
        at: Duration,
        discovery: &mut Discovery,
        src: &mut dyn ProcSource,
    ) -> (Vec<TopProcess>, Vec<JobUsage>) {
        if self.want == Holders::Off {
            if self.last.take().is_some() {
                discovery.forget_holders();
            }
            return (Vec::new(), Vec::new());
        }
        if self.want == Holders::Read {
            let (top, jobs) = discovery.holders(src, at, TOP_PROCESSES);
            self.last = Some((at, top, jobs));
        }
        self.last
            .as_ref()
            .map(|(_, t, j)| (t.clone(), j.clone()))
            .unwrap_or_default()
    }
}

/// What a sample stuck on process `pid` is waiting for, in the daemon's
/// "sampling has not returned" error: a /proc read on Linux, libproc and
/// sysctl calls on macOS (issue 16: it said /proc on a Mac).
pub fn reading_process(pid: i32) -> String {
    reading_process_on(std::env::consts::OS, pid)
}

fn reading_process_on(os: &str, pid: i32) -> String {
    match os {
        "macos" => format!(
            "asking the kernel about process {pid} (proc_pidinfo / KERN_PROCARGS2; a process stuck in exec or exit?)"
        ),
        _ => format!("reading /proc/{pid} (a process in uninterruptible sleep?)"),
    }
}

/// This machine's total RAM (MemTotal, `hw.memsize`), for the config rules
/// that need it (`Config::check_total`).
pub fn total_ram() -> Result<crate::model::Bytes, SampleError> {
    #[cfg(target_os = "linux")]
    {
        let path = PathBuf::from("/proc/meminfo");
        let text = std::fs::read_to_string(&path).map_err(|source| SampleError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(linux::parse_meminfo(&text)?.mem_total)
    }
    #[cfg(target_os = "macos")]
    {
        crate::sys::macos::mem_size().map_err(|source| SampleError::Io {
            path: PathBuf::from("sysctl hw.memsize"),
            source,
        })
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        Err(SampleError::Unsupported(
            "headroom supports Linux and macOS only".into(),
        ))
    }
}

/// The sampler for this OS and the scope it watches, from the config:
/// what every command that samples opens (`run`, `record`, `status`,
/// `top`, `advise`); `start` is time zero of the Snapshot clock.
pub fn open(
    cfg: &Config,
    start: Instant,
) -> Result<(Box<dyn Sampler + Send>, Scope), crate::Error> {
    let scope = crate::config::scope_for(cfg)?;
    let sampler = for_this_platform(cfg, scope.clone(), start)?;
    Ok((sampler, scope))
}

/// The sampler for the OS this binary was built for; `start` is time zero
/// of the Snapshot clock (`Snapshot::at`); `scope` says whose processes count.
fn for_this_platform(
    cfg: &Config,
    scope: Scope,
    start: Instant,
) -> Result<Box<dyn Sampler + Send>, SampleError> {
    #[cfg(target_os = "linux")]
    {
        Ok(Box::new(linux::LinuxSampler::new(cfg, scope, start)?))
    }
    #[cfg(target_os = "macos")]
    {
        Ok(Box::new(macos::MacSampler::new(cfg, scope, start)?))
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = (cfg, scope, start);
        Err(SampleError::Unsupported(
            "headroom supports Linux and macOS only".into(),
        ))
    }
}

#[cfg(test)]
mod reading_tests {
    #[test]
    fn the_stuck_read_is_named_for_the_platform() {
        let mac = super::reading_process_on("macos", 42);
        assert!(
            mac.contains("process 42") && !mac.contains("/proc"),
            "{mac}"
        );
        assert!(super::reading_process_on("linux", 42).contains("/proc/42"));
    }
}
