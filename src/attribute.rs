//! Who is eating: the fall of available memory over an incident, and what
//! share of it each job made. A job is the processes of one process group,
//! summed. Pure: fed the Snapshots the policy sees, timed on `Snapshot::at`.
//!
//! The policy asks it before every signal and names its answer in every
//! notice about red (issue 26: the largest MLX process is not, by being
//! largest, the eater; an idle job was stopped while forked workers,
//! another user's job or a renamed job filled memory).
//!
//! The rule, in numbers (docs/decisions.md):
//! - The window starts where available memory was highest within the last
//!   `HORIZON`; the fall is that high point minus available now.
//! - A job's growth over the window: its footprint now minus its footprint
//!   at the window's start. A process that started inside the window grew
//!   all it holds; one first seen later than the start (and older than it)
//!   counts only from when it was first seen.
//! - A job eats when its growth is at least `MAJOR_SHARE` of the fall and at
//!   least `MIN_GROWTH` (less is an allocator's jitter), of a fall of at
//!   least `MIN_GROWTH`.
//! - Of an eating MLX job, a process is signalled when it grew at least
//!   `MIN_MEMBER_GROWTH` and at least half its even part of the job's growth:
//!   an idle process that happens to share the group is never signalled.

use crate::model::{Bytes, JobUsage, MlxProcess, Pid, Snapshot};
use std::collections::VecDeque;
use std::time::Duration;

/// How far back the start of the fall is looked for.
pub const HORIZON: Duration = Duration::from_secs(60);
/// A job eats when its growth is at least this share of the fall…
pub const MAJOR_SHARE: f64 = 0.25;
/// …and at least this much.
pub const MIN_GROWTH: Bytes = Bytes(64 * Bytes::MIB);
/// A process of an eating MLX job grew at least this much to be signalled.
pub const MIN_MEMBER_GROWTH: Bytes = Bytes(16 * Bytes::MIB);
/// Readings closer together than this are thinned: the last one of a run
/// of fast samples (2 ms apart near the red line) stands for the run.
const THIN: Duration = Duration::from_millis(100);
/// At most this many readings are kept (HORIZON / THIN, and some).
const MAX_FRAMES: usize = 700;

/// One process, pid and start time (pids are reused).
type Key = (Pid, u64);

/// What one Snapshot said, thinned to what attribution needs.
struct Frame {
    at: Duration,
    available: u64,
    /// Each MLX process's footprint.
    procs: Vec<(Key, u64)>,
    /// Each listed job's summed footprint (only while they are read).
    jobs: Vec<(Pid, u64)>,
}

/// The readings of the last `HORIZON`.
#[derive(Default)]
pub struct Attribution {
    frames: VecDeque<Frame>,
}

/// The fall of available memory over the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fall {
    /// The window's start (the high point), on the Snapshot clock.
    pub since: Duration,
    /// How long the window is, seconds.
    pub secs: f64,
    /// Available at the high point minus available now (0 when it rose).
    pub bytes: Bytes,
}

/// One process of an MLX job and what it grew over the window.
#[derive(Clone, Debug)]
pub struct Member<'a> {
    pub process: &'a MlxProcess,
    /// Bytes (negative when it shrank).
    pub growth: i64,
}

/// The MLX processes of one job and what they grew together.
#[derive(Clone, Debug)]
pub struct MlxJob<'a> {
    pub job: Pid,
    pub growth: i64,
    /// Most growth first.
    pub members: Vec<Member<'a>>,
}

/// A listed job (any user's, MLX or not) and what it grew since the first
/// reading of it in the window, against the fall over the same time.
#[derive(Clone, Debug)]
pub struct JobGrowth<'a> {
    pub job: &'a JobUsage,
    pub growth: i64,
    pub fall: Bytes,
    pub secs: f64,
}

/// Who made the fall, as of one Snapshot.
#[derive(Clone, Debug)]
pub struct Assessment<'a> {
    pub fall: Fall,
    /// The Snapshot's MLX processes by job, most growth first.
    pub mlx_jobs: Vec<MlxJob<'a>>,
    /// The Snapshot's listed jobs, most growth first (empty while not read).
    pub jobs: Vec<JobGrowth<'a>>,
}

/// Whether `growth` is a real share of `fall`: at least MAJOR_SHARE of it
/// and at least MIN_GROWTH, of a fall of at least MIN_GROWTH (no fall, no
/// share: memory that is red but not falling names nobody). The one rule
/// for "eats".
pub fn eats(growth: i64, fall: Bytes) -> bool {
    fall >= MIN_GROWTH
        && growth >= MIN_GROWTH.0 as i64
        && growth as f64 >= MAJOR_SHARE * fall.0 as f64
}

/// `part` as a whole percentage of `of` (at most 100).
pub fn percent(part: i64, of: Bytes) -> u64 {
    if of.0 == 0 || part <= 0 {
        return if part > 0 { 100 } else { 0 };
    }
    ((part as f64 / of.0 as f64) * 100.0)
        .round()
        .clamp(0.0, 100.0) as u64
}

/// Positive growth as a size (`0 B` for none).
pub fn grown(growth: i64) -> Bytes {
    Bytes(growth.max(0) as u64)
}

impl MlxJob<'_> {
    pub fn eats(&self, fall: Bytes) -> bool {
        eats(self.growth, fall)
    }

    /// The processes of this job that themselves grew: at least
    /// MIN_MEMBER_GROWTH and at least half of an even part of the job's
    /// growth. An idle process of the group is never among them.
    pub fn eating_members(&self) -> impl Iterator<Item = &Member<'_>> {
        let n = self.members.len().max(1) as i64;
        let part = self.growth / (2 * n);
        self.members
            .iter()
            .filter(move |m| m.growth >= MIN_MEMBER_GROWTH.0 as i64 && m.growth >= part)
    }
}

impl Attribution {
    /// Take in one Snapshot (every one the policy sees, any level).
    pub fn observe(&mut self, s: &Snapshot) {
        let frame = Frame {
            at: s.at,
            available: s.memory.available_bytes.0,
            procs: s
                .mlx_processes
                .iter()
                .map(|p| ((p.pid, p.start_time), p.footprint_bytes.0))
                .collect(),
            jobs: s
                .jobs
                .iter()
                .map(|j| (j.job, j.footprint_bytes.0))
                .collect(),
        };
        // A clock that went back (a replayed log spliced) starts afresh.
        if self.frames.back().is_some_and(|f| f.at > s.at) {
            self.frames.clear();
        }
        let n = self.frames.len();
        if n >= 2 && s.at.saturating_sub(self.frames[n - 2].at) < THIN {
            self.frames.pop_back();
        }
        self.frames.push_back(frame);
        // Nothing older than the horizon (after a long gap, nothing but now).
        let edge = s.at.saturating_sub(HORIZON);
        while self.frames.len() > MAX_FRAMES || self.frames.front().is_some_and(|f| f.at < edge) {
            self.frames.pop_front();
        }
    }

    /// Who made the fall up to `s`, which must be the Snapshot observed
    /// last. Before any reading, the window is empty and nobody eats.
    pub fn assess<'a>(&self, s: &'a Snapshot) -> Assessment<'a> {
        let now = s.memory.available_bytes.0;
        // The high point: the latest of the highest readings.
        let start = self
            .frames
            .iter()
            .enumerate()
            .fold(None::<(usize, u64)>, |best, (i, f)| match best {
                Some((_, v)) if v > f.available => best,
                _ => Some((i, f.available)),
            })
            .map_or(self.frames.len(), |(i, _)| i);
        let (since, high) = self
            .frames
            .get(start)
            .map_or((s.at, now), |f| (f.at, f.available));
        let fall = Fall {
            since,
            secs: s.at.saturating_sub(since).as_secs_f64(),
            bytes: Bytes(high.saturating_sub(now)),
        };
        let window = self.frames.range(start.min(self.frames.len())..);
        let mut mlx_jobs: Vec<MlxJob<'a>> = Vec::new();
        for p in &s.mlx_processes {
            let key = (p.pid, p.start_time);
            let first = window.clone().find_map(|f| {
                f.procs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (f.at, *v))
            });
            let young = p
                .started_at
                .is_some_and(|t| t.is_finite() && t >= since.as_secs_f64());
            let base = match first {
                // Present at the window's start: growth since then.
                Some((t, v)) if t == since => v,
                // Started inside the window: all it holds is new.
                _ if young => 0,
                // First seen later, older than the window: from then on.
                Some((_, v)) => v,
                None => p.footprint_bytes.0,
            };
            let growth = p.footprint_bytes.0 as i64 - base as i64;
            let job = p.job.unwrap_or(p.pid);
            let m = Member { process: p, growth };
            match mlx_jobs.iter_mut().find(|j| j.job == job) {
                Some(j) => {
                    j.growth += growth;
                    j.members.push(m);
                }
                None => mlx_jobs.push(MlxJob {
                    job,
                    growth,
                    members: vec![m],
                }),
            }
        }
        for j in &mut mlx_jobs {
            j.members.sort_by(|a, b| {
                b.growth
                    .cmp(&a.growth)
                    .then(a.process.pid.cmp(&b.process.pid))
            });
        }
        mlx_jobs.sort_by(|a, b| b.growth.cmp(&a.growth).then(a.job.cmp(&b.job)));
        let mut jobs: Vec<JobGrowth<'a>> = s
            .jobs
            .iter()
            .map(|j| {
                let first = window.clone().find_map(|f| {
                    f.jobs
                        .iter()
                        .find(|(k, _)| *k == j.job)
                        .map(|(_, v)| (f.at, f.available, *v))
                });
                let (t, avail, base) = first.unwrap_or((s.at, now, j.footprint_bytes.0));
                JobGrowth {
                    job: j,
                    growth: j.footprint_bytes.0 as i64 - base as i64,
                    fall: Bytes(avail.saturating_sub(now)),
                    secs: s.at.saturating_sub(t).as_secs_f64(),
                }
            })
            .collect();
        jobs.sort_by(|a, b| b.growth.cmp(&a.growth).then(a.job.job.cmp(&b.job.job)));
        Assessment {
            fall,
            mlx_jobs,
            jobs,
        }
    }
}

impl<'a> Assessment<'a> {
    /// The MLX jobs that eat, most growth first.
    pub fn eating_mlx(&self) -> impl Iterator<Item = &MlxJob<'a>> {
        self.mlx_jobs.iter().filter(|j| j.eats(self.fall.bytes))
    }

    /// The listed jobs that eat (over the time each was read), most first.
    pub fn eating_jobs(&self) -> impl Iterator<Item = &JobGrowth<'a>> {
        self.jobs.iter().filter(|j| eats(j.growth, j.fall))
    }

    /// What the MLX processes grew together over the window.
    pub fn mlx_growth(&self) -> i64 {
        self.mlx_jobs.iter().map(|j| j.growth).sum()
    }

    /// "of the 4.60 GiB fall over the last 5.2 s".
    pub fn of_the_fall(&self) -> String {
        format!(
            "of the {} fall over the last {:.1} s",
            self.fall.bytes, self.fall.secs
        )
    }
}

impl JobGrowth<'_> {
    /// "python3 workers.py and 7 more (pid group 4120, uid 0) made 4.10 GiB
    /// of the 4.60 GiB fall (89 %)".
    pub fn describe(&self) -> String {
        let j = self.job;
        let more = match j.processes {
            0 | 1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        let uid = j.uid.map(|u| format!(", uid {u}")).unwrap_or_default();
        let mlx = if j.mlx { ", MLX" } else { "" };
        format!(
            "{}{more} (pid group {}{uid}{mlx}) made {} of the {} fall over {:.1} s ({} %)",
            crate::cmdline::printable(&j.name),
            j.job,
            grown(self.growth),
            self.fall,
            self.secs,
            percent(self.growth, self.fall)
        )
    }
}

#[cfg(test)]
#[path = "attribute_tests.rs"]
mod tests;
