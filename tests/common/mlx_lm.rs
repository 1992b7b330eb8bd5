//! The real `mlx_lm` (pip `mlx-lm`, beside `mlx[cpu]` in the test venv) on
//! model folders generated here by tests/fixtures/gen_mlx_model.py: nothing
//! is downloaded. Used by tests/advise_mlx_lm.rs and tests/mlx_lm_e2e.rs.

use super::need;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The MLX venv's interpreter if it also has mlx-lm, or a loud skip (a
/// failure under CI, which installs it: scripts/test).
pub fn need(test: &str) -> Option<PathBuf> {
    let py = need::mlx(test)?;
    let ok = Command::new(&py)
        .args(["-c", "import mlx_lm, tokenizers"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    need::skip(
        test,
        &format!(
            "needs mlx-lm beside mlx: {} -m pip install mlx-lm (scripts/test does)",
            py.display()
        ),
    );
    None
}

/// Write a model folder at `dir` with gen_mlx_model.py `args`; its
/// one-line JSON summary (params, weight_bytes, vocab).
pub fn generate(py: &Path, dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(py)
        .arg(fixture("gen_mlx_model.py"))
        .arg(dir)
        .args(args)
        .output()
        .expect("run gen_mlx_model.py");
    assert!(
        out.status.success(),
        "gen_mlx_model.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("gen_mlx_model.py prints JSON")
}

/// An `mlx_lm.lora` command line as a user types it (no run-length flags).
pub fn lora_cmd(model: &Path, batch: u64, seq: u64, layers: u64, ckpt: bool) -> Vec<String> {
    let m = model.display().to_string();
    let mut v: Vec<String> = [
        "mlx_lm.lora",
        "--model",
        &m,
        "--train",
        "--data",
        &format!("{m}/data"),
        "--batch-size",
        &batch.to_string(),
        "--max-seq-length",
        &seq.to_string(),
        "--num-layers",
        &layers.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if ckpt {
        v.push("--grad-checkpoint".into());
    }
    v
}

/// Flags that keep a run short: `iters` steps, one validation batch, no
/// reports or saves in between; adapters written under `adapters`.
pub fn short_run(iters: u32, adapters: &Path) -> Vec<String> {
    [
        "--iters",
        &iters.to_string(),
        "--val-batches",
        "1",
        "--steps-per-eval",
        "100000",
        "--steps-per-report",
        "100000",
        "--save-every",
        "100000",
        "--adapter-path",
        &adapters.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Run `cmd` (an `mlx_lm.*` command line) in this interpreter through
/// tests/fixtures/mlx_peak.py; MLX's own peak (`mx.get_peak_memory()`).
pub fn measured_peak(py: &Path, cmd: &[String]) -> u64 {
    let out = Command::new(py)
        .arg(fixture("mlx_peak.py"))
        .args(cmd)
        .output()
        .expect("run mlx_peak.py");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{err}");
    err.lines()
        .find_map(|l| l.strip_prefix("MLX_PEAK_BYTES "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no MLX_PEAK_BYTES from {cmd:?}:\n{err}"))
}
