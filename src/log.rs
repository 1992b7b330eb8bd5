//! The JSON-lines event log: a tracing Layer that writes one flat object
//! per event (`ts`, `severity`, `event`, fields), rotates by size, and keeps
//! the daemon running when the log cannot be written.

use crate::model::secs;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How long to wait before trying again to open a log that failed.
const RETRY: Duration = Duration::from_secs(10);

/// Log an event whose fields are `fields` (a struct or map serialising to a
/// JSON object), flat on the line next to `event`. The fields are turned
/// into JSON once and handed to the log's writer as they are (`emit`).
#[macro_export]
macro_rules! log_event {
    ($sev:ident, $event:expr, $fields:expr) => {{
        $crate::log::emit($crate::log::severity::$sev, $event, &$fields);
    }};
}

/// The severities `log_event!` takes, by the names of tracing's macros.
#[allow(non_upper_case_globals)]
pub mod severity {
    use tracing::Level;
    pub const error: Level = Level::ERROR;
    pub const warn: Level = Level::WARN;
    pub const info: Level = Level::INFO;
    pub const debug: Level = Level::DEBUG;
    pub const trace: Level = Level::TRACE;
}

/// Write one event to the JSON log installed as the current tracing
/// subscriber (`init`); without one (a command other than `run`) it goes
/// nowhere, as a tracing event would.
pub fn emit<T: Serialize + ?Sized>(level: Level, event: impl AsRef<str>, fields: &T) {
    tracing::dispatcher::get_default(|d| {
        let Some(layer) = d.downcast_ref::<JsonLayer>() else {
            return;
        };
        let mut m = Map::new();
        m.insert("event".into(), event.as_ref().into());
        match serde_json::to_value(fields) {
            Ok(Value::Object(f)) => m.extend(f),
            Ok(v) => {
                m.insert("fields".into(), v);
            }
            Err(e) => {
                m.insert("serialise_error".into(), e.to_string().into());
            }
        }
        layer.write(level, m);
    });
}

/// The one shape of an error event (STYLE rule 9): `event = "error"` at
/// severity error, the message in `error`.
pub fn error(message: impl std::fmt::Display) {
    error_with(message, Value::Null);
}

/// `error`, with more fields (an object) after the message.
pub fn error_with(message: impl std::fmt::Display, more: Value) {
    let mut m = Map::new();
    m.insert("error".into(), message.to_string().into());
    if let Value::Object(more) = more {
        m.extend(more);
    }
    emit(Level::ERROR, "error", &m);
}

struct Sink {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    /// (dev, inode) of the open file: when the path no longer names it (the
    /// log was deleted or rotated away by someone else) the log is reopened.
    id: Option<(u64, u64)>,
    written: u64,
    failed_at: Option<Instant>,
    reported: bool,
    human: bool,
    /// Time zero of the monotonic `at` stamped on events that carry none.
    start: Instant,
}

impl Sink {
    /// Nothing opened yet: the first line opens the file.
    fn new(path: &Path, max_size: u64, keep: u32, human: bool, start: Instant) -> Sink {
        Sink {
            path: path.to_path_buf(),
            max_size,
            keep,
            file: None,
            id: None,
            written: 0,
            failed_at: None,
            reported: false,
            human,
            start,
        }
    }

    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let f = crate::fsafe::open_log(&self.path)?;
            let m = f.metadata()?;
            self.written = m.len();
            self.id = Some(file_id(&m));
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("log file not open"))
    }

    fn write_line(&mut self, line: &[u8]) {
        if self.failed_at.is_some_and(|t| t.elapsed() < RETRY) {
            return;
        }
        if self.file.is_some() && !self.path_names_open_file() {
            self.file = None;
            // Said once, first in the new file, so its reader knows why it starts here.
            let mut note = serde_json::json!({
                "ts": now_rfc3339(),
                "at": secs(self.start.elapsed()),
                "event": "log_reopened",
                "severity": "warn",
                "path": self.path,
                "reason": "the log file was deleted or renamed by someone else",
            })
            .to_string();
            note.push('\n');
            if self
                .open()
                .and_then(|f| write_whole(f, note.as_bytes()))
                .is_ok()
            {
                self.written += note.len() as u64;
            }
        }
        let res = self.open().and_then(|f| write_whole(f, line));
        match res {
            Ok(()) => {
                self.failed_at = None;
                if self.reported {
                    self.reported = false;
                    eprintln!(
                        "headroom: writing the log {} again",
                        crate::text::line(&self.path.display().to_string())
                    );
                }
                self.written += line.len() as u64;
                if self.written >= self.max_size {
                    self.rotate();
                }
            }
            Err(e) => {
                self.file = None;
                self.id = None;
                self.failed_at = Some(Instant::now());
                if !self.reported {
                    self.reported = true;
                    eprintln!(
                        "headroom: cannot write the log {}: {e}; continuing without it (retrying every {}s)",
                        crate::text::line(&self.path.display().to_string()),
                        RETRY.as_secs()
                    );
                }
            }
        }
    }

    /// Whether the log path still names the file we have open: one stat per
    /// line (a few a second), cheap next to the write itself.
    fn path_names_open_file(&self) -> bool {
        match (std::fs::metadata(&self.path), self.id) {
            (Ok(m), Some(id)) => file_id(&m) == id,
            _ => false,
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        self.id = None;
        let name = |i: u32| {
            let mut s = self.path.clone().into_os_string();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        };
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for i in (1..self.keep).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            let _ = std::fs::rename(&self.path, name(1));
        }
        self.written = 0;
    }
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Write all of `line` to an O_APPEND file (one write(2) for a line this
/// small: lines never interleave). If the disk fills part-way, the bytes
/// that did land are cut off again, so the file never ends in a torn line.
fn write_whole(f: &mut File, line: &[u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < line.len() {
        match f.write(&line[done..]) {
            Ok(0) => {
                undo_partial(f, done);
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                undo_partial(f, done);
                return Err(e);
            }
        }
    }
    Ok(())
}

fn undo_partial(f: &mut File, written: usize) {
    if written == 0 {
        return;
    }
    if let Ok(m) = f.metadata() {
        let _ = f.set_len(m.len().saturating_sub(written as u64));
    }
}

/// Before the daemon starts: a log directory or file someone else could
/// plant or redirect stops it (exit 73, nothing written). Other failures
/// (a full disk, no permission) are left to the sink, which reports them
/// and keeps the daemon running.
pub fn preflight(path: &Path) -> Result<(), crate::Error> {
    match crate::fsafe::open_log(path) {
        Ok(_) | Err(crate::fsafe::FileError::Io(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Handle to change where the log goes (config reload) and to flush.
#[derive(Clone)]
pub struct LogHandle {
    sink: Arc<Mutex<Sink>>,
}

fn lock(sink: &Mutex<Sink>) -> MutexGuard<'_, Sink> {
    sink.lock().unwrap_or_else(|p| p.into_inner())
}

impl LogHandle {
    pub fn reconfigure(&self, path: &Path, max_size: u64, keep: u32) {
        let mut s = lock(&self.sink);
        if s.path != path {
            s.path = path.to_path_buf();
            s.file = None;
            s.id = None;
            s.failed_at = None;
            s.reported = false;
        }
        s.max_size = max_size;
        s.keep = keep;
    }
    pub fn path(&self) -> PathBuf {
        lock(&self.sink).path.clone()
    }
}

pub struct JsonLayer {
    sink: Arc<Mutex<Sink>>,
}

/// Install the JSON log as the global tracing subscriber. Human lines go to
/// stderr for level changes and actions when stderr is a terminal, and for
/// errors always.
pub fn init(path: &Path, max_size: u64, keep: u32, start: Instant) -> LogHandle {
    use tracing_subscriber::prelude::*;
    let sink = Arc::new(Mutex::new(Sink::new(
        path,
        max_size,
        keep,
        std::io::stderr().is_terminal(),
        start,
    )));
    let layer = JsonLayer { sink: sink.clone() };
    let _ = tracing_subscriber::registry().with(layer).try_init();
    LogHandle { sink }
}

/// The fields of a plain tracing event (`warn!(event = "error", …)`).
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, name: &str, v: Value) {
        let key = if name == "message" { "msg" } else { name };
        self.0.insert(key.to_string(), v);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field.name(), format!("{value:?}").into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), value.into());
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

impl JsonLayer {
    /// One line: the fixed leading keys, then `fields` in their order; the
    /// terminal's human line is read off the same map.
    fn write(&self, level: Level, mut fields: Map<String, Value>) {
        let mut sink = lock(&self.sink);
        // Fixed leading keys so a person tailing the log reads them first.
        let mut m = Map::new();
        m.insert("ts".into(), now_rfc3339().into());
        let at = fields
            .shift_remove("at")
            .unwrap_or_else(|| secs(sink.start.elapsed()).into());
        m.insert("at".into(), at);
        if let Some(e) = fields.shift_remove("event") {
            m.insert("event".into(), e);
        }
        m.insert(
            "severity".into(),
            level.as_str().to_ascii_lowercase().into(),
        );
        m.extend(fields);
        let mut line = serde_json::to_string(&m).unwrap_or_default();
        line.push('\n');
        sink.write_line(line.as_bytes());
        if level == Level::ERROR || sink.human {
            if let Some(h) = human_line(&m) {
                // The JSON above keeps names exact; a terminal gets the one rule.
                eprintln!("{}", crate::text::line(&h));
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        self.write(*event.metadata().level(), f.0);
    }
}

/// A short line for a person watching the terminal; `None` for routine events.
pub fn human_line(m: &Map<String, Value>) -> Option<String> {
    let s = |k: &str| {
        m.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    };
    let gib = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_u64())
            .map(|b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64))
            .unwrap_or_default()
    };
    let time = s("ts").get(11..19).unwrap_or("").to_string();
    let text = match s("event").as_str() {
        "started" => format!(
            "headroom started (log {}; dry_run {})",
            s("log_path"),
            s("dry_run")
        ),
        "stopping" => "headroom stopping".to_string(),
        "level_changed" => format!(
            "level {} -> {} ({} available): {}",
            s("from"),
            s("to"),
            gib("available_bytes"),
            s("reasons_text")
        ),
        "mlx_process_found" => format!(
            "MLX process {} pid {} ({})",
            s("name"),
            s("pid"),
            gib("footprint_bytes")
        ),
        "mlx_process_exited" => format!(
            "MLX process {} pid {} exited (peak {})",
            s("name"),
            s("pid"),
            gib("peak_bytes")
        ),
        "terminate_sent" | "kill_sent" | "terminate_pending" | "terminate_cancelled" => {
            format!(
                "{} pid {} {}{}: {}",
                s("event"),
                s("pid"),
                s("name"),
                if s("dry_run") == "true" {
                    " [dry run]"
                } else {
                    ""
                },
                s("reason")
            )
        }
        "no_victim" => format!("red, nothing to stop: {}", s("reason")),
        "victim_exited" => format!("victim pid {} exited after {} s", s("pid"), s("after_secs")),
        "config_reloaded" => format!("config reloaded from {}", s("source")),
        "error" => format!("error: {}", s("error")),
        _ => return None,
    };
    Some(format!("{time} {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(path: &Path, max: u64, keep: u32) -> Sink {
        Sink::new(path, max, keep, false, Instant::now())
    }

    #[test]
    fn creates_private_dir_and_rotates_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/headroom.log");
        let mut s = sink(&path, 100, 2);
        for i in 0..10 {
            s.write_line(
                format!("{{\"i\":{i},\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n")
                    .as_bytes(),
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.parent().expect("parent"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let rotated1 = std::fs::read_to_string(dir.path().join("a/b/headroom.log.1")).expect(".1");
        assert!(dir.path().join("a/b/headroom.log.2").exists());
        assert!(!dir.path().join("a/b/headroom.log.3").exists(), "keep = 2");
        for line in rotated1.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .expect("every rotated line is whole JSON");
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .expect("log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is whole JSON"))
            .collect()
    }

    #[test]
    fn a_log_deleted_or_renamed_by_someone_else_is_reopened_and_said_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("headroom.log");
        let mut s = sink(&path, 1 << 20, 1);
        s.write_line(b"{\"i\":1}\n");
        std::fs::remove_file(&path).expect("rm");
        s.write_line(b"{\"i\":2}\n");
        s.write_line(b"{\"i\":3}\n");
        let got = lines(&path);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0]["event"], "log_reopened");
        assert_eq!(
            (got[1]["i"].as_u64(), got[2]["i"].as_u64()),
            (Some(2), Some(3))
        );

        std::fs::rename(&path, dir.path().join("rotated")).expect("mv");
        s.write_line(b"{\"i\":4}\n");
        let got = lines(&path);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0]["event"], "log_reopened");
        assert_eq!(lines(&dir.path().join("rotated")).len(), 3);
    }

    #[test]
    fn a_full_disk_leaves_no_torn_line_and_is_said_once() {
        // /dev/full, already open: every write fails with ENOSPC.
        let path = Path::new("/dev/full");
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("/dev/full");
        let mut s = sink(path, 1 << 20, 1);
        s.id = Some(file_id(&f.metadata().expect("stat")));
        s.file = Some(f);
        s.write_line(b"{}\n");
        assert!(s.reported && s.file.is_none() && s.failed_at.is_some());
    }

    #[test]
    fn a_log_symlink_is_never_written_through_even_on_reopen() {
        // Issue 13: a planted headroom.log -> a file root sources.
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, "keep\n").expect("target");
        let path = dir.path().join("logs/headroom.log");
        let mut s = sink(&path, 1 << 20, 1);
        s.write_line(b"{\"i\":1}\n");
        std::fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        s.write_line(b"{\"i\":2}\n");
        assert!(s.reported && s.file.is_none());
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep\n");
        let e = preflight(&path).expect_err("refused");
        assert_eq!(e.exit_code(), 73, "{e}");
    }

    /// The log as installed by `init`, scoped to this thread: what
    /// `log_event!`, `error` and a plain tracing event each write.
    fn logged(path: &Path, f: impl FnOnce()) -> Vec<serde_json::Value> {
        use tracing_subscriber::prelude::*;
        let layer = JsonLayer {
            sink: Arc::new(Mutex::new(sink(path, 1 << 20, 1))),
        };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        lines(path)
    }

    #[test]
    fn an_event_is_one_flat_line_with_the_fixed_keys_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("headroom.log");
        #[derive(Serialize)]
        struct Found {
            pid: u32,
            name: &'static str,
            footprint_bytes: u64,
        }
        let got = logged(&path, || {
            crate::log_event!(
                info,
                "mlx_process_found",
                Found {
                    pid: 42,
                    name: "python3",
                    footprint_bytes: 1 << 30,
                }
            );
            crate::log_event!(
                warn,
                "level_changed",
                serde_json::json!({ "at": 2.5, "to": "red" })
            );
            error_with(
                "hook failed",
                serde_json::json!({ "hook": "pre_terminate" }),
            );
            error(format_args!("metrics: cannot serve: {}", "EADDRINUSE"));
            tracing::warn!(event = "error", source = "sysctl", error = %"ENOENT");
            crate::log_event!(info, "odd", 5);
        });
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().expect("object").keys().cloned().collect()
        };
        assert_eq!(
            keys(&got[0]),
            [
                "ts",
                "at",
                "event",
                "severity",
                "pid",
                "name",
                "footprint_bytes"
            ]
        );
        assert_eq!(
            (
                &got[0]["event"],
                &got[0]["severity"],
                &got[0]["footprint_bytes"]
            ),
            (
                &"mlx_process_found".into(),
                &"info".into(),
                &(1u64 << 30).into()
            )
        );
        // An event's own `at` (the Snapshot's clock) is kept, in front.
        assert_eq!(keys(&got[1]), ["ts", "at", "event", "severity", "to"]);
        assert_eq!(got[1]["at"], 2.5);
        assert_eq!(
            keys(&got[2]),
            ["ts", "at", "event", "severity", "error", "hook"]
        );
        assert_eq!(
            (&got[2]["event"], &got[2]["severity"], &got[2]["error"]),
            (&"error".into(), &"error".into(), &"hook failed".into())
        );
        assert_eq!(got[3]["error"], "metrics: cannot serve: EADDRINUSE");
        assert_eq!(
            keys(&got[4]),
            ["ts", "at", "event", "severity", "source", "error"]
        );
        assert_eq!(
            (&got[4]["severity"], &got[4]["error"]),
            (&"warn".into(), &"ENOENT".into())
        );
        assert_eq!(
            got[5]["fields"], 5,
            "a value that is not an object keeps a name"
        );
    }

    #[test]
    fn unwritable_log_is_reported_and_skipped_without_panic() {
        let mut s = sink(Path::new("/proc/headroom-cannot/x.log"), 1 << 20, 1);
        s.write_line(b"{}\n");
        assert!(s.reported && s.file.is_none());
    }
}
