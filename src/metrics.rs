//! The Prometheus endpoint: gauges from each Snapshot and Classification,
//! counters of actions and errors, and a small HTTP server on its own thread
//! that only ever hands out the text the daemon last published.
//!
//! The daemon loop never waits on the server: after each cycle it encodes the
//! registry to an OpenMetrics text snapshot and swaps it in; a scrape clones
//! that snapshot under a lock held for a pointer copy.

use crate::action::{Action, NoticeKind, Outcome, Sig};
use crate::classify::Classification;
use crate::log_event;
use crate::model::{Level, Snapshot};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The content type of what `/metrics` serves (prometheus-client writes OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Connections held at once. At the cap a new connection is still served:
/// the oldest idle one is closed to make room (see [`Connections`]), so
/// whoever holds many idle sockets cannot keep a scrape out (issue 13).
const MAX_CONNECTIONS: usize = 64;
/// A client must send a whole request head within this, on a new connection
/// and between requests on a kept-alive one (hyper restarts the timer while
/// waiting for the next head): the header-read and the idle timeout.
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// No connection lives longer than this, keep-alive or not.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Request heads larger than this are refused (hyper's minimum is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A gauge that is absent (no series at all) while the figure is unknown:
/// a family whose only label set is the empty one.
type Optional<G> = Family<NoLabels, G>;
type NoLabels = [(&'static str, &'static str); 0];
type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabels {
    pid: i64,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Kind {
    yellow,
    red,
    terminated,
    no_victim,
    recovered,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: Kind,
}

/// Every metric headroom exports, the registry they are in, and the last
/// encoded text the server hands out.
pub struct Metrics {
    registry: Registry,
    published: Option<Arc<Mutex<Bytes>>>,
    bytes: Vec<(&'static str, Optional<Gauge>)>,
    swapout_rate: Optional<FloatGauge>,
    psi_some: Optional<FloatGauge>,
    psi_full: Optional<FloatGauge>,
    level: Optional<Gauge>,
    kernel_level: Optional<Gauge>,
    mlx_processes: Optional<Gauge>,
    footprint: Family<ProcessLabels, Gauge>,
    growth: Family<ProcessLabels, FloatGauge>,
    notifications: Family<KindLabels, Counter>,
    terminations: Counter,
    kills: Counter,
    errors: Counter,
    sample_duration: Histogram,
}

/// The byte figures of a Snapshot, by metric name (without prefix and `_bytes`).
fn byte_figures(s: &Snapshot) -> [(&'static str, Option<u64>); 9] {
    let m = &s.memory;
    [
        ("available", Some(m.available_bytes.0)),
        ("total", Some(m.total_bytes.0)),
        ("app", m.app_bytes.map(|b| b.0)),
        ("wired", m.wired_bytes.map(|b| b.0)),
        ("compressed", m.compressed_bytes.map(|b| b.0)),
        ("cached", m.cached_bytes.map(|b| b.0)),
        ("free", m.free_bytes.map(|b| b.0)),
        ("swap_total", m.swap_total_bytes.map(|b| b.0)),
        ("swap_used", m.swap_used_bytes.map(|b| b.0)),
    ]
}

/// Set an optional gauge, or take its series away when the figure is unknown.
fn set_opt<G: Default>(f: &Optional<G>, v: Option<impl Into<f64>>, set: impl Fn(&G, f64)) {
    match v {
        Some(v) => set(&f.get_or_create(&[]), v.into()),
        None => f.clear(),
    }
}

impl Metrics {
    /// The metrics, with nothing serving them (when `metrics.listen` is off,
    /// and in tests).
    pub fn disabled() -> Metrics {
        let mut r = Registry::with_prefix("headroom");
        let mut bytes = Vec::new();
        for (name, _) in byte_figures(&Snapshot::default()) {
            let g = Optional::<Gauge>::default();
            let help = match name {
                "available" => "Available memory (headroom): Linux MemAvailable, macOS (free - speculative) + file-backed + purgeable",
                "total" => "Total physical memory",
                "app" => "App memory (macOS) / anonymous pages (Linux)",
                "wired" => "Wired memory (macOS) / unevictable and kernel memory (Linux)",
                "compressed" => "Compressed memory (macOS compressor / Linux zswap)",
                "cached" => "File cache",
                "free" => "Free memory",
                "swap_total" => "Swap size",
                _ => "Swap in use",
            };
            r.register_with_unit(
                name,
                help,
                prometheus_client::registry::Unit::Bytes,
                g.clone(),
            );
            bytes.push((name, g));
        }
        let swapout_rate = Optional::<FloatGauge>::default();
        r.register(
            "swapout_bytes_per_second",
            "Bytes swapped out per second since the previous sample",
            swapout_rate.clone(),
        );
        let psi_some = Optional::<FloatGauge>::default();
        r.register(
            "psi_some_avg10",
            "Linux PSI memory 'some' avg10, percent",
            psi_some.clone(),
        );
        let psi_full = Optional::<FloatGauge>::default();
        r.register(
            "psi_full_avg10",
            "Linux PSI memory 'full' avg10, percent",
            psi_full.clone(),
        );
        let level = Optional::<Gauge>::default();
        r.register(
            "level",
            "headroom's level: 0 green, 1 yellow, 2 red",
            level.clone(),
        );
        let kernel_level = Optional::<Gauge>::default();
        r.register(
            "kernel_pressure_level",
            "macOS kern.memorystatus_vm_pressure_level: 1 normal, 2 warn, 4 critical",
            kernel_level.clone(),
        );
        let mlx_processes = Optional::<Gauge>::default();
        r.register(
            "mlx_processes",
            "MLX processes being watched",
            mlx_processes.clone(),
        );
        let footprint = Family::<ProcessLabels, Gauge>::default();
        r.register_with_unit(
            "mlx_footprint",
            "An MLX process's memory footprint (macOS phys_footprint, Linux RSS)",
            prometheus_client::registry::Unit::Bytes,
            footprint.clone(),
        );
        let growth = Family::<ProcessLabels, FloatGauge>::default();
        r.register(
            "mlx_growth_bytes_per_second",
            "An MLX process's footprint growth over a short window (negative when shrinking)",
            growth.clone(),
        );
        let notifications = Family::<KindLabels, Counter>::default();
        // Every kind from 0, so rate() and increase() have a start.
        for kind in [
            Kind::yellow,
            Kind::red,
            Kind::terminated,
            Kind::no_victim,
            Kind::recovered,
        ] {
            let _ = notifications.get_or_create(&KindLabels { kind });
        }
        r.register(
            "notifications",
            "Desktop notifications decided, by kind",
            notifications.clone(),
        );
        let terminations = Counter::default();
        r.register(
            "terminations",
            "SIGTERMs delivered to MLX processes",
            terminations.clone(),
        );
        let kills = Counter::default();
        r.register(
            "kills",
            "SIGKILLs delivered to MLX processes",
            kills.clone(),
        );
        let errors = Counter::default();
        r.register(
            "errors",
            "Errors the daemon logged (failed samples, failed reloads)",
            errors.clone(),
        );
        // 1 ms … ~4 s: a /proc read takes about a millisecond; a stalled one is the news.
        let sample_duration = Histogram::new(exponential_buckets(0.001, 2.0, 13));
        r.register_with_unit(
            "sample_duration",
            "Time one sample took",
            prometheus_client::registry::Unit::Seconds,
            sample_duration.clone(),
        );
        Metrics {
            registry: r,
            published: None,
            bytes,
            swapout_rate,
            psi_some,
            psi_full,
            level,
            kernel_level,
            mlx_processes,
            footprint,
            growth,
            notifications,
            terminations,
            kills,
            errors,
            sample_duration,
        }
    }

    /// Serve on `listen` when configured; logs `metrics_listening` (a
    /// warning when the address is not loopback) or an `error` and carries
    /// on without the endpoint — the daemon's real job is memory.
    pub fn start(listen: Option<SocketAddr>) -> Metrics {
        let mut m = Metrics::disabled();
        let Some(addr) = listen else {
            return m;
        };
        let published = Arc::new(Mutex::new(Bytes::new()));
        match serve(addr, published.clone()) {
            Ok(bound) => {
                if bound.ip().is_loopback() {
                    log_event!(
                        info,
                        "metrics_listening",
                        json!({ "address": bound.to_string() })
                    );
                } else {
                    log_event!(
                        warn,
                        "metrics_listening",
                        json!({ "address": bound.to_string(), "note": "not loopback: anyone who can reach this address can read memory figures and MLX process names" })
                    );
                }
                m.published = Some(published);
                m.publish();
            }
            Err(e) => crate::log::error(format_args!(
                "metrics: cannot listen on {addr}: {e}; running without the endpoint"
            )),
        }
        m
    }

    /// The registry as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            out = format!("# encoding failed: {e}\n# EOF\n");
        }
        out
    }

    fn publish(&self) {
        if let Some(p) = &self.published {
            let text = Bytes::from(self.encode());
            *p.lock().unwrap_or_else(|e| e.into_inner()) = text;
        }
    }

    /// After a sampling cycle: every gauge from the Snapshot and the level.
    /// Series of MLX processes that are gone disappear.
    pub fn observe_cycle(&self, s: &Snapshot, c: &Classification) {
        let figures = byte_figures(s);
        for ((_, g), (_, v)) in self.bytes.iter().zip(figures) {
            set_opt(g, v.map(|b| b.min(i64::MAX as u64) as f64), |g, v| {
                g.set(v as i64);
            });
        }
        let p = &s.pressure;
        set_opt(&self.swapout_rate, p.swapout_bytes_per_sec, |g, v| {
            g.set(v);
        });
        set_opt(&self.psi_some, p.psi_some_avg10, |g, v| {
            g.set(v);
        });
        set_opt(&self.psi_full, p.psi_full_avg10, |g, v| {
            g.set(v);
        });
        let level = match c.level {
            Level::Green => 0,
            Level::Yellow => 1,
            Level::Red => 2,
        };
        set_opt(&self.level, Some(level), |g, v| {
            g.set(v as i64);
        });
        let kernel = p.kernel_level.map(|k| match k {
            crate::model::KernelLevel::Normal => 1,
            crate::model::KernelLevel::Warn => 2,
            crate::model::KernelLevel::Critical => 4,
        });
        set_opt(&self.kernel_level, kernel, |g, v| {
            g.set(v as i64);
        });
        set_opt(
            &self.mlx_processes,
            Some(s.mlx_processes.len() as u32),
            |g, v| {
                g.set(v as i64);
            },
        );
        // Rebuilt whole each cycle (the scrape only sees the published text,
        // so there is no moment without series): exited pids drop out.
        self.footprint.clear();
        self.growth.clear();
        for proc in &s.mlx_processes {
            let l = ProcessLabels {
                pid: i64::from(proc.pid.0),
                // A dashboard shows the label raw: the one rule of src/text.rs.
                name: crate::text::line(&proc.name),
            };
            self.footprint
                .get_or_create(&l)
                .set(proc.footprint_bytes.0.min(i64::MAX as u64) as i64);
            self.growth.get_or_create(&l).set(proc.growth_bytes_per_sec);
        }
        self.publish();
    }

    /// How long one sample took (successful or not).
    pub fn observe_sample_duration(&self, d: Duration) {
        self.sample_duration.observe(d.as_secs_f64());
    }

    /// An action and what became of it: every notification decided counts;
    /// SIGTERM / SIGKILL count when delivered.
    pub fn count_action(&self, a: &Action, outcome: &Outcome) {
        match a {
            Action::Notify(n) => {
                let kind = match n.kind {
                    NoticeKind::Yellow => Kind::yellow,
                    NoticeKind::Red => Kind::red,
                    NoticeKind::Terminated => Kind::terminated,
                    NoticeKind::NoVictim => Kind::no_victim,
                    NoticeKind::Recovered => Kind::recovered,
                };
                self.notifications.get_or_create(&KindLabels { kind }).inc();
            }
            Action::Signal(o) if *outcome == Outcome::Done => match o.signal {
                Sig::Term => {
                    self.terminations.inc();
                }
                Sig::Kill => {
                    self.kills.inc();
                }
            },
            _ => {}
        }
    }

    /// An `error` event the daemon logged.
    pub fn count_error(&self) {
        self.errors.inc();
        self.publish();
    }
}

/// Bind `addr` now (so a bad address is reported at start) and serve on a
/// thread of its own with its own single-threaded runtime. Returns the
/// address actually bound.
pub fn serve(addr: SocketAddr, published: Arc<Mutex<Bytes>>) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let rt = crate::runtime()?;
    std::thread::Builder::new()
        .name("headroom-metrics".into())
        .spawn(move || rt.block_on(accept_loop(listener, published)))?;
    Ok(bound)
}

async fn accept_loop(listener: std::net::TcpListener, published: Arc<Mutex<Bytes>>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            crate::log::error(format_args!("metrics: cannot serve: {e}"));
            return;
        }
    };
    let table = Arc::new(Mutex::new(Connections::default()));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of file descriptors and the like: back off, keep serving.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let close = Arc::new(tokio::sync::Notify::new());
        let id = {
            let mut t = lock(&table);
            let (id, evicted) = t.admit(std::time::Instant::now(), close.clone());
            if let Some(e) = evicted {
                e.notify_one();
            }
            id
        };
        let published = published.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let on_request = table.clone();
            let svc = hyper::service::service_fn(move |req| {
                lock(&on_request).served(id, std::time::Instant::now());
                let body = published.lock().unwrap_or_else(|e| e.into_inner()).clone();
                std::future::ready(Ok::<_, std::convert::Infallible>(respond(&req, body)))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            // Errors here are the client's (junk, resets, timeouts): nothing
            // to log. Evicted: dropping the connection closes the socket.
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {}
                _ = close.notified() => {}
            }
            lock(&table).remove(id);
        });
    }
}

fn lock(t: &Mutex<Connections>) -> std::sync::MutexGuard<'_, Connections> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// The open connections, to choose which one makes room at the cap.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: Vec<Conn>,
}

struct Conn {
    id: u64,
    /// When it was accepted, or last had a request head read in full.
    last_active: std::time::Instant,
    /// Whether it ever sent a whole request: a client that scraped is
    /// kept over sockets that never said anything.
    served: bool,
    close: Arc<tokio::sync::Notify>,
}

impl Connections {
    /// Take in a new connection; at the cap, also return the signal that
    /// closes the one making room for it.
    fn admit(
        &mut self,
        now: std::time::Instant,
        close: Arc<tokio::sync::Notify>,
    ) -> (u64, Option<Arc<tokio::sync::Notify>>) {
        let evicted = if self.open.len() >= MAX_CONNECTIONS {
            self.evict()
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.open.push(Conn {
            id,
            last_active: now,
            served: false,
            close,
        });
        (id, evicted)
    }

    /// The oldest idle connection leaves: those that never sent a request
    /// first, then the one whose last request is oldest.
    fn evict(&mut self) -> Option<Arc<tokio::sync::Notify>> {
        let i = self
            .open
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| (c.served, c.last_active))
            .map(|(i, _)| i)?;
        Some(self.open.swap_remove(i).close)
    }

    fn served(&mut self, id: u64, now: std::time::Instant) {
        if let Some(c) = self.open.iter_mut().find(|c| c.id == id) {
            c.served = true;
            c.last_active = now;
        }
    }

    fn remove(&mut self, id: u64) {
        self.open.retain(|c| c.id != id);
    }
}

/// GET /metrics (with or without a query) → the published text; anything else 404.
fn respond<B>(req: &Request<B>, body: Bytes) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.method() == Method::GET && req.uri().path() == "/metrics" {
        (StatusCode::OK, CONTENT_TYPE, body)
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"not found: headroom serves GET /metrics\n"),
        )
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bytes as B, MlxProcess, Pid, Pressure, SystemMemory};

    fn proc(pid: i32, name: &str, footprint: u64) -> MlxProcess {
        MlxProcess {
            pid: Pid(pid),
            uid: 501,
            start_time: 1,
            name: name.into(),
            cmdline: format!("python -m mlx_lm.lora # {name}"),
            footprint_bytes: B(footprint),
            rss_bytes: B(footprint),
            peak_bytes: B(footprint),
            growth_bytes_per_sec: 1.5e6,
            program: "mlx_lm.lora".into(),
            matched_by: "pattern:x".into(),
            job: None,
        }
    }

    fn class(level: Level) -> Classification {
        Classification {
            level,
            previous: level,
            reasons: vec![],
            lines: Default::default(),
        }
    }

    // A Linux-shaped snapshot (PSI, no kernel level), then a macOS-shaped one.
    fn linux_snap(procs: Vec<MlxProcess>) -> Snapshot {
        Snapshot {
            at: Duration::from_secs(3),
            memory: SystemMemory {
                total_bytes: B::gib(16),
                available_bytes: B::gib(3),
                cached_bytes: Some(B::gib(2)),
                swap_total_bytes: Some(B::gib(4)),
                swap_used_bytes: Some(B::mib(512)),
                ..Default::default()
            },
            pressure: Pressure {
                psi_some_avg10: Some(1.25),
                psi_full_avg10: Some(0.5),
                swapout_bytes_per_sec: Some(4096.0),
                kernel_level: None,
            },
            mlx_processes: procs,
            ..Default::default()
        }
    }

    #[test]
    fn gauges_follow_the_snapshot_and_absent_figures_have_no_series() {
        let m = Metrics::disabled();
        m.observe_cycle(&linux_snap(vec![]), &class(Level::Yellow));
        let t = m.encode();
        assert!(
            t.contains(&format!("headroom_available_bytes {}\n", 3 * B::GIB)),
            "{t}"
        );
        assert!(
            t.contains(&format!("headroom_total_bytes {}\n", 16 * B::GIB)),
            "{t}"
        );
        assert!(t.contains("headroom_swap_used_bytes 536870912\n"), "{t}");
        assert!(t.contains("headroom_psi_some_avg10 1.25\n"), "{t}");
        assert!(
            t.contains("headroom_swapout_bytes_per_second 4096.0\n"),
            "{t}"
        );
        assert!(t.contains("headroom_level 1\n"), "{t}");
        assert!(!t.contains("headroom_kernel_pressure_level "), "{t}");
        assert!(!t.contains("headroom_wired_bytes "), "{t}");
        assert!(
            t.contains("headroom_notifications_total{kind=\"recovered\"} 0\n"),
            "counters start at 0, each kind: {t}"
        );
        assert!(t.ends_with("# EOF\n"), "{t}");

        let mut mac = linux_snap(vec![]);
        mac.pressure = Pressure {
            kernel_level: Some(crate::model::KernelLevel::Critical),
            ..Default::default()
        };
        mac.memory.wired_bytes = Some(B::gib(9));
        m.observe_cycle(&mac, &class(Level::Red));
        let t = m.encode();
        assert!(t.contains("headroom_kernel_pressure_level 4\n"), "{t}");
        assert!(t.contains("headroom_level 2\n"), "{t}");
        assert!(
            t.contains(&format!("headroom_wired_bytes {}\n", 9 * B::GIB)),
            "{t}"
        );
        assert!(!t.contains("headroom_psi_some_avg10 "), "PSI gone: {t}");
    }

    #[test]
    fn exited_mlx_processes_lose_their_series_and_names_are_escaped() {
        let m = Metrics::disabled();
        let hostile = "evil\"} headroom_level 0\n";
        let escape = "\u{1b}[2J\u{1b}[Hmlx_lm";
        m.observe_cycle(
            &linux_snap(vec![
                proc(41, "mlx_lm.lora", 5 * B::GIB),
                proc(42, hostile, 1),
                proc(43, escape, 1),
            ]),
            &class(Level::Green),
        );
        let t = m.encode();
        assert!(
            t.contains(&format!(
                "headroom_mlx_footprint_bytes{{pid=\"41\",name=\"mlx_lm.lora\"}} {}\n",
                5 * B::GIB
            )),
            "{t}"
        );
        assert!(
            t.contains("headroom_mlx_growth_bytes_per_second{pid=\"41\""),
            "{t}"
        );
        assert!(t.contains(r#"name="evil\"} headroom_level 0?"}"#), "{t}");
        assert_eq!(t.matches("\nheadroom_level ").count(), 1, "{t}");
        assert!(t.contains(r#"{pid="43",name="?[2J?[Hmlx_lm"}"#), "{t}");
        assert!(!t.contains('\u{1b}'), "ESC in a label: {t}");

        m.observe_cycle(
            &linux_snap(vec![proc(42, hostile, 1)]),
            &class(Level::Green),
        );
        let t = m.encode();
        assert!(!t.contains("pid=\"41\""), "pid 41 exited: {t}");
        assert!(t.contains("pid=\"42\""), "{t}");
    }

    #[test]
    fn counters_count_decisions_and_delivered_signals() {
        use crate::action::{Notice, SignalOrder};

        let m = Metrics::disabled();
        let notice = Action::Notify(Notice {
            kind: NoticeKind::Red,
            title: "t".into(),
            body: "b".into(),
            pid: None,
        });
        m.count_action(&notice, &Outcome::Skipped("notifications are off".into()));
        let t = m.encode();
        assert!(
            t.contains("headroom_notifications_total{kind=\"red\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("headroom_terminations_total 0\n"), "{t}");
        m.count_error();
        m.observe_sample_duration(Duration::from_millis(3));
        let t = m.encode();
        assert!(t.contains("headroom_errors_total 1\n"), "{t}");
        assert!(
            t.contains("headroom_sample_duration_seconds_count 1\n"),
            "{t}"
        );

        let order = |signal| {
            Action::Signal(SignalOrder {
                signal,
                process: proc(7, "mlx_lm.lora", 1),
                available_bytes: B::gib(1),
                red_line_bytes: B::gib(2),
                reason: "red held".into(),
            })
        };
        m.count_action(&order(Sig::Term), &Outcome::Done);
        m.count_action(&order(Sig::Term), &Outcome::DryRun);
        m.count_action(&order(Sig::Kill), &Outcome::Skipped("pid reused".into()));
        m.count_action(&order(Sig::Kill), &Outcome::Done);
        let t = m.encode();
        assert!(t.contains("headroom_terminations_total 1\n"), "{t}");
        assert!(t.contains("headroom_kills_total 1\n"), "{t}");
    }

    // Issue 13: at the cap the oldest idle connection goes, sockets that
    // never sent a request before a client that scraped.
    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Connections::default();
        let mut closes = Vec::new();
        for i in 0..MAX_CONNECTIONS as u64 {
            let c = Arc::new(tokio::sync::Notify::new());
            let (id, evicted) = t.admit(at(i), c.clone());
            assert_eq!(id, i);
            assert!(evicted.is_none());
            closes.push(c);
        }
        // Connection 0 scraped (so it is kept); 1 is now the oldest idle.
        t.served(0, at(100));
        let (_, evicted) = t.admit(at(200), Arc::new(tokio::sync::Notify::new()));
        let evicted = evicted.expect("one makes room");
        assert!(Arc::ptr_eq(&evicted, &closes[1]));
        assert_eq!(t.open.len(), MAX_CONNECTIONS);
        assert!(t.open.iter().all(|c| c.id != 1));
        // Once every connection has scraped, the least recent goes.
        for c in 2..MAX_CONNECTIONS as u64 + 1 {
            t.served(c, at(300 + c));
        }
        let (_, evicted) = t.admit(at(500), Arc::new(tokio::sync::Notify::new()));
        let evicted = evicted.expect("one makes room");
        assert!(
            Arc::ptr_eq(&evicted, &closes[0]),
            "0 last scraped at 100 ms"
        );
        // A closed connection frees its place.
        t.remove(5);
        let (_, evicted) = t.admit(at(600), Arc::new(tokio::sync::Notify::new()));
        assert!(evicted.is_none());
    }

    #[test]
    fn only_get_metrics_is_served() {
        let req = |method: Method, uri: &str| {
            Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .expect("request")
        };
        let body = Bytes::from_static(b"x 1\n# EOF\n");
        let r = respond(&req(Method::GET, "/metrics?x=1"), body.clone());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[hyper::header::CONTENT_TYPE], CONTENT_TYPE);
        for (m, u) in [
            (Method::POST, "/metrics"),
            (Method::GET, "/"),
            (Method::GET, "/metrics/x"),
            (Method::DELETE, "/metrics"),
        ] {
            assert_eq!(
                respond(&req(m, u), body.clone()).status(),
                StatusCode::NOT_FOUND
            );
        }
    }
}
