//! Optional commands run around a termination: argv arrays, no shell, the
//! victim's details in `HEADROOM_*` variables, bounded in time.

use crate::log_event;
use crate::model::{Level, MlxProcess};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment a hook sees.
pub fn hook_env(p: &MlxProcess, level: Level, signal: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HEADROOM_PID", p.pid.to_string()),
        ("HEADROOM_NAME", p.name.clone()),
        ("HEADROOM_CMDLINE", p.cmdline.clone()),
        ("HEADROOM_FOOTPRINT_BYTES", p.footprint_bytes.0.to_string()),
        ("HEADROOM_PEAK_BYTES", p.peak_bytes.0.to_string()),
        ("HEADROOM_LEVEL", level.as_str().to_string()),
        ("HEADROOM_SIGNAL", signal.to_string()),
    ]
}

/// Run `argv` with `env`, waiting at most `timeout`; a hook still running
/// then is killed. Every outcome is logged as `hook_finished` or `error`.
pub fn run(which: &str, argv: &[String], env: &[(&'static str, String)], timeout: Duration) {
    let Some((prog, args)) = argv.split_first() else {
        return;
    };
    let started = Instant::now();
    let mut child = match Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            log_event!(
                error,
                "error",
                json!({ "error": format!("{which} hook {prog:?} could not start: {e}") })
            );
            return;
        }
    };
    let pid = child.id();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                log_event!(
                    info,
                    "hook_finished",
                    json!({ "hook": which, "pid": pid, "exit_code": status.code(), "secs": started.elapsed().as_secs_f64() })
                );
                return;
            }
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                log_event!(
                    error,
                    "error",
                    json!({ "error": format!("{which} hook {prog:?} (pid {pid}) still running after {timeout:?}: killed") })
                );
                return;
            }
        }
    }
}

/// Run a hook on its own thread (post-termination: nothing waits for it).
pub fn spawn(
    which: &'static str,
    argv: Vec<String>,
    env: Vec<(&'static str, String)>,
    timeout: Duration,
) {
    if argv.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name(format!("hook-{which}"))
        .spawn(move || run(which, &argv, &env, timeout));
}
