//! The lookalikes of issue 12 as real running processes, for every test
//! near discovery, policy or signals: processes whose *arguments* mention
//! MLX tools (and, issue 16, one mapping MiniLibX's `libmlx.dylib`), never
//! MLX themselves, that must never be listed or signalled.
//!
//! Stand-in, said plainly: `git`, `ls`, `rsync`, `docker`, `man`, `ssh` and
//! `git-remote-https` are GNU `tail -f` run through a symlink of that name
//! (so the kernel names the process `git`, as it would the real program), with
//! the real programs' arguments as file names — the real programs would exit
//! or need the network before the test could look at them.

use super::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn signalled(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| is(e, "terminate_sent") || is(e, "kill_sent"))
        .map(|e| e["pid"].as_i64().unwrap_or(-1))
        .collect()
}

/// Running: listed and not a zombie (a child that exited stays listed,
/// state Z, until the test reaps it; kill(pid, 0) would still succeed).
pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// The lookalikes of issue 12, each a real running process; killed (by pid)
/// on drop, the tmux server through its own socket.
pub struct Lookalikes {
    kids: Vec<(String, Kid)>,
    tmux_socket: PathBuf,
    /// None when tmux is missing (a loud skip of that one lookalike).
    tmux_server: Option<i64>,
}

impl Lookalikes {
    pub fn start(dir: &Path) -> Lookalikes {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        // Files the tail stand-ins follow, named as the real programs' arguments.
        for f in [
            "mlx_lm.log",
            "mlx_vlm.md",
            "clone",
            "origin",
            "https:/github.com/ml-explore/mlx-lm",
            "src/mlx_lm",
            "data/mlx_lm",
            "backup",
            "run",
            "--name",
            "mlx-lm",
            "img",
            "mlx.launch",
            "box",
            "python",
            "-m",
            "mlx_lm.lora",
            "--train",
            "-a",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            write_file(&p, "x\n");
        }
        let tail = which("tail");
        let mut kids = Vec::new();
        let mut spawn = |what: &str, cmd: &mut Command| {
            let child = cmd
                .current_dir(dir)
                .stdin(Stdio::piped()) // held open: grep waits on it forever
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {what}: {e}"));
            kids.push((what.to_string(), Kid::new(child)));
        };
        spawn(
            "tail -f ./mlx_lm.log",
            Command::new(&tail).args(["-f", "./mlx_lm.log"]),
        );
        spawn(
            "grep mlx_vlm.generate",
            Command::new("grep").arg("mlx_vlm.generate"),
        );
        spawn(
            "vim mlx_vlm.md (exec -a vim)",
            Command::new("bash").args(["-c", "exec -a vim tail -f mlx_vlm.md"]),
        );
        spawn(
            "exec -a mlx_lm.lora sleep",
            Command::new("bash").args(["-c", "exec -a mlx_lm.lora sleep 600"]),
        );
        spawn(
            "bash whose command line runs mlx_lm.lora later",
            // `read` on the held-open stdin, not `sleep`: a child sleep
            // outlived a killed bash and kept the test lock's fd for 10 min.
            Command::new("bash").args(["-c", "read -t 600; python -m mlx_lm.lora --train"]),
        );
        spawn(
            "python3 -c … mlx_lm.lora",
            Command::new(python3()).args(["-c", "import time; time.sleep(600)", "mlx_lm.lora"]),
        );
        // Issue 16: MiniLibX, a graphics library, is also `libmlx.dylib`. A
        // Python (asked about its libraries) with a file of that name mapped,
        // as a 42-school game would have on a Mac, is not MLX. (Stand-in: the
        // file is mapped with mmap, not loaded; discovery reads only names.)
        let minilibx = dir.join("so_long/mlx/libmlx.dylib");
        std::fs::create_dir_all(minilibx.parent().expect("parent")).expect("mkdir");
        write_file(&minilibx, "not a real dylib\n");
        spawn(
            "python3 with MiniLibX's libmlx.dylib mapped",
            Command::new(python3()).args([
                "-c",
                "import mmap,sys,time\nf=open(sys.argv[1],'rb')\nm=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ)\ntime.sleep(600)",
                "so_long/mlx/libmlx.dylib",
            ]),
        );
        // pip is a Python console script: argv is [python, …/bin/pip, install, …].
        let pip = bin.join("pip");
        write_file(
            &pip,
            &format!("#!{}\nimport time\ntime.sleep(600)\n", python3().display()),
        );
        std::fs::set_permissions(&pip, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        spawn(
            "pip install -U mlx-lm",
            Command::new(&pip).args(["install", "-U", "mlx-lm"]),
        );
        for (name, args) in [
            (
                "git",
                &["clone", "https://github.com/ml-explore/mlx-lm"][..],
            ),
            (
                "git-remote-https",
                &["origin", "https://github.com/ml-explore/mlx-lm"][..],
            ),
            ("ls", &["src/mlx_lm"][..]),
            ("rsync", &["-a", "data/mlx_lm", "backup"][..]),
            ("docker", &["run", "--name", "mlx-lm", "img"][..]),
            ("man", &["mlx.launch"][..]),
            (
                "ssh",
                &["box", "python", "-m", "mlx_lm.lora", "--train"][..],
            ),
        ] {
            let link = bin.join(name);
            std::os::unix::fs::symlink(&tail, &link).expect("symlink");
            // tail's own options first, then the real program's arguments as
            // files (after "--", "-a" is a file named "-a").
            spawn(
                &format!("{name} {}", args.join(" ")),
                Command::new(&link).arg("-f").arg("--").args(args),
            );
        }
        // A real tmux server for a session named mlx-lm.
        let tmux_socket = dir.join("tmux.sock");
        let tmux_server = super::need::programs(
            "the tmux session named mlx-lm among the lookalikes",
            &[("tmux", "tmux")],
        )
        .then(|| tmux_session(&tmux_socket));
        let l = Lookalikes {
            kids,
            tmux_socket,
            tmux_server,
        };
        // Each is running (none exited on its arguments).
        std::thread::sleep(Duration::from_millis(300));
        for (what, kid) in &l.kids {
            assert!(alive(kid.pid()), "{what} is not running");
        }
        l
    }

    pub fn pids(&self) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = self
            .kids
            .iter()
            .map(|(w, k)| (w.clone(), k.pid()))
            .collect();
        if let Some(pid) = self.tmux_server {
            v.push(("tmux server (session mlx-lm)".into(), pid));
        }
        v
    }

    /// None of them listed as MLX by `status --json`, all still alive.
    pub fn assert_untouched(&self, events: &[Value]) {
        let status = status_json();
        let listed: Vec<i64> = status["mlx_processes"]
            .as_array()
            .expect("mlx_processes")
            .iter()
            .filter_map(|p| p["pid"].as_i64())
            .collect();
        let found: Vec<i64> = events
            .iter()
            .filter(|e| is(e, "mlx_process_found"))
            .filter_map(|e| e["pid"].as_i64())
            .collect();
        let sent = signalled(events);
        for (what, pid) in self.pids() {
            assert!(
                !listed.contains(&pid),
                "status lists {what} (pid {pid}) as MLX"
            );
            assert!(
                !found.contains(&pid),
                "the daemon found {what} (pid {pid}) as MLX"
            );
            assert!(!sent.contains(&pid), "{what} (pid {pid}) was signalled");
            assert!(alive(pid), "{what} (pid {pid}) is not alive");
        }
    }
}

/// A tmux server on `socket` with a session named mlx-lm; its pid.
fn tmux_session(socket: &Path) -> i64 {
    let st = Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(["new-session", "-d", "-s", "mlx-lm", "sleep 600"])
        .status()
        .expect("tmux runs");
    assert!(st.success(), "tmux new-session");
    let out = Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(["display-message", "-p", "#{pid}"])
        .output()
        .expect("tmux display-message");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("tmux server pid")
}

impl Drop for Lookalikes {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.tmux_socket)
            .arg("kill-server")
            .status();
    }
}

pub fn which(prog: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .expect("sh");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn status_json() -> Value {
    let out = Command::new(bin())
        .args(["status", "--json"])
        .env_remove("HEADROOM_CONFIG")
        .env("HOME", "/nonexistent")
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}
