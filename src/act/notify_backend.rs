//! Which way a notice leaves headroom, and the macOS way: `osascript`'s
//! `display notification`, with the text passed as arguments to an
//! `on run argv` handler — never pasted into the AppleScript source, so a
//! process name with quotes or `" & do shell script "` is only text.
//!
//! Issue 16: the NSUserNotificationCenter path (notify-rust as
//! `com.apple.Terminal`) showed no banner while Terminal was frontmost and
//! reported every send as shown. osascript reports only whether the request
//! was accepted: headroom logs `notification_sent`, never "shown". Plain
//! std::process, no `cfg`: the backend runs on Linux against a stand-in.

use crate::action::Notice;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A way to hand a notice to the desktop. `send` may block (the caller is
/// the notification thread); Ok means the notification service accepted it,
/// not that anyone saw it.
pub trait Backend {
    /// The `backend` log field.
    fn name(&self) -> &'static str;
    fn send(&mut self, n: &Notice) -> Result<(), String>;
}

/// The backend for an OS (`std::env::consts::OS`): osascript on macOS, the
/// desktop's D-Bus notification service elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dbus,
    Osascript(PathBuf),
}

/// Where macOS keeps osascript. Absolute: a LaunchAgent's PATH is minimal.
pub const OSASCRIPT: &str = "/usr/bin/osascript";

pub fn for_os(os: &str) -> Kind {
    match os {
        "macos" => Kind::Osascript(PathBuf::from(OSASCRIPT)),
        _ => Kind::Dbus,
    }
}

/// The AppleScript, fixed: it reads title and body from its arguments.
pub const SCRIPT: [&str; 3] = [
    "on run argv",
    "display notification (item 3 of argv) with title (item 2 of argv)",
    "end run",
];

/// osascript's arguments for `n`. The first argument after the script is a
/// fixed word, so option parsing has stopped before the title and body
/// (a title starting with `-` is not an option).
pub fn osascript_args(title: &str, body: &str) -> Vec<String> {
    let mut a = Vec::new();
    for line in SCRIPT {
        a.push("-e".to_string());
        a.push(line.to_string());
    }
    a.push("headroom".into());
    a.push(title.into());
    a.push(body.into());
    a
}

/// How long one osascript may take before it is killed and the send
/// counted as failed (it normally returns in well under a second).
pub const OSASCRIPT_TIMEOUT: Duration = Duration::from_secs(10);

/// `display notification` through osascript at `program`.
pub struct Osascript {
    program: PathBuf,
    timeout: Duration,
}

impl Osascript {
    pub fn at(program: PathBuf) -> Osascript {
        Osascript {
            program,
            timeout: OSASCRIPT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Osascript {
        self.timeout = timeout;
        self
    }
}

impl Backend for Osascript {
    fn name(&self) -> &'static str {
        "osascript"
    }

    fn send(&mut self, n: &Notice) -> Result<(), String> {
        let prog = self.program.display().to_string();
        let mut child = Command::new(&self.program)
            .args(osascript_args(&n.title, &n.body))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {prog}: {e}"))?;
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    // Ours, by its handle: killed and reaped.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{prog} did not return within {} s",
                        self.timeout.as_secs()
                    ));
                }
                Err(e) => return Err(format!("waiting for {prog}: {e}")),
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = s.by_ref().take(4096).read_to_string(&mut err);
        }
        let err = crate::text::cap(&crate::text::lines(err.trim()), 300);
        Err(format!("{prog} failed ({status}): {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macos_gets_osascript_everyone_else_dbus() {
        assert_eq!(for_os("macos"), Kind::Osascript(PathBuf::from(OSASCRIPT)));
        assert_eq!(for_os("linux"), Kind::Dbus);
        assert_eq!(for_os("freebsd"), Kind::Dbus);
    }

    #[test]
    fn text_is_an_argument_never_script_source() {
        let evil = "x\" & (do shell script \"touch /tmp/pwned\") & \"";
        let a = osascript_args("-e", evil);
        // The script is the fixed three lines; the text only follows them.
        let script: Vec<&str> = a
            .iter()
            .skip(1)
            .step_by(2)
            .take(3)
            .map(String::as_str)
            .collect();
        assert_eq!(script, SCRIPT);
        assert!(SCRIPT.iter().all(|l| !l.contains("touch")));
        assert_eq!(&a[6..], ["headroom", "-e", evil]);
    }
}
