//! How long the daemon sleeps before the next sample: long while memory is
//! far from the red line and nothing grows, short as it closes in. Pure: the
//! daemon passes what the last samples said and the platform's floor.
//!
//! The model is earlyoom's (`sleep = distance / worst-case fill rate`, see
//! docs/performance.md), with the fill rate raised to what is actually seen:
//! the fastest MLX process's growth, or how fast MemAvailable itself fell.

use crate::classify::secs_to_red;
use crate::model::{Bytes, Level};
use std::time::Duration;

/// The fill rate assumed when nothing is seen growing: earlyoom's
/// `mem_fill_rate` (6000 MiB/s, "a fast machine filling RAM"), so a hog that
/// starts between two samples cannot cross the red line unseen by much.
pub const ASSUMED_FILL_RATE: f64 = 6000.0 * Bytes::MIB as f64;

/// Below this many bytes per second, growth is noise (a page-cache wobble,
/// an allocator returning memory late).
pub const QUIET_RATE: f64 = 16.0 * Bytes::MIB as f64;

/// The configured range and the platform's floor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// `poll.interval`: the longest sleep while anything is happening
    /// (above green, or memory falling, or an MLX process growing).
    pub base: Duration,
    /// `poll.min_interval`: the shortest regular sleep (a sleep that ends
    /// at a crossing predicted from MemAvailable's fall may be shorter:
    /// `REACTION_FLOOR`).
    pub min: Duration,
    /// `poll.max_interval`: the longest sleep while green and quiet.
    pub max: Duration,
    /// The platform's floor: on macOS host_statistics64 is rate-limited to
    /// about 2 Hz for non-Apple binaries, so sampling faster reads cached data.
    pub floor: Duration,
}

/// What the last samples said.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub level: Level,
    pub available: Bytes,
    /// The red line in bytes (thresholds resolved against total RAM).
    pub red_line: Bytes,
    /// How fast memory is being used up, bytes per second: the larger of the
    /// fastest MLX process's growth and MemAvailable's fall rate; ≤ 0 when
    /// nothing grows.
    pub fill_rate: f64,
    /// How fast MemAvailable itself fell, bytes per second (≤ 0: it did
    /// not): the only rate a crossing is predicted from. An MLX process's
    /// RSS can grow without MemAvailable falling (file-backed weights,
    /// reclaim elsewhere), and a crossing predicted from that never comes.
    pub fall_rate: f64,
    /// How many sleeps in a row ended at a predicted crossing that had not
    /// come yet: after MAX_SHORT_SLEEPS the regular sleep again.
    pub short_streak: u32,
}

/// Green and nothing filling memory: the daemon sleeps up to
/// `poll.max_interval` and lists pids only every `DISCOVER_EVERY_POLLS`
/// intervals (between those it re-measures the MLX processes it knows).
///
/// Memory that falls, but so slowly that red is QUIET_HORIZON away or more
/// at that rate, is quiet too: on a busy machine (builds, CI) MemAvailable
/// moves by more than QUIET_RATE most seconds, and listing every pid every
/// cycle there buys nothing (the sleep stays bounded by the worst-case
/// fill rate either way).
pub fn is_quiet(r: &Reading) -> bool {
    r.level == Level::Green
        && (r.fill_rate < QUIET_RATE
            || secs_to_red(r.available, r.red_line, r.fill_rate)
                .is_none_or(|s| s >= QUIET_HORIZON.as_secs_f64()))
}

/// At the fill rate seen, red this far away or more is still quiet.
pub const QUIET_HORIZON: Duration = Duration::from_secs(120);

/// While quiet, new processes are looked for every this many `poll.interval`s.
pub const DISCOVER_EVERY_POLLS: u32 = 10;

/// While memory falls toward red at a rate that is seen, the sleep ends when
/// red is reached at that rate, even sooner than `poll.min_interval`, but
/// never sooner than this: the sample lands just after the crossing instead
/// of up to `poll.min_interval` after it (issue 18: at 1 GiB/s a 50 ms
/// floor alone let memory fall up to 50 MiB past the line before the
/// SIGTERM).
pub const REACTION_FLOOR: Duration = Duration::from_millis(2);

/// The sleep before the next sample.
pub fn next_interval(l: &Limits, r: &Reading) -> Duration {
    let lo = l.min.max(l.floor);
    let hi = if is_quiet(r) {
        l.max
    } else {
        l.base.min(l.max)
    }
    .max(lo);
    let rate = r.fill_rate.max(ASSUMED_FILL_RATE);
    let secs = secs_to_red(r.available, r.red_line, rate).unwrap_or(f64::INFINITY);
    if secs <= 0.0 {
        return lo;
    }
    // `secs` is finite and positive; the clamp bounds the conversion.
    let regular = Duration::from_secs_f64(secs.min(hi.as_secs_f64())).clamp(lo, hi);
    match crossing_in(r) {
        Some(c) if c < regular && r.short_streak < MAX_SHORT_SLEEPS => {
            c.max(REACTION_FLOOR.max(l.floor))
        }
        _ => regular,
    }
}

/// At most this many sleeps in a row end at a predicted crossing that then
/// has not come (the fall slowed): a fall that stops just above the line
/// cannot keep the daemon sampling every 2 ms.
pub const MAX_SHORT_SLEEPS: u32 = 8;

/// Whether `d` is a sleep that ends at a predicted crossing (shorter than
/// the regular floor): the daemon counts them in a row for `short_streak`.
pub fn is_short(l: &Limits, d: Duration) -> bool {
    d < l.min.max(l.floor)
}

/// When red is reached at the rate MemAvailable is seen falling (not the
/// assumed worst case, not an MLX process's growth): `None` when it is not
/// falling faster than QUIET_RATE, or is already red.
fn crossing_in(r: &Reading) -> Option<Duration> {
    // NaN is not a rate: `is_nan` first, then compare.
    if r.fall_rate.is_nan() || r.fall_rate < QUIET_RATE {
        return None;
    }
    let secs = secs_to_red(r.available, r.red_line, r.fall_rate)?;
    // Finite: fill_rate ≥ QUIET_RATE > 0; capped before the conversion.
    (secs > 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// Whether red is less than one `poll.interval` away at the rate
/// MemAvailable falls (and not red yet): the sample that will see the
/// crossing reads nothing it can do without — not every pid (`listing`),
/// not every process's usage for the jobs list (src/attribute.rs: the
/// decision needs only the MLX processes, re-measured by every sample).
pub fn near_crossing(l: &Limits, r: Option<&Reading>) -> bool {
    r.is_some_and(|r| r.level != Level::Red && crossing_in(r).is_some_and(|c| c < l.base))
}

/// What the next sample does about the process list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// No listing: system memory and the MLX processes already tracked
    /// (the cheap sample; on Linux taken on the loop's own thread).
    Skip,
    /// The quiet listing: only pids made since the last one, and only when
    /// there are any (or an interpreter is due for its recheck).
    NewPids,
    /// Every pid.
    Full,
}

/// Whether the next sample lists pids, from the last reading and how long
/// ago the last listing of any kind and the last full one started (`None`:
/// never).
///
/// - quiet: a look for new pids every DISCOVER_EVERY_POLLS `poll.interval`s;
/// - red: every pid, every sample (the victim, or what else holds the
///   memory, may be a process not seen yet);
/// - red less than one `poll.interval` away at the rate MemAvailable falls:
///   a look for new pids only (a few ids, when the kernel handed out any),
///   because a full listing reads every pid's files (milliseconds on a busy
///   host) and would delay the sample that sees the crossing; but every pid
///   again once the last full listing is DISCOVER_EVERY_POLLS intervals old;
/// - otherwise every pid, every `poll.interval`.
///
/// The MLX processes already known are re-measured by every sample.
pub fn listing(
    l: &Limits,
    r: Option<&Reading>,
    since_listing: Option<Duration>,
    since_full: Option<Duration>,
) -> Listing {
    let Some(r) = r else {
        return Listing::Full;
    };
    let due = |since: Option<Duration>, every: Duration| since.is_none_or(|t| t >= every);
    let long = l.base * DISCOVER_EVERY_POLLS;
    if r.level == Level::Red {
        return Listing::Full;
    }
    if is_quiet(r) {
        return if due(since_listing, long) {
            Listing::NewPids
        } else {
            Listing::Skip
        };
    }
    if near_crossing(l, Some(r)) {
        return if due(since_full, long) {
            Listing::Full
        } else {
            Listing::NewPids
        };
    }
    if due(since_listing, l.base) {
        Listing::Full
    } else {
        Listing::Skip
    }
}

/// MemAvailable's fall rate is measured over at least this long (the one
/// rate rule, src/rate.rs): two samples at the shortest interval (50 ms), so
/// the pace still follows a fast fall, never a few milliseconds' noise.
pub const FALL_WINDOW: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const GIB: u64 = Bytes::GIB;
    const MIB: f64 = Bytes::MIB as f64;

    fn limits(floor_ms: u64) -> Limits {
        Limits {
            base: MS(1000),
            min: MS(50),
            max: MS(2000),
            floor: MS(floor_ms),
        }
    }

    /// MemAvailable falling at `rate_mib` (so the fill rate too).
    fn reading(level: Level, avail_gib: f64, rate_mib: f64) -> Reading {
        Reading {
            level,
            available: Bytes((avail_gib * GIB as f64) as u64),
            red_line: Bytes(2 * GIB),
            fill_rate: rate_mib * MIB,
            fall_rate: rate_mib * MIB,
            short_streak: 0,
        }
    }

    #[test]
    fn table() {
        use Level::*;
        // (case, floor ms, level, available GiB, fill MiB/s, expected ms)
        let rows: &[(&str, u64, Level, f64, f64, u64)] = &[
            (
                "idle 16 GiB Mac-size box: the long sleep",
                0,
                Green,
                16.0,
                0.0,
                2000,
            ),
            (
                "idle, 8 GiB above red: 8192/6000 s",
                0,
                Green,
                10.0,
                0.0,
                1365,
            ),
            (
                "quiet noise below QUIET_RATE still idles",
                0,
                Green,
                16.0,
                10.0,
                2000,
            ),
            (
                "growing, red 143 s away at that rate: still quiet",
                0,
                Green,
                16.0,
                100.0,
                2000,
            ),
            (
                "growing, red 72 s away: capped at base",
                0,
                Green,
                16.0,
                200.0,
                1000,
            ),
            ("yellow: capped at base", 0, Yellow, 16.0, 0.0, 1000),
            (
                "1 GiB above red at worst-case rate",
                0,
                Green,
                3.0,
                0.0,
                170,
            ),
            (
                "1 GiB above red at 8 GiB/s seen",
                0,
                Green,
                3.0,
                8192.0,
                125,
            ),
            (
                "100 MiB above red: clamped to min",
                0,
                Green,
                2.0 + 100.0 / 1024.0,
                1024.0,
                50,
            ),
            ("at the red line", 0, Red, 2.0, 0.0, 50),
            ("below the red line", 0, Red, 1.0, 4096.0, 50),
            ("macOS floor beats min", 500, Red, 1.0, 4096.0, 500),
            (
                "macOS floor, idle: still the long sleep",
                500,
                Green,
                16.0,
                0.0,
                2000,
            ),
        ];
        for &(case, floor, level, avail, rate, want) in rows {
            let got = next_interval(&limits(floor), &reading(level, avail, rate));
            assert_eq!(got.as_millis() as u64, want, "{case}");
        }
    }

    #[test]
    fn falling_at_a_seen_rate_wakes_at_the_crossing() {
        // 1 GiB/s seen, 48 MiB above red: the worst-case sleep (8 ms) is
        // raised to min (50 ms), which would wake 3 MiB past the line; the
        // crossing at the rate seen is 46.9 ms away.
        let r = reading(Level::Yellow, 2.0 + 48.0 / 1024.0, 1024.0);
        let got = next_interval(&limits(0), &r);
        assert_eq!(got.as_micros(), 46_875, "{got:?}");
        // 1 MiB above at 1 GiB/s: the reaction floor, not 1 ms.
        let r = reading(Level::Yellow, 2.0 + 1.0 / 1024.0, 1024.0);
        assert_eq!(next_interval(&limits(0), &r), REACTION_FLOOR);
        // Far from red the crossing is later than the regular sleep: unchanged.
        let r = reading(Level::Green, 3.0, 1024.0);
        assert_eq!(next_interval(&limits(0), &r).as_millis(), 170);
        // Not falling (or only by noise): never below min.
        for rate in [0.0, 10.0, f64::NAN] {
            let r = reading(Level::Yellow, 2.0 + 1.0 / 1024.0, rate);
            assert_eq!(next_interval(&limits(0), &r), MS(50), "{rate}");
        }
        // macOS: the platform's floor still holds.
        let r = reading(Level::Yellow, 2.0 + 1.0 / 1024.0, 1024.0);
        assert_eq!(next_interval(&limits(500), &r), MS(500));
    }

    #[test]
    fn listing_rules() {
        use Listing::*;
        let l = limits(0);
        let s = |ms: u64| Some(MS(ms));
        // First sample, or no reading yet: everything.
        assert_eq!(listing(&l, None, None, None), Full);
        let quiet = reading(Level::Green, 16.0, 0.0);
        assert_eq!(listing(&l, Some(&quiet), s(9_999), s(60_000)), Skip);
        assert_eq!(listing(&l, Some(&quiet), s(10_000), s(60_000)), NewPids);
        // Falling, red 30 s away: every poll.interval, not every sample.
        let falling = reading(Level::Green, 5.0, 100.0);
        assert!(!is_quiet(&falling));
        assert_eq!(listing(&l, Some(&falling), s(999), s(999)), Skip);
        assert_eq!(listing(&l, Some(&falling), s(1_000), s(1_000)), Full);
        assert_eq!(listing(&l, Some(&falling), None, None), Full);
        // Red less than poll.interval away at the fall seen: new pids only
        // (a few ids), every sample; every pid once the last full listing
        // is 10 intervals old.
        let close = reading(Level::Yellow, 2.5, 1024.0);
        assert_eq!(listing(&l, Some(&close), s(0), s(9_999)), NewPids);
        assert_eq!(listing(&l, Some(&close), s(0), s(10_000)), Full);
        assert_eq!(listing(&l, Some(&close), None, None), Full);
        // An MLX process growing fast while MemAvailable does not fall
        // (file-backed weights): not "close", so pids are listed as usual.
        let growing = Reading {
            fall_rate: 0.0,
            ..close
        };
        assert_eq!(listing(&l, Some(&growing), s(1_000), s(1_000)), Full);
        // Close but not falling (yellow, steady): every poll.interval.
        let steady = reading(Level::Yellow, 2.5, 0.0);
        assert_eq!(listing(&l, Some(&steady), s(1_000), s(1_000)), Full);
        // Red: every sample.
        let red = reading(Level::Red, 1.0, 4096.0);
        assert_eq!(listing(&l, Some(&red), s(0), s(0)), Full);
    }

    #[test]
    fn a_crossing_predicted_from_growth_alone_or_too_often_is_not_waited_for() {
        let l = limits(0);
        // RSS growing at 1 GiB/s, MemAvailable steady: the regular floor.
        let r = Reading {
            fall_rate: 0.0,
            ..reading(Level::Yellow, 2.0 + 1.0 / 1024.0, 1024.0)
        };
        assert_eq!(next_interval(&l, &r), MS(50));
        // The eighth short sleep in a row whose crossing did not come: the
        // regular floor again.
        let mut r = reading(Level::Yellow, 2.0 + 1.0 / 1024.0, 1024.0);
        r.short_streak = MAX_SHORT_SLEEPS - 1;
        assert!(is_short(&l, next_interval(&l, &r)));
        r.short_streak = MAX_SHORT_SLEEPS;
        assert_eq!(next_interval(&l, &r), MS(50));
    }

    #[test]
    fn floor_above_max_wins() {
        let l = Limits {
            floor: MS(3000),
            ..limits(0)
        };
        let got = next_interval(&l, &reading(Level::Green, 16.0, 0.0));
        assert_eq!(got, MS(3000));
    }

    #[test]
    fn never_outside_the_range_for_odd_inputs() {
        let l = limits(0);
        let rates = [f64::NAN, f64::INFINITY, -1e12, 0.0, 16.0 * MIB, 1e9, 1e15];
        for rate in rates {
            for fall in rates {
                for avail in [
                    0,
                    1,
                    GIB,
                    2 * GIB,
                    2 * GIB + 1,
                    2 * GIB + (1 << 20),
                    u64::MAX,
                ] {
                    let r = Reading {
                        level: Level::Green,
                        available: Bytes(avail),
                        red_line: Bytes(2 * GIB),
                        fill_rate: rate,
                        fall_rate: fall,
                        short_streak: 0,
                    };
                    let d = next_interval(&l, &r);
                    assert!(
                        d >= REACTION_FLOOR && d <= l.max,
                        "{rate} {fall} {avail}: {d:?}"
                    );
                    if d < l.min {
                        assert!(fall >= QUIET_RATE, "short only on a fall: {fall} {d:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn fall_rate_through_the_rate_window() {
        let mut w = crate::rate::Window::new(FALL_WINDOW);
        let s = Duration::from_secs;
        w.push(s(1), (3 * GIB) as f64);
        assert_eq!(w.push(s(2), (2 * GIB) as f64), Some(-(GIB as f64)));
        // 5 ms later, unchanged: still the fall over at least FALL_WINDOW.
        let r = w.push(s(2) + MS(5), (2 * GIB) as f64).expect("a rate");
        assert!((r + GIB as f64 / 1.005).abs() < 1.0, "{r}");
    }
}
