//! The actuator: the only code with side effects. One code path for every
//! run: notices go to a `Poster`, signals through the last checks
//! (`signal::last_checks_then_send`) to a `Signaller` — the kernel's, or
//! replay's, which performs nothing — so replay and tests run the very
//! identity rule the daemon runs.

pub mod hook;
pub mod notify;
pub mod notify_backend;
pub mod pending;
pub mod signal;

use crate::action::{Action, Notice, Outcome, Sig, SignalOrder};
use crate::config::Actions;
use crate::model::Level;
use crate::sample::Probe;
use pending::{Finished, Job, PendingTerm};
use signal::{Kernel, Replay, Signaller};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Where notices go: the desktop notifier, or anything a test provides.
pub trait Poster: Send {
    fn post(&self, n: &Notice) -> Outcome;
}

/// Notices that go nowhere: replay's (each says `dry_run`).
pub struct NotPosted;

impl Poster for NotPosted {
    fn post(&self, _n: &Notice) -> Outcome {
        Outcome::DryRun
    }
}

/// The actuator: notifications, signals with their last checks, hooks.
/// `dry_run`: decided and logged, no signal and no hook.
pub struct Actuator {
    pub dry_run: bool,
    pub notify: bool,
    pub poster: Option<Box<dyn Poster>>,
    pub pre_terminate: Vec<String>,
    pub post_terminate: Vec<String>,
    pub hook_timeout: std::time::Duration,
    /// The level at the time of the action, for hooks.
    pub level: Level,
    /// Who sends a signal once the last checks pass.
    signaller: Box<dyn Signaller>,
    /// The SIGTERM waiting for its pre_terminate hook (one at a time).
    pending: Option<PendingTerm>,
    finished_tx: UnboundedSender<Finished>,
    finished_rx: UnboundedReceiver<Finished>,
}

/// What a stop did to a pending SIGTERM.
pub struct Cancelled {
    pub order: SignalOrder,
    /// `false`: the job was already sending; its `Finished` says what became of it.
    pub in_time: bool,
}

impl Actuator {
    /// The daemon's: real signals through the kernel.
    pub fn new(cfg: &Actions, dry_run: bool, poster: Option<Box<dyn Poster>>) -> Actuator {
        let (finished_tx, finished_rx) = unbounded_channel();
        Actuator {
            dry_run,
            notify: cfg.notify,
            poster,
            pre_terminate: cfg.pre_terminate.clone(),
            post_terminate: cfg.post_terminate.clone(),
            hook_timeout: cfg.hook_timeout,
            level: Level::Green,
            signaller: Box::new(Kernel::default()),
            pending: None,
            finished_tx,
            finished_rx,
        }
    }

    /// Replay's (and tests'): every decision goes through the same last
    /// checks, answered by the probe (the snapshot); nothing is sent, no
    /// notice posted, no hook run. A signal that passes is `DryRun`, one the
    /// daemon would have skipped is skipped here.
    pub fn replay() -> Actuator {
        let (finished_tx, finished_rx) = unbounded_channel();
        Actuator {
            dry_run: false,
            notify: true,
            poster: Some(Box::new(NotPosted)),
            pre_terminate: Vec::new(),
            post_terminate: Vec::new(),
            hook_timeout: std::time::Duration::ZERO,
            level: Level::Green,
            signaller: Box::new(Replay),
            pending: None,
            finished_tx,
            finished_rx,
        }
    }

    /// The next pending SIGTERM that has finished (sent, skipped, failed or
    /// cancelled). Cancel-safe; never resolves while none is pending.
    pub async fn finished(&mut self) -> Finished {
        match self.finished_rx.recv().await {
            Some(f) => {
                self.pending = None;
                f
            }
            // Unreachable while `self` holds a sender; wait like an idle channel.
            None => std::future::pending().await,
        }
    }

    /// A stop: cancel the pending SIGTERM unless it is already being sent.
    pub fn cancel_pending(&mut self, reason: &str) -> Option<Cancelled> {
        let p = self.pending.as_ref()?;
        Some(Cancelled {
            order: p.order.clone(),
            in_time: p.cancel(reason),
        })
    }

    /// A SIGTERM with a pre_terminate hook: the hook and the last checks run
    /// on a job's thread; the loop goes on. One at a time.
    fn start_pending(&mut self, o: &SignalOrder, probe: &mut dyn Probe) -> Outcome {
        if let Some(p) = &self.pending {
            // The same SIGTERM ordered again (a reload made a new policy):
            // it is already on its way, and its outcome will be told.
            if p.order.process.pid == o.process.pid
                && p.order.process.start_time == o.process.start_time
            {
                return Outcome::Pending;
            }
            return Outcome::Skipped(format!(
                "a SIGTERM to pid {} is still waiting for its pre_terminate hook",
                p.order.process.pid
            ));
        }
        let env = hook::hook_env(&o.process, self.level, "SIGTERM");
        if let Some(detached) = probe.detach() {
            let job = Job {
                order: o.clone(),
                argv: self.pre_terminate.clone(),
                env: env.clone(),
                timeout: self.hook_timeout,
                probe: detached,
                signaller: self.signaller.twin(),
            };
            match PendingTerm::start(job, self.finished_tx.clone()) {
                Ok(p) => {
                    self.pending = Some(p);
                    return Outcome::Pending;
                }
                Err(e) => crate::log::error(format_args!(
                    "no thread for the pre_terminate hook ({e}): running it on the loop"
                )),
            }
        }
        hook::run(
            "pre_terminate",
            &self.pre_terminate,
            &env,
            self.hook_timeout,
            &|| None,
        );
        signal::last_checks_then_send(o, probe, &mut *self.signaller)
    }

    /// Take the new config's action settings (SIGHUP), keeping the poster.
    pub fn reconfigure(&mut self, cfg: &Actions, dry_run: bool) {
        self.dry_run = dry_run;
        self.notify = cfg.notify;
        self.pre_terminate = cfg.pre_terminate.clone();
        self.post_terminate = cfg.post_terminate.clone();
        self.hook_timeout = cfg.hook_timeout;
    }

    /// The level of the cycle whose actions follow (hooks report it).
    pub fn set_level(&mut self, level: Level) {
        self.level = level;
    }

    pub fn act(&mut self, action: &Action, probe: &mut dyn Probe) -> Outcome {
        match action {
            Action::Notify(n) => {
                let Some(poster) = self.poster.as_ref().filter(|_| self.notify) else {
                    return Outcome::Skipped("notifications are off".into());
                };
                poster.post(n)
            }
            Action::Signal(_) if self.dry_run => Outcome::DryRun,
            Action::Signal(o) if o.signal == Sig::Term && !self.pre_terminate.is_empty() => {
                self.start_pending(o, probe)
            }
            Action::Signal(o) => signal::last_checks_then_send(o, probe, &mut *self.signaller),
            Action::VictimExited { process, .. } => {
                if !self.dry_run {
                    let env = hook::hook_env(process, self.level, "exited");
                    hook::spawn(
                        "post_terminate",
                        self.post_terminate.clone(),
                        env,
                        self.hook_timeout,
                    );
                }
                Outcome::Done
            }
            Action::NoVictim { .. } | Action::RedNotMlx { .. } | Action::Freed { .. } => {
                Outcome::Done
            }
        }
    }
}
