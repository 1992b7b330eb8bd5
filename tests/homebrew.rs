//! The Homebrew formula (Formula/headroom.rb) checked from Linux, where
//! Homebrew cannot run (issue 16): its Ruby parses (`ruby -c`), its `test do`
//! commands are run against the real binary and must print the strings the
//! block matches (read from the formula itself, so the two cannot drift), its
//! service block uses the DSL name that becomes launchd's ThrottleInterval,
//! and scripts/release-formula fills the url and sha256 slot.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_headroom");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn formula() -> String {
    std::fs::read_to_string(root().join("Formula/headroom.rb")).expect("Formula/headroom.rb")
}

/// `ruby -c` on a file.
fn ruby_syntax_ok(path: &Path) -> bool {
    let out = Command::new("ruby")
        .arg("-c")
        .arg(path)
        .output()
        .expect("ruby runs");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Syntax OK")
}

/// The `test do … end` block's `assert_match "WANT", shell_output("#{bin}/headroom ARGS")`
/// lines, as (WANT, ARGS).
fn test_block_expectations(text: &str) -> Vec<(String, Vec<String>)> {
    let start = text.find("\n  test do\n").expect("a test do block");
    let block = &text[start..];
    let block = &block[..block.find("\n  end\n").expect("end of test do")];
    let mut out = Vec::new();
    for line in block.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("assert_match \"") else {
            continue;
        };
        let (want, rest) = rest.split_once('"').expect("closing quote");
        let cmd = rest
            .split_once("shell_output(\"#{bin}/headroom ")
            .expect("shell_output of the headroom binary")
            .1;
        let cmd = cmd.split_once("\")").expect("end of shell_output").0;
        out.push((
            want.to_string(),
            cmd.split_whitespace().map(String::from).collect(),
        ));
    }
    out
}

#[test]
fn formula_is_valid_ruby() {
    if !common::need::programs("formula_is_valid_ruby", &[("ruby", "ruby")]) {
        return;
    }
    assert!(
        ruby_syntax_ok(&root().join("Formula/headroom.rb")),
        "ruby -c rejects Formula/headroom.rb"
    );
}

#[test]
fn the_test_block_commands_print_what_it_matches() {
    let expectations = test_block_expectations(&formula());
    assert!(
        expectations.len() >= 2,
        "the test block checks completions and check-config: {expectations:?}"
    );
    assert!(expectations
        .iter()
        .any(|(_, a)| a.first().map(String::as_str) == Some("check-config")));
    // `brew test` runs with a fresh HOME: no user config, the embedded defaults.
    let home = tempfile::tempdir().expect("home");
    for (want, args) in expectations {
        let out = Command::new(BIN)
            .args(&args)
            .env("HOME", home.path())
            .env_remove("HEADROOM_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .expect("run headroom");
        // shell_output also fails the test on a non-zero exit.
        assert!(
            out.status.success(),
            "headroom {args:?} exited {:?}",
            out.status
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&want),
            "`headroom {}` does not print {want:?} (the formula's test do asserts it)",
            args.join(" ")
        );
    }
}

#[test]
fn formula_is_a_release_with_a_sha_and_a_throttled_service() {
    let f = formula();
    let line = |prefix: &str| {
        f.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}"))
            .to_string()
    };
    assert!(line("  url \"https://").ends_with(".tar.gz\""));
    let sha = line("  sha256 \"");
    let hex = sha
        .trim()
        .trim_start_matches("sha256 \"")
        .trim_end_matches('"');
    assert_eq!(hex.len(), 64, "{sha}");
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{sha}");
    // Homebrew's service DSL: restart_delay becomes launchd's TimeOut;
    // throttle_interval becomes ThrottleInterval (Library/Homebrew/service.rb).
    assert!(f.contains("    throttle_interval 10\n"));
    assert!(!f
        .lines()
        .any(|l| l.trim_start().starts_with("restart_delay")));
}

#[test]
fn release_script_fills_url_and_sha256() {
    let dir = tempfile::tempdir().expect("tmp");
    let copy = dir.path().join("headroom.rb");
    std::fs::copy(root().join("Formula/headroom.rb"), &copy).expect("copy");
    let tarball = dir.path().join("headroom-9.8.7.tar.gz");
    std::fs::write(&tarball, b"release bytes\n").expect("tarball");
    let script = root().join("scripts/release-formula");
    let out = Command::new(&script)
        .arg("9.8.7")
        .arg(&tarball)
        .env("FORMULA", &copy)
        .output()
        .expect("run scripts/release-formula");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&copy).expect("formula");
    // sha256 of "release bytes\n", from coreutils sha256sum.
    let sum = String::from_utf8_lossy(
        &Command::new("sha256sum")
            .arg(&tarball)
            .output()
            .expect("sha256sum")
            .stdout,
    )
    .split_whitespace()
    .next()
    .expect("sum")
    .to_string();
    assert!(text.contains(&format!("  sha256 \"{sum}\"\n")), "{text}");
    assert!(text.contains(
        "  url \"https://github.com/headroom-dev/headroom/releases/download/v9.8.7/headroom-9.8.7.tar.gz\"\n"
    ));
    assert!(
        text.contains("  head \"https://github.com/headroom-dev/headroom.git\""),
        "head untouched"
    );
    if common::need::programs("the filled formula parses", &[("ruby", "ruby")]) {
        assert!(ruby_syntax_ok(&copy), "the filled formula still parses");
    }

    // Bad input: distinct exits, one line, the formula untouched.
    for (args, code) in [
        (vec!["v1.0"], 64),
        (vec!["1.0;rm"], 64),
        (vec![], 64),
        (vec!["1.0.0", "/nonexistent/x.tar.gz"], 66),
    ] {
        let out = Command::new(&script)
            .args(&args)
            .env("FORMULA", &copy)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
    assert_eq!(std::fs::read_to_string(&copy).expect("formula"), text);
}
