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
//! - The window starts where available memory was highest since PRE_ROLL
//!   before red began (now, while not red) and at most `HORIZON` ago; the
//!   fall is that high point minus available now. A job that grew before
//!   that — a model loaded a minute ago, idle since — is not eating now.
//! - A process's growth over the window: its footprint now minus the most
//!   it held in the `LOOKBACK` up to the window's start (a job that gave
//!   back a cache and takes its own memory back is not growing). One first seen after
//!   the window's start is measured from when it was first seen, against the
//!   fall since then (a job found late is judged on what it did since).
//! - A job (the processes of one process group) eats when its growth is at
//!   least `MIN_GROWTH` (less is an allocator's jitter) and its share of the
//!   fall — its processes' shares summed — at least `MAJOR_SHARE`, of a fall
//!   of at least `MIN_GROWTH`.
//! - Of an eating MLX job, a process is signalled when it grew at least
//!   `MIN_MEMBER_GROWTH` and at least half an even part of what the job's
//!   growing processes grew: an idle process of the group never is.

use crate::model::{Bytes, JobUsage, MlxProcess, Pid, Snapshot};
use std::collections::VecDeque;
use std::time::Duration;

/// How far back the start of the fall is looked for.
pub const HORIZON: Duration = Duration::from_secs(60);
/// A process's baseline is the most it held in this long before the
/// window's start.
pub const LOOKBACK: Duration = Duration::from_secs(60);
/// A job eats when its growth is at least this share of the fall…
pub const MAJOR_SHARE: f64 = 0.25;
/// …and at least this much.
pub const MIN_GROWTH: Bytes = Bytes(64 * Bytes::MIB);
/// A process of an eating MLX job grew at least this much to be signalled.
pub const MIN_MEMBER_GROWTH: Bytes = Bytes(32 * Bytes::MIB);
/// The window reaches this far before red began (before now, while not red).
pub const PRE_ROLL: Duration = Duration::from_secs(10);
/// Readings closer together than this are thinned: the last one of a run
/// of fast samples (2 ms apart near the red line) stands for the run.
const THIN: Duration = Duration::from_millis(100);
/// At most this many readings are kept ((HORIZON + LOOKBACK) / THIN, and some).
const MAX_FRAMES: usize = 1300;

/// `v` as a signed size (a crafted trace's 2^64 − 1 saturates).
fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

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

/// The readings of the last `HORIZON` + `LOOKBACK`.
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

/// What one process (or one listed job) grew over its part of the window,
/// and what share of the fall over that part it made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grown {
    /// Bytes (negative when it shrank).
    pub growth: i64,
    /// The fall over the same time.
    pub fall: Bytes,
    /// How long that was, seconds.
    pub secs: f64,
    /// `growth` over `fall` (0 with no fall).
    pub share: f64,
}

/// One process of an MLX job and what it grew over the window.
#[derive(Clone, Debug)]
pub struct Member<'a> {
    pub process: &'a MlxProcess,
    pub grown: Grown,
}

/// The MLX processes of one job and what they grew together.
#[derive(Clone, Debug)]
pub struct MlxJob<'a> {
    pub job: Pid,
    /// Its processes' growth summed.
    pub growth: i64,
    /// Its processes' shares summed.
    pub share: f64,
    /// The fall over the longest part any of its processes was measured on.
    pub fall: Bytes,
    pub secs: f64,
    /// Most growth first.
    pub members: Vec<Member<'a>>,
}

/// A listed job (any user's, MLX or not) and what it grew over the window.
#[derive(Clone, Debug)]
pub struct JobGrowth<'a> {
    pub job: &'a JobUsage,
    pub growth: i64,
    pub fall: Bytes,
    pub secs: f64,
    pub share: f64,
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

/// Whether a job that grew `growth`, making `share` of a fall of `fall`,
/// eats: at least MIN_GROWTH and MAJOR_SHARE, of a fall of at least
/// MIN_GROWTH (no fall, no share: memory that is red but not falling names
/// nobody). The one rule for "eats".
pub fn eats(growth: i64, share: f64, fall: Bytes) -> bool {
    fall >= MIN_GROWTH && growth >= signed(MIN_GROWTH.0) && share >= MAJOR_SHARE
}

/// A share as a whole percentage (0 to 100).
pub fn percent(share: f64) -> u64 {
    if share.is_nan() {
        return 0;
    }
    (share * 100.0).round().clamp(0.0, 100.0) as u64
}

/// Positive growth as a size (`0 B` for none).
pub fn grown(growth: i64) -> Bytes {
    Bytes(growth.max(0) as u64)
}

impl MlxJob<'_> {
    /// "made 2.37 GiB of the 2.39 GiB fall over the last 6.0 s (99 %)".
    pub fn made(&self) -> String {
        format!(
            "made {} of the {} fall over the last {:.1} s ({} %)",
            grown(self.growth),
            self.fall,
            self.secs,
            percent(self.share)
        )
    }

    /// The processes of this job that themselves grew: at least
    /// MIN_MEMBER_GROWTH and at least half an even part of what its growing
    /// processes grew (a process that shrank lowers nobody's bar). An idle
    /// process of the group is never among them.
    pub fn eating_members(&self) -> impl Iterator<Item = &Member<'_>> {
        let n = self.members.len().max(1) as i64;
        let grew: i64 = self
            .members
            .iter()
            .map(|m| m.grown.growth.max(0))
            .fold(0, i64::saturating_add);
        let part = grew / (2 * n);
        self.members.iter().filter(move |m| {
            m.grown.growth >= signed(MIN_MEMBER_GROWTH.0) && m.grown.growth >= part
        })
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
        // The last reading floats until it is THIN after the one before it:
        // one reading per THIN, the newest always kept.
        let n = self.frames.len();
        if n >= 2 && self.frames[n - 1].at.saturating_sub(self.frames[n - 2].at) < THIN {
            self.frames.pop_back();
        }
        self.frames.push_back(frame);
        // Nothing older than the horizon (after a long gap, nothing but now).
        let edge = s.at.saturating_sub(HORIZON + LOOKBACK);
        while self.frames.len() > MAX_FRAMES || self.frames.front().is_some_and(|f| f.at < edge) {
            self.frames.pop_front();
        }
    }

    /// Who made the fall up to `s`, which must be the Snapshot observed
    /// last, in the window that starts at the high point at or after
    /// `anchor` (PRE_ROLL before red began). Before any reading, the window
    /// is empty and nobody eats.
    pub fn assess<'a>(&self, s: &'a Snapshot, anchor: Duration) -> Assessment<'a> {
        let now = s.memory.available_bytes.0;
        // The high point: the latest of the highest readings since `anchor`
        // and within the horizon.
        let anchor = anchor.max(s.at.saturating_sub(HORIZON));
        let start = self
            .frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.at >= anchor)
            .fold(None::<(usize, u64)>, |best, (i, f)| match best {
                Some((_, v)) if v > f.available => best,
                _ => Some((i, f.available)),
            })
            .map_or(self.frames.len().saturating_sub(1), |(i, _)| i);
        let (since, high) = self
            .frames
            .get(start)
            .map_or((s.at, now), |f| (f.at, f.available));
        let fall = Fall {
            since,
            secs: s.at.saturating_sub(since).as_secs_f64(),
            bytes: Bytes(high.saturating_sub(now)),
        };
        let mut mlx_jobs: Vec<MlxJob<'a>> = Vec::new();
        for p in &s.mlx_processes {
            let key = (p.pid, p.start_time);
            let grown = self.grown(start, s, p.footprint_bytes.0, |f| {
                f.procs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
            });
            let job = p.job_id();
            let m = Member { process: p, grown };
            match mlx_jobs.iter_mut().find(|j| j.job == job) {
                Some(j) => {
                    j.growth = j.growth.saturating_add(grown.growth);
                    j.share += grown.share;
                    if grown.secs > j.secs {
                        (j.fall, j.secs) = (grown.fall, grown.secs);
                    }
                    j.members.push(m);
                }
                None => mlx_jobs.push(MlxJob {
                    job,
                    growth: grown.growth,
                    share: grown.share,
                    fall: grown.fall,
                    secs: grown.secs,
                    members: vec![m],
                }),
            }
        }
        for j in &mut mlx_jobs {
            j.members.sort_by(|a, b| {
                b.grown
                    .growth
                    .cmp(&a.grown.growth)
                    .then(a.process.pid.cmp(&b.process.pid))
            });
        }
        mlx_jobs.sort_by(|a, b| b.growth.cmp(&a.growth).then(a.job.cmp(&b.job)));
        let mut jobs: Vec<JobGrowth<'a>> = s
            .jobs
            .iter()
            .map(|j| {
                let g = self.grown(start, s, j.footprint_bytes.0, |f| {
                    f.jobs.iter().find(|(k, _)| *k == j.job).map(|(_, v)| *v)
                });
                JobGrowth {
                    job: j,
                    growth: g.growth,
                    fall: g.fall,
                    secs: g.secs,
                    share: g.share,
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

    /// What one series (`get` reads it from a reading) grew up to `now_v`
    /// in the window starting at reading `start`: from its first reading at
    /// or after the start (the start itself, or its first sight after, then
    /// against the fall since then), or the most it held in the LOOKBACK
    /// before the start if that was more.
    fn grown(
        &self,
        start: usize,
        s: &Snapshot,
        now_v: u64,
        get: impl Fn(&Frame) -> Option<u64>,
    ) -> Grown {
        let now = s.memory.available_bytes.0;
        let from_t = self
            .frames
            .get(start)
            .map_or(s.at, |f| f.at)
            .saturating_sub(LOOKBACK);
        let peak = self
            .frames
            .iter()
            .take(start + 1)
            .filter(|f| f.at >= from_t)
            .filter_map(&get)
            .max();
        let (first, from) = self
            .frames
            .iter()
            .enumerate()
            .skip(start)
            .find_map(|(i, f)| get(f).map(|v| (v, i)))
            .unwrap_or((now_v, self.frames.len()));
        let base = peak.map_or(first, |p| p.max(first));
        let high = self
            .frames
            .iter()
            .skip(from)
            .map(|f| f.available)
            .max()
            .unwrap_or(now)
            .max(now);
        let t = self.frames.get(from).map_or(s.at, |f| f.at);
        let growth = signed(now_v).saturating_sub(signed(base));
        let fall = Bytes(high - now);
        Grown {
            growth,
            fall,
            secs: s.at.saturating_sub(t).as_secs_f64(),
            share: if fall.0 == 0 {
                0.0
            } else {
                growth as f64 / fall.0 as f64
            },
        }
    }
}

impl<'a> Assessment<'a> {
    /// The MLX jobs that eat, most growth first.
    pub fn eating_mlx(&self) -> impl Iterator<Item = &MlxJob<'a>> {
        let fall = self.fall.bytes;
        self.mlx_jobs
            .iter()
            .filter(move |j| eats(j.growth, j.share, fall))
    }

    /// The listed jobs that eat, most growth first.
    pub fn eating_jobs(&self) -> impl Iterator<Item = &JobGrowth<'a>> {
        let fall = self.fall.bytes;
        self.jobs
            .iter()
            .filter(move |j| eats(j.growth, j.share, fall))
    }

    /// What the MLX processes grew together over the window.
    pub fn mlx_growth(&self) -> i64 {
        self.mlx_jobs
            .iter()
            .map(|j| j.growth)
            .fold(0, i64::saturating_add)
    }

    /// "of the 4.60 GiB fall over the last 5.2 s".
    pub fn of_the_fall(&self) -> String {
        format!(
            "of the {} fall over the last {:.1} s",
            self.fall.bytes, self.fall.secs
        )
    }
}

/// "workers.py and 7 more": a job by its largest process and how many
/// others it has (the one wording of the notices, the log and `status`).
pub fn and_more(name: &str, processes: usize) -> String {
    match processes {
        0 | 1 => name.to_string(),
        n => format!("{name} and {} more", n - 1),
    }
}

impl JobGrowth<'_> {
    /// "python3 workers.py and 7 more (pid group 4120, uid 0) made 4.10 GiB
    /// of the 4.60 GiB fall (89 %)".
    pub fn describe(&self) -> String {
        let j = self.job;
        let uid = j.uid.map(|u| format!(", uid {u}")).unwrap_or_default();
        let mlx = if j.mlx { ", MLX" } else { "" };
        format!(
            "{} (pid group {}{uid}{mlx}) made {} of the {} fall over {:.1} s ({} %)",
            and_more(&crate::cmdline::printable(&j.name), j.processes as usize),
            j.job,
            grown(self.growth),
            self.fall,
            self.secs,
            percent(self.share)
        )
    }
}

#[cfg(test)]
#[path = "attribute_tests.rs"]
mod tests;
