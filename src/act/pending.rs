//! A SIGTERM that waits for its `pre_terminate` hook off the decision loop
//! (issue 13): a thread runs the hook (at most `hook_timeout`), then takes
//! the last checks (memory re-read, pid identity through a pidfd) and
//! sends; the daemon is told what became of it, or cancels it on a stop.

use super::hook;
use super::signal::{self, Signaller};
use crate::action::{Outcome, SignalOrder};
use crate::sample::Probe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// What became of a pending SIGTERM, and when (just after the last checks).
#[derive(Debug)]
pub struct Finished {
    pub order: SignalOrder,
    pub outcome: Outcome,
    pub at: Instant,
}

/// Where the job stands; the one lock both sides take to decide whether a
/// stop came in time.
#[derive(Debug)]
enum Gate {
    Waiting,
    Cancelled(String),
    Sending,
}

/// A SIGTERM handed to its job; `cancel` stops it before it is sent.
pub struct PendingTerm {
    pub order: SignalOrder,
    gate: Arc<Mutex<Gate>>,
}

fn lock(g: &Mutex<Gate>) -> MutexGuard<'_, Gate> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a pending SIGTERM needs: the hook and how long it may take, and a
/// probe that may leave the loop's thread for the last checks.
pub struct Job {
    pub order: SignalOrder,
    pub argv: Vec<String>,
    pub env: Vec<(&'static str, String)>,
    pub timeout: Duration,
    pub probe: Box<dyn Probe + Send>,
    pub signaller: Box<dyn Signaller>,
}

impl PendingTerm {
    /// Start `job` on its own thread; its `Finished` goes to `done`.
    pub fn start(job: Job, done: UnboundedSender<Finished>) -> Result<PendingTerm, std::io::Error> {
        let gate = Arc::new(Mutex::new(Gate::Waiting));
        let order = job.order.clone();
        let theirs = Arc::clone(&gate);
        std::thread::Builder::new()
            .name("pre-terminate".into())
            .spawn(move || {
                let mut job = job;
                let outcome = run(&mut job, &theirs);
                let _ = done.send(Finished {
                    order: job.order,
                    outcome,
                    at: Instant::now(),
                });
            })?;
        Ok(PendingTerm { order, gate })
    }

    /// Cancel the SIGTERM unless it is already being sent: `true` if it will
    /// not be sent (the hook's group is killed within a few milliseconds).
    pub fn cancel(&self, reason: &str) -> bool {
        let mut g = lock(&self.gate);
        match &*g {
            Gate::Waiting => {
                *g = Gate::Cancelled(reason.to_string());
                true
            }
            Gate::Cancelled(_) => true,
            Gate::Sending => false,
        }
    }
}

/// The hook, then — unless cancelled meanwhile — the last checks and the signal.
fn run(job: &mut Job, gate: &Mutex<Gate>) -> Outcome {
    let cancelled = || match &*lock(gate) {
        Gate::Cancelled(r) => Some(r.clone()),
        _ => None,
    };
    hook::run(
        "pre_terminate",
        &job.argv,
        &job.env,
        job.timeout,
        &cancelled,
    );
    {
        let mut g = lock(gate);
        if let Gate::Cancelled(r) = &*g {
            return Outcome::Skipped(format!("cancelled: {r}"));
        }
        *g = Gate::Sending;
    }
    signal::last_checks_then_send(&job.order, &mut *job.probe, &mut *job.signaller)
}
