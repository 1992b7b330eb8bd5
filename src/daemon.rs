//! The daemon loop on a current-thread tokio runtime: timer → sample (on
//! the loop's thread while quiet, on a blocking thread when it lists
//! pids) → classify → policy → act → log; SIGTERM/SIGINT stop
//! it cleanly, SIGHUP reloads the config (a bad new one is reported and the
//! old one kept).

use crate::act::pending::Finished;
use crate::act::{Actuator, Poster};
use crate::action::{Action, Outcome};
use crate::classify::Classification;
use crate::config::{scope_for, Config};
use crate::discover::ProcessEvent;
use crate::engine::{action_fields, level_changed_fields, Engine};
use crate::log::LogHandle;
use crate::log_event;
use crate::model::{Level, Pid, Snapshot};
use crate::pace;
use crate::sample::psi_trigger::PsiTrigger;
use crate::sample::{self, Sampler};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load the config (`Config::load`: found, validated, trusted as root) and
/// check it against this machine's total RAM: what `run`, `check-config`
/// and a SIGHUP reload use.
pub fn load_for_this_machine(cli: Option<&std::path::Path>) -> Result<Config, crate::Error> {
    let cfg = Config::load(cli)?;
    cfg.check_total(sample::total_ram()?)?;
    Ok(cfg)
}

/// The config the loop runs on: `run --dry-run` is `actions.dry_run`, so
/// the policy (which words its notices for a dry run) and the actuator
/// read one setting.
fn with_dry_run(mut cfg: Config, force: bool) -> Config {
    cfg.actions.dry_run |= force;
    cfg
}

/// Everything one cycle needs; owned by the loop, swapped whole on reload.
pub struct Daemon {
    cfg: Config,
    cli_config: Option<PathBuf>,
    force_dry_run: bool,
    sampler: Option<Box<dyn Sampler + Send>>,
    engine: Engine,
    actuator: Actuator,
    log: LogHandle,
    start: Instant,
    last_sample_logged: Option<Duration>,
    last_error: Option<String>,
    metrics: crate::metrics::Metrics,
    /// What the last cycle said about how close red is (src/pace.rs).
    pace: Option<pace::Reading>,
    /// `(at, available)` of the last sample, for MemAvailable's fall rate.
    /// MemAvailable readings, for its fall rate (src/rate.rs).
    available: crate::rate::Window,
    /// A sample that outlived SAMPLE_TIMEOUT, and when it started.
    pending: Option<(PendingSample, Instant)>,
    /// When the last sample that looked for new pids started.
    last_discovery: Option<Instant>,
    /// When the last sample that listed every pid started.
    last_full: Option<Instant>,
    /// How many sleeps in a row were shorter than `poll.min_interval`
    /// (ending at a predicted crossing): `pace::MAX_SHORT_SLEEPS`.
    short_streak: u32,
    /// The pid the sampler is reading now (0 between reads), for the error
    /// about a sample that does not return; every sampler writes here.
    reading: Arc<AtomicI32>,
    /// The GPU wired limit was judged (once per start: `gpu_wired_limit`).
    wired_judged: bool,
}

type PendingSample = tokio::task::JoinHandle<sample::Taken>;

/// How long one cycle waits for a sample (at least `poll.interval`) before
/// saying it is stuck and going back to the loop.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a stop waits for a cancelled pre_terminate job to kill its hook
/// (it looks every 20 ms).
const STOP_WAIT: Duration = Duration::from_secs(2);

/// On macOS host_statistics64 is rate-limited to about 2 Hz for non-Apple
/// binaries (DESIGN.md): sampling faster reads cached numbers.
const HOST_SAMPLE_FLOOR: Duration = if cfg!(target_os = "macos") {
    Duration::from_millis(500)
} else {
    Duration::ZERO
};

/// Whether a sample that lists no pids is taken on the loop's own thread
/// (Linux: /proc files kept open); the macOS sampler keeps its worker.
const ON_LOOP: bool = cfg!(target_os = "linux");

/// Wait for the PSI trigger, or forever when there is none.
async fn psi_fired(t: &mut Option<PsiTrigger>) -> bool {
    match t {
        Some(t) => t.fired().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    pub fn new(
        cfg: Config,
        cli_config: Option<PathBuf>,
        force_dry_run: bool,
        log: LogHandle,
        start: Instant,
    ) -> Result<Daemon, crate::Error> {
        let (mut sampler, scope) = sample::open(&cfg, start)?;
        let reading = Arc::default();
        sampler.report_reading_to(Arc::clone(&reading));
        let self_pid = Pid(std::process::id() as i32);
        let dry_run = force_dry_run || cfg.actions.dry_run;
        let poster: Option<Box<dyn Poster>> = Some(Box::new(crate::act::notify::Notifier::start()));
        let actuator = Actuator::new(&cfg.actions, dry_run, poster);
        Ok(Daemon {
            cfg: with_dry_run(cfg, force_dry_run),
            cli_config,
            force_dry_run,
            sampler: Some(sampler),
            engine: Engine::new(self_pid, scope),
            actuator,
            log,
            start,
            last_sample_logged: None,
            last_error: None,
            metrics: crate::metrics::Metrics::disabled(),
            pace: None,
            available: crate::rate::Window::new(pace::FALL_WINDOW),
            pending: None,
            last_discovery: None,
            last_full: None,
            short_streak: 0,
            reading,
            wired_judged: false,
        })
    }

    fn dry_run(&self) -> bool {
        self.force_dry_run || self.cfg.actions.dry_run
    }

    fn log_started(&self) {
        let scope = scope_for(&self.cfg)
            .map(|s| s.describe())
            .unwrap_or_default();
        log_event!(
            info,
            "started",
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "uid": nix::unistd::Uid::current().as_raw(),
                "config": self.cfg.source,
                "log_path": self.log.path(),
                "dry_run": self.dry_run(),
                "scope": scope,
                "poll_interval_secs": self.cfg.poll_interval.as_secs_f64(),
            })
        );
        if nix::unistd::Uid::current().is_root() {
            log_event!(
                warn,
                "scope",
                json!({ "scope": scope, "note": "running as root: every user's processes are watched and reported; only root's own MLX processes and those of the users in actions.users may be stopped" })
            );
        }
    }

    /// Run until SIGTERM or SIGINT.
    pub async fn run(mut self) -> Result<(), crate::Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(crate::Error::Io)?;
        let mut int = signal(SignalKind::interrupt()).map_err(crate::Error::Io)?;
        let mut hup = signal(SignalKind::hangup()).map_err(crate::Error::Io)?;
        self.log_started();
        self.metrics = crate::metrics::Metrics::start(self.cfg.metrics_listen);
        let mut psi = self.sync_psi(None);
        let mut sleep = crate::timer::Sleep::new();
        loop {
            self.cycle().await;
            let wait = self.next_wait();
            self.short_streak = if pace::is_short(&self.limits(), wait) {
                self.short_streak + 1
            } else {
                0
            };
            tokio::select! {
                _ = sleep.sleep(wait) => {}
                fired = psi_fired(&mut psi) => {
                    if fired {
                        log_event!(info, "psi_wakeup", json!({ "slept_secs": wait.as_secs_f64() }));
                    } else {
                        log_event!(warn, "psi_trigger", json!({ "armed": false, "reason": "the trigger stopped (POLLERR)" }));
                        psi = None;
                    }
                }
                _ = term.recv() => { self.stop("SIGTERM").await; return Ok(()); }
                _ = int.recv() => { self.stop("SIGINT").await; return Ok(()); }
                _ = hup.recv() => { self.reload(); psi = self.sync_psi(psi); }
                done = self.actuator.finished() => self.term_finished(done),
            }
        }
    }

    /// The sleep before the next sample, from the last cycle's reading.
    fn next_wait(&self) -> Duration {
        match &self.pace {
            Some(r) => pace::next_interval(&self.limits(), r),
            None => self.cfg.poll_interval,
        }
    }

    /// The configured sampling range and the platform's floor.
    fn limits(&self) -> pace::Limits {
        pace::Limits {
            base: self.cfg.poll_interval,
            min: self.cfg.poll_min_interval,
            max: self.cfg.poll_max_interval,
            floor: HOST_SAMPLE_FLOOR,
        }
    }

    /// Arm the PSI trigger when the config wants one and none is armed;
    /// drop it when the config no longer wants it.
    fn sync_psi(&self, current: Option<PsiTrigger>) -> Option<PsiTrigger> {
        if !self.cfg.psi_trigger {
            return None;
        }
        if current.is_some() {
            return current;
        }
        match PsiTrigger::arm_native() {
            Ok(t) => {
                log_event!(
                    info,
                    "psi_trigger",
                    json!({ "armed": true, "spec": t.spec() })
                );
                Some(t)
            }
            Err(reason) => {
                log_event!(
                    info,
                    "psi_trigger",
                    json!({ "armed": false, "reason": reason })
                );
                None
            }
        }
    }

    /// Remember how close red is and how fast memory goes, for `next_wait`.
    fn observe_pace(&mut self, snap: &Snapshot, c: &Classification) {
        // Bytes per second MemAvailable fell (negative when it rose).
        let fall = -self
            .available
            .push(snap.at, snap.memory.available_bytes.0 as f64)
            .unwrap_or(0.0);
        let growth = snap
            .mlx_processes
            .iter()
            .map(|p| p.growth_bytes_per_sec)
            .fold(0.0, f64::max);
        self.pace = Some(pace::Reading {
            level: c.level,
            available: snap.memory.available_bytes,
            red_line: c.lines.red,
            fill_rate: growth.max(fall),
            fall_rate: fall,
            short_streak: self.short_streak,
        });
    }

    /// A stop. A SIGTERM still waiting for its pre_terminate hook is
    /// cancelled (the victim gets nothing; the hook's group is killed) and
    /// the job is waited for at most STOP_WAIT, so nothing outlives us.
    /// `stopping` stays the last line.
    async fn stop(&mut self, signal: &str) {
        let reason = format!("headroom is stopping ({signal})");
        if let Some(c) = self.actuator.cancel_pending(&reason) {
            let done = tokio::time::timeout(STOP_WAIT, self.actuator.finished()).await;
            if c.in_time {
                let action = Action::Signal(c.order.clone());
                let (_, mut fields) = action_fields(&action, &Outcome::Skipped(reason.clone()));
                if let Some(m) = fields.as_object_mut() {
                    m.insert("terminate_reason".into(), json!(c.order.reason));
                    m.insert("reason".into(), json!(reason));
                }
                log_event!(warn, "terminate_cancelled", fields);
            } else if let Ok(f) = done {
                // Already being sent when the stop came: say what became of it.
                self.term_finished(f);
            }
        }
        log_event!(info, "stopping", json!({ "signal": signal }));
    }

    /// A SIGTERM that waited for its pre_terminate hook is sent, or not:
    /// logged as any `terminate_sent`, and told to the policy.
    fn term_finished(&mut self, f: Finished) {
        let action = Action::Signal(f.order);
        let (event, fields) = action_fields(&action, &f.outcome);
        log_event!(warn, event, fields);
        self.metrics.count_action(&action, &f.outcome);
        if let Action::Signal(order) = &action {
            let at = f.at.saturating_duration_since(self.start);
            self.engine.signal_finished(order, &f.outcome, at);
        }
    }

    fn reload(&mut self) {
        match load_for_this_machine(self.cli_config.as_deref())
            .and_then(|c| Ok(scope_for(&c).map(|s| (c, s))?))
        {
            Ok((cfg, scope)) => {
                let rebuild = cfg.detect_library != self.cfg.detect_library
                    || cfg.patterns.iter().map(|r| r.as_str()).ne(self
                        .cfg
                        .patterns
                        .iter()
                        .map(|r| r.as_str()))
                    || scope_for(&self.cfg).ok().as_ref() != Some(&scope);
                if rebuild {
                    let scope = match sample::open(&cfg, self.start) {
                        Ok((mut s, scope)) => {
                            s.report_reading_to(Arc::clone(&self.reading));
                            // A stuck sample of the old sampler is left to
                            // finish on its own; its result is not wanted.
                            self.pending = None;
                            self.last_discovery = None;
                            self.last_full = None;
                            self.sampler = Some(s);
                            scope
                        }
                        Err(e) => {
                            crate::log::error(format_args!(
                                "config reload: {e}; keeping the old config"
                            ));
                            self.metrics.count_error();
                            return;
                        }
                    };
                    self.engine.rescope(Pid(std::process::id() as i32), scope);
                }
                self.log
                    .reconfigure(&cfg.log.path, cfg.log.max_size.0, cfg.log.keep);
                self.actuator
                    .reconfigure(&cfg.actions, self.force_dry_run || cfg.actions.dry_run);
                self.cfg = with_dry_run(cfg, self.force_dry_run);
                log_event!(
                    info,
                    "config_reloaded",
                    json!({ "source": self.cfg.source, "rebuilt_sampler": rebuild })
                );
            }
            Err(e) => {
                crate::log::error(format_args!(
                    "config reload failed, keeping the old config: {e}"
                ));
                self.metrics.count_error();
            }
        }
    }

    async fn cycle(&mut self) {
        // A sample still running from an earlier cycle is waited for again;
        // otherwise a new one starts: on the loop's own thread when it
        // reads no /proc/PID file that can hang, else on a blocking thread.
        let (mut handle, sample_start) = match self.pending.take() {
            Some(p) => p,
            None => {
                let Some(mut sampler) = self.sampler.take() else {
                    return;
                };
                // While yellow or red, the sample also reads every process
                // into jobs, so who eats the memory can be told
                // (src/attribute.rs), and checks the largest for MLX; not
                // the sample about to see red cross (it must be fast).
                let now = Instant::now();
                let holders = if self.engine.level() < Level::Yellow {
                    sample::Holders::Off
                } else if pace::near_crossing(&self.limits(), self.pace.as_ref())
                    || !sampler.holders_due(now.saturating_duration_since(self.start))
                {
                    sample::Holders::Keep
                } else {
                    sample::Holders::Read
                };
                sampler.want_top_processes(holders);
                let since = |t: Option<Instant>| t.map(|t| now.duration_since(t));
                let listing = pace::listing(
                    &self.limits(),
                    self.pace.as_ref(),
                    since(self.last_discovery),
                    since(self.last_full),
                );
                let at = now.saturating_duration_since(self.start);
                let listing = match listing {
                    // Every pid once in a long while even when quiet (the
                    // last-pid counter is trusted only so far).
                    pace::Listing::NewPids if sampler.listing_overdue(at) => pace::Listing::Full,
                    l => l,
                };
                let lists = match listing {
                    pace::Listing::Skip => false,
                    pace::Listing::NewPids => {
                        // Only pids made since the last look, and only when
                        // there are any (or a known one is due for its
                        // recheck).
                        self.last_discovery = Some(now);
                        let new = sampler.new_pids() || sampler.rechecks_due(at);
                        if new {
                            sampler.new_pids_only_once();
                        }
                        new
                    }
                    pace::Listing::Full => {
                        self.last_discovery = Some(now);
                        self.last_full = Some(now);
                        true
                    }
                };
                if !lists {
                    sampler.skip_discovery_once();
                    // Reading the holders reads argv and maps: off the loop.
                    if ON_LOOP && holders != sample::Holders::Read {
                        self.sample_on_loop(sampler, now);
                        return;
                    }
                }
                let h = sample::take_off_loop(sampler);
                (h, now)
            }
        };
        let limit = SAMPLE_TIMEOUT.max(self.cfg.poll_interval);
        let joined = match tokio::time::timeout(limit, &mut handle).await {
            Ok(j) => j,
            Err(_) => {
                // A read under /proc has not returned: most likely a process
                // in uninterruptible sleep holding its memory map lock. The
                // loop goes on (signals, reloads, metrics) and takes the
                // sample when it comes.
                let pid = self.reading.load(Ordering::Relaxed);
                let what = if pid > 0 {
                    crate::sample::reading_process(pid)
                } else {
                    "reading system memory".to_string()
                };
                self.error_once(format!(
                    "sampling has not returned within {} s, {what}; waiting for it, no decisions until it returns",
                    limit.as_secs_f64()
                ));
                self.pending = Some((handle, sample_start));
                return;
            }
        };
        match joined {
            Ok(taken) => self.decide(taken, sample_start),
            Err(e) => {
                self.error_once(format!("sampler thread failed: {e}"));
                // sampler lost with the thread; a reload makes a new one
            }
        }
    }

    /// A sample that lists no pids, taken on the loop's own thread: the
    /// system files (kept open, one read each) and /proc/PID/stat of the
    /// MLX processes already tracked (stat takes no lock a stuck process
    /// holds, unlike cmdline and maps, which only a listing reads).
    fn sample_on_loop(&mut self, sampler: Box<dyn Sampler + Send>, start: Instant) {
        self.decide(sample::take(sampler), start);
    }

    /// Everything after a sample: classify, decide, act, log.
    fn decide(&mut self, taken: sample::Taken, sample_start: Instant) {
        self.metrics.observe_sample_duration(sample_start.elapsed());
        let (sampler, result, events) = taken;
        self.sampler = Some(sampler);
        for ev in events {
            log_process_event(&ev);
        }
        let snap = match result {
            Ok(s) => {
                if self.last_error.take().is_some() {
                    log_event!(info, "sampling_recovered", json!({}));
                }
                s
            }
            Err(e) => {
                self.error_once(format!("sample failed: {e}"));
                return;
            }
        };
        self.judge_wired_once(&snap);
        let Some(probe) = self.sampler.as_deref_mut() else {
            return;
        };
        let cycle = self
            .engine
            .step(&snap, &self.cfg, &mut self.actuator, probe);
        let c = &cycle.classification;
        self.observe_pace(&snap, c);
        if c.changed() {
            log_event!(warn, "level_changed", level_changed_fields(&snap, c));
        }
        for (a, outcome) in &cycle.actions {
            let (event, fields) = action_fields(a, outcome);
            match a {
                Action::Signal(_) => log_event!(warn, event, fields),
                _ => log_event!(info, event, fields),
            }
            self.metrics.count_action(a, outcome);
        }
        let actions = &cycle.actions;
        self.metrics.observe_cycle(&snap, c);
        let due = self
            .last_sample_logged
            .is_none_or(|t| snap.at.saturating_sub(t) >= self.cfg.log.sample_every);
        // While anything is timing (a level above green, or a swap-out hold
        // running) every sample is logged, so a log replays to the same decisions.
        let timing = c.level != Level::Green
            || snap
                .pressure
                .swapout_bytes_per_sec
                .is_some_and(|r| r > self.cfg.thresholds.swapout_rate.0 as f64);
        if due || timing || c.changed() || !actions.is_empty() {
            self.last_sample_logged = Some(snap.at);
            log_sample(&snap, c);
        }
    }

    /// The GPU wired limit (Apple Silicon), judged on the first sample that
    /// has it: a `gpu_wired_limit` event when it leaves macOS less than the
    /// yellow line, and a notification too below the red line.
    fn judge_wired_once(&mut self, snap: &Snapshot) {
        if self.wired_judged {
            return;
        }
        let lines = crate::classify::Lines::resolve(&self.cfg.thresholds, snap.memory.total_bytes);
        let Some(v) = crate::wired::judge(&snap.memory, &lines) else {
            return;
        };
        self.wired_judged = true;
        let Some((fields, notice)) = crate::wired::warning_event(&v) else {
            return;
        };
        log_event!(warn, "gpu_wired_limit", fields);
        if let (Some(n), Some(probe)) = (notice, self.sampler.as_deref_mut()) {
            let a = Action::Notify(n);
            let outcome = self.actuator.act(&a, probe);
            let (event, fields) = action_fields(&a, &outcome);
            log_event!(info, event, fields);
        }
    }

    /// Report an error once, not every cycle, until it changes or clears.
    fn error_once(&mut self, msg: String) {
        if self.last_error.as_deref() != Some(msg.as_str()) {
            crate::log::error(&msg);
            self.metrics.count_error();
            self.last_error = Some(msg);
        }
    }
}

pub fn log_sample(snap: &Snapshot, c: &Classification) {
    let mut v = serde_json::to_value(snap).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("level".into(), json!(c.level));
        m.insert(
            "reasons".into(),
            json!(c.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>()),
        );
    }
    log_event!(info, "sample", v);
}

fn log_process_event(ev: &ProcessEvent) {
    match ev {
        ProcessEvent::Found(p) => log_event!(info, "mlx_process_found", p),
        ProcessEvent::Exited { process, watched } => {
            let mut v = serde_json::to_value(process).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("watched_secs".into(), json!(watched.as_secs_f64()));
            }
            log_event!(info, "mlx_process_exited", v)
        }
    }
}
