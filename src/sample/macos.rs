//! macOS sampler (stub — being written).

use crate::config::Config;
use crate::discover::ProcessEvent;
use crate::model::Snapshot;
use crate::sample::{SampleError, Sampler};
use std::time::Instant;

pub struct MacSampler;

impl MacSampler {
    pub fn new(_cfg: &Config, _start: Instant) -> Result<MacSampler, SampleError> {
        Err(SampleError::Unsupported(
            "macOS sampler not yet written".into(),
        ))
    }
}

impl Sampler for MacSampler {
    fn sample(&mut self) -> Result<Snapshot, SampleError> {
        Err(SampleError::Unsupported(
            "macOS sampler not yet written".into(),
        ))
    }
    fn take_events(&mut self) -> Vec<ProcessEvent> {
        Vec::new()
    }
}
