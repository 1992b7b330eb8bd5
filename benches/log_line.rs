//! The cost of one JSON log line (issue 15: events are built once, not
//! serialised, parsed and parsed again): a routine `sample` event the size
//! of a Snapshot with two MLX processes, and a small `mlx_process_found`,
//! each through `log_event!` into a real file (a stat and a write(2) per
//! line included, as in the daemon).

use criterion::{criterion_group, criterion_main, Criterion};
use headroom::log_event;
use serde_json::json;
use std::time::Instant;

fn process(pid: u32) -> serde_json::Value {
    json!({
        "pid": pid, "ppid": 1, "uid": 501, "name": "python3", "program": "mlx_lm.lora",
        "cmdline": "python3 -m mlx_lm.lora --model mlx-community/Llama-3-8B-4bit --train --batch-size 4",
        "footprint_bytes": 9_663_676_416u64, "rss_bytes": 9_126_805_504u64,
        "peak_bytes": 10_200_547_328u64, "growth_bytes_per_sec": 12_582_912.0,
        "mlx_by": "pattern", "started_at": 12.5,
    })
}

fn sample() -> serde_json::Value {
    json!({
        "at": 1234.5,
        "memory": {
            "total_bytes": 17_179_869_184u64, "available_bytes": 3_221_225_472u64,
            "free_bytes": 268_435_456u64, "wired_bytes": 2_147_483_648u64,
            "compressed_bytes": 1_073_741_824u64, "swap_total_bytes": 4_294_967_296u64,
            "swap_used_bytes": 1_073_741_824u64,
        },
        "pressure": {
            "swapout_bytes_per_sec": 1_048_576.0, "psi_some_avg10": 3.5,
            "psi_full_avg10": 1.25, "kernel_level": "normal",
        },
        "mlx_processes": [process(4242), process(4243)],
        "level": "yellow",
        "reasons": ["available 3.00 GiB < yellow 4.00 GiB"],
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("headroom.log");
    headroom::log::init(&path, 1 << 40, 1, Instant::now());
    let big = sample();
    let small = process(4242);
    c.bench_function("log_line/sample", |b| {
        b.iter(|| log_event!(info, "sample", &big))
    });
    c.bench_function("log_line/mlx_process_found", |b| {
        b.iter(|| log_event!(info, "mlx_process_found", &small))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
