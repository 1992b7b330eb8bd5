//! A private tmux server (its own socket, no user config) running one
//! detached session `s`: the test's terminal. Killed on drop.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server named after `tag` and this process, or a loud skip (None)
    /// when tmux is not installed.
    pub fn new(test: &str, tag: &str) -> Option<Tmux> {
        super::need::programs(test, &[("tmux", "tmux")]).then(|| Tmux {
            socket: format!("headroom-{tag}-{}", std::process::id()),
        })
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// A detached `width`×`height` session `s` running `command` through sh;
    /// the pane stays after the command exits, to read the screen it left.
    pub fn start(&self, width: u16, height: u16, command: &str) {
        let (w, h) = (width.to_string(), height.to_string());
        let o = self.cmd(&["new-session", "-d", "-s", "s", "-x", &w, "-y", &h, command]);
        assert!(
            o.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        self.cmd(&["set-option", "-w", "-t", "s", "remain-on-exit", "on"]);
    }

    /// The visible screen as text (what a person sees).
    pub fn capture(&self) -> String {
        let o = self.cmd(&["capture-pane", "-p", "-t", "s"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Polls the screen until `ok` holds, at most `secs` seconds.
    pub fn wait_screen(&self, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let screen = self.capture();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}
