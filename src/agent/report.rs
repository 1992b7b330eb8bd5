//! What `headroom status` adds about the agent: installed or not, running or
//! not (launchctl print / systemctl --user is-active), the log path, and the
//! last level change found in the log.

use super::{launchd, runner, service_file, systemd, Manager};
use crate::config::Config;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How much of the end of the log is searched for the last level change.
const LOG_TAIL_BYTES: u64 = 4 * 1024 * 1024;
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub manager: Manager,
    pub installed: bool,
    pub path: Option<PathBuf>,
    /// `None` when the service manager could not be asked.
    pub running: Option<bool>,
    /// launchd's `state = …` or systemd's is-active answer.
    pub state: Option<String>,
    pub pid: Option<u32>,
    /// Why `running` is unknown.
    pub detail: Option<String>,
}

/// Ask this platform's service manager about the agent. Never fails: what
/// cannot be found out is reported as unknown.
pub fn probe() -> AgentStatus {
    let manager = Manager::native();
    let path = super::home().ok().map(|h| service_file(manager, &h));
    let installed = path.as_ref().is_some_and(|p| p.exists());
    let mut st = AgentStatus {
        manager,
        installed,
        path,
        running: None,
        state: None,
        pid: None,
        detail: None,
    };
    match manager {
        Manager::Launchd => {
            let uid = nix::unistd::getuid().as_raw();
            let a = vec!["print".to_string(), launchd::service_target(uid)];
            match runner::run("launchctl", &a, PROBE_TIMEOUT) {
                Ok(o) if o.ok() => {
                    let (state, pid) = parse_launchctl_print(&o.stdout);
                    st.running = Some(state.as_deref() == Some("running"));
                    st.state = state.or(Some("loaded".into()));
                    st.pid = pid;
                }
                // 113: "Could not find service … in domain for user gui: UID".
                Ok(o) if o.code == Some(113) => {
                    st.running = Some(false);
                    st.state = Some("not loaded".into());
                }
                Ok(o) => st.detail = Some(o.detail()),
                Err(e) => st.detail = Some(e.to_string()),
            }
        }
        Manager::Systemd => {
            let a = vec![
                "--user".to_string(),
                "is-active".to_string(),
                systemd::UNIT.to_string(),
            ];
            match runner::run("systemctl", &a, PROBE_TIMEOUT) {
                Ok(o) if !o.stdout.trim().is_empty() && o.stderr.trim().is_empty() => {
                    let s = o.stdout.trim().to_string();
                    st.running = Some(s == "active");
                    st.state = Some(s);
                }
                Ok(o) => st.detail = Some(o.detail()),
                Err(e) => st.detail = Some(e.to_string()),
            }
        }
    }
    st
}

/// `state = running` and `pid = 123` from `launchctl print` output.
pub fn parse_launchctl_print(text: &str) -> (Option<String>, Option<u32>) {
    let mut state = None;
    let mut pid = None;
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(" = ") else {
            continue;
        };
        match k {
            "state" if state.is_none() => state = Some(v.trim().to_string()),
            "pid" if pid.is_none() => pid = v.trim().parse().ok(),
            _ => {}
        }
    }
    (state, pid)
}

/// The last `level_changed` line in the end of the log at `path`.
pub fn last_level_change(path: &Path) -> Option<Value> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    // The tail as it was measured: a log still growing (or a device named
    // as the log) is not read past it.
    f.take(LOG_TAIL_BYTES).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .rev()
        .filter(|l| l.contains("\"level_changed\""))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("event").and_then(Value::as_str) == Some("level_changed"))
        .map(|v| {
            json!({
                "ts": v.get("ts"), "from": v.get("from"), "to": v.get("to"),
                "reasons_text": v.get("reasons_text"),
            })
        })
}

/// Append the agent lines to `headroom status` output (text or JSON).
pub fn append(out: String, cfg: &Config, agent: &AgentStatus, as_json: bool) -> String {
    let last = last_level_change(&cfg.log.path);
    if as_json {
        let Ok(mut v) = serde_json::from_str::<Value>(&out) else {
            return out;
        };
        if let Some(m) = v.as_object_mut() {
            m.insert("agent".into(), json!(agent));
            m.insert("log_path".into(), json!(cfg.log.path));
            m.insert("last_level_change".into(), last.unwrap_or(Value::Null));
        }
        return format!("{v:#}\n");
    }
    let mut o = out;
    let _ = writeln!(o, "agent:     {}", agent_line(agent));
    let _ = writeln!(o, "log:       {}", cfg.log.path.display());
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    let change = match &last {
        Some(v) => format!(
            "{} {} → {} ({})",
            s(v, "ts"),
            s(v, "from"),
            s(v, "to"),
            s(v, "reasons_text")
        ),
        None => "none in the log".into(),
    };
    let _ = writeln!(o, "last level change: {change}");
    o
}

fn agent_line(a: &AgentStatus) -> String {
    let m = a.manager.as_str();
    let where_ = a
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "$HOME unset".into());
    if !a.installed {
        let run = match a.running {
            Some(true) => " (but running: a job with its label is loaded)",
            _ => "",
        };
        return format!("not installed ({m}: no {where_}){run}; `headroom install` sets it up");
    }
    let state = match (a.running, &a.state, a.pid) {
        (Some(true), _, Some(pid)) => format!("running (pid {pid})"),
        (Some(true), _, None) => "running".into(),
        (Some(false), Some(s), _) => format!("not running ({s})"),
        (Some(false), None, _) => "not running".into(),
        (None, _, _) => format!(
            "state unknown ({})",
            a.detail.as_deref().unwrap_or("no answer")
        ),
    };
    format!("installed ({m}, {where_}), {state}")
}
