//! Pure classification: green / yellow / red from a Snapshot, with
//! hysteresis and dwell measured on `Snapshot::at`. No I/O, no clock.

use crate::config::Thresholds;
use crate::model::{Bytes, KernelLevel, Level, Pid, Snapshot};
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// Why the level is what it is. Data, so it can be logged and asserted.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Available memory is below a level's threshold (plus the hysteresis
    /// margin while leaving that level).
    AvailableBelow {
        level: Level,
        available_bytes: Bytes,
        threshold_bytes: Bytes,
    },
    /// The kernel's own pressure verdict (macOS).
    Kernel { kernel_level: KernelLevel },
    /// Swap-outs have stayed above `swapout_rate` for `held`.
    SwapOut { bytes_per_sec: f64, held_secs: f64 },
    /// Linux PSI "full" avg10 at or above the threshold.
    Psi { full_avg10: f64 },
    /// An MLX process, growing at its recent rate, reaches red within the horizon.
    Projection {
        pid: Pid,
        name: String,
        growth_bytes_per_sec: f64,
        red_in_secs: f64,
    },
    /// Conditions eased, but not yet for `dwell`.
    Dwell {
        level: Level,
        calm_secs: f64,
        dwell_secs: f64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::AvailableBelow {
                level,
                available_bytes,
                threshold_bytes,
            } => {
                write!(
                    f,
                    "available {available_bytes} below the {level} line {threshold_bytes}"
                )
            }
            Reason::Kernel { kernel_level } => {
                write!(f, "kernel memory pressure is {}", kernel_level.as_str())
            }
            Reason::SwapOut {
                bytes_per_sec,
                held_secs,
            } => {
                write!(
                    f,
                    "swapping out {}/s for {held_secs:.0} s",
                    Bytes(*bytes_per_sec as u64)
                )
            }
            Reason::Psi { full_avg10 } => write!(f, "PSI memory full avg10 {full_avg10:.1}%"),
            Reason::Projection {
                pid,
                name,
                growth_bytes_per_sec,
                red_in_secs,
            } => write!(
                f,
                "{name} (pid {pid}) grows {}/s: red in ~{red_in_secs:.0} s",
                Bytes(*growth_bytes_per_sec as u64)
            ),
            Reason::Dwell {
                level,
                calm_secs,
                dwell_secs,
            } => {
                write!(
                    f,
                    "holding {level}: calm for {calm_secs:.1} s of {dwell_secs:.1} s"
                )
            }
        }
    }
}

/// Thresholds resolved against this machine's total RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lines {
    pub yellow: Bytes,
    pub red: Bytes,
    pub hysteresis: Bytes,
}

impl Lines {
    pub fn resolve(th: &Thresholds, total: Bytes) -> Lines {
        Lines {
            yellow: th.yellow_below.resolve(total),
            red: th.red_below.resolve(total),
            hysteresis: th.hysteresis.resolve(total),
        }
    }
}

/// Seconds until available memory falls to `red_line` at `fill_rate`
/// bytes per second: `Some(0)` when it is already there, `None` when
/// nothing fills it. The one distance-to-red rule (`classify`'s projection,
/// `top`'s RED IN column, the daemon's pace).
pub fn secs_to_red(available: Bytes, red_line: Bytes, fill_rate: f64) -> Option<f64> {
    if available <= red_line {
        return Some(0.0);
    }
    if fill_rate <= 0.0 {
        return None;
    }
    Some((available.0 - red_line.0) as f64 / fill_rate)
}

/// The level these conditions call for, with `margin` added to the
/// available-memory lines (0 to enter, the hysteresis to leave).
fn evaluate(
    s: &Snapshot,
    th: &Thresholds,
    lines: &Lines,
    margin: Bytes,
    swap_held: Option<Duration>,
) -> (Level, Vec<Reason>) {
    let avail = s.memory.available_bytes;
    let mut level = Level::Green;
    let mut reasons = Vec::new();
    let mut raise = |l: Level, r: Reason, level: &mut Level| {
        *level = (*level).max(l);
        reasons.push(r);
    };

    let red_line = Bytes(lines.red.0.saturating_add(margin.0));
    let yellow_line = Bytes(lines.yellow.0.saturating_add(margin.0));
    if avail < red_line {
        let r = Reason::AvailableBelow {
            level: Level::Red,
            available_bytes: avail,
            threshold_bytes: red_line,
        };
        raise(Level::Red, r, &mut level);
    } else if avail < yellow_line {
        let r = Reason::AvailableBelow {
            level: Level::Yellow,
            available_bytes: avail,
            threshold_bytes: yellow_line,
        };
        raise(Level::Yellow, r, &mut level);
    }
    match s.pressure.kernel_level {
        Some(k @ KernelLevel::Critical) => {
            raise(Level::Red, Reason::Kernel { kernel_level: k }, &mut level)
        }
        Some(k @ KernelLevel::Warn) => raise(
            Level::Yellow,
            Reason::Kernel { kernel_level: k },
            &mut level,
        ),
        _ => {}
    }
    if let (Some(rate), Some(held)) = (s.pressure.swapout_bytes_per_sec, swap_held) {
        if held >= th.swapout_hold {
            let r = Reason::SwapOut {
                bytes_per_sec: rate,
                held_secs: held.as_secs_f64(),
            };
            raise(Level::Yellow, r, &mut level);
        }
    }
    // PSI alone never makes red: a busy disk is not a memory emergency.
    if let Some(full) = s.pressure.psi_full_avg10 {
        if full >= th.psi_full_avg10 && th.psi_full_avg10 > 0.0 {
            raise(Level::Yellow, Reason::Psi { full_avg10: full }, &mut level);
        }
    }
    if avail > red_line {
        let soonest = s
            .mlx_processes
            .iter()
            .filter_map(|p| secs_to_red(avail, red_line, p.growth_bytes_per_sec).map(|t| (p, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((p, secs)) = soonest {
            if secs <= th.projection_horizon.as_secs_f64() {
                let r = Reason::Projection {
                    pid: p.pid,
                    name: crate::cmdline::display_name(p),
                    growth_bytes_per_sec: p.growth_bytes_per_sec,
                    red_in_secs: secs,
                };
                raise(Level::Yellow, r, &mut level);
            }
        }
    }
    (level, reasons)
}

/// One snapshot on its own, with no history (for `status` and `explain`):
/// entry thresholds, a swap-out rate counts at once.
pub fn classify_once(s: &Snapshot, th: &Thresholds) -> Classification {
    let held = s
        .pressure
        .swapout_bytes_per_sec
        .filter(|r| *r > th.swapout_rate.0 as f64)
        .map(|_| th.swapout_hold);
    let lines = Lines::resolve(th, s.memory.total_bytes);
    let (level, reasons) = evaluate(s, th, &lines, Bytes(0), held);
    Classification {
        level,
        previous: level,
        reasons,
        lines,
    }
}

/// The outcome of one step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classification {
    pub level: Level,
    pub previous: Level,
    pub reasons: Vec<Reason>,
    /// The thresholds resolved against this snapshot's total RAM, once,
    /// for everything downstream (policy, logs, pace, views).
    #[serde(skip)]
    pub lines: Lines,
}

impl Classification {
    pub fn changed(&self) -> bool {
        self.level != self.previous
    }
}

/// Level with memory: entering is immediate; leaving needs the calmer
/// conditions (lines raised by the hysteresis) held for `dwell`.
#[derive(Clone, Debug)]
pub struct Classifier {
    level: Level,
    calm_since: Option<Duration>,
    swap_since: Option<Duration>,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier {
            level: Level::Green,
            calm_since: None,
            swap_since: None,
        }
    }
}

impl Classifier {
    pub fn level(&self) -> Level {
        self.level
    }

    pub fn step(&mut self, s: &Snapshot, th: &Thresholds) -> Classification {
        let previous = self.level;
        let swapping = s
            .pressure
            .swapout_bytes_per_sec
            .is_some_and(|r| r > th.swapout_rate.0 as f64);
        self.swap_since = match s.pressure.swapout_bytes_per_sec {
            Some(_) if swapping => Some(self.swap_since.unwrap_or(s.at)),
            Some(_) => None,
            // No rate on this sample (the rate's window is not full yet, or
            // the counter was reset): a reading that says nothing neither
            // starts nor restarts the hold (issue 20).
            None if s.memory.swap_total_bytes.is_some_and(|t| t.0 > 0) => self.swap_since,
            // No swap at all (swapoff): nothing is being held.
            None => None,
        };
        let swap_held = self.swap_since.map(|t0| s.at.saturating_sub(t0));

        let lines = Lines::resolve(th, s.memory.total_bytes);
        let (enter, enter_reasons) = evaluate(s, th, &lines, Bytes(0), swap_held);
        if enter >= self.level {
            self.level = enter;
            self.calm_since = None;
            return Classification {
                level: enter,
                previous,
                reasons: enter_reasons,
                lines,
            };
        }
        let (exit, mut exit_reasons) = evaluate(s, th, &lines, lines.hysteresis, swap_held);
        if exit >= self.level {
            self.calm_since = None;
            return Classification {
                level: self.level,
                previous,
                reasons: exit_reasons,
                lines,
            };
        }
        let since = *self.calm_since.get_or_insert(s.at);
        let calm = s.at.saturating_sub(since);
        if calm >= th.dwell {
            self.level = exit;
            self.calm_since = None;
            return Classification {
                level: exit,
                previous,
                reasons: exit_reasons,
                lines,
            };
        }
        exit_reasons.push(Reason::Dwell {
            level: self.level,
            calm_secs: calm.as_secs_f64(),
            dwell_secs: th.dwell.as_secs_f64(),
        });
        Classification {
            level: self.level,
            previous,
            reasons: exit_reasons,
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::MlxProcess;

    fn th() -> Thresholds {
        Config::embedded().expect("defaults").thresholds
    }

    fn snap(at_ms: u64, avail_mib: u64) -> Snapshot {
        let mut s = Snapshot {
            at: Duration::from_millis(at_ms),
            ..Default::default()
        };
        s.memory.total_bytes = Bytes::gib(16);
        s.memory.available_bytes = Bytes::mib(avail_mib);
        s
    }

    /// Run a timeline of (ms, available MiB) and return the level after each.
    fn run(points: &[(u64, u64)]) -> Vec<Level> {
        let t = th();
        let mut c = Classifier::default();
        points
            .iter()
            .map(|&(ms, mib)| c.step(&snap(ms, mib), &t).level)
            .collect()
    }

    use Level::{Green as G, Red as R, Yellow as Y};

    #[test]
    fn entering_is_immediate_at_each_line() {
        // Defaults: yellow below 4096 MiB, red below 2048 MiB.
        assert_eq!(run(&[(0, 8000), (1000, 4095), (2000, 2047)]), vec![G, Y, R]);
        assert_eq!(run(&[(0, 1000)]), vec![R], "green straight to red");
        assert_eq!(
            run(&[(0, 4096)]),
            vec![G],
            "exactly on the line is not below it"
        );
    }

    #[test]
    fn leaving_needs_hysteresis_and_dwell() {
        // Red at 0; back above red_below (2048) but inside the 512 MiB margin: stays red.
        let levels = run(&[(0, 1900), (1000, 2100), (7000, 2500), (20_000, 2500)]);
        assert_eq!(levels, vec![R, R, R, R], "2500 < 2048+512: never left red");
        // Above the margin: calm from 1 s, dwell 5 s → yellow at 6 s, not before.
        let levels = run(&[
            (0, 1900),
            (1000, 2600),
            (3000, 2600),
            (5999, 2600),
            (6000, 2600),
        ]);
        assert_eq!(levels, vec![R, R, R, R, Y]);
        // Leaving yellow straight to green needs 4096+512.
        let levels = run(&[
            (0, 3000),
            (1000, 4200),
            (10_000, 4200),
            (11_000, 4700),
            (15_999, 4700),
            (16_000, 4700),
        ]);
        assert_eq!(levels, vec![Y, Y, Y, Y, Y, G]);
        // Red to green in one go when everything is calm for the dwell.
        assert_eq!(run(&[(0, 1000), (1000, 9000), (6000, 9000)]), vec![R, R, G]);
    }

    #[test]
    fn flapping_input_does_not_flap_the_level() {
        // Available oscillates around the red line every 500 ms for 30 s.
        let points: Vec<(u64, u64)> = (0..60)
            .map(|i| (i * 500, if i % 2 == 0 { 1900 } else { 2300 }))
            .collect();
        let levels = run(&points);
        assert!(levels.iter().all(|l| *l == R), "{levels:?}");
        // Oscillating across the hysteresis margin resets the dwell each time.
        let points: Vec<(u64, u64)> = (0..60)
            .map(|i| (i * 1000, if i % 4 == 0 { 2000 } else { 3000 }))
            .collect();
        assert!(run(&points).iter().all(|l| *l == R));
    }

    #[test]
    fn a_dip_during_dwell_restarts_it() {
        let levels = run(&[
            (0, 1000),
            (1000, 9000),
            (4000, 9000),
            (4500, 2100),
            (5000, 9000),
            (9000, 9000),
            (10_000, 9000),
        ]);
        assert_eq!(levels, vec![R, R, R, R, R, R, G]);
    }

    #[test]
    fn percent_thresholds_resolve_against_total() {
        let t = Config::from_text(
            "t",
            "[thresholds]\nyellow_below = \"25%\"\nred_below = \"12.5%\"\n",
        )
        .expect("cfg")
        .thresholds;
        let mut c = Classifier::default();
        // 16 GiB: yellow below 4 GiB, red below 2 GiB.
        assert_eq!(c.step(&snap(0, 3000), &t).level, Y);
        let mut s = snap(1000, 3000);
        s.memory.total_bytes = Bytes::gib(64); // 25% = 16 GiB, 12.5% = 8 GiB
        assert_eq!(c.step(&s, &t).level, R);
    }

    #[test]
    fn kernel_levels_and_psi_and_swap() {
        let t = th();
        let mut s = snap(0, 9000);
        s.pressure.kernel_level = Some(KernelLevel::Critical);
        assert_eq!(classify_once(&s, &t).level, R);
        s.pressure.kernel_level = Some(KernelLevel::Warn);
        assert_eq!(classify_once(&s, &t).level, Y);
        s.pressure.kernel_level = Some(KernelLevel::Normal);
        s.pressure.psi_full_avg10 = Some(95.0);
        let c = classify_once(&s, &t);
        let (l, r) = (c.level, c.reasons);
        assert_eq!(l, Y, "PSI alone never makes red");
        assert!(matches!(r[..], [Reason::Psi { .. }]));

        // Swap-out above 16 MiB/s must hold 10 s before it counts.
        let mut c = Classifier::default();
        let mut levels = Vec::new();
        for sec in 0..=12 {
            let mut s = snap(sec * 1000, 9000);
            s.pressure.swapout_bytes_per_sec = Some(64.0 * Bytes::MIB as f64);
            levels.push(c.step(&s, &t).level);
        }
        assert_eq!(levels[9], G);
        assert_eq!(levels[10], Y);
    }

    #[test]
    fn kernel_warn_blocks_leaving_yellow_even_with_memory_free() {
        let t = th();
        let mut c = Classifier::default();
        let mut s = snap(0, 3000);
        assert_eq!(c.step(&s, &t).level, Y);
        s.memory.available_bytes = Bytes::gib(10);
        s.pressure.kernel_level = Some(KernelLevel::Warn);
        for sec in 1..20 {
            s.at = Duration::from_secs(sec);
            assert_eq!(c.step(&s, &t).level, Y);
        }
    }

    #[test]
    fn projection_warns_before_red() {
        let t = th();
        let mut s = snap(0, 6144); // 4 GiB above the red line
        s.mlx_processes.push(MlxProcess {
            pid: Pid(42),
            uid: 501,
            start_time: 1,
            name: "mlx_lm.lora".into(),
            cmdline: "mlx_lm.lora --train".into(),
            footprint_bytes: Bytes::gib(8),
            rss_bytes: Bytes::gib(8),
            peak_bytes: Bytes::gib(8),
            growth_bytes_per_sec: 100.0 * Bytes::MIB as f64, // 4096 MiB / 100 MiB/s ≈ 41 s
            program: "mlx_lm.lora".into(),
            matched_by: "pattern:x".into(),
            job: None,
        });
        let c = classify_once(&s, &t);
        let (l, r) = (c.level, c.reasons);
        assert_eq!(l, Y);
        match &r[..] {
            [Reason::Projection {
                red_in_secs, pid, ..
            }] => {
                assert_eq!(*pid, Pid(42));
                assert!((red_in_secs - 40.96).abs() < 0.1, "{red_in_secs}");
            }
            other => panic!("{other:?}"),
        }
        assert!(r[0].to_string().contains("red in ~41 s"), "{}", r[0]);
        s.mlx_processes[0].growth_bytes_per_sec = 10.0 * Bytes::MIB as f64; // ~410 s: beyond the 60 s horizon
        assert_eq!(classify_once(&s, &t).level, G);
    }

    #[test]
    fn secs_to_red_only_when_growing() {
        let red = Bytes::gib(2);
        assert_eq!(
            secs_to_red(Bytes::gib(3), red, Bytes::GIB as f64 / 10.0),
            Some(10.0)
        );
        assert_eq!(secs_to_red(Bytes::gib(3), red, 0.0), None);
        assert_eq!(secs_to_red(Bytes::gib(3), red, -5.0), None);
        assert_eq!(secs_to_red(Bytes::gib(1), red, 0.0), Some(0.0));
    }
}
