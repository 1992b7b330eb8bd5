//! The last checks before a signal, on real processes with real signals:
//! a pid whose start time differs from the victim's is never signalled
//! (pids are reused), a fresh reading above the red line stands down, and
//! pid 1 is refused outright.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use headroom::act::signal::{deliver, Kernel};
use headroom::action::{stand_down, Outcome, Sig, SignalOrder};
use headroom::model::{Bytes, MlxProcess, Pid};
use headroom::sample::linux::parse_stat;
use headroom::sample::Fresh;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

fn start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).ok().map(|s| s.start_time)
}

fn order(pid: i32, start_time: u64, signal: Sig) -> SignalOrder {
    SignalOrder {
        signal,
        process: MlxProcess {
            pid: Pid(pid),
            uid: 0,
            start_time,
            name: "sleep".into(),
            cmdline: "sleep 600".into(),
            footprint_bytes: Bytes::mib(1),
            rss_bytes: Bytes::mib(1),
            peak_bytes: Bytes::mib(1),
            growth_bytes_per_sec: 0.0,
            program: "mlx_lm.lora".into(),
            matched_by: "pattern:test".into(),
            job: None,
        },
        available_bytes: Bytes::mib(100),
        red_line_bytes: Bytes::gib(2),
        reason: "test".into(),
    }
}

#[test]
fn a_pid_now_owned_by_another_process_is_not_signalled() {
    let mut kid = Kid::new(Command::new("sleep").arg("600").spawn().expect("sleep"));
    let pid = kid.pid() as i32;
    let real = start_time(pid).expect("start time");
    // The victim we decided on had this pid but started earlier: a reused pid.
    let out = deliver(
        &order(pid, real - 1, Sig::Term),
        &mut Kernel::default(),
        &mut |p| start_time(p.0),
    );
    assert!(
        matches!(&out, Outcome::Skipped(why) if why.contains("another process")),
        "{out:?}"
    );
    assert!(
        kid.0.try_wait().expect("try_wait").is_none(),
        "the new owner of the pid was not signalled"
    );

    // The same pid with the right start time is the victim: it gets SIGTERM.
    let out = deliver(
        &order(pid, real, Sig::Term),
        &mut Kernel::default(),
        &mut |p| start_time(p.0),
    );
    assert_eq!(out, Outcome::Done);
    let status = wait_bounded(&mut kid.0, Duration::from_secs(30)).expect("exits");
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}

#[test]
fn a_victim_that_already_exited_is_skipped_not_an_error() {
    let mut kid = Kid::new(Command::new("true").spawn().expect("true"));
    let pid = kid.pid() as i32;
    wait_bounded(&mut kid.0, Duration::from_secs(30)).expect("exits");
    let out = deliver(
        &order(pid, 1, Sig::Kill),
        &mut Kernel::default(),
        &mut |p| start_time(p.0),
    );
    assert!(
        matches!(&out, Outcome::Skipped(why) if why.contains("exited")),
        "{out:?}"
    );
}

#[test]
fn init_is_never_signalled() {
    let out = deliver(
        &order(1, start_time(1).unwrap_or(0), Sig::Kill),
        &mut Kernel::default(),
        &mut |p| start_time(p.0),
    );
    assert!(matches!(out, Outcome::Failed(_)), "{out:?}");
}

#[test]
fn a_fresh_reading_above_the_red_line_stands_down_unless_the_kernel_says_critical() {
    let o = order(12345, 1, Sig::Term);
    let recovered = Fresh {
        available: Bytes::gib(3),
        kernel_critical: false,
    };
    assert!(stand_down(&o, &recovered).is_some_and(|w| w.contains("recovered")));
    let still_red = Fresh {
        available: Bytes::gib(1),
        kernel_critical: false,
    };
    assert_eq!(stand_down(&o, &still_red), None);
    let critical = Fresh {
        available: Bytes::gib(3),
        kernel_critical: true,
    };
    assert_eq!(stand_down(&o, &critical), None);
}

/// Issue 16: `terminate_sent` says whether the signal went through a handle
/// that pins the process. On Linux that is the pidfd (this CI kernel has
/// pidfd_open, 5.3+); the handle and the log field agree.
#[test]
fn terminate_sent_says_whether_the_signal_was_pinned() {
    use headroom::action::Action;
    use headroom::engine::action_fields;
    use headroom::sys::unix::{pins_signals, ProcessHandle};
    let kid = Kid::new(Command::new("sleep").arg("600").spawn().expect("sleep"));
    let pid = kid.pid() as i32;
    let handle = ProcessHandle::open(pid).expect("handle");
    assert!(handle.pinned(), "pidfd_open exists on this kernel");
    assert_eq!(handle.pinned(), pins_signals());
    let o = order(pid, start_time(pid).expect("start"), Sig::Term);
    let (event, v) = action_fields(&Action::Signal(o.clone()), &Outcome::Done);
    assert_eq!(event, "terminate_sent");
    assert_eq!(v["pinned"], true, "{v}");
    // Nothing sent (a dry run, a replay on another host): no field.
    let (_, v) = action_fields(&Action::Signal(o), &Outcome::DryRun);
    assert!(v.get("pinned").is_none(), "{v}");
    drop(kid); // killed and reaped by pid
}
