//! macOS sampler: Mach host statistics → the Activity Monitor breakdown,
//! the kernel's pressure level, swap, and MLX processes by phys_footprint.
//! All system calls are in `crate::sys::macos`; the arithmetic is
//! `crate::macos_vm` (tested on every OS). Empty on other OSes.
#![cfg(target_os = "macos")]

use crate::config::Config;
use crate::discover::{ProcIdentity, ProcMeasure, ProcSource, Usage};
use crate::macos_vm::{self, RateTracker};
use crate::model::Scope;
use crate::model::{Bytes, KernelLevel, Pid, Pressure, Snapshot};
use crate::sample::{Processes, SampleError, Sampler};
use crate::sys::macos as sys;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::warn;

/// Rates need at least this much time between readings: host_statistics64
/// answers non-Apple binaries from a cache after 2–10 calls a second, so
/// shorter intervals would see zero and then a burst.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Most file-backed regions looked at per process when checking for libmlx
/// (a Python with torch, numpy and mlx maps a few hundred).
const MAX_REGIONS: usize = 8192;

pub struct MacSampler {
    start: Instant,
    page_size: u64,
    total: Bytes,
    rates: RateTracker,
    processes: Processes,
    source: MacProcSource,
    /// Optional signals whose failure was already logged (log once, not every second).
    warned_swap: bool,
    warned_pressure: bool,
}

fn io_err(what: &str, source: std::io::Error) -> SampleError {
    SampleError::Io {
        path: PathBuf::from(what),
        source,
    }
}

impl MacSampler {
    pub fn new(cfg: &Config, scope: Scope, start: Instant) -> Result<MacSampler, SampleError> {
        let page_size = sys::page_size();
        if !page_size.is_power_of_two() {
            return Err(SampleError::parse(
                "vm_kernel_page_size",
                format!("{page_size} is not a page size"),
            ));
        }
        let total = sys::mem_size().map_err(|e| io_err("sysctl hw.memsize", e))?;
        // Fail at start, not on the first tick, when the VM statistics are unreadable.
        sys::host_vm_counters().map_err(|e| io_err("host_statistics64(HOST_VM_INFO64)", e))?;
        let self_pid = Pid(i32::try_from(std::process::id()).unwrap_or(i32::MAX));
        Ok(MacSampler {
            start,
            page_size,
            total,
            rates: RateTracker::with_min_interval(RATE_WINDOW),
            processes: Processes::new(cfg, scope, self_pid),
            source: MacProcSource::for_uid(sys::effective_uid()),
            warned_swap: false,
            warned_pressure: false,
        })
    }
}

impl Sampler for MacSampler {
    fn sample(&mut self) -> Result<Snapshot, SampleError> {
        let at = self.start.elapsed();
        let counters =
            sys::host_vm_counters().map_err(|e| io_err("host_statistics64(HOST_VM_INFO64)", e))?;
        let mut memory = macos_vm::breakdown(&counters, self.page_size, self.total);

        match sys::swap_usage() {
            Ok(s) => {
                memory.swap_total_bytes = Some(s.total);
                memory.swap_used_bytes = Some(s.used);
            }
            Err(e) if !self.warned_swap => {
                self.warned_swap = true;
                warn!(event = "error", source = "sysctl vm.swapusage", error = %e);
            }
            Err(_) => {}
        }
        (memory.gpu_wired_limit_mb, memory.gpu_wired_lwm_mb) = sys::gpu_wired_mb();
        let kernel_level = match sys::pressure_level() {
            Ok(v) => KernelLevel::from_sysctl(i64::from(v)),
            Err(e) => {
                if !self.warned_pressure {
                    self.warned_pressure = true;
                    warn!(event = "error", source = "sysctl kern.memorystatus_vm_pressure_level", error = %e);
                }
                None
            }
        };
        let rates = self.rates.update(at, &counters, self.page_size);

        let procs = self
            .processes
            .read(
                &mut self.source,
                at,
                i32::try_from(std::os::unix::process::parent_id()).unwrap_or(0),
                |_, pid| sys::bsd_info(pid).map(|b| i32::try_from(b.ppid).unwrap_or(0)),
            )
            .map_err(|e| io_err("proc_listpids", e))?;

        let pressure = Pressure {
            kernel_level,
            swapout_bytes_per_sec: rates.swapout_bytes_per_sec,
            ..Default::default()
        };
        Ok(procs.snapshot(at, memory, pressure))
    }

    fn processes(&mut self) -> &mut Processes {
        &mut self.processes
    }
}

impl crate::sample::Probe for MacSampler {
    fn fresh(&mut self) -> Result<crate::sample::Fresh, SampleError> {
        self.probe().fresh()
    }

    fn start_time(&mut self, pid: Pid) -> Option<u64> {
        sys::start_time_us(pid.0)
    }

    fn detach(&self) -> Option<Box<dyn crate::sample::Probe + Send>> {
        Some(Box::new(self.probe()))
    }
}

impl MacSampler {
    fn probe(&self) -> MacProbe {
        MacProbe {
            page_size: self.page_size,
            total: self.total,
        }
    }
}

/// The last checks before a signal, apart from the sampler, so a pending
/// SIGTERM's job can take them on its own thread.
pub struct MacProbe {
    page_size: u64,
    total: Bytes,
}

impl crate::sample::Probe for MacProbe {
    /// Available memory and the kernel level read afresh, for the last check
    /// before a signal. (Within a second of the last sample the kernel may
    /// answer host_statistics64 from its cache; the sysctl is always live.)
    fn fresh(&mut self) -> Result<crate::sample::Fresh, SampleError> {
        let counters =
            sys::host_vm_counters().map_err(|e| io_err("host_statistics64(HOST_VM_INFO64)", e))?;
        let memory = macos_vm::breakdown(&counters, self.page_size, self.total);
        let kernel_critical = sys::pressure_level()
            .ok()
            .and_then(|v| KernelLevel::from_sysctl(i64::from(v)))
            == Some(KernelLevel::Critical);
        Ok(crate::sample::Fresh {
            available: memory.available_bytes,
            kernel_critical,
        })
    }

    fn start_time(&mut self, pid: Pid) -> Option<u64> {
        sys::start_time_us(pid.0)
    }
}

/// Processes through libproc and KERN_PROCARGS2.
struct MacProcSource {
    pids: Vec<i32>,
    args: Vec<u8>,
    /// List only this user's pids: a normal user cannot read anyone
    /// else's (`None` for root, who watches everyone).
    uid_only: Option<u32>,
}

impl MacProcSource {
    fn for_uid(euid: u32) -> MacProcSource {
        MacProcSource {
            pids: Vec::new(),
            args: Vec::new(),
            uid_only: (euid != 0).then_some(euid),
        }
    }
}

/// A process's job: its process group (0, unknown, is its own).
fn job_of(b: &sys::BsdInfo, pid: Pid) -> Pid {
    i32::try_from(b.pgid)
        .ok()
        .filter(|g| *g > 0)
        .map_or(pid, Pid)
}

impl ProcSource for MacProcSource {
    fn pids(&mut self, out: &mut Vec<Pid>) -> std::io::Result<()> {
        sys::list_pids(&mut self.pids, self.uid_only)?;
        out.extend(self.pids.iter().map(|&p| Pid(p)));
        Ok(())
    }

    /// The cheap recheck: one PROC_PIDTBSDINFO call, no KERN_PROCARGS2 copy.
    fn name(&mut self, pid: Pid, name: &mut String) -> Option<u64> {
        let b = sys::bsd_info(pid.0).filter(|b| !b.zombie)?;
        name.clear();
        name.push_str(&b.name);
        Some(b.start_time_us)
    }

    /// macOS hands out no pids to threads: an id is a process or nothing.
    fn is_process(&mut self, pid: Pid) -> Option<bool> {
        self.identity(pid).map(|_| true)
    }

    fn identity(&mut self, pid: Pid) -> Option<ProcIdentity> {
        let b = sys::bsd_info(pid.0).filter(|b| !b.zombie)?;
        // Another user's arguments are unreadable without root: empty argv,
        // so the program is the kernel's name and the process is still
        // placed in or out of scope.
        let argv = sys::proc_args(pid.0, &mut self.args).unwrap_or_default();
        Some(ProcIdentity {
            uid: b.uid,
            start_time: b.start_time_us,
            name: b.name,
            argv,
            exe: sys::exe_path(pid.0).unwrap_or_default(),
        })
    }

    /// Discovery asks only for processes that may host MLX
    /// (`discover::may_host_mlx`): the walk is one syscall per region.
    fn mlx_library(&mut self, pid: Pid) -> Option<String> {
        sys::find_mapped_file(pid.0, MAX_REGIONS, crate::discover::is_mlx_library)
    }

    /// The kernel's name and phys_footprint only (no argument copy): the
    /// top list reads this for every pid while red. Without root, other
    /// users' processes are unreadable and left out of that list.
    fn usage(&mut self, pid: Pid, name: &mut String) -> Option<Usage> {
        let b = sys::bsd_info(pid.0).filter(|b| !b.zombie)?;
        let r = sys::rusage(pid.0)?;
        name.clear();
        name.push_str(&b.name);
        Some(Usage {
            footprint: r.phys_footprint,
            job: job_of(&b, pid),
        })
    }

    /// A zombie (exited, not yet reaped) is gone: proc_pid_rusage still
    /// answers for it, so the state is checked first.
    fn measure(&mut self, pid: Pid) -> Option<ProcMeasure> {
        let b = sys::bsd_info(pid.0).filter(|b| !b.zombie)?;
        let r = sys::rusage(pid.0)?;
        let start_time = b.start_time_us;
        Some(ProcMeasure {
            start_time,
            footprint: r.phys_footprint,
            rss: r.resident,
            job: Some(job_of(&b, pid)),
        })
    }
}
