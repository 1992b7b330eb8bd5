//! Pure policy: Level + Snapshot → Actions. Owns incidents, grace periods,
//! escalation and victim choice, all timed on `Snapshot::at`. No I/O.

use crate::act::Outcome;
use crate::classify::Lines;
use crate::classify::{Classification, Reason};
use crate::config::{Config, NeverKill};
use crate::discover::Scope;
use crate::model::{Bytes, Level, MlxProcess, Pid, Snapshot};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// The same kind of notice is not repeated across incidents faster than this.
pub const NOTIFY_REPEAT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Yellow,
    Red,
    Terminated,
    NoVictim,
    Recovered,
}

/// A desktop notification to post.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub title: String,
    pub body: String,
    /// The MLX process the notice is about, if any.
    pub pid: Option<Pid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Sig {
    Term,
    Kill,
}

/// A decision to signal one process, with everything needed to check,
/// right before sending, that it is still the same process.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignalOrder {
    pub signal: Sig,
    pub process: MlxProcess,
    pub available_bytes: Bytes,
    /// Stand down if a fresh reading right before the signal is at or above this.
    pub red_line_bytes: Bytes,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Action {
    Notify(Notice),
    Signal(SignalOrder),
    /// Red called for a termination but nobody may be stopped.
    NoVictim {
        reason: String,
        mlx_processes: usize,
    },
    /// The victim has gone; memory before the SIGTERM and now.
    VictimExited {
        process: MlxProcess,
        after_secs: f64,
        available_before_bytes: Bytes,
        available_after_bytes: Bytes,
        killed: bool,
    },
}

/// Why `p` may not be signalled, or `None` if it may.
pub fn ineligible(
    p: &MlxProcess,
    self_pid: Pid,
    scope: &Scope,
    never_kill: &[NeverKill],
) -> Option<String> {
    if p.pid.0 <= 1 {
        return Some(format!("pid {} is init or invalid", p.pid));
    }
    if p.pid == self_pid {
        return Some("it is headroom itself".into());
    }
    if !scope.contains(p.uid) {
        return Some(format!("uid {} is not in scope", p.uid));
    }
    for n in never_kill {
        match n {
            NeverKill::Pid(pid) if *pid == p.pid.0 => {
                return Some(format!("pid {pid} is in actions.never_kill"))
            }
            NeverKill::Pattern(re) if re.is_match(&p.name) || re.is_match(&p.cmdline) => {
                return Some(format!("it matches actions.never_kill '{}'", re.as_str()))
            }
            _ => {}
        }
    }
    None
}

/// The victim: the eligible MLX process with the largest footprint (ties:
/// fastest growth, then lowest pid, so the choice is deterministic).
pub fn choose_victim<'a>(
    procs: &'a [MlxProcess],
    self_pid: Pid,
    scope: &Scope,
    never_kill: &[NeverKill],
) -> Option<&'a MlxProcess> {
    procs
        .iter()
        .filter(|p| ineligible(p, self_pid, scope, never_kill).is_none())
        .max_by(|a, b| {
            a.footprint_bytes
                .cmp(&b.footprint_bytes)
                .then(a.growth_bytes_per_sec.total_cmp(&b.growth_bytes_per_sec))
                .then(b.pid.cmp(&a.pid))
        })
}

struct Victim {
    process: MlxProcess,
    term_at: Duration,
    /// When the SIGKILL was ordered; `None` before (or when it was not sent).
    killed_at: Option<Duration>,
    /// Said that the victim outlives its SIGKILL (once per victim).
    stuck_said: bool,
    available_before: Bytes,
}

impl Victim {
    /// This very process (pid and start time) in `s`, if it is still there.
    fn find_in<'a>(&self, s: &'a Snapshot) -> Option<&'a MlxProcess> {
        s.mlx_processes
            .iter()
            .find(|p| p.pid == self.process.pid && p.start_time == self.process.start_time)
    }
}

#[derive(Default)]
struct Incident {
    red_since: Option<Duration>,
    notified: Vec<NoticeKind>,
    no_victim_reported: bool,
    victim: Option<Victim>,
    /// When the last victim exited: nothing more is signalled on that same
    /// snapshot, so its freed memory shows in a fresh measurement first.
    settled_after: Option<Duration>,
}

pub struct Policy {
    self_pid: Pid,
    scope: Scope,
    incident: Option<Incident>,
    last_notice: HashMap<NoticeKind, Duration>,
    /// `at` of the previous snapshot, to see gaps in sampling.
    last_at: Option<Duration>,
}

/// No snapshot for longer than this (and than `GAP_POLLS` poll intervals) is
/// a gap: the daemon was stopped (SIGSTOP) or stalled, and whether memory
/// stayed red in between is unknown.
pub const GAP_MIN: Duration = Duration::from_secs(5);
pub const GAP_POLLS: u32 = 5;

/// Whether `prev` → `now` is a gap in sampling for a daemon polling every `poll`.
pub fn is_gap(prev: Duration, now: Duration, poll: Duration) -> bool {
    now.saturating_sub(prev) > GAP_MIN.max(poll.saturating_mul(GAP_POLLS))
}

/// "mlx_lm.lora --batch-size 4 (pid 123) uses 9.10 GiB, growing 200 MiB/s.
/// Next time: retry with --batch-size 2 --grad-checkpoint."
fn describe(p: &MlxProcess) -> String {
    let growth = if p.growth_bytes_per_sec > 0.0 {
        format!(", growing {}/s", Bytes(p.growth_bytes_per_sec as u64))
    } else {
        String::new()
    };
    let remedy = crate::advise::remedy(&p.cmdline)
        .map(|r| format!(". Next time: {r}"))
        .unwrap_or_default();
    format!(
        "{} (pid {}) uses {}{growth}{remedy}",
        crate::advise::key_flags(&p.cmdline),
        p.pid,
        p.footprint_bytes
    )
}

impl Policy {
    pub fn new(self_pid: Pid, scope: Scope) -> Policy {
        Policy {
            self_pid,
            scope,
            incident: None,
            last_notice: HashMap::new(),
            last_at: None,
        }
    }

    /// Whether a victim has been signalled and has not exited yet.
    pub fn victim_pending(&self) -> Option<&MlxProcess> {
        self.incident
            .as_ref()
            .and_then(|i| i.victim.as_ref())
            .map(|v| &v.process)
    }

    pub fn step(&mut self, s: &Snapshot, c: &Classification, config: &Config) -> Vec<Action> {
        let cfg = &config.actions;
        let red_line = Lines::resolve(&config.thresholds, s.memory.total_bytes).red;
        let mut out = Vec::new();
        let gap = self.last_at.replace(s.at).is_some_and(|prev| {
            // The longest sleep the adaptive pace may take is not a gap.
            is_gap(
                prev,
                s.at,
                config.poll_interval.max(config.poll_max_interval),
            )
        });
        if c.level == Level::Green {
            if let Some(inc) = self.incident.take() {
                let had_victim = inc.victim.is_some() || inc.settled_after.is_some();
                if let Some(v) = inc.victim {
                    self.track_victim_exit(&v, s, &mut out);
                }
                if inc.notified.is_empty() && !had_victim {
                    return out;
                }
                let body = format!("Available memory is back to {}.", s.memory.available_bytes);
                self.notice(
                    cfg,
                    &mut Vec::new(),
                    NoticeKind::Recovered,
                    s.at,
                    "Memory recovered",
                    body,
                    None,
                    &mut out,
                );
            }
            return out;
        }

        let mut inc = self.incident.take().unwrap_or_default();
        if gap {
            // Red time nobody watched is not red time held: the grace period
            // starts again from this fresh sample (issue 9: SIGSTOP/SIGCONT).
            inc.red_since = None;
        }
        let top = s.mlx_processes.iter().max_by_key(|p| p.footprint_bytes);
        let about = top
            .map(|p| format!(" {}.", describe(p)))
            .unwrap_or_default();
        let reasons: Vec<String> = c
            .reasons
            .iter()
            .filter(|r| !matches!(r, Reason::Dwell { .. }))
            .map(|r| r.to_string())
            .collect();
        let why = reasons.join("; ");

        // Victim bookkeeping first: has it exited?
        if let Some(v) = &inc.victim {
            if v.find_in(s).is_none() {
                if let Some(v) = inc.victim.take() {
                    self.track_victim_exit(&v, s, &mut out);
                }
                inc.settled_after = Some(s.at);
                inc.red_since = Some(s.at);
            }
        }

        if c.level >= Level::Yellow && c.previous < Level::Yellow {
            let title = format!("Memory {}: {} available", c.level, s.memory.available_bytes);
            if c.level == Level::Yellow {
                let body = format!("{why}.{about}");
                self.notice(
                    cfg,
                    &mut inc.notified,
                    NoticeKind::Yellow,
                    s.at,
                    &title,
                    body,
                    top.map(|p| p.pid),
                    &mut out,
                );
            }
        }
        if c.level == Level::Red {
            if c.previous != Level::Red {
                let title = format!("Memory red: {} available", s.memory.available_bytes);
                let body = format!("{why}.{about}");
                self.notice(
                    cfg,
                    &mut inc.notified,
                    NoticeKind::Red,
                    s.at,
                    &title,
                    body,
                    top.map(|p| p.pid),
                    &mut out,
                );
            }
            let red_since = *inc.red_since.get_or_insert(s.at);
            self.red(s, cfg, red_line, &mut inc, red_since, &why, &mut out);
        } else {
            inc.red_since = None;
        }
        self.incident = Some(inc);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn red(
        &mut self,
        s: &Snapshot,
        cfg: &crate::config::Actions,
        red_line: Bytes,
        inc: &mut Incident,
        red_since: Duration,
        why: &str,
        out: &mut Vec<Action>,
    ) {
        let total = s.memory.total_bytes;
        let avail = s.memory.available_bytes;
        // Red held only by the hysteresis band (memory is back above the red
        // line, the kernel not critical) starts and escalates nothing.
        let critical = s.pressure.kernel_level == Some(crate::model::KernelLevel::Critical);
        if avail >= red_line && !critical {
            inc.red_since = None; // the grace period restarts below the line
            return;
        }
        let floor = cfg.kill_floor.resolve(total);
        let half_floor = Bytes(floor.0 / 2);

        if let Some(v) = inc.victim.as_mut() {
            if let Some(killed_at) = v.killed_at {
                // Still listed (an exited victim was taken above). A process
                // in uninterruptible sleep (I/O on a hung disk or network
                // file system) dies only when that I/O returns. Say so once;
                // still no second victim (one per incident).
                let waited = s.at.saturating_sub(killed_at);
                if !v.stuck_said && waited >= cfg.kill_after {
                    v.stuck_said = true;
                    out.push(Action::NoVictim {
                        reason: format!(
                            "pid {} is still alive {:.1} s after SIGKILL (likely in uninterruptible sleep, waiting on I/O); no other process is stopped until it exits",
                            v.process.pid,
                            waited.as_secs_f64()
                        ),
                        mlx_processes: s.mlx_processes.len(),
                    });
                }
                return;
            }
            let waited = s.at.saturating_sub(v.term_at);
            let reason = if avail < half_floor {
                Some(format!("available {avail} fell below half of actions.kill_floor ({half_floor}) after SIGTERM"))
            } else if waited >= cfg.kill_after {
                Some(format!(
                    "still alive {:.1} s after SIGTERM (actions.kill_after {:?})",
                    waited.as_secs_f64(),
                    cfg.kill_after
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                v.killed_at = Some(s.at);
                let process = v.find_in(s).unwrap_or(&v.process).clone();
                // Eligibility is checked again before the SIGKILL: a config
                // reload may have put the victim in never_kill since the
                // SIGTERM (found by tests/props.rs, issue 9).
                if let Some(why) = ineligible(&process, self.self_pid, &self.scope, &cfg.never_kill)
                {
                    out.push(Action::NoVictim {
                        reason: format!("no SIGKILL for pid {}: {why}", process.pid),
                        mlx_processes: s.mlx_processes.len(),
                    });
                    return;
                }
                out.push(Action::Signal(SignalOrder {
                    signal: Sig::Kill,
                    process,
                    available_bytes: avail,
                    red_line_bytes: red_line,
                    reason,
                }));
            }
            return;
        }
        if inc.settled_after.is_some_and(|t| s.at <= t) {
            return;
        }
        let held = s.at.saturating_sub(red_since);
        let reason = if avail < floor {
            format!("available {avail} below actions.kill_floor {floor}")
        } else if held >= cfg.terminate_after {
            format!(
                "red for {:.1} s (actions.terminate_after {:?}): {why}",
                held.as_secs_f64(),
                cfg.terminate_after
            )
        } else {
            return;
        };
        if !cfg.terminate {
            if !inc.no_victim_reported {
                inc.no_victim_reported = true;
                out.push(Action::NoVictim {
                    reason: "actions.terminate is false".into(),
                    mlx_processes: s.mlx_processes.len(),
                });
            }
            return;
        }
        match choose_victim(
            &s.mlx_processes,
            self.self_pid,
            &self.scope,
            &cfg.never_kill,
        ) {
            Some(p) => {
                let short = crate::advise::program_name(&p.cmdline, &p.name);
                let title = format!("Stopping {short} (pid {})", p.pid);
                let body = format!("{}. Why: {reason}.", describe(p));
                inc.victim = Some(Victim {
                    process: p.clone(),
                    term_at: s.at,
                    killed_at: None,
                    stuck_said: false,
                    available_before: avail,
                });
                out.push(Action::Signal(SignalOrder {
                    signal: Sig::Term,
                    process: p.clone(),
                    available_bytes: avail,
                    red_line_bytes: red_line,
                    reason,
                }));
                self.notice(
                    cfg,
                    &mut Vec::new(),
                    NoticeKind::Terminated,
                    s.at,
                    &title,
                    body,
                    Some(p.pid),
                    out,
                );
            }
            None if !inc.no_victim_reported => {
                inc.no_victim_reported = true;
                let reason = if s.mlx_processes.is_empty() {
                    "no MLX process is running: the memory is used by something else".to_string()
                } else {
                    let why_not: Vec<String> = s
                        .mlx_processes
                        .iter()
                        .filter_map(|p| {
                            ineligible(p, self.self_pid, &self.scope, &cfg.never_kill)
                                .map(|w| format!("pid {}: {w}", p.pid))
                        })
                        .collect();
                    format!("no eligible MLX process ({})", why_not.join("; "))
                };
                let body = format!("{reason}. {why}.");
                out.push(Action::NoVictim {
                    reason,
                    mlx_processes: s.mlx_processes.len(),
                });
                self.notice(
                    cfg,
                    &mut inc.notified,
                    NoticeKind::NoVictim,
                    s.at,
                    "Memory red: nothing headroom may stop",
                    body,
                    None,
                    out,
                );
            }
            None => {}
        }
    }

    /// What became of a signal this policy ordered. A SIGTERM that was not
    /// sent (memory recovered, pid gone or reused) leaves no victim behind,
    /// so a later sample decides afresh; a SIGKILL not sent may be ordered again.
    pub fn signal_outcome(&mut self, order: &SignalOrder, outcome: &Outcome) {
        if matches!(outcome, Outcome::Done | Outcome::DryRun) {
            return;
        }
        let Some(inc) = self.incident.as_mut() else {
            return;
        };
        let same = inc.victim.as_ref().is_some_and(|v| {
            v.process.pid == order.process.pid && v.process.start_time == order.process.start_time
        });
        if !same {
            return;
        }
        match order.signal {
            Sig::Term => inc.victim = None,
            Sig::Kill => {
                if let Some(v) = inc.victim.as_mut() {
                    v.killed_at = None;
                }
            }
        }
    }

    fn track_victim_exit(&self, v: &Victim, s: &Snapshot, out: &mut Vec<Action>) {
        if v.find_in(s).is_none() {
            out.push(Action::VictimExited {
                process: v.process.clone(),
                after_secs: s.at.saturating_sub(v.term_at).as_secs_f64(),
                available_before_bytes: v.available_before,
                available_after_bytes: s.memory.available_bytes,
                killed: v.killed_at.is_some(),
            });
        }
    }

    /// Post a notice unless notifications are off, it was already posted in
    /// this incident (`once`), or the same kind went out within NOTIFY_REPEAT.
    #[allow(clippy::too_many_arguments)]
    fn notice(
        &mut self,
        cfg: &crate::config::Actions,
        once: &mut Vec<NoticeKind>,
        kind: NoticeKind,
        at: Duration,
        title: &str,
        body: String,
        pid: Option<Pid>,
        out: &mut Vec<Action>,
    ) {
        if !cfg.notify || once.contains(&kind) {
            return;
        }
        let repeat_limited = matches!(
            kind,
            NoticeKind::Yellow | NoticeKind::Red | NoticeKind::Recovered | NoticeKind::NoVictim
        );
        if repeat_limited
            && self
                .last_notice
                .get(&kind)
                .is_some_and(|t| at.saturating_sub(*t) < NOTIFY_REPEAT)
        {
            return;
        }
        once.push(kind);
        self.last_notice.insert(kind, at);
        out.push(Action::Notify(Notice {
            kind,
            title: title.to_string(),
            body,
            pid,
        }));
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
