//! What a test needs from the machine (a program, root, free memory, real
//! MLX), or a loud skip: `SKIPPED: needs <program> (apt-get install <package>)`
//! written straight to the terminal (libtest's capture hides `eprintln!` of a
//! passing test) and appended to `target/tmp/skipped.txt`, which
//! `scripts/test` prints at the end. Under CI (`CI` set, not `false`/`0`) a
//! missing need is a failure, never a skip: CI installs everything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// CI is strict: `CI` is set to anything but empty, `0` or `false`.
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Where the skip lines are collected for `scripts/test`'s summary
/// (`HEADROOM_TEST_SKIP_FILE` moves it: tests/need.rs's probe uses that).
pub fn skip_file() -> PathBuf {
    std::env::var_os("HEADROOM_TEST_SKIP_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skipped.txt"))
}

/// Says loudly that `test` is skipped for `why` (under CI: panics instead).
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED: {why} — {test}");
    assert!(!strict(), "{line} (under CI nothing may be skipped)");
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {line} !!!!!!!!");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_file())
    {
        let _ = writeln!(f, "{line}");
    }
}

/// `program` as `Command::new` would find it: a file on $PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Every `(program, Debian package)` pair is on $PATH, or a loud skip naming
/// the first missing one and the package that brings it.
pub fn programs(test: &str, needs: &[(&str, &str)]) -> bool {
    match needs.iter().find(|(p, _)| find_program(p).is_none()) {
        None => true,
        Some((program, package)) => {
            skip(
                test,
                &format!("needs {program} (apt-get install {package})"),
            );
            false
        }
    }
}

/// Root, or a loud skip.
pub fn root(test: &str) -> bool {
    if nix::unistd::Uid::current().is_root() {
        return true;
    }
    skip(test, "needs root (run the tests as root)");
    false
}

/// MemAvailable once settled, if at least `min` bytes; else a loud skip that
/// states the minimum (a test sizes its thresholds from what this returns).
pub fn memory(test: &str, min: u64) -> Option<u64> {
    let avail = super::settled_mem_available();
    if avail >= min {
        return Some(avail);
    }
    skip(
        test,
        &format!(
            "needs {} MiB of available memory, this machine has {} MiB",
            min >> 20,
            avail >> 20
        ),
    );
    None
}

/// The Python interpreter of a venv with real `mlx[cpu]`: $HEADROOM_TEST_PYTHON,
/// else `target/test-venv` (made here with `python3 -m venv` + pip if it is
/// missing: needs network the first time), or a loud skip.
pub fn mlx(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HEADROOM_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
    let py = venv.join("bin/python");
    let imports = |py: &Path| {
        Command::new(py)
            .args(["-c", "import mlx.core"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if imports(&py) {
        return Some(py);
    }
    if !programs(test, &[("python3", "python3-venv")]) {
        return None;
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "mlx[cpu]",
                "mlx-lm",
            ])
            .status()
            .is_ok_and(|s| s.success());
    if made && imports(&py) {
        return Some(py);
    }
    skip(
        test,
        "needs real MLX: python3 -m venv target/test-venv && target/test-venv/bin/pip install 'mlx[cpu]' \
         (python3-venv and network; or set HEADROOM_TEST_PYTHON)",
    );
    None
}
