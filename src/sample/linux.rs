//! Linux sampler: /proc/meminfo, /proc/pressure/memory, /proc/vmstat and /proc/PID.
//! (stub — being written)

use crate::config::Config;
use crate::discover::ProcessEvent;
use crate::model::Snapshot;
use crate::sample::{SampleError, Sampler};
use std::time::Instant;

pub struct LinuxSampler;

impl LinuxSampler {
    pub fn new(_cfg: &Config, _start: Instant) -> Result<LinuxSampler, SampleError> {
        Err(SampleError::Unsupported(
            "linux sampler not yet written".into(),
        ))
    }
}

impl Sampler for LinuxSampler {
    fn sample(&mut self) -> Result<Snapshot, SampleError> {
        Err(SampleError::Unsupported(
            "linux sampler not yet written".into(),
        ))
    }
    fn take_events(&mut self) -> Vec<ProcessEvent> {
        Vec::new()
    }
}
