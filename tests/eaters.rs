//! Issue 26, on real processes: headroom stops the MLX job that eats the
//! memory — measured, its share of the fall — never an MLX job that sits
//! idle while something else fills memory: another user's MLX job (case 1),
//! forked workers (2), a fast non-MLX hog beside a jittering MLX job (3).
//! A job that renamed itself is found by what it maps (4); a second eater is
//! stopped after the first however little the first freed (5); a job of
//! several MLX processes is stopped together, never its idle launcher or
//! the non-MLX process of its group.
//!
//! Every test runs beside the issue-12 lookalikes and beside unrelated
//! programs using CPU and memory (a busy loop, a churner that allocates and
//! frees 256 MiB twice a second): none is ever listed or signalled.
#![cfg(target_os = "linux")]

mod common;

use common::lookalikes::*;
use common::noise::Noise;
use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);
/// What the churner allocates and frees, twice a second.
const CHURN: u64 = 256 * MIB;

fn config(red: u64, extra: &str) -> String {
    format!(
        "[poll]\ninterval = \"100ms\"\n\
         [thresholds]\nyellow_below = \"{}\"\nred_below = \"{red}\"\nhysteresis = \"64MiB\"\ndwell = \"1s\"\n\
         [actions]\nterminate_after = \"1s\"\nkill_after = \"5s\"\nkill_floor = \"1MiB\"\n{extra}\n",
        red + GIB
    )
}

/// An idle MLX job (a real `python3 -m mlx_lm.server` command line) that
/// holds `total`, allocated before the daemon starts.
fn idle_mlx(dir: &Path, total: u64) -> Kid {
    let mut k = spawn_fake_mlx(
        dir,
        "server",
        &allocator_py(total, 64 * MIB, 0.0),
        &["--model", "m"],
    );
    k.wait_line("done", LONG);
    k
}

/// MemAvailable with nothing of the test moving yet (before the noise).
fn quiet_available(test: &str, min: u64) -> Option<u64> {
    need::memory(test, min)?;
    Some(settled_mem_available())
}

/// The events of `event` naming `pid`.
fn named(events: &[Value], event: &str, pid: i64) -> usize {
    events
        .iter()
        .filter(|e| is(e, event) && e["pid"] == pid)
        .count()
}

/// The decisions of a log, for a failure's message.
fn decisions(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| !is(e, "sample") && !is(e, "mlx_process_found"))
        .map(|e| {
            let mut e = e.clone();
            if let Some(m) = e.as_object_mut() {
                m.remove("cmdline");
                m.remove("ts");
            }
            e.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wait until red has held `secs` past the event `e`.
fn red_for(d: &Daemon, e: &Value, secs: f64) {
    let at = e["at"].as_f64().unwrap_or(0.0);
    d.wait_for("more red", LONG, |x| {
        is(x, "sample") && x["level"] == "red" && x["at"].as_f64().unwrap_or(0.0) > at + secs
    });
}

/// Case 1: as root, another user's MLX job eats; root's own idle MLX job
/// (large enough to be a victim) is not stopped for it, and the eater is
/// named with its share of the fall.
#[test]
fn as_root_another_users_mlx_job_eats_and_roots_idle_mlx_job_is_not_stopped() {
    const T: &str = "as_root_another_users_mlx_job_eats_and_roots_idle_mlx_job_is_not_stopped";
    if !need::root("running an MLX job as nobody") {
        return;
    }
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut ours = idle_mlx(work.path(), GIB);
    let Some(avail0) = quiet_available(T, 8 * GIB) else {
        return;
    };
    let go = work.path().join("go");
    let theirs = spawn_mlx_lora_as_nobody(
        work.path(),
        &grower_py(9 * GIB / 2, 256 * MIB, 0.25, false, &go),
    );
    let noise = Noise::start(CHURN);
    let look = Lookalikes::start(work.path());
    let d = Daemon::start(&config(avail0 - 5 * GIB / 2 - CHURN, ""), &[]);
    for p in [ours.pid(), theirs.pid()] {
        d.wait_for("both MLX jobs found", LONG, |e| {
            is(e, "mlx_process_found") && e["pid"] == p
        });
    }
    std::fs::write(&go, "go").expect("go");
    let nv = d.wait_for("no_victim", LONG, |e| is(e, "no_victim"));
    let reason = nv["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!(
            "the MLX job eating, mlx_lm.lora (pid {})",
            theirs.pid()
        )) && reason.contains("another user's"),
        "{nv}"
    );
    let red = d.wait_for("red_not_mlx", LONG, |e| is(e, "red_not_mlx"));
    let c = &red["contributors"][0];
    assert_eq!(
        (&c["job"], &c["uid"], &c["mlx"]),
        (
            &Value::from(theirs.pid()),
            &Value::from(65534),
            &Value::from(true)
        ),
        "{red}"
    );
    red_for(&d, &nv, 3.0);
    let events = d.events();
    assert!(signalled(&events).is_empty(), "{:?}", signalled(&events));
    assert!(alive(ours.pid()) && alive(theirs.pid()));
    look.assert_untouched(&events);
    noise.assert_untouched(&events);
    assert!(ours.0.try_wait().expect("try_wait").is_none());
}

/// Case 2: eight forked workers of one parent (one process group, not MLX)
/// fill memory beside an idle MLX job larger than any one of them: nothing
/// is stopped, and the workers' group is named with its share.
#[test]
fn forked_workers_eat_beside_an_idle_mlx_job_nothing_is_stopped_and_the_group_is_named() {
    const T: &str =
        "forked_workers_eat_beside_an_idle_mlx_job_nothing_is_stopped_and_the_group_is_named";
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let idle = idle_mlx(work.path(), GIB);
    let Some(avail0) = quiet_available(T, 8 * GIB) else {
        return;
    };
    let go = work.path().join("go");
    let workers_py = work.path().join("workers.py");
    write_file(
        &workers_py,
        &format!(
            "import os, time\nprint('ready', flush=True)\n\
             while not os.path.exists({go:?}):\n    time.sleep(0.05)\n\
             kids = []\nfor i in range(8):\n    pid = os.fork()\n    if pid == 0:\n        held = []\n        for j in range(6):\n            held.append(b'\\x01' * (100 << 20))\n            time.sleep(0.1)\n        time.sleep(600)\n        os._exit(0)\n    kids.append(pid)\n\
             time.sleep(600)\n",
            go = go.display().to_string()
        ),
    );
    let mut workers = Kid::new(
        Command::new(python3())
            .arg(&workers_py)
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .expect("workers"),
    );
    workers.wait_line("ready", LONG);
    let group = workers.pid();
    // The children are killed with their group (the parent's Kid kills only it).
    let _group = Group(group as i32);
    let noise = Noise::start(CHURN);
    let look = Lookalikes::start(work.path());
    let d = Daemon::start(&config(avail0 - 5 * GIB / 2 - CHURN, ""), &[]);
    let idle_pid = idle.pid();
    d.wait_for("the idle job found", LONG, |e| {
        is(e, "mlx_process_found") && e["pid"] == idle_pid
    });
    std::fs::write(&go, "go").expect("go");
    let nv = d.wait_for("no_victim", LONG, |e| is(e, "no_victim"));
    assert!(
        nv["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no MLX job is eating"),
        "{nv}"
    );
    let red = d.wait_for("red_not_mlx", LONG, |e| is(e, "red_not_mlx"));
    let c = &red["contributors"][0];
    assert_eq!(c["job"], group, "{red}");
    assert_eq!(c["mlx"], false, "{red}");
    assert!(c["processes"].as_u64().unwrap_or(0) >= 9, "{red}");
    assert!(
        c["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("workers.py and 8 more (pid group"),
        "{red}"
    );
    red_for(&d, &nv, 3.0);
    let events = d.events();
    assert!(signalled(&events).is_empty(), "{:?}", signalled(&events));
    assert!(alive(idle_pid));
    look.assert_untouched(&events);
    noise.assert_untouched(&events);
}

/// Case 3: an MLX job whose allocator jitters (128 KiB a second) beside a
/// non-MLX hog growing at about 1 GiB/s: the MLX job is not eating.
#[test]
fn a_jittering_mlx_job_beside_a_fast_non_mlx_hog_is_not_stopped() {
    const T: &str = "a_jittering_mlx_job_beside_a_fast_non_mlx_hog_is_not_stopped";
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let body = "import time\nheld = [b'\\x01' * (1 << 30)]\nprint('done', flush=True)\n\
                while True:\n    held.append(b'\\x01' * (128 << 10))\n    time.sleep(1)\n";
    let mut jitter = spawn_fake_mlx(work.path(), "lora", body, &["--train"]);
    jitter.wait_line("done", LONG);
    let Some(avail0) = quiet_available(T, 8 * GIB) else {
        return;
    };
    let go = work.path().join("go");
    let hog_py = work.path().join("hog.py");
    write_file(&hog_py, &grower_py(4 * GIB, 256 * MIB, 0.25, false, &go));
    let mut hog = Kid::new(
        Command::new(python3())
            .arg(&hog_py)
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .expect("hog"),
    );
    hog.wait_line("ready", LONG);
    let noise = Noise::start(CHURN);
    let look = Lookalikes::start(work.path());
    let d = Daemon::start(&config(avail0 - 2 * GIB - CHURN, ""), &[]);
    let jp = jitter.pid();
    d.wait_for("the jittering job found", LONG, |e| {
        is(e, "mlx_process_found") && e["pid"] == jp
    });
    // Its jitter is seen before the hog starts: growth, but no fall.
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&go, "go").expect("go");
    let nv = d.wait_for("no_victim", LONG, |e| is(e, "no_victim"));
    assert!(
        nv["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no MLX job is eating"),
        "{nv}"
    );
    let red = d.wait_for("red_not_mlx", LONG, |e| is(e, "red_not_mlx"));
    assert_eq!(red["contributors"][0]["job"], hog.pid(), "{red}");
    red_for(&d, &nv, 3.0);
    let events = d.events();
    assert!(signalled(&events).is_empty(), "{:?}", signalled(&events));
    assert!(alive(jp));
    look.assert_untouched(&events);
    noise.assert_untouched(&events);
}

/// The real interpreter of the MLX venv, and its site-packages.
fn real_python(py: &Path) -> (PathBuf, PathBuf) {
    let out = Command::new(py)
        .args([
            "-c",
            "import os, sys, mlx.core\nprint(os.path.realpath(sys.executable))\nprint(os.path.dirname(os.path.dirname(mlx.core.__file__)))",
        ])
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let exe = PathBuf::from(lines.next().expect("executable"));
    let site = PathBuf::from(lines.next().expect("site-packages"));
    (exe, site)
}

/// Python importing real MLX once named `name` by prctl (what
/// setproctitle, Ray and worker pools do), then growing 4 GiB of MLX arrays
/// once `go` exists; written as `dir`/run.py.
fn renamed_train_py(dir: &Path, name: &str, go: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let script = dir.join("run.py");
    write_file(
        &script,
        &format!(
            "import ctypes, os, time\n\
             ctypes.CDLL(None).prctl(15, {name:?}.encode(), 0, 0, 0)\n\
             import mlx.core as mx\nprint('ready', flush=True)\n\
             while not os.path.exists({go:?}):\n    time.sleep(0.05)\n\
             held = []\nfor i in range(16):\n    a = mx.ones((64 * 1024 * 1024,), dtype=mx.float32)\n    mx.eval(a)\n    held.append(a)\n    time.sleep(0.1)\n\
             print('done', flush=True)\ntime.sleep(600)\n",
            go = go.display().to_string()
        ),
    );
    script
}

/// Case 4: MLX jobs that renamed themselves. One sets argv[0] and the
/// kernel's name to `trainer-0` — only its executable still says Python —
/// and sits idle: found by what it maps. The other runs from a copy of the
/// interpreter named `worker` — nothing at all says Python or MLX — and
/// eats: found while memory is not quiet, as one of the largest holders
/// checked for the library whatever they are called, and stopped. Neither
/// the idle renamed job nor the idle MLX job beside is signalled.
#[test]
fn mlx_jobs_that_renamed_themselves_are_found_and_the_one_that_eats_is_stopped() {
    const T: &str = "mlx_jobs_that_renamed_themselves_are_found_and_the_one_that_eats_is_stopped";
    let Some(py) = need::mlx(T) else {
        return;
    };
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let idle = idle_mlx(work.path(), GIB);
    let (exe, site) = real_python(&py);
    let never = work.path().join("never");
    let mut renamed = Kid::new(
        Command::new(&exe)
            .arg0("trainer-0")
            .arg(renamed_train_py(
                &work.path().join("a"),
                "trainer-0",
                &never,
            ))
            .env("PYTHONPATH", &site)
            .stdout(Stdio::piped())
            .spawn()
            .expect("renamed python"),
    );
    renamed.wait_line("ready", LONG);
    let copy = work.path().join("worker");
    std::fs::copy(&exe, &copy).expect("copy the interpreter");
    let go = work.path().join("go");
    let mut worker = Kid::new(
        Command::new(&copy)
            .arg(renamed_train_py(&work.path().join("b"), "worker", &go))
            .env("PYTHONPATH", &site)
            .stdout(Stdio::piped())
            .spawn()
            .expect("copied python"),
    );
    worker.wait_line("ready", LONG);
    let Some(avail0) = quiet_available(T, 8 * GIB) else {
        return;
    };
    let noise = Noise::start(CHURN);
    let look = Lookalikes::start(work.path());
    let d = Daemon::start(&config(avail0 - 2 * GIB - CHURN, ""), &[]);
    let rp = renamed.pid();
    let found = d.wait_found_by_library("the renamed idle job found", rp);
    assert_eq!(found["name"], "trainer-0", "{found}");
    let wp = worker.pid();
    // Quiet, the copy is not looked at (nothing says it may load MLX).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(named(&d.events(), "mlx_process_found", wp), 0);
    std::fs::write(&go, "go").expect("go");
    d.wait_found_by_library("the copy found while memory is not quiet", wp);
    let term = d.wait_for("terminate_sent", LONG, |e| is(e, "terminate_sent"));
    assert_eq!(term["pid"], wp, "{term}");
    let st = wait_bounded(&mut worker.0, LONG).expect("it exits");
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    let events = d.events();
    assert_eq!(signalled(&events), vec![wp]);
    assert!(alive(idle.pid()) && alive(rp));
    look.assert_untouched(&events);
    noise.assert_untouched(&events);
}

/// Case 5: MLX job A (2.5 GiB) eats and is stopped; MLX job B keeps eating
/// at about 400 MiB/s: B is stopped next, once A's memory is back, and what
/// A freed is measured then; the idle MLX job C is never stopped.
#[test]
fn a_second_eater_is_stopped_after_the_first_and_the_idle_job_never() {
    const T: &str = "a_second_eater_is_stopped_after_the_first_and_the_idle_job_never";
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let idle = idle_mlx(work.path(), GIB);
    let Some(avail0) = quiet_available(T, 10 * GIB) else {
        return;
    };
    let go = work.path().join("go");
    // Two jobs of their own (two terminals): one process group each.
    let mut a = spawn_fake_mlx_job(
        work.path(),
        "lora",
        &grower_py(5 * GIB / 2, 256 * MIB, 0.05, false, &go),
        &["--train", "--data", "a"],
    );
    a.wait_line("ready", LONG);
    let mut b = spawn_fake_mlx_job(
        work.path(),
        "generate",
        &grower_py(6 * GIB, 64 * MIB, 0.16, false, &go),
        &["--max-tokens", "100000"],
    );
    b.wait_line("ready", LONG);
    let noise = Noise::start(CHURN);
    let look = Lookalikes::start(work.path());
    let d = Daemon::start(&config(avail0 - 3 * GIB / 2 - CHURN, ""), &[]);
    for p in [idle.pid(), a.pid(), b.pid()] {
        d.wait_for("every job found", LONG, |e| {
            is(e, "mlx_process_found") && e["pid"] == p
        });
    }
    std::fs::write(&go, "go").expect("go");
    let first = d.wait_for("terminate_sent", LONG, |e| is(e, "terminate_sent"));
    assert_eq!(first["pid"], a.pid(), "A first: {first}");
    wait_bounded(&mut a.0, LONG).expect("A exits");
    let bp = b.pid();
    let second = d.wait_for("B stopped too", LONG, |e| {
        is(e, "terminate_sent") && e["pid"] == bp
    });
    let st = wait_bounded(&mut b.0, LONG).expect("B exits");
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    d.wait_for("B's stop measured", LONG, |e| {
        is(e, "victim_freed") && e["pids"][0] == bp
    });
    let events = d.events();
    let freed = events
        .iter()
        .find(|e| is(e, "victim_freed"))
        .unwrap_or_else(|| panic!("no victim_freed: {}", decisions(&events)));
    assert!(
        freed["at"].as_f64().unwrap_or(f64::MAX) <= second["at"].as_f64().unwrap_or(0.0),
        "B is stopped only once A's memory is back: {freed} / {second}"
    );
    assert_eq!(freed["pids"], serde_json::json!([a.pid()]), "{freed}");
    assert_eq!(named(&events, "terminate_sent", idle.pid()), 0);
    assert_eq!(signalled(&events), vec![a.pid(), bp]);
    assert!(alive(idle.pid()));
    look.assert_untouched(&events);
    noise.assert_untouched(&events);
}

/// A job of several MLX processes (a launcher and three workers, one
/// process group, with `tee` in the group too): when the workers eat, each
/// is stopped, together; the idle launcher and `tee` are not signalled.
#[test]
fn the_workers_of_an_eating_mlx_job_are_stopped_together_never_its_launcher_or_tee() {
    const T: &str =
        "the_workers_of_an_eating_mlx_job_are_stopped_together_never_its_launcher_or_tee";
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let Some(avail0) = quiet_available(T, 8 * GIB) else {
        return;
    };
    let go = work.path().join("go");
    let worker = grower_py(2 * GIB, 128 * MIB, 0.1, false, &go);
    let launcher = "import os, subprocess, sys, time\n\
         tee = subprocess.Popen(['tee', os.devnull], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)\n\
         ws = [subprocess.Popen([sys.executable, '-m', 'mlx_lm.worker', '--rank', str(i)], stdout=tee.stdin) for i in range(3)]\n\
         print('ready', tee.pid, *[w.pid for w in ws], flush=True)\n\
         time.sleep(600)\n";
    // mlx_lm.worker: the worker body (a real MLX command line).
    let pkg = work.path().join("mlx_lm");
    std::fs::create_dir_all(&pkg).expect("mkdir");
    write_file(&pkg.join("__init__.py"), "");
    write_file(&pkg.join("worker.py"), &worker);
    write_file(&pkg.join("launch.py"), launcher);
    let mut job = Kid::new(
        Command::new(python3())
            .args(["-m", "mlx_lm.launch", "--hosts", "localhost"])
            .env("PYTHONPATH", work.path())
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .expect("launcher"),
    );
    let ready = job.wait_line("ready", LONG);
    let pids: Vec<i64> = ready
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    let (tee, workers) = (pids[0], pids[1..].to_vec());
    let _group = Group(job.pid() as i32);
    let noise = Noise::start(CHURN);
    let look = Lookalikes::start(work.path());
    let d = Daemon::start(&config(avail0 - 3 * GIB - CHURN, ""), &[]);
    for p in workers.iter().chain([job.pid()].iter()) {
        d.wait_for("the launcher and workers found", LONG, |e| {
            is(e, "mlx_process_found") && e["pid"] == *p
        });
    }
    std::fs::write(&go, "go").expect("go");
    d.wait_for("three SIGTERMs", LONG, |_| {
        let ev = d.events();
        workers
            .iter()
            .all(|w| named(&ev, "terminate_sent", *w) == 1)
    });
    let events = d.events();
    let mut sent = signalled(&events);
    sent.sort();
    let mut want = workers.clone();
    want.sort();
    assert_eq!(sent, want, "the workers, and only them");
    assert!(alive(job.pid()) || job.0.try_wait().ok().flatten().is_some());
    assert_eq!(named(&events, "terminate_sent", job.pid()), 0);
    assert_eq!(named(&events, "terminate_sent", tee), 0);
    look.assert_untouched(&events);
    noise.assert_untouched(&events);
}
