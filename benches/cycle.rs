//! One full daemon cycle (sample → classify → policy → act in dry-run)
//! against synthetic /proc trees of 100, 1,000, 2,000 and 5,000 processes, two of
//! them MLX (issue 8). Results and how to read them: docs/performance.md.
//!
//! - `full_cycle/N`: `LinuxSampler::sample` + `Engine::step`, warmed by one
//!   sample, on the real clock (so early backoff rechecks of non-MLX pids
//!   fall inside the run, as in a daemon's first minute).
//! - `steady_scan/N`: `Discovery::scan` alone with the clock advanced 1 s
//!   per cycle after every pid has reached the longest backoff: the cost of
//!   a cycle a minute after start.
//! - `quiet_cycle/N`: `full_cycle` when memory is quiet, as the daemon runs
//!   nine cycles in ten then: `skip_discovery_once` before each sample, so
//!   only the tracked MLX pids are re-measured.
//! - `first_scan/N`: every pid new: the cost of examining N new processes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use headroom::act::Actuator;
use headroom::config::Config;
use headroom::discover::Discovery;
use headroom::engine::Engine;
use headroom::model::{Pid, Scope};
use headroom::sample::linux::{page_size, LinuxProcs, LinuxSampler};
use headroom::sample::Sampler;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [100, 1_000, 2_000, 5_000];
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/linux");

/// A /proc with `n` processes: pids 1000.. as uid 1000; the first two run
/// `python3 -m mlx_lm.lora`, every tenth is a python script (an
/// interpreter, rechecked in full), the rest are shells.
fn tree(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_dir = dir.path().join("proc");
    std::fs::create_dir_all(proc_dir.join("pressure")).expect("mkdir");
    for (src, dst) in [
        ("meminfo", "meminfo"),
        ("vmstat", "vmstat"),
        ("pressure_memory", "pressure/memory"),
    ] {
        std::fs::copy(Path::new(FIXTURES).join(src), proc_dir.join(dst)).expect("copy");
    }
    let stat = std::fs::read_to_string(Path::new(FIXTURES).join("python_mlx.stat")).expect("stat");
    let stat_tail = &stat[stat.find(')').expect("')'") + 1..];
    let maps = std::fs::read_to_string(Path::new(FIXTURES).join("python_mlx.maps")).expect("maps");
    for i in 0..n {
        let pid = 1000 + i;
        let (comm, cmdline) = match i {
            0 | 1 => ("python3", "python3\0-m\0mlx_lm.lora\0--train\0"),
            _ if i % 10 == 0 => ("python3", "python3\0serve.py\0"),
            _ => ("bash", "bash\0-l\0"),
        };
        let d = proc_dir.join(pid.to_string());
        std::fs::create_dir(&d).expect("mkdir pid");
        std::fs::write(d.join("stat"), format!("{pid} ({comm}){stat_tail}")).expect("stat");
        std::fs::write(
            d.join("status"),
            format!("Name:\t{comm}\nUid:\t1000\t1000\t1000\t1000\n"),
        )
        .expect("status");
        std::fs::write(d.join("cmdline"), cmdline).expect("cmdline");
        let m = if i < 2 { maps.as_str() } else { "" };
        std::fs::write(d.join("maps"), m).expect("maps");
    }
    dir
}

fn scope() -> Scope {
    Scope::user(1000)
}

fn full_cycle(c: &mut Criterion) {
    cycles(c, "full_cycle", false);
}

fn quiet_cycle(c: &mut Criterion) {
    cycles(c, "quiet_cycle", true);
}

/// sample + classify + policy for each size; `quiet`: the daemon's quiet
/// cycle (`skip_discovery_once` before each sample).
fn cycles(c: &mut Criterion, name: &str, quiet: bool) {
    let cfg = Config::embedded().expect("defaults");
    let mut g = c.benchmark_group(name);
    for n in SIZES {
        let dir = tree(n);
        let mut sampler =
            LinuxSampler::with_root(dir.path(), &cfg, scope(), Instant::now()).expect("sampler");
        let mut engine = Engine::new(Pid(1), scope());
        let mut act = Actuator::replay();
        let snap = sampler.sample().expect("warm-up sample");
        assert_eq!(snap.mlx_processes.len(), 2, "fixture has two MLX processes");
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                if quiet {
                    sampler.skip_discovery_once();
                }
                let snap = sampler.sample().expect("sample");
                let cycle = engine.step(&snap, &cfg, &mut act, &mut sampler);
                black_box(cycle.actions.len())
            })
        });
    }
    g.finish();
}

fn discovery(dir: &Path, cfg: &Config) -> (Discovery, LinuxProcs) {
    let procs = LinuxProcs::new(PathBuf::from(dir).join("proc"), page_size().expect("page"));
    let d = Discovery::new(cfg.patterns.clone(), cfg.detect_library, scope(), Pid(1));
    (d, procs)
}

fn steady_scan(c: &mut Criterion) {
    let cfg = Config::embedded().expect("defaults");
    let mut g = c.benchmark_group("steady_scan");
    for n in SIZES {
        let dir = tree(n);
        let (mut d, mut procs) = discovery(dir.path(), &cfg);
        // Walk every pid through its backoff (1, 2, 4 … 60 s).
        let mut at = Duration::ZERO;
        while at < Duration::from_secs(200) {
            d.scan(&mut procs, at).expect("scan");
            at += Duration::from_secs(1);
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                at += Duration::from_secs(1);
                black_box(d.scan(&mut procs, at).expect("scan").len())
            })
        });
    }
    g.finish();
}

fn first_scan(c: &mut Criterion) {
    let cfg = Config::embedded().expect("defaults");
    let mut g = c.benchmark_group("first_scan");
    g.sample_size(20);
    for n in SIZES {
        let dir = tree(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_with_setup(
                || discovery(dir.path(), &cfg),
                |(mut d, mut procs)| {
                    black_box(d.scan(&mut procs, Duration::ZERO).expect("scan").len())
                },
            )
        });
    }
    g.finish();
}

criterion_group!(benches, full_cycle, quiet_cycle, steady_scan, first_scan);
criterion_main!(benches);
