//! Configuration: `RawConfig` as written (serde, unknown keys rejected),
//! merged over the embedded defaults, then validated into `Config`.

use crate::model::Bytes;
use regex::Regex;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default configuration (config/default.toml).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Where a config came from, for error messages.
pub const EMBEDDED: &str = "<embedded defaults>";

/// A config that cannot be used: one line naming the file, the key and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad or untrusted (exit 78).
    #[error("{0}")]
    Invalid(String),
    /// No usable `$HOME` for the default log path, and not root (exit 71).
    #[error("{0}")]
    NoHome(String),
}

impl ConfigError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Invalid(_) => 78, // EX_CONFIG
            ConfigError::NoHome(_) => 71,  // EX_OSERR
        }
    }
}

fn err(file: &str, key: &str, value: &str, why: &str) -> ConfigError {
    ConfigError::Invalid(format!("{file}: '{key}' ('{value}') {why}"))
}

// ---------------------------------------------------------------- raw form

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    poll: Option<RawPoll>,
    thresholds: Option<RawThresholds>,
    mlx: Option<RawMlx>,
    actions: Option<RawActions>,
    log: Option<RawLog>,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoll {
    interval: Option<String>,
    min_interval: Option<String>,
    max_interval: Option<String>,
    psi_trigger: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    yellow_below: Option<String>,
    red_below: Option<String>,
    hysteresis: Option<String>,
    dwell: Option<String>,
    swapout_rate: Option<String>,
    swapout_hold: Option<String>,
    psi_full_avg10: Option<f64>,
    projection_horizon: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMlx {
    patterns: Option<Vec<String>>,
    detect_library: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawNeverKill {
    Pid(i64),
    Pattern(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActions {
    notify: Option<bool>,
    terminate: Option<bool>,
    dry_run: Option<bool>,
    terminate_after: Option<String>,
    kill_after: Option<String>,
    kill_floor: Option<String>,
    min_victim_footprint: Option<String>,
    never_kill: Option<Vec<RawNeverKill>>,
    users: Option<Vec<String>>,
    pre_terminate: Option<Vec<String>>,
    post_terminate: Option<Vec<String>>,
    hook_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    path: Option<String>,
    sample_every: Option<String>,
    max_size: Option<String>,
    keep: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

/// Parse TOML text into a RawConfig; errors name the file and the key path.
fn parse_raw(file: &str, text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.message().replace('\n', " ");
        let line = inner
            .span()
            .map(|s| {
                format!(
                    " (line {})",
                    // Lines before the error's first byte, plus its own: a
                    // key that starts a line is on that line, not the one
                    // before (`lines()` would not count the empty rest).
                    text.as_bytes()[..s.start.min(text.len())]
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count()
                        + 1
                )
            })
            .unwrap_or_default();
        if path.is_empty() || path == "." {
            ConfigError::Invalid(format!("{file}{line}: {msg}"))
        } else {
            ConfigError::Invalid(format!("{file}{line}: '{path}': {msg}"))
        }
    })
}

/// `user` laid over `base`, both as TOML tables: within each section the
/// user's keys win and every key the user leaves out keeps the base's value.
/// (Sections hold no tables of their own, so one level is the whole merge.)
fn overlay(base: &mut toml::Table, user: toml::Table) {
    for (section, value) in user {
        match (base.get_mut(&section), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(u)) => b.extend(u),
            (_, value) => {
                base.insert(section, value);
            }
        }
    }
}

/// The user's `text` over the embedded defaults, as one RawConfig.
fn merged(file: &str, text: &str) -> Result<RawConfig, ConfigError> {
    let table = |name: &str, text: &str| {
        text.parse::<toml::Table>()
            .map_err(|e| ConfigError::Invalid(format!("{name}: {}", e.message())))
    };
    let mut all = table(EMBEDDED, DEFAULT_TOML)?;
    overlay(&mut all, table(file, text)?);
    toml::Value::Table(all)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(format!("{file}: {}", e.message())))
}

// ---------------------------------------------------------- validated form

/// A memory size: absolute, or a share of total RAM resolved per machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Size {
    Bytes(Bytes),
    Percent(f64),
}

impl Size {
    pub fn resolve(self, total: Bytes) -> Bytes {
        match self {
            Size::Bytes(b) => b,
            Size::Percent(p) => Bytes((total.0 as f64 * p / 100.0) as u64),
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Bytes(b) => write!(f, "{}", b.0),
            Size::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Parse "4GiB", "512MiB", "2GB", "1024", "10%". Returns a reason on failure.
fn parse_size(s: &str) -> Result<Size, &'static str> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| "is not a size (e.g. \"4GiB\" or \"10%\")")?;
        if !(0.0..=100.0).contains(&v) || !v.is_finite() {
            return Err("must be a share between 0% and 100%");
        }
        return Ok(Size::Percent(v));
    }
    if t.starts_with('-') {
        return Err("must not be negative");
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| "is not a size (e.g. \"4GiB\" or \"10%\")")?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err("has an unknown unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB or %)"),
    };
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err("is too large");
    }
    Ok(Size::Bytes(Bytes(bytes as u64)))
}

/// Parse "1s", "500ms", "2m" (humantime).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("is not a duration (e.g. \"5s\", \"500ms\"): {e}"))
}

/// Bounds on durations, `(key, at least, at most)`: beyond them a config
/// kills at once or never reacts (issue 13: `dwell = "100000000000h"`,
/// `kill_after = "0s"`). docs/configuration.md and config/default.toml say
/// the same; `poll.*` are bounded where they are validated.
pub const DURATION_CAPS: &[(&str, Duration, Duration)] = &[
    (
        "thresholds.dwell",
        Duration::ZERO,
        Duration::from_secs(3600),
    ),
    (
        "thresholds.swapout_hold",
        Duration::ZERO,
        Duration::from_secs(3600),
    ),
    (
        "thresholds.projection_horizon",
        Duration::ZERO,
        Duration::from_secs(3600),
    ),
    (
        "actions.terminate_after",
        Duration::ZERO,
        Duration::from_secs(600),
    ),
    (
        "actions.kill_after",
        Duration::from_secs(1),
        Duration::from_secs(600),
    ),
    (
        "actions.hook_timeout",
        Duration::ZERO,
        Duration::from_secs(60),
    ),
    (
        "log.sample_every",
        Duration::ZERO,
        Duration::from_secs(3600),
    ),
];

fn duration_cap(key: &str) -> Option<(Duration, Duration)> {
    DURATION_CAPS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, lo, hi)| (lo, hi))
}

const MATCHES_EMPTY: &str = "matches the empty string, so it would match every process";

#[derive(Clone, Debug)]
pub struct Thresholds {
    pub yellow_below: Size,
    pub red_below: Size,
    pub hysteresis: Size,
    pub dwell: Duration,
    /// Bytes per second.
    pub swapout_rate: Bytes,
    pub swapout_hold: Duration,
    pub psi_full_avg10: f64,
    pub projection_horizon: Duration,
}

#[derive(Clone, Debug)]
pub enum NeverKill {
    Pid(i32),
    Pattern(Regex),
}

#[derive(Clone, Debug)]
pub struct Actions {
    pub notify: bool,
    pub terminate: bool,
    pub dry_run: bool,
    pub terminate_after: Duration,
    pub kill_after: Duration,
    pub kill_floor: Size,
    /// MLX processes smaller than this are never signalled (issue 12).
    pub min_victim_footprint: Size,
    pub never_kill: Vec<NeverKill>,
    pub users: Vec<String>,
    /// argv run (no shell) right before a SIGTERM; empty = none.
    pub pre_terminate: Vec<String>,
    /// argv run (no shell) once the victim has exited; empty = none.
    pub post_terminate: Vec<String>,
    pub hook_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub path: PathBuf,
    pub sample_every: Duration,
    pub max_size: Bytes,
    pub keep: u32,
}

/// `poll.min_interval` when unset: 50 ms, or `poll.interval` if shorter.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_millis(50);
/// `poll.max_interval` when unset: 2 s, or `poll.interval` if longer.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Config {
    /// The file this came from, or EMBEDDED.
    pub source: String,
    pub poll_interval: Duration,
    /// The adaptive sleep's range (src/pace.rs): `poll.min_interval` …
    /// `poll.max_interval`, with `poll_interval` the longest while not quiet.
    pub poll_min_interval: Duration,
    pub poll_max_interval: Duration,
    /// Wake on a Linux PSI memory trigger (src/sample/psi_trigger.rs).
    pub psi_trigger: bool,
    pub thresholds: Thresholds,
    pub patterns: Vec<Regex>,
    pub detect_library: bool,
    pub actions: Actions,
    pub log: LogConfig,
    /// Where the Prometheus endpoint listens; `None` = off (src/metrics.rs).
    pub metrics_listen: Option<SocketAddr>,
}

/// The platform's default log file for this process's environment.
pub fn default_log_path() -> Result<PathBuf, ConfigError> {
    default_log_path_for(
        std::env::var_os("HOME").map(PathBuf::from),
        std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        nix::unistd::geteuid().is_root(),
        cfg!(target_os = "macos"),
    )
    .map_err(ConfigError::NoHome)
}

/// Where root logs when it has no usable `$HOME` (issue 13: never /tmp).
pub fn root_log_dir(macos: bool) -> &'static Path {
    Path::new(if macos {
        "/Library/Logs/headroom"
    } else {
        "/var/log/headroom"
    })
}

/// The default log file, from `$HOME` (usable only when absolute) and
/// `$XDG_STATE_HOME` (Linux, used only when absolute). Without a usable
/// HOME root logs under `root_log_dir`; anyone else gets the reason: there
/// is no shared fallback such as /tmp, where another user could plant the
/// directory or a symlink first (issue 13).
pub fn default_log_path_for(
    home: Option<PathBuf>,
    xdg_state: Option<PathBuf>,
    root: bool,
    macos: bool,
) -> Result<PathBuf, String> {
    let home = home.filter(|h| h.is_absolute());
    let xdg = xdg_state.filter(|p| p.is_absolute() && !macos);
    let base = match (macos, xdg, home) {
        (false, Some(state), _) => Some(state.join("headroom")),
        (true, _, Some(h)) => Some(h.join("Library/Logs/headroom")),
        (false, None, Some(h)) => Some(h.join(".local/state/headroom")),
        _ => None,
    };
    match base {
        Some(dir) => Ok(dir.join("headroom.log")),
        None if root => Ok(root_log_dir(macos).join("headroom.log")),
        None => Err(
            "$HOME is unset, empty or not an absolute path, so there is no default log \
             location: set HOME or 'log.path'"
                .to_string(),
        ),
    }
}

fn expand_tilde(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(p)
}

impl Config {
    /// Validate a merged RawConfig, section by section. `file` names the
    /// user's file in errors.
    fn validate(raw: RawConfig, file: &str) -> Result<Config, ConfigError> {
        let c = Check { file };
        let poll = c.poll(raw.poll.unwrap_or_default())?;
        let red_raw = raw
            .thresholds
            .as_ref()
            .and_then(|t| t.red_below.clone())
            .unwrap_or_default();
        let thresholds = c.thresholds(raw.thresholds.unwrap_or_default())?;
        let mlx = raw.mlx.unwrap_or_default();
        let patterns = c.patterns(mlx.patterns)?;
        let detect_library = c.given("mlx.detect_library", mlx.detect_library)?;
        let actions = c.actions(
            raw.actions.unwrap_or_default(),
            thresholds.red_below,
            &red_raw,
        )?;
        let log = c.log(raw.log.unwrap_or_default())?;
        let listen = raw.metrics.unwrap_or_default().listen.unwrap_or_default();
        let metrics_listen =
            parse_listen(&listen).map_err(|why| err(file, "metrics.listen", &listen, why))?;
        Ok(Config {
            source: file.to_string(),
            poll_interval: poll.interval,
            poll_min_interval: poll.min_interval,
            poll_max_interval: poll.max_interval,
            psi_trigger: poll.psi_trigger,
            thresholds,
            patterns,
            detect_library,
            actions,
            log,
            metrics_listen,
        })
    }

    /// The rules that need this machine's total RAM (issue 13): a threshold
    /// at or above it is red (or a kill) forever, and shares and sizes can
    /// only be compared once resolved. Pure: the caller reads the total.
    pub fn check_total(&self, total: Bytes) -> Result<(), ConfigError> {
        let t = &self.thresholds;
        let lines = [
            ("thresholds.yellow_below", t.yellow_below),
            ("thresholds.red_below", t.red_below),
            ("actions.kill_floor", self.actions.kill_floor),
        ];
        let shown = |s: Size| match s {
            Size::Bytes(b) => format!("{} bytes", b.0),
            Size::Percent(p) => format!("{p}% = {} bytes", s.resolve(total).0),
        };
        let bad = |key: &str, s: Size, why: String| {
            ConfigError::Invalid(format!("{}: '{key}' ({}) {why}", self.source, shown(s)))
        };
        for (key, s) in lines {
            if s.resolve(total) >= total {
                return Err(bad(
                    key,
                    s,
                    format!("must be below this machine's total RAM ({} bytes)", total.0),
                ));
            }
        }
        for pair in lines.windows(2) {
            let ((hi_key, hi), (lo_key, lo)) = (pair[0], pair[1]);
            if lo.resolve(total) >= hi.resolve(total) {
                return Err(bad(
                    lo_key,
                    lo,
                    format!("must be below '{hi_key}' ({})", shown(hi)),
                ));
            }
        }
        Ok(())
    }

    /// The embedded defaults alone.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::validate(parse_raw(EMBEDDED, DEFAULT_TOML)?, EMBEDDED)
    }

    /// Load `path` over the embedded defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        use crate::input::{read_text, InputError, CONFIG};
        let text = std::fs::File::open(path)
            .map_err(InputError::Io)
            .and_then(|f| read_text(f, CONFIG))
            .map_err(|e| match e {
                InputError::Io(e) => ConfigError::Invalid(format!("{name}: cannot read: {e}")),
                e => ConfigError::Invalid(e.at(&name)),
            })?;
        Config::from_text(&name, &text)
    }

    /// Parse `text` (named `name` in errors) over the embedded defaults.
    pub fn from_text(name: &str, text: &str) -> Result<Config, ConfigError> {
        // The user's file alone first, so a mistyped key or a wrong type is
        // reported with its line; then it is laid over the defaults.
        parse_raw(name, text)?;
        Config::validate(merged(name, text)?, name)
    }

    /// Find and load the config: `--config`, else `$HEADROOM_CONFIG`, else
    /// `~/.config/headroom/config.toml` if it exists, else the embedded defaults.
    ///
    /// As root, the file and every hook it names must be root's alone
    /// (`check_root_trust`): a config is a list of commands root will run.
    pub fn load(cli_path: Option<&Path>) -> Result<Config, ConfigError> {
        let root = nix::unistd::geteuid().is_root();
        let cfg = match locate(cli_path)? {
            Some(p) => {
                if root {
                    crate::fsafe::check_trusted(&p, "config").map_err(ConfigError::Invalid)?;
                }
                Config::from_file(&p)?
            }
            None => Config::embedded()?,
        };
        if root {
            cfg.check_root_trust()?;
        }
        Ok(cfg)
    }

    /// Root runs the hooks: each argv[0] must be an absolute path to a file
    /// root owns, writable by no one else, in directories the same
    /// (`fsafe::check_trusted`), so no other user can swap what runs.
    pub fn check_root_trust(&self) -> Result<(), ConfigError> {
        for (key, argv) in [
            ("actions.pre_terminate", &self.actions.pre_terminate),
            ("actions.post_terminate", &self.actions.post_terminate),
        ] {
            let Some(prog) = argv.first() else { continue };
            let key0 = format!("{key}[0]");
            if !Path::new(prog).is_absolute() {
                return Err(err(
                    &self.source,
                    &key0,
                    prog,
                    "must be an absolute path when running as root",
                ));
            }
            crate::fsafe::check_trusted(Path::new(prog), &format!("{}: '{key0}'", self.source))
                .map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }
}

/// `[poll]`, validated.
struct Poll {
    interval: Duration,
    min_interval: Duration,
    max_interval: Duration,
    psi_trigger: bool,
}

/// Reads the sections of a merged RawConfig into validated values; every
/// error names `file`, the key and the value as written.
struct Check<'a> {
    file: &'a str,
}

impl Check<'_> {
    fn bad(&self, key: &str, value: &str, why: &str) -> ConfigError {
        err(self.file, key, value, why)
    }

    /// A key the merged config must have (the embedded defaults give it).
    fn given<T>(&self, key: &str, v: Option<T>) -> Result<T, ConfigError> {
        v.ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{}: '{key}' is missing and has no default",
                self.file
            ))
        })
    }

    /// A duration, within its `DURATION_CAPS` if it has any.
    fn dur(&self, key: &str, v: Option<String>) -> Result<Duration, ConfigError> {
        let v = self.given(key, v)?;
        let d = parse_duration(&v).map_err(|why| self.bad(key, &v, &why))?;
        match duration_cap(key) {
            Some((lo, hi)) if d < lo || d > hi => Err(self.bad(
                key,
                &v,
                &format!(
                    "must be between {} and {}",
                    humantime::format_duration(lo),
                    humantime::format_duration(hi)
                ),
            )),
            _ => Ok(d),
        }
    }

    fn size(&self, key: &str, v: Option<String>) -> Result<Size, ConfigError> {
        let v = self.given(key, v)?;
        parse_size(&v).map_err(|why| self.bad(key, &v, why))
    }

    /// `a` must be below `b` where that can be told without total RAM.
    fn below(&self, a: (&str, Size, &str), b: (&str, Size, &str)) -> Result<(), ConfigError> {
        match size_lt(a.1, b.1) {
            Some(false) => Err(self.bad(a.0, a.2, &format!("must be below '{}' ('{}')", b.0, b.2))),
            _ => Ok(()),
        }
    }

    fn poll(&self, p: RawPoll) -> Result<Poll, ConfigError> {
        let interval = self.dur("poll.interval", p.interval.clone())?;
        if interval < Duration::from_millis(10) || interval > Duration::from_secs(3600) {
            let v = p.interval.unwrap_or_default();
            return Err(self.bad("poll.interval", &v, "must be between 10ms and 1h"));
        }
        // Unset, the adaptive range follows `poll.interval`, so a config
        // that only sets the interval (say "5s" or "20ms") stays valid.
        let min_interval = match p.min_interval.clone() {
            Some(v) => self.dur("poll.min_interval", Some(v))?,
            None => DEFAULT_MIN_INTERVAL.min(interval),
        };
        let max_interval = match p.max_interval.clone() {
            Some(v) => self.dur("poll.max_interval", Some(v))?,
            None => DEFAULT_MAX_INTERVAL.max(interval),
        };
        if min_interval < Duration::from_millis(10) || min_interval > interval {
            let v = p.min_interval.unwrap_or_default();
            return Err(self.bad(
                "poll.min_interval",
                &v,
                "must be at least 10ms and at most 'poll.interval'",
            ));
        }
        if max_interval < interval || max_interval > Duration::from_secs(3600) {
            let v = p.max_interval.unwrap_or_default();
            return Err(self.bad(
                "poll.max_interval",
                &v,
                "must be at least 'poll.interval' and at most 1h",
            ));
        }
        Ok(Poll {
            interval,
            min_interval,
            max_interval,
            psi_trigger: self.given("poll.psi_trigger", p.psi_trigger)?,
        })
    }

    fn thresholds(&self, th: RawThresholds) -> Result<Thresholds, ConfigError> {
        let yellow_raw = th.yellow_below.clone().unwrap_or_default();
        let red_raw = th.red_below.clone().unwrap_or_default();
        let yellow_below = self.size("thresholds.yellow_below", th.yellow_below)?;
        let red_below = self.size("thresholds.red_below", th.red_below)?;
        self.below(
            ("thresholds.red_below", red_below, &red_raw),
            ("thresholds.yellow_below", yellow_below, &yellow_raw),
        )?;
        let swap_raw = th.swapout_rate.clone().unwrap_or_default();
        let swapout_rate = match self.size("thresholds.swapout_rate", th.swapout_rate)? {
            Size::Bytes(b) => b,
            Size::Percent(_) => {
                return Err(self.bad(
                    "thresholds.swapout_rate",
                    &swap_raw,
                    "must be bytes per second, not a share",
                ))
            }
        };
        let psi = self.given("thresholds.psi_full_avg10", th.psi_full_avg10)?;
        if !(0.0..=100.0).contains(&psi) || !psi.is_finite() {
            return Err(self.bad(
                "thresholds.psi_full_avg10",
                &psi.to_string(),
                "must be a percentage between 0 and 100",
            ));
        }
        Ok(Thresholds {
            yellow_below,
            red_below,
            hysteresis: self.size("thresholds.hysteresis", th.hysteresis)?,
            dwell: self.dur("thresholds.dwell", th.dwell)?,
            swapout_rate,
            swapout_hold: self.dur("thresholds.swapout_hold", th.swapout_hold)?,
            psi_full_avg10: psi,
            projection_horizon: self.dur("thresholds.projection_horizon", th.projection_horizon)?,
        })
    }

    fn patterns(&self, patterns: Option<Vec<String>>) -> Result<Vec<Regex>, ConfigError> {
        let mut out = Vec::new();
        for (i, p) in self.given("mlx.patterns", patterns)?.iter().enumerate() {
            let key = format!("mlx.patterns[{i}]");
            let re = Regex::new(p).map_err(|e| {
                let first = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                self.bad(
                    &key,
                    p,
                    &format!("is not a valid regular expression: {first}"),
                )
            })?;
            if re.is_match("") {
                return Err(self.bad(&key, p, MATCHES_EMPTY));
            }
            out.push(re);
        }
        Ok(out)
    }

    fn never_kill(&self, list: Vec<RawNeverKill>) -> Result<Vec<NeverKill>, ConfigError> {
        let mut out = Vec::new();
        for (i, n) in list.into_iter().enumerate() {
            let key = format!("actions.never_kill[{i}]");
            out.push(match n {
                RawNeverKill::Pid(p) if p > 0 && p <= i32::MAX as i64 => NeverKill::Pid(p as i32),
                RawNeverKill::Pid(p) => {
                    return Err(self.bad(&key, &p.to_string(), "is not a valid pid"))
                }
                RawNeverKill::Pattern(s) => {
                    let re = Regex::new(&s)
                        .map_err(|_| self.bad(&key, &s, "is not a valid regular expression"))?;
                    if re.is_match("") {
                        return Err(self.bad(&key, &s, MATCHES_EMPTY));
                    }
                    NeverKill::Pattern(re)
                }
            });
        }
        Ok(out)
    }

    /// `[actions]`; `kill_floor` is checked against the validated
    /// `red_below` (written `red_raw`).
    fn actions(&self, act: RawActions, red: Size, red_raw: &str) -> Result<Actions, ConfigError> {
        let never_kill = self.never_kill(act.never_kill.unwrap_or_default())?;
        let users = act.users.unwrap_or_default();
        for (i, u) in users.iter().enumerate() {
            if u.is_empty() || u.contains(|c: char| c.is_whitespace() || c == ':' || c == '/') {
                return Err(self.bad(
                    &format!("actions.users[{i}]"),
                    u,
                    "is not a valid user name",
                ));
            }
        }
        for (key, argv) in [
            ("actions.pre_terminate", &act.pre_terminate),
            ("actions.post_terminate", &act.post_terminate),
        ] {
            if let Some(first) = argv.as_ref().and_then(|a| a.first()) {
                if first.trim().is_empty() {
                    return Err(self.bad(
                        &format!("{key}[0]"),
                        first,
                        "must name a program (argv, run without a shell)",
                    ));
                }
            }
        }
        let floor_raw = act.kill_floor.clone().unwrap_or_default();
        let kill_floor = self.size("actions.kill_floor", act.kill_floor)?;
        self.below(
            ("actions.kill_floor", kill_floor, &floor_raw),
            ("thresholds.red_below", red, red_raw),
        )?;
        Ok(Actions {
            notify: self.given("actions.notify", act.notify)?,
            terminate: self.given("actions.terminate", act.terminate)?,
            dry_run: self.given("actions.dry_run", act.dry_run)?,
            terminate_after: self.dur("actions.terminate_after", act.terminate_after)?,
            kill_after: self.dur("actions.kill_after", act.kill_after)?,
            kill_floor,
            min_victim_footprint: self
                .size("actions.min_victim_footprint", act.min_victim_footprint)?,
            never_kill,
            users,
            pre_terminate: act.pre_terminate.unwrap_or_default(),
            post_terminate: act.post_terminate.unwrap_or_default(),
            hook_timeout: self.dur("actions.hook_timeout", act.hook_timeout)?,
        })
    }

    fn log(&self, log: RawLog) -> Result<LogConfig, ConfigError> {
        let path_raw = log.path.unwrap_or_default();
        let path = if path_raw.trim().is_empty() {
            default_log_path()?
        } else {
            let p = expand_tilde(path_raw.trim());
            if !p.is_absolute() {
                return Err(self.bad(
                    "log.path",
                    &path_raw,
                    "must be an absolute path (or start with ~/)",
                ));
            }
            p
        };
        let max_raw = log.max_size.clone().unwrap_or_default();
        let max_size = match self.size("log.max_size", log.max_size)? {
            Size::Bytes(b) if b.0 >= 4096 => b,
            _ => return Err(self.bad("log.max_size", &max_raw, "must be at least 4096 bytes")),
        };
        let keep = self.given("log.keep", log.keep)?;
        if keep > 100 {
            return Err(self.bad("log.keep", &keep.to_string(), "must be at most 100"));
        }
        Ok(LogConfig {
            path,
            sample_every: self.dur("log.sample_every", log.sample_every)?,
            max_size,
            keep,
        })
    }
}

/// The config file `load` would read, if any.
pub fn locate(cli_path: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(p) = cli_path {
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(v) = std::env::var_os("HEADROOM_CONFIG") {
        if v.is_empty() {
            return Err(ConfigError::Invalid(
                "$HEADROOM_CONFIG is set but empty".into(),
            ));
        }
        return Ok(Some(PathBuf::from(v)));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    Ok(base
        .map(|b| b.join("headroom/config.toml"))
        .filter(|p| p.exists()))
}

/// `metrics.listen`: empty = off, else an IP address and a non-zero port.
/// Any address the user writes is taken as meant (the daemon warns at start
/// when it is not loopback); host names are not resolved.
fn parse_listen(s: &str) -> Result<Option<SocketAddr>, &'static str> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let a: SocketAddr = t
        .parse()
        .map_err(|_| "is not an address and port (e.g. \"127.0.0.1:9779\" or \"[::1]:9779\")")?;
    if a.port() == 0 {
        return Err("needs a port other than 0");
    }
    Ok(Some(a))
}

/// `Some(a < b)` when comparable without knowing total RAM; `None` when one
/// is a percentage and the other absolute (checked per machine at run time).
fn size_lt(a: Size, b: Size) -> Option<bool> {
    match (a, b) {
        (Size::Bytes(x), Size::Bytes(y)) => Some(x < y),
        (Size::Percent(x), Size::Percent(y)) => Some(x < y),
        _ => None,
    }
}

/// Whose processes are watched and may be signalled: a normal user only
/// their own; root watches everyone's but signals only root's and those of
/// the users opted in by `actions.users` (issue 12).
pub fn scope_for(cfg: &Config) -> Result<crate::model::Scope, ConfigError> {
    use crate::model::Scope;
    let uid = nix::unistd::Uid::current();
    if !uid.is_root() {
        return Ok(Scope::user(uid.as_raw()));
    }
    let mut uids = Vec::new();
    for (i, name) in cfg.actions.users.iter().enumerate() {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => uids.push(u.uid.as_raw()),
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "{}: 'actions.users[{i}]' ('{name}') is not a user on this machine",
                    cfg.source
                )))
            }
        }
    }
    Ok(Scope::root(uids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid_and_match_the_guide() {
        let c = Config::embedded().expect("defaults");
        assert_eq!(c.thresholds.red_below, Size::Bytes(Bytes::gib(2)));
        assert_eq!(c.thresholds.yellow_below, Size::Bytes(Bytes::gib(4)));
        assert_eq!(c.poll_interval, Duration::from_secs(1));
        assert!(!c.actions.dry_run);
        assert_eq!(c.actions.kill_floor, Size::Bytes(Bytes::gib(1)));
    }

    #[test]
    fn sizes_parse_with_units_and_percent() {
        assert_eq!(parse_size("4GiB"), Ok(Size::Bytes(Bytes::gib(4))));
        assert_eq!(parse_size("512MiB"), Ok(Size::Bytes(Bytes::mib(512))));
        assert_eq!(parse_size("2GB"), Ok(Size::Bytes(Bytes(2_000_000_000))));
        assert_eq!(parse_size(" 1024 "), Ok(Size::Bytes(Bytes(1024))));
        assert_eq!(
            parse_size("1.5GiB"),
            Ok(Size::Bytes(Bytes(3 * Bytes::GIB / 2)))
        );
        assert_eq!(parse_size("10%"), Ok(Size::Percent(10.0)));
        assert!(parse_size("-1GiB").is_err());
        assert!(parse_size("150%").is_err());
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(Size::Percent(10.0).resolve(Bytes::gib(100)), Bytes::gib(10));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            failure_persistence: None,
            cases: if std::env::var_os("PROPTEST_CASES").is_some() {
                proptest::test_runner::Config::default().cases
            } else {
                2000
            },
            ..proptest::test_runner::Config::default()
        })]

        /// Sizes and listen addresses as a user might mistype them (the
        /// rest of the config's fuzzing is tests/props.rs).
        #[test]
        fn size_and_listen_parsers_never_panic(
            size in "[0-9.\\-]{0,12}[ ]?(B|KiB|MiB|GiB|TiB|%|kb|x)?",
            listen in "[0-9.:\\[\\]a-f]{0,30}",
        ) {
            let _ = parse_size(&size);
            let _ = parse_listen(&listen);
        }
    }

    #[test]
    fn partial_user_file_keeps_other_defaults() {
        let c = Config::from_text("u.toml", "[thresholds]\nred_below = \"3GiB\"\n").expect("valid");
        assert_eq!(c.thresholds.red_below, Size::Bytes(Bytes::gib(3)));
        assert_eq!(c.thresholds.yellow_below, Size::Bytes(Bytes::gib(4)));
        assert_eq!(c.source, "u.toml");
    }

    #[test]
    fn a_user_file_is_laid_over_the_defaults_key_by_key() {
        let c = Config::from_text(
            "u.toml",
            "[mlx]\npatterns = ['^train$']\n[actions]\nnever_kill = [7]\nnotify = false\n",
        )
        .expect("valid");
        // A list the user gives replaces the default list whole …
        let pats: Vec<&str> = c.patterns.iter().map(Regex::as_str).collect();
        assert_eq!(pats, ["^train$"]);
        assert!(matches!(c.actions.never_kill[..], [NeverKill::Pid(7)]));
        // … and every key the user leaves out keeps its default.
        assert!(c.detect_library && !c.actions.notify && c.actions.terminate);
        assert_eq!(c.actions.kill_floor, Size::Bytes(Bytes::gib(1)));
    }

    #[test]
    fn a_mistyped_key_is_reported_with_its_line() {
        // The message docs/configuration.md shows, read off the user's own
        // text (not the merged table, which has no lines).
        let e = Config::from_text("my.toml", "# mine\n[poll]\nintervl = \"1s\"\n")
            .expect_err("unknown key")
            .to_string();
        assert!(e.starts_with("my.toml (line 3): "), "{e}");
        // The first line too (the old count said line 1 for the second line).
        let e2 = Config::from_text("my.toml", "[poll]\nintervl = \"1s\"\n")
            .expect_err("unknown key")
            .to_string();
        assert!(e2.starts_with("my.toml (line 2): "), "{e2}");
        let e1 = Config::from_text("my.toml", "intervl = 1\n")
            .expect_err("unknown key")
            .to_string();
        assert!(e1.starts_with("my.toml (line 1): "), "{e1}");
        assert!(
            e.ends_with(
                "): 'poll.intervl': unknown field `intervl`, expected one of \
                 `interval`, `min_interval`, `max_interval`, `psi_trigger`"
            ),
            "{e}"
        );
    }

    #[test]
    fn the_adaptive_range_follows_an_interval_set_alone() {
        let ms = Duration::from_millis;
        let c = Config::embedded().expect("embedded");
        assert_eq!(
            (c.poll_min_interval, c.poll_interval, c.poll_max_interval),
            (ms(50), ms(1000), ms(2000))
        );
        let slow = Config::from_text("u.toml", "[poll]\ninterval = \"5s\"\n").expect("valid");
        assert_eq!(
            (slow.poll_min_interval, slow.poll_max_interval),
            (ms(50), ms(5000))
        );
        let fast = Config::from_text("u.toml", "[poll]\ninterval = \"20ms\"\n").expect("valid");
        assert_eq!(
            (fast.poll_min_interval, fast.poll_max_interval),
            (ms(20), ms(2000))
        );
        let fixed = Config::from_text(
            "u.toml",
            "[poll]\ninterval = \"100ms\"\nmax_interval = \"100ms\"\n",
        )
        .expect("valid");
        assert_eq!(fixed.poll_max_interval, ms(100));
    }

    #[test]
    fn errors_name_file_key_and_value() {
        let cases: &[(&str, &str)] = &[
            (
                "[thresholds]\nred_below = \"6GiB\"\n",
                "'thresholds.red_below' ('6GiB') must be below 'thresholds.yellow_below' ('4GiB')",
            ),
            (
                "[thresholds]\nred_below = \"-2GiB\"\n",
                "'thresholds.red_below' ('-2GiB') must not be negative",
            ),
            ("[poll]\ninterval = 5\n", "'poll.interval'"),
            ("[poll]\nintervl = \"1s\"\n", "intervl"),
            (
                "[poll]\nmin_interval = \"2s\"\n",
                "'poll.min_interval' ('2s') must be at least 10ms and at most 'poll.interval'",
            ),
            (
                "[poll]\nmax_interval = \"500ms\"\n",
                "'poll.max_interval' ('500ms') must be at least 'poll.interval'",
            ),
            ("[poll]\npsi_trigger = \"yes\"\n", "psi_trigger"),
            (
                "[poll]\ninterval = \"soon\"\n",
                "'poll.interval' ('soon') is not a duration",
            ),
            ("[mlx]\npatterns = [\"(\"]\n", "'mlx.patterns[0]' ('(')"),
            (
                "[actions]\nnever_kill = [0]\n",
                "'actions.never_kill[0]' ('0') is not a valid pid",
            ),
            ("this is not toml", "u.toml"),
        ];
        for (text, want) in cases {
            let e = Config::from_text("u.toml", text)
                .expect_err(text)
                .to_string();
            assert!(e.starts_with("u.toml"), "{e}");
            assert!(e.contains(want), "for {text:?}: got {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_must_be_an_address() {
        assert_eq!(Config::embedded().expect("defaults").metrics_listen, None);
        let c =
            Config::from_text("u.toml", "[metrics]\nlisten = \"127.0.0.1:9779\"\n").expect("ok");
        assert_eq!(c.metrics_listen, "127.0.0.1:9779".parse().ok());
        let c = Config::from_text("u.toml", "[metrics]\nlisten = \"[::]:9779\"\n").expect("ok");
        assert!(c.metrics_listen.is_some_and(|a| !a.ip().is_loopback()));
        for (v, want) in [
            ("localhost:9779", "is not an address and port"),
            ("127.0.0.1", "is not an address and port"),
            ("127.0.0.1:0", "needs a port other than 0"),
        ] {
            let e = Config::from_text("u.toml", &format!("[metrics]\nlisten = \"{v}\"\n"))
                .expect_err(v)
                .to_string();
            assert!(
                e.starts_with(&format!("u.toml: 'metrics.listen' ('{v}') {want}")),
                "{e}"
            );
        }
    }

    #[test]
    fn mixed_percent_and_absolute_thresholds_are_accepted() {
        let c = Config::from_text(
            "u.toml",
            "[thresholds]\nyellow_below = \"20%\"\nred_below = \"3GiB\"\n",
        );
        assert!(c.is_ok());
    }

    // Issue 13: configs that kill everything (or never react) are errors,
    // one line each naming the key and the value.
    #[test]
    fn lethal_configs_are_rejected_by_validate() {
        let cases: &[(&str, &str)] = &[
            (
                "[actions]\nkill_floor = \"3GiB\"\n",
                "'actions.kill_floor' ('3GiB') must be below 'thresholds.red_below' ('2GiB')",
            ),
            (
                "[actions]\nkill_floor = \"2GiB\"\n",
                "'actions.kill_floor' ('2GiB') must be below 'thresholds.red_below'",
            ),
            (
                "[thresholds]\nyellow_below = \"50%\"\nred_below = \"60%\"\n",
                "'thresholds.red_below' ('60%') must be below 'thresholds.yellow_below' ('50%')",
            ),
            (
                "[mlx]\npatterns = [\"\"]\n",
                "'mlx.patterns[0]' ('') matches the empty string",
            ),
            (
                "[mlx]\npatterns = [\"^mlx_lm$\", \"x*\"]\n",
                "'mlx.patterns[1]' ('x*') matches the empty string",
            ),
            (
                "[actions]\nnever_kill = [\"^$|foo\"]\n",
                "'actions.never_kill[0]' ('^$|foo') matches the empty string",
            ),
            (
                "[actions]\nterminate_after = \"0s\"\nkill_after = \"0s\"\n",
                "'actions.kill_after' ('0s') must be between 1s and 10m",
            ),
            (
                "[actions]\nkill_after = \"11m\"\n",
                "'actions.kill_after' ('11m') must be between 1s and 10m",
            ),
            (
                "[actions]\nterminate_after = \"601s\"\n",
                "'actions.terminate_after' ('601s') must be between 0s and 10m",
            ),
            (
                "[thresholds]\ndwell = \"100000000000h\"\n",
                "'thresholds.dwell' ('100000000000h') must be between 0s and 1h",
            ),
            (
                "[thresholds]\nswapout_hold = \"2h\"\n",
                "'thresholds.swapout_hold' ('2h') must be between 0s and 1h",
            ),
            (
                "[thresholds]\nprojection_horizon = \"61m\"\n",
                "'thresholds.projection_horizon' ('61m') must be between 0s and 1h",
            ),
            (
                "[actions]\nhook_timeout = \"1000h\"\n",
                "'actions.hook_timeout' ('1000h') must be between 0s and 1m",
            ),
            (
                "[log]\nsample_every = \"1day\"\n",
                "'log.sample_every' ('1day') must be between 0s and 1h",
            ),
        ];
        for (text, want) in cases {
            let e = Config::from_text("u.toml", text)
                .expect_err(text)
                .to_string();
            assert!(e.starts_with("u.toml: "), "{e}");
            assert!(e.contains(want), "for {text:?}: got {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        // The caps themselves are allowed.
        Config::from_text(
            "u.toml",
            "[thresholds]\ndwell = \"1h\"\nswapout_hold = \"1h\"\nprojection_horizon = \"1h\"\n\
             [actions]\nterminate_after = \"10m\"\nkill_after = \"1s\"\nhook_timeout = \"60s\"\n\
             [log]\nsample_every = \"1h\"\n",
        )
        .expect("at the caps");
    }

    #[test]
    fn thresholds_are_checked_against_total_ram() {
        let total = Bytes::gib(16);
        let check = |text: &str| {
            Config::from_text("u.toml", text)
                .expect(text)
                .check_total(total)
                .map_err(|e| e.to_string())
        };
        assert_eq!(check(""), Ok(()), "the defaults fit 16 GiB");
        let cases: &[(&str, &str)] = &[
            (
                "[thresholds]\nyellow_below = \"200GiB\"\nred_below = \"100GiB\"\n",
                "u.toml: 'thresholds.yellow_below' (214748364800 bytes) must be below this machine's total RAM (17179869184 bytes)",
            ),
            (
                "[thresholds]\nyellow_below = \"100%\"\nred_below = \"50%\"\n",
                "'thresholds.yellow_below' (100% = 17179869184 bytes) must be below this machine's total RAM",
            ),
            (
                "[thresholds]\nred_below = \"3GiB\"\nyellow_below = \"10%\"\n",
                "'thresholds.red_below' (3221225472 bytes) must be below 'thresholds.yellow_below' (10% = 1717986918 bytes)",
            ),
            (
                "[thresholds]\nred_below = \"10%\"\n[actions]\nkill_floor = \"2GiB\"\n",
                "'actions.kill_floor' (2147483648 bytes) must be below 'thresholds.red_below' (10% = 1717986918 bytes)",
            ),
            (
                "[thresholds]\nyellow_below = \"12GiB\"\nred_below = \"10GiB\"\n[actions]\nkill_floor = \"100%\"\n",
                "'actions.kill_floor' (100% = 17179869184 bytes) must be below this machine's total RAM",
            ),
        ];
        for (text, want) in cases {
            let e = check(text).expect_err(text);
            assert!(e.contains(want), "for {text:?}: got {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn the_default_log_path_never_falls_back_to_tmp() {
        let p = |home: Option<&str>, xdg: Option<&str>, root: bool, mac: bool| {
            default_log_path_for(home.map(PathBuf::from), xdg.map(PathBuf::from), root, mac)
        };
        let ok = |s: &str| Ok(PathBuf::from(s));
        assert_eq!(
            p(Some("/home/a"), None, false, false),
            ok("/home/a/.local/state/headroom/headroom.log")
        );
        assert_eq!(
            p(Some("/home/a"), Some("/s"), false, false),
            ok("/s/headroom/headroom.log")
        );
        assert_eq!(
            p(Some("/Users/a"), Some("/s"), false, true),
            ok("/Users/a/Library/Logs/headroom/headroom.log")
        );
        for home in [None, Some(""), Some("relative")] {
            assert_eq!(
                p(home, None, true, false),
                ok("/var/log/headroom/headroom.log")
            );
            assert_eq!(
                p(home, None, true, true),
                ok("/Library/Logs/headroom/headroom.log")
            );
            let e = p(home, None, false, false).expect_err("no HOME");
            assert!(e.contains("$HOME"), "{e}");
            assert!(p(home, None, false, true).is_err());
        }
    }
}
