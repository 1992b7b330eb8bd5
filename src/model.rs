//! The data every stage passes along: sizes, pids, levels and the Snapshot,
//! whose serde form is also the trace format (a `sample` log line is a Snapshot).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// A size in bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const KIB: u64 = 1024;
    pub const MIB: u64 = 1024 * 1024;
    pub const GIB: u64 = 1024 * 1024 * 1024;

    pub fn gib(n: u64) -> Bytes {
        Bytes(n * Self::GIB)
    }
    pub fn mib(n: u64) -> Bytes {
        Bytes(n * Self::MIB)
    }
    pub fn as_gib_f64(self) -> f64 {
        self.0 as f64 / Self::GIB as f64
    }
    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Bytes {
    /// Human form with binary units: "3.52 GiB", "512 MiB", "900 B".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0 as f64;
        if self.0 >= Self::GIB {
            write!(f, "{:.2} GiB", v / Self::GIB as f64)
        } else if self.0 >= Self::MIB {
            write!(f, "{:.0} MiB", v / Self::MIB as f64)
        } else if self.0 >= Self::KIB {
            write!(f, "{:.0} KiB", v / Self::KIB as f64)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

/// A process id.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Pid(pub i32);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// headroom's memory level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Green,
    Yellow,
    Red,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Green => "green",
            Level::Yellow => "yellow",
            Level::Red => "red",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kernel's own verdict on memory pressure (macOS
/// `kern.memorystatus_vm_pressure_level`: 1 normal, 2 warn, 4 critical).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelLevel {
    Normal,
    Warn,
    Critical,
}

impl KernelLevel {
    /// From the raw sysctl value; unknown values are `None`.
    pub fn from_sysctl(v: i64) -> Option<KernelLevel> {
        match v {
            1 => Some(KernelLevel::Normal),
            2 => Some(KernelLevel::Warn),
            4 => Some(KernelLevel::Critical),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KernelLevel::Normal => "normal",
            KernelLevel::Warn => "warn",
            KernelLevel::Critical => "critical",
        }
    }
}

/// System-wide memory. `available` is headroom's "headroom": on Linux
/// MemAvailable, on macOS (free − speculative) + file-backed + purgeable
/// (`macos_vm::VmCounters::available_pages`). Figures one OS
/// does not have are `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemMemory {
    pub total_bytes: Bytes,
    pub available_bytes: Bytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_bytes: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wired_bytes: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_bytes: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_bytes: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_total_bytes: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_used_bytes: Option<Bytes>,
    /// macOS `iogpu.wired_limit_mb` (MiB; 0 = the system default): how
    /// much the GPU may wire (src/wired.rs). `None` where there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_wired_limit_mb: Option<u64>,
    /// macOS `iogpu.wired_lwm_mb`: the GPU wired low-water mark (MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_wired_lwm_mb: Option<u64>,
}

impl SystemMemory {
    /// The parts this platform reports, in Activity Monitor's order, for display.
    pub fn parts(&self) -> Vec<(&'static str, Bytes)> {
        [
            ("app", self.app_bytes),
            ("wired", self.wired_bytes),
            ("compressed", self.compressed_bytes),
            ("cached", self.cached_bytes),
            ("free", self.free_bytes),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|b| (k, b)))
        .collect()
    }
}

/// Seconds with millisecond precision: how `at` and durations are written.
pub fn secs(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

/// Kernel pressure signals. Each is `None` where the OS (or this kernel)
/// lacks it — absent PSI is not an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// macOS `kern.memorystatus_vm_pressure_level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_level: Option<KernelLevel>,
    /// Linux PSI `/proc/pressure/memory` "some" avg10, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi_some_avg10: Option<f64>,
    /// Linux PSI "full" avg10, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi_full_avg10: Option<f64>,
    /// Bytes swapped out per second since the previous sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swapout_bytes_per_sec: Option<f64>,
}

/// One MLX process the daemon may act on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlxProcess {
    pub pid: Pid,
    pub uid: u32,
    /// Opaque start time (Linux: clock ticks since boot, /proc/PID/stat
    /// field 22; macOS: microseconds since the epoch). Together with `pid` it
    /// identifies the process, because pids are reused.
    pub start_time: u64,
    pub name: String,
    pub cmdline: String,
    /// What runs (src/cmdline.rs): the string `mlx.patterns` matched, e.g.
    /// `mlx_lm.lora`; empty in traces written before it was recorded.
    #[serde(default)]
    pub program: String,
    /// What the daemon counts as this process's memory: macOS
    /// phys_footprint, Linux RSS.
    pub footprint_bytes: Bytes,
    pub rss_bytes: Bytes,
    /// Largest footprint seen since discovery.
    pub peak_bytes: Bytes,
    /// Footprint growth over a short window, bytes per second (negative when shrinking).
    pub growth_bytes_per_sec: f64,
    /// Why it counts as MLX: "pattern:<regex>" or "library:<path>".
    pub matched_by: String,
    /// Its job: the process group it belongs to (processes of one job are
    /// summed when memory's fall is attributed, src/attribute.rs). `None`
    /// in traces written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Pid>,
}

impl MlxProcess {
    /// Its job: its process group, or itself where that was not recorded
    /// (older traces). The one rule every caller uses.
    pub fn job_id(&self) -> Pid {
        self.job.unwrap_or(self.pid)
    }
}

/// One of the largest processes on the machine, MLX or not: who holds the
/// memory when red is not MLX's doing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopProcess {
    pub pid: Pid,
    /// `None` where the owner could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// How people call it (`mlx_lm lora`, `train.py`, `firefox`).
    pub name: String,
    pub footprint_bytes: Bytes,
    /// Whether discovery counts it as MLX.
    pub mlx: bool,
}

/// One job — the processes of one process group, any user's, MLX or not —
/// summed: who holds (and who takes) the memory while it is not quiet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobUsage {
    /// The process group id.
    pub job: Pid,
    /// The owner of its largest process; `None` where unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// How people call its largest process (`python3 workers.py`).
    pub name: String,
    /// How many processes it has now.
    pub processes: u32,
    /// Their footprints summed.
    pub footprint_bytes: Bytes,
    /// Whether discovery counts any of them as MLX.
    pub mlx: bool,
}

/// Everything one sampling cycle saw. `at` is monotonic time since the
/// daemon started, the only clock decision code reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(with = "secs_f64")]
    pub at: Duration,
    #[serde(flatten)]
    pub memory: SystemMemory,
    #[serde(flatten)]
    pub pressure: Pressure,
    #[serde(default)]
    pub mlx_processes: Vec<MlxProcess>,
    /// The largest processes of any user, largest first; read only when the
    /// daemon asks (memory red), else empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_processes: Vec<TopProcess>,
    /// The jobs holding the most memory and those growing fastest since the
    /// last read, any user's; read only while memory is yellow or red.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobUsage>,
    /// headroom's parent, its parent, … up to (not including) pid 1, read
    /// with this sample: never victims.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Pid>,
}

/// `Duration` as seconds with millisecond precision (`"at": 12.345`).
pub mod secs_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(super::secs(*d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v < 0.0 {
            return Err(serde::de::Error::custom(format!(
                "'at' must be a non-negative number of seconds, got {v}"
            )));
        }
        Ok(Duration::from_secs_f64(v))
    }
}

/// Whose processes headroom watches, and whose it may signal.
#[derive(Clone, Debug, PartialEq)]
pub struct Scope {
    /// Watch (and report) every user's processes; else only `signal`'s.
    watch_all: bool,
    /// Signal any watched process (replay of a recorded log only).
    signal_any: bool,
    signal: BTreeSet<u32>,
}

impl Scope {
    /// A normal user: watches and may signal only their own processes.
    pub fn user(uid: u32) -> Scope {
        Scope {
            watch_all: false,
            signal_any: false,
            signal: BTreeSet::from([uid]),
        }
    }

    /// Root: watches and reports every user's processes, but signals only
    /// root's own and those of the users opted in (`actions.users`).
    pub fn root(opted_in: impl IntoIterator<Item = u32>) -> Scope {
        let mut signal: BTreeSet<u32> = opted_in.into_iter().collect();
        signal.insert(0);
        Scope {
            watch_all: true,
            signal_any: false,
            signal,
        }
    }

    /// Every process recorded: `replay` re-decides a log whose daemon
    /// already applied its own scope.
    pub fn anyone() -> Scope {
        Scope {
            watch_all: true,
            signal_any: true,
            signal: BTreeSet::new(),
        }
    }

    pub fn watches(&self, uid: u32) -> bool {
        self.watch_all || self.signal.contains(&uid)
    }

    pub fn may_signal(&self, uid: u32) -> bool {
        self.signal_any || self.signal.contains(&uid)
    }

    /// For the `started` and `scope` events and `check-config`.
    pub fn describe(&self) -> String {
        let uids: Vec<String> = self.signal.iter().map(u32::to_string).collect();
        match (self.watch_all, self.signal_any) {
            (_, true) => "every recorded process".into(),
            (true, false) => format!(
                "watches all users; signals only uid {} (root and actions.users)",
                uids.join(", ")
            ),
            (false, false) => format!("watches and signals only uid {}", uids.join(", ")),
        }
    }
}

#[cfg(test)]
impl MlxProcess {
    /// A 9 GiB `mlx_lm.lora` job of uid 501, for unit tests.
    pub(crate) fn test_job(pid: i32, start_time: u64) -> MlxProcess {
        MlxProcess {
            pid: Pid(pid),
            uid: 501,
            start_time,
            name: "python3".into(),
            cmdline: "python3 -m mlx_lm.lora --train".into(),
            footprint_bytes: Bytes::gib(9),
            rss_bytes: Bytes::gib(9),
            peak_bytes: Bytes::gib(9),
            growth_bytes_per_sec: 0.0,
            program: "mlx_lm.lora".into(),
            matched_by: "pattern:x".into(),
            job: Some(Pid(pid)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_as_flat_json() {
        let s = Snapshot {
            at: Duration::from_millis(12_345),
            memory: SystemMemory {
                total_bytes: Bytes::gib(16),
                available_bytes: Bytes::gib(3),
                ..Default::default()
            },
            pressure: Pressure {
                psi_some_avg10: Some(1.5),
                ..Default::default()
            },
            mlx_processes: vec![],
            ..Default::default()
        };
        let j = serde_json::to_value(&s).expect("serialise");
        assert_eq!(j["at"], 12.345);
        assert_eq!(j["available_bytes"], 3 * Bytes::GIB);
        assert!(j.get("wired_bytes").is_none(), "absent figures are omitted");
        let back: Snapshot = serde_json::from_value(j).expect("deserialise");
        assert_eq!(back, s);
    }

    #[test]
    fn bytes_display_uses_binary_units() {
        assert_eq!(Bytes::gib(2).to_string(), "2.00 GiB");
        assert_eq!(Bytes::mib(512).to_string(), "512 MiB");
        assert_eq!(Bytes(900).to_string(), "900 B");
    }

    #[test]
    fn root_watches_everyone_but_signals_only_root_and_opted_in_users() {
        let me = Scope::user(501);
        assert!(me.watches(501) && me.may_signal(501));
        assert!(!me.watches(502) && !me.may_signal(502) && !me.may_signal(0));
        let root = Scope::root([]);
        assert!(root.watches(501) && root.watches(0));
        assert!(root.may_signal(0) && !root.may_signal(501));
        let root = Scope::root([501]);
        assert!(root.may_signal(501) && !root.may_signal(502));
        assert!(Scope::anyone().may_signal(502));
    }
}
