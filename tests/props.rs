//! Property tests (issue 9): proptest as the fuzzer for every parser that
//! reads outside input (they return errors, never panic), and kill-safety
//! properties over random timelines driven through the real Classifier,
//! Policy and Engine with a probe whose last readings the test controls.
//!
//! Case counts: `PROPTEST_CASES` overrides the defaults below (CI runs the
//! defaults; docs/reliability.md records a longer run).

use headroom::action::{Action, Outcome, Sig};

use headroom::act::Actuator;
use headroom::config::Config;
use headroom::discover::{Discovery, ProcIdentity, ProcMeasure, ProcSource};
use headroom::engine::Engine;
use headroom::model::Scope;
use headroom::model::{Bytes, KernelLevel, MlxProcess, Pid, Snapshot, SystemMemory};
use headroom::policy::is_gap;
use headroom::sample::{Fresh, Probe, SampleError};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn cases(n: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = n;
    }
    c
}

fn fixture(name: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    std::fs::read_to_string(format!("{dir}{name}")).expect("fixture")
}

/// A real input with random edits: the parsers see near-valid text, where
/// their bugs live, not only noise.
fn mutated(base: String) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0u8..4,
            "[0-9 :\\-.()\n\tkBMGiG%=a-z\u{0}✓]{0,6}",
        ),
        0..8,
    );
    edits.prop_map(move |edits| {
        let mut s: Vec<char> = base.chars().collect();
        for (at, op, text) in edits {
            let i = if s.is_empty() { 0 } else { at.index(s.len()) };
            match op {
                0 => {
                    s.splice(i..i, text.chars());
                }
                1 => {
                    let end = (i + text.len()).min(s.len());
                    s.drain(i..end);
                }
                2 => s.truncate(i),
                _ => {
                    let end = (i + text.chars().count()).min(s.len());
                    s.splice(i..end, text.chars());
                }
            }
        }
        s.into_iter().collect()
    })
}

fn noise() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,300}", ".{0,300}", "[0-9 :\n]{0,200}"]
}

// ------------------------------------------------------------ parsers

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn linux_proc_parsers_never_panic(
        meminfo in prop_oneof![mutated(fixture("linux/meminfo")), noise()],
        psi in prop_oneof![mutated(fixture("linux/pressure_memory")), noise()],
        vmstat in prop_oneof![mutated(fixture("linux/vmstat")), noise()],
        stat in prop_oneof![mutated(fixture("linux/python_mlx.stat")), mutated(fixture("linux/weird_comm.stat")), noise()],
        status in prop_oneof![mutated(fixture("linux/python_mlx.status")), noise()],
        maps in prop_oneof![mutated(fixture("linux/python_mlx.maps")), noise()],
        cmdline in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        use headroom::sample::linux::*;
        if let Ok(m) = parse_meminfo(&meminfo) {
            let _ = m.system_memory();
        }
        let _ = parse_psi(&psi);
        let _ = parse_vmstat_pswpout(&vmstat);
        if let Ok(st) = parse_stat(&stat) {
            let _ = st.is_kernel_or_gone();
        }
        let _ = parse_status_uid(&status);
        let _ = maps_mlx_library(&maps);
        let line = parse_cmdline(&cmdline);
        prop_assert!(!line.contains('\0'));
    }

    #[test]
    fn stat_with_any_comm_parses_to_that_comm(comm in "[^\u{0}]{0,15}", state in "[RSDZTtXI]") {
        // comm may hold ')', spaces and newlines: the parser must split on the last ')'.
        let text = format!("4242 ({comm}) {state} 1 4242 4242 0 -1 4194304 100 0 0 0 5 3 0 0 20 0 4 0 123456 1000000 2048 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n");
        let st = headroom::sample::linux::parse_stat(&text);
        prop_assert!(st.is_ok(), "{text:?}: {st:?}");
        let st = st.expect("ok");
        prop_assert_eq!(st.pid, 4242);
        prop_assert_eq!(st.start_time, 123456);
        prop_assert_eq!(st.comm, comm);
    }

    #[test]
    fn macos_text_parsers_never_panic(
        vm in prop_oneof![mutated(fixture("macos/sample1_vm_stat.txt")), mutated(fixture("macos/sample2_vm_stat.txt")), noise()],
        swap in prop_oneof![mutated("total = 2048.00M  used = 1034.25M  free = 1013.75M  (encrypted)".into()), noise()],
        procargs in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        if let Ok(input) = headroom::explain::parse_input(&vm) {
            let cfg = Config::embedded().expect("defaults");
            let _ = headroom::explain::explain(&input, None, &cfg);
        }
        let _ = headroom::explain::parse_swapusage(&swap);
        let _ = headroom::macos_vm::parse_procargs2(&procargs);
    }

    #[test]
    fn config_parsers_never_panic(
        text in prop_oneof![mutated(include_str!("../config/default.toml").into()), noise()],
        dur in "[0-9.\\-]{0,12}[ ]?(ms|s|m|h|d|y|x)?",
    ) {
        // Sizes and listen addresses: private to src/config.rs, fuzzed there.
        let _ = Config::from_text("fuzz.toml", &text);
        let _ = headroom::config::parse_duration(&dur);
    }

    #[test]
    fn trace_and_model_parsers_never_panic(
        line in prop_oneof![
            mutated(r#"{"ts":"2025-01-01T00:00:00Z","at":12.5,"event":"sample","total_bytes":17179869184,"available_bytes":1073741824,"mlx_processes":[{"pid":7,"uid":501,"start_time":9,"name":"p","cmdline":"mlx_lm.lora","footprint_bytes":1,"rss_bytes":1,"peak_bytes":1,"growth_bytes_per_sec":1e300,"matched_by":"x"}]}"#.into()),
            noise()
        ],
        model in prop_oneof![
            mutated(r#"{"model_type":"llama","hidden_size":4096,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"quantization":{"bits":4,"group_size":64}}"#.into()),
            noise()
        ],
        header in prop::collection::vec(any::<u8>(), 0..200),
        data_len in any::<u64>(),
    ) {
        let _ = headroom::replay::parse_line(&line);
        let _ = headroom::advise::model::parse_config_json(&model);
        let _ = headroom::advise::model::parse_size(&model);
        let _ = headroom::advise::model::parse_safetensors_header(&header, data_len);
    }
}

// ------------------------------------------------------------ kill safety

const ME: u32 = 501;
/// The daemon's own pid in these timelines (never a real process here:
/// the replay actuator performs nothing).
const SELF_PID: i32 = 999;
const NEVER_PID: i32 = 7;
/// headroom's parent and grandparent in these timelines (when listed).
const ANCESTORS: [i32; 2] = [11, 12];
const TOTAL: u64 = 16 << 30;

/// One process that may appear in snapshots: uid, pid and start time are
/// drawn so that pid ≤ 1, the daemon itself, other users, never_kill
/// entries and pid reuse (same pid, new start time) all occur.
#[derive(Clone, Debug)]
struct Candidate {
    p: MlxProcess,
}

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        prop_oneof![
            Just(-1),
            Just(0),
            Just(1),
            Just(SELF_PID),
            Just(NEVER_PID),
            2i32..40
        ],
        prop_oneof![4 => Just(ME), 1 => Just(0u32), 1 => Just(502u32)],
        0u64..3,
        1u64..8192,
        prop_oneof![
            4 => Just(("mlx_lm.lora", "mlx_lm.lora --batch-size 4")),
            1 => Just(("mlx_lm.generate", "python -m mlx_lm.generate protected-run")),
            1 => Just(("protected_job", "python protected_job.py"))
        ],
        -50.0f64..400.0,
    )
        .prop_map(|(pid, uid, start, mib, (program, cmd), growth)| Candidate {
            p: MlxProcess {
                pid: Pid(pid),
                uid,
                start_time: 1000 + start,
                name: "python3".into(),
                cmdline: cmd.into(),
                footprint_bytes: Bytes::mib(mib),
                rss_bytes: Bytes::mib(mib),
                peak_bytes: Bytes::mib(mib),
                growth_bytes_per_sec: growth * Bytes::MIB as f64,
                program: program.into(),
                matched_by: "pattern:test".into(),
                job: None,
            },
        })
}

/// One cycle: the snapshot, and what the probe answers right before a signal.
#[derive(Clone, Debug)]
struct Step {
    snap: Snapshot,
    fresh_available: Bytes,
    critical: bool,
    /// pid → start time the probe reports now (absent: the pid is gone).
    now: HashMap<Pid, u64>,
}

fn timeline() -> impl Strategy<Value = (Vec<Step>, u64, u64)> {
    let step = (
        prop_oneof![8 => 50u64..1500, 1 => 5_000u64..120_000], // ms since the previous sample
        prop_oneof![0u64..1024, 1024u64..2048, 2048u64..4096, 4096u64..8192], // MiB available
        prop::bool::weighted(0.05),
        prop::collection::vec(candidate(), 0..5),
        prop_oneof![0u64..1024, 1024u64..8192], // MiB available at the last check
        prop::bool::weighted(0.2),              // a pid reused between sample and signal
        prop::bool::weighted(0.1),              // a pid gone between sample and signal
        prop::bool::weighted(0.7),              // headroom's ancestors listed
    );
    (prop::collection::vec(step, 5..80), 0u64..8, 1u64..15).prop_map(|(steps, term, kill)| {
        let mut at = Duration::ZERO;
        let mut out = Vec::new();
        for (dt, avail, critical, cands, fresh, reuse, gone, ancestors) in steps {
            at += Duration::from_millis(dt);
            // pids are unique within one snapshot
            let mut seen = HashSet::new();
            let procs: Vec<MlxProcess> = cands
                .into_iter()
                .map(|c| c.p)
                .filter(|p| seen.insert(p.pid))
                .collect();
            let mut now: HashMap<Pid, u64> = procs.iter().map(|p| (p.pid, p.start_time)).collect();
            if let Some(p) = procs.first() {
                if reuse {
                    now.insert(p.pid, p.start_time + 77);
                } else if gone {
                    now.remove(&p.pid);
                }
            }
            out.push(Step {
                snap: Snapshot {
                    at,
                    memory: SystemMemory {
                        total_bytes: Bytes(TOTAL),
                        available_bytes: Bytes::mib(avail),
                        ..Default::default()
                    },
                    pressure: headroom::model::Pressure {
                        kernel_level: critical.then_some(KernelLevel::Critical),
                        ..Default::default()
                    },
                    mlx_processes: procs,
                    ancestors: if ancestors {
                        ANCESTORS.map(Pid).to_vec()
                    } else {
                        vec![]
                    },
                    ..Default::default()
                },
                fresh_available: Bytes::mib(fresh),
                critical,
                now,
            });
        }
        (out, term, kill)
    })
}

struct StepProbe<'a>(&'a Step);

impl Probe for StepProbe<'_> {
    fn fresh(&mut self) -> Result<Fresh, SampleError> {
        Ok(Fresh {
            available: self.0.fresh_available,
            kernel_critical: self.0.critical,
        })
    }
    fn start_time(&mut self, pid: Pid) -> Option<u64> {
        self.0.now.get(&pid).copied()
    }
}

fn config(terminate_after: u64, kill_after: u64) -> Config {
    Config::from_text(
        "props.toml",
        &format!(
            "[poll]\ninterval = \"100ms\"\n\
             [thresholds]\nyellow_below = \"4GiB\"\nred_below = \"2GiB\"\nhysteresis = \"256MiB\"\ndwell = \"1s\"\n\
             [actions]\nterminate_after = \"{terminate_after}s\"\nkill_after = \"{kill_after}s\"\nkill_floor = \"1GiB\"\n\
             never_kill = [{NEVER_PID}, '^protected']\n"
        ),
    )
    .expect("config")
}

/// One sample as the oracle of "eating" keeps it: when, available, footprints.
type Reading = (Duration, Bytes, HashMap<(Pid, u64), Bytes>);

fn key(p: &MlxProcess) -> (Pid, u64) {
    (p.pid, p.start_time)
}

proptest! {
    #![proptest_config(cases(3000))]

    /// Every signal the engine orders and lets through names an eligible MLX
    /// process from that very snapshot — never pid ≤ 1, headroom, its
    /// ancestors, another user's (as a user and as root), a never_kill
    /// match, or (SIGTERM) one below min_victim_footprint; one victim per
    /// job at a time; a SIGTERM only for a process that grew at least 32 MiB
    /// over the last minute, while memory fell at least 64 MiB (issue 26:
    /// never one that is not eating); a last reading above the red line or
    /// a reused pid stops the signal; a gap in sampling does not count as
    /// red time held.
    #[test]
    fn kill_safety_over_random_timelines((steps, term_after, kill_after) in timeline(), as_root in any::<bool>()) {
        let cfg = config(term_after, kill_after);
        let red_line = Bytes::gib(2);
        let scope = if as_root { Scope::root([]) } else { Scope::user(ME) };
        let mut engine = Engine::new(Pid(SELF_PID), scope);
        // Every footprint and available reading seen, for the oracle of
        // "eating": (at, available, footprints).
        let mut history: Vec<Reading> = Vec::new();
        let mut actuator = Actuator::replay();
        // The victim signalled (SIGTERM went out) and not yet seen gone.
        let mut victim: Option<(Pid, u64)> = None;
        let mut termed: HashSet<(Pid, u64)> = HashSet::new();
        let mut prev_at: Option<Duration> = None;
        for step in &steps {
            let s = &step.snap;
            if let Some(v) = victim {
                if !s.mlx_processes.iter().any(|p| key(p) == v) {
                    victim = None;
                }
            }
            history.push((
                s.at,
                s.memory.available_bytes,
                s.mlx_processes.iter().map(|p| (key(p), p.footprint_bytes)).collect(),
            ));
            // The readings of the last minute.
            let horizon = s.at.saturating_sub(Duration::from_secs(60));
            let recent: Vec<_> = history.iter().filter(|h| h.0 >= horizon).collect();
            let gap = prev_at.is_some_and(|p| is_gap(p, s.at, cfg.poll_interval.max(cfg.poll_max_interval)));
            prev_at = Some(s.at);
            let cycle = engine.step(s, &cfg, &mut actuator, &mut StepProbe(step));
            for (a, outcome) in &cycle.actions {
                let Action::Signal(o) = a else { continue };
                let p = &o.process;
                // Never anything outside this snapshot's MLX list, never ineligible.
                prop_assert!(s.mlx_processes.iter().any(|q| key(q) == key(p)), "{p:?} not in the snapshot");
                prop_assert!(p.pid.0 > 1, "pid {}", p.pid);
                prop_assert!(p.pid.0 != SELF_PID);
                prop_assert_eq!(p.uid, if as_root { 0 } else { ME }, "another user's process");
                prop_assert!(!s.ancestors.contains(&p.pid), "an ancestor of headroom: {}", p.pid);
                prop_assert!(p.pid.0 != NEVER_PID && !p.program.starts_with("protected"));
                // The last checks.
                let sent = matches!(outcome, Outcome::Done | Outcome::DryRun);
                if sent {
                    prop_assert!(step.critical || step.fresh_available < red_line,
                        "signal sent with memory back above the red line: {outcome:?}");
                    prop_assert_eq!(step.now.get(&p.pid).copied(), Some(p.start_time),
                        "signal sent to a reused or vanished pid");
                }
                match o.signal {
                    Sig::Term => {
                        if let Some(v) = victim {
                            prop_assert!(false, "second SIGTERM to {:?} while victim {v:?} is alive", key(p));
                        }
                        // Issue 26: it grew, while memory fell.
                        let least = recent
                            .iter()
                            .filter_map(|h| h.2.get(&key(p)))
                            .min()
                            .copied()
                            .unwrap_or(p.footprint_bytes);
                        prop_assert!(p.footprint_bytes.0 >= least.0 + 32 * Bytes::MIB,
                            "SIGTERM to {:?}, which grew only {} over the last minute", key(p), p.footprint_bytes.saturating_sub(least));
                        let high = recent.iter().map(|h| h.1).max().unwrap_or(s.memory.available_bytes);
                        prop_assert!(high.0 >= s.memory.available_bytes.0 + 64 * Bytes::MIB,
                            "SIGTERM while memory did not fall: high {high}, now {}", s.memory.available_bytes);
                        prop_assert!(p.footprint_bytes >= Bytes::mib(512), "SIGTERM to a process below min_victim_footprint: {}", p.footprint_bytes);
                        if gap {
                            prop_assert!(o.reason.contains("kill_floor") || o.reason.starts_with("red for 0.0 s"),
                                "SIGTERM on the first sample after a gap counted unwatched time: {}", o.reason);
                        }
                        if sent {
                            victim = Some(key(p));
                            termed.insert(key(p));
                        }
                    }
                    Sig::Kill => {
                        prop_assert!(termed.contains(&key(p)), "SIGKILL without a SIGTERM first: {p:?}");
                    }
                }
            }
        }
    }

    /// After a gap longer than the growth window, discovery reports no growth
    /// on the first sample: a rate across a SIGSTOP is not a rate now.
    #[test]
    fn growth_rate_restarts_after_a_gap(
        before in prop::collection::vec(1u64..4096, 2..10),
        gap_ms in 5_001u64..600_000,
        after in 1u64..8192,
    ) {
        let mut src = OneProc { mib: before[0] };
        let cfg = Config::embedded().expect("defaults");
        let mut d = Discovery::new(cfg.patterns, false, Scope::user(ME), Pid(SELF_PID));
        let mut at = Duration::ZERO;
        for mib in &before {
            src.mib = *mib;
            d.scan(&mut src, at).expect("scan");
            at += Duration::from_millis(500);
        }
        src.mib = after;
        let got = d.scan(&mut src, at + Duration::from_millis(gap_ms)).expect("scan");
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(got[0].growth_bytes_per_sec, 0.0);
    }
}

/// One MLX process whose footprint the test sets.
struct OneProc {
    mib: u64,
}

impl ProcSource for OneProc {
    fn pids(&mut self, out: &mut Vec<Pid>) -> std::io::Result<()> {
        out.push(Pid(4242));
        Ok(())
    }
    fn is_process(&mut self, pid: Pid) -> Option<bool> {
        self.identity(pid).map(|_| true)
    }
    fn identity(&mut self, _pid: Pid) -> Option<ProcIdentity> {
        Some(ProcIdentity {
            uid: ME,
            start_time: 5,
            name: "python3".into(),
            argv: vec![
                "python".into(),
                "-m".into(),
                "mlx_lm.lora".into(),
                "--train".into(),
            ],
            exe: String::new(),
        })
    }
    fn mlx_library(&mut self, _pid: Pid) -> Option<String> {
        None
    }
    fn measure(&mut self, _pid: Pid) -> Option<ProcMeasure> {
        Some(ProcMeasure {
            start_time: 5,
            footprint: Bytes::mib(self.mib),
            rss: Bytes::mib(self.mib),
            job: None,
        })
    }
}

/// Regression (found by `kill_safety_over_random_timelines`): the victim was
/// put in `never_kill` by a config reload after its SIGTERM; the escalation
/// to SIGKILL must honour the new list.
#[test]
fn no_sigkill_for_a_victim_put_in_never_kill_after_its_sigterm() {
    let cfg1 = config(1, 3);
    let cfg2 = Config::from_text(
        "props.toml",
        "[poll]\ninterval = \"100ms\"\n[actions]\nterminate_after = \"1s\"\nkill_after = \"3s\"\nkill_floor = \"1GiB\"\nnever_kill = [12]\n",
    )
    .expect("config");
    let victim = MlxProcess {
        pid: Pid(12),
        uid: ME,
        start_time: 5,
        name: "python3".into(),
        cmdline: "mlx_lm.lora".into(),
        footprint_bytes: Bytes::gib(9),
        rss_bytes: Bytes::gib(9),
        peak_bytes: Bytes::gib(9),
        growth_bytes_per_sec: 0.0,
        program: "mlx_lm.lora".into(),
        matched_by: "pattern:test".into(),
        job: None,
    };
    let mut engine = Engine::new(Pid(SELF_PID), Scope::user(ME));
    let mut actuator = Actuator::replay();
    let mut signals = Vec::new();
    for i in 0..60u64 {
        // At 0 s the job is 4 GiB smaller and memory green: it eats the fall.
        let mut job = victim.clone();
        if i == 0 {
            job.footprint_bytes = Bytes::gib(5);
        }
        let step = Step {
            snap: Snapshot {
                at: Duration::from_millis(100 * i),
                memory: SystemMemory {
                    total_bytes: Bytes(TOTAL),
                    available_bytes: Bytes::mib(if i == 0 { 6144 } else { 1536 }),
                    ..Default::default()
                },
                mlx_processes: vec![job],
                ..Default::default()
            },
            fresh_available: Bytes::mib(1536),
            critical: false,
            now: HashMap::from([(Pid(12), 5)]),
        };
        let cfg = if signals.is_empty() { &cfg1 } else { &cfg2 };
        let cycle = engine.step(&step.snap, cfg, &mut actuator, &mut StepProbe(&step));
        for (a, _) in cycle.actions {
            if let Action::Signal(o) = a {
                signals.push(o.signal);
            }
        }
    }
    assert_eq!(
        signals,
        vec![Sig::Term],
        "SIGTERM before the reload, no SIGKILL after"
    );
}

// ------------------------------------------------ identity: lookalikes

/// One process of a random table: what it really is, and how it looks.
#[derive(Clone, Debug)]
struct Proc {
    mlx: bool,
    id: ProcIdentity,
    library: Option<String>,
    mib: u64,
}

/// Words that mention MLX tools, as arguments of anything.
const MENTIONS: [&str; 8] = [
    "mlx_lm.lora",
    "mlx-lm",
    "mlx_lm",
    "-m",
    "mlx_vlm.generate",
    "mlx.launch",
    "python",
    "/home/a/src/mlx-lm/libmlx.so",
];

fn process() -> impl Strategy<Value = Proc> {
    let args = prop::collection::vec(prop::sample::select(&MENTIONS[..]), 0..5);
    let lookalike = (
        prop::sample::select(
            &[
                "tail",
                "grep",
                "vim",
                "tmux",
                "git",
                "git-remote-https",
                "ls",
                "rsync",
                "docker",
                "man",
                "ssh",
                "bash",
                "sh",
            ][..],
        ),
        args.clone(),
    )
        .prop_map(|(prog, args)| {
            let mut argv = vec![format!("/usr/bin/{prog}")];
            argv.extend(args.iter().map(|a| a.to_string()));
            (false, prog.to_string(), argv, None)
        });
    // argv[0] rewritten to an MLX program, the kernel's name says otherwise.
    let spoof = (
        prop::sample::select(&["sleep", "tail", "bash"][..]),
        args.clone(),
    )
        .prop_map(|(comm, args)| {
            let mut argv = vec!["/v/bin/mlx_lm.lora".to_string()];
            argv.extend(args.iter().map(|a| a.to_string()));
            (false, comm.to_string(), argv, None)
        });
    // A Python script or `-c` that mentions MLX but has no libmlx loaded.
    let python_mention = args.clone().prop_map(|args| {
        let mut argv = vec!["/usr/bin/python3".to_string(), "-c".into(), "pass".into()];
        argv.extend(args.iter().map(|a| a.to_string()));
        (false, "python3".to_string(), argv, None)
    });
    let pip = args.clone().prop_map(|args| {
        let mut argv = vec![
            "/v/bin/python3".to_string(),
            "/v/bin/pip".into(),
            "install".into(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        (false, "pip".to_string(), argv, None)
    });
    let real_module = prop::sample::select(
        &["mlx_lm.lora", "mlx_lm.generate", "mlx_vlm.generate"][..],
    )
    .prop_map(|m| {
        (
            true,
            "python3".to_string(),
            vec!["python3".into(), "-m".into(), m.to_string()],
            None,
        )
    });
    let real_script = Just((
        true,
        "mlx_lm.lora".to_string(),
        vec![
            "/v/bin/python3".to_string(),
            "/v/bin/mlx_lm.lora".into(),
            "--train".into(),
        ],
        None,
    ));
    let real_library = Just((
        true,
        "python3".to_string(),
        vec!["python3".to_string(), "train.py".into()],
        Some("/v/lib/python3.12/site-packages/mlx/lib/libmlx.so".to_string()),
    ));
    (
        prop_oneof![
            3 => lookalike, 2 => spoof, 1 => python_mention, 1 => pip,
            1 => real_module, 1 => real_script, 1 => real_library
        ],
        1u64..8192,
    )
        .prop_map(|((mlx, comm, argv, library), mib)| Proc {
            mlx,
            id: ProcIdentity {
                uid: ME,
                start_time: 5,
                name: comm,
                argv,
                exe: String::new(),
            },
            library,
            mib,
        })
}

struct Table(Vec<Proc>);

impl Table {
    fn get(&self, pid: Pid) -> Option<&Proc> {
        self.0.get(usize::try_from(pid.0 - 100).ok()?)
    }
}

impl ProcSource for Table {
    fn pids(&mut self, out: &mut Vec<Pid>) -> std::io::Result<()> {
        out.extend((0..self.0.len()).map(|i| Pid(100 + i as i32)));
        Ok(())
    }
    fn is_process(&mut self, pid: Pid) -> Option<bool> {
        self.identity(pid).map(|_| true)
    }
    fn identity(&mut self, pid: Pid) -> Option<ProcIdentity> {
        self.get(pid).map(|p| p.id.clone())
    }
    fn mlx_library(&mut self, pid: Pid) -> Option<String> {
        self.get(pid).and_then(|p| p.library.clone())
    }
    fn measure(&mut self, pid: Pid) -> Option<ProcMeasure> {
        self.get(pid).map(|p| ProcMeasure {
            start_time: 5,
            footprint: Bytes::mib(p.mib),
            rss: Bytes::mib(p.mib),
            job: None,
        })
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Through the real Discovery, Classifier and Policy, with memory red
    /// and below the floor: no lookalike — whatever MLX words its arguments
    /// hold, whatever argv[0] claims — is ever found as MLX or signalled;
    /// only real MLX processes are, and only ones of min_victim_footprint.
    #[test]
    fn lookalikes_are_never_mlx_and_never_signalled(procs in prop::collection::vec(process(), 1..12)) {
        let cfg = Config::from_text(
            "props.toml",
            "[poll]\ninterval = \"1s\"\n[actions]\nterminate_after = \"1s\"\nkill_after = \"2s\"\n",
        )
        .expect("config");
        let mut table = Table(procs);
        let mut d = Discovery::new(cfg.patterns.clone(), true, Scope::user(ME), Pid(SELF_PID));
        let mut engine = Engine::new(Pid(SELF_PID), Scope::user(ME));
        let mut actuator = Actuator::replay();
        for i in 0..6u64 {
            let at = Duration::from_secs(i);
            let found = d.scan(&mut table, at).expect("scan");
            for p in &found {
                let real = table.get(p.pid).expect("listed");
                prop_assert!(real.mlx, "lookalike found as MLX: {:?} ({})", real.id, p.matched_by);
            }
            let snap = Snapshot {
                at,
                memory: SystemMemory {
                    total_bytes: Bytes(TOTAL),
                    available_bytes: Bytes::mib(512),
                    ..Default::default()
                },
                mlx_processes: found,
                ..Default::default()
            };
            let step = Step {
                snap: snap.clone(),
                fresh_available: Bytes::mib(512),
                critical: false,
                now: (0..table.0.len()).map(|i| (Pid(100 + i as i32), 5)).collect(),
            };
            let cycle = engine.step(&snap, &cfg, &mut actuator, &mut StepProbe(&step));
            for (a, _) in &cycle.actions {
                if let Action::Signal(o) = a {
                    let real = table.get(o.process.pid).expect("listed");
                    prop_assert!(real.mlx, "signal to a lookalike: {:?}", real.id);
                    prop_assert!(real.mib >= 512, "signal to a small MLX process: {} MiB", real.mib);
                }
            }
        }
        // Every real MLX process was found.
        let found = d.scan(&mut table, Duration::from_secs(7)).expect("scan");
        let n_real = table.0.iter().filter(|p| p.mlx).count();
        // (the victim SIGTERMed is still listed: the replay actuator sends nothing)
        prop_assert_eq!(found.len(), n_real);
    }
}

// ------------------------------------------------ who eats (issue 26)

/// A busy machine around idle MLX jobs: MLX jobs that eat (some in the
/// same process group as an idle one), non-MLX jobs that eat, available
/// memory that falls and rises, samples 2 ms to 1.5 s apart, victims that
/// exit some time after their SIGTERM.
#[derive(Clone, Debug)]
struct Busy {
    /// (footprint MiB, job id) of each idle MLX job; jitter per step.
    idle: Vec<(u64, i32)>,
    /// Per step: ms since the last, MiB each eater grows, MiB the others
    /// (non-MLX) grow, whether a signalled eater exits now, jitter seeds.
    steps: Vec<(u64, Vec<u64>, u64, bool, u64)>,
    /// Each eater's job: its own, or an idle job's group.
    eater_jobs: Vec<Option<usize>>,
    start_avail: u64,
}

fn busy() -> impl Strategy<Value = Busy> {
    (
        prop::collection::vec((64u64..40_000, 0i32..3), 1..4),
        1usize..4,
        8_000u64..60_000,
    )
        .prop_flat_map(|(idle, eaters, start_avail)| {
            let n_idle = idle.len();
            (
                Just(idle),
                prop::collection::vec(
                    (
                        prop_oneof![4 => 2u64..200, 4 => 200u64..1500, 1 => 5_000u64..70_000],
                        prop::collection::vec(prop_oneof![2 => Just(0u64), 3 => 0u64..600], eaters),
                        prop_oneof![1 => Just(0u64), 2 => 0u64..1200],
                        prop::bool::weighted(0.3),
                        any::<u64>(),
                    ),
                    10..120,
                ),
                prop::collection::vec(prop::option::weighted(0.3, 0..n_idle), eaters),
                Just(start_avail),
            )
        })
        .prop_map(|(idle, steps, eater_jobs, start_avail)| Busy {
            idle,
            steps,
            eater_jobs,
            start_avail,
        })
}

/// One sample of these processes with `avail_mib` available (and read
/// again right before a signal), every process still what it was.
fn sample_of(at: Duration, total: Bytes, avail_mib: u64, procs: Vec<MlxProcess>) -> Step {
    Step {
        now: procs.iter().map(|p| (p.pid, p.start_time)).collect(),
        snap: Snapshot {
            at,
            memory: SystemMemory {
                total_bytes: total,
                available_bytes: Bytes::mib(avail_mib),
                ..Default::default()
            },
            mlx_processes: procs,
            ..Default::default()
        },
        fresh_available: Bytes::mib(avail_mib),
        critical: false,
    }
}

fn mlx(pid: i32, job: i32, mib: u64) -> MlxProcess {
    MlxProcess {
        pid: Pid(pid),
        uid: ME,
        start_time: 7,
        name: "python3".into(),
        cmdline: "python3 -m mlx_lm.lora --train".into(),
        footprint_bytes: Bytes::mib(mib),
        rss_bytes: Bytes::mib(mib),
        peak_bytes: Bytes::mib(mib),
        growth_bytes_per_sec: 0.0,
        program: "mlx_lm.lora".into(),
        matched_by: "pattern:test".into(),
        job: Some(Pid(job)),
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    /// Issue 26, the first law: whatever other processes do — MLX jobs and
    /// non-MLX jobs eating, in the idle job's own process group or not,
    /// victims exiting and freeing memory — an MLX job whose footprint only
    /// jitters (±7 MiB, not a real share of any fall) is never signalled.
    #[test]
    fn an_mlx_job_that_does_not_eat_is_never_signalled(b in busy()) {
        let cfg = config(1, 3);
        let mut engine = Engine::new(Pid(SELF_PID), Scope::user(ME));
        let mut actuator = Actuator::replay();
        let idle_pid = |i: usize| 100 + i as i32;
        let eater_pid = |i: usize| 200 + i as i32;
        let job_of_idle = |i: usize| 1000 + b.idle[i].1;
        let mut eaters: Vec<u64> = vec![256; b.eater_jobs.len()];
        let mut gone: HashSet<i32> = HashSet::new();
        let mut signalled: HashSet<i32> = HashSet::new();
        let mut others = 0u64;
        let mut at = Duration::ZERO;
        for (dt, grow, other, exit, seed) in &b.steps {
            at += Duration::from_millis(*dt);
            for (e, g) in eaters.iter_mut().zip(grow) {
                *e += g;
            }
            others += other;
            if *exit {
                gone.extend(signalled.iter().copied());
            }
            let mut procs: Vec<MlxProcess> = b
                .idle
                .iter()
                .enumerate()
                .map(|(i, (mib, _))| {
                    let jitter = (seed >> (i * 4)) % 15; // 0..=14 MiB around mib
                    mlx(idle_pid(i), job_of_idle(i), mib + jitter)
                })
                .collect();
            for (i, mib) in eaters.iter().enumerate() {
                if gone.contains(&eater_pid(i)) {
                    continue;
                }
                let job = b.eater_jobs[i].map_or(2000 + i as i32, job_of_idle);
                procs.push(mlx(eater_pid(i), job, *mib));
            }
            let held: u64 = eaters
                .iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(&eater_pid(*i)))
                .map(|(_, m)| *m)
                .sum::<u64>()
                + others;
            let avail = b.start_avail.saturating_sub(held).max(64);
            let step = sample_of(at, Bytes(TOTAL), avail, procs);
            let cycle = engine.step(&step.snap, &cfg, &mut actuator, &mut StepProbe(&step));
            for (a, _) in &cycle.actions {
                if let Action::Signal(o) = a {
                    prop_assert!(o.process.pid.0 >= 200, "signal to the idle MLX job {:?}: {}", o.process.pid, o.reason);
                    signalled.insert(o.process.pid.0);
                }
            }
        }
    }

    /// Issue 26, case 5: job A eats and is stopped; it exits 0–3 s later
    /// giving back any share of its memory, even none; job B eats at
    /// 200–1000 MiB/s from the start. B is never left running because A
    /// freed little: it is stopped within 40 s of A's SIGTERM. The idle job
    /// beside them never is.
    #[test]
    fn an_eating_mlx_job_is_stopped_even_after_a_stop_that_freed_little(
        a_mib in 1024u64..6144,
        a_rate in 500u64..2000,
        b_rate in 200u64..1000,
        freed_pct in 0u64..=100,
        exit_ms in 0u64..3000,
        dt in prop_oneof![Just(10u64), 20u64..200, 200u64..1000],
        idle_mib in 512u64..16_000,
    ) {
        let cfg = config(1, 3);
        let mut engine = Engine::new(Pid(SELF_PID), Scope::user(ME));
        let mut actuator = Actuator::replay();
        let start = 6000u64;
        let mut at = Duration::ZERO;
        let (mut af, mut bf) = (256f64, 256f64);
        let mut a_term: Option<Duration> = None;
        let mut a_gone = false;
        let mut given_back = 0u64;
        let mut b_term: Option<Duration> = None;
        while at < Duration::from_secs(120) && b_term.is_none() {
            at += Duration::from_millis(dt);
            let secs = dt as f64 / 1000.0;
            if a_term.is_none() {
                af = (af + a_rate as f64 * secs).min(a_mib as f64);
            }
            bf += b_rate as f64 * secs;
            let (a, bm) = (af as u64, bf as u64);
            if let Some(t) = a_term {
                if !a_gone && at >= t + Duration::from_millis(exit_ms) {
                    a_gone = true;
                    given_back = a * freed_pct / 100;
                }
            }
            let held_a = if a_gone { a - given_back } else { a };
            let avail = start.saturating_sub(held_a + bm).max(64);
            let mut procs = vec![mlx(300, 300, idle_mib), mlx(301, 301, bm)];
            if !a_gone {
                procs.push(mlx(302, 302, a));
            }
            let step = sample_of(at, Bytes(TOTAL), avail, procs);
            let cycle = engine.step(&step.snap, &cfg, &mut actuator, &mut StepProbe(&step));
            for (act, _) in &cycle.actions {
                if let Action::Signal(o) = act {
                    prop_assert!(o.process.pid != Pid(300), "the idle job was signalled: {}", o.reason);
                    if o.signal == Sig::Term && o.process.pid == Pid(302) {
                        a_term = Some(at);
                    }
                    if o.signal == Sig::Term && o.process.pid == Pid(301) {
                        b_term = Some(at);
                    }
                }
            }
        }
        let first = match (a_term, b_term) {
            (Some(x), Some(y)) => x.min(y),
            (x, y) => x.or(y).unwrap_or(at),
        };
        prop_assert!(b_term.is_some(), "B (eating {b_rate} MiB/s) still running at {at:?}; A stopped at {a_term:?}");
        prop_assert!(b_term.unwrap_or(at) <= first + Duration::from_secs(40), "B stopped only at {b_term:?}, A at {a_term:?}");
    }
}

proptest! {
    #![proptest_config(cases(600))]

    /// Review of issue 26: an MLX job that loaded its model while memory
    /// was green (more than a few seconds before red) and sits idle since,
    /// and one that gives back a cache and takes its own memory back (never
    /// above what it held), are not eating — however the others eat after,
    /// samples 20 ms to 1.5 s apart.
    #[test]
    fn a_job_that_loaded_before_red_or_regrew_its_own_memory_is_never_signalled(
        load_mib in 1024u64..16_000,
        shrink_mib in 256u64..4096,
        cycle in 4usize..30,
        steps in prop::collection::vec((20u64..1500, 0u64..900, 0u64..900, any::<bool>()), 20..150),
    ) {
        let cfg = config(1, 3);
        let mut engine = Engine::new(Pid(SELF_PID), Scope::user(ME));
        let mut actuator = Actuator::replay();
        let start = 48_000u64; // of 64 GiB: green at first
        let base_shrinker = shrink_mib + 2048;
        let mut at = Duration::ZERO;
        let mut loader = 100u64;
        let (mut mlx_eater, mut other) = (256u64, 0u64);
        let mut gone = false;
        let mut timeline: Vec<(u64, u64, u64, bool)> = Vec::new();
        // The load: 2 s at 100 ms, then 15 s idle, memory green throughout.
        for i in 0..20u64 {
            timeline.push((100, (load_mib - 100) / 20 + u64::from(i == 0) * ((load_mib - 100) % 20), 0, false));
        }
        for _ in 0..150 {
            timeline.push((100, 0, 0, false));
        }
        let loading_steps = timeline.len();
        timeline.extend(steps.iter().map(|(dt, e, o, x)| (*dt, *e, *o, *x)));
        for (i, (dt, grow, other_grow, exit)) in timeline.into_iter().enumerate() {
            at += Duration::from_millis(dt);
            if i < 20 {
                loader += grow;
            } else if i >= loading_steps {
                mlx_eater += grow;
                other += other_grow;
                gone |= exit;
            }
            // The shrinker: drops shrink_mib, regrows back over the cycle.
            let k = i % cycle;
            let shrinker = if k == 0 { base_shrinker } else {
                base_shrinker - shrink_mib + shrink_mib * k as u64 / cycle as u64
            };
            let mut procs = vec![mlx(300, 300, loader), mlx(301, 301, shrinker)];
            if !gone {
                procs.push(mlx(302, 302, mlx_eater));
            }
            let held = loader + shrinker + if gone { 0 } else { mlx_eater } + other;
            let avail = start.saturating_sub(held).max(64);
            let step = sample_of(at, Bytes(64 << 30), avail, procs);
            let cycle_out = engine.step(&step.snap, &cfg, &mut actuator, &mut StepProbe(&step));
            for (a, _) in &cycle_out.actions {
                if let Action::Signal(o) = a {
                    prop_assert!(o.process.pid == Pid(302), "signalled {:?}, not eating: {}", o.process.pid, o.reason);
                }
            }
        }
    }
}
