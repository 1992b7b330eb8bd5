//! Desktop notifications, posted from a dedicated thread so that a slow or
//! hung notification service can never stall sampling. The backend
//! (`notify_backend`): osascript on macOS, notify-rust's D-Bus call elsewhere.
//!
//! `post` only `try_send`s into a bounded queue and returns at once. Sending
//! can block: osascript is given 10 s, and on Linux notify-rust's D-Bus call
//! has no timeout, so a notification server that accepts the connection but
//! never answers blocks the thread for good. Then the queue fills and `post`
//! reports `Failed("notification queue full")` — a lost notification, never
//! a late sample.
//!
//! Each accepted notice is logged as `notification_sent` with its `backend`:
//! the service took it, which is all headroom can know (macOS does not say
//! whether a banner appeared). When no notification service is reachable (no
//! D-Bus session, no GUI session) the thread logs `event="error"` once, keeps
//! taking notices, and logs again only if it has succeeded in between.

use super::notify_backend::{self, Backend, Kind};
use crate::action::{Notice, Outcome};
use crate::log_event;
use serde_json::json;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Notices waiting for the notification thread. Policy posts a handful per
/// incident, so a full queue means the thread is stuck.
pub const QUEUE_CAPACITY: usize = 16;
/// Longest title and body sent, in chars: notification bubbles show a few
/// lines, and a command line can be megabytes.
pub const TITLE_MAX_CHARS: usize = 200;
pub const BODY_MAX_CHARS: usize = 1000;

enum Msg {
    Show(Notice),
    /// Sent like `Show`, and the result answered (`headroom notify-test`).
    Test(Notice, mpsc::Sender<Result<(), String>>),
    /// Answered once everything queued before it has been handled.
    Flush(mpsc::Sender<()>),
}

/// Handle to the notification thread. Dropping it lets the thread finish
/// what is queued and exit; nothing waits for it.
pub struct Notifier {
    tx: SyncSender<Msg>,
    backend: &'static str,
}

/// The backend of a kind. D-Bus exists only off macOS (notify-rust is not
/// built there); asking for it on a Mac gives one that always fails.
pub fn backend(kind: Kind) -> Box<dyn Backend + Send> {
    match kind {
        Kind::Osascript(path) => Box::new(notify_backend::Osascript::at(path)),
        #[cfg(not(target_os = "macos"))]
        Kind::Dbus => Box::new(platform::Dbus::default()),
        #[cfg(target_os = "macos")]
        Kind::Dbus => Box::new(platform::NoDbus),
    }
}

impl Notifier {
    /// Start the notification thread with this OS's backend.
    pub fn start() -> Notifier {
        Notifier::start_with(backend(notify_backend::for_os(std::env::consts::OS)))
    }

    /// Start the notification thread with `backend` (tests: osascript
    /// through a stand-in program).
    pub fn start_with(backend: Box<dyn Backend + Send>) -> Notifier {
        let name = backend.name();
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let spawned = std::thread::Builder::new()
            .name("headroom-notify".into())
            .spawn(move || run(rx, backend));
        if let Err(e) = spawned {
            // The receiver went down with the closure: every post reports it.
            log_event!(
                error,
                "error",
                json!({ "error": format!("notifications unavailable: cannot start thread: {e}") })
            );
        }
        Notifier { tx, backend: name }
    }

    /// The `backend` log field of this notifier's notices.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Send `n` through the real path and wait at most `timeout` for the
    /// answer: Ok when the notification service accepted it (`headroom
    /// notify-test`). Logged like any notice.
    pub fn send_now(&self, n: &Notice, timeout: Duration) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .try_send(Msg::Test(n.clone(), tx))
            .map_err(|_| "the notification thread is not taking notices".to_string())?;
        rx.recv_timeout(timeout).unwrap_or_else(|_| {
            Err(format!(
                "no answer from the {} backend within {} s",
                self.backend,
                timeout.as_secs()
            ))
        })
    }

    /// Queue `n` for display; never blocks. `Done` means queued, not shown:
    /// the thread logs `notification_sent` or the error.
    pub fn post(&self, n: &Notice) -> Outcome {
        match self.tx.try_send(Msg::Show(n.clone())) {
            Ok(()) => Outcome::Done,
            Err(TrySendError::Full(_)) => Outcome::Failed("notification queue full".into()),
            Err(TrySendError::Disconnected(_)) => {
                Outcome::Failed("notification thread stopped".into())
            }
        }
    }

    /// Wait until every notice posted before this call has been shown or has
    /// failed, for at most `timeout`; false if that did not happen in time
    /// (the service hangs) or the thread is gone. For shutdown and tests.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done_tx, done_rx) = mpsc::channel();
        let mut msg = Msg::Flush(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return false,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// How long `headroom notify-test` waits for its notice to be taken.
pub const NOTIFY_TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// `headroom notify-test`: one notice through this OS's real path. Ok is
/// what can be said of it (accepted, by which backend); Err one line.
pub fn notify_test() -> Result<String, String> {
    let notifier = Notifier::start();
    let n = Notice {
        kind: crate::action::NoticeKind::Yellow,
        title: "headroom: test notification".into(),
        body: "If you can read this, headroom's notifications reach you.".into(),
        pid: None,
    };
    let backend = notifier.backend();
    notifier
        .send_now(&n, NOTIFY_TEST_TIMEOUT)
        .map_err(|e| format!("the {backend} backend could not send the test notice: {e}"))?;
    Ok(match backend {
        // osascript's exit status says only that the request was made.
        "osascript" => "sent via osascript. macOS does not say whether it was shown: \
                        if no banner appeared, allow notifications for \"Script Editor\" in \
                        System Settings → Notifications, and check Focus."
            .to_string(),
        b => format!("sent via {b}: the notification server accepted it."),
    })
}

impl super::Poster for Notifier {
    fn post(&self, n: &Notice) -> Outcome {
        Notifier::post(self, n)
    }
}

fn run(rx: Receiver<Msg>, mut backend: Box<dyn Backend + Send>) {
    let name = backend.name();
    let mut failing = false;
    for msg in rx {
        let (n, reply) = match msg {
            Msg::Show(n) => (n, None),
            Msg::Test(n, reply) => (n, Some(reply)),
            Msg::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let n = Notice {
            title: printable(&n.title, TITLE_MAX_CHARS),
            body: printable(&n.body, BODY_MAX_CHARS),
            ..n
        };
        // A panic in the backend must not take notifications down for good.
        let sent = catch_unwind(AssertUnwindSafe(|| backend.send(&n)))
            .unwrap_or_else(|_| Err("notification backend panicked".into()));
        match &sent {
            Ok(()) => {
                failing = false;
                log_event!(
                    info,
                    "notification_sent",
                    json!({ "kind": n.kind, "pid": n.pid, "backend": name })
                );
            }
            Err(e) if !failing || reply.is_some() => {
                failing = true;
                log_event!(
                    error,
                    "error",
                    json!({ "error": format!("notifications unavailable: {e}"), "backend": name, "kind": n.kind, "pid": n.pid })
                );
            }
            Err(_) => {}
        }
        if let Some(reply) = reply {
            let _ = reply.send(sent);
        }
    }
}

/// Text a notification service accepts and shows as written: D-Bus strings
/// may not hold NUL, and escape sequences have no business in a bubble.
/// The one rule of src/text.rs with newline and tab kept; at most `max`
/// chars, cut on a char boundary and marked with '…'.
pub fn printable(s: &str, max: usize) -> String {
    crate::text::cap(&crate::text::lines(s), max)
}

#[cfg(target_os = "macos")]
mod platform {
    use crate::action::Notice;

    /// No D-Bus notifications on a Mac (notify-rust is not built there).
    pub struct NoDbus;

    impl super::Backend for NoDbus {
        fn name(&self) -> &'static str {
            "dbus"
        }
        fn send(&mut self, _n: &Notice) -> Result<(), String> {
            Err("no D-Bus notifications on macOS".into())
        }
    }
}

#[cfg(not(target_os = "macos"))]
mod platform {
    use crate::action::{Notice, NoticeKind};
    use notify_rust::{Notification, Urgency};
    use std::path::PathBuf;

    #[derive(Default)]
    pub struct Dbus {
        /// Whether the server reads the body as markup (its "body-markup"
        /// capability), asked once per process.
        body_markup: Option<bool>,
    }

    impl super::Backend for Dbus {
        fn name(&self) -> &'static str {
            "dbus"
        }

        /// Ok once the server has answered the Notify call with an id.
        fn send(&mut self, n: &Notice) -> Result<(), String> {
            if let Some(why) = no_session_bus() {
                return Err(why);
            }
            let markup = match self.body_markup {
                Some(m) => m,
                None => {
                    let caps = notify_rust::get_capabilities().map_err(|e| e.to_string())?;
                    *self
                        .body_markup
                        .insert(caps.iter().any(|c| c == "body-markup"))
                }
            };
            // A command line with '&' or '<' must read as text, not markup.
            let body = if markup {
                escape_markup(&n.body)
            } else {
                n.body.clone()
            };
            let urgency = match n.kind {
                NoticeKind::Red | NoticeKind::Terminated | NoticeKind::NoVictim => {
                    Urgency::Critical
                }
                NoticeKind::Yellow => Urgency::Normal,
                NoticeKind::Recovered => Urgency::Low,
            };
            Notification::new()
                .appname("headroom")
                .summary(&n.title)
                .body(&body)
                .urgency(urgency)
                .show()
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }

    /// Why there is no session bus to try, mirroring zbus's own lookup:
    /// DBUS_SESSION_BUS_ADDRESS, else `$XDG_RUNTIME_DIR/bus`, else
    /// `/run/user/<euid>/bus`. A daemon started outside a login session (cron,
    /// a system service) has none of them.
    fn no_session_bus() -> Option<String> {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
            return None;
        }
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", nix::unistd::geteuid())));
        let bus = dir.join("bus");
        if bus.exists() {
            return None;
        }
        Some(format!(
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and {} does not exist)",
            bus.display()
        ))
    }

    /// The Desktop Notifications spec's body markup is a small XML subset.
    pub fn escape_markup(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                c => out.push(c),
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn markup_is_escaped_once() {
            assert_eq!(
                super::escape_markup("a <b> & c)\nü"),
                "a &lt;b&gt; &amp; c)\nü"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::NoticeKind;

    fn notice(body: &str) -> Notice {
        Notice {
            kind: NoticeKind::Yellow,
            title: "t".into(),
            body: body.into(),
            pid: None,
        }
    }

    #[test]
    fn text_is_made_printable_and_capped_on_char_boundaries() {
        assert_eq!(
            printable("a\u{0}b\u{1b}[31m\nc\td)", 100),
            "a?b?[31m\nc\td)"
        );
        let long = "ü".repeat(5000);
        let p = printable(&long, BODY_MAX_CHARS);
        assert_eq!(p.chars().count(), BODY_MAX_CHARS);
        assert!(p.ends_with('…'));
        assert_eq!(printable("ü".repeat(10).as_str(), 10), "ü".repeat(10));
    }

    #[test]
    fn post_never_blocks_when_the_thread_is_gone() {
        let (tx, rx) = mpsc::sync_channel(1);
        drop(rx);
        let n = Notifier {
            tx,
            backend: "test",
        };
        assert_eq!(
            n.post(&notice("x")),
            Outcome::Failed("notification thread stopped".into())
        );
        assert!(!n.flush(Duration::from_secs(1)));
    }

    #[test]
    fn full_queue_is_reported_not_waited_on() {
        // A receiver nobody reads: the thread of a hung notification service.
        let (tx, _rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let n = Notifier {
            tx,
            backend: "test",
        };
        for _ in 0..QUEUE_CAPACITY {
            assert_eq!(n.post(&notice("x")), Outcome::Done);
        }
        assert_eq!(
            n.post(&notice("x")),
            Outcome::Failed("notification queue full".into())
        );
        assert!(!n.flush(Duration::from_millis(100)));
    }
}
