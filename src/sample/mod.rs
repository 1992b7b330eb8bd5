//! Samplers: read the platform's memory figures and MLX processes into a
//! Snapshot. A sampler only reads; it never decides.

use crate::config::Config;
use crate::discover::{Discovery, ProcSource, ProcessEvent, Scope};
use crate::model::{Pid, Snapshot, TopProcess};
use std::path::PathBuf;
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

/// A sampler is also the actuator's probe: it re-reads memory and a pid's
/// start time right before a signal.
pub trait Sampler: crate::act::Probe {
    /// One Snapshot of system memory, pressure and MLX processes.
    fn sample(&mut self) -> Result<Snapshot, SampleError>;
    /// MLX processes found or exited since the last call.
    fn take_events(&mut self) -> Vec<ProcessEvent>;
    /// Let the next `sample` skip listing pids and only re-measure the MLX
    /// processes already tracked (exits and reused pids are still seen; new
    /// processes wait for a full sample). Applies to one sample only.
    fn skip_discovery_once(&mut self);
    /// Fill `Snapshot::top_processes` from now on (`true`) or stop (`false`):
    /// the daemon asks while memory is red, so that red held by something
    /// other than MLX can be named.
    fn want_top_processes(&mut self, on: bool);
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

/// The top list, read while wanted, at most every TOP_EVERY, only on a
/// sample that listed pids; the last list is repeated in between.
#[derive(Default)]
pub struct TopCache {
    pub wanted: bool,
    last: Option<(Duration, Vec<TopProcess>)>,
}

impl TopCache {
    pub fn get(
        &mut self,
        at: Duration,
        listed: bool,
        discovery: &mut Discovery,
        src: &mut dyn ProcSource,
    ) -> Vec<TopProcess> {
        if !self.wanted {
            self.last = None;
            return Vec::new();
        }
        let stale = self
            .last
            .as_ref()
            .is_none_or(|(t, _)| at.saturating_sub(*t) >= TOP_EVERY);
        if listed && stale {
            self.last = Some((at, discovery.top_processes(src, TOP_PROCESSES)));
        }
        self.last
            .as_ref()
            .map(|(_, v)| v.clone())
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

/// The sampler for the OS this binary was built for; `start` is time zero
/// of the Snapshot clock (`Snapshot::at`); `scope` says whose processes count.
pub fn for_this_platform(
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
