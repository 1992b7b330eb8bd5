//! Pure policy: Level + Snapshot → Actions. Owns incidents, grace periods,
//! escalation and victim choice, all timed on `Snapshot::at`. No I/O.

use crate::action::{Action, Notice, NoticeKind, Outcome, Sig, SignalOrder};
use crate::classify::{Classification, Reason};
use crate::cmdline::display_name;
use crate::config::{Config, NeverKill};
use crate::model::Scope;
use crate::model::{Bytes, Level, MlxProcess, Pid, Snapshot, TopProcess};
use std::collections::HashMap;
use std::time::Duration;

/// The same kind of notice is not repeated across incidents faster than this.
pub const NOTIFY_REPEAT: Duration = Duration::from_secs(60);

/// Who may never be signalled, whatever memory says (issue 12): pid 1,
/// headroom itself and its ancestors, other users' processes out of scope,
/// and `never_kill` (pids, the kernel's name, the program string — never
/// the arguments).
pub struct Guard<'a> {
    pub self_pid: Pid,
    pub scope: &'a Scope,
    pub never_kill: &'a [NeverKill],
    /// headroom's parent chain, from the same snapshot.
    pub ancestors: &'a [Pid],
}

impl Guard<'_> {
    /// Why `p` may not be signalled, or `None` if it may.
    pub fn ineligible(&self, p: &MlxProcess) -> Option<String> {
        if p.pid.0 <= 1 {
            return Some(format!("pid {} is init or invalid", p.pid));
        }
        if p.pid == self.self_pid {
            return Some("it is headroom itself".into());
        }
        if self.ancestors.contains(&p.pid) {
            return Some("it is an ancestor of headroom (headroom runs under it)".into());
        }
        if !self.scope.may_signal(p.uid) {
            return Some(format!(
                "uid {} is another user's (as root, only users listed in actions.users are stopped)",
                p.uid
            ));
        }
        for n in self.never_kill {
            match n {
                NeverKill::Pid(pid) if *pid == p.pid.0 => {
                    return Some(format!("pid {pid} is in actions.never_kill"))
                }
                NeverKill::Pattern(re) if re.is_match(&p.name) || re.is_match(&p.program) => {
                    return Some(format!("it matches actions.never_kill '{}'", re.as_str()))
                }
                _ => {}
            }
        }
        None
    }
}

/// The victim: the eligible MLX process of at least `min_footprint` with
/// the largest footprint (ties: fastest growth, then lowest pid, so the
/// choice is deterministic). `Err` says why there is none, naming the
/// largest candidate and its size.
pub fn choose_victim<'a>(
    procs: &'a [MlxProcess],
    guard: &Guard,
    min_footprint: Bytes,
) -> Result<&'a MlxProcess, String> {
    let order = |a: &&MlxProcess, b: &&MlxProcess| {
        a.footprint_bytes
            .cmp(&b.footprint_bytes)
            .then(a.growth_bytes_per_sec.total_cmp(&b.growth_bytes_per_sec))
            .then(b.pid.cmp(&a.pid))
    };
    let eligible = procs.iter().filter(|p| guard.ineligible(p).is_none());
    if let Some(p) = eligible
        .clone()
        .filter(|p| p.footprint_bytes >= min_footprint)
        .max_by(order)
    {
        return Ok(p);
    }
    if procs.is_empty() {
        return Err("no MLX process is running: the memory is used by something else".into());
    }
    if let Some(p) = eligible.max_by(order) {
        return Err(format!(
            "the largest MLX process, {} (pid {}), uses {}, below actions.min_victim_footprint {min_footprint}: stopping it would not free enough to matter",
            display_name(p),
            p.pid,
            p.footprint_bytes
        ));
    }
    let why_not: Vec<String> = procs
        .iter()
        .filter_map(|p| guard.ineligible(p).map(|w| format!("pid {}: {w}", p.pid)))
        .collect();
    Err(format!("no eligible MLX process ({})", why_not.join("; ")))
}

/// The victim must be what eats the memory: an MLX process that is not
/// growing, while a larger process that is not MLX holds the machine, is
/// not stopped (issue 12 review: idle MLX jobs were stopped one by one for
/// a non-MLX hog). Known only once the snapshot lists the largest
/// processes (read while red); without that list the victim stands.
fn not_the_eater<'a>(p: &'a MlxProcess, s: &Snapshot) -> Result<&'a MlxProcess, String> {
    let hog = s
        .top_processes
        .iter()
        .filter(|t| !t.mlx && t.pid != p.pid)
        .max_by_key(|t| t.footprint_bytes);
    match hog {
        Some(h) if h.footprint_bytes > p.footprint_bytes && p.growth_bytes_per_sec <= 0.0 => {
            Err(format!(
                "the largest MLX process, {} (pid {}, {}), is not growing and {} (pid {}, {}) is larger and not MLX: stopping the MLX job would not stop what fills memory",
                display_name(p),
                p.pid,
                p.footprint_bytes,
                crate::cmdline::printable(&h.name),
                h.pid,
                h.footprint_bytes
            ))
        }
        _ => Ok(p),
    }
}

/// "firefox (pid 12, uid 1000) 2.60 GiB, mlx_lm.lora (pid 40) 1.10 GiB [MLX]".
pub fn name_top(top: &[TopProcess]) -> String {
    let one = |t: &TopProcess| {
        let uid = t.uid.map(|u| format!(", uid {u}")).unwrap_or_default();
        let mlx = if t.mlx { " [MLX]" } else { "" };
        format!(
            "{} (pid {}{uid}) {}{mlx}",
            crate::cmdline::printable(&t.name),
            t.pid,
            t.footprint_bytes
        )
    };
    top.iter().map(one).collect::<Vec<_>>().join(", ")
}

struct Victim {
    process: MlxProcess,
    term_at: Duration,
    /// When the SIGKILL was ordered; `None` before (or when it was not sent).
    killed_at: Option<Duration>,
    /// Said that the victim outlives its SIGKILL (once per victim).
    stuck_said: bool,
    available_before: Bytes,
    /// The SIGTERM waits for its pre_terminate hook (`Outcome::Pending`):
    /// nothing more is ordered for this victim until it is sent or not.
    waiting: bool,
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
    victim: Option<Victim>,
    /// When the last victim exited: nothing more is signalled on that same
    /// snapshot, so its freed memory shows in a fresh measurement first.
    settled_after: Option<Duration>,
    /// What is said once per red period; cleared when red ends.
    red: RedPeriod,
}

/// What holds for one continuous stretch of red.
#[derive(Default)]
struct RedPeriod {
    no_victim_reported: bool,
    /// A termination freed less than half its victim's footprint: memory is
    /// not MLX's to give back, so nothing more is signalled (no cascades).
    cascade_stop: Option<String>,
    cascade_said: bool,
    /// When red was first found with nobody to stop and why, and whether
    /// the largest processes have been named (`red_not_mlx`).
    nobody: Option<(Duration, String)>,
    nobody_said: bool,
}

/// What one red step is judged on: the snapshot, the settings, who may
/// be signalled, the red line, when red began and why it is red.
struct RedStep<'a> {
    s: &'a Snapshot,
    cfg: &'a crate::config::Actions,
    guard: Guard<'a>,
    red_line: Bytes,
    red_since: Duration,
    why: &'a str,
}

/// How long the notice that names the largest processes waits for a sample
/// that lists them (the daemon starts reading them once red).
pub const TOP_WAIT: Duration = Duration::from_secs(2);

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
    let remedy = crate::cmdline::remedy(&p.cmdline)
        .map(|r| format!(". Next time: {r}"))
        .unwrap_or_default();
    format!(
        "{} (pid {}) uses {}{growth}{remedy}",
        crate::cmdline::key_flags_of(&display_name(p), &p.cmdline),
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

    /// A new scope (config reload), keeping the incident: its victim, the
    /// grace period and what was said stay (issue 12 review: a reload
    /// during red allowed a second SIGTERM in the same red period).
    pub fn set_scope(&mut self, self_pid: Pid, scope: Scope) {
        self.self_pid = self_pid;
        self.scope = scope;
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
        let red_line = c.lines.red;
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
                    s.at,
                    Notice {
                        kind: NoticeKind::Recovered,
                        title: "Memory recovered".into(),
                        body,
                        pid: None,
                    },
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
                    let freed = s.memory.available_bytes.saturating_sub(v.available_before);
                    if freed.0.saturating_mul(2) < v.process.footprint_bytes.0 {
                        inc.red.cascade_stop = Some(format!(
                            "stopping {} (pid {}, {}) freed only {}: the memory is held by something else, so no further process is stopped while memory stays red",
                            display_name(&v.process),
                            v.process.pid,
                            v.process.footprint_bytes,
                            freed
                        ));
                    }
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
                    s.at,
                    Notice {
                        kind: NoticeKind::Yellow,
                        title,
                        body,
                        pid: top.map(|p| p.pid),
                    },
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
                    s.at,
                    Notice {
                        kind: NoticeKind::Red,
                        title,
                        body,
                        pid: top.map(|p| p.pid),
                    },
                    &mut out,
                );
            }
            let red_since = *inc.red_since.get_or_insert(s.at);
            let st = RedStep {
                s,
                cfg,
                guard: Guard {
                    self_pid: self.self_pid,
                    scope: &self.scope,
                    never_kill: &cfg.never_kill,
                    ancestors: &s.ancestors,
                },
                red_line,
                red_since,
                why: &why,
            };
            let mut red = std::mem::take(&mut inc.red);
            let stopping = Policy::red(&st, &mut inc, &mut red, &mut out);
            if let Some((p, reason)) = stopping {
                let short = display_name(&p);
                let title = if cfg.dry_run {
                    format!("Dry run: would stop {short} (pid {})", p.pid)
                } else {
                    format!("Stopping {short} (pid {})", p.pid)
                };
                let body = format!("{}. Why: {reason}.", describe(&p));
                self.notice(
                    cfg,
                    &mut Vec::new(),
                    s.at,
                    Notice {
                        kind: NoticeKind::Terminated,
                        title,
                        body,
                        pid: Some(p.pid),
                    },
                    &mut out,
                );
            }
            if red.nobody.is_some() && !red.nobody_said {
                self.name_the_holders(s, cfg, &mut inc, &mut red, &why, &mut out);
            }
            inc.red = red;
        } else {
            inc.red_since = None;
            inc.red = RedPeriod::default();
        }
        self.incident = Some(inc);
        out
    }

    /// Red held: escalate the victim (`escalate`), or choose one and order
    /// its SIGTERM (`choose_and_terminate`), or say why nobody
    /// (`report_no_victim`). Returns the process a SIGTERM was ordered for
    /// and why (its notice is posted by the caller); the notice about nobody
    /// to stop is `name_the_holders`'s.
    fn red(
        st: &RedStep,
        inc: &mut Incident,
        red: &mut RedPeriod,
        out: &mut Vec<Action>,
    ) -> Option<(MlxProcess, String)> {
        let s = st.s;
        // Red held only by the hysteresis band (memory is back above the red
        // line, the kernel not critical) starts and escalates nothing.
        let critical = s.pressure.kernel_level == Some(crate::model::KernelLevel::Critical);
        if s.memory.available_bytes >= st.red_line && !critical {
            inc.red_since = None; // the grace period restarts below the line
            return None;
        }
        if let Some(v) = inc.victim.as_mut() {
            Policy::escalate(st, v, out);
            return None;
        }
        if inc.settled_after.is_some_and(|t| s.at <= t) {
            return None;
        }
        if let Some(reason) = red.cascade_stop.clone() {
            if !red.cascade_said {
                red.cascade_said = true;
                red.no_victim_reported = true;
                if !red.nobody_said {
                    red.nobody = Some((s.at, reason.clone()));
                }
                out.push(Action::NoVictim {
                    reason,
                    mlx_processes: s.mlx_processes.len(),
                });
            }
            return None;
        }
        Policy::choose_and_terminate(st, inc, red, out)
    }

    /// The victim's SIGTERM is out: a SIGKILL once it outlives `kill_after`
    /// or memory falls below half the kill floor; one that outlives its
    /// SIGKILL is reported once. Never a second victim.
    fn escalate(st: &RedStep, v: &mut Victim, out: &mut Vec<Action>) {
        let (s, cfg) = (st.s, st.cfg);
        let avail = s.memory.available_bytes;
        if v.waiting {
            return; // its SIGTERM is not out yet: no SIGKILL, no second victim
        }
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
        let half_floor = Bytes(cfg.kill_floor.resolve(s.memory.total_bytes).0 / 2);
        let waited = s.at.saturating_sub(v.term_at);
        let reason = if avail < half_floor {
            format!("available {avail} fell below half of actions.kill_floor ({half_floor}) after SIGTERM")
        } else if waited >= cfg.kill_after {
            format!(
                "still alive {:.1} s after SIGTERM (actions.kill_after {:?})",
                waited.as_secs_f64(),
                cfg.kill_after
            )
        } else {
            return;
        };
        v.killed_at = Some(s.at);
        let process = v.find_in(s).unwrap_or(&v.process).clone();
        // Eligibility is checked again before the SIGKILL: a config
        // reload may have put the victim in never_kill since the
        // SIGTERM (found by tests/props.rs, issue 9).
        if let Some(why) = st.guard.ineligible(&process) {
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
            red_line_bytes: st.red_line,
            reason,
        }));
    }

    /// Red held past the grace period (or below the kill floor) with no
    /// victim yet: choose one and order its SIGTERM, or report why nobody.
    fn choose_and_terminate(
        st: &RedStep,
        inc: &mut Incident,
        red: &mut RedPeriod,
        out: &mut Vec<Action>,
    ) -> Option<(MlxProcess, String)> {
        let (s, cfg) = (st.s, st.cfg);
        let total = s.memory.total_bytes;
        let avail = s.memory.available_bytes;
        let floor = cfg.kill_floor.resolve(total);
        let held = s.at.saturating_sub(st.red_since);
        let reason = if avail < floor {
            format!("available {avail} below actions.kill_floor {floor}")
        } else if held >= cfg.terminate_after {
            format!(
                "red for {:.1} s (actions.terminate_after {:?}): {}",
                held.as_secs_f64(),
                cfg.terminate_after,
                st.why
            )
        } else {
            return None;
        };
        if !cfg.terminate {
            Policy::report_no_victim(s, red, "actions.terminate is false".into(), out);
            return None;
        }
        let min = cfg.min_victim_footprint.resolve(total);
        match choose_victim(&s.mlx_processes, &st.guard, min).and_then(|p| not_the_eater(p, s)) {
            Ok(p) => {
                inc.victim = Some(Victim {
                    process: p.clone(),
                    term_at: s.at,
                    killed_at: None,
                    stuck_said: false,
                    available_before: avail,
                    waiting: false,
                });
                out.push(Action::Signal(SignalOrder {
                    signal: Sig::Term,
                    process: p.clone(),
                    available_bytes: avail,
                    red_line_bytes: st.red_line,
                    reason: reason.clone(),
                }));
                Some((p.clone(), reason))
            }
            Err(why) => {
                Policy::report_no_victim(s, red, why, out);
                None
            }
        }
    }

    /// Nobody may be stopped, and why: said once per red period (the
    /// largest processes are named later, by `name_the_holders`).
    fn report_no_victim(s: &Snapshot, red: &mut RedPeriod, reason: String, out: &mut Vec<Action>) {
        if red.no_victim_reported {
            return;
        }
        red.no_victim_reported = true;
        red.nobody = Some((s.at, reason.clone()));
        out.push(Action::NoVictim {
            reason,
            mlx_processes: s.mlx_processes.len(),
        });
    }

    /// Nobody may be stopped while red: name who holds the memory — a
    /// `red_not_mlx` event and the notice, with the largest processes from
    /// the snapshot. Waits up to TOP_WAIT for a snapshot that lists them.
    fn name_the_holders(
        &mut self,
        s: &Snapshot,
        cfg: &crate::config::Actions,
        inc: &mut Incident,
        red: &mut RedPeriod,
        why: &str,
        out: &mut Vec<Action>,
    ) {
        let Some((since, reason)) = red.nobody.clone() else {
            return;
        };
        if s.top_processes.is_empty() && s.at.saturating_sub(since) < TOP_WAIT {
            return;
        }
        red.nobody_said = true;
        let body = if s.top_processes.is_empty() {
            format!("{reason}. {why}.")
        } else {
            out.push(Action::RedNotMlx {
                reason: reason.clone(),
                top_processes: s.top_processes.clone(),
            });
            format!(
                "Using the most memory: {}. headroom only stops MLX jobs; {reason}. {why}.",
                name_top(&s.top_processes)
            )
        };
        self.notice(
            cfg,
            &mut inc.notified,
            s.at,
            Notice {
                kind: NoticeKind::NoVictim,
                title: "Memory red: nothing headroom may stop".into(),
                body,
                pid: None,
            },
            out,
        );
    }

    /// What became of a signal this policy ordered. A SIGTERM that was not
    /// sent (memory recovered, pid gone or reused) leaves no victim behind,
    /// so a later sample decides afresh; a SIGKILL not sent may be ordered
    /// again. A SIGTERM handed to its pre_terminate hook (`Pending`) holds
    /// the victim: nothing more is ordered for it until `signal_finished`.
    pub fn signal_outcome(&mut self, order: &SignalOrder, outcome: &Outcome) {
        if matches!(outcome, Outcome::Done | Outcome::DryRun) {
            return;
        }
        let Some(v) = self.victim_of(order) else {
            return;
        };
        match (outcome, order.signal) {
            (Outcome::Pending, _) => v.waiting = true,
            (_, Sig::Term) => {
                if let Some(inc) = self.incident.as_mut() {
                    inc.victim = None;
                }
            }
            (_, Sig::Kill) => v.killed_at = None,
        }
    }

    /// What became of a SIGTERM that waited for its hook, `at` on the
    /// snapshot clock. Sent: `kill_after` counts from `at`, when the victim
    /// got it, not from the decision. Not sent: as `signal_outcome`.
    pub fn signal_finished(&mut self, order: &SignalOrder, outcome: &Outcome, at: Duration) {
        if let Some(v) = self.victim_of(order) {
            v.waiting = false;
            if matches!(outcome, Outcome::Done | Outcome::DryRun) && order.signal == Sig::Term {
                v.term_at = at;
            }
        }
        self.signal_outcome(order, outcome);
    }

    /// The current victim, if `order` is about that very process.
    fn victim_of(&mut self, order: &SignalOrder) -> Option<&mut Victim> {
        self.incident
            .as_mut()
            .and_then(|inc| inc.victim.as_mut())
            .filter(|v| {
                v.process.pid == order.process.pid
                    && v.process.start_time == order.process.start_time
            })
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
    fn notice(
        &mut self,
        cfg: &crate::config::Actions,
        once: &mut Vec<NoticeKind>,
        at: Duration,
        n: Notice,
        out: &mut Vec<Action>,
    ) {
        let kind = n.kind;
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
        out.push(Action::Notify(n));
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
