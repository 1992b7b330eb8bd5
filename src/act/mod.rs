//! Actuators: the only code with side effects. `DryRun` and `Recording`
//! perform nothing, so the whole pipeline runs in tests with real decisions.

use crate::policy::Action;
use serde::Serialize;

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

pub trait Actuator {
    fn act(&mut self, action: &Action) -> Outcome;
}

/// Logs decisions, performs nothing (the default until real actuators land).
#[derive(Debug, Default)]
pub struct DryRun;

impl Actuator for DryRun {
    fn act(&mut self, action: &Action) -> Outcome {
        match action {
            Action::Notify(_) | Action::Signal(_) => Outcome::DryRun,
            Action::NoVictim { .. } | Action::VictimExited { .. } => Outcome::Done,
        }
    }
}

/// Remembers every action, performs nothing: for tests and `replay`.
#[derive(Debug, Default)]
pub struct Recording {
    pub actions: Vec<Action>,
}

impl Actuator for Recording {
    fn act(&mut self, action: &Action) -> Outcome {
        self.actions.push(action.clone());
        DryRun.act(action)
    }
}
