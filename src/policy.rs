//! Pure policy: Level + Snapshot → Actions. Owns incidents, grace periods,
//! escalation and victim choice, all timed on `Snapshot::at`. No I/O.

use crate::action::{Action, Contributor, Notice, NoticeKind, Outcome, Sig, SignalOrder};
use crate::attribute::{and_more, grown, Assessment, Attribution, Member};
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

/// The victims: the eligible processes of the MLX job that eats
/// (`attribute`: its growth a real share of the fall), most growth first,
/// each of which grew itself, together at least `min_footprint`. The MLX
/// job with the most growth that may be stopped is chosen; an MLX job that
/// does not eat is never chosen, however large (issue 26). `Err` says why
/// there is none, naming who eats.
pub fn choose_victims<'a>(
    a: &'a Assessment<'a>,
    guard: &Guard,
    min_footprint: Bytes,
) -> Result<Vec<&'a MlxProcess>, String> {
    if a.mlx_jobs.is_empty() {
        return Err("no MLX process is running: the memory is used by something else".into());
    }
    let mut refused = Vec::new();
    for j in a.eating_mlx() {
        let (ok, not): (Vec<&Member>, Vec<&Member>) = j
            .eating_members()
            .partition(|m| guard.ineligible(m.process).is_none());
        let size = Bytes(ok.iter().map(|m| m.process.footprint_bytes.0).sum());
        if !ok.is_empty() && size >= min_footprint {
            return Ok(ok.iter().map(|m| m.process).collect());
        }
        let lead = j.members.first().map(|m| m.process);
        let who = lead
            .map(|p| format!("{} (pid {})", display_name(p), p.pid))
            .unwrap_or_default();
        let why = if let Some(m) = not.first() {
            guard.ineligible(m.process).unwrap_or_default()
        } else if ok.is_empty() {
            "none of its processes grew on its own".into()
        } else {
            format!("it uses {size}, below actions.min_victim_footprint {min_footprint}: stopping it would not free enough to matter")
        };
        refused.push(format!(
            "the MLX job eating, {who}, {}, but may not be stopped: {why}",
            j.made()
        ));
    }
    if !refused.is_empty() {
        return Err(refused.join("; "));
    }
    Err(format!(
        "no MLX job is eating: MLX processes grew {} {} (a job must make at least {} % of it and {})",
        grown(a.mlx_growth()),
        a.of_the_fall(),
        (crate::attribute::MAJOR_SHARE * 100.0) as u64,
        crate::attribute::MIN_GROWTH
    ))
}

/// Who eats, to be named when nobody may be stopped: the listed jobs
/// that eat, else (jobs not read yet) the MLX jobs that eat.
pub fn contributors(a: &Assessment) -> Vec<Contributor> {
    let listed: Vec<Contributor> = a
        .eating_jobs()
        .take(crate::sample::TOP_PROCESSES)
        .map(|j| Contributor {
            job: j.job.job,
            name: j.job.name.clone(),
            uid: j.job.uid,
            processes: j.job.processes,
            mlx: j.job.mlx,
            growth_bytes: grown(j.growth),
            fall_bytes: j.fall,
            secs: j.secs,
            text: j.describe(),
        })
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    a.eating_mlx()
        .take(crate::sample::TOP_PROCESSES)
        .filter_map(|j| {
            let p = j.members.first()?.process;
            Some(Contributor {
                job: j.job,
                name: display_name(p),
                uid: Some(p.uid),
                processes: j.members.len() as u32,
                mlx: true,
                growth_bytes: grown(j.growth),
                fall_bytes: j.fall,
                secs: j.secs,
                text: format!(
                    "{} (pid group {}, uid {}, MLX) {}",
                    and_more(&display_name(p), j.members.len()),
                    j.job,
                    p.uid,
                    j.made()
                ),
            })
        })
        .collect()
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

/// A stop whose processes are all gone: what it freed is measured once
/// their memory is back — at least half of what they held came back and
/// available memory stopped rising (at least SETTLE_MIN after the exit), or
/// SETTLE_MAX passed — with what the other jobs grew since the SIGTERM
/// added back (issue 26: "freed" read 50 ms
/// after the exit, with a second eater's growth subtracted, blocked the
/// second eater). Until then no other job is stopped, unless available
/// memory is below `actions.kill_floor`.
struct Settling {
    processes: Vec<MlxProcess>,
    term_at: Duration,
    exited_at: Duration,
    available_before: Bytes,
    /// Available at the last sample, to see it stop rising.
    last: Bytes,
    /// What the stopped processes held at the SIGTERM.
    held: Bytes,
    /// What every other job held at the SIGTERM (listed jobs, else MLX
    /// processes by job), to add their growth back.
    others_at_term: Vec<(Pid, u64)>,
}

/// How long after the exit available memory may still be rising before
/// "freed" is read…
pub const SETTLE_MIN: Duration = Duration::from_millis(250);
/// …a rise smaller than this between two samples is settled…
pub const SETTLE_STEP: Bytes = Bytes(16 * Bytes::MIB);
/// …and "freed" is read at the latest this long after the exit.
pub const SETTLE_MAX: Duration = Duration::from_secs(3);

/// What each job other than `skip`'s holds: the listed jobs when there are
/// any, else the MLX processes summed by job.
fn holdings(s: &Snapshot, skip: &[Pid]) -> Vec<(Pid, u64)> {
    let mut out: Vec<(Pid, u64)> = Vec::new();
    if !s.jobs.is_empty() {
        out.extend(s.jobs.iter().map(|j| (j.job, j.footprint_bytes.0)));
    } else {
        for p in &s.mlx_processes {
            let job = p.job_id();
            match out.iter_mut().find(|(j, _)| *j == job) {
                Some((_, v)) => *v += p.footprint_bytes.0,
                None => out.push((job, p.footprint_bytes.0)),
            }
        }
    }
    out.retain(|(j, _)| !skip.contains(j));
    out
}

/// The job of each process.
fn jobs_of(procs: &[MlxProcess]) -> Vec<Pid> {
    procs.iter().map(|p| p.job_id()).collect()
}

#[derive(Default)]
struct Incident {
    red_since: Option<Duration>,
    /// The first sample of this stretch of red: the window of who eats
    /// starts at most PRE_ROLL before it (src/attribute.rs).
    red_began: Option<Duration>,
    notified: Vec<NoticeKind>,
    /// The processes of the job being stopped (one job at a time).
    victims: Vec<Victim>,
    settling: Option<Settling>,
    /// What is said once per red period; cleared when red ends.
    red: RedPeriod,
}

/// What holds for one continuous stretch of red.
#[derive(Default)]
struct RedPeriod {
    no_victim_reported: bool,
    /// When red was first found with nobody to stop and why, and whether
    /// who holds and who eats the memory has been named (`red_not_mlx`).
    nobody: Option<(Duration, String)>,
    nobody_said: bool,
}

/// What one red step is judged on: the snapshot, who made its fall, the
/// settings, who may be signalled, the red line, when red began and why
/// it is red.
struct RedStep<'a> {
    s: &'a Snapshot,
    a: &'a Assessment<'a>,
    cfg: &'a crate::config::Actions,
    guard: Guard<'a>,
    red_line: Bytes,
    red_since: Duration,
    why: &'a str,
}

/// How long the notice that names who holds the memory waits for a sample
/// that lists the jobs (the daemon reads them while yellow or red).
pub const TOP_WAIT: Duration = Duration::from_secs(2);

pub struct Policy {
    self_pid: Pid,
    scope: Scope,
    incident: Option<Incident>,
    last_notice: HashMap<NoticeKind, Duration>,
    /// `at` of the previous snapshot, to see gaps in sampling.
    last_at: Option<Duration>,
    /// Who made memory fall, from every snapshot seen.
    attribution: Attribution,
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

/// The MLX process a yellow or red notice is about: the one that grew most
/// in the job that eats, else the largest.
fn lead<'a>(a: &Assessment<'a>, s: &'a Snapshot) -> Option<&'a MlxProcess> {
    a.eating_mlx()
        .find_map(|j| j.members.first().map(|m| m.process))
        .or_else(|| s.mlx_processes.iter().max_by_key(|p| p.footprint_bytes))
}

impl Policy {
    pub fn new(self_pid: Pid, scope: Scope) -> Policy {
        Policy {
            self_pid,
            scope,
            incident: None,
            last_notice: HashMap::new(),
            last_at: None,
            attribution: Attribution::default(),
        }
    }

    /// A new scope (config reload), keeping the incident: its victims, the
    /// grace period and what was said stay (issue 12 review: a reload
    /// during red allowed a second SIGTERM in the same red period).
    pub fn set_scope(&mut self, self_pid: Pid, scope: Scope) {
        self.self_pid = self_pid;
        self.scope = scope;
    }

    /// A victim that has been signalled and has not exited yet.
    pub fn victim_pending(&self) -> Option<&MlxProcess> {
        self.incident
            .as_ref()
            .and_then(|i| i.victims.first())
            .map(|v| &v.process)
    }

    pub fn step(&mut self, s: &Snapshot, c: &Classification, config: &Config) -> Vec<Action> {
        let cfg = &config.actions;
        let red_line = c.lines.red;
        let mut out = Vec::new();
        self.attribution.observe(s);
        let gap = self.last_at.replace(s.at).is_some_and(|prev| {
            // The longest sleep the adaptive pace may take is not a gap.
            is_gap(
                prev,
                s.at,
                config.poll_interval.max(config.poll_max_interval),
            )
        });
        if c.level == Level::Green {
            if let Some(mut inc) = self.incident.take() {
                let had_victim = !inc.victims.is_empty() || inc.settling.is_some();
                for v in std::mem::take(&mut inc.victims) {
                    if v.find_in(s).is_none() {
                        Policy::exited(&v, s, &mut out);
                    }
                }
                if let Some(st) = inc.settling.take() {
                    Policy::freed(st, s, &mut out);
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
        // Victim bookkeeping first: which have exited? When the last one
        // has, what the stop freed is measured once memory settles.
        if !inc.victims.is_empty() {
            let (gone, alive): (Vec<Victim>, Vec<Victim>) = std::mem::take(&mut inc.victims)
                .into_iter()
                .partition(|v| v.find_in(s).is_none());
            for v in &gone {
                Policy::exited(v, s, &mut out);
            }
            inc.victims = alive;
            if inc.victims.is_empty() {
                if let Some(st) = inc.settling.as_mut() {
                    st.exited_at = s.at;
                    st.last = s.memory.available_bytes;
                }
                inc.red_since = Some(s.at);
            }
        }
        if inc.victims.is_empty() {
            if let Some(st) = inc.settling.as_mut() {
                let rose = s.memory.available_bytes.saturating_sub(st.last);
                let back = s.memory.available_bytes.saturating_sub(st.available_before);
                let since = s.at.saturating_sub(st.exited_at);
                st.last = s.memory.available_bytes;
                // A leader seen exited may still have threads holding its
                // memory: "stopped rising" counts once half of it is back.
                let came_back = back.0.saturating_mul(2) >= st.held.0;
                if (since >= SETTLE_MIN && rose < SETTLE_STEP && came_back) || since >= SETTLE_MAX {
                    if let Some(st) = inc.settling.take() {
                        Policy::freed(st, s, &mut out);
                    }
                }
            }
        }

        if c.level == Level::Red {
            inc.red_began.get_or_insert(s.at);
        } else {
            inc.red_began = None;
        }
        let anchor = inc
            .red_began
            .unwrap_or(s.at)
            .saturating_sub(crate::attribute::PRE_ROLL);
        // Who eats is worked out where it is used — every red sample, and the
        // notice on entering yellow — not on every yellow sample (up to one
        // every 2 ms near the red line).
        let yellow_entry = c.level == Level::Yellow && c.previous < Level::Yellow;
        let a = (c.level == Level::Red || yellow_entry).then(|| self.attribution.assess(s, anchor));
        let lead = a.as_ref().and_then(|a| lead(a, s));
        let about = || {
            lead.map(|p| format!(" {}.", describe(p)))
                .unwrap_or_default()
        };
        let reasons: Vec<String> = c
            .reasons
            .iter()
            .filter(|r| !matches!(r, Reason::Dwell { .. }))
            .map(|r| r.to_string())
            .collect();
        let why = reasons.join("; ");

        if c.level >= Level::Yellow && c.previous < Level::Yellow {
            let title = format!("Memory {}: {} available", c.level, s.memory.available_bytes);
            if c.level == Level::Yellow {
                let body = format!("{why}.{}", about());
                self.notice(
                    cfg,
                    &mut inc.notified,
                    s.at,
                    Notice {
                        kind: NoticeKind::Yellow,
                        title,
                        body,
                        pid: lead.map(|p| p.pid),
                    },
                    &mut out,
                );
            }
        }
        if let (Level::Red, Some(a)) = (c.level, a.as_ref()) {
            if c.previous != Level::Red {
                let title = format!("Memory red: {} available", s.memory.available_bytes);
                let body = format!("{why}.{}", about());
                self.notice(
                    cfg,
                    &mut inc.notified,
                    s.at,
                    Notice {
                        kind: NoticeKind::Red,
                        title,
                        body,
                        pid: lead.map(|p| p.pid),
                    },
                    &mut out,
                );
            }
            let red_since = *inc.red_since.get_or_insert(s.at);
            let st = RedStep {
                s,
                a,
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
            if let Some((procs, reason)) = stopping {
                if let Some(p) = procs.first() {
                    let short = display_name(p);
                    let more = match procs.len() {
                        1 => String::new(),
                        n => format!(" and {} more of its job", n - 1),
                    };
                    let title = if cfg.dry_run {
                        format!("Dry run: would stop {short} (pid {}){more}", p.pid)
                    } else {
                        format!("Stopping {short} (pid {}){more}", p.pid)
                    };
                    let body = format!("{}. Why: {reason}.", describe(p));
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
            }
            if red.nobody.is_some() && !red.nobody_said {
                self.name_the_holders(s, a, cfg, &mut inc, &mut red, &why, &mut out);
            }
            inc.red = red;
        } else {
            inc.red_since = None;
            inc.red = RedPeriod::default();
        }
        self.incident = Some(inc);
        out
    }

    /// Red held: escalate the victims (`escalate`), or choose the job that
    /// eats and order its SIGTERMs (`choose_and_terminate`), or say why
    /// nobody (`report_no_victim`). Returns the processes SIGTERMs were
    /// ordered for and why (the notice is posted by the caller); the notice
    /// about nobody to stop is `name_the_holders`'s.
    fn red(
        st: &RedStep,
        inc: &mut Incident,
        red: &mut RedPeriod,
        out: &mut Vec<Action>,
    ) -> Option<(Vec<MlxProcess>, String)> {
        let s = st.s;
        // Red held only by the hysteresis band (memory is back above the red
        // line, the kernel not critical) starts and escalates nothing.
        let critical = s.pressure.kernel_level == Some(crate::model::KernelLevel::Critical);
        if s.memory.available_bytes >= st.red_line && !critical {
            inc.red_since = None; // the grace period restarts below the line
            return None;
        }
        if !inc.victims.is_empty() {
            for v in &mut inc.victims {
                Policy::escalate(st, v, out);
            }
            return None;
        }
        // Waiting for the last stop's memory to come back: never on the
        // very sample that saw the exit; after it, below the kill floor the
        // next job that eats is stopped without waiting.
        let floor = st.cfg.kill_floor.resolve(s.memory.total_bytes);
        if let Some(settling) = &inc.settling {
            if s.at <= settling.exited_at || s.memory.available_bytes >= floor {
                return None;
            }
        }
        Policy::choose_and_terminate(st, inc, red, out)
    }

    /// A victim's SIGTERM is out: a SIGKILL once it outlives `kill_after`
    /// or memory falls below half the kill floor; one that outlives its
    /// SIGKILL is reported once. No other job meanwhile.
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
            // still no other job (one at a time).
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
    /// victim yet: choose the MLX job that eats and order its SIGTERMs, or
    /// report why nobody.
    fn choose_and_terminate(
        st: &RedStep,
        inc: &mut Incident,
        red: &mut RedPeriod,
        out: &mut Vec<Action>,
    ) -> Option<(Vec<MlxProcess>, String)> {
        let (s, cfg, a) = (st.s, st.cfg, st.a);
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
        let procs = match choose_victims(a, &st.guard, min) {
            Ok(v) => v,
            Err(why) => {
                Policy::report_no_victim(s, red, why, out);
                return None;
            }
        };
        let job = procs.first().map_or(Pid(0), |p| p.job_id());
        let made = a
            .mlx_jobs
            .iter()
            .find(|j| j.job == job)
            .map(|j| j.made())
            .unwrap_or_default();
        let reason = format!("{reason}; its job {made}");
        // Below the floor the next stop may come before the last one's
        // memory settled: what that one freed is read now, not lost.
        if let Some(last) = inc.settling.take() {
            Policy::freed(last, s, out);
        }
        inc.settling = Some(Settling {
            processes: procs.iter().map(|p| (*p).clone()).collect(),
            term_at: s.at,
            exited_at: s.at,
            available_before: avail,
            last: avail,
            held: Bytes(procs.iter().map(|p| p.footprint_bytes.0).sum()),
            others_at_term: holdings(s, &[job]),
        });
        for p in &procs {
            inc.victims.push(Victim {
                process: (*p).clone(),
                term_at: s.at,
                killed_at: None,
                stuck_said: false,
                available_before: avail,
                waiting: false,
            });
            out.push(Action::Signal(SignalOrder {
                signal: Sig::Term,
                process: (*p).clone(),
                available_bytes: avail,
                red_line_bytes: st.red_line,
                reason: reason.clone(),
            }));
        }
        Some((procs.into_iter().cloned().collect(), reason))
    }

    /// Nobody may be stopped, and why: said once per red period (who holds
    /// and who eats the memory is named later, by `name_the_holders`).
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

    /// Nobody may be stopped while red: name who eats and who holds the
    /// memory — a `red_not_mlx` event and the notice, from the snapshot's
    /// jobs and largest processes. Waits up to TOP_WAIT for a snapshot that
    /// lists them.
    #[allow(clippy::too_many_arguments)]
    fn name_the_holders(
        &mut self,
        s: &Snapshot,
        a: &Assessment,
        cfg: &crate::config::Actions,
        inc: &mut Incident,
        red: &mut RedPeriod,
        why: &str,
        out: &mut Vec<Action>,
    ) {
        let Some((since, reason)) = red.nobody.clone() else {
            return;
        };
        let listed = !s.top_processes.is_empty() || !s.jobs.is_empty();
        if !listed && s.at.saturating_sub(since) < TOP_WAIT {
            return;
        }
        red.nobody_said = true;
        let contributors = contributors(a);
        let body = if !listed && contributors.is_empty() {
            format!("{reason}. {why}.")
        } else {
            let eating = if contributors.is_empty() {
                String::new()
            } else {
                let texts: Vec<&str> = contributors.iter().map(|c| c.text.as_str()).collect();
                format!("Eating the memory: {}. ", texts.join("; "))
            };
            let holding = if s.top_processes.is_empty() {
                String::new()
            } else {
                format!("Using the most memory: {}. ", name_top(&s.top_processes))
            };
            out.push(Action::RedNotMlx {
                reason: reason.clone(),
                top_processes: s.top_processes.clone(),
                contributors,
            });
            format!("{eating}{holding}headroom stops only an MLX job that eats; {reason}. {why}.")
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
                    let same = |p: &MlxProcess| {
                        p.pid == order.process.pid && p.start_time == order.process.start_time
                    };
                    inc.victims.retain(|v| !same(&v.process));
                    if let Some(st) = inc.settling.as_mut() {
                        st.processes.retain(|p| !same(p));
                    }
                    if inc.victims.is_empty() {
                        inc.settling = None;
                    }
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

    /// The victim `order` is about, if it is one.
    fn victim_of(&mut self, order: &SignalOrder) -> Option<&mut Victim> {
        self.incident.as_mut().and_then(|inc| {
            inc.victims.iter_mut().find(|v| {
                v.process.pid == order.process.pid
                    && v.process.start_time == order.process.start_time
            })
        })
    }

    fn exited(v: &Victim, s: &Snapshot, out: &mut Vec<Action>) {
        out.push(Action::VictimExited {
            process: v.process.clone(),
            after_secs: s.at.saturating_sub(v.term_at).as_secs_f64(),
            available_before_bytes: v.available_before,
            available_after_bytes: s.memory.available_bytes,
            killed: v.killed_at.is_some(),
        });
    }

    /// The stop's memory is back (or the wait is over): what it freed.
    fn freed(st: Settling, s: &Snapshot, out: &mut Vec<Action>) {
        let skip = jobs_of(&st.processes);
        let others: u64 = holdings(s, &skip)
            .iter()
            .map(|(job, now)| {
                let then = st
                    .others_at_term
                    .iter()
                    .find(|(j, _)| j == job)
                    .map_or(*now, |(_, v)| *v);
                now.saturating_sub(then)
            })
            .sum();
        let rose = s.memory.available_bytes.saturating_sub(st.available_before);
        out.push(Action::Freed {
            processes: st.processes,
            freed_bytes: Bytes(rose.0.saturating_add(others)),
            available_before_bytes: st.available_before,
            available_after_bytes: s.memory.available_bytes,
            others_growth_bytes: Bytes(others),
            after_secs: s.at.saturating_sub(st.term_at).as_secs_f64(),
        });
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
