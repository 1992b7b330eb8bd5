//! `headroom record`: sample at the config's poll interval, the way the
//! daemon samples (off the loop, `sample::take_off_loop`), and write one
//! Snapshot per line — a trace `headroom replay` reads.

use crate::config::Config;
use crate::Error;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// `headroom record`: sample at the config's poll interval and write one
/// Snapshot per line until `duration` has passed or SIGINT/SIGTERM.
/// Returns the number of snapshots written.
pub fn record(
    cfg: &Config,
    out: &Path,
    force: bool,
    duration: Option<Duration>,
) -> Result<u64, Error> {
    let start = std::time::Instant::now();
    let (sampler, _) = crate::sample::open(cfg, start)?;
    // A trace names processes and their command lines: 0600, and never
    // written through a link someone planted (issue 13).
    let file = crate::fsafe::create_private(out, force)?;
    let rt = crate::runtime().map_err(Error::Io)?;
    rt.block_on(record_loop(
        sampler,
        file,
        out,
        cfg.poll_interval,
        duration.map(|d| tokio::time::Instant::from_std(start) + d),
    ))
}

async fn record_loop(
    mut sampler: Box<dyn crate::sample::Sampler + Send>,
    mut file: std::fs::File,
    out: &Path,
    every: Duration,
    deadline: Option<tokio::time::Instant>,
) -> Result<u64, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Io)?;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30);
    let deadline = deadline.unwrap_or(far);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = 0u64;
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::time::sleep_until(deadline) => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let joined = crate::sample::take_off_loop(sampler).await;
        let (s, result, _) =
            joined.map_err(|e| Error::Io(std::io::Error::other(format!("sampler thread: {e}"))))?;
        sampler = s;
        match result {
            Ok(snap) => {
                last_error = None;
                let mut line = serde_json::to_string(&snap)
                    .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
                line.push('\n');
                // One write per line: a reader never sees half a Snapshot.
                file.write_all(line.as_bytes()).map_err(|e| {
                    Error::Io(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", out.display()),
                    ))
                })?;
                written += 1;
            }
            Err(e) if written == 0 && last_error.is_none() => return Err(e.into()),
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    eprintln!("headroom: sample failed: {}", crate::text::line(&msg));
                    last_error = Some(msg);
                }
            }
        }
    }
    Ok(written)
}
