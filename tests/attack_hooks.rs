//! Issue 13, hooks that cannot hang the daemon: a `pre_terminate` hook runs
//! off the decision loop (samples and SIGHUP go on), in its own process
//! group (the timeout kills its children too), and a stop during it cancels
//! the pending SIGTERM. Real headroom, real hooks, real victims.
//!
//! Red without allocating: thresholds as a share of RAM near 100 %. The
//! victim is a growing Python run through a symlink whose name is the only program
//! `mlx.patterns` accepts (the program rule, as for `mlx_lm.lora`), with
//! `detect_library = false`: on a machine shared with other tests, no
//! other process can ever be this daemon's victim.
#![cfg(target_os = "linux")]

mod common;

use common::lookalikes::{alive, signalled, Lookalikes};
use common::{is, python3, wait_bounded, Daemon, Kid};
use headroom::action::{Action, Outcome, Sig, SignalOrder};
use headroom::classify::Classifier;
use headroom::config::Config;
use headroom::model::Scope;
use headroom::model::{Bytes, MlxProcess, Pid, Snapshot, SystemMemory};
use headroom::policy::Policy;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

/// A real Python run through a symlink named `name` (≤ 15 bytes, so the
/// kernel's name for it is `name` too: its program is `name`), growing
/// 2 MiB every 100 ms: a victim must be what eats the memory (issue 12:
/// an idle one beside a larger non-MLX process is not stopped).
fn spawn_victim(dir: &Path, name: &str) -> Kid {
    let link = dir.join(name);
    std::os::unix::fs::symlink(python3(), &link).expect("symlink");
    Kid::new(
        Command::new(&link)
            .args([
                "-c",
                "import time\nheld = []\nwhile len(held) < 400:\n    held.append(b'x' * (2 << 20))\n    time.sleep(0.1)\ntime.sleep(600)\n",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the victim"),
    )
}

/// Red at once (the thresholds are shares of RAM near 100 %), a SIGTERM
/// after 200 ms of red for the one process named `victim`, `hook` (TOML
/// array) as pre_terminate.
fn config(victim: &str, hook: &str, hook_timeout: &str) -> String {
    format!(
        "[poll]\ninterval = \"100ms\"\nmax_interval = \"100ms\"\n\
         [thresholds]\nyellow_below = \"99.5%\"\nred_below = \"99%\"\n\
         [mlx]\npatterns = ['^{victim}$']\ndetect_library = false\n\
         [actions]\nnotify = false\nterminate_after = \"200ms\"\nkill_after = \"30s\"\n\
         min_victim_footprint = \"1MiB\"\npre_terminate = {hook}\nhook_timeout = \"{hook_timeout}\"\n"
    )
}

/// `/bin/sh -c SCRIPT` as a TOML array.
fn sh(script: &str) -> String {
    format!("[\"/bin/sh\", \"-c\", {}]", toml_str(script))
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// Wait (bounded) for `path` to hold a pid, written whole by the hook.
fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is gone: no /proc entry, a zombie, or (reused) no longer `comm`.
fn gone(pid: i32, comm: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let name = stat
        .split_once('(')
        .and_then(|(_, r)| r.rsplit_once(')'))
        .map(|(n, rest)| (n.to_string(), rest.trim_start().chars().next()));
    match name {
        Some((n, state)) => n != comm || state == Some('Z'),
        None => true,
    }
}

fn wait_gone(pid: i32, comm: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(pid, comm) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `at` of the last sample logged before `terminate_pending`.
fn pending_at(d: &Daemon) -> f64 {
    let events = d.events();
    let p = position(&events, |e| is(e, "terminate_pending")).unwrap_or(events.len());
    events[..p]
        .iter()
        .rev()
        .find(|e| is(e, "sample"))
        .and_then(|e| e["at"].as_f64())
        .unwrap_or(0.0)
}

fn position(events: &[Value], pred: impl Fn(&Value) -> bool) -> Option<usize> {
    events.iter().position(pred)
}

/// A 12 s pre_terminate hook while red: samples keep being logged all
/// through it (their `at` keeps rising), a SIGHUP during it is answered
/// with `config_reloaded` before the SIGTERM goes out, and the SIGTERM goes
/// out only once the hook has exited. (Before issue 13 the loop sat in the
/// hook: no sample, no reload, for 12 s.)
#[test]
fn samples_and_sighup_go_on_while_a_pre_terminate_hook_runs() {
    let work = tempfile::tempdir().expect("tempdir");
    // Beside the victim: the lookalikes of issue 12, and a process whose
    // argument names the victim's program. The SIGTERM sent after the
    // hook reaches the victim only.
    let look_dir = tempfile::tempdir().expect("tempdir");
    let look = Lookalikes::start(look_dir.path());
    let namer = Kid::new(
        std::process::Command::new("bash")
            .args(["-c", "sleep 600; echo hk-victim-a"])
            .spawn()
            .expect("bash"),
    );
    let mut victim = spawn_victim(work.path(), "hk-victim-a");
    let pidfile = work.path().join("hook.pid");
    let hook = sh(&format!("echo $$ > {}; sleep 12", pidfile.display()));
    let d = Daemon::start(&config("hk-victim-a", &hook, "30s"), &[]);
    let pending = d.wait_for("terminate_pending", LONG, |e| is(e, "terminate_pending"));
    assert_eq!(pending["pid"], victim.pid(), "{pending}");
    assert_eq!(pending["result"]["outcome"], "pending", "{pending}");
    read_pid(&pidfile);
    // Samples go on: one more than 2 s after the first logged since the hook began.
    let before = pending_at(&d);
    let first = d.wait_for("a sample after the SIGTERM was decided", LONG, |e| {
        is(e, "sample") && e["at"].as_f64().is_some_and(|a| a > before)
    });
    let t0 = first["at"].as_f64().unwrap_or(0.0);
    d.wait_for("samples 2 s into the hook", LONG, |e| {
        is(e, "sample") && e["at"].as_f64().is_some_and(|a| a > t0 + 2.0)
    });
    d.signal(Signal::SIGHUP);
    d.wait_for("config_reloaded", LONG, |e| is(e, "config_reloaded"));
    let sent = d.wait_for("terminate_sent", LONG, |e| is(e, "terminate_sent"));
    assert_eq!(sent["result"]["outcome"], "done", "{sent}");
    assert_eq!(sent["pid"], victim.pid(), "{sent}");
    let status = wait_bounded(&mut victim.0, LONG).expect("the victim exits");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");

    let events = d.events();
    let p = position(&events, |e| is(e, "terminate_pending")).expect("pending");
    let s = position(&events, |e| is(e, "terminate_sent")).expect("sent");
    let r = position(&events, |e| is(e, "config_reloaded")).expect("reloaded");
    let hook_end = position(&events, |e| {
        is(e, "hook_finished") && e["hook"] == "pre_terminate"
    })
    .expect("hook_finished");
    assert!(
        p < r && r < hook_end && hook_end < s,
        "order: pending {p}, reloaded {r}, hook_finished {hook_end}, sent {s}"
    );
    let fin = &events[hook_end];
    assert_eq!(fin["exit_code"], 0, "{fin}");
    assert!(fin["secs"].as_f64().unwrap_or(0.0) >= 11.5, "{fin}");
    let during: Vec<f64> = events[p..s]
        .iter()
        .filter(|e| is(e, "sample"))
        .filter_map(|e| e["at"].as_f64())
        .collect();
    assert!(
        during.windows(2).all(|w| w[0] < w[1]),
        "sample times rise: {during:?}"
    );
    let span = during.last().copied().unwrap_or(0.0) - during.first().copied().unwrap_or(0.0);
    assert!(
        during.len() >= 10 && span >= 10.0,
        "sampling went on through the 12 s hook: {} samples over {span:.1} s",
        during.len()
    );
    assert_eq!(signalled(&events), vec![victim.pid()], "the victim only");
    look.assert_untouched(&events);
    assert!(
        alive(namer.pid()),
        "the process naming the victim in an argument"
    );
    let (status, err) = d.stop();
    assert!(status.success(), "{status:?} {err}");
}

/// A hook that outlives `hook_timeout` is killed with its whole process
/// group: the `sh` and both `sleep 600` it started are gone, by pid. Then
/// the SIGTERM goes out. (Before issue 13 only the `sh` was killed.)
#[test]
fn a_hook_past_its_timeout_dies_with_its_children() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut victim = spawn_victim(work.path(), "hk-victim-b");
    let w = work.path().display();
    let hook = sh(&format!(
        "sleep 600 & echo $! > {w}/g1.tmp; sleep 600 & echo $! > {w}/g2.tmp; \
         mv {w}/g1.tmp {w}/g1; mv {w}/g2.tmp {w}/g2; echo $$ > {w}/sh.tmp; mv {w}/sh.tmp {w}/sh; wait"
    ));
    let d = Daemon::start(&config("hk-victim-b", &hook, "2s"), &[]);
    let shell = read_pid(&work.path().join("sh"));
    let g1 = read_pid(&work.path().join("g1"));
    let g2 = read_pid(&work.path().join("g2"));
    let killed = d.wait_for("the hook's timeout", LONG, |e| {
        is(e, "error") && e["hook"] == "pre_terminate"
    });
    let text = killed["error"].as_str().unwrap_or("");
    assert!(
        text.contains("still running after") && text.contains("killed its process group"),
        "{killed}"
    );
    assert_eq!(
        killed["pgid"], shell,
        "the hook leads its own group: {killed}"
    );
    wait_gone(shell, "sh", "the hook's sh");
    wait_gone(g1, "sleep", "the hook's first child");
    wait_gone(g2, "sleep", "the hook's second child");
    let sent = d.wait_for("terminate_sent", LONG, |e| is(e, "terminate_sent"));
    assert_eq!(sent["result"]["outcome"], "done", "{sent}");
    let status = wait_bounded(&mut victim.0, LONG).expect("the victim exits");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    let (status, err) = d.stop();
    assert!(status.success(), "{status:?} {err}");
}

/// SIGTERM to headroom while the pre_terminate hook runs (timeout 30 s):
/// headroom exits within seconds, the hook's group is killed, the victim
/// gets no SIGTERM and lives, and the log says the SIGTERM was cancelled.
/// (Before issue 13 headroom sat in the hook for 30 s, then sent it.)
#[test]
fn a_stop_during_the_hook_cancels_the_sigterm_and_headroom_exits_promptly() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut victim = spawn_victim(work.path(), "hk-victim-c");
    let pidfile = work.path().join("hook.pid");
    let hook = sh(&format!("echo $$ > {}; sleep 600", pidfile.display()));
    let mut d = Daemon::start(&config("hk-victim-c", &hook, "30s"), &[]);
    d.wait_for("terminate_pending", LONG, |e| is(e, "terminate_pending"));
    let shell = read_pid(&pidfile);
    let t0 = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = wait_bounded(&mut d.child, Duration::from_secs(15)).expect("headroom exits");
    let took = t0.elapsed();
    eprintln!("headroom exited {took:?} after its SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        victim.0.try_wait().expect("try_wait").is_none(),
        "the victim got no SIGTERM and is alive"
    );
    wait_gone(shell, "sh", "the hook");
    let events = d.events();
    let cancelled = events
        .iter()
        .find(|e| is(e, "terminate_cancelled"))
        .unwrap_or_else(|| panic!("no terminate_cancelled: {events:?}"));
    assert_eq!(cancelled["pid"], victim.pid(), "{cancelled}");
    assert!(
        cancelled["reason"]
            .as_str()
            .unwrap_or("")
            .contains("stopping (SIGTERM)"),
        "{cancelled}"
    );
    assert!(
        events.iter().all(|e| !is(e, "terminate_sent")),
        "no terminate_sent"
    );
    assert!(
        events.last().is_some_and(|e| is(e, "stopping")),
        "`stopping` is still the last line: {:?}",
        events.last()
    );
    assert!(
        events.iter().any(|e| is(e, "error")
            && e["hook"] == "pre_terminate"
            && e["error"].as_str().unwrap_or("").contains("cancelled")),
        "the hook's end is logged"
    );
}

// ------------------------------------------------ the policy, on fake time

fn victim_proc() -> MlxProcess {
    MlxProcess {
        pid: Pid(4242),
        uid: 501,
        start_time: 77,
        name: "mlx_lm.lora".into(),
        cmdline: "mlx_lm.lora --train".into(),
        program: "mlx_lm.lora".into(),
        footprint_bytes: Bytes::gib(6),
        rss_bytes: Bytes::gib(6),
        peak_bytes: Bytes::gib(6),
        growth_bytes_per_sec: 0.0,
        matched_by: "pattern:test".into(),
        job: None,
    }
}

struct Run {
    cfg: Config,
    classifier: Classifier,
    policy: Policy,
}

impl Run {
    /// The victim at `ms` (1 ms later on the snapshot clock: the first call
    /// is preceded by a green sample at 0 where the victim was 4 GiB
    /// smaller, so it eats the fall to red — issue 26).
    fn at(&mut self, ms: u64, avail_mib: u64) -> Vec<Action> {
        if self.policy.victim_pending().is_none() && ms == 0 {
            let mut before = victim_proc();
            before.footprint_bytes = before.footprint_bytes.saturating_sub(Bytes::gib(4));
            self.step(0, 8000, before);
        }
        self.step(ms + 1, avail_mib, victim_proc())
    }

    fn step(&mut self, ms: u64, avail_mib: u64, p: MlxProcess) -> Vec<Action> {
        let s = Snapshot {
            at: Duration::from_millis(ms),
            memory: SystemMemory {
                total_bytes: Bytes::gib(16),
                available_bytes: Bytes::mib(avail_mib),
                ..Default::default()
            },
            mlx_processes: vec![p],
            ..Default::default()
        };
        let c = self.classifier.step(&s, &self.cfg.thresholds);
        self.policy.step(&s, &c, &self.cfg)
    }
}

fn orders(a: &[Action]) -> Vec<SignalOrder> {
    a.iter()
        .filter_map(|a| match a {
            Action::Signal(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

/// While its SIGTERM waits for the hook, the victim is held: no second
/// SIGTERM and no SIGKILL, even past kill_after and below half the floor;
/// once sent, kill_after counts from the send. A SIGTERM that was not sent
/// leaves no victim (a later sample decides afresh), as without hooks.
#[test]
fn a_pending_sigterm_holds_the_victim_and_kill_after_counts_from_the_send() {
    let mut r = Run {
        cfg: Config::from_text("t.toml", "").expect("config"), // terminate_after 5s, kill_after 10s
        classifier: Classifier::default(),
        policy: Policy::new(Pid(999), Scope::user(501)),
    };
    r.at(0, 1800);
    let a = r.at(5000, 1800);
    let term = orders(&a);
    assert_eq!(term.len(), 1, "{a:?}");
    assert_eq!(term[0].signal, Sig::Term);
    r.policy.signal_outcome(&term[0], &Outcome::Pending);
    for ms in [6000, 15_000, 16_000, 40_000] {
        assert!(orders(&r.at(ms, 1800)).is_empty(), "nothing at {ms} ms");
    }
    assert!(
        orders(&r.at(41_000, 100)).is_empty(),
        "below half the floor too"
    );
    // Sent at 42 s (42.001 s on the snapshot clock): SIGKILL 10 s after
    // that, not after the decision.
    r.policy
        .signal_finished(&term[0], &Outcome::Done, Duration::from_millis(42_001));
    assert!(orders(&r.at(51_999, 1800)).is_empty());
    let k = orders(&r.at(52_000, 1800));
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].signal, Sig::Kill);

    // Not sent (cancelled, memory recovered, pid gone): no victim is held.
    let mut r = Run {
        cfg: Config::from_text("t.toml", "").expect("config"),
        classifier: Classifier::default(),
        policy: Policy::new(Pid(999), Scope::user(501)),
    };
    r.at(0, 1800);
    let term = orders(&r.at(5000, 1800));
    r.policy.signal_outcome(&term[0], &Outcome::Pending);
    assert!(r.policy.victim_pending().is_some());
    r.policy.signal_finished(
        &term[0],
        &Outcome::Skipped("cancelled: headroom is stopping (SIGTERM)".into()),
        Duration::from_secs(6),
    );
    assert!(r.policy.victim_pending().is_none());
    let again = orders(&r.at(7000, 1800));
    assert_eq!(again.len(), 1, "decided afresh");
    assert_eq!(again[0].signal, Sig::Term);
}
