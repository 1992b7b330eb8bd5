//! The MLX memory guide's sizing rules: `headroom advise` (estimate,
//! machine, model, report). What it reads off a command line (`--cmd`)
//! comes from `crate::cmdline`, the same rules the daemon's notices use.

pub mod estimate;
pub mod folder;
pub mod machine;
pub mod model;
pub mod render;
pub mod report;

pub use report::{run, Request};
