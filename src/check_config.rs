//! `headroom check-config`: the validated config, every key, as TOML that
//! `--config` would accept.

use crate::config::{Config, NeverKill, Size};
use crate::model::Bytes;
use serde_json::json;

/// A size as the config would write it.
fn size_str(s: Size) -> String {
    match s {
        Size::Percent(p) => format!("{p}%"),
        Size::Bytes(b) if b.0 != 0 && b.0 % Bytes::GIB == 0 => format!("{}GiB", b.0 / Bytes::GIB),
        Size::Bytes(b) if b.0 != 0 && b.0 % Bytes::MIB == 0 => format!("{}MiB", b.0 / Bytes::MIB),
        Size::Bytes(b) => b.0.to_string(),
    }
}

fn dur(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The validated config, every key, as TOML that `--config` would accept.
pub fn effective_config(cfg: &Config) -> String {
    let t = &cfg.thresholds;
    let a = &cfg.actions;
    let never: Vec<toml::Value> = a
        .never_kill
        .iter()
        .map(|n| match n {
            NeverKill::Pid(p) => toml::Value::Integer(*p as i64),
            NeverKill::Pattern(r) => toml::Value::String(r.as_str().to_string()),
        })
        .collect();
    let doc = json!({
        "poll": {
            "interval": dur(cfg.poll_interval), "min_interval": dur(cfg.poll_min_interval),
            "max_interval": dur(cfg.poll_max_interval), "psi_trigger": cfg.psi_trigger,
        },
        "thresholds": {
            "yellow_below": size_str(t.yellow_below), "red_below": size_str(t.red_below),
            "hysteresis": size_str(t.hysteresis), "dwell": dur(t.dwell),
            "swapout_rate": size_str(Size::Bytes(t.swapout_rate)), "swapout_hold": dur(t.swapout_hold),
            "psi_full_avg10": t.psi_full_avg10, "projection_horizon": dur(t.projection_horizon),
        },
        "mlx": {
            "patterns": cfg.patterns.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "detect_library": cfg.detect_library,
        },
        "actions": {
            "notify": a.notify, "terminate": a.terminate, "dry_run": a.dry_run,
            "terminate_after": dur(a.terminate_after), "kill_after": dur(a.kill_after),
            "kill_floor": size_str(a.kill_floor), "min_victim_footprint": size_str(a.min_victim_footprint),
            "never_kill": never, "users": a.users,
            "pre_terminate": a.pre_terminate, "post_terminate": a.post_terminate, "hook_timeout": dur(a.hook_timeout),
        },
        "log": {
            "path": cfg.log.path.display().to_string(), "sample_every": dur(cfg.log.sample_every),
            "max_size": size_str(Size::Bytes(cfg.log.max_size)), "keep": cfg.log.keep,
        },
        "metrics": { "listen": cfg.metrics_listen.map(|a| a.to_string()).unwrap_or_default() },
    });
    let body = toml::to_string(&doc).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    let scope = crate::config::scope_for(cfg)
        .map(|s| s.describe())
        .unwrap_or_else(|e| e.to_string());
    format!(
        "# effective configuration (from {})\n# scope: {scope}\n{body}",
        cfg.source
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_config_round_trips_through_the_parser() {
        let c = Config::from_text(
            "u.toml",
            "[thresholds]\nred_below = \"5%\"\n[actions]\nnever_kill = [1234, 'jupyter']\n",
        )
        .expect("cfg");
        let text = effective_config(&c);
        let back = Config::from_text("back.toml", &text).expect(&text);
        assert_eq!(back.thresholds.red_below, Size::Percent(5.0));
        assert_eq!(back.thresholds.yellow_below, c.thresholds.yellow_below);
        assert_eq!(back.thresholds.hysteresis, c.thresholds.hysteresis);
        assert_eq!(back.actions.never_kill.len(), 2);
        assert_eq!(back.log.path, c.log.path);
        assert_eq!(back.patterns.len(), c.patterns.len());
        assert_eq!(back.metrics_listen, None);
        let m = Config::from_text("u.toml", "[metrics]\nlisten = \"[::1]:9779\"\n").expect("cfg");
        let back = Config::from_text("back.toml", &effective_config(&m)).expect("round trip");
        assert_eq!(back.metrics_listen, m.metrics_listen);
    }
}
