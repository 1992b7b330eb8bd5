//! `headroom replay` and `headroom record` through the real binary: the
//! shipped traces (tests/traces/, made by generate.py) replay to exactly
//! their expected decisions; malformed traces exit 65 naming the line and
//! print no verdict; a recorded trace and a live daemon's log replay too.
//!
//! `HEADROOM_BLESS=1 cargo test --test replay` rewrites the expected files.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_headroom"))
}

fn traces() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces")
}

/// The binary with no config from the environment or the home directory.
fn headroom(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("HEADROOM_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", "/nonexistent-headroom-test-home");
    c
}

fn run(args: &[&str]) -> Output {
    headroom(args).output().expect("headroom runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn replay_json(trace: &Path) -> Vec<Value> {
    let config = traces().join("config.toml");
    let o = run(&[
        "replay",
        trace.to_str().expect("utf-8 path"),
        "--config",
        config.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert!(o.status.success(), "replay failed: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect()
}

/// Replay a shipped trace and compare with its expected file, byte for byte.
fn replay_matches_expected(name: &str) -> Vec<Value> {
    let trace = traces().join(format!("{name}.jsonl"));
    let expected_path = traces().join(format!("{name}.expected.jsonl"));
    let config = traces().join("config.toml");
    let o = run(&[
        "replay",
        trace.to_str().expect("utf-8 path"),
        "--config",
        config.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    let got = stdout(&o);
    if std::env::var_os("HEADROOM_BLESS").is_some() {
        std::fs::write(&expected_path, &got).expect("write expected");
    }
    let want = std::fs::read_to_string(&expected_path).expect("expected file");
    if got != want {
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "{name}: decision {} differs", i + 1);
        }
        assert_eq!(
            got.lines().count(),
            want.lines().count(),
            "{name}: number of decisions"
        );
    }
    got.lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

fn events<'a>(d: &'a [Value], event: &str) -> Vec<&'a Value> {
    d.iter().filter(|v| v["event"] == event).collect()
}

fn levels(d: &[Value]) -> Vec<String> {
    events(d, "level_changed")
        .iter()
        .map(|v| {
            format!(
                "{}->{}",
                v["from"].as_str().unwrap_or("?"),
                v["to"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn lora_run_creeping_into_swap_is_projected_then_terminated_once() {
    let d = replay_matches_expected("lora_swap_creep");
    assert_eq!(levels(&d), ["green->yellow", "yellow->red", "red->green"]);
    let yellow = events(&d, "level_changed")[0];
    assert!(
        yellow["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["reason"] == "projection")),
        "yellow is entered on the projection: {yellow}"
    );
    let red = events(&d, "level_changed")[1];
    assert!(
        red["reasons_text"]
            .as_str()
            .is_some_and(|t| t.contains("swapping out")),
        "{red}"
    );
    let term = events(&d, "terminate_sent");
    assert_eq!(term.len(), 1);
    assert_eq!(term[0]["pid"], 4242);
    assert_eq!(term[0]["signal"], "TERM");
    assert!(term[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("terminate_after")));
    assert_eq!(
        term[0]["at"]
            .as_f64()
            .zip(red["at"].as_f64())
            .map(|(t, r)| t - r),
        Some(5.0),
        "SIGTERM after red held for terminate_after"
    );
    assert!(events(&d, "kill_sent").is_empty(), "it exits on SIGTERM");
    let exited = events(&d, "victim_exited");
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["killed"], false);
    let notices: Vec<&str> = events(&d, "notified")
        .iter()
        .filter_map(|v| v["kind"].as_str())
        .collect();
    assert_eq!(notices, ["yellow", "red", "terminated", "recovered"]);
    assert!(events(&d, "notified")[2]["body"]
        .as_str()
        .is_some_and(|b| b.contains("--batch-size 2 --grad-checkpoint")));
}

#[test]
fn kv_cache_blowup_hits_the_floor_then_sigterm_then_sigkill() {
    let d = replay_matches_expected("kv_cache_blowup");
    assert_eq!(levels(&d), ["green->yellow", "yellow->red", "red->green"]);
    let term = events(&d, "terminate_sent");
    let kill = events(&d, "kill_sent");
    assert_eq!((term.len(), kill.len()), (1, 1));
    assert!(term[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("kill_floor")));
    assert!(kill[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("half of actions.kill_floor")));
    assert_eq!(term[0]["pid"], 5150);
    assert_eq!(kill[0]["pid"], 5150);
    assert!(term[0]["at"].as_f64() < kill[0]["at"].as_f64());
    let exited = events(&d, "victim_exited");
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["killed"], true);
}

#[test]
fn non_mlx_hog_goes_red_with_no_victim_and_never_a_signal() {
    let d = replay_matches_expected("non_mlx_hog");
    assert_eq!(levels(&d), ["green->yellow", "yellow->red", "red->green"]);
    let nv = events(&d, "no_victim");
    assert_eq!(nv.len(), 1, "reported once per incident");
    assert!(nv[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("no MLX process")));
    assert!(events(&d, "terminate_sent").is_empty());
    assert!(events(&d, "kill_sent").is_empty());
}

#[test]
fn every_shipped_trace_has_an_expected_file_and_replays_as_text() {
    let mut n = 0;
    for e in std::fs::read_dir(traces()).expect("tests/traces") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if !name.ends_with(".jsonl") || name.ends_with(".expected.jsonl") {
            continue;
        }
        n += 1;
        let stem = name.trim_end_matches(".jsonl");
        assert!(
            traces().join(format!("{stem}.expected.jsonl")).exists(),
            "{name} has no {stem}.expected.jsonl"
        );
        let o = run(&[
            "replay",
            p.to_str().expect("utf-8"),
            "--config",
            traces().join("config.toml").to_str().expect("utf-8"),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let text = stdout(&o);
        let last = text.lines().last().unwrap_or("");
        assert!(
            last.starts_with("replayed "),
            "{name}: summary line: {last}"
        );
        assert!(text.contains("level green -> yellow"), "{name}: {text}");
    }
    assert!(n >= 3, "three shipped traces, found {n}");
}

/// A headroom log is a trace: `sample` lines are Snapshots, other events
/// are skipped. The lora trace written as a daemon log replays identically.
#[test]
fn a_log_file_replays_like_the_bare_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = std::fs::read_to_string(traces().join("lora_swap_creep.jsonl")).expect("trace");
    let mut log = String::new();
    log.push_str(r#"{"ts":"2025-06-01T10:00:00.000Z","at":0.0,"event":"started","severity":"info","version":"0.1.0","pid":99}"#);
    log.push('\n');
    for (i, line) in src.lines().enumerate() {
        let mut v: Value = serde_json::from_str(line).expect("snapshot");
        let m = v.as_object_mut().expect("object");
        let mut o = serde_json::Map::new();
        o.insert("ts".into(), "2025-06-01T10:00:01.000Z".into());
        o.insert("at".into(), m["at"].clone());
        o.insert("event".into(), "sample".into());
        o.insert("severity".into(), "info".into());
        o.extend(m.clone());
        o.insert("level".into(), "green".into());
        o.insert("reasons".into(), Value::Array(vec![]));
        log.push_str(&Value::Object(o).to_string());
        log.push('\n');
        if i % 40 == 7 {
            log.push_str(r#"{"ts":"2025-06-01T10:00:02.000Z","at":7.1,"event":"mlx_process_found","severity":"info","pid":4242}"#);
            log.push('\n');
        }
    }
    let path = dir.path().join("headroom.log");
    std::fs::write(&path, log).expect("write log");
    assert_eq!(
        replay_json(&path),
        replay_json(&traces().join("lora_swap_creep.jsonl"))
    );
}

/// Write a copy of the lora trace with line `n` replaced.
fn corrupted(dir: &Path, n: usize, with: &[u8]) -> PathBuf {
    let src = std::fs::read(traces().join("lora_swap_creep.jsonl")).expect("trace");
    let mut out = Vec::new();
    for (i, line) in src.split_inclusive(|b| *b == b'\n').enumerate() {
        if i + 1 == n {
            out.extend_from_slice(with);
        } else {
            out.extend_from_slice(line);
        }
    }
    let p = dir.join(format!("bad{n}.jsonl"));
    std::fs::write(&p, out).expect("write");
    p
}

#[test]
fn malformed_lines_exit_65_naming_the_line_and_print_no_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(usize, &[u8], &str)] = &[
        (57, b"this is not json\n", "not JSON"),
        // a recorder killed mid-line leaves half an object
        (188, b"{\"at\":187.004,\"total_bytes\":1717", "not JSON"),
        (3, b"[1,2,3]\n", "expected a JSON object"),
        (
            120,
            b"{\"at\":119.0,\"available_bytes\":1}\n",
            "total_bytes",
        ),
        (
            90,
            b"{\"event\":\"sample\",\"at\":89.0,\"total_bytes\":\"lots\",\"available_bytes\":1}\n",
            "'sample' event is not a Snapshot",
        ),
        (
            60,
            b"{\"at\":1.0,\"total_bytes\":17179869184,\"available_bytes\":1}\n",
            "goes back in time",
        ),
        (10, b"\xff\xfe{}\n", "not UTF-8"),
    ];
    for (n, with, want) in cases {
        let p = corrupted(dir.path(), *n, with);
        for json in [false, true] {
            let mut args = vec!["replay", p.to_str().expect("utf-8")];
            if json {
                args.push("--json");
            }
            let o = run(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(65), "line {n}: {err}");
            assert!(o.stdout.is_empty(), "no partial verdict: {}", stdout(&o));
            let first = err.lines().next().unwrap_or("");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(
                first.contains(&format!("bad{n}.jsonl:{n}: ")) && first.contains(want),
                "line {n}: {first}"
            );
        }
    }
}

#[test]
fn an_unreadable_trace_exits_66() {
    let o = run(&["replay", "/nonexistent/trace.jsonl"]);
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/trace.jsonl"));
    assert!(o.stdout.is_empty());
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, body).expect("config");
    p
}

#[test]
fn record_writes_a_private_replayable_trace_for_the_duration() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), "[poll]\ninterval = \"200ms\"\n");
    let out = dir.path().join("t.jsonl");
    let t0 = Instant::now();
    let o = run(&[
        "record",
        "--out",
        out.to_str().expect("utf-8"),
        "--duration",
        "1500ms",
        "--config",
        cfg.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(t0.elapsed() < Duration::from_secs(10));
    let mode = std::fs::metadata(&out).expect("trace").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&out).expect("read");
    let n = text.lines().count();
    assert!(
        (4..=10).contains(&n),
        "~7 samples at 200 ms in 1.5 s, got {n}"
    );
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).expect("JSON");
        assert!(v["total_bytes"].as_u64().is_some_and(|t| t > 0), "{l}");
        assert!(v.get("event").is_none(), "a bare Snapshot, not a log line");
    }
    let r = run(&[
        "replay",
        out.to_str().expect("utf-8"),
        "--config",
        cfg.to_str().expect("utf-8"),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(
        stdout(&r).contains(&format!("replayed {n} snapshots")),
        "{}",
        stdout(&r)
    );
}

#[test]
fn record_stops_cleanly_on_sigint_and_sigterm() {
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = write_config(dir.path(), "[poll]\ninterval = \"100ms\"\n");
        let out = dir.path().join("t.jsonl");
        let mut child = headroom(&[
            "record",
            "--out",
            out.to_str().expect("utf-8"),
            "--config",
            cfg.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0)
            < 2
        {
            assert!(Instant::now() < deadline, "no samples written");
            std::thread::sleep(Duration::from_millis(50));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("signal");
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("record did not stop on {sig}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "{sig}");
        let text = std::fs::read_to_string(&out).expect("read");
        assert!(text.ends_with('\n'), "only whole lines");
    }
}

/// The daemon's own log, written with the default `log.sample_every`
/// (during an incident every sample is logged), replays to the level
/// changes the daemon logged live. The thresholds put this machine in red
/// at once; nothing may be stopped (terminate = false, no MLX pattern can
/// match), so the decisions are level changes and `no_victim`.
#[test]
fn a_live_daemon_log_replays_to_the_same_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("headroom.log");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[poll]\ninterval = \"100ms\"\n\
             [thresholds]\nyellow_below = \"99.9%\"\nred_below = \"99%\"\n\
             [mlx]\npatterns = ['^headroom-replay-test-matches-nothing$']\ndetect_library = false\n\
             [actions]\nnotify = false\nterminate = false\nterminate_after = \"300ms\"\n\
             [log]\npath = \"{}\"\nsample_every = \"10s\"\n",
            log.display()
        ),
    );
    let mut child = headroom(&["run", "--config", cfg.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    // Wait (bounded) for the termination point, then a few more samples.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("\"no_victim\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no no_victim event within 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).expect("daemon log");
    let live: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| ["level_changed", "no_victim"].contains(&v["event"].as_str().unwrap_or("")))
        .collect();
    assert!(
        live.iter().any(|v| v["event"] == "no_victim"),
        "the daemon reached the termination point: {text}"
    );
    let replayed: Vec<Value> = replay_json_with(&log, &cfg)
        .into_iter()
        .filter(|v| ["level_changed", "no_victim"].contains(&v["event"].as_str().unwrap_or("")))
        .collect();
    let key = |v: &Value| {
        if v["event"] == "level_changed" {
            format!(
                "{} {} {} {} {}",
                v["at"], v["from"], v["to"], v["available_bytes"], v["reasons_text"]
            )
        } else {
            format!("no_victim {}", v["reason"])
        }
    };
    assert_eq!(
        replayed.iter().map(key).collect::<Vec<_>>(),
        live.iter().map(key).collect::<Vec<_>>()
    );
}

fn replay_json_with(trace: &Path, cfg: &Path) -> Vec<Value> {
    let o = run(&[
        "replay",
        trace.to_str().expect("utf-8"),
        "--config",
        cfg.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

/// Issue 21: a trace recorded on a Mac carries `gpu_wired_limit_mb` and
/// `gpu_wired_lwm_mb`; replay reads them and decides exactly as without.
#[test]
fn a_trace_with_the_gpu_wired_limit_replays_like_one_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = std::fs::read_to_string(traces().join("lora_swap_creep.jsonl")).expect("trace");
    let mut out = String::new();
    for line in src.lines() {
        let mut v: Value = serde_json::from_str(line).expect("snapshot");
        let m = v.as_object_mut().expect("object");
        m.insert("gpu_wired_limit_mb".into(), 29_696.into());
        m.insert("gpu_wired_lwm_mb".into(), 0.into());
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let path = dir.path().join("mac.jsonl");
    std::fs::write(&path, out).expect("write trace");
    let with = replay_json(&path);
    assert!(!with.is_empty());
    assert_eq!(with, replay_json(&traces().join("lora_swap_creep.jsonl")));
    // A wrong type is a malformed line, not a silent zero.
    let bad = dir.path().join("bad.jsonl");
    let first = src.lines().next().expect("a line");
    let mut v: Value = serde_json::from_str(first).expect("snapshot");
    v.as_object_mut()
        .expect("object")
        .insert("gpu_wired_limit_mb".into(), "lots".into());
    std::fs::write(&bad, format!("{v}\n")).expect("write");
    let o = run(&["replay", bad.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    // (serde's flatten loses the field's name; the line and the value are named.)
    assert!(
        stderr(&o).contains("bad.jsonl:1:") && stderr(&o).contains(r#""lots""#),
        "{}",
        stderr(&o)
    );
}
