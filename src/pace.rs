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
    /// `poll.min_interval`: the shortest sleep.
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
    Duration::from_secs_f64(secs.min(hi.as_secs_f64())).clamp(lo, hi)
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

    fn reading(level: Level, avail_gib: f64, rate_mib: f64) -> Reading {
        Reading {
            level,
            available: Bytes((avail_gib * GIB as f64) as u64),
            red_line: Bytes(2 * GIB),
            fill_rate: rate_mib * MIB,
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
        for rate in [f64::NAN, f64::INFINITY, -1e12, 0.0, 1e15] {
            for avail in [0, 1, GIB, 2 * GIB, u64::MAX] {
                let r = Reading {
                    level: Level::Green,
                    available: Bytes(avail),
                    red_line: Bytes(2 * GIB),
                    fill_rate: rate,
                };
                let d = next_interval(&l, &r);
                assert!(d >= l.min && d <= l.max, "{rate} {avail}: {d:?}");
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
