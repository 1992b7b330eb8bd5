//! Runs a service-manager command (`launchctl`, `systemctl`) found on PATH,
//! captures its output, and gives up after a timeout: a wedged launchd must
//! not hang `headroom install` or `headroom status`.

use super::AgentError;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// What a command said.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status; `None` when it died from a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The exit status and the first line it printed, for an error message.
    pub fn detail(&self) -> String {
        let line = self
            .stderr
            .lines()
            .chain(self.stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        match self.code {
            Some(c) => format!("exit {c}: {line}"),
            None => format!("killed by a signal: {line}"),
        }
    }
}

/// The command line as a shell would need it typed.
pub fn display(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn shell_quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@+,%".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// Run `program` (looked up on PATH) with `args`.
pub fn run(program: &str, args: &[String], timeout: Duration) -> Result<Output, AgentError> {
    let shown = display(program, args);
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => AgentError::Manager(format!(
                "{program} not found on PATH (needed for `{shown}`)"
            )),
            _ => AgentError::Manager(format!("cannot run `{shown}`: {e}")),
        })?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(o)) => Ok(Output {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(AgentError::Manager(format!("`{shown}`: {e}"))),
        Err(_) => {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(AgentError::Manager(format!(
                "`{shown}` did not finish within {}s",
                timeout.as_secs()
            )))
        }
    }
}
