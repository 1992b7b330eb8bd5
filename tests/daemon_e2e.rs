//! The real `headroom run` against real processes that really allocate
//! memory, judged from its JSON log. Thresholds are set relative to this
//! machine's MemAvailable at test start, so the test works on any size.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

fn ev<'a>(e: &'a Value, name: &str) -> Option<&'a Value> {
    (e["event"] == name).then_some(e)
}

#[test]
fn mlx_child_drives_yellow_then_red_and_only_it_is_named_as_victim() {
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(avail0) = need::memory(
        "mlx_child_drives_yellow_then_red_and_only_it_is_named_as_victim",
        6 * GIB,
    ) else {
        return;
    };
    // Yellow 1.5 GiB below today's MemAvailable, red 3 GiB below.
    let yellow = avail0 - 3 * GIB / 2;
    let red = avail0 - 3 * GIB;
    let cfg = format!(
        "[poll]\ninterval = \"200ms\"\n\
         [thresholds]\nyellow_below = \"{yellow}\"\nred_below = \"{red}\"\nhysteresis = \"64MiB\"\ndwell = \"1s\"\n\
         [actions]\nterminate_after = \"1s\"\nkill_after = \"3s\"\nkill_floor = \"1MiB\"\n"
    );
    let d = Daemon::start(&cfg, &["--dry-run"]);
    d.wait_for("started", LONG, |e| ev(e, "started").is_some());

    // A non-MLX hog holds 1 GiB first: it adds pressure but must never be a victim.
    let work = tempfile::tempdir().expect("tempdir");
    let mut hog = spawn_hog(work.path(), GIB);
    hog.wait_line("done", LONG);

    // The MLX job: `python3 -m mlx_lm.lora --batch-size 4`, growing 256 MiB every 250 ms to 3.5 GiB.
    let body = allocator_py(7 * GIB / 2, 256 * MIB, 0.25);
    let args = ["--train", "--batch-size", "4"];
    let mut mlx = spawn_fake_mlx(work.path(), "lora", &body, &args);
    let pid = mlx.pid();
    let found = d.wait_for("mlx_process_found", LONG, |e| {
        ev(e, "mlx_process_found").is_some_and(|e| e["pid"] == pid)
    });
    assert!(
        found["cmdline"]
            .as_str()
            .is_some_and(|c| c.contains("-m mlx_lm.lora")),
        "{found}"
    );
    assert!(
        found["matched_by"]
            .as_str()
            .is_some_and(|m| m.starts_with("pattern:")),
        "{found}"
    );
    mlx.wait_line("done", LONG);

    let term = d.wait_for("terminate_sent", LONG, |e| {
        ev(e, "terminate_sent").is_some()
    });
    assert_eq!(term["pid"], pid, "the victim is the MLX child: {term}");
    assert_eq!(term["dry_run"], true);
    assert!(
        term["footprint_bytes"].as_u64().unwrap_or(0) > 2 * GIB,
        "{term}"
    );

    let events = d.events();
    let levels: Vec<&str> = events
        .iter()
        .filter_map(|e| ev(e, "level_changed"))
        .filter_map(|e| e["to"].as_str())
        .collect();
    let y = levels
        .iter()
        .position(|l| *l == "yellow")
        .expect("went yellow");
    let r = levels.iter().position(|l| *l == "red").expect("went red");
    assert!(y < r, "yellow before red: {levels:?}");
    let hog_pid = hog.pid();
    for e in &events {
        if e["event"] == "terminate_sent" || e["event"] == "kill_sent" {
            assert_ne!(
                e["pid"], hog_pid,
                "the non-MLX hog was named as a victim: {e}"
            );
            assert_eq!(e["pid"], pid);
        }
        if e["event"] == "mlx_process_found" {
            assert_ne!(e["pid"], hog_pid, "the hog is not MLX: {e}");
        }
    }
    // Dry run: both children are still alive.
    assert!(
        mlx.0.try_wait().expect("try_wait").is_none(),
        "dry run must not signal"
    );
    assert!(hog.0.try_wait().expect("try_wait").is_none());
    let sample = events
        .iter()
        .rev()
        .find(|e| e["event"] == "sample")
        .expect("a sample event");
    assert!(
        sample["mlx_processes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["pid"] == pid)),
        "{sample}"
    );

    drop(mlx);
    drop(hog);
    let (status, _) = d.stop();
    assert!(status.success(), "SIGTERM → exit 0, got {status:?}");
}

#[test]
fn sigterm_and_sigint_exit_zero_after_a_final_log_line() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut d = Daemon::start("[poll]\ninterval = \"100ms\"\n", &[]);
        d.wait_for("started", LONG, |e| ev(e, "started").is_some());
        d.signal(sig);
        let status = wait_bounded(&mut d.child, LONG).expect("exits");
        assert!(status.success(), "{sig}: {status:?}");
        let last = d.events().pop().expect("log has lines");
        assert_eq!(last["event"], "stopping", "{last}");
        assert_eq!(last["signal"], sig.as_str());
    }
}

#[test]
fn sighup_reloads_a_good_config_and_keeps_the_old_one_when_the_new_is_bad() {
    let d = Daemon::start("[poll]\ninterval = \"100ms\"\n", &[]);
    d.wait_for("started", LONG, |e| ev(e, "started").is_some());
    let base = std::fs::read_to_string(d.config_path()).expect("config");

    std::fs::write(
        d.config_path(),
        format!("{base}\n[thresholds]\nred_below = \"99GiB\"\n"),
    )
    .expect("write");
    d.signal(Signal::SIGHUP);
    let e = d.wait_for("reload error", LONG, |e| ev(e, "error").is_some());
    let msg = e["error"].as_str().unwrap_or("");
    assert!(
        msg.contains("thresholds.red_below") && msg.contains("keeping the old config"),
        "{msg}"
    );

    std::fs::write(d.config_path(), base.replace("100ms", "150ms")).expect("write");
    d.signal(Signal::SIGHUP);
    d.wait_for("config_reloaded", LONG, |e| {
        ev(e, "config_reloaded").is_some()
    });
    let (status, _) = d.stop();
    assert!(status.success());
}

/// A log path that cannot be used at start (its parent is a file) stops
/// `run` before anything is written: exit 73, one line naming it (issue 13:
/// the log directory is checked first). A log that fails later, while the
/// daemon runs, is reported once and sampling goes on:
/// tests/faults.rs (read-only and full file systems).
#[test]
fn an_unusable_log_path_at_start_is_refused_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").expect("write");
    let cfg = dir.path().join("c.toml");
    let log = blocker.join("headroom.log"); // parent is a file: ENOTDIR, even for root
    std::fs::write(
        &cfg,
        format!(
            "[poll]\ninterval = \"50ms\"\nmax_interval = \"50ms\"\n[log]\npath = \"{}\"\nsample_every = \"50ms\"\n",
            log.display()
        ),
    )
    .expect("write");
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start");
    let status = wait_bounded(&mut child, LONG).expect("exits");
    assert_eq!(status.code(), Some(73));
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("not-a-dir"), "{err}");
    assert_eq!(std::fs::read_to_string(&blocker).expect("blocker"), "x");
}

#[test]
fn hostile_process_names_and_command_lines_stay_on_one_line() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // A real Python that imports real MLX (found by its library, whatever
    // its names say), run through a link with a hostile name: comm comes
    // from the executable's file name (cut to 15 bytes, maybe mid-character),
    // and argv[0] is whatever the process says.
    let Some(py) = need::mlx("hostile_process_names_and_command_lines_stay_on_one_line") else {
        return;
    };
    let out = Command::new(py)
        .args([
            "-c",
            "import sys, os, mlx.core as m; print(sys._base_executable); print(os.path.dirname(os.path.dirname(m.__file__)))",
        ])
        .output()
        .expect("mlx python");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let (base_python, site) = (
        lines.next().expect("base python"),
        lines.next().expect("site-packages"),
    );
    let link = dir.path().join("mlx ev) (il\n✓✓✓✓✓✓");
    std::os::unix::fs::symlink(base_python, &link).expect("symlink");
    let long: String = "✓\")(\n\t{}".repeat(300);
    let arg0 = format!("/x y)/mlx_lm.lora --model {long}");
    let mut kid = Kid::new(
        Command::new(&link)
            .arg0(&arg0)
            .args(["-c", "import mlx.core, time; time.sleep(600)"])
            .env("PYTHONPATH", site)
            .spawn()
            .expect("spawn"),
    );
    let pid = kid.pid();

    let d = Daemon::start("[poll]\ninterval = \"100ms\"\n", &["--dry-run"]);
    let found = d.wait_for("the hostile process", LONG, |e| {
        ev(e, "mlx_process_found").is_some_and(|e| e["pid"] == pid)
    });
    // The command line survives the round trip through the JSON log exactly.
    assert_eq!(
        found["cmdline"].as_str(),
        Some(format!("{arg0} -c import mlx.core, time; time.sleep(600)").as_str())
    );
    assert!(
        found["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("mlx ev) (il\n")),
        "{found}"
    );
    // argv[0] says mlx_lm.lora, the kernel says otherwise: the library, not
    // the claim, is why it counts (issue 12).
    assert!(
        found["matched_by"]
            .as_str()
            .is_some_and(|m| m.starts_with("library:")),
        "{found}"
    );
    let raw = std::fs::read_to_string(&d.log).expect("log");
    for line in raw.lines() {
        serde_json::from_str::<Value>(line).expect("every line is one whole JSON object");
    }

    let out = Command::new(bin())
        .args(["status"])
        .env_remove("HEADROOM_CONFIG")
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with(&pid.to_string()))
        .expect("a row for the pid");
    assert!(row.contains("mlx_lm.lora"), "{row}");
    assert!(
        !text.contains('\t'),
        "control characters are replaced: {text}"
    );
    kid.0.kill().expect("kill");
    let (status, _) = d.stop();
    assert!(status.success());
}

/// A quiet daemon finds a new MLX job by the ids handed out since its last
/// look (issue 18: no listing of every pid), and those ids include the
/// job's threads: /proc/TID reads like the process itself, so a thread
/// taken for a process would be a second "MLX job" with a pid that is not
/// a process. Exactly one job is found: the process.
#[test]
fn a_new_mlx_job_with_threads_is_found_once_by_its_pid() {
    let work = tempfile::tempdir().expect("tempdir");
    // Thresholds far below anything here: the daemon stays quiet whatever
    // the other tests allocate, so new pids are looked for by id.
    let d = Daemon::start(
        "[poll]\ninterval = \"200ms\"\n[thresholds]\nyellow_below = \"64MiB\"\nred_below = \"32MiB\"\n\
         [actions]\ndry_run = true\nkill_floor = \"16MiB\"\n",
        &[],
    );
    d.wait_for("the first sample", LONG, |e| e["event"] == "sample");
    let mut job = spawn_fake_mlx(
        work.path(),
        "lora",
        "import threading, time\n\
         ev = threading.Event()\n\
         ts = [threading.Thread(target=ev.wait) for _ in range(6)]\n\
         [t.start() for t in ts]\n\
         print('tids', *[t.native_id for t in ts], flush=True)\n\
         time.sleep(120)\n",
        &["--train"],
    );
    let line = job.wait_line("tids", LONG);
    let tids: Vec<i64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().expect("a tid"))
        .collect();
    assert_eq!(tids.len(), 6, "{line}");
    let pid = job.pid();
    d.wait_for("the job found", LONG, |e| {
        e["event"] == "mlx_process_found" && e["pid"] == pid
    });
    // A few more quiet looks after it (one every 2 s here): up to 8 s, or
    // until 3 more `sample` lines.
    let samples = |d: &Daemon| d.events().iter().filter(|e| e["event"] == "sample").count();
    let before = samples(&d);
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < deadline && samples(&d) < before + 3 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let found: Vec<i64> = d
        .events()
        .iter()
        .filter(|e| e["event"] == "mlx_process_found")
        .filter_map(|e| e["pid"].as_i64())
        .collect();
    assert_eq!(found.iter().filter(|&&p| p == pid).count(), 1, "{found:?}");
    for t in &tids {
        assert!(
            !found.contains(t),
            "thread {t} of {pid} taken for a process: {found:?}"
        );
    }
}

/// An MLX job that starts and ramps at once, close to red, while the
/// daemon is quiet and knows only an idle MLX job (big enough to be a
/// victim), with the lookalikes started after the daemon went quiet: the
/// SIGTERM goes to the new job, never to the idle one or a lookalike. The
/// new job is found by the look for new ids near the line (issue 18: no
/// full listing there) or by a listing before it.
#[test]
fn an_mlx_job_unknown_until_its_ramp_is_the_victim_not_a_known_idle_one() {
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    if need::memory(
        "an_mlx_job_unknown_until_its_ramp_is_the_victim_not_a_known_idle_one",
        6 * GIB,
    )
    .is_none()
    {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    // The idle MLX job: 640 MiB (above min_victim_footprint), then still.
    let body = allocator_py(640 * MIB, 64 * MIB, 0.0);
    let mut idle = spawn_fake_mlx(work.path(), "server", &body, &["--model", "m"]);
    idle.wait_line("done", LONG);
    let avail = settled_mem_available();
    let red = avail - GIB;
    let cfg = format!(
        "[thresholds]\nyellow_below = \"{}\"\nred_below = \"{red}\"\nhysteresis = \"64MiB\"\n\
         [actions]\nterminate_after = \"0s\"\nkill_floor = \"1MiB\"\n",
        red + 256 * MIB
    );
    let d = Daemon::start(&cfg, &["--dry-run"]);
    let idle_pid = idle.pid();
    d.wait_for("the idle job found", LONG, |e| {
        e["event"] == "mlx_process_found" && e["pid"] == idle_pid
    });
    // The issue-12 lookalikes start after the daemon is quiet, so they are
    // looked at by the probe of new ids (one quiet look every 10 s here),
    // not by the first listing.
    let look = common::lookalikes::Lookalikes::start(work.path());
    std::thread::sleep(Duration::from_secs(12));
    let body = allocator_py(3 * GIB, 64 * MIB, 0.0);
    let mut job = spawn_fake_mlx(work.path(), "lora", &body, &["--train"]);
    let pid = job.pid();
    let term = d.wait_for("terminate_sent", LONG, |e| e["event"] == "terminate_sent");
    assert_eq!(term["pid"], pid, "the new job is the victim: {term}");
    job.wait_line("done", LONG);
    let events = d.events();
    for e in &events {
        if e["event"] == "terminate_sent" || e["event"] == "kill_sent" {
            assert_ne!(e["pid"], idle_pid, "the idle MLX job was named: {e}");
        }
    }
    look.assert_untouched(&events);
    drop(job);
    drop(idle);
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}
