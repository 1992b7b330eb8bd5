//! Policy tables over synthetic timelines (fake `at`, no sleeping).
//!
//! Since issue 26 a victim must be an MLX job that eats: most tables start
//! with `Run::before`, a green sample one second before their time zero
//! where the eater was smaller, so the fall has a start and a share.

use super::*;
use crate::classify::Classifier;
use crate::config::Config;
use crate::model::JobUsage;

const ME: u32 = 501;

fn proc(pid: i32, gib: u64, cmd: &str) -> MlxProcess {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let name = crate::cmdline::basename(words.first().copied().unwrap_or("?")).to_string();
    MlxProcess {
        pid: Pid(pid),
        uid: ME,
        start_time: 1000 + pid as u64,
        name: name.clone(),
        cmdline: cmd.to_string(),
        program: crate::cmdline::Program::of(&words, &name).name,
        footprint_bytes: Bytes::gib(gib),
        rss_bytes: Bytes::gib(gib),
        peak_bytes: Bytes::gib(gib),
        growth_bytes_per_sec: 0.0,
        matched_by: "pattern:test".into(),
        job: None,
    }
}

/// `p` holding `mib` instead (the same process earlier or later).
fn at_size(p: &MlxProcess, mib: u64) -> MlxProcess {
    let mut p = p.clone();
    p.footprint_bytes = Bytes::mib(mib);
    p.rss_bytes = p.footprint_bytes;
    p
}

fn job(id: i32, processes: u32, mib: u64, mlx: bool, name: &str) -> JobUsage {
    JobUsage {
        job: Pid(id),
        uid: Some(ME),
        name: name.into(),
        processes,
        footprint_bytes: Bytes::mib(mib),
        mlx,
    }
}

/// Drives Classifier + Policy over a timeline like the daemon does.
struct Run {
    cfg: Config,
    classifier: Classifier,
    policy: Policy,
    /// Added to every `at`: 1 s once `before` has been called.
    offset: u64,
}

impl Run {
    fn new(extra: &str) -> Run {
        let cfg = Config::from_text("t.toml", extra).expect("config");
        Run {
            cfg,
            classifier: Classifier::default(),
            policy: Policy::new(Pid(999), Scope::user(ME)),
            offset: 0,
        }
    }
    /// A sample one second before the timeline's zero: `avail_mib`
    /// available and these processes (the eaters smaller than later).
    fn before(&mut self, avail_mib: u64, procs: &[MlxProcess]) -> Vec<Action> {
        let a = self.full(0, avail_mib, procs, vec![], vec![]);
        self.offset = 1000;
        a
    }
    fn at(&mut self, ms: u64, avail_mib: u64, procs: &[MlxProcess]) -> Vec<Action> {
        self.full(ms, avail_mib, procs, vec![], vec![])
    }
    fn full(
        &mut self,
        ms: u64,
        avail_mib: u64,
        procs: &[MlxProcess],
        top: Vec<crate::model::TopProcess>,
        jobs: Vec<JobUsage>,
    ) -> Vec<Action> {
        let s = Snapshot {
            at: Duration::from_millis(ms + self.offset),
            memory: crate::model::SystemMemory {
                total_bytes: Bytes::gib(16),
                available_bytes: Bytes::mib(avail_mib),
                ..Default::default()
            },
            mlx_processes: procs.to_vec(),
            top_processes: top,
            jobs,
            ..Default::default()
        };
        let c = self.classifier.step(&s, &self.cfg.thresholds);
        self.policy.step(&s, &c, &self.cfg)
    }
}

fn signals(a: &[Action]) -> Vec<(Sig, i32)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Signal(o) => Some((o.signal, o.process.pid.0)),
            _ => None,
        })
        .collect()
}

fn notices(a: &[Action]) -> Vec<NoticeKind> {
    a.iter()
        .filter_map(|a| match a {
            Action::Notify(n) => Some(n.kind),
            _ => None,
        })
        .collect()
}

/// The contributors of the first `red_not_mlx`.
fn contributors_named(a: &[Action]) -> Vec<Contributor> {
    a.iter()
        .find_map(|a| match a {
            Action::RedNotMlx { contributors, .. } => Some(contributors.clone()),
            _ => None,
        })
        .expect("red_not_mlx")
}

fn no_victims(a: &[Action]) -> Vec<String> {
    a.iter()
        .filter_map(|a| match a {
            Action::NoVictim { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn sigterm_after_red_holds_for_terminate_after_then_sigkill_after_kill_after() {
    let mut r = Run::new(""); // terminate_after 5s, kill_after 10s, floor 1GiB
    let ps = [
        proc(10, 6, "mlx_lm.lora --train"),
        proc(11, 2, "mlx_lm.generate"),
    ];
    r.before(8000, &[at_size(&ps[0], 1024), ps[1].clone()]);
    assert_eq!(notices(&r.at(0, 3000, &ps)), vec![NoticeKind::Yellow]);
    let a = r.at(1000, 1800, &ps);
    assert_eq!(notices(&a), vec![NoticeKind::Red]);
    assert!(signals(&a).is_empty(), "grace period first");
    assert!(signals(&r.at(5999, 1800, &ps)).is_empty());
    let a = r.at(6000, 1800, &ps);
    assert_eq!(
        signals(&a),
        vec![(Sig::Term, 10)],
        "the job that grew, after 5 s of red"
    );
    assert!(notices(&a).contains(&NoticeKind::Terminated));
    assert!(signals(&r.at(15_999, 1800, &ps)).is_empty());
    assert_eq!(signals(&r.at(16_000, 1800, &ps)), vec![(Sig::Kill, 10)]);
    assert!(
        signals(&r.at(30_000, 1800, &ps)).is_empty(),
        "one SIGKILL only"
    );
}

#[test]
fn a_victim_that_outlives_its_sigkill_is_said_once_and_no_second_victim_is_chosen() {
    let mut r = Run::new(""); // kill_after 10s
    let big = proc(10, 6, "mlx_lm.lora");
    let small = proc(11, 3, "mlx_lm.generate");
    let both = [big.clone(), small.clone()];
    r.before(8000, &[at_size(&big, 1024), small.clone()]);
    assert_eq!(signals(&r.at(0, 900, &both)), vec![(Sig::Term, 10)]);
    assert_eq!(signals(&r.at(10_000, 900, &both)), vec![(Sig::Kill, 10)]);
    let stuck = |a: &[Action]| {
        a.iter()
            .filter(|x| matches!(x, Action::NoVictim { reason, .. } if reason.contains("after SIGKILL")))
            .count()
    };
    let a = r.at(19_999, 900, &both);
    assert_eq!((signals(&a), stuck(&a)), (vec![], 0), "not yet: {a:?}");
    let a = r.at(20_000, 900, &both);
    assert_eq!((signals(&a), stuck(&a)), (vec![], 1), "{a:?}");
    for ms in [21_000, 40_000, 90_000] {
        let a = r.at(ms, 900, &both);
        assert_eq!((signals(&a), stuck(&a)), (vec![], 0), "said once: {a:?}");
    }
    // It finally dies, freeing nothing: the idle one did not eat, so it is
    // not next.
    let a = r.at(91_000, 900, std::slice::from_ref(&small));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::VictimExited { killed: true, .. })));
    for ms in (92_000..100_000).step_by(1000) {
        assert_eq!(
            signals(&r.at(ms, 900, std::slice::from_ref(&small))),
            vec![]
        );
    }
}

#[test]
fn below_the_floor_sigterm_at_once_and_below_half_floor_sigkill_at_once() {
    let mut r = Run::new("");
    let ps = [proc(10, 6, "mlx_lm.lora")];
    r.before(8000, &[at_size(&ps[0], 1024)]);
    assert_eq!(signals(&r.at(0, 900, &ps)), vec![(Sig::Term, 10)]);
    assert_eq!(
        signals(&r.at(500, 400, &ps)),
        vec![(Sig::Kill, 10)],
        "below 512 MiB"
    );
}

/// Issue 26, case 5: one job at a time; after the first exits, the next is
/// chosen on a fresh sample (not the one that saw the exit), and only
/// because it eats too.
#[test]
fn one_job_at_a_time_and_the_next_only_after_exit_and_a_fresh_sample() {
    let mut r = Run::new("");
    let a_job = proc(10, 4, "mlx_lm.lora");
    let b_job = proc(11, 3, "mlx_lm.generate");
    r.before(8000, &[at_size(&a_job, 512), at_size(&b_job, 512)]);
    assert_eq!(
        signals(&r.at(0, 100, &[a_job.clone(), b_job.clone()])),
        vec![(Sig::Term, 10)],
        "the one that grew most first"
    );
    // Victim still alive, memory still bad: no second one.
    for ms in [1000, 2000, 3000] {
        let a = r.at(ms, 100, &[a_job.clone(), b_job.clone()]);
        assert!(signals(&a).iter().all(|(_, pid)| *pid == 10), "{a:?}");
    }
    // It exits: this very snapshot picks no other.
    let a = r.at(4000, 700, std::slice::from_ref(&b_job));
    assert!(signals(&a).is_empty(), "{a:?}");
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::VictimExited { process, .. } if process.pid == Pid(10))));
    // A fresh sample still below the floor: B ate 2.5 GiB of the fall, it goes.
    assert_eq!(signals(&r.at(5000, 700, &[b_job])), vec![(Sig::Term, 11)]);
}

/// Issue 26 (replaces the cascade stop): a stop that freed little is
/// measured once memory settles, and the idle job beside it is never next.
#[test]
fn a_stop_that_freed_little_is_measured_and_the_idle_job_is_never_next() {
    let mut r = Run::new("");
    let big = proc(10, 6, "mlx_lm.lora");
    let idle = proc(11, 3, "mlx_lm.generate");
    r.before(8000, &[at_size(&big, 1024), idle.clone()]);
    assert_eq!(
        signals(&r.at(0, 900, &[big.clone(), idle.clone()])),
        vec![(Sig::Term, 10)]
    );
    // It exits; available comes back by 100 MiB only.
    let mut later = r.at(1000, 1000, std::slice::from_ref(&idle));
    for ms in (1100..30_000).step_by(100) {
        later.extend(r.at(ms, 1000, std::slice::from_ref(&idle)));
    }
    assert!(signals(&later).is_empty(), "{later:?}");
    let freed: Vec<&Action> = later
        .iter()
        .filter(|a| matches!(a, Action::Freed { .. }))
        .collect();
    assert_eq!(freed.len(), 1, "{later:?}");
    let Action::Freed {
        freed_bytes,
        after_secs,
        ..
    } = freed[0]
    else {
        unreachable!()
    };
    assert_eq!(*freed_bytes, Bytes::mib(100));
    // Little came back: read at SETTLE_MAX after the exit (seen at 1 s).
    assert!((3.95..4.15).contains(after_secs), "{after_secs}");
    let said = no_victims(&later);
    assert_eq!(said.len(), 1, "{later:?}");
    assert!(said[0].contains("no MLX job is eating"), "{}", said[0]);
}

/// Issue 26, case 5: the second eater is stopped once the first stop's
/// memory is back, however little it freed; what the second grew meanwhile
/// is added back to what the first freed.
#[test]
fn a_second_mlx_job_that_eats_is_stopped_after_the_first_stops_memory_settles() {
    let mut r = Run::new("[actions]\nterminate_after = \"1s\"\nkill_floor = \"100MiB\"\n");
    let a_job = proc(10, 2, "mlx_lm.lora");
    let b = |mib| at_size(&proc(11, 0, "mlx_lm.lora --data other"), mib);
    r.before(5000, &[at_size(&a_job, 512), b(512)]);
    // A ate first (1.5 GiB); B grows at 400 MiB/s from here; A exits at
    // 1.5 s, giving back only 300 MiB of its 2 GiB.
    let mut all = Vec::new();
    for step in 0..=80u64 {
        let ms = step * 100;
        let avail = (1800u64 + if ms >= 1500 { 300 } else { 0 })
            .saturating_sub(40 * step)
            .max(200);
        let bm = 600 + 40 * step;
        let procs = if ms < 1500 {
            vec![a_job.clone(), b(bm)]
        } else {
            vec![b(bm)]
        };
        all.extend(r.at(ms, avail, &procs));
    }
    let terms: Vec<i32> = signals(&all)
        .into_iter()
        .filter(|(s, _)| *s == Sig::Term)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(terms, vec![10, 11], "{all:?}");
    let others = all
        .iter()
        .find_map(|a| match a {
            Action::Freed {
                others_growth_bytes,
                ..
            } => Some(*others_growth_bytes),
            _ => None,
        })
        .expect("freed");
    assert!(others >= Bytes::mib(200), "B's growth added back: {others}");
    let freed_at = all.iter().position(|a| matches!(a, Action::Freed { .. }));
    let b_at = all
        .iter()
        .position(|a| matches!(a, Action::Signal(o) if o.process.pid == Pid(11)));
    assert!(freed_at < b_at, "B only once A's memory settled: {all:?}");
}

#[test]
fn below_min_victim_footprint_nothing_is_signalled_and_the_eater_is_named() {
    let mut r = Run::new("");
    let tiny = at_size(&proc(10, 1, "mlx_lm.generate"), 300);
    r.before(1500, &[at_size(&tiny, 1)]);
    let mut all = Vec::new();
    for ms in (0..20_000).step_by(1000) {
        all.extend(r.at(ms, 500, std::slice::from_ref(&tiny)));
    }
    assert!(signals(&all).is_empty(), "{all:?}");
    let reason = no_victims(&all).first().cloned().expect("no_victim");
    assert!(
        reason.contains("pid 10")
            && reason.contains("300 MiB")
            && reason.contains("min_victim_footprint"),
        "{reason}"
    );
    // Lowered in the config, the same process qualifies.
    let mut r = Run::new("[actions]\nmin_victim_footprint = \"256MiB\"\n");
    r.before(1500, &[at_size(&tiny, 1)]);
    assert_eq!(signals(&r.at(0, 500, &[tiny])), vec![(Sig::Term, 10)]);
}

#[test]
fn headroom_its_ancestors_and_never_kill_programs_are_never_victims() {
    let mut r = Run::new("[actions]\nnever_kill = ['^jupyter']\n");
    let parent = proc(20, 9, "mlx_lm.lora"); // the shell or job that started headroom
    let mut shielded_by_arg = proc(21, 8, "mlx_lm.lora --note jupyter");
    shielded_by_arg.program = "mlx_lm.lora".into();
    let mut jupyter = proc(22, 10, "python -m jupyter");
    jupyter.program = "jupyter".into();
    let all = [parent, shielded_by_arg, jupyter];
    let small: Vec<MlxProcess> = all.iter().map(|p| at_size(p, 1024)).collect();
    let snap = |ms: u64, avail: u64, procs: &[MlxProcess]| Snapshot {
        at: Duration::from_millis(ms),
        memory: crate::model::SystemMemory {
            total_bytes: Bytes::gib(16),
            available_bytes: Bytes::mib(avail),
            ..Default::default()
        },
        mlx_processes: procs.to_vec(),
        ancestors: vec![Pid(20), Pid(5)],
        ..Default::default()
    };
    for s in [snap(0, 12_000, &small), snap(1000, 500, &all)] {
        let c = r.classifier.step(&s, &r.cfg.thresholds);
        let a = r.policy.step(&s, &c, &r.cfg);
        if s.at.is_zero() {
            continue;
        }
        // Not the ancestor (20), not the never_kill program (22); an
        // argument naming "jupyter" shields nobody (21).
        assert_eq!(signals(&a), vec![(Sig::Term, 21)], "{a:?}");
    }
}

#[test]
fn no_eligible_victim_is_reported_once_and_nothing_is_signalled() {
    let mut r = Run::new("[actions]\nnever_kill = ['mlx_lm\\.server']\n");
    let mut other = proc(12, 8, "mlx_lm.lora");
    other.uid = 0; // another user's
    let ps = [proc(10, 6, "mlx_lm.server --port 8080"), other];
    r.before(12_000, &[at_size(&ps[0], 1024), at_size(&ps[1], 1024)]);
    let mut all = Vec::new();
    for ms in (0..20_000).step_by(1000) {
        all.extend(r.at(ms, 900, &ps));
    }
    assert!(signals(&all).is_empty());
    let nv = no_victims(&all);
    assert_eq!(nv.len(), 1, "{all:?}");
    assert!(
        nv[0].contains("never_kill") && nv[0].contains("another user's"),
        "{}",
        nv[0]
    );
}

#[test]
fn non_mlx_hog_is_notified_never_signalled() {
    let mut r = Run::new("");
    let mut all = Vec::new();
    for ms in (0..30_000).step_by(500) {
        all.extend(r.at(ms, 500, &[]));
    }
    assert!(signals(&all).is_empty());
    assert!(all.iter().any(
        |a| matches!(a, Action::NoVictim { reason, .. } if reason.contains("no MLX process"))
    ));
    assert!(notices(&all).contains(&NoticeKind::NoVictim));
}

#[test]
fn terminate_false_only_warns() {
    let mut r = Run::new("[actions]\nterminate = false\n");
    let ps = [proc(10, 6, "mlx_lm.lora")];
    r.before(8000, &[at_size(&ps[0], 1024)]);
    let mut all = Vec::new();
    for ms in (0..30_000).step_by(1000) {
        all.extend(r.at(ms, 500, &ps));
    }
    assert!(signals(&all).is_empty());
    assert_eq!(no_victims(&all).len(), 1);
}

#[test]
fn recovery_is_notified_and_notices_are_rate_limited_across_incidents() {
    let mut r = Run::new("[thresholds]\ndwell = \"1s\"\n");
    let ps = [proc(10, 6, "mlx_lm.lora")];
    assert_eq!(notices(&r.at(0, 3000, &ps)), vec![NoticeKind::Yellow]);
    assert!(notices(&r.at(1000, 9000, &ps)).is_empty(), "dwell");
    assert_eq!(notices(&r.at(2000, 9000, &ps)), vec![NoticeKind::Recovered]);
    // A second yellow incident 10 s later: no second yellow notice within a minute.
    assert!(notices(&r.at(12_000, 3000, &ps)).is_empty());
    r.at(13_000, 9000, &ps);
    r.at(14_000, 9000, &ps);
    assert_eq!(notices(&r.at(70_000, 3000, &ps)), vec![NoticeKind::Yellow]);
}

/// The job that grew most is chosen, never one that did not grow however
/// large; exclusions pass the choice to the next job that eats.
#[test]
fn victim_choice_follows_growth_and_respects_exclusions() {
    let scope = Scope::user(ME);
    let a = proc(20, 4, "mlx_lm.lora");
    let b = proc(21, 4, "mlx_lm.lora");
    let huge_idle = proc(22, 40, "mlx_lm.server");
    let init = proc(1, 50, "mlx_lm.lora");
    let me = proc(999, 50, "mlx_lm.lora");
    let snap = |ms: u64, avail: u64, procs: Vec<MlxProcess>| Snapshot {
        at: Duration::from_millis(ms),
        memory: crate::model::SystemMemory {
            total_bytes: Bytes::gib(64),
            available_bytes: Bytes::mib(avail),
            ..Default::default()
        },
        mlx_processes: procs,
        ..Default::default()
    };
    let mut att = Attribution::default();
    let s0 = snap(
        0,
        9000,
        vec![
            at_size(&a, 1536),
            at_size(&b, 512),
            huge_idle.clone(),
            at_size(&init, 40 * 1024),
            at_size(&me, 40 * 1024),
        ],
    );
    att.observe(&s0);
    let s1 = snap(2000, 500, vec![a, b, huge_idle, init, me]);
    att.observe(&s1);
    let x = att.assess(&s1, Duration::ZERO);
    let guard = |nk| Guard {
        self_pid: Pid(999),
        scope: &scope,
        never_kill: nk,
        ancestors: &[],
    };
    let pids = |r: Result<Vec<&MlxProcess>, String>| {
        r.map(|v| v.iter().map(|p| p.pid).collect::<Vec<_>>())
    };
    // init and headroom grew most but may never be stopped; b grew 3.5 GiB,
    // a 2.5 GiB; the 40 GiB server grew nothing.
    assert_eq!(
        pids(choose_victims(&x, &guard(&[]), Bytes::mib(512))),
        Ok(vec![Pid(21)])
    );
    let nk = [NeverKill::Pid(21)];
    assert_eq!(
        pids(choose_victims(&x, &guard(&nk), Bytes::mib(512))),
        Ok(vec![Pid(20)])
    );
    let nk = [NeverKill::Pid(21), NeverKill::Pid(20)];
    let err = choose_victims(&x, &guard(&nk), Bytes::mib(512)).expect_err("nobody");
    assert!(
        err.contains("never_kill") && !err.contains("pid 22"),
        "{err}"
    );
}

#[test]
fn red_held_only_by_hysteresis_signals_nothing() {
    let mut r = Run::new("");
    let ps = [proc(10, 6, "mlx_lm.lora")];
    r.before(8000, &[at_size(&ps[0], 1024)]);
    r.at(0, 1900, &ps); // red
                        // Back above the 2 GiB line but inside the 512 MiB margin: still red, no SIGTERM.
    for ms in (1000..20_000).step_by(1000) {
        assert!(signals(&r.at(ms, 2200, &ps)).is_empty());
    }
    // Below the line again: the 5 s grace period starts over.
    assert!(signals(&r.at(20_000, 1900, &ps)).is_empty());
    assert_eq!(signals(&r.at(25_000, 1900, &ps)), vec![(Sig::Term, 10)]);
}

#[test]
fn a_sigterm_that_was_not_sent_leaves_no_victim_behind() {
    let mut r = Run::new("");
    let big = proc(10, 6, "mlx_lm.lora");
    let small = proc(11, 3, "mlx_lm.generate");
    r.before(8000, &[at_size(&big, 1024), at_size(&small, 512)]);
    let a = r.at(0, 900, &[big.clone(), small.clone()]);
    let Some(Action::Signal(order)) = a.iter().find(|x| matches!(x, Action::Signal(_))) else {
        panic!("{a:?}")
    };
    r.policy
        .signal_outcome(order, &Outcome::Skipped("pid reused".into()));
    assert!(r.policy.victim_pending().is_none());
    // The next sample may choose again (the process table has changed).
    assert_eq!(signals(&r.at(1000, 900, &[small])), vec![(Sig::Term, 11)]);
}

#[test]
fn notices_name_the_process_its_flags_and_the_guides_remedy() {
    let mut r = Run::new("");
    let mut p = proc(
        10,
        6,
        "/v/bin/python3 /v/bin/mlx_lm.lora --model m --batch-size 4 --max-seq-length 2048 --train",
    );
    r.before(8000, &[at_size(&p, 1024)]);
    p.growth_bytes_per_sec = 100.0 * Bytes::MIB as f64;
    let a = r.at(0, 3000, std::slice::from_ref(&p));
    let Some(Action::Notify(n)) = a.first() else {
        panic!("{a:?}")
    };
    assert_eq!(n.kind, NoticeKind::Yellow);
    assert_eq!(n.pid, Some(Pid(10)));
    for want in [
        "mlx_lm.lora",
        "--batch-size 4",
        "(pid 10)",
        "6.00 GiB",
        "growing 100 MiB/s",
        "retry with --batch-size 2 --grad-checkpoint",
    ] {
        assert!(n.body.contains(want), "{want:?} not in {:?}", n.body);
    }
    let a = r.at(1000, 500, std::slice::from_ref(&p));
    let t = a.iter().find_map(|x| match x {
        Action::Notify(n) if n.kind == NoticeKind::Terminated => Some(n),
        _ => None,
    });
    let t = t.expect("termination notice");
    assert_eq!(t.title, "Stopping mlx_lm.lora (pid 10)");
    assert!(
        t.body.contains("kill_floor") && t.body.contains("its job made 5.00 GiB of the"),
        "{}",
        t.body
    );
}

/// In a dry run the policy words the termination notice itself (issue 15:
/// the actuator used to rewrite the title it was given); the signal is
/// still ordered, so the log shows what would have been sent.
#[test]
fn a_dry_run_termination_notice_says_it_would_stop() {
    let mut r = Run::new("[actions]\ndry_run = true\n");
    let p = proc(10, 6, "python3 -m mlx_lm.lora --train --batch-size 4");
    r.before(8000, &[at_size(&p, 1024)]);
    let a = r.at(0, 500, std::slice::from_ref(&p));
    assert_eq!(signals(&a), vec![(Sig::Term, 10)]);
    let t = a.iter().find_map(|x| match x {
        Action::Notify(n) if n.kind == NoticeKind::Terminated => Some(n),
        _ => None,
    });
    assert_eq!(
        t.expect("termination notice").title,
        "Dry run: would stop mlx_lm.lora (pid 10)"
    );
}

fn top(pid: i32, mib: u64, mlx: bool, name: &str) -> crate::model::TopProcess {
    crate::model::TopProcess {
        pid: Pid(pid),
        uid: Some(ME),
        name: name.into(),
        footprint_bytes: Bytes::mib(mib),
        mlx,
    }
}

/// Issue 26, case 2: forked workers (one job of eight processes) eat beside
/// an idle MLX server larger than any one of them: nothing is stopped, and
/// the workers' job is named with its share of the fall; an MLX job that
/// eats is stopped even so.
#[test]
fn an_idle_mlx_job_beside_forked_workers_that_eat_is_not_stopped_and_they_are_named() {
    let mut r = Run::new("");
    let server = proc(10, 1, "/v/bin/python3 /v/bin/mlx_lm.server --port 8080");
    let jobs = |workers_mib: u64| {
        vec![
            job(4120, 9, workers_mib, false, "python3 workers.py"),
            job(10, 1, 1024, true, "mlx_lm.server"),
        ]
    };
    let tops = || {
        vec![
            top(10, 1024, true, "mlx_lm.server"),
            top(4121, 600, false, "python3 workers.py"),
        ]
    };
    r.full(0, 8000, std::slice::from_ref(&server), tops(), jobs(100));
    r.offset = 1000;
    let mut all = Vec::new();
    for ms in (0..20_000).step_by(500) {
        let w = (100 + 4800 * (ms + 500) / 2500).min(7100);
        let avail = 8000 - (w - 100);
        all.extend(r.full(ms, avail, std::slice::from_ref(&server), tops(), jobs(w)));
    }
    assert!(signals(&all).is_empty(), "{all:?}");
    let nv = no_victims(&all);
    assert!(nv[0].contains("no MLX job is eating"), "{}", nv[0]);
    let named = contributors_named(&all);
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].job, Pid(4120));
    assert!(
        named[0]
            .text
            .starts_with("python3 workers.py and 8 more (pid group 4120")
            && !named[0].mlx,
        "{}",
        named[0].text
    );
    let notice = all
        .iter()
        .find_map(|a| match a {
            Action::Notify(n) if n.kind == NoticeKind::NoVictim => Some(n.body.clone()),
            _ => None,
        })
        .expect("notice");
    assert!(
        notice.starts_with("Eating the memory: python3 workers.py"),
        "{notice}"
    );

    // The same scene with the server eating instead: it is stopped.
    let mut r = Run::new("");
    r.before(8000, &[at_size(&server, 100)]);
    let a = r.full(0, 500, &[at_size(&server, 7000)], tops(), jobs(100));
    assert_eq!(signals(&a), vec![(Sig::Term, 10)], "{a:?}");
}

/// Issue 26, case 3: an MLX job whose allocator jitters (128 KiB/s) is not
/// eating while a non-MLX hog grows at 1 GiB/s.
#[test]
fn a_jittering_mlx_job_beside_a_fast_hog_is_not_stopped() {
    let mut r = Run::new("");
    let job_at = |ms: u64| {
        at_size(
            &proc(10, 0, "mlx_lm.lora"),
            2048 + ms * 128 / 1024 / 1000 + 1,
        )
    };
    let mut all = Vec::new();
    for ms in (0..30_000).step_by(100) {
        let hog = (ms * 1024 / 1000).min(7000);
        all.extend(r.full(ms, 8000 - hog, &[job_at(ms)], vec![], vec![]));
    }
    assert!(signals(&all).is_empty(), "{all:?}");
    assert!(no_victims(&all)[0].contains("no MLX job is eating"));
}

/// Issue 26, case 1: as root, another user's MLX job eats and may not be
/// stopped; root's own idle MLX job is not stopped for it, and the eater is
/// named as the one eating.
#[test]
fn as_root_another_users_eating_mlx_job_protects_roots_idle_one() {
    let mut r = Run::new("");
    r.policy = Policy::new(Pid(999), Scope::root([]));
    let mut idle = proc(10, 1, "mlx_lm.server");
    idle.uid = 0;
    let mut theirs = proc(20, 0, "python3 train.py");
    theirs.uid = 65534;
    let mut all = r.before(6000, &[idle.clone(), at_size(&theirs, 64)]);
    for ms in (0..15_000).step_by(250) {
        let t = (64 + ms * 1024 / 1000).min(4600);
        all.extend(r.at(ms, 6000 - (t - 64), &[idle.clone(), at_size(&theirs, t)]));
    }
    assert!(signals(&all).is_empty(), "{all:?}");
    let nv = no_victims(&all);
    assert!(
        nv[0].contains("the MLX job eating, train.py (pid 20)") && nv[0].contains("another user's"),
        "{}",
        nv[0]
    );
    let named = contributors_named(&all);
    assert_eq!(
        (named[0].job, named[0].uid, named[0].mlx),
        (Pid(20), Some(65534), true),
        "{named:?}"
    );
}

/// Issue 26: a multi-process MLX job (a launcher and its workers, one
/// process group) that eats: every worker that grew is stopped together;
/// the idle launcher of the same group, and an idle MLX job beside, are not.
#[test]
fn the_workers_of_an_eating_mlx_job_are_stopped_together_never_its_idle_launcher() {
    let mut r = Run::new("");
    let member = |pid: i32, mib: u64| {
        let mut p = at_size(&proc(pid, 0, "python3 -m mlx.launch train.py"), mib);
        p.job = Some(Pid(300));
        p
    };
    let other = proc(400, 2, "mlx_lm.server");
    let before = [
        member(300, 200),
        member(301, 100),
        member(302, 100),
        member(303, 100),
        other.clone(),
    ];
    r.before(8000, &before);
    let now = [
        member(300, 210),
        member(301, 2500),
        member(302, 2400),
        member(303, 2600),
        other,
    ];
    let a = r.at(0, 600, &now);
    let mut pids: Vec<i32> = signals(&a).into_iter().map(|(_, p)| p).collect();
    pids.sort();
    assert_eq!(pids, vec![301, 302, 303], "{a:?}");
    let t = a
        .iter()
        .find_map(|x| match x {
            Action::Notify(n) if n.kind == NoticeKind::Terminated => Some(n.title.clone()),
            _ => None,
        })
        .expect("notice");
    assert!(t.ends_with("and 2 more of its job"), "{t}");
    // All three exit: one settle, one measurement.
    let mut later = Vec::new();
    for ms in (1000..4000).step_by(250) {
        later.extend(r.at(ms, 7000, &[member(300, 210), proc(400, 2, "mlx_lm.server")]));
    }
    assert_eq!(
        later
            .iter()
            .filter(|x| matches!(x, Action::VictimExited { .. }))
            .count(),
        3
    );
    assert_eq!(
        later
            .iter()
            .filter(|x| matches!(x, Action::Freed { .. }))
            .count(),
        1,
        "{later:?}"
    );
}

/// Issue 26, case 6: a job unknown until its ramp, found at the first red
/// sample, is not stopped on what it holds (it may have held it for long):
/// its growth from then on, against the fall since then, makes it the
/// victim one sample later. The known idle job beside it never is.
#[test]
fn a_job_found_at_the_first_red_sample_is_the_victim_once_it_is_seen_eating() {
    let mut r = Run::new("");
    let idle = proc(10, 1, "mlx_lm.server");
    r.before(6000, std::slice::from_ref(&idle));
    let new = proc(11, 5, "mlx_lm.lora");
    let a = r.at(0, 900, &[idle.clone(), new.clone()]);
    assert!(signals(&a).is_empty(), "no evidence yet: {a:?}");
    let a = r.at(100, 860, &[idle.clone(), at_size(&new, 5 * 1024 + 40)]);
    assert!(signals(&a).is_empty(), "40 MiB is not yet 64 MiB: {a:?}");
    let a = r.at(200, 760, &[idle, at_size(&new, 5 * 1024 + 140)]);
    assert_eq!(signals(&a), vec![(Sig::Term, 11)], "{a:?}");
}

/// Issue 26: below the kill floor the grace period and the wait for a
/// stop's memory are skipped, never the rule that only a job that eats is
/// stopped.
#[test]
fn below_the_kill_floor_an_idle_mlx_job_is_still_never_stopped() {
    let mut r = Run::new("");
    let idle = proc(10, 6, "mlx_lm.lora");
    r.before(8000, std::slice::from_ref(&idle));
    let mut all = Vec::new();
    for ms in (0..20_000).step_by(500) {
        all.extend(r.at(ms, 200, std::slice::from_ref(&idle)));
    }
    assert!(signals(&all).is_empty(), "{all:?}");
}

/// Review of issue 12: a reload (new scope) during red keeps the incident:
/// no second SIGTERM while the victim lives.
#[test]
fn a_new_scope_during_red_keeps_the_victim() {
    let mut r = Run::new("");
    let big = proc(10, 6, "mlx_lm.lora");
    let small = proc(11, 3, "mlx_lm.generate");
    r.before(8000, &[at_size(&big, 1024), at_size(&small, 512)]);
    assert_eq!(
        signals(&r.at(0, 900, &[big.clone(), small.clone()])),
        vec![(Sig::Term, 10)]
    );
    r.policy.set_scope(Pid(999), Scope::user(ME));
    let mut later = Vec::new();
    for ms in (1000..9000).step_by(1000) {
        later.extend(r.at(ms, 900, &[big.clone(), small.clone()]));
    }
    assert!(
        signals(&later)
            .iter()
            .all(|(s, p)| *s == Sig::Kill && *p == 10),
        "{later:?}"
    );
}

/// Review of issue 12: with terminate = false the largest processes are
/// still named.
#[test]
fn warn_only_names_the_holders() {
    let mut r = Run::new("[actions]\nterminate = false\n");
    let mut all = Vec::new();
    for ms in (0..10_000).step_by(1000) {
        all.extend(r.full(
            ms,
            900,
            &[],
            vec![top(77, 9 * 1024, false, "ld.lld")],
            vec![],
        ));
    }
    assert!(
        all.iter().any(|a| matches!(a, Action::RedNotMlx { .. })),
        "{all:?}"
    );
}

/// Review of issue 12: a notice names the program read off argv, not a
/// word of a joined command line with a space in a path.
#[test]
fn notices_name_the_program_even_under_a_path_with_spaces() {
    let mut r = Run::new("");
    let mut p = proc(10, 6, "x");
    p.cmdline =
        "/Users/John Smith/venv/bin/python3 /Users/John Smith/venv/bin/mlx_lm.lora --batch-size 4"
            .into();
    p.name = "mlx_lm.lora".into();
    p.program = "mlx_lm.lora".into();
    r.before(8000, &[at_size(&p, 1024)]);
    let a = r.at(0, 500, &[p]);
    let t = a
        .iter()
        .find_map(|x| match x {
            Action::Notify(n) if n.kind == NoticeKind::Terminated => Some(n.clone()),
            _ => None,
        })
        .expect("notice");
    assert_eq!(t.title, "Stopping mlx_lm.lora (pid 10)");
    assert!(
        t.body.starts_with("mlx_lm.lora --batch-size 4 (pid 10)"),
        "{}",
        t.body
    );
}
