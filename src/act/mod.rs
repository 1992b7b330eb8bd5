//! Actuators: the only code with side effects. `DryRun` and `Recording`
//! perform nothing, so the whole pipeline runs in tests with real decisions.

pub mod hook;
pub mod notify;
pub mod notify_backend;
pub mod pending;
pub mod signal;

use crate::config::Actions;
use crate::model::{Level, Pid};
use crate::policy::{Action, Notice, NoticeKind, Sig, SignalOrder};
use crate::sample::SampleError;
use pending::{Finished, Job, PendingTerm};
use serde::Serialize;
use signal::Fresh;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// What became of an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// Carried out.
    Done,
    /// Decided and logged, deliberately not carried out.
    DryRun,
    /// Not carried out because a last check said no (e.g. pid reused).
    Skipped(String),
    /// Tried and failed.
    Failed(String),
    /// Handed to a job that runs the `pre_terminate` hook first, off the
    /// decision loop; what became of it is told later (`System::finished`).
    Pending,
}

impl Outcome {
    pub fn is_dry_run(&self) -> bool {
        matches!(self, Outcome::DryRun)
    }
}

/// The last readings an actuator takes right before a signal (the sampler
/// provides them; tests can point them anywhere).
pub trait Probe {
    /// Available memory now, read afresh.
    fn fresh(&mut self) -> Result<Fresh, SampleError>;
    /// The start time of `pid` now; `None` if it is gone.
    fn start_time(&mut self, pid: Pid) -> Option<u64>;
    /// A probe reading the same sources that may move to another thread
    /// (a pending SIGTERM's job takes its last checks there); `None` when
    /// this one cannot, and the hook then runs where it is asked for.
    fn detach(&self) -> Option<Box<dyn Probe + Send>> {
        None
    }
}

pub trait Actuator {
    fn act(&mut self, action: &Action, probe: &mut dyn Probe) -> Outcome;
    /// The level of the cycle whose actions follow (hooks report it).
    fn set_level(&mut self, _level: Level) {}
}

/// Where notices go: the desktop notifier, or anything a test provides.
pub trait Poster: Send {
    fn post(&self, n: &Notice) -> Outcome;
}

/// The real actuator: notifications, signals with their last checks, hooks.
pub struct System {
    pub dry_run: bool,
    pub notify: bool,
    pub poster: Option<Box<dyn Poster>>,
    pub pre_terminate: Vec<String>,
    pub post_terminate: Vec<String>,
    pub hook_timeout: std::time::Duration,
    /// The level at the time of the action, for hooks.
    pub level: Level,
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

impl System {
    pub fn new(cfg: &Actions, dry_run: bool, poster: Option<Box<dyn Poster>>) -> System {
        let (finished_tx, finished_rx) = unbounded_channel();
        System {
            dry_run,
            notify: cfg.notify,
            poster,
            pre_terminate: cfg.pre_terminate.clone(),
            post_terminate: cfg.post_terminate.clone(),
            hook_timeout: cfg.hook_timeout,
            level: Level::Green,
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
            };
            match PendingTerm::start(job, self.finished_tx.clone()) {
                Ok(p) => {
                    self.pending = Some(p);
                    return Outcome::Pending;
                }
                Err(e) => crate::log_event!(
                    error,
                    "error",
                    serde_json::json!({ "error": format!("no thread for the pre_terminate hook ({e}): running it on the loop") })
                ),
            }
        }
        hook::run(
            "pre_terminate",
            &self.pre_terminate,
            &env,
            self.hook_timeout,
            &|| None,
        );
        signal::last_checks_then_send(o, probe)
    }

    /// Take the new config's action settings (SIGHUP), keeping the poster.
    pub fn reconfigure(&mut self, cfg: &Actions, dry_run: bool) {
        self.dry_run = dry_run;
        self.notify = cfg.notify;
        self.pre_terminate = cfg.pre_terminate.clone();
        self.post_terminate = cfg.post_terminate.clone();
        self.hook_timeout = cfg.hook_timeout;
    }
}

impl Actuator for System {
    fn set_level(&mut self, level: Level) {
        self.level = level;
    }

    fn act(&mut self, action: &Action, probe: &mut dyn Probe) -> Outcome {
        match action {
            Action::Notify(n) => {
                let Some(poster) = self.poster.as_ref().filter(|_| self.notify) else {
                    return Outcome::Skipped("notifications are off".into());
                };
                if self.dry_run && n.kind == NoticeKind::Terminated {
                    let mut n = n.clone();
                    n.title = format!(
                        "Dry run: would stop {}",
                        n.title.trim_start_matches("Stopping ")
                    );
                    return poster.post(&n);
                }
                poster.post(n)
            }
            Action::Signal(o) if self.dry_run => {
                let _ = o;
                Outcome::DryRun
            }
            Action::Signal(o) if o.signal == Sig::Term && !self.pre_terminate.is_empty() => {
                self.start_pending(o, probe)
            }
            Action::Signal(o) => signal::last_checks_then_send(o, probe),
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
            Action::NoVictim { .. } | Action::RedNotMlx { .. } => Outcome::Done,
        }
    }
}

/// Logs decisions, performs nothing (the default until real actuators land).
#[derive(Debug, Default)]
pub struct DryRun;

impl Actuator for DryRun {
    fn act(&mut self, action: &Action, _probe: &mut dyn Probe) -> Outcome {
        match action {
            Action::Notify(_) | Action::Signal(_) => Outcome::DryRun,
            Action::NoVictim { .. } | Action::RedNotMlx { .. } | Action::VictimExited { .. } => {
                Outcome::Done
            }
        }
    }
}

/// Remembers every action, performs nothing: for tests and `replay`.
#[derive(Debug, Default)]
pub struct Recording {
    pub actions: Vec<Action>,
}

impl Actuator for Recording {
    fn act(&mut self, action: &Action, probe: &mut dyn Probe) -> Outcome {
        self.actions.push(action.clone());
        DryRun.act(action, probe)
    }
}
