//! Unit tests of src/attribute.rs: the window, the baselines and the rule
//! in numbers (issue 26).

use super::*;
use crate::model::SystemMemory;

fn p(pid: i32, mib: u64) -> MlxProcess {
    let mut p = MlxProcess::test_job(pid, 1000 + pid as u64);
    p.footprint_bytes = Bytes::mib(mib);
    p.job = None;
    p
}

fn snap(ms: u64, avail_mib: u64, procs: Vec<MlxProcess>) -> Snapshot {
    Snapshot {
        at: Duration::from_millis(ms),
        memory: SystemMemory {
            total_bytes: Bytes::gib(16),
            available_bytes: Bytes::mib(avail_mib),
            ..Default::default()
        },
        mlx_processes: procs,
        ..Default::default()
    }
}

/// Feed the snapshots, assess the last; returns (fall MiB, growth MiB by pid).
fn run(snaps: &[Snapshot]) -> (u64, Vec<(i32, i64)>) {
    let mut a = Attribution::default();
    for s in snaps {
        a.observe(s);
    }
    let last = snaps.last().expect("a snapshot");
    let x = a.assess(last);
    let mut g: Vec<(i32, i64)> = x
        .mlx_jobs
        .iter()
        .flat_map(|j| j.members.iter())
        .map(|m| (m.process.pid.0, m.growth / Bytes::MIB as i64))
        .collect();
    g.sort();
    (x.fall.bytes.0 / Bytes::MIB, g)
}

#[test]
fn the_window_starts_at_the_latest_high_point_and_growth_is_measured_from_it() {
    // Available peaks at 1 s (9000), falls to 2000 by 4 s; pid 10 grew
    // 6000 MiB from the peak, pid 11 nothing (it shrank before the peak).
    let s = [
        snap(0, 8000, vec![p(10, 1000), p(11, 3000)]),
        snap(1000, 9000, vec![p(10, 1000), p(11, 2000)]),
        snap(2000, 6000, vec![p(10, 4000), p(11, 2000)]),
        snap(4000, 2000, vec![p(10, 7000), p(11, 2000)]),
    ];
    assert_eq!(run(&s), (7000, vec![(10, 6000), (11, 0)]));
    // A plateau at the top: the latest of equal highs starts the window.
    let s = [
        snap(0, 9000, vec![p(10, 500)]),
        snap(1000, 9000, vec![p(10, 1000)]),
        snap(2000, 8000, vec![p(10, 2000)]),
    ];
    assert_eq!(run(&s), (1000, vec![(10, 1000)]));
}

#[test]
fn memory_that_rose_is_no_fall_and_readings_past_the_horizon_are_forgotten() {
    let s = [
        snap(0, 2000, vec![p(10, 1000)]),
        snap(1000, 3000, vec![p(10, 1000)]),
    ];
    assert_eq!(run(&s).0, 0);
    // A high point older than HORIZON no longer starts the window.
    let h = HORIZON.as_millis() as u64;
    let s = [
        snap(0, 9000, vec![p(10, 100)]),
        snap(1000, 5000, vec![p(10, 4100)]),
        snap(h + 500, 4000, vec![p(10, 5100)]),
    ];
    assert_eq!(run(&s), (1000, vec![(10, 1000)]));
}

#[test]
fn a_process_seen_late_counts_from_first_sight_unless_it_started_in_the_window() {
    let mut young = p(12, 3000);
    young.started_at = Some(1.5);
    let mut old = p(13, 3000);
    old.started_at = Some(0.2);
    let s = [
        snap(1000, 8000, vec![p(10, 100)]),
        snap(2000, 7000, vec![p(10, 100), p(14, 2000)]),
        snap(3000, 2000, vec![p(10, 100), young, old, p(14, 2500)]),
    ];
    // 12 started after the high point (1 s): all it holds is new. 13 is
    // older than the window and seen only now: nothing yet. 14 counts from
    // its first sight (2000 → 2500).
    assert_eq!(
        run(&s),
        (6000, vec![(10, 0), (12, 3000), (13, 0), (14, 500)])
    );
}

#[test]
fn a_reused_pid_is_another_process() {
    let mut again = p(10, 4000);
    again.start_time += 1;
    let s = [
        snap(0, 8000, vec![p(10, 4000)]),
        snap(1000, 7000, vec![again]),
    ];
    // The new process under pid 10 was not there at the start and its
    // start is unknown: counted from first sight, not from the old one.
    assert_eq!(run(&s), (1000, vec![(10, 0)]));
}

#[test]
fn fast_samples_are_thinned_and_the_frames_stay_bounded() {
    let mut a = Attribution::default();
    for ms in (0..120_000).step_by(2) {
        a.observe(&snap(ms, 8000 - ms / 100, vec![p(10, 100 + ms / 100)]));
    }
    assert!(a.frames.len() <= MAX_FRAMES, "{}", a.frames.len());
    let last = snap(120_000, 8000 - 1200, vec![p(10, 1300)]);
    a.observe(&last);
    let x = a.assess(&last);
    // The window reaches back about HORIZON (thinned to THIN steps).
    assert!(
        (x.fall.secs - HORIZON.as_secs_f64()).abs() < 0.5,
        "{}",
        x.fall.secs
    );
    let fall = x.fall.bytes.0 / Bytes::MIB;
    assert!((599..=600).contains(&fall), "{fall}");
}

#[test]
fn eats_is_a_real_share_never_jitter() {
    let gib = Bytes::GIB as i64;
    let mib = Bytes::MIB as i64;
    // 25 % of the fall and 64 MiB, both.
    assert!(eats(gib, Bytes::gib(4)));
    assert!(!eats(gib - mib, Bytes::gib(4)));
    assert!(!eats(60 * mib, Bytes::mib(100)));
    assert!(eats(64 * mib, Bytes::mib(100)));
    // 128 KiB/s for 60 s beside a 1 GiB/s hog: jitter.
    assert!(!eats(60 * 128 * 1024, Bytes::gib(60)));
    assert!(!eats(-gib, Bytes(0)));
    // No fall, no share, whatever grew.
    assert!(!eats(gib, Bytes(0)));
    assert!(!eats(gib, Bytes::mib(63)));
    assert_eq!(percent(gib, Bytes::gib(4)), 25);
    assert_eq!(percent(2 * gib, Bytes::gib(1)), 100);
    assert_eq!(percent(-gib, Bytes::gib(1)), 0);
}

#[test]
fn jobs_sum_their_processes_and_only_members_that_grew_eat() {
    let member = |pid: i32, mib: u64| {
        let mut x = p(pid, mib);
        x.job = Some(Pid(300));
        x
    };
    let s = [
        snap(
            0,
            8000,
            vec![
                member(300, 200),
                member(301, 100),
                member(302, 100),
                p(9, 50),
            ],
        ),
        snap(
            2000,
            3000,
            vec![
                member(300, 216),
                member(301, 2600),
                member(302, 2600),
                p(9, 50),
            ],
        ),
    ];
    let mut a = Attribution::default();
    for x in &s {
        a.observe(x);
    }
    let x = a.assess(&s[1]);
    let j = x.eating_mlx().next().expect("the job eats");
    assert_eq!(j.job, Pid(300));
    assert_eq!(j.growth, 5016 * Bytes::MIB as i64);
    let eating: Vec<i32> = j.eating_members().map(|m| m.process.pid.0).collect();
    // The launcher grew 16 MiB: less than half its even part (836 MiB).
    assert_eq!(eating, vec![301, 302]);
    assert_eq!(x.eating_mlx().count(), 1, "pid 9 grew nothing");
}

#[test]
fn listed_jobs_are_measured_from_their_first_reading_against_the_fall_since() {
    let job = |mib: u64| JobUsage {
        job: Pid(4120),
        uid: Some(0),
        name: "python3 workers.py".into(),
        processes: 8,
        footprint_bytes: Bytes::mib(mib),
        mlx: false,
    };
    let mut s0 = snap(0, 9000, vec![]);
    let mut s1 = snap(1000, 8000, vec![]);
    s1.jobs = vec![job(1000)];
    let mut s2 = snap(3000, 4000, vec![]);
    s2.jobs = vec![job(4800)];
    s0.jobs = vec![];
    let mut a = Attribution::default();
    for x in [&s0, &s1, &s2] {
        a.observe(x);
    }
    let x = a.assess(&s2);
    assert_eq!(x.fall.bytes, Bytes::mib(5000));
    let j = x.eating_jobs().next().expect("the workers eat");
    assert_eq!(
        (j.growth / Bytes::MIB as i64, j.fall),
        (3800, Bytes::mib(4000))
    );
    assert_eq!(
        j.describe(),
        "python3 workers.py and 7 more (pid group 4120, uid 0) made 3.71 GiB of the 3.91 GiB fall over 2.0 s (95 %)"
    );
}
