//! Real desktop notifications on Linux: each test starts its own session
//! D-Bus (`dbus-daemon --session`), a real notification server (dunst on an
//! Xvfb display) and `dbus-monitor`, points DBUS_SESSION_BUS_ADDRESS at that
//! bus, posts through `headroom::act::notify::Notifier`, and reads the
//! notification back twice: the `Notify` call as dbus-monitor captured it,
//! and dunst's own history (`dunstctl history`, JSON). The last two tests
//! run the real `headroom run` instead, with a real `python3 -m
//! mlx_lm.lora` child allocating memory, and read the daemon's own log.
//!
//! Needs the Debian packages dbus, dunst and xvfb (.ci/run installs them); a
//! missing one fails the test with the package to install.
//!
//! The environment is process-global and notify-rust reads the bus address
//! from it, so every test here holds `SERIAL` while it runs.
//!
//! The macOS backend (osascript) is run here too, through a stand-in: a
//! shell script named osascript that records its arguments and exits as
//! told. Real osascript cannot exist on Linux; the stand-in proves which
//! arguments headroom passes and what it logs for each answer, not that a
//! banner appears on a Mac.
#![cfg(target_os = "linux")]

mod common;

use headroom::act::notify::Notifier;
use headroom::act::notify_backend::{self, Osascript};
use headroom::action::{Notice, NoticeKind, Outcome};
use headroom::model::Pid;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Generous: a loaded 2-core CI machine starting Xvfb and dunst.
const WAIT: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The JSON log every test's Notifier writes to (one global subscriber per
/// test binary), under target/tmp so it is there to read after a failure.
fn log_path() -> &'static Path {
    static LOG: OnceLock<PathBuf> = OnceLock::new();
    LOG.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("notify_dbus.log");
        let _ = std::fs::remove_file(&path);
        headroom::log::init(&path, 64 << 20, 1, Instant::now());
        path
    })
}

/// Log events written after `from` (a count of earlier events).
fn events_since(from: usize) -> Vec<Value> {
    common::read_events(log_path())
        .into_iter()
        .skip(from)
        .collect()
}

fn named<'a>(events: &'a [Value], event: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == event).collect()
}

/// Which package brings each program (Debian bookworm names).
const NEEDED: &[(&str, &str)] = &[
    ("dbus-daemon", "dbus"),
    ("dbus-send", "dbus"),
    ("dbus-monitor", "dbus"),
    ("Xvfb", "xvfb"),
    ("dunst", "dunst"),
    ("dunstctl", "dunst"),
];

/// The first line a child prints on stdout, waited for (bounded).
fn first_line(child: &mut Child, what: &str) -> String {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("{what} printed nothing within {WAIT:?}"));
    let line = line.trim().to_string();
    assert!(
        !line.is_empty(),
        "{what} exited without printing its address"
    );
    line
}

/// A private session bus with dunst on it and dbus-monitor watching `Notify`
/// calls. Every process is stopped by its pid on drop.
struct Session {
    dir: tempfile::TempDir,
    addr: String,
    /// Stopped in reverse order: monitor, dunst, Xvfb, bus.
    kids: Vec<(&'static str, Child)>,
}

impl Session {
    /// None: a loud skip, a program is missing.
    fn start(test: &str) -> Option<Session> {
        if !common::need::programs(test, NEEDED) {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Session {
            addr: String::new(),
            kids: Vec::new(),
            dir,
        };

        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address"])
            .arg(format!(
                "--address=unix:path={}",
                s.dir.path().join("bus").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(s.file("dbus-daemon.err"))
            .spawn()
            .expect("start dbus-daemon");
        let addr = first_line(&mut bus, "dbus-daemon --print-address");
        s.kids.push(("dbus-daemon", bus));
        s.addr = addr;

        // -displayfd: Xvfb picks a free display and prints its number once it
        // accepts connections.
        let mut x = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "800x600x24",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(s.file("xvfb.err"))
            .spawn()
            .expect("start Xvfb");
        let display = format!(":{}", first_line(&mut x, "Xvfb -displayfd"));
        s.kids.push(("Xvfb", x));

        let conf = s.dir.path().join("dunstrc");
        std::fs::write(
            &conf,
            "[global]\n    history_length = 100\n    notification_limit = 0\n    markup = full\n",
        )
        .expect("write dunstrc");
        let dunst = Command::new("dunst")
            .arg("-config")
            .arg(&conf)
            .env("DISPLAY", &display)
            .env("DBUS_SESSION_BUS_ADDRESS", &s.addr)
            .env("XDG_CONFIG_HOME", s.dir.path())
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(s.file("dunst.out"))
            .stderr(s.file("dunst.err"))
            .spawn()
            .expect("start dunst");
        s.kids.push(("dunst", dunst));
        s.wait_for_notification_server();

        let monitor = Command::new("dbus-monitor")
            .arg("--address")
            .arg(&s.addr)
            .arg("type='method_call',interface='org.freedesktop.Notifications',member='Notify'")
            .stdin(Stdio::null())
            .stdout(s.file("monitor.out"))
            .stderr(s.file("monitor.err"))
            .spawn()
            .expect("start dbus-monitor");
        s.kids.push(("dbus-monitor", monitor));
        // A monitor loses its unique name once BecomeMonitor has taken effect.
        s.wait_until("dbus-monitor to become a monitor", |s| {
            s.monitored().contains("member=NameLost")
        });
        Some(s)
    }

    fn file(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.path().join(name)).expect("create log file")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn monitored(&self) -> String {
        self.read("monitor.out")
    }

    fn diagnostics(&self) -> String {
        [
            "dbus-daemon.err",
            "xvfb.err",
            "dunst.err",
            "monitor.err",
            "monitor.out",
        ]
        .iter()
        .map(|f| format!("--- {f}:\n{}", self.read(f)))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// Poll `ok` until it holds, for at most WAIT; a helper that died fails at once.
    fn wait_until(&mut self, what: &str, mut ok: impl FnMut(&Session) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if ok(self) {
                return;
            }
            let died = self.kids.iter_mut().find_map(|(name, kid)| {
                kid.try_wait()
                    .ok()
                    .flatten()
                    .map(|st| format!("{name} exited ({st})"))
            });
            if let Some(died) = died {
                panic!("{died} while waiting for {what}\n{}", self.diagnostics());
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for_notification_server(&mut self) {
        self.wait_until("dunst to own org.freedesktop.Notifications", |s| {
            Command::new("dbus-send")
                .arg(format!("--bus={}", s.addr))
                .args([
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/",
                    "org.freedesktop.DBus.NameHasOwner",
                ])
                .arg("string:org.freedesktop.Notifications")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
                .unwrap_or(false)
        });
    }

    fn dunstctl(&self, args: &[&str]) -> String {
        let out = Command::new("dunstctl")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.addr)
            .output()
            .expect("run dunstctl");
        assert!(
            out.status.success(),
            "dunstctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What dunst itself received: close everything on screen (which moves
    /// it to the history), then read the history as (appname, summary, body).
    fn dunst_history(&self) -> Vec<(String, String, String)> {
        self.dunstctl(&["close-all"]);
        let v: Value =
            serde_json::from_str(&self.dunstctl(&["history"])).expect("dunstctl history is JSON");
        let field = |n: &Value, k: &str| n[k]["data"].as_str().unwrap_or_default().to_string();
        v["data"][0]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| (field(n, "appname"), field(n, "summary"), field(n, "body")))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait (bounded) until dunst's history holds a notification titled `summary`.
    fn wait_for_history(&mut self, summary: &str) -> (String, String, String) {
        let mut found = None;
        self.wait_until(&format!("dunst's history to hold {summary:?}"), |s| {
            found = s.dunst_history().into_iter().find(|n| n.1 == summary);
            found.is_some()
        });
        found.expect("found")
    }

    /// Wait (bounded) until dbus-monitor has captured a Notify call containing `text`.
    fn wait_for_notify_call(&mut self, text: &str) -> String {
        self.wait_until(&format!("a Notify call containing {text:?}"), |s| {
            s.monitored().contains(text)
        });
        self.monitored()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        while let Some((_, mut kid)) = self.kids.pop() {
            // SIGTERM first so Xvfb removes its lock file and socket.
            let _ = kill(nix::unistd::Pid::from_raw(kid.id() as i32), Signal::SIGTERM);
            if common::wait_bounded(&mut kid, Duration::from_secs(10)).is_none() {
                let _ = kid.kill();
                let _ = kid.wait();
            }
        }
    }
}

/// Point notify-rust (zbus) at `addr`, or at nothing when `None`; the
/// runtime dir is always an empty one, so no fallback bus is found.
fn use_bus(addr: Option<&str>, runtime_dir: &Path) {
    match addr {
        Some(a) => std::env::set_var("DBUS_SESSION_BUS_ADDRESS", a),
        None => std::env::remove_var("DBUS_SESSION_BUS_ADDRESS"),
    }
    std::env::set_var("XDG_RUNTIME_DIR", runtime_dir);
}

fn notice(kind: NoticeKind, title: &str, body: &str, pid: i32) -> Notice {
    Notice {
        kind,
        title: title.to_string(),
        body: body.to_string(),
        pid: Some(Pid(pid)),
    }
}

/// The body escaped as the Notifier escapes it for a server with body markup (dunst).
fn as_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn yellow_notice_naming_an_mlx_process_reaches_a_real_notification_server() {
    let _g = serial();
    let Some(mut session) =
        Session::start("yellow_notice_naming_an_mlx_process_reaches_a_real_notification_server")
    else {
        return;
    };
    let runtime = tempfile::tempdir().expect("tempdir");
    use_bus(Some(&session.addr), runtime.path());
    let before = common::read_events(log_path()).len();

    // The body policy builds for a yellow transition: the process by its key
    // flags, its footprint, and the guide's remedy read off its command line.
    let cmdline = "/venv/bin/python3 -m mlx_lm.lora --model mistralai/Mistral-7B-v0.1 --train --batch-size 4 --max-seq-length 2048";
    let remedy = headroom::cmdline::remedy(cmdline).expect("a remedy for mlx_lm.lora");
    let body = format!(
        "available 3.1 GiB below yellow_below 4 GiB. {} (pid 4242) uses 9.2 GiB, growing 120 MiB/s; {remedy}.",
        headroom::cmdline::key_flags(cmdline)
    );
    assert!(body.contains("mlx_lm.lora --model mistralai/Mistral-7B-v0.1 --batch-size 4 --max-seq-length 2048 (pid 4242)"), "{body}");
    assert!(body.contains("retry with --batch-size 2 --grad-checkpoint, or a 4-bit model (e.g. Mistral-7B-v0.1-4bit)"), "{body}");
    let title = "Memory yellow: 3.1 GiB available";

    let notifier = Notifier::start();
    assert_eq!(
        notifier.post(&notice(NoticeKind::Yellow, title, &body, 4242)),
        Outcome::Done
    );
    assert!(
        notifier.flush(WAIT),
        "the notification thread did not finish within {WAIT:?}"
    );

    // 1. The Notify call on the bus, as dbus-monitor saw it.
    let captured = session.wait_for_notify_call(&format!("string \"{body}\""));
    assert!(
        captured.contains("string \"headroom\""),
        "appname:\n{captured}"
    );
    assert!(
        captured.contains(&format!("string \"{title}\"")),
        "summary:\n{captured}"
    );
    // 2. The notification as the server stored it.
    let (app, _, got_body) = session.wait_for_history(title);
    assert_eq!(app, "headroom");
    assert_eq!(got_body, body);
    // 3. The thread logged it as shown, and no error.
    let events = events_since(before);
    let shown = named(&events, "notification_sent");
    assert_eq!(shown.len(), 1, "{events:?}");
    assert_eq!(shown[0]["kind"], "yellow");
    assert_eq!(shown[0]["pid"], 4242);
    assert_eq!(shown[0]["backend"], "dbus", "Linux sends over D-Bus");
    assert!(named(&events, "error").is_empty(), "{events:?}");
}

#[test]
fn hostile_text_arrives_escaped_and_printable_without_panic() {
    let _g = serial();
    let Some(mut session) =
        Session::start("hostile_text_arrives_escaped_and_printable_without_panic")
    else {
        return;
    };
    let runtime = tempfile::tempdir().expect("tempdir");
    use_bus(Some(&session.addr), runtime.path());
    let before = common::read_events(log_path()).len();
    let notifier = Notifier::start();

    let long = "ünï🚀".repeat(150); // 600 chars, 2.1 KB
    let cmdline = format!(
        "python3 -m mlx_lm.lora --model /tmp/my models) (x/{long}\n --batch-size=8 & echo <pwned>"
    );
    let hostile_title = "Stopping mlx_lm.lora (pid 7) )) name with spaces";
    let hostile_body = format!(
        "{} (pid 7) uses 12 GiB & more <b>not bold</b>\nsecond line ) ;\n{}",
        headroom::cmdline::key_flags(&cmdline),
        headroom::cmdline::remedy(&cmdline).expect("remedy")
    );
    assert_eq!(
        notifier.post(&notice(
            NoticeKind::Terminated,
            hostile_title,
            &hostile_body,
            7
        )),
        Outcome::Done
    );

    let control_title = "ctl\u{1b}[31m title";
    let control_body = "nul\u{0} esc\u{1b}[2J bell\u{7} end";
    assert_eq!(
        notifier.post(&notice(NoticeKind::Red, control_title, control_body, 8)),
        Outcome::Done
    );

    let huge_title = "huge";
    let huge_body = "界".repeat(100_000);
    assert_eq!(
        notifier.post(&notice(NoticeKind::Red, huge_title, &huge_body, 9)),
        Outcome::Done
    );
    assert!(
        notifier.flush(WAIT),
        "the notification thread did not finish within {WAIT:?}"
    );

    let (_, _, got) = session.wait_for_history(hostile_title);
    assert_eq!(got, as_markup(&hostile_body));
    let (_, _, got) = session.wait_for_history("ctl?[31m title");
    assert_eq!(got, "nul? esc?[2J bell? end");
    let (_, _, got) = session.wait_for_history(huge_title);
    assert_eq!(got.chars().count(), headroom::act::notify::BODY_MAX_CHARS);
    assert!(
        got.starts_with("界界界") && got.ends_with('…'),
        "{}",
        &got[..30]
    );

    let events = events_since(before);
    assert_eq!(named(&events, "notification_sent").len(), 3, "{events:?}");
    assert!(named(&events, "error").is_empty(), "{events:?}");
}

#[test]
fn without_a_reachable_bus_the_error_is_logged_once_and_posting_never_blocks() {
    let _g = serial();
    let runtime = tempfile::tempdir().expect("tempdir"); // holds no `bus`
    let before = common::read_events(log_path()).len();
    let notifier = Notifier::start();
    let yellow = |i: i32| {
        notice(
            NoticeKind::Yellow,
            &format!("unreachable {i}"),
            "body",
            100 + i,
        )
    };

    // 1. An address whose socket does not exist: zbus fails to connect.
    use_bus(
        Some(&format!(
            "unix:path={}/no-such-bus",
            runtime.path().display()
        )),
        runtime.path(),
    );
    for i in 0..3 {
        assert_eq!(notifier.post(&yellow(i)), Outcome::Done);
    }
    assert!(
        notifier.flush(WAIT),
        "a missing bus stalled the notification thread"
    );
    let events = events_since(before);
    let errors = named(&events, "error");
    assert_eq!(
        errors.len(),
        1,
        "one error for three failed notices: {events:?}"
    );
    let e = errors[0]["error"].as_str().unwrap_or_default();
    assert!(e.starts_with("notifications unavailable: "), "{e}");
    assert_eq!(errors[0]["backend"], "dbus");
    assert!(named(&events, "notification_sent").is_empty());

    // 2. No address and no $XDG_RUNTIME_DIR/bus: refused before zbus is asked.
    use_bus(None, runtime.path());
    assert_eq!(notifier.post(&yellow(3)), Outcome::Done);
    assert!(notifier.flush(WAIT));
    assert_eq!(
        named(&events_since(before), "error").len(),
        1,
        "still failing: not logged again"
    );

    // 3. A bus appears: shown; then it goes away again: the error is logged again.
    let Some(mut session) =
        Session::start("without_a_reachable_bus_the_error_is_logged_once_and_posting_never_blocks")
    else {
        return;
    };
    use_bus(Some(&session.addr), runtime.path());
    assert_eq!(notifier.post(&yellow(4)), Outcome::Done);
    assert!(notifier.flush(WAIT));
    session.wait_for_history("unreachable 4");
    use_bus(None, runtime.path());
    assert_eq!(notifier.post(&yellow(5)), Outcome::Done);
    assert!(notifier.flush(WAIT));
    let events = events_since(before);
    let shown = named(&events, "notification_sent");
    assert_eq!(shown.len(), 1, "{events:?}");
    assert_eq!(shown[0]["pid"], 104);
    let errors = named(&events, "error");
    assert_eq!(errors.len(), 2, "{events:?}");
    let e = errors[1]["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("no D-Bus session bus")
            && e.contains(&runtime.path().join("bus").display().to_string()),
        "{e}"
    );
}

#[test]
fn a_hung_notification_service_fills_the_queue_and_post_still_returns() {
    let _g = serial();
    let runtime = tempfile::tempdir().expect("tempdir");
    // A socket that accepts connections (the kernel's backlog) but never
    // answers: zbus's handshake waits forever, like a wedged service.
    let sock = runtime.path().join("hung-bus");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    use_bus(
        Some(&format!("unix:path={}", sock.display())),
        runtime.path(),
    );
    let before = common::read_events(log_path()).len();
    let notifier = Notifier::start();

    // Posting runs on another thread so that a blocking post fails the test
    // (bounded wait) instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let n = notice(NoticeKind::Red, "hung", "body", 1234);
        let outcomes: Vec<Outcome> = (0..headroom::act::notify::QUEUE_CAPACITY + 10)
            .map(|_| notifier.post(&n))
            .collect();
        let flushed = notifier.flush(Duration::from_millis(200));
        let _ = tx.send((outcomes, flushed, notifier));
    });
    let (outcomes, flushed, notifier) = rx
        .recv_timeout(WAIT)
        .expect("post() blocked on a hung notification service");
    let full = Outcome::Failed("notification queue full".into());
    assert_eq!(outcomes[0], Outcome::Done);
    assert!(outcomes.contains(&full), "{outcomes:?}");
    // Once full, it stays full: the thread is stuck in the handshake.
    assert_eq!(outcomes.last(), Some(&full));
    assert!(
        !flushed,
        "flush reports the stuck thread instead of waiting on it"
    );

    // The service goes away: the stuck call fails, the thread drains the
    // queue (logging the error once) and takes notices again.
    drop(listener);
    assert!(
        notifier.flush(WAIT),
        "the notification thread did not recover when the hung service went away"
    );
    assert_eq!(
        notifier.post(&notice(NoticeKind::Red, "after", "body", 1235)),
        Outcome::Done
    );
    assert!(notifier.flush(WAIT));
    let events = events_since(before);
    assert_eq!(named(&events, "error").len(), 1, "{events:?}");
}

// --- The real daemon: `headroom run` posting through a real session bus. ---

/// Bounded waits on the daemon and its MLX child: a loaded CI machine
/// allocating gigabytes.
const LONG: Duration = Duration::from_secs(90);

/// `headroom run --dry-run` with the config layout of `common::Daemon::start`
/// ([log] in its own temp dir), but with the environment this file is about:
/// DBUS_SESSION_BUS_ADDRESS and XDG_RUNTIME_DIR given here, not inherited.
/// stderr goes to `stderr` in the temp dir, so no pipe fills.
fn start_daemon(
    config: &str,
    sample_every: &str,
    bus_addr: &str,
    runtime_dir: &Path,
) -> common::Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("logs/headroom.log");
    let cfg = format!(
        "{config}\n[log]\npath = \"{}\"\nsample_every = \"{sample_every}\"\n",
        log.display()
    );
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(&cfg_path, cfg).expect("write config");
    let stderr = std::fs::File::create(dir.path().join("stderr")).expect("create stderr file");
    let child = Command::new(common::bin())
        .arg("run")
        .arg("--config")
        .arg(&cfg_path)
        .arg("--dry-run")
        .env("DBUS_SESSION_BUS_ADDRESS", bus_addr)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start headroom run");
    common::Daemon { child, log, dir }
}

/// Poll the daemon's log until `ok` holds for the events so far (at most
/// LONG); fails at once if the daemon exits. Returns those events.
fn wait_for_log(d: &mut common::Daemon, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + LONG;
    loop {
        let events = d.events();
        if ok(&events) {
            return events;
        }
        let exited = d.child.try_wait().expect("try_wait");
        let stderr = || std::fs::read_to_string(d.dir.path().join("stderr")).unwrap_or_default();
        let tail = || {
            let n = events.len().saturating_sub(15);
            events[n..]
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        if let Some(st) = exited {
            panic!(
                "headroom exited ({st}) while waiting for {what}; stderr:\n{}\nlast events:\n{}",
                stderr(),
                tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {LONG:?} waiting for {what}; stderr:\n{}\nlast events:\n{}",
            stderr(),
            tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_notified(e: &Value, kind: &str) -> bool {
    e["event"] == "notified" && e["kind"] == kind
}

/// Thresholds relative to MemAvailable now: yellow 1 GiB below it, red
/// 4 GiB below, so the child's 2 GiB makes yellow and never red (None: a loud
/// skip, the machine has less than 5 GiB available).
fn thresholds_below_available_now(test: &str) -> Option<String> {
    let avail0 = common::need::memory(test, 5 * common::GIB)?;
    let yellow = avail0 - common::GIB;
    let red = avail0 - 4 * common::GIB;
    Some(format!(
        "[thresholds]\nyellow_below = \"{yellow}\"\nred_below = \"{red}\"\n\
         hysteresis = \"64MiB\"\ndwell = \"1s\"\n"
    ))
}

/// `python3 -m mlx_lm.lora --batch-size 4 …` (a fake mlx_lm package in
/// `dir`) growing 256 MiB every 250 ms to 2 GiB, its stdout drained for as
/// long as it runs. Returned once it has started.
fn start_mlx_child(dir: &Path) -> common::Kid {
    let body = common::allocator_py(2 * common::GIB, 256 * common::MIB, 0.25);
    let path = common::fake_mlx_lm(dir, &body);
    let mut kid = common::Kid::new(
        Command::new(common::python3())
            .args([
                "-m",
                "mlx_lm.lora",
                "--batch-size",
                "4",
                "--max-seq-length",
                "2048",
                "--train",
            ])
            .env("PYTHONPATH", &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the mlx_lm.lora child"),
    );
    kid.wait_line("ready", LONG);
    kid
}

/// One `Notify` call as dbus-monitor printed it.
#[derive(Debug)]
struct NotifyCall {
    app: String,
    summary: String,
    body: String,
}

/// The `Notify` calls in dbus-monitor's output. Its top-level arguments are
/// indented by exactly three spaces (app_name, replaces_id, app_icon,
/// summary, body, …); strings inside the actions and hints arrays are
/// indented further. Holds for one-line strings, which the daemon's are.
fn notify_calls(monitored: &str) -> Vec<NotifyCall> {
    let mut calls = Vec::new();
    let mut strings: Option<Vec<String>> = None;
    let mut finish = |strings: Option<Vec<String>>| {
        if let Some(s) = strings.filter(|s| s.len() >= 4) {
            calls.push(NotifyCall {
                app: s[0].clone(),
                summary: s[2].clone(),
                body: s[3].clone(),
            });
        }
    };
    for line in monitored.lines() {
        if !line.starts_with(' ') {
            finish(strings.take());
            if line.starts_with("method call") && line.contains("member=Notify") {
                strings = Some(Vec::new());
            }
        } else if let (Some(s), Some(arg)) = (strings.as_mut(), line.strip_prefix("   string \"")) {
            s.push(arg.strip_suffix('"').unwrap_or(arg).to_string());
        }
    }
    finish(strings);
    calls
}

#[test]
fn a_yellow_transition_posts_a_notification_naming_the_mlx_process() {
    let _g = serial();
    let _heavy = common::MEMORY_HEAVY
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let Some(mut session) =
        Session::start("a_yellow_transition_posts_a_notification_naming_the_mlx_process")
    else {
        return;
    };
    let runtime = tempfile::tempdir().expect("tempdir"); // holds no `bus`
    let Some(thresholds) = thresholds_below_available_now(
        "a_yellow_transition_posts_a_notification_naming_the_mlx_process",
    ) else {
        return;
    };
    let config = format!("[poll]\ninterval = \"200ms\"\n{}", thresholds);
    let mut d = start_daemon(&config, "1s", &session.addr, runtime.path());
    // Green first, so that yellow is a transition the child causes.
    wait_for_log(&mut d, "a green sample", |ev| {
        ev.iter()
            .any(|e| e["event"] == "sample" && e["level"] == "green")
    });

    let work = tempfile::tempdir().expect("tempdir");
    let kid = start_mlx_child(work.path());
    let pid = kid.pid();
    let events = wait_for_log(&mut d, "a yellow `notified` event", |ev| {
        ev.iter().any(|e| is_notified(e, "yellow"))
    });
    let notified = events
        .iter()
        .find(|e| is_notified(e, "yellow"))
        .expect("found");
    assert_eq!(notified["pid"], pid, "{notified}");
    assert_eq!(notified["result"]["outcome"], "done", "{notified}");
    let title = notified["title"].as_str().expect("title").to_string();
    let body = notified["body"].as_str().expect("body").to_string();

    // 1. The Notify call on the bus, as dbus-monitor saw it.
    let mut call = None;
    session.wait_until("a Notify call whose summary says yellow", |s| {
        call = notify_calls(&s.monitored())
            .into_iter()
            .find(|c| c.summary.contains("yellow"));
        call.is_some()
    });
    let call = call.expect("found");
    assert_eq!(call.app, "headroom", "{call:?}");
    assert_eq!(call.summary, title, "{call:?}");
    for part in [
        format!("(pid {pid})"),
        "mlx_lm.lora".to_string(),
        "retry with --batch-size 2 --grad-checkpoint".to_string(),
    ] {
        assert!(call.body.contains(&part), "{part:?} missing: {call:?}");
    }
    // The body has no markup characters, so escaping left it as logged.
    assert_eq!(call.body, body);
    // 2. The notification as the server stored it.
    let (app, _, got_body) = session.wait_for_history(&title);
    assert_eq!(app, "headroom");
    assert_eq!(got_body, body);
    // 3. The daemon's notification thread logged it as shown, and no error.
    let events = wait_for_log(&mut d, "a `notification_sent` event", |ev| {
        ev.iter().any(|e| e["event"] == "notification_sent")
    });
    let shown = named(&events, "notification_sent");
    assert_eq!(shown[0]["kind"], "yellow", "{events:?}");
    assert_eq!(shown[0]["pid"], pid, "{events:?}");
    let unavailable: Vec<&Value> = named(&events, "error")
        .into_iter()
        .filter(|e| e.to_string().contains("notifications unavailable"))
        .collect();
    assert!(unavailable.is_empty(), "{unavailable:?}");

    drop(kid);
    let (status, err) = d.stop();
    assert!(status.success(), "SIGTERM → exit 0, got {status:?}: {err}");
}

#[test]
fn without_any_bus_the_daemon_keeps_running_and_logs_the_error_once() {
    let _g = serial();
    let _heavy = common::MEMORY_HEAVY
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let runtime = tempfile::tempdir().expect("tempdir"); // holds no `bus`
    let no_bus = format!("unix:path={}/no-such-bus", runtime.path().display());
    let Some(thresholds) = thresholds_below_available_now(
        "without_any_bus_the_daemon_keeps_running_and_logs_the_error_once",
    ) else {
        return;
    };
    let config = format!("[poll]\ninterval = \"100ms\"\n{}", thresholds);
    let mut d = start_daemon(&config, "100ms", &no_bus, runtime.path());
    wait_for_log(&mut d, "a green sample", |ev| {
        ev.iter()
            .any(|e| e["event"] == "sample" && e["level"] == "green")
    });

    // Yellow: the first notice, which cannot be delivered.
    let work = tempfile::tempdir().expect("tempdir");
    let kid = start_mlx_child(work.path());
    let pid = kid.pid();
    wait_for_log(&mut d, "the yellow notice and its error", |ev| {
        ev.iter().any(|e| is_notified(e, "yellow")) && !named(ev, "error").is_empty()
    });
    // Recovered: a second notice that fails the same way, logged no more.
    drop(kid);
    let events = wait_for_log(&mut d, "the recovered notice, then 20 samples", |ev| {
        ev.iter()
            .position(|e| is_notified(e, "recovered"))
            .is_some_and(|i| named(&ev[i..], "sample").len() >= 20)
    });

    let notified: Vec<&Value> = named(&events, "notified");
    assert!(
        notified
            .iter()
            .any(|e| is_notified(e, "yellow") && e["pid"] == pid),
        "{notified:?}"
    );
    let errors = named(&events, "error");
    let unavailable: Vec<&&Value> = errors
        .iter()
        .filter(|e| {
            e["error"]
                .as_str()
                .is_some_and(|m| m.contains("notifications unavailable"))
        })
        .collect();
    assert_eq!(
        unavailable.len(),
        1,
        "one error for two undeliverable notices: {errors:?}"
    );
    let error = unavailable[0];
    assert_eq!(error["kind"], "yellow", "{error}");
    assert_eq!(error["pid"], pid, "{error}");
    // Sampling went on after the error.
    let error_at = error["at"].as_f64().expect("`at` on the error");
    let later = named(&events, "sample")
        .iter()
        .filter(|e| e["at"].as_f64().is_some_and(|at| at > error_at))
        .count();
    assert!(later >= 20, "{later} samples after the error: {events:?}");
    assert!(
        d.child.try_wait().expect("try_wait").is_none(),
        "the daemon keeps running without a bus"
    );
    let (status, err) = d.stop();
    assert!(status.success(), "SIGTERM → exit 0, got {status:?}: {err}");
}

/// `headroom doctor` (issue 17) asks the real notification server for its
/// name without sending anything; `--notify` sends one real notice.
#[test]
fn doctor_finds_the_notification_server_and_sends_only_when_asked() {
    let _g = serial();
    let Some(mut session) =
        Session::start("doctor_finds_the_notification_server_and_sends_only_when_asked")
    else {
        return;
    };
    let state = tempfile::tempdir().expect("tempdir");
    let doctor = |extra: &[&str]| {
        let o = Command::new(common::bin())
            .args(["doctor", "--json"])
            .args(extra)
            .env("DBUS_SESSION_BUS_ADDRESS", &session.addr)
            .env("XDG_STATE_HOME", state.path())
            .env_remove("HEADROOM_CONFIG")
            .output()
            .expect("doctor runs");
        let r: Value = serde_json::from_slice(&o.stdout).expect("json");
        let c = r["checks"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "notifications").cloned())
            .expect("a notifications check");
        (o.status.code(), c)
    };
    let (code, c) = doctor(&[]);
    assert_eq!(code, Some(0), "{c}");
    assert_eq!(c["status"], "ok", "{c}");
    let detail = c["detail"].as_str().unwrap_or("");
    assert!(detail.contains("dunst"), "{c}");
    assert!(!detail.contains("sent"), "{c}");
    assert!(
        !session.monitored().contains("headroom: test notification"),
        "doctor sent a notice without --notify"
    );
    let (code, c) = doctor(&["--notify"]);
    assert_eq!(code, Some(0), "{c}");
    assert!(
        c["detail"]
            .as_str()
            .is_some_and(|d| d.contains("test notice was sent")),
        "{c}"
    );
    let captured = session.wait_for_notify_call("string \"headroom: test notification\"");
    assert!(captured.contains("string \"headroom\""), "{captured}");
}

const FAKE_OSASCRIPT: &str = r#"#!/bin/sh
# Stand-in for /usr/bin/osascript: one argument per line to $0.argv, then
# exit as $0.exit says (with its stderr), or hang when $0.hang exists.
for a in "$@"; do printf '%s\n' "$a"; done >> "$0.argv"
if [ -e "$0.hang" ]; then exec sleep 600; fi
if [ -e "$0.exit" ]; then echo "execution error: Not authorized to send Apple events (-1743)" >&2; exit "$(cat "$0.exit")"; fi
exit 0
"#;

fn fake_osascript(dir: &Path) -> PathBuf {
    let p = dir.join("osascript");
    std::fs::write(&p, FAKE_OSASCRIPT).expect("stand-in");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

/// Issue 16: macOS sends through osascript, with the text as arguments to
/// a fixed script; an accepted send is `notification_sent` with backend
/// `osascript`, a failure one `error` naming the backend and osascript's
/// own message, and a hung osascript is killed, not waited on for good.
#[test]
fn osascript_backend_passes_text_as_arguments_and_logs_what_it_knows() {
    let _g = serial();
    assert_eq!(
        notify_backend::for_os("macos"),
        notify_backend::Kind::Osascript(PathBuf::from("/usr/bin/osascript"))
    );
    assert_eq!(notify_backend::for_os("linux"), notify_backend::Kind::Dbus);
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = fake_osascript(dir.path());
    let before = common::read_events(log_path()).len();
    let notifier = Notifier::start_with(Box::new(
        Osascript::at(prog.clone()).with_timeout(Duration::from_secs(3)),
    ));
    assert_eq!(notifier.backend(), "osascript");

    // 1. Accepted: the argv is the fixed script, then "headroom", title, body.
    let hostile = "mlx\" & (do shell script \"touch pwned\") & \"";
    let n = notice(NoticeKind::Red, "-e", hostile, 77);
    assert_eq!(notifier.post(&n), Outcome::Done);
    assert!(notifier.flush(WAIT));
    let argv = std::fs::read_to_string(dir.path().join("osascript.argv")).expect("argv");
    let argv: Vec<&str> = argv.lines().collect();
    let mut want: Vec<&str> = Vec::new();
    for line in notify_backend::SCRIPT {
        want.push("-e");
        want.push(line);
    }
    want.extend(["headroom", "-e", hostile]);
    assert_eq!(argv, want);
    assert!(!dir.path().join("pwned").exists());
    let events = events_since(before);
    let sent = named(&events, "notification_sent");
    assert_eq!(sent.len(), 1, "{events:?}");
    assert_eq!(sent[0]["backend"], "osascript");
    assert_eq!(sent[0]["kind"], "red");
    assert_eq!(sent[0]["pid"], 77);
    assert!(
        named(&events, "notification_shown").is_empty(),
        "never 'shown'"
    );

    // 2. osascript fails: one error with the backend and its message; the
    // send_now answer (notify-test) carries it too.
    std::fs::write(dir.path().join("osascript.exit"), "1").expect("exit");
    let e = notifier.send_now(&n, WAIT).expect_err("osascript exited 1");
    assert!(e.contains("-1743"), "{e}");
    let events = events_since(before);
    let errors = named(&events, "error");
    assert_eq!(errors.len(), 1, "{events:?}");
    assert_eq!(errors[0]["backend"], "osascript");
    assert!(errors[0]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("Not authorized"));
    assert_eq!(named(&events, "notification_sent").len(), 1);

    // 3. A hung osascript is killed after its timeout.
    std::fs::remove_file(dir.path().join("osascript.exit")).expect("rm");
    std::fs::write(dir.path().join("osascript.hang"), "").expect("hang");
    let e = notifier.send_now(&n, WAIT).expect_err("hangs");
    assert!(e.contains("did not return within 3 s"), "{e}");
}

/// `headroom notify-test` sends one notice through the real path: here
/// D-Bus to dunst; with no bus it fails with exit 69 and one line.
#[test]
fn notify_test_sends_one_notice_through_the_real_path() {
    let _g = serial();
    let Some(mut session) = Session::start("notify_test_sends_one_notice_through_the_real_path")
    else {
        return;
    };
    let runtime = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("notify-test")
        .env("DBUS_SESSION_BUS_ADDRESS", &session.addr)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .expect("notify-test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sent via dbus"), "{stdout}");
    let (app, _, body) = session.wait_for_history("headroom: test notification");
    assert_eq!(app, "headroom");
    assert!(body.contains("notifications reach you"), "{body}");

    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("notify-test")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .expect("notify-test");
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no D-Bus session bus"), "{err}");
}
