//! Mac-only integration tests (issue 17): headroom against the Mac's own
//! tools, on a real Mac. They run in the project's public CI on Apple
//! Silicon runners (.github/workflows/ci.yml, macos-14 and macos-15) and on
//! any contributor's Mac; they compile to nothing elsewhere. NOT YET RUN on a
//! Mac: our own machines cannot run macOS, so every line here has only been
//! type-checked and linted for aarch64-apple-darwin.
#![cfg(target_os = "macos")]

mod common;

use common::{bin, Kid};
use headroom::doctor::{compare_macos, Status, MAC_MEMORY_CHECKS};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

fn sh(prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    let o = Command::new(bin())
        .args(args)
        .output()
        .expect("headroom runs");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("json")
}

/// One sample through the real sampler (host_statistics64, sysctl).
fn sample() -> headroom::model::Snapshot {
    let cfg = headroom::config::Config::embedded().expect("defaults");
    let (mut s, _) = headroom::sample::open(&cfg, Instant::now()).expect("sampler");
    s.sample().expect("sample")
}

/// host_statistics64 counters against vm_stat, swap and memsize against
/// sysctl, the kernel's level and free percentage against
/// kern.memorystatus_vm_pressure_level and memory_pressure -Q — the same
/// moment, within the counters' drift (doctor's own comparison).
#[test]
fn sampler_agrees_with_vm_stat_sysctl_and_memory_pressure() {
    let before = sample();
    let text = format!(
        "{}\n{}\n{}",
        sh("vm_stat", &[]),
        sh("memory_pressure", &["-Q"]),
        sh(
            "sysctl",
            &[
                "hw.memsize",
                "vm.swapusage",
                "kern.memorystatus_vm_pressure_level"
            ]
        )
    );
    let after = sample();
    let checks = compare_macos(&before, &after, &text);
    for name in MAC_MEMORY_CHECKS {
        let c = checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} check: {checks:?}"));
        assert_eq!(c.status, Status::Ok, "{c:?}");
    }
    // hw.memsize exactly.
    let memsize: u64 = sh("sysctl", &["-n", "hw.memsize"])
        .trim()
        .parse()
        .expect("memsize");
    assert_eq!(before.memory.total_bytes.0, memsize);
}

/// A child that allocates and touches 512 MiB: its phys_footprint grows by
/// about that much.
#[test]
fn a_childs_phys_footprint_grows_by_what_it_touches() {
    let mut kid = Kid::new(
        Command::new("python3")
            .args([
                "-c",
                "import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\n\
                 b = bytearray(512 * 1024 * 1024)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n\
                 print('done', flush=True)\ntime.sleep(600)\n",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    kid.wait_line("ready", LONG);
    let pid = kid.pid() as i32;
    let f0 = headroom::sys::macos::rusage(pid)
        .expect("rusage")
        .phys_footprint
        .0;
    {
        use std::io::Write;
        kid.0
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"go\n")
            .expect("write");
    }
    kid.wait_line("done", LONG);
    let f1 = headroom::sys::macos::rusage(pid)
        .expect("rusage")
        .phys_footprint
        .0;
    let grew = f1.saturating_sub(f0);
    let mib = 1 << 20;
    assert!(
        (480 * mib..=600 * mib).contains(&grew),
        "phys_footprint grew {} MiB for 512 MiB touched",
        grew / mib
    );
}

/// Process listing finds a child Python with its argv, and the MLX rules
/// classify a `python -m mlx_lm.lora`-shaped child (a fake mlx_lm package:
/// the pattern is under test, not mlx_lm).
#[test]
fn status_lists_an_mlx_lm_lora_shaped_child_with_its_argv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kid = common::spawn_fake_mlx(
        dir.path(),
        "lora",
        "import time\nprint('ready', flush=True)\ntime.sleep(600)\n",
        &["--train", "--batch-size", "2"],
    );
    let pid = kid.pid();
    let deadline = Instant::now() + LONG;
    loop {
        let s = json(&["status", "--json"]);
        let found = s["mlx_processes"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["pid"] == pid).cloned());
        if let Some(p) = found {
            assert_eq!(p["program"], "mlx_lm.lora", "{p}");
            assert!(
                p["cmdline"]
                    .as_str()
                    .is_some_and(|c| c.contains("--batch-size 2")),
                "{p}"
            );
            assert!(
                p["matched_by"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("pattern:")),
                "{p}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "pid {pid} never listed: {s:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(kid);
}

/// A child importing real MLX (when `pip install mlx` works on this Mac) is
/// found through its loaded library, whatever its script is called.
#[test]
fn a_child_importing_mlx_is_found_by_its_library() {
    let Some(py) = common::need::mlx("a_child_importing_mlx_is_found_by_its_library") else {
        return;
    };
    let mut kid = Kid::new(
        Command::new(&py)
            .args([
                "-c",
                "import mlx.core as mx, time\nmx.eval(mx.ones((1024, 1024)))\nprint('ready', flush=True)\ntime.sleep(600)\n",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python with mlx"),
    );
    kid.wait_line("ready", LONG);
    let s = json(&["status", "--json"]);
    let p = s["mlx_processes"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["pid"] == kid.pid()).cloned())
        .unwrap_or_else(|| panic!("not found: {s:#}"));
    assert!(
        p["matched_by"]
            .as_str()
            .is_some_and(|m| m.starts_with("library:")),
        "{p}"
    );
}

/// The daemon with the red line above what is available (red from the first
/// sample) stops an MLX-shaped child that ignores SIGTERM: SIGTERM, then
/// SIGKILL, each logged; a non-MLX sleeper beside it is untouched.
#[test]
fn the_real_actuator_sigterms_then_sigkills_an_mlx_child_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
                b = bytearray(64 * 1024 * 1024)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n\
                print('ready', flush=True)\ntime.sleep(600)\n";
    let mut kid = common::spawn_fake_mlx(dir.path(), "lora", body, &["--train"]);
    kid.wait_line("ready", LONG);
    let pid = kid.pid();
    let bystander = Kid::new(Command::new("sleep").arg("600").spawn().expect("sleep"));
    let d = common::Daemon::start(
        "[poll]\ninterval = \"500ms\"\n\
         [thresholds]\nyellow_below = \"99.5%\"\nred_below = \"99%\"\n\
         [actions]\nterminate_after = \"1s\"\nkill_after = \"2s\"\nmin_victim_footprint = \"1MiB\"\n",
        &[],
    );
    let term = d.wait_for("terminate_sent", LONG, |e| common::is(e, "terminate_sent"));
    assert_eq!(term["pid"], pid, "{term}");
    let kill = d.wait_for("kill_sent", LONG, |e| common::is(e, "kill_sent"));
    assert_eq!(kill["pid"], pid, "{kill}");
    assert!(
        common::wait_bounded(&mut kid.0, LONG).is_some(),
        "the child outlived SIGKILL"
    );
    let signalled: Vec<i64> = d
        .events()
        .iter()
        .filter(|e| common::is(e, "terminate_sent") || common::is(e, "kill_sent"))
        .filter_map(|e| e["pid"].as_i64())
        .collect();
    assert!(signalled.iter().all(|p| *p == pid), "{signalled:?}");
    assert!(!signalled.contains(&bystander.pid()));
    drop(d);
}

/// `headroom install` / `uninstall` against the real launchctl in
/// gui/$UID: the plist passes `plutil -lint`, the agent runs, its log is
/// written, and uninstall removes it. Skipped (loudly) on a Mac where a
/// headroom agent is already installed: never replace a user's own.
#[test]
fn install_runs_the_agent_under_launchd_and_uninstall_removes_it() {
    let home = std::env::var("HOME").expect("HOME");
    let label = headroom::agent::launchd::LABEL;
    let existing = std::fs::read_dir(Path::new(&home).join("Library/LaunchAgents"))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("headroom"))
        })
        .unwrap_or(false);
    if existing {
        common::need::skip(
            "install_runs_the_agent_under_launchd_and_uninstall_removes_it",
            "needs a Mac without a headroom agent installed",
        );
        return;
    }
    let o = Command::new(bin())
        .arg("install")
        .output()
        .expect("install");
    assert!(
        o.status.success(),
        "install: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let installed: Vec<_> = std::fs::read_dir(Path::new(&home).join("Library/LaunchAgents"))
        .expect("LaunchAgents")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("headroom"))
        .collect();
    assert_eq!(installed.len(), 1, "{installed:?}");
    let plist = &installed[0];
    assert!(
        plist.ends_with(format!("{label}.plist")),
        "{}",
        plist.display()
    );
    sh("plutil", &["-lint", &plist.display().to_string()]);
    let uid = sh("id", &["-u"]).trim().to_string();
    let target = format!("gui/{uid}/{label}");
    let deadline = Instant::now() + LONG;
    loop {
        let o = Command::new("launchctl")
            .args(["print", &target])
            .output()
            .expect("launchctl");
        let text = String::from_utf8_lossy(&o.stdout);
        if text.contains("state = running") {
            break;
        }
        assert!(Instant::now() < deadline, "the agent never ran:\n{text}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = Path::new(&home).join("Library/Logs/headroom/headroom.log");
    let deadline = Instant::now() + LONG;
    while !common::read_events(&log)
        .iter()
        .any(|e| common::is(e, "started"))
    {
        assert!(
            Instant::now() < deadline,
            "no 'started' in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = Command::new(bin())
        .arg("uninstall")
        .output()
        .expect("uninstall");
    assert!(
        o.status.success(),
        "uninstall: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!plist.exists(), "plist left behind");
    let o = Command::new("launchctl")
        .args(["print", &target])
        .output()
        .expect("launchctl");
    assert!(!o.status.success(), "the agent is still loaded");
}

/// `headroom doctor --json` passes on this Mac.
#[test]
fn doctor_passes_on_this_mac() {
    let o = Command::new(bin())
        .args(["doctor", "--json"])
        .output()
        .expect("doctor");
    let r: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(o.status.code(), Some(0), "{r:#}");
    assert_eq!(r["ok"], true, "{r:#}");
}

/// Issue 21: the GPU wired limit read through sysctlbyname equals what
/// `sysctl -n` prints (both unprivileged); on a Mac without the sysctl
/// (Intel, older macOS) both say nothing, and the Snapshot omits the field.
#[test]
fn the_gpu_wired_limit_matches_sysctl() {
    let cli = |name: &str| -> Option<u64> {
        let o = Command::new("sysctl")
            .args(["-n", name])
            .output()
            .expect("sysctl runs");
        if !o.status.success() {
            return None;
        }
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    let (limit, lwm) = headroom::sys::macos::gpu_wired_mb();
    assert_eq!(limit, cli("iogpu.wired_limit_mb"), "iogpu.wired_limit_mb");
    assert_eq!(lwm, cli("iogpu.wired_lwm_mb"), "iogpu.wired_lwm_mb");
    let s = sample();
    assert_eq!(s.memory.gpu_wired_limit_mb, limit);
    let v = json(&["status", "--json"]);
    match limit {
        Some(mb) => {
            assert_eq!(v["gpu_wired_limit_mb"], mb, "{v}");
            assert!(v["gpu_wired_limit_bytes"].as_u64().is_some(), "{v}");
        }
        None => assert!(v.get("gpu_wired_limit_mb").is_none(), "{v}"),
    }
}
