//! The LaunchAgent: its plist (rendered with the `plist` crate, so every
//! path is absolute and XML-escaped) and the launchctl argv for each step.

use super::{AgentError, Layout};
use plist::{Dictionary, Value};

/// The job label; the plist is `~/Library/LaunchAgents/<LABEL>.plist`.
pub const LABEL: &str = "dev.headroom.agent";
/// Seconds launchd waits before restarting a job that exited (its default is 10).
pub const THROTTLE_INTERVAL_SECS: i64 = 10;

/// The plist as a value, for rendering and for tests.
pub fn plist_value(l: &Layout) -> Result<Value, AgentError> {
    let s = |p: &std::path::Path| super::utf8(p).map(|s| Value::String(s.to_string()));
    let mut args = vec![s(&l.binary)?, Value::String("run".into())];
    if let Some(c) = &l.config {
        args.push(Value::String("--config".into()));
        args.push(s(c)?);
    }
    let mut keep_alive = Dictionary::new();
    // Restart after a crash or a failure exit, not after a clean exit (exit 0
    // is a deliberate stop: SIGTERM from `launchctl bootout`, logout).
    keep_alive.insert("SuccessfulExit".into(), Value::Boolean(false));
    keep_alive.insert("Crashed".into(), Value::Boolean(true));
    let mut d = Dictionary::new();
    d.insert("Label".into(), Value::String(LABEL.into()));
    d.insert("ProgramArguments".into(), Value::Array(args));
    d.insert("RunAtLoad".into(), Value::Boolean(true));
    d.insert("KeepAlive".into(), Value::Dictionary(keep_alive));
    d.insert(
        "ThrottleInterval".into(),
        Value::Integer(THROTTLE_INTERVAL_SECS.into()),
    );
    // Notifications are only shown to jobs in the user's GUI (Aqua) session.
    d.insert(
        "LimitLoadToSessionType".into(),
        Value::String("Aqua".into()),
    );
    // Not Background: launchd throttles Background jobs' CPU and I/O, and a
    // watchdog must still get to run when the machine is struggling. For the
    // same reason no LowPriorityIO (issue 16): it throttles the daemon's own
    // log writes and page-ins exactly under memory pressure.
    d.insert("ProcessType".into(), Value::String("Standard".into()));
    // launchd does not expand `~`: these are absolute.
    d.insert("StandardOutPath".into(), s(&l.stdout_path)?);
    d.insert("StandardErrorPath".into(), s(&l.stderr_path)?);
    Ok(Value::Dictionary(d))
}

/// The plist as XML text.
pub fn render_plist(l: &Layout) -> Result<String, AgentError> {
    let mut out = Vec::new();
    plist_value(l)?
        .to_writer_xml(&mut out)
        .map_err(|e| AgentError::Io(format!("cannot render the plist: {e}")))?;
    out.push(b'\n');
    String::from_utf8(out).map_err(|e| AgentError::Io(format!("cannot render the plist: {e}")))
}

/// True when `text` is a plist for our label (a file we may replace).
pub fn is_ours(text: &[u8]) -> bool {
    Value::from_reader(std::io::Cursor::new(text))
        .ok()
        .and_then(|v| {
            v.as_dictionary()
                .and_then(|d| d.get("Label"))
                .and_then(|l| l.as_string())
                .map(|l| l == LABEL)
        })
        .unwrap_or(false)
}

pub fn domain(uid: u32) -> String {
    format!("gui/{uid}")
}

pub fn service_target(uid: u32) -> String {
    format!("gui/{uid}/{LABEL}")
}
