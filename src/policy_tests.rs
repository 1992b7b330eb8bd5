//! Policy tables over synthetic timelines (fake `at`, no sleeping).

use super::*;
use crate::classify::Classifier;
use crate::config::Config;

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
        started_at: None,
    }
}

/// Drives Classifier + Policy over a timeline like the daemon does.
struct Run {
    cfg: Config,
    classifier: Classifier,
    policy: Policy,
}

impl Run {
    fn new(extra: &str) -> Run {
        let cfg = Config::from_text("t.toml", extra).expect("config");
        Run {
            cfg,
            classifier: Classifier::default(),
            policy: Policy::new(Pid(999), Scope::user(ME)),
        }
    }
    fn at(&mut self, ms: u64, avail_mib: u64, procs: &[MlxProcess]) -> Vec<Action> {
        let s = Snapshot {
            at: Duration::from_millis(ms),
            memory: crate::model::SystemMemory {
                total_bytes: Bytes::gib(16),
                available_bytes: Bytes::mib(avail_mib),
                ..Default::default()
            },
            mlx_processes: procs.to_vec(),
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

#[test]
fn sigterm_after_red_holds_for_terminate_after_then_sigkill_after_kill_after() {
    let mut r = Run::new(""); // terminate_after 5s, kill_after 10s, floor 1GiB
    let ps = [
        proc(10, 6, "mlx_lm.lora --train"),
        proc(11, 2, "mlx_lm.generate"),
    ];
    assert_eq!(notices(&r.at(0, 3000, &ps)), vec![NoticeKind::Yellow]);
    let a = r.at(1000, 1800, &ps);
    assert_eq!(notices(&a), vec![NoticeKind::Red]);
    assert!(signals(&a).is_empty(), "grace period first");
    assert!(signals(&r.at(5999, 1800, &ps)).is_empty());
    let a = r.at(6000, 1800, &ps);
    assert_eq!(
        signals(&a),
        vec![(Sig::Term, 10)],
        "largest footprint after 5 s of red"
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
    // It finally dies, freeing nothing: no cascade to the next one.
    let a = r.at(91_000, 900, std::slice::from_ref(&small));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::VictimExited { killed: true, .. })));
    assert_eq!(signals(&r.at(92_000, 900, &[small])), vec![]);
}

#[test]
fn below_the_floor_sigterm_at_once_and_below_half_floor_sigkill_at_once() {
    let mut r = Run::new("");
    let ps = [proc(10, 6, "mlx_lm.lora")];
    assert_eq!(signals(&r.at(0, 900, &ps)), vec![(Sig::Term, 10)]);
    assert_eq!(
        signals(&r.at(500, 400, &ps)),
        vec![(Sig::Kill, 10)],
        "below 512 MiB"
    );
}

#[test]
fn one_victim_per_incident_and_the_next_only_after_exit_and_a_fresh_sample() {
    let mut r = Run::new("");
    let big = proc(10, 1, "mlx_lm.lora");
    let mut small = proc(11, 1, "mlx_lm.generate");
    small.footprint_bytes = Bytes::mib(600);
    assert_eq!(
        signals(&r.at(0, 100, &[big.clone(), small.clone()])),
        vec![(Sig::Term, 10)]
    );
    // Victim still alive, memory still bad: no second victim.
    for ms in [1000, 2000, 3000] {
        let a = r.at(ms, 100, &[big.clone(), small.clone()]);
        assert!(signals(&a).iter().all(|(_, pid)| *pid == 10), "{a:?}");
    }
    // Victim exited and freed 600 MiB of its 1 GiB (at least half): MLX
    // was what filled memory. This very snapshot may not pick another one.
    let a = r.at(4000, 700, std::slice::from_ref(&small));
    assert!(signals(&a).is_empty(), "{a:?}");
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::VictimExited { process, .. } if process.pid == Pid(10))));
    // A fresh sample still below the floor: now the next one.
    assert_eq!(signals(&r.at(5000, 700, &[small])), vec![(Sig::Term, 11)]);
}

#[test]
fn no_cascade_a_termination_that_freed_little_stops_further_victims_until_red_ends() {
    let mut r = Run::new("");
    let big = proc(10, 6, "mlx_lm.lora");
    let small = proc(11, 3, "mlx_lm.generate");
    assert_eq!(
        signals(&r.at(0, 900, &[big.clone(), small.clone()])),
        vec![(Sig::Term, 10)]
    );
    // It exits; available rises by 2.9 GiB, less than half of its 6 GiB.
    let a = r.at(1000, 900 + 2900, std::slice::from_ref(&small));
    assert!(signals(&a).is_empty());
    let mut later = Vec::new();
    for ms in (2000..30_000).step_by(1000) {
        later.extend(r.at(ms, 900, std::slice::from_ref(&small)));
    }
    assert!(signals(&later).is_empty(), "cascade: {later:?}");
    let said: Vec<&String> = later
        .iter()
        .filter_map(|a| match a {
            Action::NoVictim { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(said.len(), 1, "{later:?}");
    assert!(said[0].contains("freed only"), "{}", said[0]);
    // Red ends (green), a new red period: the small one may go now.
    for ms in (30_000..40_000).step_by(1000) {
        r.at(ms, 8 * 1024, std::slice::from_ref(&small));
    }
    assert_eq!(
        signals(&r.at(40_000, 900, std::slice::from_ref(&small))),
        vec![(Sig::Term, 11)]
    );
}

#[test]
fn below_min_victim_footprint_nothing_is_signalled_and_the_largest_is_named() {
    let mut r = Run::new("");
    let mut tiny = proc(10, 1, "mlx_lm.generate");
    tiny.footprint_bytes = Bytes::mib(300);
    let mut all = Vec::new();
    for ms in (0..20_000).step_by(1000) {
        all.extend(r.at(ms, 500, std::slice::from_ref(&tiny)));
    }
    assert!(signals(&all).is_empty(), "{all:?}");
    let reason = all
        .iter()
        .find_map(|a| match a {
            Action::NoVictim { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("no_victim");
    assert!(
        reason.contains("pid 10")
            && reason.contains("300 MiB")
            && reason.contains("min_victim_footprint"),
        "{reason}"
    );
    // Lowered in the config, the same process qualifies.
    let mut r = Run::new("[actions]\nmin_victim_footprint = \"256MiB\"\n");
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
    let s = Snapshot {
        at: Duration::ZERO,
        memory: crate::model::SystemMemory {
            total_bytes: Bytes::gib(16),
            available_bytes: Bytes::mib(500),
            ..Default::default()
        },
        mlx_processes: vec![parent, shielded_by_arg, jupyter],
        ancestors: vec![Pid(20), Pid(5)],
        ..Default::default()
    };
    let c = r.classifier.step(&s, &r.cfg.thresholds);
    let a = r.policy.step(&s, &c, &r.cfg);
    // Not the ancestor (20), not the never_kill program (22); an argument
    // naming "jupyter" shields nobody (21).
    assert_eq!(signals(&a), vec![(Sig::Term, 21)], "{a:?}");
}

#[test]
fn no_eligible_victim_is_reported_once_and_nothing_is_signalled() {
    let mut r = Run::new("[actions]\nnever_kill = ['mlx_lm\\.server']\n");
    let mut other = proc(12, 8, "mlx_lm.lora");
    other.uid = 0; // another user's
    let ps = [proc(10, 6, "mlx_lm.server --port 8080"), other];
    let mut all = Vec::new();
    for ms in (0..20_000).step_by(1000) {
        all.extend(r.at(ms, 900, &ps));
    }
    assert!(signals(&all).is_empty());
    let nv: Vec<&Action> = all
        .iter()
        .filter(|a| matches!(a, Action::NoVictim { .. }))
        .collect();
    assert_eq!(nv.len(), 1, "{all:?}");
    let Action::NoVictim { reason, .. } = nv[0] else {
        unreachable!()
    };
    assert!(
        reason.contains("never_kill") && reason.contains("another user's"),
        "{reason}"
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
    let mut all = Vec::new();
    for ms in (0..30_000).step_by(1000) {
        all.extend(r.at(ms, 500, &ps));
    }
    assert!(signals(&all).is_empty());
    assert_eq!(
        all.iter()
            .filter(|a| matches!(a, Action::NoVictim { .. }))
            .count(),
        1
    );
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

#[test]
fn victim_choice_ties_break_on_growth_and_respects_exclusions() {
    let scope = Scope::user(ME);
    let mut a = proc(20, 4, "mlx_lm.lora");
    let mut b = proc(21, 4, "mlx_lm.lora");
    a.growth_bytes_per_sec = 1.0;
    b.growth_bytes_per_sec = 5.0;
    let init = proc(1, 50, "mlx_lm.lora");
    let me = proc(999, 50, "mlx_lm.lora");
    let ps = [a, b, init, me];
    let guard = |nk| Guard {
        self_pid: Pid(999),
        scope: &scope,
        never_kill: nk,
        ancestors: &[],
    };
    assert_eq!(
        choose_victim(&ps, &guard(&[]), Bytes::mib(512)).map(|p| p.pid),
        Ok(Pid(21))
    );
    let nk = [NeverKill::Pid(21)];
    assert_eq!(
        choose_victim(&ps, &guard(&nk), Bytes::mib(512)).map(|p| p.pid),
        Ok(Pid(20))
    );
}

#[test]
fn red_held_only_by_hysteresis_signals_nothing() {
    let mut r = Run::new("");
    let ps = [proc(10, 6, "mlx_lm.lora")];
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
    assert!(t.body.contains("kill_floor"), "{}", t.body);
}

/// In a dry run the policy words the termination notice itself (issue 15:
/// the actuator used to rewrite the title it was given); the signal is
/// still ordered, so the log shows what would have been sent.
#[test]
fn a_dry_run_termination_notice_says_it_would_stop() {
    let mut r = Run::new("[actions]\ndry_run = true\n");
    let p = proc(10, 6, "python3 -m mlx_lm.lora --train --batch-size 4");
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

impl Run {
    fn at_with_top(
        &mut self,
        ms: u64,
        avail_mib: u64,
        procs: &[MlxProcess],
        top: Vec<crate::model::TopProcess>,
    ) -> Vec<Action> {
        let s = Snapshot {
            at: Duration::from_millis(ms),
            memory: crate::model::SystemMemory {
                total_bytes: Bytes::gib(16),
                available_bytes: Bytes::mib(avail_mib),
                ..Default::default()
            },
            mlx_processes: procs.to_vec(),
            top_processes: top,
            ..Default::default()
        };
        let c = self.classifier.step(&s, &self.cfg.thresholds);
        self.policy.step(&s, &c, &self.cfg)
    }
}

/// Review of issue 12: an idle MLX server beside a larger non-MLX hog is not
/// what eats the memory — nothing is stopped, the hog is named; an MLX job
/// that grows is stopped even so.
#[test]
fn an_idle_mlx_job_beside_a_larger_non_mlx_hog_is_not_stopped() {
    let mut r = Run::new("");
    let server = proc(10, 4, "/v/bin/python3 /v/bin/mlx_lm.server --port 8080");
    let tops = || {
        vec![
            top(77, 9 * 1024, false, "ld.lld"),
            top(10, 4 * 1024, true, "mlx_lm.server"),
        ]
    };
    let mut all = Vec::new();
    for ms in (0..20_000).step_by(1000) {
        all.extend(r.at_with_top(ms, 1500, std::slice::from_ref(&server), tops()));
    }
    assert!(signals(&all).is_empty(), "{all:?}");
    let nv = all
        .iter()
        .find_map(|a| match a {
            Action::NoVictim { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("no_victim");
    assert!(
        nv.contains("not growing") && nv.contains("ld.lld (pid 77"),
        "{nv}"
    );
    assert!(all.iter().any(|a| matches!(a, Action::RedNotMlx { .. })));

    let mut r = Run::new("");
    let mut growing = server.clone();
    growing.growth_bytes_per_sec = 50.0 * Bytes::MIB as f64;
    let a = r.at_with_top(0, 500, std::slice::from_ref(&growing), tops());
    assert_eq!(signals(&a), vec![(Sig::Term, 10)], "{a:?}");
}

/// Review of issue 12: a reload (new scope) during red keeps the incident,
/// so a cascade stop still holds after it.
#[test]
fn a_new_scope_during_red_keeps_the_cascade_stop() {
    let mut r = Run::new("");
    let big = proc(10, 6, "mlx_lm.lora");
    let small = proc(11, 3, "mlx_lm.generate");
    assert_eq!(
        signals(&r.at(0, 900, &[big.clone(), small.clone()])),
        vec![(Sig::Term, 10)]
    );
    r.at(1000, 900, std::slice::from_ref(&small)); // exits, frees nothing
    r.policy.set_scope(Pid(999), Scope::user(ME));
    let mut later = Vec::new();
    for ms in (2000..20_000).step_by(1000) {
        later.extend(r.at(ms, 900, std::slice::from_ref(&small)));
    }
    assert!(signals(&later).is_empty(), "{later:?}");
}

/// Review of issue 12: with terminate = false the largest processes are
/// still named; a cascade stop is said even after an earlier no_victim.
#[test]
fn warn_only_names_the_holders_and_a_cascade_stop_is_always_said() {
    let mut r = Run::new("[actions]\nterminate = false\n");
    let mut all = Vec::new();
    for ms in (0..10_000).step_by(1000) {
        all.extend(r.at_with_top(ms, 900, &[], vec![top(77, 9 * 1024, false, "ld.lld")]));
    }
    assert!(
        all.iter().any(|a| matches!(a, Action::RedNotMlx { .. })),
        "{all:?}"
    );

    let mut r = Run::new("");
    let mut tiny = proc(12, 1, "mlx_lm.generate");
    tiny.footprint_bytes = Bytes::mib(100);
    let big = proc(10, 6, "mlx_lm.lora");
    let mut all = Vec::new();
    for ms in (0..6000).step_by(1000) {
        all.extend(r.at(ms, 1500, std::slice::from_ref(&tiny))); // "below min_victim_footprint"
    }
    all.extend(r.at(6000, 900, &[big.clone(), tiny.clone()]));
    assert_eq!(signals(&all), vec![(Sig::Term, 10)]);
    all.extend(r.at(7000, 900, std::slice::from_ref(&tiny))); // frees nothing
    for ms in (8000..12_000).step_by(1000) {
        all.extend(r.at(ms, 900, std::slice::from_ref(&tiny)));
    }
    assert!(
        all.iter()
            .any(|a| matches!(a, Action::NoVictim { reason, .. } if reason.contains("freed only"))),
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
