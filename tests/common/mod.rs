//! Shared helpers for integration tests: start the real `headroom` binary,
//! follow its JSON log, read /proc/meminfo, make a venv with real MLX.
#![allow(dead_code)]

pub mod lookalikes;
pub mod mlx_lm;
pub mod need;
pub mod noise;
pub mod swap;
pub mod tmux;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tests that move a lot of memory take this, so two of them never run at once
/// and read each other's allocations as their own.
pub static MEMORY_HEAVY: Mutex<()> = Mutex::new(());

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_headroom"))
}

/// The real Python 3 interpreter (not a pyenv/asdf shim: a shim is a shell
/// script whose forks would carry the child's command line too).
pub fn python3() -> PathBuf {
    static PY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// MemAvailable once it has stopped moving (a process killed by the previous
/// test may still be handing its memory back): four readings 300 ms apart
/// within 32 MiB of each other, waiting at most 60 s.
pub fn settled_mem_available() -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut window = vec![mem_available()];
    loop {
        std::thread::sleep(Duration::from_millis(300));
        window.push(mem_available());
        if window.len() > 4 {
            window.remove(0);
        }
        let lo = window.iter().min().copied().unwrap_or(0);
        let hi = window.iter().max().copied().unwrap_or(0);
        if (window.len() == 4 && hi - lo < 32 * MIB) || Instant::now() > deadline {
            return window[window.len() - 1];
        }
    }
}

/// The number after `key` (e.g. "VmRSS:", in its unit) in /proc/`pid`/status.
pub fn proc_status_field(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in status"));
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("number")
}

/// MemAvailable from the real /proc/meminfo, in bytes.
pub fn mem_available() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let line = text
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .expect("MemAvailable line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .expect("value")
        .parse()
        .expect("number");
    kb * 1024
}

/// A running `headroom run`, killed (by pid) on drop if still alive.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Start `headroom run --config <dir>/config.toml [extra args]`; `config`
    /// is TOML without the [log] section, which points into the temp dir.
    pub fn start(config: &str, extra: &[&str]) -> Daemon {
        Daemon::start_wrapped(&[], config, extra)
    }

    /// Like `start`, with `headroom` run by `wrapper` (a command that ends by
    /// exec'ing its remaining arguments, so the pid is headroom's).
    pub fn start_wrapped(wrapper: &[&str], config: &str, extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("logs/headroom.log");
        let cfg = format!(
            "{config}\n[log]\npath = \"{}\"\nsample_every = \"1s\"\n",
            log.display()
        );
        let cfg_path = dir.path().join("config.toml");
        std::fs::write(&cfg_path, cfg).expect("write config");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(&cfg_path)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: a pipe nobody reads would block the daemon once full.
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("start headroom");
        Daemon { child, log, dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .expect("signal headroom");
    }

    /// Every log line so far, parsed. A line that is not whole JSON fails the test.
    pub fn events(&self) -> Vec<Value> {
        read_events(&self.log)
    }

    /// Wait (bounded) until an event satisfies `pred`; returns it.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for_event(&self.log, what, timeout, pred)
    }

    /// Wait (bounded) until `pid` is found as MLX by the library it maps
    /// (not by a pattern); returns the `mlx_process_found` event.
    pub fn wait_found_by_library(&self, what: &str, pid: i64) -> Value {
        let found = self.wait_for(what, Duration::from_secs(120), |e| {
            is(e, "mlx_process_found") && e["pid"] == pid
        });
        assert!(
            found["matched_by"]
                .as_str()
                .unwrap_or("")
                .starts_with("library:"),
            "{what}: {found}"
        );
        found
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = wait_bounded(&mut self.child, Duration::from_secs(30))
            .expect("headroom exits after SIGTERM");
        let err = std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
        (status, err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether log event `e` is an `event` event.
pub fn is(e: &Value, event: &str) -> bool {
    e["event"] == event
}

/// Wait (bounded) until an event of the log at `path` satisfies `pred`;
/// returns it, or fails the test showing the last events.
pub fn wait_for_event(
    path: &Path,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(e) = read_events(path).into_iter().find(|e| pred(e)) {
            return e;
        }
        if Instant::now() > deadline {
            let tail: Vec<String> = read_events(path)
                .iter()
                .rev()
                .take(15)
                .map(|e| e.to_string())
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}; last events:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn read_events(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if i + 1 == lines.len() && !complete {
            break; // being written right now
        }
        out.push(
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line {} is not JSON ({e}): {line}", i + 1)),
        );
    }
    out
}

pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child we started, killed by pid on drop. Its stdout (if piped) is
/// drained by a thread for as long as it runs, so a child never dies of a
/// closed pipe because the test stopped listening.
pub struct Kid(pub Child, pub Option<std::sync::mpsc::Receiver<String>>);

impl Kid {
    pub fn new(child: Child) -> Kid {
        Kid(child, None)
    }
    pub fn pid(&self) -> i64 {
        self.0.id() as i64
    }
    /// Wait (bounded) until the child prints a line starting with `word`.
    pub fn wait_line(&mut self, word: &str, timeout: Duration) -> String {
        if self.1.is_none() {
            let out = self.0.stdout.take().expect("piped stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            self.1 = Some(rx);
        }
        let rx = self.1.as_ref().expect("reader");
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with(word) => return line,
                Ok(_) => {}
                Err(_) => panic!("child did not print {word:?} within {timeout:?}"),
            }
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python code that fills `total` bytes in `step`-sized chunks, one every
/// `pause` seconds, printing "step N" after each, then sleeps.
pub fn allocator_py(total: u64, step: u64, pause: f64) -> String {
    format!(
        "import time, sys\nheld = []\nn = 0\nprint('ready', flush=True)\nwhile n < {total}:\n    held.append(b'\\x01' * {step})\n    n += {step}\n    print('step', n, flush=True)\n    time.sleep({pause})\nprint('done', flush=True)\ntime.sleep(600)\n"
    )
}

/// Python code that, once the file `go` exists, fills `total` bytes in
/// `step` chunks every `pause` seconds (ignoring SIGTERM if asked), prints
/// "done" and holds it; it prints "ready" first.
pub fn grower_py(total: u64, step: u64, pause: f64, ignore_term: bool, go: &Path) -> String {
    let ignore = if ignore_term {
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    } else {
        ""
    };
    format!(
        "import os, signal, time\n{ignore}print('ready', flush=True)\n\
         while not os.path.exists({go:?}):\n    time.sleep(0.05)\n\
         held = []\nn = 0\nwhile n < {total}:\n    held.append(b'\\x01' * {step})\n    n += {step}\n    time.sleep({pause})\n\
         print('done', flush=True)\ntime.sleep(600)\n",
        go = go.display().to_string()
    )
}

/// `python3 -m mlx_lm.<module> <args>` running `body`: a real process with
/// a real MLX command line (the pattern is what is under test, not mlx_lm
/// itself, so a fake `mlx_lm` package in `dir` provides the module).
pub fn spawn_fake_mlx(dir: &Path, module: &str, body: &str, args: &[&str]) -> Kid {
    Kid::new(
        fake_mlx_command(dir, module, body, args)
            .spawn()
            .expect("start python3"),
    )
}

/// `spawn_fake_mlx` as a job of its own (its own process group, as a
/// shell with job control starts each command line): a job apart from the
/// test harness's other children.
pub fn spawn_fake_mlx_job(dir: &Path, module: &str, body: &str, args: &[&str]) -> Kid {
    use std::os::unix::process::CommandExt;
    Kid::new(
        fake_mlx_command(dir, module, body, args)
            .process_group(0)
            .spawn()
            .expect("start python3"),
    )
}

fn fake_mlx_command(dir: &Path, module: &str, body: &str, args: &[&str]) -> Command {
    write_fake_module(dir, module, body);
    let mut c = Command::new(python3());
    c.arg("-m")
        .arg(format!("mlx_lm.{module}"))
        .args(args)
        .env("PYTHONPATH", dir)
        .stdout(Stdio::piped());
    c
}

/// `python3 -m mlx_lm.lora --train` running `body` as `nobody` (uid 65534),
/// a job of its own, from a fake `mlx_lm` package in `dir` that nobody can
/// read (`dir` must be reachable by nobody); it has printed "ready".
pub fn spawn_mlx_lora_as_nobody(dir: &Path, body: &str) -> Kid {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let pkg = dir.join("mlx_lm");
    write_fake_module(dir, "lora", body);
    for p in [&pkg, &pkg.join("__init__.py"), &pkg.join("lora.py")] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let mut kid = Kid::new(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(python3())
            .args(["-m", "mlx_lm.lora", "--train"])
            .env("PYTHONPATH", dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(dir)
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .expect("setpriv python (apt-get install util-linux)"),
    );
    kid.wait_line("ready", Duration::from_secs(120));
    kid
}

/// A process group we started, killed whole (SIGKILL) on drop: forked
/// workers a `Kid` (one pid) would leave behind.
pub struct Group(pub i32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn write_fake_module(dir: &Path, module: &str, body: &str) {
    let pkg = dir.join("mlx_lm");
    std::fs::create_dir_all(&pkg).expect("mkdir mlx_lm");
    std::fs::write(pkg.join("__init__.py"), "").expect("write __init__");
    std::fs::write(pkg.join(format!("{module}.py")), body).expect("write module");
}

/// Writes a fake `mlx_lm` package with `lora.py` = `body` into `dir` and
/// returns `dir`, for a caller that spawns `python3 -m mlx_lm.lora` itself.
pub fn fake_mlx_lm(dir: &Path, body: &str) -> PathBuf {
    write_fake_module(dir, "lora", body);
    dir.to_path_buf()
}

/// `python3 hog.py`: not MLX by any rule, fills `total` bytes in 256 MiB
/// steps, prints "done" and holds it.
pub fn spawn_hog(dir: &Path, total: u64) -> Kid {
    let hog_py = dir.join("hog.py");
    write_file(&hog_py, &allocator_py(total, 256 * MIB, 0.05));
    Kid::new(
        Command::new(python3())
            .arg(&hog_py)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the hog"),
    )
}

pub fn write_file(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(text.as_bytes()).expect("write");
}
