//! The resource budget of a running daemon that is tracking an MLX process:
//! resident memory, open file descriptors and threads, read from
//! /proc/PID/status and /proc/PID/fd (as earlyoom's own tests cap its RSS).
//! Not timing-sensitive: the numbers are read after the daemon has run a
//! few cycles, whatever their pace. Why these budgets: docs/performance.md.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::time::Duration;

/// Resident memory the daemon allocates (heap, stacks: RssAnon). Measured
/// ~0.6 MiB release, ~1.6 MiB debug (docs/performance.md); the cap leaves
/// room for allocator noise on a loaded machine, not for growth.
const ANON_BUDGET: u64 = 3 * 1024 * 1024;
/// All of VmRSS, which adds the mapped binary and libraries (RssFile): the
/// unoptimised debug binary alone is ~4× the release one.
const RSS_BUDGET_DEBUG: u64 = 24 * 1024 * 1024;
const RSS_BUDGET_RELEASE: u64 = 8 * 1024 * 1024;
/// Measured 17 here (15 in bench/vs-earlyoom, whose daemon inherits no
/// stderr file or lock): 0-2 stdio, the log, the timerfd, the kept-open
/// meminfo, pressure/memory and loadavg (vmstat too with swap), the PSI
/// trigger, tokio's epoll and eventfd, the signal socket pair, the
/// notifier's; under `flock` the lock's fd is inherited too. Room for a
/// sample's per-pid file in flight and a machine with swap.
const FD_BUDGET: usize = 20;
/// main, the notifier, and tokio's blocking thread, alive only around a
/// listing of pids (no PSI waiter thread: the trigger is on the loop's
/// poller).
const THREAD_BUDGET: u64 = 3;

#[test]
fn rss_fds_and_threads_stay_within_budget_while_tracking_mlx() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut mlx = spawn_fake_mlx(
        work.path(),
        "lora",
        "import time\nprint('ready', flush=True)\ntime.sleep(120)\n",
        &["--train"],
    );
    let d = Daemon::start("[actions]\ndry_run = true\n", &[]);
    let pid = d.pid();
    let kid = mlx.pid();
    d.wait_for("the fake MLX process", Duration::from_secs(30), |e| {
        e["event"] == "mlx_process_found" && e["pid"] == kid
    });
    // A few more cycles, so buffers and pools have reached their size.
    std::thread::sleep(Duration::from_secs(5));

    let rss = proc_status_field(pid, "VmRSS:") * 1024;
    let anon = proc_status_field(pid, "RssAnon:") * 1024;
    let file = proc_status_field(pid, "RssFile:") * 1024;
    let threads = proc_status_field(pid, "Threads:");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| e.ok())
        .map(|e| {
            std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    let budget = if cfg!(debug_assertions) {
        RSS_BUDGET_DEBUG
    } else {
        RSS_BUDGET_RELEASE
    };
    eprintln!(
        "headroom pid {pid}: VmRSS {} KiB (anon {} KiB, file {} KiB), {threads} threads, {} fds: {fds:?}",
        rss / 1024,
        anon / 1024,
        file / 1024,
        fds.len()
    );
    assert!(anon <= ANON_BUDGET, "RssAnon {anon} above {ANON_BUDGET}");
    assert!(rss <= budget, "VmRSS {rss} above the budget {budget}");
    assert!(fds.len() <= FD_BUDGET, "{} fds: {fds:?}", fds.len());
    assert!(threads <= THREAD_BUDGET, "{threads} threads");
    let (status, err) = d.stop();
    assert!(status.success(), "{err}");
    let _ = mlx.0.kill();
    let _ = mlx.0.wait();
}
