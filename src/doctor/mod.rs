//! `headroom doctor [--json] [--notify]`: every check a user needs, each
//! `ok` / `warn` / `fail` with headroom's figure beside the one the system's
//! own tool gives (`free -b` on Linux; `vm_stat`, `memory_pressure`,
//! `sysctl` on macOS), so the report can be pasted into a bug. Exit 1 when
//! any check fails (docs/doctor.md).

mod compare;
pub use compare::{compare_linux, compare_macos, parse_free, Free, MAC_MEMORY_CHECKS};

use crate::config::Config;
use crate::model::Snapshot;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report: headroom's figure (`ours`), the system tool's
/// (`theirs`) where there is one, and what it means.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ours: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theirs: Option<String>,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            ours: None,
            theirs: None,
            detail: detail.into(),
        }
    }

    pub fn figures(mut self, ours: impl Into<String>, theirs: impl Into<String>) -> Check {
        self.ours = Some(ours.into());
        self.theirs = Some(theirs.into());
        self
    }
}

/// What `doctor` was asked to do.
pub struct Options<'a> {
    pub config: Option<&'a std::path::Path>,
    pub notify: bool,
}

/// Run every check; the report (text or JSON) and whether any failed.
pub fn run(opts: &Options, as_json: bool) -> (String, bool) {
    let checks = checks(opts);
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    (render(&checks, as_json), failed)
}

fn checks(opts: &Options) -> Vec<Check> {
    let mut out = Vec::new();
    let cfg = match crate::daemon::load_for_this_machine(opts.config) {
        Ok(c) => {
            out.push(Check::new(
                "config",
                Status::Ok,
                format!("valid, from {}", c.source),
            ));
            c
        }
        Err(e) => {
            out.push(Check::new("config", Status::Fail, e.to_string()));
            // The rest still helps: with the embedded defaults.
            match Config::embedded() {
                Ok(c) => c,
                Err(_) => return out,
            }
        }
    };
    out.push(log_check(&cfg));
    match sample_twice_bounded(&cfg) {
        Ok((snap, system, after)) => {
            out.push(Check::new(
                "sampler",
                Status::Ok,
                "two samples in a row (the host_statistics64 / /proc reads are not rate-limited)",
            ));
            out.extend(system_checks(&snap, &after, system.as_deref()));
            out.push(mlx_check(&snap));
            out.push(machine_check(&snap));
            out.extend(wired_check(&snap, &cfg));
        }
        Err(e) => out.push(Check::new("sampler", Status::Fail, e)),
    }
    out.extend(platform_checks(&cfg));
    out.push(agent_check());
    out.push(notify_check(opts.notify));
    out
}

/// How long doctor waits for its samples: a read under /proc that never
/// returns (a process in D state holding its map lock) must not hang the
/// command people run when something is wrong.
const SAMPLE_DEADLINE: Duration = Duration::from_secs(30);

/// `sample_twice` on a thread, waited for at most SAMPLE_DEADLINE.
fn sample_twice_bounded(cfg: &Config) -> Result<(Snapshot, Option<String>, Snapshot), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let cfg = cfg.clone();
    std::thread::spawn(move || {
        let _ = tx.send(sample_twice(&cfg));
    });
    rx.recv_timeout(SAMPLE_DEADLINE).unwrap_or_else(|_| {
        Err(format!(
            "sampling did not return within {} s (a read under /proc is stuck; \
             `ps -eo pid,stat,comm | grep ' D'` lists processes in uninterruptible sleep)",
            SAMPLE_DEADLINE.as_secs()
        ))
    })
}

/// A sample, the system tool's text, and a second sample right after: the
/// tool's figures are compared with the range the two samples span, and
/// the second proves a sample right after another works.
fn sample_twice(cfg: &Config) -> Result<(Snapshot, Option<String>, Snapshot), String> {
    let (mut sampler, _) =
        crate::sample::open(cfg, std::time::Instant::now()).map_err(|e| e.to_string())?;
    let snap = sampler.sample().map_err(|e| e.to_string())?;
    let system = system_tool_text();
    let after = sampler
        .sample()
        .map_err(|e| format!("a second sample right after the first failed: {e}"))?;
    Ok((snap, system, after))
}

const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The system tool's output, concatenated (None when it could not run).
fn system_tool_text() -> Option<String> {
    let cmds: &[(&str, &[&str])] = if cfg!(target_os = "macos") {
        &[
            ("vm_stat", &[]),
            ("memory_pressure", &["-Q"]),
            (
                "sysctl",
                &[
                    "hw.memsize",
                    "vm.swapusage",
                    "kern.memorystatus_vm_pressure_level",
                ],
            ),
        ]
    } else {
        &[("free", &["-b"])]
    };
    let mut text = String::new();
    for (prog, args) in cmds {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let o = crate::agent::runner::run(prog, &args, TOOL_TIMEOUT).ok()?;
        if !o.ok() {
            return None;
        }
        text.push_str(&o.stdout);
        text.push('\n');
    }
    Some(text)
}

fn system_checks(snap: &Snapshot, after: &Snapshot, text: Option<&str>) -> Vec<Check> {
    let tool = if cfg!(target_os = "macos") {
        "vm_stat / memory_pressure / sysctl"
    } else {
        "free -b"
    };
    let Some(text) = text else {
        return vec![Check::new(
            "memory",
            Status::Warn,
            format!("{tool} could not run: nothing to compare with"),
        )];
    };
    if cfg!(target_os = "macos") {
        compare_macos(snap, after, text)
    } else {
        compare_linux(snap, after, text)
    }
}

/// The log opened the way the daemon opens it (and so created if missing):
/// unsafe (someone else could plant or redirect it) or unwritable fails.
fn log_check(cfg: &Config) -> Check {
    let path = crate::text::line(&cfg.log.path.display().to_string());
    match crate::fsafe::open_log(&cfg.log.path) {
        Ok(_) => Check::new("log", Status::Ok, format!("{path} is writable and safe")),
        Err(crate::fsafe::FileError::Io(e)) => Check::new(
            "log",
            Status::Fail,
            format!("{path} cannot be written ({e}): the daemon would run with no log"),
        ),
        Err(e) => Check::new("log", Status::Fail, crate::text::line(&e.to_string())),
    }
}

fn mlx_check(snap: &Snapshot) -> Check {
    if snap.mlx_processes.is_empty() {
        return Check::new("mlx", Status::Ok, "no MLX process running now");
    }
    let found: Vec<String> = snap
        .mlx_processes
        .iter()
        .map(|p| {
            format!(
                "{} (pid {}, {}) by {}",
                crate::text::line(&p.program),
                p.pid,
                p.footprint_bytes,
                crate::text::line(&p.matched_by)
            )
        })
        .collect();
    Check::new("mlx", Status::Ok, found.join("; "))
}

fn machine_check(snap: &Snapshot) -> Check {
    let chip = crate::advise::machine::cpu_brand();
    let tier = chip
        .as_deref()
        .and_then(crate::advise::machine::chip_info)
        .and_then(|c| c.guide_practical_limit)
        .map(|l| format!(", the guide's practical limit: {l}"))
        .unwrap_or_default();
    Check::new(
        "machine",
        Status::Ok,
        format!(
            "{}, {} of RAM{tier}",
            crate::text::line(chip.as_deref().unwrap_or("unknown CPU")),
            snap.memory.total_bytes
        ),
    )
}

/// The GPU wired limit (Apple Silicon): what it leaves macOS, by the
/// thresholds. A warning, not a failure: headroom itself works either way.
/// `None` where the limit is unknown (Linux, Intel, older macOS).
fn wired_check(snap: &Snapshot, cfg: &Config) -> Option<Check> {
    let lines = crate::classify::Lines::resolve(&cfg.thresholds, snap.memory.total_bytes);
    let v = crate::wired::judge(&snap.memory, &lines)?;
    Some(match v.warning() {
        Some(w) => Check::new("gpu_wired", Status::Warn, w),
        None => Check::new("gpu_wired", Status::Ok, v.figures()),
    })
}

fn agent_check() -> Check {
    let a = crate::agent::report::probe();
    let how = match a.manager {
        crate::agent::Manager::Launchd => "launchd",
        crate::agent::Manager::Systemd => "systemd --user",
    };
    if !a.installed {
        return Check::new(
            "agent",
            Status::Warn,
            format!("not installed ({how}): `headroom install` runs it at login"),
        );
    }
    match a.running {
        Some(true) => Check::new(
            "agent",
            Status::Ok,
            format!(
                "installed and running ({how}{})",
                a.pid.map(|p| format!(", pid {p}")).unwrap_or_default()
            ),
        ),
        Some(false) => Check::new(
            "agent",
            Status::Fail,
            format!(
                "installed but not running ({how}: {})",
                a.state.as_deref().unwrap_or("stopped")
            ),
        ),
        None => Check::new(
            "agent",
            Status::Warn,
            format!(
                "installed; {how} could not be asked: {}",
                a.detail.as_deref().unwrap_or("unknown")
            ),
        ),
    }
}

fn notify_check(send: bool) -> Check {
    match notify_reachable(send) {
        Ok(what) => Check::new("notifications", Status::Ok, what),
        Err(why) => Check::new("notifications", Status::Warn, why),
    }
}

/// The desktop notification server on the session bus (asked for its name,
/// which sends nothing), and with `send` one real notice through it. On a
/// thread with a deadline: a bus that never answers must not hang doctor.
#[cfg(all(unix, not(target_os = "macos")))]
fn notify_reachable(send: bool) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = notify_rust::get_server_information()
            .map_err(|e| e.to_string())
            .and_then(|info| {
                let mut what = format!(
                    "notification server reachable: {} {} ({})",
                    info.name, info.version, info.vendor
                );
                if send {
                    let sent = crate::act::notify::notify_test()
                        .map_err(|e| format!("the test notice was not accepted: {e}"))?;
                    what.push_str("; a test notice was sent: ");
                    what.push_str(&sent);
                }
                Ok(what)
            });
        let _ = tx.send(r);
    });
    match rx.recv_timeout(TOOL_TIMEOUT) {
        Ok(Ok(what)) => Ok(crate::text::line(&what)),
        Ok(Err(e)) => Err(format!(
            "no notification server on the session bus ({}): warnings go to the log only",
            crate::text::line(&e)
        )),
        Err(_) => Err(format!(
            "the session bus did not answer within {}s: warnings go to the log only",
            TOOL_TIMEOUT.as_secs()
        )),
    }
}

/// macOS delivers through osascript, which cannot be asked without
/// posting (docs/macos.md); `--notify` posts one through `notify-test`'s path.
#[cfg(target_os = "macos")]
fn notify_reachable(send: bool) -> Result<String, String> {
    if !send {
        return Err("not checked: run `headroom doctor --notify` to post a test notice".into());
    }
    crate::act::notify::notify_test()
}

#[cfg(target_os = "linux")]
fn platform_checks(_cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let psi = std::path::Path::new("/proc/pressure/memory");
    out.push(match std::fs::read_to_string(psi) {
        Err(e) => Check::new(
            "psi",
            Status::Warn,
            format!(
                "{} unreadable ({e}): no PSI reason and no early wake-up",
                psi.display()
            ),
        ),
        // The trigger registers with a runtime's poller, as the daemon's
        // does (issue 18): armed in one, then dropped.
        Ok(_) => match crate::runtime().map_err(|e| e.to_string()).and_then(|rt| {
            let _in = rt.enter();
            crate::sample::psi_trigger::PsiTrigger::arm(psi).map(|t| t.spec())
        }) {
            Ok(spec) => Check::new(
                "psi",
                Status::Ok,
                format!("readable; trigger armable ({spec})"),
            ),
            Err(why) => Check::new(
                "psi",
                Status::Warn,
                format!("readable; trigger not armable ({why}): polling alone wakes the loop"),
            ),
        },
    });
    out.push(
        match crate::sys::unix::ProcessHandle::open(std::process::id() as i32) {
            Ok(h) if h.pinned() => Check::new(
                "pidfd",
                Status::Ok,
                "pidfd_open works: signals are pinned to the process checked",
            ),
            Ok(_) => Check::new(
                "pidfd",
                Status::Warn,
                "no pidfd_open (Linux < 5.3): signals go by pid after a start-time check",
            ),
            Err(e) => Check::new("pidfd", Status::Warn, format!("pidfd_open failed: {e}")),
        },
    );
    out
}

#[cfg(not(target_os = "linux"))]
fn platform_checks(_cfg: &Config) -> Vec<Check> {
    Vec::new()
}

pub fn render(checks: &[Check], as_json: bool) -> String {
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    if as_json {
        let v = serde_json::json!({
            "ok": failed == 0,
            "failed": failed,
            "warned": warned,
            "checks": checks,
        });
        return format!("{v:#}\n");
    }
    let mut o = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(o, "{tag}  {:<14} {}", c.name, crate::text::line(&c.detail));
        if let (Some(a), Some(b)) = (&c.ours, &c.theirs) {
            let _ = writeln!(o, "      {:<14} headroom {a} | system {b}", "");
        }
    }
    let _ = writeln!(
        o,
        "{} checks: {} failed, {} warnings",
        checks.len(),
        failed,
        warned
    );
    o
}
