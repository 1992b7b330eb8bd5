//! Issue 12, on real processes: headroom stops only the MLX job that eats
//! the memory. Lookalikes — processes whose *arguments* mention MLX tools
//! (`tail -f mlx_lm.log`, a tmux server of session `mlx-lm`, `pip install
//! -U mlx-lm`, …) — run beside a real hog or a real MLX job; none of them is
//! ever listed as MLX or signalled. Also: small MLX processes, cascades,
//! headroom's own ancestors, and (as root) other users' jobs.
//!
//! The lookalikes themselves, and what stands in for which, are in
//! tests/common/lookalikes.rs (tests/attack_hooks.rs runs them too).
#![cfg(target_os = "linux")]

mod common;

use common::lookalikes::*;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

fn config(yellow: u64, red: u64, extra: &str) -> String {
    format!(
        "[poll]\ninterval = \"100ms\"\n\
         [thresholds]\nyellow_below = \"{yellow}\"\nred_below = \"{red}\"\nhysteresis = \"64MiB\"\ndwell = \"1s\"\n\
         [actions]\nterminate_after = \"1s\"\nkill_after = \"5s\"\nkill_floor = \"1MiB\"\n{extra}\n"
    )
}

/// `python3 -m mlx_lm.<module>` (a stand-in `mlx_lm` package in `dir`) that
/// allocates `total` once `go` exists, then holds it.
fn mlx_lm_job(dir: &Path, module: &str, total: u64, go: &Path, args: &[&str]) -> Kid {
    let body = grower_py(total, 128 * MIB, 0.05, false, go);
    let mut kid = spawn_fake_mlx(dir, module, &body, args);
    kid.wait_line("ready", LONG);
    kid
}

/// Python importing real MLX, growing 256 MiB arrays to `gib` GiB once `go` exists.
fn real_mlx_job(py: &Path, dir: &Path, gib: u64, go: &Path) -> Kid {
    let script = dir.join("train.py");
    write_file(
        &script,
        &format!(
            "import os, time\nimport mlx.core as mx\nprint('ready', flush=True)\n\
             while not os.path.exists({g:?}):\n    time.sleep(0.05)\n\
             held = []\nfor i in range({n}):\n    a = mx.ones((64 * 1024 * 1024,), dtype=mx.float32)\n    mx.eval(a)\n    held.append(a)\n    time.sleep(0.1)\n\
             print('done', flush=True)\ntime.sleep(600)\n",
            g = go.display().to_string(),
            n = gib * 4
        ),
    );
    let mut kid = Kid::new(
        Command::new(py)
            .arg(&script)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python with mlx"),
    );
    kid.wait_line("ready", LONG);
    kid
}

#[test]
fn lookalikes_and_a_small_mlx_job_beside_a_non_mlx_hog_nothing_is_signalled_and_the_hog_is_named() {
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let look = Lookalikes::start(work.path());
    // A real MLX-shaped job too small to matter (below min_victim_footprint).
    let go = work.path().join("go");
    let mut small = mlx_lm_job(
        work.path(),
        "generate",
        128 * MIB,
        &go,
        &["--max-tokens", "64"],
    );
    let Some(avail0) = need::memory("lookalikes_and_a_small_mlx_job_beside_a_non_mlx_hog_nothing_is_signalled_and_the_hog_is_named", 8 * GIB) else {
        return;
    };
    let d = Daemon::start(&config(avail0 - GIB, avail0 - 2 * GIB, ""), &[]);
    d.wait_for("started", LONG, |e| is(e, "started"));
    let found = d.wait_for("the small MLX job found", LONG, |e| {
        is(e, "mlx_process_found") && e["pid"] == small.pid()
    });
    assert_eq!(found["program"], "mlx_lm.generate", "{found}");
    assert!(
        found["matched_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("pattern:^mlx_lm"),
        "{found}"
    );
    std::fs::write(&go, "go").expect("go");
    small.wait_line("done", LONG);

    let mut hog = spawn_hog(work.path(), 5 * GIB);
    let hog_pid = hog.pid();
    let nv = d.wait_for("no_victim", LONG, |e| is(e, "no_victim"));
    let reason = nv["reason"].as_str().unwrap_or("");
    // Issue 26: the small MLX job grew 128 MiB of a fall of GiBs: it is
    // not what eats.
    assert!(
        reason.contains("no MLX job is eating"),
        "says the MLX job is not what eats: {nv}"
    );
    let red = d.wait_for("red_not_mlx", LONG, |e| is(e, "red_not_mlx"));
    let top = red["top_processes"].as_array().expect("top_processes");
    assert!(!top.is_empty() && top.len() <= 3, "{red}");
    // The hog is named (the largest on a quiet machine; another big process
    // on a busy one may rank above it).
    let hog_row = top
        .iter()
        .find(|t| t["pid"] == hog_pid)
        .unwrap_or_else(|| panic!("the hog is among the largest: {red}"));
    assert_eq!(hog_row["mlx"], false, "{red}");
    assert_eq!(hog_row["name"], "hog.py", "{red}");
    let notice = d.wait_for("the notice", LONG, |e| {
        is(e, "notified") && e["kind"] == "no_victim"
    });
    let body = notice["body"].as_str().unwrap_or("");
    assert!(
        body.contains(&format!("hog.py (pid {hog_pid}"))
            && body.contains("headroom stops only an MLX job that eats"),
        "the notice names the hog: {notice}"
    );

    hog.wait_line("done", LONG);
    let at = red["at"].as_f64().unwrap_or(0.0);
    d.wait_for("5 s more of red", LONG, |e| {
        is(e, "sample") && e["level"] == "red" && e["at"].as_f64().unwrap_or(0.0) > at + 5.0
    });
    let events = d.events();
    assert!(signalled(&events).is_empty(), "nothing is signalled");
    look.assert_untouched(&events);
    assert!(alive(small.pid()) && alive(hog_pid));
    assert_eq!(
        events.iter().filter(|e| is(e, "red_not_mlx")).count(),
        1,
        "said once per red period"
    );
}

#[test]
fn among_lookalikes_only_the_real_mlx_job_is_stopped() {
    let Some(py) = need::mlx("among_lookalikes_only_the_real_mlx_job_is_stopped") else {
        return;
    };
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let look = Lookalikes::start(work.path());
    let go = work.path().join("go");
    let mut job = real_mlx_job(&py, work.path(), 5, &go);
    let pid = job.pid();
    let Some(avail0) = need::memory("among_lookalikes_only_the_real_mlx_job_is_stopped", 8 * GIB)
    else {
        return;
    };
    let d = Daemon::start(&config(avail0 - GIB, avail0 - 2 * GIB, ""), &[]);
    let found = d.wait_for("the MLX job found", LONG, |e| {
        is(e, "mlx_process_found") && e["pid"] == pid
    });
    assert!(
        found["matched_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("library:"),
        "{found}"
    );
    assert_eq!(found["program"], "train.py", "{found}");
    std::fs::write(&go, "go").expect("go");
    let term = d.wait_for("terminate_sent", LONG, |e| is(e, "terminate_sent"));
    assert_eq!(term["pid"], pid, "{term}");
    let st = wait_bounded(&mut job.0, LONG).expect("the MLX job exits");
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    d.wait_for("victim_exited", LONG, |e| is(e, "victim_exited"));
    let events = d.events();
    assert_eq!(
        signalled(&events),
        vec![pid],
        "one SIGTERM, to the MLX job only"
    );
    look.assert_untouched(&events);
}

#[test]
fn among_lookalikes_only_the_python_m_mlx_lm_lora_job_is_stopped() {
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let look = Lookalikes::start(work.path());
    let go = work.path().join("go");
    let mut job = mlx_lm_job(
        work.path(),
        "lora",
        5 * GIB,
        &go,
        &["--train", "--batch-size", "4"],
    );
    let pid = job.pid();
    let Some(avail0) = need::memory(
        "among_lookalikes_only_the_python_m_mlx_lm_lora_job_is_stopped",
        8 * GIB,
    ) else {
        return;
    };
    let d = Daemon::start(&config(avail0 - GIB, avail0 - 2 * GIB, ""), &[]);
    let found = d.wait_for("the job found", LONG, |e| {
        is(e, "mlx_process_found") && e["pid"] == pid
    });
    assert_eq!(found["program"], "mlx_lm.lora", "{found}");
    std::fs::write(&go, "go").expect("go");
    let term = d.wait_for("terminate_sent", LONG, |e| is(e, "terminate_sent"));
    assert_eq!(term["pid"], pid, "{term}");
    let st = wait_bounded(&mut job.0, LONG).expect("the job exits");
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    d.wait_for("victim_exited", LONG, |e| is(e, "victim_exited"));
    let events = d.events();
    assert_eq!(signalled(&events), vec![pid]);
    look.assert_untouched(&events);
}

/// Removes a file the test made in /dev/shm, also when the test fails.
struct ShmFile(PathBuf);

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Issue 26 (was: the cascade stop): a stop that frees nothing — the
/// victim's 4 GiB are pages of a tmpfs file that outlive it — is measured
/// once memory settles (`victim_freed`), and the idle MLX job beside it,
/// large enough to be a victim, is never stopped for it: it did not eat.
#[test]
fn a_stop_that_frees_nothing_is_measured_and_the_idle_job_beside_is_never_next() {
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let go = work.path().join("go");
    let shm = ShmFile(PathBuf::from(format!(
        "/dev/shm/headroom-test-{}",
        std::process::id()
    )));
    assert!(Path::new("/dev/shm").is_dir(), "/dev/shm (tmpfs) is needed");
    // The idle one: 1 GiB, allocated before the daemon starts.
    let mut idle = spawn_fake_mlx(
        work.path(),
        "generate",
        &allocator_py(GIB, 64 * MIB, 0.0),
        &[],
    );
    idle.wait_line("done", LONG);
    let first_body = format!(
        "import mmap, os, time\nprint('ready', flush=True)\n\
         while not os.path.exists({go:?}):\n    time.sleep(0.05)\n\
         fd = os.open({shm:?}, os.O_RDWR | os.O_CREAT, 0o600)\nsize = {size}\nos.ftruncate(fd, size)\n\
         m = mmap.mmap(fd, size)\nchunk = b'\\x01' * (64 << 20)\nfor off in range(0, size, len(chunk)):\n    m[off:off + len(chunk)] = chunk\n    time.sleep(0.02)\n\
         print('done', flush=True)\ntime.sleep(600)\n",
        go = go.display().to_string(),
        shm = shm.0.display().to_string(),
        size = 4 * GIB
    );
    let mut first = spawn_fake_mlx(work.path(), "lora", &first_body, &["--train"]);
    first.wait_line("ready", LONG);
    let Some(avail0) = need::memory(
        "a_stop_that_frees_nothing_is_measured_and_the_idle_job_beside_is_never_next",
        8 * GIB,
    ) else {
        return;
    };
    let look = Lookalikes::start(work.path());
    let red = avail0 - 3 * GIB;
    let d = Daemon::start(&config(red + GIB, red, ""), &[]);
    for p in [first.pid(), idle.pid()] {
        d.wait_for("both found", LONG, |e| {
            is(e, "mlx_process_found") && e["pid"] == p
        });
    }
    std::fs::write(&go, "go").expect("go");
    let term = d.wait_for("terminate_sent", LONG, |e| is(e, "terminate_sent"));
    assert_eq!(term["pid"], first.pid(), "the one that ate: {term}");
    wait_bounded(&mut first.0, LONG).expect("the first exits");
    let freed = d.wait_for("victim_freed", LONG, |e| is(e, "victim_freed"));
    assert!(
        freed["freed_bytes"].as_u64().unwrap_or(u64::MAX) < GIB,
        "the tmpfs pages outlive it: {freed}"
    );
    let nv = d.wait_for("no_victim: nobody else eats", LONG, |e| {
        is(e, "no_victim")
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("no MLX job is eating")
    });
    red_for_secs(&d, &nv, 5.0);
    let events = d.events();
    assert_eq!(
        signalled(&events),
        vec![first.pid()],
        "the idle job is not stopped for memory it did not take"
    );
    assert!(alive(idle.pid()));
    look.assert_untouched(&events);
}

/// Wait until red has held `secs` past the event `e`.
fn red_for_secs(d: &Daemon, e: &serde_json::Value, secs: f64) {
    let at = e["at"].as_f64().unwrap_or(0.0);
    d.wait_for("more red", LONG, |x| {
        is(x, "sample") && x["level"] == "red" && x["at"].as_f64().unwrap_or(0.0) > at + secs
    });
}

#[test]
fn headroom_never_stops_its_own_ancestors_even_an_mlx_one_under_a_shell_named_for_mlx_lm() {
    let Some(py) = need::mlx(
        "headroom_never_stops_its_own_ancestors_even_an_mlx_one_under_a_shell_named_for_mlx_lm",
    ) else {
        return;
    };
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("src/mlx-lm");
    std::fs::create_dir_all(&repo).expect("mkdir mlx-lm");
    let Some(avail0) = need::memory(
        "headroom_never_stops_its_own_ancestors_even_an_mlx_one_under_a_shell_named_for_mlx_lm",
        8 * GIB,
    ) else {
        return;
    };
    let log = work.path().join("logs/headroom.log");
    let cfg = work.path().join("config.toml");
    write_file(
        &cfg,
        &format!(
            "{}[log]\npath = \"{}\"\nsample_every = \"1s\"\n",
            config(avail0 - GIB, avail0 - 2 * GIB, ""),
            log.display()
        ),
    );
    let go = work.path().join("go");
    // The parent: real MLX, 5 GiB once `go` exists, with headroom its child.
    let parent = work.path().join("parent.py");
    write_file(
        &parent,
        &format!(
            "import os, subprocess, time\nimport mlx.core as mx\n\
             h = subprocess.Popen([{bin:?}, 'run', '--config', {cfg:?}], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
             print('ready', os.getpid(), h.pid, flush=True)\n\
             while not os.path.exists({go:?}):\n    time.sleep(0.05)\n\
             held = []\nfor i in range(20):\n    a = mx.ones((64 * 1024 * 1024,), dtype=mx.float32)\n    mx.eval(a)\n    held.append(a)\n    time.sleep(0.1)\n\
             print('done', flush=True)\nh.wait()\n",
            bin = bin().display().to_string(),
            cfg = cfg.display().to_string(),
            go = go.display().to_string()
        ),
    );
    // The shell: its cwd and command line say mlx-lm and mlx_lm.lora; it
    // stays (a command follows the python).
    let mut shell = Kid::new(
        Command::new("bash")
            .args([
                "-c",
                &format!(
                    "cd {} && {} {} --note mlx_lm.lora; true",
                    repo.display(),
                    py.display(),
                    parent.display()
                ),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash"),
    );
    let ready = shell.wait_line("ready", LONG);
    let mut words = ready.split_whitespace().skip(1);
    let py_pid: i64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .expect("parent pid");
    let headroom_pid: i64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .expect("headroom pid");
    let stop = || {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(headroom_pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(py_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    struct Stop<F: Fn()>(F);
    impl<F: Fn()> Drop for Stop<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _stop = Stop(stop);
    let found = wait_for_event(&log, "the parent found as MLX", LONG, |e| {
        is(e, "mlx_process_found") && e["pid"] == py_pid
    });
    assert!(
        found["matched_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("library:"),
        "{found}"
    );
    std::fs::write(&go, "go").expect("go");
    let nv = wait_for_event(&log, "no_victim", LONG, |e| is(e, "no_victim"));
    assert!(
        nv["reason"]
            .as_str()
            .unwrap_or("")
            .contains("ancestor of headroom"),
        "{nv}"
    );
    let red = wait_for_event(&log, "red_not_mlx", LONG, |e| is(e, "red_not_mlx"));
    let top = red["top_processes"].as_array().expect("top");
    assert_eq!(top[0]["pid"], py_pid, "{red}");
    assert_eq!(top[0]["mlx"], true, "{red}");
    let at = nv["at"].as_f64().unwrap_or(0.0);
    wait_for_event(&log, "5 s more of red", LONG, |e| {
        is(e, "sample") && e["level"] == "red" && e["at"].as_f64().unwrap_or(0.0) > at + 5.0
    });
    let events = read_events(&log);
    assert!(signalled(&events).is_empty(), "nothing signalled");
    assert!(alive(py_pid), "the MLX parent is alive");
    assert!(alive(shell.pid()), "the shell is alive");
    assert!(
        events
            .iter()
            .all(|e| !(is(e, "mlx_process_found") && e["pid"] == shell.pid())),
        "the shell is not MLX"
    );
}

#[test]
fn as_root_another_users_mlx_job_is_reported_not_signalled_until_actions_users_names_them() {
    if !need::root("running an MLX job as nobody") {
        return;
    }
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let go = work.path().join("go");
    let body = grower_py(5 * GIB, 256 * MIB, 0.05, false, &go);
    let mut theirs = spawn_mlx_lora_as_nobody(work.path(), &body);
    let pid = theirs.pid();
    let Some(avail0) = need::memory(
        "as_root_another_users_mlx_job_is_reported_not_signalled_until_actions_users_names_them",
        8 * GIB,
    ) else {
        return;
    };
    let d = Daemon::start(&config(avail0 - GIB, avail0 - 2 * GIB, ""), &[]);
    let scope = d.wait_for("scope", LONG, |e| is(e, "scope"));
    assert_eq!(
        scope["scope"], "watches all users; signals only uid 0 (root and actions.users)",
        "{scope}"
    );
    let found = d.wait_for("their job watched", LONG, |e| {
        is(e, "mlx_process_found") && e["pid"] == pid
    });
    assert_eq!(found["uid"], 65534, "{found}");
    std::fs::write(&go, "go").expect("go");
    let nv = d.wait_for("no_victim", LONG, |e| is(e, "no_victim"));
    assert!(
        nv["reason"]
            .as_str()
            .unwrap_or("")
            .contains("another user's"),
        "{nv}"
    );
    let red = d.wait_for("red_not_mlx", LONG, |e| is(e, "red_not_mlx"));
    assert_eq!(red["top_processes"][0]["pid"], pid, "{red}");
    assert_eq!(red["top_processes"][0]["uid"], 65534, "{red}");
    theirs.wait_line("done", LONG);
    let at = nv["at"].as_f64().unwrap_or(0.0);
    d.wait_for("3 s more of red", LONG, |e| {
        is(e, "sample") && e["level"] == "red" && e["at"].as_f64().unwrap_or(0.0) > at + 3.0
    });
    assert!(
        signalled(&d.events()).is_empty(),
        "not signalled as another user's"
    );
    assert!(alive(pid));

    // Opted in: the same job is now a victim.
    let cfg = std::fs::read_to_string(d.config_path()).expect("config");
    let cfg = cfg.replace(
        "kill_floor = \"1MiB\"",
        "kill_floor = \"1MiB\"\nusers = [\"nobody\"]",
    );
    std::fs::write(d.config_path(), cfg).expect("rewrite config");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_for("config_reloaded", LONG, |e| is(e, "config_reloaded"));
    let term = d.wait_for("terminate_sent", LONG, |e| is(e, "terminate_sent"));
    assert_eq!(term["pid"], pid, "{term}");
    let st = wait_bounded(&mut theirs.0, LONG).expect("their job exits");
    assert_eq!(st.signal(), Some(libc::SIGTERM));
}
