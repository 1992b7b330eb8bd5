//! The daemon against the real trainer (issue 19): a real `mlx_lm.lora`
//! (pip mlx-lm on mlx[cpu]) fine-tuning a model folder generated here
//! (tests/fixtures/gen_mlx_model.py: a float32 Llama with a 32000-entry
//! vocabulary, so the loss's logits make the footprint grow by gigabytes in
//! one step) grows into a red line placed below this machine's
//! MemAvailable. The daemon finds it by its program name (the pattern
//! `^mlx_lm(\.[a-z_.]+)?$` matches `…/bin/mlx_lm.lora`), notifies with its
//! real flags and the guide's remedy, SIGTERMs it and logs its peak. Beside
//! it a real `mlx_lm.generate` on a tiny model, run under
//! tests/fixtures/mlx_peak.py (a program name no pattern matches: the
//! daemon finds it by its mapped libmlx), stays small and is left alone.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Generous: importing mlx_lm and a first training step of 8k tokens take
/// a minute or more on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(300);

#[test]
fn real_mlx_lm_lora_is_stopped_and_a_real_generate_beside_it_is_left_alone() {
    let test = "real_mlx_lm_lora_is_stopped_and_a_real_generate_beside_it_is_left_alone";
    let _heavy = MEMORY_HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(py) = mlx_lm::need(test) else {
        return;
    };
    let Some(avail0) = need::memory(test, 8 * GIB) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let train = dir.path().join("train");
    let small = dir.path().join("small");
    let gen = |out: &std::path::Path, args: &[&str]| mlx_lm::generate(&py, out, args);
    gen(
        &train,
        &[
            "--hidden",
            "64",
            "--layers",
            "2",
            "--heads",
            "2",
            "--vocab",
            "32000",
            "--text-tokens",
            "2100",
            "--examples",
            "8",
        ],
    );
    gen(
        &small,
        &[
            "--hidden",
            "64",
            "--layers",
            "2",
            "--heads",
            "2",
            "--vocab",
            "2000",
            "--never-eos",
            "--text-tokens",
            "40",
            "--examples",
            "4",
        ],
    );

    // Batch 4 × 2048 tokens × 32000 logits in float32: about 1 GiB per
    // logit-sized tensor, 5 of them at the peak (docs/advise.md); the
    // trainer's resident memory holds about 2.5 GiB for seconds in each
    // step (measured with this model: 1.9 GiB at batch 3 for ~7 s).
    let (yellow, red) = (avail0 - GIB / 2, avail0 - 3 * GIB / 2);
    let cfg = format!(
        "[poll]\ninterval = \"100ms\"\n\
         [thresholds]\nyellow_below = \"{yellow}\"\nred_below = \"{red}\"\nhysteresis = \"64MiB\"\ndwell = \"1s\"\n\
         [actions]\nterminate_after = \"1s\"\nkill_after = \"60s\"\nkill_floor = \"{MIB}\"\n"
    );
    // The issue-12 lookalikes beside the real jobs: none may be touched.
    let look = common::lookalikes::Lookalikes::start(dir.path());
    let d = Daemon::start(&cfg, &[]);
    d.wait_for("started", LONG, |e| is(e, "started"));

    // The bystander: greedy generation that never reaches an end token.
    let mut generate = Kid::new(
        Command::new(&py)
            .arg(mlx_lm::fixture("mlx_peak.py"))
            .args(["mlx_lm.generate", "--model"])
            .arg(&small)
            .args(["--prompt", "abc def", "--max-tokens", "100000000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mlx_lm.generate"),
    );
    let gen_pid = generate.pid();
    let found = d.wait_for("mlx_lm.generate found", LONG, |e| {
        is(e, "mlx_process_found") && e["pid"] == gen_pid
    });
    let by = found["matched_by"].as_str().unwrap_or("");
    assert!(
        by.starts_with("library:") && by.contains("libmlx"),
        "{found}"
    );

    // The trainer, started as users start it: the venv's `mlx_lm.lora`.
    let bin_dir = py.parent().expect("venv bin");
    let lora_cmd = mlx_lm::lora_cmd(&train, 4, 2048, 2, false);
    let adapters = dir.path().join("adapters");
    let mut lora = Kid::new(
        Command::new(&py)
            .arg(bin_dir.join("mlx_lm.lora"))
            .args(&lora_cmd[1..])
            .args(mlx_lm::short_run(1000, &adapters))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("lora.err")).expect("stderr file"))
            .spawn()
            .expect("mlx_lm.lora"),
    );
    let pid = lora.pid();
    let found = d.wait_for("mlx_lm.lora found", LONG, |e| {
        is(e, "mlx_process_found") && e["pid"] == pid
    });
    assert!(
        found["matched_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("pattern:"),
        "{found}"
    );

    let term = d.wait_for("terminate_sent", LONG, |e| is(e, "terminate_sent"));
    assert_eq!(term["pid"], pid, "{term}");
    assert_eq!(term["result"]["outcome"], "done", "{term}");
    let status = wait_bounded(&mut lora.0, LONG).expect("mlx_lm.lora exits after SIGTERM");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");

    // The notice names the real command's flags and the guide's remedy.
    let notice = d.wait_for("the termination notice", LONG, |e| {
        is(e, "notified") && e["kind"] == "terminated"
    });
    let body = notice["body"].as_str().unwrap_or("");
    eprintln!("notice: {notice}");
    for want in [
        "mlx_lm.lora --model",
        "--batch-size 4 --max-seq-length 2048 --num-layers 2",
        &format!("(pid {pid})"),
        "Next time: retry with --batch-size 2 --grad-checkpoint",
    ] {
        assert!(body.contains(want), "{want:?} not in the notice: {notice}");
    }

    let exited = d.wait_for("victim_exited", LONG, |e| is(e, "victim_exited"));
    assert_eq!(exited["pid"], pid);
    assert_eq!(exited["killed"], false, "{exited}");
    eprintln!("victim: {exited}");
    let peak = exited["peak_bytes"].as_u64().unwrap_or(0);
    assert!(peak > GIB, "the trainer's peak is logged: {exited}");

    // The generator was never signalled and is still running, small.
    assert!(
        generate.0.try_wait().expect("try_wait").is_none(),
        "mlx_lm.generate is alive"
    );
    let gen_rss = proc_status_field(gen_pid as i32, "VmRSS:") * 1024;
    assert!(gen_rss < peak / 2, "generate stays small: {gen_rss} B");
    let signalled: Vec<(String, i64)> = d
        .events()
        .iter()
        .filter(|e| is(e, "terminate_sent") || is(e, "kill_sent"))
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").to_string(),
                e["pid"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(signalled, vec![("terminate_sent".to_string(), pid)]);
    look.assert_untouched(&d.events());
    let (st, _) = d.stop();
    assert!(st.success());
    drop(generate);
}
