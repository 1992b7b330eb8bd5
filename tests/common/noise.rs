//! Unrelated programs that use CPU and memory while a test runs: a user's
//! machine is never quiet (issue 26: an e2e test that passed on a quiet
//! machine named the wrong job in a clean-clone run beside other programs).
//! None of them is MLX; none may ever be signalled.

use super::*;
use std::process::{Command, Stdio};

/// A busy loop and a churner that allocates and frees `churn` bytes every
/// half second, each a real process; killed (by pid) on drop.
pub struct Noise {
    pub busy: Kid,
    pub churner: Kid,
}

impl Noise {
    pub fn start(churn: u64) -> Noise {
        let busy = Kid::new(
            Command::new(python3())
                .args(["-c", "while True:\n    pass\n"])
                .stdout(Stdio::null())
                .spawn()
                .expect("busy loop"),
        );
        let mut churner = Kid::new(
            Command::new(python3())
                .args([
                    "-c",
                    &format!(
                        "import time\nprint('ready', flush=True)\nwhile True:\n    b = bytearray({churn})\n    b[::4096] = b'\\x01' * len(b[::4096])\n    time.sleep(0.25)\n    del b\n    time.sleep(0.25)\n"
                    ),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("churner"),
        );
        churner.wait_line("ready", Duration::from_secs(60));
        Noise { busy, churner }
    }

    pub fn pids(&self) -> [i64; 2] {
        [self.busy.pid(), self.churner.pid()]
    }

    /// Both still running and never signalled.
    pub fn assert_untouched(&self, events: &[Value]) {
        let sent = lookalikes::signalled(events);
        for pid in self.pids() {
            assert!(!sent.contains(&pid), "noise pid {pid} was signalled");
            assert!(lookalikes::alive(pid), "noise pid {pid} is not running");
        }
    }
}
