//! The binary's command line: bad config files give exit 78 and one line
//! naming the key; status and check-config work on this machine.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;

fn headroom() -> Command {
    let mut c = Command::new(common::bin());
    c.env_remove("HEADROOM_CONFIG");
    c
}

#[test]
fn invalid_config_files_exit_78_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("wrong type", "[poll]\ninterval = 5\n", "'poll.interval'"),
        (
            "unknown key",
            "[thresholds]\nred_bellow = \"2GiB\"\n",
            "red_bellow",
        ),
        (
            "unknown section",
            "[thresholdz]\nred_below = \"2GiB\"\n",
            "thresholdz",
        ),
        (
            "red above yellow",
            "[thresholds]\nred_below = \"8GiB\"\nyellow_below = \"4GiB\"\n",
            "'thresholds.red_below' ('8GiB') must be below 'thresholds.yellow_below' ('4GiB')",
        ),
        (
            "negative size",
            "[actions]\nkill_floor = \"-1GiB\"\n",
            "'actions.kill_floor' ('-1GiB') must not be negative",
        ),
        (
            "bad percent",
            "[thresholds]\nyellow_below = \"120%\"\n",
            "'thresholds.yellow_below' ('120%')",
        ),
        (
            "bad duration",
            "[actions]\nterminate_after = \"soonish\"\n",
            "'actions.terminate_after' ('soonish')",
        ),
        (
            "bad regex",
            "[mlx]\npatterns = [\"mlx_lm(\"]\n",
            "'mlx.patterns[0]'",
        ),
        ("garbage", "\u{0}\u{1}not toml at all ][", "bad.toml"),
        (
            "unknown user",
            "[actions]\nusers = [\"no-such-user-hr\"]\n",
            "actions.users[0]",
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, text, want) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).expect("write");
        for sub in ["check-config", "run", "status"] {
            let out = headroom()
                .arg(sub)
                .arg("--config")
                .arg(&path)
                .timeout(std::time::Duration::from_secs(30))
                .output()
                .expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            // `actions.users` names are resolved against this machine only when acting.
            if *what == "unknown user" && sub == "check-config" {
                continue;
            }
            assert_eq!(out.status.code(), Some(78), "{what} / {sub}: {err}");
            assert!(err.contains(want), "{what} / {sub}: {err}");
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{what} / {sub}: one line: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn missing_config_file_is_a_config_error() {
    headroom()
        .args(["check-config", "--config", "/nonexistent/headroom.toml"])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("/nonexistent/headroom.toml"));
}

#[test]
fn headroom_config_env_is_used_when_no_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[thresholds]\nred_below = \"3GiB\"\n").expect("write");
    headroom()
        .env("HEADROOM_CONFIG", &p)
        .arg("check-config")
        .assert()
        .success()
        .stdout(predicate::str::contains("red_below = \"3GiB\""));
}

#[test]
fn status_json_has_the_documented_fields() {
    let out = headroom().args(["status", "--json"]).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for k in [
        "level",
        "available_bytes",
        "total_bytes",
        "reasons",
        "mlx_processes",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    let total = v["total_bytes"].as_u64().expect("total");
    let avail = v["available_bytes"].as_u64().expect("available");
    assert!(total > 0 && avail <= total);
    // Issue 21: Linux has no GPU wired limit: the fields are absent (not
    // zero) and nothing warns about it.
    if cfg!(target_os = "linux") {
        for k in [
            "gpu_wired_limit_mb",
            "gpu_wired_lwm_mb",
            "gpu_wired_limit_bytes",
            "gpu_wired_warning",
        ] {
            assert!(v.get(k).is_none(), "{k} on Linux: {v}");
        }
        let out = headroom().arg("status").output().expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.contains("GPU wired"),
            "{text}"
        );
    }
}

#[test]
fn help_and_version_everywhere() {
    headroom()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    for sub in ["run", "status", "check-config"] {
        headroom()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("--config"));
    }
}

#[test]
fn explain_reads_a_real_sample_and_rejects_garbage_with_65() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/macos/sample2_vm_stat.txt"
    );
    let out = headroom()
        .args(["explain", sample, "--total-bytes", "17179869184", "--json"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["kernel_level"], "warn");
    assert_eq!(v["level"], "yellow");
    headroom()
        .arg("explain")
        .write_stdin("hello\nworld\n")
        .assert()
        .code(65)
        .stderr(predicate::str::contains("line 1"));
    headroom()
        .args(["explain", "/nonexistent/vm_stat.txt"])
        .assert()
        .code(66);
}

/// Issue 12: check-config says whose processes may be signalled, and shows
/// min_victim_footprint.
#[test]
fn check_config_says_the_scope_and_the_smallest_victim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[actions]\nusers = [\"nobody\"]\n").expect("write");
    let out = headroom()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("min_victim_footprint = \"512MiB\""), "{text}");
    let uid = nix::unistd::Uid::current();
    let want = if uid.is_root() {
        "# scope: watches all users; signals only uid 0, 65534 (root and actions.users)".to_string()
    } else {
        format!("# scope: watches and signals only uid {uid}")
    };
    assert!(text.contains(&want), "{text}");
}

/// A full disk on standard output is a one-line error with exit 74, never a
/// panic (`print!` panicked with exit 101; issue 19's review).
#[test]
#[cfg(target_os = "linux")]
fn output_to_a_full_device_is_exit_74_not_a_panic() {
    for args in [
        &["check-config"][..],
        &["advise", "--model", "7B"],
        &["doctor"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args(args)
            .env_remove("HEADROOM_CONFIG")
            .stdout(full)
            .output()
            .expect("headroom runs");
        let err = String::from_utf8_lossy(&o.stderr);
        // doctor's own exit (0 or 1) comes after printing: 74 wins.
        assert_eq!(o.status.code(), Some(74), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("standard output"), "{args:?}: {err}");
    }
}
