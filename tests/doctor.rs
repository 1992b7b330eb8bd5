//! `headroom doctor` on this Linux machine, end to end (issue 17): every
//! figure beside `free -b`'s, exit 0 when nothing fails, exit 1 naming the
//! check that failed.
#![cfg(target_os = "linux")]

mod common;

use common::bin;
use serde_json::Value;
use std::process::{Command, Output};

fn doctor(args: &[&str], env: &[(&str, &std::path::Path)]) -> Output {
    let mut c = Command::new(bin());
    c.arg("doctor").args(args).env_remove("HEADROOM_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("headroom doctor runs")
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {report:#}"))
}

#[test]
fn doctor_passes_here_with_figures_beside_free() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = doctor(&["--json"], &[("XDG_STATE_HOME", dir.path())]);
    let text = String::from_utf8_lossy(&o.stdout);
    let r: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(o.status.code(), Some(0), "{r:#}");
    assert_eq!(r["ok"], true);
    for name in [
        "config",
        "log",
        "sampler",
        "total",
        "available",
        "swap total",
        "psi",
        "pidfd",
    ] {
        assert_eq!(check(&r, name)["status"], "ok", "{name}: {r:#}");
    }
    // The figures are shown side by side, the tool named.
    let avail = check(&r, "available");
    assert!(
        avail["ours"].as_str().is_some_and(|s| s.contains("GiB")),
        "{avail}"
    );
    assert!(
        avail["theirs"].as_str().is_some_and(|s| s.contains("GiB")),
        "{avail}"
    );
    assert!(
        avail["detail"]
            .as_str()
            .is_some_and(|s| s.contains("free -b")),
        "{avail}"
    );
    // Things that may legitimately be missing here are warnings, not failures.
    for name in ["agent", "notifications", "mlx", "machine"] {
        assert_ne!(check(&r, name)["status"], "fail", "{name}: {r:#}");
    }
    // Issue 21: no GPU wired limit on Linux, so no check of it.
    if cfg!(target_os = "linux") {
        let names: Vec<&str> = r["checks"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(!names.is_empty() && !names.contains(&"gpu_wired"), "{r:#}");
    }
    // The text form: one line per check and the summary.
    let o = doctor(&[], &[("XDG_STATE_HOME", dir.path())]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("available")),
        "{text}"
    );
    assert!(text.contains("0 failed"), "{text}");
}

#[test]
fn a_bad_config_or_an_unusable_log_fails_doctor_with_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[thresholds]\nred_below = \"9GiB\"\nyellow_below = \"1GiB\"\n",
    )
    .expect("write");
    let o = doctor(
        &["--json", "--config", cfg.to_str().expect("utf-8")],
        &[("XDG_STATE_HOME", dir.path())],
    );
    let r: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(o.status.code(), Some(1), "{r:#}");
    assert_eq!(r["ok"], false);
    let c = check(&r, "config");
    assert_eq!(c["status"], "fail");
    assert!(
        c["detail"]
            .as_str()
            .is_some_and(|d| d.contains("red_below")),
        "{c}"
    );
    // The rest still ran, on the embedded defaults.
    assert_eq!(check(&r, "available")["status"], "ok", "{r:#}");

    // A file where the log's directory should be.
    let state = dir.path().join("state");
    std::fs::write(&state, "not a directory").expect("write");
    let o = doctor(&["--json"], &[("XDG_STATE_HOME", &state)]);
    let r: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(o.status.code(), Some(1), "{r:#}");
    assert_eq!(check(&r, "log")["status"], "fail", "{r:#}");
}
