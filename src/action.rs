//! What the policy decides and the actuator carries out: the actions, the
//! signal orders with what identifies their process, and what became of
//! each. The policy writes them, `act` performs them; neither imports the other.

use crate::model::{Bytes, MlxProcess, Pid, TopProcess};
use crate::sample::Fresh;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Yellow,
    Red,
    Terminated,
    NoVictim,
    Recovered,
}

/// A desktop notification to post.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub title: String,
    pub body: String,
    /// The MLX process the notice is about, if any.
    pub pid: Option<Pid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Sig {
    Term,
    Kill,
}

/// A decision to signal one process, with everything needed to check,
/// right before sending, that it is still the same process.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignalOrder {
    pub signal: Sig,
    pub process: MlxProcess,
    pub available_bytes: Bytes,
    /// Stand down if a fresh reading right before the signal is at or above this.
    pub red_line_bytes: Bytes,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Action {
    Notify(Notice),
    Signal(SignalOrder),
    /// Red called for a termination but nobody may be stopped.
    NoVictim {
        reason: String,
        mlx_processes: usize,
    },
    /// Red is held by processes headroom does not stop: the largest ones,
    /// MLX or not, named so the user need not open Activity Monitor.
    RedNotMlx {
        reason: String,
        top_processes: Vec<TopProcess>,
        /// Who made the fall (src/attribute.rs), most first.
        contributors: Vec<Contributor>,
    },
    /// The victim has gone; memory before the SIGTERM and now.
    VictimExited {
        process: MlxProcess,
        after_secs: f64,
        available_before_bytes: Bytes,
        available_after_bytes: Bytes,
        killed: bool,
    },
    /// What stopping a job gave back, measured once its memory was back
    /// (available settled, or a bounded wait): the rise of available memory
    /// since the SIGTERM, with what the other processes grew meanwhile
    /// added back.
    Freed {
        processes: Vec<MlxProcess>,
        freed_bytes: Bytes,
        available_before_bytes: Bytes,
        available_after_bytes: Bytes,
        others_growth_bytes: Bytes,
        after_secs: f64,
    },
}

/// A job that made a share of the fall (src/attribute.rs), as logged and named.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contributor {
    /// Its process group id.
    pub job: Pid,
    /// How people call its largest process.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    pub processes: u32,
    pub mlx: bool,
    /// What it grew over the window.
    pub growth_bytes: Bytes,
    /// The fall of available memory over the same window.
    pub fall_bytes: Bytes,
    /// The window, seconds.
    pub secs: f64,
    /// The sentence the notice uses.
    pub text: String,
}

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
    /// decision loop; what became of it is told later (`act::Actuator::finished`).
    Pending,
}

impl Outcome {
    pub fn is_dry_run(&self) -> bool {
        matches!(self, Outcome::DryRun)
    }
}

/// Why the signal should not be sent after all, given a fresh reading.
pub fn stand_down(order: &SignalOrder, fresh: &Fresh) -> Option<String> {
    if fresh.kernel_critical || fresh.available < order.red_line_bytes {
        return None;
    }
    Some(format!(
        "memory recovered before the signal: available {} is above the red line {}",
        fresh.available, order.red_line_bytes
    ))
}
