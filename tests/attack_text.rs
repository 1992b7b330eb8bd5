//! Issue 13, part 5: a real process whose kernel name is a terminal attack
//! (`ESC[2J ESC[H` clears the screen and homes the cursor) and whose argv
//! carries more (an OSC title, BEL, a bidi override). `headroom status`, the
//! daemon's stderr line on a real terminal (tmux), `headroom top` (tmux) and
//! the Prometheus text show it through the one rule of src/text.rs; the JSON
//! log keeps the exact name. Needs the Debian package `tmux`.
#![cfg(target_os = "linux")]

mod common;

use common::tmux::Tmux;
use common::{bin, read_events, wait_for_event, Kid};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The kernel's name for the hostile process: 13 bytes, under comm's 15.
const NAME: &str = "\u{1b}[2J\u{1b}[Hatk13";
/// What every terminal-facing output must show instead.
const SHOWN: &str = "?[2J?[Hatk13";
/// Arguments after the name: an OSC window title ended by BEL, a bidi
/// override, a colour, a C1 CSI.
const ARGV_TAIL: &str = "\u{1b}]0;pwned\u{7}\u{202e}gnp.exe\u{1b}[31mred\u{9b}0m";

/// The config every test uses: only the hostile program is MLX, nothing is
/// ever signalled or notified.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let log = dir.join("logs/headroom.log");
    let text = format!(
        "[mlx]\npatterns = [\"atk13$\"]\ndetect_library = false\n\
         [poll]\ninterval = \"200ms\"\nmax_interval = \"200ms\"\n\
         [actions]\nnotify = false\nterminate = false\ndry_run = true\n\
         [log]\npath = \"{}\"\n{extra}",
        log.display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `sh` run through a symlink named [`NAME`] (the kernel names the process
/// after the link), waiting on a pipe that is held until the drop.
fn hostile_process(dir: &Path) -> Kid {
    let link = dir.join(NAME);
    std::os::unix::fs::symlink("/bin/sh", &link).expect("symlink");
    let child = Command::new(&link)
        .args(["-c", "read x", ARGV_TAIL, "more"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the hostile process");
    let kid = Kid::new(child);
    // Right after spawn the child may not have exec'd yet (its comm is
    // still the test thread's): wait, bounded, for the kernel's name.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", kid.pid())).expect("comm");
        if comm.trim_end_matches('\n') == NAME {
            break;
        }
        assert!(Instant::now() < deadline, "the kernel's name: {comm:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    kid
}

/// No character of the attack: ESC, BEL, C1, bidi controls (newlines and
/// tabs are the output's own).
fn assert_clean(what: &str, text: &str) {
    let bad: Vec<(usize, char)> = text
        .char_indices()
        .filter(|(_, c)| headroom::text::is_hostile(*c) && *c != '\n' && *c != '\t')
        .collect();
    assert!(bad.is_empty(), "{what} has {bad:?} in:\n{text:?}");
}

#[test]
fn status_shows_the_hostile_name_and_argv_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "");
    let kid = hostile_process(dir.path());
    // One sample may miss a process discovery has not listed yet: retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let o = Command::new(bin())
            .args(["status", "--config"])
            .arg(&cfg)
            .env_remove("HEADROOM_CONFIG")
            .output()
            .expect("headroom status");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "status: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        if text.contains(&kid.pid().to_string()) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "pid {} never listed:\n{text}",
            kid.pid()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_clean("status", &text);
    assert!(text.contains(SHOWN), "{text}");
    assert!(text.contains("?]0;pwned??gnp.exe?[31mred"), "{text}");
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// GET /metrics with `Connection: close`: the body.
fn metrics(port: u16) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

/// One daemon on a real terminal: its stderr lines on the tmux screen, its
/// JSON log and its Prometheus text, all about the same hostile process.
#[test]
fn daemon_stderr_on_a_terminal_and_prometheus_labels_are_cleaned_and_the_json_log_is_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = config(
        dir.path(),
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let kid = hostile_process(dir.path());
    let pid = kid.pid();
    let Some(t) = Tmux::new(
        "daemon_stderr_on_a_terminal_and_prometheus_labels_are_cleaned_and_the_json_log_is_exact",
        "attack-text-daemon",
    ) else {
        return;
    };
    t.start(
        200,
        50,
        &format!(
            "env -u HEADROOM_CONFIG '{}' run --config '{}'",
            bin().display(),
            cfg.display()
        ),
    );
    let log = dir.path().join("logs/headroom.log");

    // The JSON log: the exact name, escaped by JSON only.
    let found = wait_for_event(&log, "mlx_process_found", Duration::from_secs(60), |e| {
        e["event"] == "mlx_process_found" && e["pid"] == pid
    });
    assert_eq!(found["name"], NAME, "{found}");
    let raw = std::fs::read_to_string(&log).expect("log");
    assert!(raw.contains(r#""name":"\u001b[2J\u001b[Hatk13""#), "{raw}");

    // The terminal: the line names the process with '?' for each control,
    // and the screen was not cleared (the start line is still there).
    let screen = t.wait_screen(60, "the MLX process line", |s| {
        s.contains(&format!("pid {pid}"))
    });
    assert!(
        screen.contains(&format!("MLX process {SHOWN} pid {pid}")),
        "{screen}"
    );
    assert!(
        screen.contains("headroom started"),
        "screen cleared:\n{screen}"
    );
    let with_escapes = t.cmd(&["capture-pane", "-p", "-e", "-t", "s"]);
    let with_escapes = String::from_utf8_lossy(&with_escapes.stdout);
    assert!(with_escapes.contains(SHOWN), "{with_escapes:?}");

    // Prometheus: the label value is cleaned, and no control byte but '\n'.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some(b) = metrics(port).filter(|b| b.contains(&format!("pid=\"{pid}\""))) {
            break b;
        }
        assert!(Instant::now() < deadline, "no series for pid {pid}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_clean("/metrics", &body);
    assert!(
        body.contains(&format!(
            "headroom_mlx_footprint_bytes{{pid=\"{pid}\",name=\"{SHOWN}\"}}"
        )),
        "{body}"
    );
    assert!(
        read_events(&log).iter().all(|e| e["event"] != "error"),
        "errors in the log"
    );
    drop(kid);
}

#[test]
fn top_on_a_terminal_shows_the_hostile_process_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "");
    let kid = hostile_process(dir.path());
    let pid = kid.pid();
    let Some(t) = Tmux::new(
        "top_on_a_terminal_shows_the_hostile_process_cleaned",
        "attack-text-top",
    ) else {
        return;
    };
    t.start(
        200,
        50,
        &format!(
            "env -u HEADROOM_CONFIG '{}' top --config '{}'",
            bin().display(),
            cfg.display()
        ),
    );
    let screen = t.wait_screen(90, "the hostile process in top", |s| {
        s.lines()
            .any(|l| l.contains(&pid.to_string()) && l.contains("atk13"))
    });
    assert!(screen.contains(SHOWN), "{screen}");
    assert!(screen.contains("?]0;pwned??gnp.exe"), "{screen}");
    let o = t.cmd(&["capture-pane", "-p", "-e", "-t", "s"]);
    let with_escapes = String::from_utf8_lossy(&o.stdout);
    assert!(!with_escapes.contains("\u{1b}[2J"), "{with_escapes:?}");
    assert!(!with_escapes.contains('\u{202e}'), "{with_escapes:?}");
    t.cmd(&["send-keys", "-t", "s", "q"]);
    drop(kid);
}
