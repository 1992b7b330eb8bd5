//! Issue 13, parts 1, 2 and 4: a hostile local user (`nobody`, uid 65534)
//! against root's headroom — planted log symlinks and directories, record
//! --out through a symlink or into a FIFO, a world-writable config whose
//! hook root would run, untrusted hook programs — and the five lethal
//! configs `check-config` must reject. Real processes, files, symlinks,
//! FIFOs and users; tests that need root say so loudly when skipped.
#![cfg(target_os = "linux")]

mod common;

use common::{bin, is, need, wait_bounded, wait_for_event, Daemon};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const NOBODY: u32 = 65534;
const LONG: Duration = Duration::from_secs(60);

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown_nobody(p: &Path) {
    std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).expect("chown nobody");
}

/// Run `sh -c script` as nobody (the attacker), and require it to succeed.
fn as_nobody(script: &str) {
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", script])
        .output()
        .expect("setpriv");
    assert!(
        o.status.success(),
        "as nobody: {script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A temp dir that is sticky and world-writable, like /tmp.
fn sticky_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    chmod(d.path(), 0o1777);
    d
}

/// A root-only file that root would later source: the attack's target.
fn target_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let p = dir.join("profile.sh");
    let bytes = b"# root's shell profile\nexport PATH=/usr/bin:/bin\n".to_vec();
    std::fs::write(&p, &bytes).expect("target");
    chmod(&p, 0o644);
    (p, bytes)
}

fn assert_unchanged(target: &Path, bytes: &[u8], mode: u32) {
    assert_eq!(
        std::fs::read(target).expect("target"),
        bytes,
        "target changed"
    );
    let m = std::fs::symlink_metadata(target).expect("target");
    assert_eq!(m.mode() & 0o7777, mode, "target mode changed");
    assert_eq!(m.uid(), 0, "target owner changed");
}

/// Run headroom with `args` (bounded: a hang fails the test, killed).
fn headroom(args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("HEADROOM_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    bounded(c)
}

fn bounded(mut c: Command) -> Output {
    let mut child = c.spawn().expect("spawn");
    if wait_bounded(&mut child, LONG).is_none() {
        let _ = child.kill();
        let o = child.wait_with_output().expect("output");
        panic!(
            "still running after {LONG:?}; stderr: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    child.wait_with_output().expect("output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit `code`, and one stderr line containing every word of `want`.
fn assert_refused(o: &Output, code: i32, want: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for w in want {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
}

/// A root-owned config in a root-only temp dir, with `log.path` = `log`.
fn root_config(dir: &Path, log: &Path, extra: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!(
            "[poll]\ninterval = \"100ms\"\n{extra}\n[log]\npath = \"{}\"\n",
            log.display()
        ),
    )
    .expect("config");
    chmod(&p, 0o644);
    p
}

// ------------------------------------------------------------ 1. log files

#[test]
fn a_log_symlink_planted_in_a_sticky_dir_is_refused_and_the_target_unchanged() {
    if !need::root("nobody plants the log for root's headroom") {
        return;
    }
    let safe = tempfile::tempdir().expect("tempdir");
    let (target, bytes) = target_file(safe.path());
    chmod(safe.path(), 0o755); // nobody may reach the target to link it
    let shared = sticky_dir();
    let s = shared.path().display();
    let t = target.display();

    // The issue's attack: nobody's directory, nobody's symlink to root's file.
    as_nobody(&format!(
        "mkdir {s}/headroom && ln -s {t} {s}/headroom/headroom.log"
    ));
    // Nobody's symlink standing for the directory itself.
    let root_dir = safe.path().join("logs");
    std::fs::create_dir(&root_dir).expect("mkdir");
    chmod(&root_dir, 0o700);
    as_nobody(&format!("ln -s {} {s}/linked", root_dir.display()));
    // Root's own directory, but the log itself a symlink (O_NOFOLLOW).
    let own = safe.path().join("own");
    std::fs::create_dir(&own).expect("mkdir");
    chmod(&own, 0o700);
    std::os::unix::fs::symlink(&target, own.join("headroom.log")).expect("symlink");
    // Root's directory left writable by others.
    let open = safe.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o1777);

    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(PathBuf, &[&str])] = &[
        (
            shared.path().join("headroom/headroom.log"),
            &["/headroom", "owned by uid 65534"],
        ),
        (
            shared.path().join("linked/headroom.log"),
            &["/linked", "symbolic link"],
        ),
        (
            own.join("headroom.log"),
            &["/own/headroom.log", "symbolic link"],
        ),
        (
            open.join("headroom.log"),
            &["/open", "writable by group or others"],
        ),
    ];
    for (log, want) in cases {
        let cfg = root_config(cfg_dir.path(), log, "");
        let o = headroom(
            &["run", "--dry-run", "--config", cfg.to_str().expect("utf-8")],
            &[],
        );
        assert_refused(&o, 73, want);
        assert_unchanged(&target, &bytes, 0o644);
    }
    assert!(!open.join("headroom.log").exists(), "nothing written");
    assert_eq!(
        std::fs::read_dir(&root_dir).expect("ls").count(),
        0,
        "nothing written through the directory link"
    );
}

#[test]
fn without_home_root_logs_under_var_log_and_anyone_else_exits_71() {
    if !need::root("compares root and nobody without HOME") {
        return;
    }
    let no_home: &[(&str, Option<&str>)] = &[
        ("HOME", None),
        ("XDG_STATE_HOME", None),
        ("XDG_CONFIG_HOME", None),
    ];
    let root_log = if cfg!(target_os = "macos") {
        "/Library/Logs/headroom/headroom.log"
    } else {
        "/var/log/headroom/headroom.log"
    };
    for home in [None, Some(""), Some("relative/home")] {
        let env: Vec<(&str, Option<&str>)> = [("HOME", home)]
            .into_iter()
            .chain(no_home[1..].iter().copied())
            .collect();
        let o = headroom(&["check-config"], &env);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(root_log), "HOME={home:?}: {out}");
        assert!(!out.contains("/tmp"), "HOME={home:?}: {out}");

        for cmd in ["check-config", "run"] {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(bin())
                .arg(cmd)
                .env_remove("HEADROOM_CONFIG")
                .env_remove("XDG_STATE_HOME")
                .env_remove("XDG_CONFIG_HOME")
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            match home {
                Some(h) => c.env("HOME", h),
                None => c.env_remove("HOME"),
            };
            let o = bounded(c);
            assert_refused(&o, 71, &["$HOME", "log.path"]);
        }
    }

    // The real fallback, when it can be cleaned up after: root's `run`
    // without HOME logs there (and creates the directory 0700).
    let dir = Path::new(root_log).parent().expect("dir");
    if dir.exists() {
        need::skip(
            "compares root and nobody without HOME (the daemon part)",
            &format!(
                "needs {} not to exist (not running a daemon into it)",
                dir.display()
            ),
        );
        return;
    }
    let mut c = Command::new(bin());
    c.args(["run", "--dry-run"])
        .env_remove("HOME")
        .env_remove("HEADROOM_CONFIG")
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("headroom run");
    let started = std::panic::catch_unwind(|| {
        wait_for_event(Path::new(root_log), "started", LONG, |e| is(e, "started"))
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let exited = wait_bounded(&mut child, LONG);
    let mode = std::fs::metadata(dir).map(|m| m.mode() & 0o777);
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(dir).expect("remove what this test created");
    let started = started.expect("started in the root fallback log");
    assert_eq!(started["log_path"], root_log, "{started}");
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    assert_eq!(mode.expect("dir"), 0o700);
}

// ----------------------------------------------------------- record --out

#[test]
fn record_out_never_writes_through_a_symlink_and_force_replaces_only_a_regular_file() {
    if !need::root("nobody plants record's --out for root") {
        return;
    }
    let safe = tempfile::tempdir().expect("tempdir");
    let (target, bytes) = target_file(safe.path());
    chmod(safe.path(), 0o755);
    let shared = sticky_dir();
    let s = shared.path();
    as_nobody(&format!(
        "ln -s {} {}/trace.jsonl && echo theirs > {}/theirs.jsonl",
        target.display(),
        s.display(),
        s.display()
    ));
    let cfg = root_config(safe.path(), &safe.path().join("logs/headroom.log"), "");
    let cfg = cfg.to_str().expect("utf-8");
    let record = |out: &Path, force: bool| {
        let mut args = vec![
            "record",
            "--out",
            out.to_str().expect("utf-8"),
            "--duration",
            "300ms",
            "--config",
            cfg,
        ];
        if force {
            args.push("--force");
        }
        headroom(&args, &[])
    };

    let link = s.join("trace.jsonl");
    for force in [false, true] {
        let o = record(&link, force);
        assert_refused(&o, 73, &["trace.jsonl", "symbolic link"]);
        assert_unchanged(&target, &bytes, 0o644);
    }
    let theirs = s.join("theirs.jsonl");
    let o = record(&theirs, true);
    assert_refused(&o, 73, &["theirs.jsonl", "owned by uid 65534"]);
    assert_eq!(
        std::fs::read_to_string(&theirs).expect("theirs"),
        "theirs\n"
    );

    let fifo = s.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).expect("mkfifo");
    let o = record(&fifo, true);
    assert_refused(&o, 73, &["fifo", "not a regular file"]);

    let mine = safe.path().join("mine.jsonl");
    std::fs::write(&mine, "old\n").expect("write");
    chmod(&mine, 0o644);
    let o = record(&mine, false);
    assert_refused(&o, 73, &["mine.jsonl", "--force"]);
    assert_eq!(std::fs::read_to_string(&mine).expect("mine"), "old\n");
    let o = record(&mine, true);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&mine).expect("mine");
    assert!(!text.contains("old"), "{text}");
    assert!(text.lines().count() >= 1, "{text}");
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("a snapshot per line");
    }
    assert_eq!(
        std::fs::metadata(&mine).expect("stat").mode() & 0o777,
        0o600
    );
}

// -------------------------------------------------------- 2. config trust

#[test]
fn a_world_writable_config_owned_by_nobody_is_refused_and_its_hook_never_runs() {
    if !need::root("root must refuse nobody's config") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    chmod(dir.path(), 0o755);
    let marker = dir.path().join("hook-ran");
    // Red at once, and a victim only this test's fake MLX process can be
    // (a module name no one else runs): the hook runs if the config is used.
    let module = format!("attack{}", std::process::id());
    let cfg = root_config(
        dir.path(),
        &dir.path().join("logs/headroom.log"),
        &format!(
            "[thresholds]\nyellow_below = \"99.9%\"\nred_below = \"99.8%\"\n\
             [mlx]\npatterns = ['^mlx_lm\\.{module}$']\ndetect_library = false\n\
             [actions]\nnotify = false\nterminate_after = \"0s\"\nkill_floor = \"1MiB\"\n\
             min_victim_footprint = \"1MiB\"\npre_terminate = [\"/usr/bin/touch\", \"{m}\"]\n",
            m = marker.display()
        ),
    );
    let c = cfg.to_str().expect("utf-8");
    // It eats (issue 26: only a job that eats is stopped): 64 MiB every
    // 0.25 s up to 768 MiB, then it holds.
    let body = &common::allocator_py(768 << 20, 64 << 20, 0.25);

    // The control: root's own copy of this config runs the hook.
    let mut victim = common::spawn_fake_mlx(dir.path(), &module, body, &[]);
    victim.wait_line("ready", LONG);
    let mut d = Command::new(bin())
        .args(["run", "--config", c])
        .env_remove("HEADROOM_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("headroom run");
    let deadline = std::time::Instant::now() + LONG;
    while !marker.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let stopped = wait_bounded(&mut d, LONG);
    let _ = d.kill();
    let _ = d.wait();
    assert!(
        marker.exists(),
        "control: the trusted config's hook did not run"
    );
    assert!(stopped.is_some(), "headroom did not stop");
    drop(victim);
    std::fs::remove_file(&marker).expect("rm marker");

    // The attack: the same config, nobody's and mode 0666.
    let mut victim = common::spawn_fake_mlx(dir.path(), &module, body, &[]);
    victim.wait_line("ready", LONG);
    chown_nobody(&cfg);
    chmod(&cfg, 0o666);
    for args in [&["run"][..], &["check-config"][..]] {
        let o = headroom(args, &[("HEADROOM_CONFIG", Some(c))]);
        assert_refused(&o, 78, &[c, "not trusted as root", "owned by uid 65534"]);
    }
    // Root's file, but writable by everyone.
    std::os::unix::fs::lchown(&cfg, Some(0), Some(0)).expect("chown");
    let o = headroom(&["run", "--config", c], &[]);
    assert_refused(&o, 78, &[c, "writable by group or others (mode 666)"]);
    assert!(!marker.exists(), "the untrusted config's hook ran");
    assert!(
        victim.0.try_wait().expect("try_wait").is_none(),
        "the victim was signalled"
    );
}

#[test]
fn a_config_in_a_directory_others_can_write_is_refused() {
    if !need::root("root's config trust") {
        return;
    }
    let top = tempfile::tempdir().expect("tempdir");
    chmod(top.path(), 0o755);
    let log = top.path().join("logs/headroom.log");
    for (name, mode) in [("open", 0o777), ("sticky", 0o1777), ("group", 0o775)] {
        let d = top.path().join(name);
        std::fs::create_dir(&d).expect("mkdir");
        let cfg = root_config(&d, &log, "");
        chmod(&d, mode);
        let o = headroom(
            &["check-config", "--config", cfg.to_str().expect("utf-8")],
            &[],
        );
        let dir = d.display().to_string();
        assert_refused(
            &o,
            78,
            &[&dir, "on the way to it", "writable by group or others"],
        );
        // A directory further up: nobody could swap `sub` in a non-sticky one.
        let sub = d.join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        chmod(&sub, 0o755);
        let cfg = root_config(&sub, &log, "");
        let o = headroom(
            &["check-config", "--config", cfg.to_str().expect("utf-8")],
            &[],
        );
        if mode & 0o1000 != 0 {
            // Sticky higher up (like /tmp): nobody cannot move root's `sub`.
            assert!(o.status.success(), "{}", stderr(&o));
        } else {
            assert_refused(&o, 78, &[&dir, "writable by group or others"]);
        }
    }
    // Nobody's directory on the way.
    let theirs = top.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    let cfg = root_config(&theirs, &log, "");
    chown_nobody(&theirs);
    chmod(&theirs, 0o755);
    let o = headroom(
        &["check-config", "--config", cfg.to_str().expect("utf-8")],
        &[],
    );
    assert_refused(&o, 78, &["theirs", "owned by uid 65534"]);
    // The same config from a trusted place is fine.
    let ok = root_config(top.path(), &log, "");
    let o = headroom(
        &["check-config", "--config", ok.to_str().expect("utf-8")],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn hooks_run_by_root_must_be_absolute_and_root_s_alone() {
    if !need::root("root's hook trust") {
        return;
    }
    let top = tempfile::tempdir().expect("tempdir");
    chmod(top.path(), 0o755);
    let log = top.path().join("logs/headroom.log");
    let hook = |dir: &Path, name: &str, owner_nobody: bool| {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").expect("hook");
        chmod(&p, 0o755);
        if owner_nobody {
            chown_nobody(&p);
        }
        p
    };
    let open = top.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "pre_terminate = [\"touch\", \"x\"]".into(),
            vec!["'actions.pre_terminate[0]' ('touch') must be an absolute path".into()],
        ),
        (
            format!(
                "post_terminate = [\"{}\"]",
                hook(top.path(), "theirs.sh", true).display()
            ),
            vec![
                "'actions.post_terminate[0]'".into(),
                "owned by uid 65534".into(),
            ],
        ),
        (
            format!(
                "pre_terminate = [\"{}\"]",
                hook(&open, "hook.sh", false).display()
            ),
            vec![
                "'actions.pre_terminate[0]'".into(),
                "on the way to it".into(),
                "writable by group or others".into(),
            ],
        ),
    ];
    for (hooks, want) in &cases {
        let cfg = root_config(top.path(), &log, &format!("[actions]\n{hooks}\n"));
        let o = headroom(
            &["check-config", "--config", cfg.to_str().expect("utf-8")],
            &[],
        );
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_refused(&o, 78, &want);
    }
    let good = hook(top.path(), "good.sh", false);
    let cfg = root_config(
        top.path(),
        &log,
        &format!(
            "[actions]\npre_terminate = [\"{}\"]\npost_terminate = [\"/bin/sh\", \"-c\", \"true\"]\n",
            good.display()
        ),
    );
    let o = headroom(
        &["check-config", "--config", cfg.to_str().expect("utf-8")],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_reload_of_a_config_made_untrusted_keeps_the_old_one() {
    if !need::root("root's config trust on SIGHUP") {
        return;
    }
    let d = Daemon::start("[poll]\ninterval = \"200ms\"\n", &["--dry-run"]);
    d.wait_for("started", LONG, |e| is(e, "started"));
    chmod(&d.config_path(), 0o666);
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let e = d.wait_for("the refused reload", LONG, |e| {
        is(e, "error")
            && e["error"]
                .as_str()
                .unwrap_or("")
                .contains("keeping the old config")
    });
    let msg = e["error"].as_str().unwrap_or("");
    assert!(
        msg.contains("not trusted as root") && msg.contains("mode 666"),
        "{msg}"
    );
    assert!(
        !d.events().iter().any(|e| is(e, "config_reloaded")),
        "the untrusted config was loaded"
    );
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}

// ----------------------------------------------------------- 4. validation

fn total_ram() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    kib * 1024
}

#[test]
fn the_five_lethal_configs_of_the_issue_are_rejected_by_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("logs/headroom.log");
    let total = total_ram();
    let gib = 1u64 << 30;
    // "red_below = 100GiB" on a 23.5 GiB machine: above this machine's RAM,
    // with yellow above it so only total RAM can catch it.
    let (red, yellow) = if total < 100 * gib {
        ("100GiB".to_string(), "200GiB".to_string())
    } else {
        (format!("{}", total + gib), format!("{}", total + 2 * gib))
    };
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            format!("[thresholds]\nred_below = \"{red}\"\nyellow_below = \"{yellow}\"\n"),
            vec![
                "'thresholds.yellow_below'".into(),
                "must be below this machine's total RAM".into(),
            ],
        ),
        (
            format!("[thresholds]\nred_below = \"{red}\"\n"),
            vec![format!(
                "'thresholds.red_below' ('{red}') must be below 'thresholds.yellow_below'"
            )],
        ),
        (
            "[actions]\nkill_floor = \"3GiB\"\n".into(),
            vec![
                "'actions.kill_floor' ('3GiB') must be below 'thresholds.red_below' ('2GiB')"
                    .into(),
            ],
        ),
        (
            "[actions]\nkill_floor = \"100%\"\n".into(),
            vec!["'actions.kill_floor' (100% =".into(), "total RAM".into()],
        ),
        (
            "[mlx]\npatterns = [\"\"]\n".into(),
            vec!["'mlx.patterns[0]' ('') matches the empty string".into()],
        ),
        (
            "[actions]\nterminate_after = \"0s\"\nkill_after = \"0s\"\n".into(),
            vec!["'actions.kill_after' ('0s') must be between 1s and 10m".into()],
        ),
        (
            "[thresholds]\ndwell = \"100000000000h\"\n".into(),
            vec!["'thresholds.dwell' ('100000000000h') must be between 0s and 1h".into()],
        ),
    ];
    for (text, want) in &cases {
        let cfg = root_config(dir.path(), &log, text);
        let c = cfg.to_str().expect("utf-8");
        let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
        want.push(c);
        let o = headroom(&["check-config", "--config", c], &[]);
        assert_refused(&o, 78, &want);
        assert!(o.stdout.is_empty(), "nothing printed as effective");
    }
    // `run` refuses the same before it starts (nothing logged).
    let cfg = root_config(dir.path(), &log, &cases[0].0);
    let o = headroom(
        &["run", "--dry-run", "--config", cfg.to_str().expect("utf-8")],
        &[],
    );
    assert_refused(&o, 78, &["total RAM"]);
    assert!(!log.exists(), "run wrote a log for a rejected config");
}
