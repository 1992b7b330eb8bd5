//! A real Python process that imports real MLX (`mlx[cpu]` in a venv) under
//! a script name with no "mlx" in it is found through its mapped libmlx.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn python_script_importing_mlx_is_discovered_by_its_library() {
    let Some(py) = need::mlx("python_script_importing_mlx_is_discovered_by_its_library") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("train.py");
    write_file(
        &script,
        "import mlx.core as mx, time\na = mx.ones((2048, 2048)); mx.eval(a)\nprint('ready', flush=True)\ntime.sleep(120)\n",
    );
    let mut kid = Kid::new(
        Command::new(&py)
            .arg(&script)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python"),
    );
    kid.wait_line("ready", Duration::from_secs(120));
    let pid = kid.pid();

    let v = common::lookalikes::status_json();
    let procs = v["mlx_processes"].as_array().expect("mlx_processes");
    let p = procs
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not found: {v:#}"));
    let by = p["matched_by"].as_str().unwrap_or("");
    assert!(by.starts_with("library:") && by.contains("libmlx"), "{p}");
    assert!(
        !p["cmdline"].as_str().unwrap_or("").contains("mlx"),
        "the command line alone must not give it away: {p}"
    );
    // 2048×2048 float32 ones = 16 MiB of array, plus the interpreter and libmlx.
    assert!(p["footprint_bytes"].as_u64().unwrap_or(0) > 16 * MIB, "{p}");

    // The text view names it too, by pid.
    let out = Command::new(bin())
        .arg("status")
        .env_remove("HEADROOM_CONFIG")
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with(&pid.to_string())),
        "{text}"
    );
}
