//! `headroom replay` feeds a trace — Snapshots as JSON lines, from
//! `headroom record`, or a headroom log, whose `sample` lines are
//! Snapshots — through the real classifier, policy and actuator (with the
//! replay signaller: nothing is sent) and reports every decision with its
//! time and reason.

use crate::act::Actuator;
use crate::action::{Action, Outcome, Sig};
use crate::classify::Classification;
use crate::config::Config;
use crate::engine::{action_fields, level_changed_fields, Engine};
use crate::input::{self, Lines};
use crate::model::secs;
use crate::model::Scope;
use crate::model::{KernelLevel, Level, Pid, Snapshot};
use crate::sample::SampleError;
use crate::sample::{Fresh, Probe};
use crate::Error;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// The probe during replay: the "fresh" reading is the snapshot itself, and
/// a pid's start time is the one in the snapshot's process list.
pub struct TraceProbe<'a>(pub &'a Snapshot);

impl Probe for TraceProbe<'_> {
    fn fresh(&mut self) -> Result<Fresh, SampleError> {
        Ok(Fresh {
            available: self.0.memory.available_bytes,
            kernel_critical: self.0.pressure.kernel_level == Some(KernelLevel::Critical),
        })
    }

    fn start_time(&mut self, pid: Pid) -> Option<u64> {
        self.0
            .mlx_processes
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.start_time)
    }
}

/// One line of a trace, understood.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceLine {
    Snapshot(Box<Snapshot>),
    /// A log's `started` event: a new daemon run, its clock back at zero.
    Started,
    /// Another log event, or a blank line.
    Skip,
}

/// A line is a Snapshot, or a headroom log line: `sample` events are
/// Snapshots, `started` starts a new run, other events are skipped.
pub fn parse_line(text: &str) -> Result<TraceLine, String> {
    if text.trim().is_empty() {
        return Ok(TraceLine::Skip);
    }
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("expected a JSON object (a Snapshot or a headroom log line)".into());
    }
    let snapshot = |v: Value| {
        serde_path_to_error::deserialize::<_, Snapshot>(v).map(|s| TraceLine::Snapshot(Box::new(s)))
    };
    match v.get("event") {
        None => snapshot(v).map_err(|e| format!("not a Snapshot: {e}")),
        Some(Value::String(ev)) if ev == "sample" => {
            snapshot(v).map_err(|e| format!("'sample' event is not a Snapshot: {e}"))
        }
        Some(Value::String(ev)) if ev == "started" => Ok(TraceLine::Started),
        Some(Value::String(_)) => Ok(TraceLine::Skip),
        Some(other) => Err(format!("'event' must be a string, got {other}")),
    }
}

/// Read a whole trace, line by line; the first malformed line is an error
/// naming the file and line, and nothing of the trace is used.
pub fn read_trace(path: &Path) -> Result<Vec<TraceLine>, Error> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::Input(format!("{name}: {e}")))?;
    let mut lines = Lines::new(std::io::BufReader::new(file), input::REPLAY);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut last_at: Option<Duration> = None;
    while let Some((lineno, text)) = lines.next_str(&mut buf).map_err(|e| e.error(&name))? {
        let line = parse_line(text).map_err(|e| Error::Data(format!("{name}:{lineno}: {e}")))?;
        match &line {
            TraceLine::Started => last_at = None,
            TraceLine::Snapshot(s) => {
                if let Some(prev) = last_at.filter(|p| s.at < *p) {
                    return Err(Error::Data(format!(
                        "{name}:{lineno}: 'at' goes back in time ({:.3} s after {:.3} s) without a 'started' line",
                        s.at.as_secs_f64(),
                        prev.as_secs_f64()
                    )));
                }
                last_at = Some(s.at);
            }
            TraceLine::Skip => {}
        }
        out.push(line);
    }
    Ok(out)
}

/// One decision taken during replay.
#[derive(Clone, Debug)]
pub enum Decision {
    LevelChanged {
        snapshot: Box<Snapshot>,
        classification: Classification,
    },
    Action {
        at: Duration,
        action: Action,
        outcome: Outcome,
    },
}

/// The result of a replay.
pub struct Replay {
    pub decisions: Vec<Decision>,
    pub snapshots: usize,
    pub skipped: usize,
    pub runs: usize,
    pub span: Option<(Duration, Duration)>,
    pub final_level: Level,
}

/// Feed the trace through the real classifier and policy. headroom's own
/// pid is 0 (the policy never signals pid ≤ 1, so no traced pid collides
/// with it) and every user is in scope, as for a daemon run as root.
pub fn replay(lines: &[TraceLine], cfg: &Config) -> Replay {
    // Replay performs nothing itself and words its notices as the daemon's
    // live decisions, whatever `actions.dry_run` says.
    let mut live = cfg.clone();
    live.actions.dry_run = false;
    let cfg = &live;
    let new_engine = || Engine::new(Pid(0), Scope::anyone());
    let mut engine = new_engine();
    let mut actuator = Actuator::replay();
    let mut r = Replay {
        decisions: Vec::new(),
        snapshots: 0,
        skipped: 0,
        runs: 1,
        span: None,
        final_level: Level::Green,
    };
    let mut seen_snapshot = false;
    for line in lines {
        let s = match line {
            TraceLine::Snapshot(s) => s,
            TraceLine::Started => {
                if seen_snapshot {
                    engine = new_engine();
                    r.runs += 1;
                }
                continue;
            }
            TraceLine::Skip => {
                r.skipped += 1;
                continue;
            }
        };
        seen_snapshot = true;
        r.snapshots += 1;
        r.span = Some(match r.span {
            None => (s.at, s.at),
            Some((first, _)) => (first, s.at),
        });
        let cycle = engine.step(s, cfg, &mut actuator, &mut TraceProbe(s));
        if cycle.classification.changed() {
            r.decisions.push(Decision::LevelChanged {
                snapshot: s.clone(),
                classification: cycle.classification,
            });
        }
        for (action, outcome) in cycle.actions {
            r.decisions.push(Decision::Action {
                at: s.at,
                action,
                outcome,
            });
        }
    }
    r.final_level = engine.level();
    r
}

/// A decision as a JSON object with the same event names and fields as the
/// daemon's log line for it (docs/log.md), plus `at`.
pub fn decision_json(d: &Decision) -> Value {
    match d {
        Decision::LevelChanged {
            snapshot: s,
            classification: c,
        } => {
            let mut v = json!({ "event": "level_changed" });
            if let (Some(m), Value::Object(f)) = (v.as_object_mut(), level_changed_fields(s, c)) {
                m.extend(f);
            }
            v
        }
        Decision::Action {
            at,
            action,
            outcome,
        } => {
            let (event, fields) = action_fields(action, outcome);
            let mut v = json!({ "at": secs(*at), "event": event });
            if let (Some(m), Value::Object(f)) = (v.as_object_mut(), fields) {
                m.extend(f);
            }
            v
        }
    }
}

/// A decision as one line for a person.
pub fn decision_text(d: &Decision) -> String {
    match d {
        Decision::LevelChanged {
            snapshot: s,
            classification: c,
        } => {
            let why: Vec<String> = c.reasons.iter().map(|r| r.to_string()).collect();
            let why = if why.is_empty() {
                "calm".to_string()
            } else {
                why.join("; ")
            };
            format!(
                "{:>9.3}s  level {} -> {} (available {} of {}): {}",
                s.at.as_secs_f64(),
                c.previous,
                c.level,
                s.memory.available_bytes,
                s.memory.total_bytes,
                crate::text::line(&why)
            )
        }
        Decision::Action {
            at,
            action,
            outcome,
        } => {
            let what = match action {
                Action::Notify(n) => {
                    let kind = serde_json::to_value(n.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    format!("notify {kind}: {} — {}", n.title, n.body)
                }
                Action::Signal(o) => format!(
                    "{} pid {} {} ({}): {}",
                    match o.signal {
                        Sig::Term => "SIGTERM",
                        Sig::Kill => "SIGKILL",
                    },
                    o.process.pid,
                    o.process.name,
                    o.process.footprint_bytes,
                    o.reason
                ),
                Action::NoVictim { reason, .. } => format!("no victim: {reason}"),
                Action::RedNotMlx {
                    top_processes,
                    contributors,
                    ..
                } => {
                    let eating: Vec<&str> = contributors.iter().map(|c| c.text.as_str()).collect();
                    format!(
                        "red, nobody to stop: eating {}; largest {}",
                        if eating.is_empty() { "unknown".into() } else { eating.join("; ") },
                        crate::policy::name_top(top_processes)
                    )
                }
                Action::Freed {
                    processes,
                    freed_bytes,
                    others_growth_bytes,
                    after_secs,
                    ..
                } => format!(
                    "stopping {} process(es) of pid group {} freed {freed_bytes} ({others_growth_bytes} grown by others added back) {after_secs:.1} s after SIGTERM",
                    processes.len(),
                    processes.first().map(|p| p.job_id().0).unwrap_or(0),
                ),
                Action::VictimExited {
                    process,
                    after_secs,
                    available_before_bytes,
                    available_after_bytes,
                    killed,
                } => format!(
                    "victim pid {} {} exited {after_secs:.1} s after SIGTERM{}; available {} -> {}",
                    process.pid,
                    process.name,
                    if *killed { " (SIGKILLed)" } else { "" },
                    available_before_bytes,
                    available_after_bytes
                ),
            };
            let note = match outcome {
                Outcome::Skipped(why) => format!(" [skipped: {why}]"),
                Outcome::Failed(why) => format!(" [failed: {why}]"),
                Outcome::Pending => " [waiting for the pre_terminate hook]".into(),
                Outcome::Done | Outcome::DryRun => String::new(),
            };
            format!(
                "{:>9.3}s  {}{}",
                at.as_secs_f64(),
                crate::text::line(&what),
                crate::text::line(&note)
            )
        }
    }
}

/// `headroom replay`: the whole report, built only once the trace has been
/// read in full (a malformed line prints no verdict at all).
pub fn run_replay(path: &Path, cfg: &Config, as_json: bool) -> Result<String, Error> {
    let lines = read_trace(path)?;
    let r = replay(&lines, cfg);
    let mut out = String::new();
    for d in &r.decisions {
        if as_json {
            out.push_str(&decision_json(d).to_string());
        } else {
            out.push_str(&decision_text(d));
        }
        out.push('\n');
    }
    if !as_json {
        let span = r
            .span
            .map(|(a, b)| format!(", {:.3}–{:.3} s", a.as_secs_f64(), b.as_secs_f64()))
            .unwrap_or_default();
        let runs = if r.runs > 1 {
            format!(" in {} daemon runs", r.runs)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "replayed {} snapshots{runs}{span} ({} other lines skipped): {} decisions, final level {}\n",
            r.snapshots,
            r.skipped,
            r.decisions.len(),
            r.final_level
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bytes, MlxProcess};

    fn snap_json(at: f64, avail_gib: u64) -> String {
        format!(
            r#"{{"at":{at},"total_bytes":{},"available_bytes":{}}}"#,
            16 * Bytes::GIB,
            avail_gib * Bytes::GIB
        )
    }

    #[test]
    fn a_bare_snapshot_and_a_log_sample_line_are_the_same_record() {
        let bare = parse_line(&snap_json(1.5, 3)).expect("bare");
        let log = format!(
            r#"{{"ts":"2025-01-01T00:00:00Z","at":1.5,"event":"sample","severity":"info","total_bytes":{},"available_bytes":{},"mlx_processes":[],"level":"yellow","reasons":["x"]}}"#,
            16 * Bytes::GIB,
            3 * Bytes::GIB
        );
        assert_eq!(parse_line(&log).expect("log"), bare);
    }

    /// Issue 21: a recorded Mac's GPU wired limit survives record → replay.
    #[test]
    fn the_gpu_wired_limit_is_carried_through_a_trace() {
        let line = format!(
            r#"{{"at":1.5,"total_bytes":{},"available_bytes":{},"gpu_wired_limit_mb":62464,"gpu_wired_lwm_mb":0,"mlx_processes":[]}}"#,
            64 * Bytes::GIB,
            3 * Bytes::GIB
        );
        let TraceLine::Snapshot(s) = parse_line(&line).expect("parses") else {
            panic!("not a snapshot");
        };
        assert_eq!(s.memory.gpu_wired_limit_mb, Some(62464));
        assert_eq!(s.memory.gpu_wired_lwm_mb, Some(0));
        // What `record` writes for it (the Snapshot's serde form) reads back the same.
        let written = serde_json::to_string(&*s).expect("serialise");
        assert!(
            written.contains(r#""gpu_wired_limit_mb":62464"#),
            "{written}"
        );
        assert_eq!(parse_line(&written), Ok(TraceLine::Snapshot(s)));
        // A Linux trace has neither: absent, not zero.
        let TraceLine::Snapshot(l) = parse_line(&snap_json(1.5, 3)).expect("parses") else {
            panic!("not a snapshot");
        };
        assert_eq!(l.memory.gpu_wired_limit_mb, None);
        let written = serde_json::to_string(&*l).expect("serialise");
        assert!(!written.contains("gpu_wired"), "{written}");
    }

    #[test]
    fn other_log_events_are_skipped_and_started_restarts() {
        let l = r#"{"ts":"t","at":2.0,"event":"level_changed","severity":"warn","from":"green"}"#;
        assert_eq!(parse_line(l), Ok(TraceLine::Skip));
        let s = r#"{"ts":"t","at":0.0,"event":"started","severity":"info"}"#;
        assert_eq!(parse_line(s), Ok(TraceLine::Started));
        assert_eq!(parse_line("   "), Ok(TraceLine::Skip));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        for (line, want) in [
            ("garbage", "not JSON"),
            ("[1,2]", "expected a JSON object"),
            (r#"{"at":1.0}"#, "not a Snapshot"),
            (
                r#"{"event":"sample","at":1.0}"#,
                "'sample' event is not a Snapshot",
            ),
            (r#"{"event":3}"#, "'event' must be a string"),
            (
                r#"{"at":-1,"total_bytes":1,"available_bytes":1}"#,
                "non-negative",
            ),
        ] {
            let e = parse_line(line).expect_err(line);
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn the_probe_answers_from_the_snapshot() {
        let mut s = Snapshot::default();
        s.memory.available_bytes = Bytes::gib(1);
        s.pressure.kernel_level = Some(KernelLevel::Critical);
        s.mlx_processes.push(MlxProcess::test_job(42, 777));
        let mut p = TraceProbe(&s);
        let f = p.fresh().expect("fresh");
        assert_eq!(f.available, Bytes::gib(1));
        assert!(f.kernel_critical);
        assert_eq!(p.start_time(Pid(42)), Some(777));
        assert_eq!(p.start_time(Pid(43)), None);
    }

    #[test]
    fn red_on_an_mlx_job_terminates_it_and_a_restart_resets_the_clock() {
        let cfg = Config::embedded().expect("defaults");
        let mut lines = Vec::new();
        for t in 0..8u64 {
            let mut s = Snapshot {
                at: Duration::from_secs(t),
                ..Default::default()
            };
            s.memory.total_bytes = Bytes::gib(16);
            // At 0 s the job is 4 GiB smaller and memory green: it eats
            // the fall to red (issue 26: only a job that eats is stopped).
            s.memory.available_bytes = Bytes::mib(if t == 0 { 6000 } else { 1500 });
            let mut job = MlxProcess::test_job(4242, 100);
            if t == 0 {
                job.footprint_bytes = Bytes::gib(5);
            }
            s.mlx_processes.push(job);
            lines.push(TraceLine::Snapshot(Box::new(s)));
        }
        let r = replay(&lines, &cfg);
        let terms: Vec<f64> = r
            .decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Action {
                    at,
                    action: Action::Signal(o),
                    ..
                } if o.signal == Sig::Term => Some(at.as_secs_f64()),
                _ => None,
            })
            .collect();
        assert_eq!(
            terms,
            vec![6.0],
            "SIGTERM after terminate_after (5 s of red)"
        );
        assert_eq!(r.final_level, Level::Red);

        // A `started` line between runs: the second run starts from green
        // and its timers start again.
        let mut two = lines.clone();
        two.push(TraceLine::Started);
        two.extend(lines.clone());
        let r2 = replay(&two, &cfg);
        assert_eq!(r2.runs, 2);
        let changes = r2
            .decisions
            .iter()
            .filter(|d| matches!(d, Decision::LevelChanged { .. }))
            .count();
        assert_eq!(changes, 2);
    }
}
