//! One decision cycle — classify → policy → act, with the policy told what
//! became of each signal — and the fields of the events it produces. The
//! daemon runs it live; `replay` runs it on recorded Snapshots; both log
//! decisions through the same functions, so their records compare.

use crate::act::Actuator;
use crate::action::{Action, Outcome, Sig, SignalOrder};
use crate::classify::{Classification, Classifier};
use crate::config::Config;
use crate::model::secs;
use crate::model::Scope;
use crate::model::{Level, Pid, Snapshot};
use crate::policy::Policy;
use crate::sample::Probe;
use serde_json::{json, Value};
use std::time::Duration;

/// What one cycle decided: the classification and each action with what
/// became of it.
pub struct Cycle {
    pub classification: Classification,
    pub actions: Vec<(Action, Outcome)>,
}

/// classify → policy → act, with the policy told what became of each
/// signal: the part of the daemon's cycle that decides. Replay runs it on
/// recorded Snapshots; the daemon does the same steps live.
pub struct Engine {
    classifier: Classifier,
    policy: Policy,
}

impl Engine {
    pub fn new(self_pid: Pid, scope: Scope) -> Engine {
        Engine {
            classifier: Classifier::default(),
            policy: Policy::new(self_pid, scope),
        }
    }

    pub fn level(&self) -> Level {
        self.classifier.level()
    }

    /// A new scope (config reload): the level and the incident are kept —
    /// a reload during red must not forget a victim or a cascade stop.
    pub fn rescope(&mut self, self_pid: Pid, scope: Scope) {
        self.policy.set_scope(self_pid, scope);
    }

    /// What became of a SIGTERM that waited for its pre_terminate hook
    /// (`Outcome::Pending` in its cycle); `at` is when, on the snapshot clock.
    pub fn signal_finished(&mut self, order: &SignalOrder, outcome: &Outcome, at: Duration) {
        self.policy.signal_finished(order, outcome, at);
    }

    pub fn step(
        &mut self,
        snap: &Snapshot,
        cfg: &Config,
        actuator: &mut Actuator,
        probe: &mut dyn Probe,
    ) -> Cycle {
        let classification = self.classifier.step(snap, &cfg.thresholds);
        actuator.set_level(classification.level);
        let mut actions = Vec::new();
        for a in self.policy.step(snap, &classification, cfg) {
            let outcome = actuator.act(&a, probe);
            if let Action::Signal(o) = &a {
                self.policy.signal_outcome(o, &outcome);
            }
            actions.push((a, outcome));
        }
        Cycle {
            classification,
            actions,
        }
    }
}

/// The fields of a `level_changed` event.
pub fn level_changed_fields(snap: &Snapshot, c: &Classification) -> Value {
    let lines = c.lines;
    let text: Vec<String> = c.reasons.iter().map(|r| r.to_string()).collect();
    json!({
        "at": secs(snap.at),
        "from": c.previous,
        "to": c.level,
        "available_bytes": snap.memory.available_bytes,
        "total_bytes": snap.memory.total_bytes,
        "yellow_below_bytes": lines.yellow,
        "red_below_bytes": lines.red,
        "reasons": c.reasons,
        "reasons_text": text.join("; "),
    })
}

/// The event name and fields of an action and what became of it.
pub fn action_fields(a: &Action, outcome: &Outcome) -> (&'static str, Value) {
    let (event, mut v) = match a {
        Action::Notify(n) => ("notified", json!(n)),
        Action::Signal(o) => {
            let ev = match (o.signal, outcome) {
                (Sig::Term, Outcome::Pending) => "terminate_pending",
                (Sig::Term, _) => "terminate_sent",
                (Sig::Kill, _) => "kill_sent",
            };
            let mut v = serde_json::to_value(&o.process).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("signal".into(), json!(o.signal));
                m.insert("reason".into(), json!(o.reason));
                m.insert("available_bytes".into(), json!(o.available_bytes));
                // A signal sent through a handle that pins the process
                // (pidfd / audit token), or by kill(2): only when one was sent.
                if *outcome == Outcome::Done {
                    m.insert("pinned".into(), json!(crate::sys::unix::pins_signals()));
                }
            }
            (ev, v)
        }
        Action::NoVictim {
            reason,
            mlx_processes,
        } => (
            "no_victim",
            json!({ "reason": reason, "mlx_processes": mlx_processes }),
        ),
        Action::RedNotMlx {
            reason,
            top_processes,
            contributors,
        } => (
            "red_not_mlx",
            json!({ "reason": reason, "top_processes": top_processes, "contributors": contributors }),
        ),
        Action::Freed {
            processes,
            freed_bytes,
            available_before_bytes,
            available_after_bytes,
            others_growth_bytes,
            after_secs,
        } => (
            "victim_freed",
            json!({
                "pids": processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
                "name": processes.first().map(|p| p.name.clone()),
                "freed_bytes": freed_bytes,
                "available_before_bytes": available_before_bytes,
                "available_after_bytes": available_after_bytes,
                "others_growth_bytes": others_growth_bytes,
                "after_secs": after_secs,
            }),
        ),
        Action::VictimExited {
            process,
            after_secs,
            available_before_bytes,
            available_after_bytes,
            killed,
        } => (
            "victim_exited",
            json!({
                "pid": process.pid, "name": process.name, "start_time": process.start_time,
                "peak_bytes": process.peak_bytes, "after_secs": after_secs, "killed": killed,
                "available_before_bytes": available_before_bytes,
                "available_after_bytes": available_after_bytes,
            }),
        ),
    };
    if let Some(m) = v.as_object_mut() {
        m.insert("dry_run".into(), json!(outcome.is_dry_run()));
        m.insert("result".into(), json!(outcome));
    }
    (event, v)
}
