//! The GPU wired limit on Apple Silicon (`iogpu.wired_limit_mb`): how much
//! memory the GPU may wire, what that leaves macOS, and the verdict by the
//! guide's headroom. Pure arithmetic, compiled and tested on every OS; the
//! sysctl read is `sys::macos::wired_limit_mb`.
//!
//! `iogpu`'s "MB" are MiB (`sysctl -n hw.memsize` / 1048576 is how every
//! setup script converts). 0 means "the system default", which macOS does
//! not expose as a sysctl: [`default_limit`] is a documented approximation
//! (docs/macos.md), not a reading.

use crate::action::{Notice, NoticeKind};
use crate::classify::Lines;
use crate::model::{Bytes, Level, SystemMemory};
use std::fmt;

/// The guide's headroom: what macOS should keep for itself, at least.
pub const GUIDE_HEADROOM: Bytes = Bytes(4 * Bytes::GIB);

/// Macs up to this much RAM get 2/3 of it by default, larger ones 3/4.
const DEFAULT_SPLIT: Bytes = Bytes(36 * Bytes::GIB);

/// macOS's default GPU working-set limit (Metal's
/// `recommendedMaxWorkingSetSize`, MLX's `max_recommended_working_set_size`)
/// as commonly measured: 2/3 of RAM up to 36 GiB, 3/4 above. An
/// approximation: macOS 26 has been measured higher on 128 GiB Macs.
pub fn default_limit(total: Bytes) -> Bytes {
    let t = u128::from(total.0);
    let v = if total <= DEFAULT_SPLIT {
        t * 2 / 3
    } else {
        t * 3 / 4
    };
    Bytes(u64::try_from(v).unwrap_or(u64::MAX))
}

/// The limit in force: the sysctl's value, or the default when it is 0;
/// never more than the RAM there is.
pub fn effective_limit(total: Bytes, limit_mb: u64) -> Bytes {
    if limit_mb == 0 {
        default_limit(total)
    } else {
        Bytes(limit_mb.saturating_mul(Bytes::MIB)).min(total)
    }
}

/// The highest limit that still leaves the guide's headroom (or the yellow
/// line, if that is higher), in MB for `sysctl`.
pub fn safe_limit_mb(total: Bytes, lines: &Lines) -> u64 {
    let keep = GUIDE_HEADROOM.max(lines.yellow);
    total.saturating_sub(keep).0 / Bytes::MIB
}

/// The command that sets a limit (until reboot).
pub fn sysctl_command(mb: u64) -> String {
    format!("sudo sysctl iogpu.wired_limit_mb={mb}")
}

/// What the wired limit leaves macOS, judged by the thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub total: Bytes,
    /// The sysctl's value (0: the system default).
    pub limit_mb: u64,
    pub lwm_mb: Option<u64>,
    pub limit: Bytes,
    /// `total − limit`: what the GPU can never take from macOS.
    pub kept: Bytes,
    /// Green, or the line `kept` is below. A limit left at the default is
    /// always green: it is macOS's own choice, and ours is an estimate.
    pub level: Level,
    /// The limit to suggest (MB).
    pub safe_mb: u64,
}

/// The verdict for a snapshot's memory; `None` where the limit is unknown
/// (Linux, Intel Macs, older macOS).
pub fn judge(m: &SystemMemory, lines: &Lines) -> Option<Verdict> {
    let limit_mb = m.gpu_wired_limit_mb?;
    let total = m.total_bytes;
    let limit = effective_limit(total, limit_mb);
    let kept = total.saturating_sub(limit);
    let level = if limit_mb == 0 {
        Level::Green
    } else if kept < lines.red {
        Level::Red
    } else if kept < lines.yellow {
        Level::Yellow
    } else {
        Level::Green
    };
    Some(Verdict {
        total,
        limit_mb,
        lwm_mb: m.gpu_wired_lwm_mb,
        limit,
        kept,
        level,
        safe_mb: safe_limit_mb(total, lines),
    })
}

impl Verdict {
    /// "GPU wired limit 61.00 GiB (iogpu.wired_limit_mb=62464): macOS keeps 3.00 GiB of 64.00 GiB"
    pub fn figures(&self) -> String {
        let how = if self.limit_mb == 0 {
            format!("about {} (the system default)", self.limit)
        } else {
            format!("{} (iogpu.wired_limit_mb={})", self.limit, self.limit_mb)
        };
        format!(
            "GPU wired limit {how}: macOS keeps {} of {}",
            self.kept, self.total
        )
    }

    /// The warning (yellow or red): figures, why, and the command.
    pub fn warning(&self) -> Option<String> {
        if self.level == Level::Green {
            return None;
        }
        Some(format!(
            "{}, less than the {} it needs; what the GPU wires cannot be compressed or swapped \
             (while memory is red, an MLX process whose footprint keeps growing is the likeliest \
             holder). A safer limit, until reboot: {}",
            self.figures(),
            self.total.saturating_sub(Bytes::mib(self.safe_mb)),
            sysctl_command(self.safe_mb)
        ))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.warning() {
            Some(w) => f.write_str(&w),
            None => f.write_str(&self.figures()),
        }
    }
}

/// The daemon's once-per-start report of a yellow or red limit: the
/// `gpu_wired_limit` event's fields and, when red, the notice to post.
pub fn warning_event(v: &Verdict) -> Option<(serde_json::Value, Option<Notice>)> {
    let warning = v.warning()?;
    let mut fields = serde_json::json!({
        "level": v.level,
        "wired_limit_mb": v.limit_mb,
        "limit_bytes": v.limit,
        "kept_bytes": v.kept,
        "total_bytes": v.total,
        "suggested_mb": v.safe_mb,
        "command": sysctl_command(v.safe_mb),
        "message": warning,
    });
    if let (Some(m), Some(lwm)) = (fields.as_object_mut(), v.lwm_mb) {
        m.insert("wired_lwm_mb".into(), lwm.into());
    }
    let notice = (v.level == Level::Red).then(|| Notice {
        kind: NoticeKind::Red,
        title: "headroom: the GPU wired limit leaves macOS too little".into(),
        body: warning,
        pid: None,
    });
    Some((fields, notice))
}

/// What `advise` says about a model needing `need` bytes of wired memory.
#[derive(Clone, Debug, PartialEq)]
pub enum Advice {
    /// It fits under the limit in force.
    Fits,
    /// It fits if the limit is raised to `mb` (still leaving the headroom).
    Raise { mb: u64 },
    /// It does not fit even with the headroom left: no limit to advise.
    TooBig { safe_mb: u64 },
}

/// `need` against the limit in force (`limit`) and the highest safe one
/// (`safe_mb`, from [`safe_limit_mb`]).
pub fn advise(limit: Bytes, safe_mb: u64, need: Bytes) -> Advice {
    if need <= limit {
        return Advice::Fits;
    }
    if need.0 <= safe_mb.saturating_mul(Bytes::MIB) {
        // The whole GiB above `need`, never above the safe limit.
        let need_mb = need.0.div_ceil(Bytes::MIB);
        let mb = need_mb.div_ceil(1024).saturating_mul(1024).min(safe_mb);
        Advice::Raise { mb }
    } else {
        Advice::TooBig { safe_mb }
    }
}

impl Advice {
    /// What `advise` prints; `None` when it fits.
    pub fn text(&self, need: Bytes, limit: Bytes) -> Option<String> {
        match self {
            Advice::Fits => None,
            Advice::Raise { mb } => Some(format!(
                "the estimate ({need}) is above the GPU wired limit ({limit}); raise it with \
                 `{}` (it resets at reboot; macOS keeps at least the guide's {} of headroom)",
                sysctl_command(*mb),
                GUIDE_HEADROOM
            )),
            Advice::TooBig { safe_mb } => Some(format!(
                "the estimate ({need}) is above the GPU wired limit ({limit}) and above the \
                 highest limit that leaves macOS the guide's headroom ({} MB): no wired limit \
                 makes it fit safely",
                safe_mb
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACS: [u64; 6] = [16, 24, 36, 64, 128, 192];

    fn lines() -> Lines {
        // The shipped thresholds: yellow below 4 GiB, red below 2 GiB.
        Lines {
            yellow: Bytes::gib(4),
            red: Bytes::gib(2),
            hysteresis: Bytes::mib(512),
        }
    }

    fn mem(total_gib: u64, limit_mb: Option<u64>) -> SystemMemory {
        SystemMemory {
            total_bytes: Bytes::gib(total_gib),
            gpu_wired_limit_mb: limit_mb,
            ..Default::default()
        }
    }

    fn gib_mb(g: u64) -> u64 {
        g * 1024
    }

    #[test]
    fn default_is_two_thirds_up_to_36_gib_then_three_quarters() {
        let want = [
            (16, 10922),
            (24, 16384),
            (36, 24576),
            (64, 49152),
            (128, 98304),
            (192, 147456),
        ];
        for (g, mb) in want {
            let l = effective_limit(Bytes::gib(g), 0);
            assert_eq!(l.0 / Bytes::MIB, mb, "{g} GiB");
        }
    }

    #[test]
    fn a_set_limit_is_taken_as_is_but_never_above_ram() {
        assert_eq!(effective_limit(Bytes::gib(64), 62464), Bytes::mib(62464));
        assert_eq!(effective_limit(Bytes::gib(16), 999_999), Bytes::gib(16));
    }

    /// (RAM, limit) → level, for the limits setup scripts use: 0, 80 %,
    /// RAM − 5 GiB, 95 %.
    #[test]
    fn verdict_table() {
        use Level::*;
        let pct = |g: u64, p: u64| gib_mb(g) * p / 100;
        let cases: Vec<(u64, u64, Level)> = MACS
            .iter()
            .flat_map(|&g| {
                let eighty = if g * 20 / 100 < 2 {
                    Red
                } else if g * 20 < 400 {
                    Yellow
                } else {
                    Green
                };
                let ninety_five = if g * 5 < 200 {
                    Red
                } else if g * 5 < 400 {
                    Yellow
                } else {
                    Green
                };
                [
                    (g, 0, Green),
                    (g, pct(g, 80), eighty),
                    (g, gib_mb(g - 5), Green),
                    (g, pct(g, 95), ninety_five),
                ]
            })
            .collect();
        for (g, mb, want) in cases {
            let v = judge(&mem(g, Some(mb)), &lines()).expect("known");
            assert_eq!(
                v.level, want,
                "{g} GiB Mac, limit {mb} MB: keeps {}",
                v.kept
            );
        }
        // Spot checks against the arithmetic, not the table's own formula.
        assert_eq!(
            judge(&mem(16, Some(pct(16, 80))), &lines()).map(|v| v.level),
            Some(Yellow)
        );
        assert_eq!(
            judge(&mem(16, Some(pct(16, 95))), &lines()).map(|v| v.level),
            Some(Red)
        );
        assert_eq!(
            judge(&mem(64, Some(pct(64, 95))), &lines()).map(|v| v.level),
            Some(Yellow)
        );
        assert_eq!(
            judge(&mem(128, Some(pct(128, 95))), &lines()).map(|v| v.level),
            Some(Green)
        );
        assert_eq!(
            judge(&mem(64, Some(gib_mb(61))), &lines()).map(|v| v.level),
            Some(Yellow)
        );
    }

    #[test]
    fn unknown_limit_has_no_verdict() {
        assert_eq!(judge(&mem(64, None), &lines()), None);
    }

    #[test]
    fn the_warning_names_the_figures_and_the_command() {
        let v = judge(&mem(64, Some(gib_mb(61))), &lines()).expect("known");
        let w = v.warning().expect("yellow warns");
        assert!(w.contains("macOS keeps 3.00 GiB of 64.00 GiB"), "{w}");
        assert!(w.contains("sudo sysctl iogpu.wired_limit_mb=61440"), "{w}");
        assert!(judge(&mem(64, Some(0)), &lines())
            .and_then(|v| v.warning())
            .is_none());
    }

    #[test]
    fn the_daemon_logs_yellow_and_notifies_only_red() {
        let l = lines();
        let event = |mb: u64| judge(&mem(64, Some(mb)), &l).and_then(|v| warning_event(&v));
        assert!(event(0).is_none(), "the default: nothing");
        assert!(event(56 * 1024).is_none(), "8 GiB kept: nothing");
        let (f, n) = event(61 * 1024).expect("yellow: an event");
        assert_eq!(f["level"], "yellow");
        assert_eq!(f["kept_bytes"], 3 * Bytes::GIB);
        assert_eq!(f["command"], "sudo sysctl iogpu.wired_limit_mb=61440");
        assert!(n.is_none(), "yellow: no notification");
        let (f, n) = event(63 * 1024).expect("red: an event");
        assert_eq!(f["level"], "red");
        let n = n.expect("red: a notification");
        assert_eq!(n.kind, NoticeKind::Red);
        assert!(
            n.body.contains("macOS keeps 1.00 GiB of 64.00 GiB"),
            "{}",
            n.body
        );
    }

    #[test]
    fn safe_limit_keeps_the_higher_of_the_guide_and_the_yellow_line() {
        assert_eq!(safe_limit_mb(Bytes::gib(64), &lines()), 60 * 1024);
        let wide = Lines {
            yellow: Bytes::gib(8),
            ..lines()
        };
        assert_eq!(safe_limit_mb(Bytes::gib(64), &wide), 56 * 1024);
        assert_eq!(safe_limit_mb(Bytes::gib(2), &lines()), 0);
    }

    fn advise_on(total_gib: u64, limit_mb: u64, need: Bytes) -> Advice {
        let total = Bytes::gib(total_gib);
        advise(
            effective_limit(total, limit_mb),
            safe_limit_mb(total, &lines()),
            need,
        )
    }

    #[test]
    fn advice_raises_only_within_the_headroom() {
        // 64 GiB Mac at the default (48 GiB): 40 GiB fits, 55 GiB needs 56 GiB, 62 GiB never.
        assert_eq!(advise_on(64, 0, Bytes::gib(40)), Advice::Fits);
        assert_eq!(
            advise_on(64, 0, Bytes(Bytes::gib(55).0 + 1)),
            Advice::Raise { mb: 57344 }
        );
        assert_eq!(
            advise_on(64, 0, Bytes::mib(59 * 1024 + 512)),
            Advice::Raise { mb: 60 * 1024 }
        );
        assert_eq!(
            advise_on(64, 0, Bytes::gib(62)),
            Advice::TooBig { safe_mb: 61440 }
        );
        // A limit already raised to 62 GiB: 50 GiB fits, no advice.
        assert_eq!(advise_on(64, 62 * 1024, Bytes::gib(50)), Advice::Fits);
        let text = advise_on(64, 0, Bytes::gib(55))
            .text(Bytes::gib(55), Bytes::gib(48))
            .expect("raise");
        assert!(
            text.contains("`sudo sysctl iogpu.wired_limit_mb=56320`"),
            "{text}"
        );
        assert!(text.contains("resets at reboot"), "{text}");
        let text = advise_on(16, 0, Bytes::gib(13))
            .text(Bytes::gib(13), Bytes::mib(10922))
            .expect("too big");
        assert!(
            text.contains("no wired limit makes it fit safely"),
            "{text}"
        );
        assert!(!text.contains("sudo"), "{text}");
        for g in MACS {
            for need in 1..g {
                if let Advice::Raise { mb } = advise_on(g, 0, Bytes::gib(need)) {
                    assert!(Bytes::gib(g).saturating_sub(Bytes::mib(mb)) >= GUIDE_HEADROOM);
                    assert!(Bytes::mib(mb) >= Bytes::gib(need));
                }
            }
        }
    }
}
