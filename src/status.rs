//! `headroom status`: one sample, for a person or as JSON.

use crate::classify::classify_once;
use crate::config::Config;
use crate::model::{Bytes, Snapshot};
use crate::sample;
use serde_json::json;
use std::fmt::Write as _;
use std::time::Instant;

/// One sample, classified on its own, rendered as text or JSON.
pub fn status(cfg: &Config, as_json: bool) -> Result<String, crate::Error> {
    let (mut sampler, _) = sample::open(cfg, Instant::now())?;
    sampler.want_top_processes(crate::sample::Holders::Read);
    let snap = sampler.sample()?;
    let agent = crate::agent::report::probe();
    Ok(crate::agent::report::append(
        render(cfg, &snap, as_json),
        cfg,
        &agent,
        as_json,
    ))
}

pub fn render(cfg: &Config, snap: &Snapshot, as_json: bool) -> String {
    let c = classify_once(snap, &cfg.thresholds);
    let (level, reasons, lines) = (c.level, c.reasons, c.lines);
    if as_json {
        let mut v = serde_json::to_value(snap).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("level".into(), json!(level));
            m.insert(
                "reasons".into(),
                json!(reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>()),
            );
            m.insert("yellow_below_bytes".into(), json!(lines.yellow));
            m.insert("red_below_bytes".into(), json!(lines.red));
            if let Some(w) = crate::wired::judge(&snap.memory, &lines) {
                m.insert("gpu_wired_limit_bytes".into(), json!(w.limit));
                m.insert("gpu_wired_level".into(), json!(w.level));
                if let Some(warning) = w.warning() {
                    m.insert("gpu_wired_warning".into(), json!(warning));
                }
            }
        }
        return format!("{v:#}\n");
    }
    let m = &snap.memory;
    let mut o = String::new();
    let _ = writeln!(o, "level:     {}", level.as_str().to_uppercase());
    let _ = writeln!(
        o,
        "available: {} of {} (yellow below {}, red below {})",
        m.available_bytes, m.total_bytes, lines.yellow, lines.red
    );
    let parts: Vec<String> = m.parts().iter().map(|(k, b)| format!("{k} {b}")).collect();
    if !parts.is_empty() {
        let _ = writeln!(o, "memory:    {}", parts.join(", "));
    }
    if let (Some(t), Some(u)) = (m.swap_total_bytes, m.swap_used_bytes) {
        let rate = snap
            .pressure
            .swapout_bytes_per_sec
            .map(|r| format!(", swapping out {}/s", Bytes(r as u64)))
            .unwrap_or_default();
        let _ = writeln!(o, "swap:      {u} used of {t}{rate}");
    }
    if let (Some(s), Some(f)) = (snap.pressure.psi_some_avg10, snap.pressure.psi_full_avg10) {
        let _ = writeln!(o, "PSI:       memory some {s:.2}%, full {f:.2}% (avg10)");
    }
    if let Some(k) = snap.pressure.kernel_level {
        let _ = writeln!(o, "kernel:    {}", k.as_str());
    }
    if let Some(w) = crate::wired::judge(m, &lines) {
        let _ = match w.warning() {
            Some(warn) => writeln!(o, "GPU wired: {} — {warn}", w.level.as_str().to_uppercase()),
            None => writeln!(o, "GPU wired: {}", w.figures()),
        };
    }
    let why: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
    let _ = writeln!(
        o,
        "reasons:   {}",
        if why.is_empty() {
            "none".into()
        } else {
            why.join("; ")
        }
    );
    let _ = writeln!(o, "MLX processes: {}", snap.mlx_processes.len());
    if !snap.mlx_processes.is_empty() {
        let _ = writeln!(
            o,
            "  {:>7}  {:>10}  {:<16}  COMMAND",
            "PID", "FOOTPRINT", "PROGRAM"
        );
        for p in &snap.mlx_processes {
            let cmd = crate::text::line_capped(&p.cmdline, 80);
            let program = if p.program.is_empty() {
                &p.name
            } else {
                &p.program
            };
            let name = crate::text::line(program);
            let _ = writeln!(
                o,
                "  {:>7}  {:>10}  {:<16}  {}",
                p.pid,
                p.footprint_bytes.to_string(),
                name,
                cmd
            );
        }
    }
    if !snap.top_processes.is_empty() {
        let _ = writeln!(
            o,
            "largest processes: {}",
            crate::policy::name_top(&snap.top_processes)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: the GPU wired limit in `status`, text and JSON: a warning
    /// with the command below the yellow line, one plain line at the
    /// default, nothing where the limit is unknown (Linux).
    #[test]
    fn status_shows_the_gpu_wired_limit_only_where_there_is_one() {
        let cfg = Config::embedded().expect("defaults");
        let mut s = Snapshot::default();
        s.memory.total_bytes = Bytes::gib(64);
        s.memory.available_bytes = Bytes::gib(30);
        let text = render(&cfg, &s, false);
        assert!(!text.contains("GPU wired"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&render(&cfg, &s, true)).expect("JSON");
        assert!(v.get("gpu_wired_limit_mb").is_none() && v.get("gpu_wired_level").is_none());

        s.memory.gpu_wired_limit_mb = Some(0);
        let text = render(&cfg, &s, false);
        assert!(
            text.contains("GPU wired: GPU wired limit about 48.00 GiB (the system default)"),
            "{text}"
        );

        s.memory.gpu_wired_limit_mb = Some(61 * 1024);
        let text = render(&cfg, &s, false);
        assert!(text.contains("GPU wired: YELLOW"), "{text}");
        assert!(
            text.contains("sudo sysctl iogpu.wired_limit_mb=61440"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&render(&cfg, &s, true)).expect("JSON");
        assert_eq!(v["gpu_wired_limit_mb"], 61 * 1024);
        assert_eq!(v["gpu_wired_level"], "yellow");
        assert!(v["gpu_wired_warning"]
            .as_str()
            .is_some_and(|w| w.contains("keeps 3.00 GiB")));
    }
}
