//! Optional commands run around a termination: argv arrays, no shell, the
//! victim's details in `HEADROOM_*` variables, each in its own process
//! group, bounded in time (at the timeout the whole group is killed, so a
//! hook's children die with it).

use crate::log_event;
use crate::model::{Level, MlxProcess};
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often a running hook is checked (exit, timeout, cancel).
const POLL: Duration = Duration::from_millis(20);

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

/// SIGKILL to the hook's whole process group. The hook has not been
/// reaped yet, so its pid — the group's id — cannot have been reused: the
/// signal reaches only what the hook started. It is reaped on a thread of
/// its own: one in uninterruptible sleep dies only when its I/O returns,
/// and nothing (not the pending SIGTERM) waits for that.
fn kill_group(mut child: Child) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    if nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).is_err() {
        let _ = child.kill();
    }
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("hook-reaper".into())
        .spawn(move || child.wait());
}

/// Run `argv` with `env` in a new process group, waiting at most `timeout`;
/// `cancel` is asked every few milliseconds and a reason it returns ends
/// the hook early. A hook still running at the timeout (or cancelled) is
/// killed with its whole group. Every outcome is logged as `hook_finished`
/// or `error`.
pub fn run(
    which: &str,
    argv: &[String],
    env: &[(&'static str, String)],
    timeout: Duration,
    cancel: &dyn Fn() -> Option<String>,
) {
    let Some((prog, args)) = argv.split_first() else {
        return;
    };
    let started = Instant::now();
    let mut child = match Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            crate::log::error_with(
                format_args!("{which} hook {prog:?} could not start: {e}"),
                json!({ "hook": which }),
            );
            return;
        }
    };
    let pid = child.id();
    loop {
        let why_kill = match child.try_wait() {
            Ok(Some(status)) => {
                log_event!(
                    info,
                    "hook_finished",
                    json!({ "hook": which, "pid": pid, "exit_code": status.code(), "secs": started.elapsed().as_secs_f64() })
                );
                return;
            }
            Ok(None) => match cancel() {
                Some(reason) => format!("cancelled ({reason})"),
                None if started.elapsed() < timeout => {
                    std::thread::sleep(POLL);
                    continue;
                }
                None => format!("still running after {timeout:?}"),
            },
            Err(e) => format!("cannot be waited for ({e})"),
        };
        kill_group(child);
        log_event!(
            error,
            "error",
            json!({
                "error": format!("{which} hook {prog:?} (pid {pid}) {why_kill}: killed its process group {pid}"),
                "hook": which,
                "pgid": pid,
                "secs": started.elapsed().as_secs_f64(),
            })
        );
        return;
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
        .spawn(move || run(which, &argv, &env, timeout, &|| None));
}
