//! The loud-skip rule of the test suite (tests/common/need.rs, issue 14): a
//! test that needs a program this machine lacks says `SKIPPED: needs
//! <program> (apt-get install <package>)` on the terminal even though libtest
//! captures a passing test's output, records it for `scripts/test`'s summary,
//! and passes — but under CI the same test fails. Checked by running this
//! binary's own ignored probe test as a child, with and without `CI`.

mod common;

use common::need;
use std::process::Command;

const PROGRAM: &str = "headroom-test-no-such-program";

/// Not a test by itself: the child half of the tests below (ignored, so a
/// plain run never sees it). Prints what `need::programs` returned.
#[test]
#[ignore = "run as a child by the tests in this file"]
fn probe() {
    let found = need::programs("the probe", &[(PROGRAM, "no-such-package"), ("sh", "dash")]);
    println!("probe returned {found}");
}

/// Runs the probe with `CI` as given; (exit status, stdout+stderr, skip file).
fn run_probe(ci: Option<&str>) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let skips = dir.path().join("skipped.txt");
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args([
        "--ignored",
        "--exact",
        "probe",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("HEADROOM_TEST_SKIP_FILE", &skips)
    .env_remove("CI");
    if let Some(v) = ci {
        c.env("CI", v);
    }
    let o = c.output().expect("run the probe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let recorded = std::fs::read_to_string(&skips).unwrap_or_default();
    (o.status.success(), text, recorded)
}

#[test]
fn a_missing_program_is_a_loud_recorded_skip_that_passes() {
    let (ok, text, recorded) = run_probe(None);
    let want = format!("SKIPPED: needs {PROGRAM} (apt-get install no-such-package)");
    assert!(ok, "{text}");
    assert!(text.contains(&want), "{text}");
    assert!(text.contains("probe returned false"), "{text}");
    assert!(recorded.contains(&want), "{recorded:?}");
    assert_eq!(recorded.lines().count(), 1, "{recorded:?}");
}

#[test]
fn under_ci_a_missing_program_fails_the_test() {
    for ci in ["true", "1"] {
        let (ok, text, recorded) = run_probe(Some(ci));
        assert!(!ok, "CI={ci}: {text}");
        assert!(text.contains("under CI nothing may be skipped"), "{text}");
        assert!(!text.contains("probe returned"), "{text}");
        assert!(recorded.is_empty(), "{recorded:?}");
    }
    // CI=false is a developer's machine again.
    let (ok, text, _) = run_probe(Some("false"));
    assert!(ok, "{text}");
}

#[test]
fn present_programs_need_no_skip() {
    assert!(need::programs(
        "present",
        &[("sh", "dash"), ("env", "coreutils")]
    ));
    assert!(need::find_program("sh").is_some_and(|p| p.is_file()));
    assert!(need::find_program(PROGRAM).is_none());
}
