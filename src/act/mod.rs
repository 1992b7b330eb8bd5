//! Actuators: the only code with side effects. `DryRun` and `Recording`
//! perform nothing, so the whole pipeline runs in tests with real decisions.

pub mod hook;
pub mod notify;
pub mod signal;

use crate::config::Actions;
use crate::model::{Level, Pid};
use crate::policy::{Action, Notice, NoticeKind, Sig};
use crate::sample::SampleError;
use serde::Serialize;
use signal::Fresh;

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
}

impl System {
    pub fn new(cfg: &Actions, dry_run: bool, poster: Option<Box<dyn Poster>>) -> System {
        System {
            dry_run,
            notify: cfg.notify,
            poster,
            pre_terminate: cfg.pre_terminate.clone(),
            post_terminate: cfg.post_terminate.clone(),
            hook_timeout: cfg.hook_timeout,
            level: Level::Green,
        }
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
            Action::Signal(o) => {
                if o.signal == Sig::Term && !self.pre_terminate.is_empty() {
                    let env = hook::hook_env(&o.process, self.level, "SIGTERM");
                    hook::run(
                        "pre_terminate",
                        &self.pre_terminate,
                        &env,
                        self.hook_timeout,
                    );
                }
                match probe.fresh() {
                    Ok(f) => {
                        if let Some(why) = signal::stand_down(o, &f) {
                            return Outcome::Skipped(why);
                        }
                    }
                    // Cannot re-read memory: act on the decision already made.
                    Err(e) => {
                        tracing::warn!(event = "error", error = %format!("fresh memory reading failed: {e}"))
                    }
                }
                signal::deliver(o, &mut |pid| probe.start_time(pid))
            }
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
