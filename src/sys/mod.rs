//! The only code with `unsafe`: one module per OS, each returning plain
//! Rust data for the pure code elsewhere to reason about.

#[cfg(target_os = "macos")]
pub mod macos;
#[cfg(target_os = "macos")]
pub mod macos_pressure;
#[cfg(target_os = "macos")]
pub mod macos_signal;

pub mod fs;
#[cfg(target_os = "linux")]
pub(crate) mod poll;
pub mod unix;
