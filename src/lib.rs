//! headroom: keeps Apple Silicon Macs (and Linux boxes) usable while MLX
//! jobs run — sample → classify → policy → act → log.

pub mod classify;
pub mod config;
pub mod discover;
pub mod model;
pub mod policy;
pub mod sample;
