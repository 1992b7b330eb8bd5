//! Real swap and real memory stalls for tests (issue 20): a swapfile turned
//! on with `swapon`, and a memory-limited cgroup (v1 `memory.limit_in_bytes`
//! or v2 `memory.max`, whichever this machine has) that a child runs in, so
//! one process swaps hard while the machine stays healthy.
//!
//! Teardown is `Drop` (a failing test unwinds through it): the child is
//! killed by pid, the group removed, the swap area turned off and its file
//! deleted. A run that was interrupted (SIGINT/SIGKILL: no unwinding) leaves
//! them behind, so `Swap::on` and `MemCgroup::new` first remove what an
//! earlier run of a test process that no longer exists left: every name
//! carries the creating process's pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "headroom-test-";

/// Whether the pid in a `headroom-test-<pid>-…` name is a live process.
fn owner_alive(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let o = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// A swapfile that is on (`swapon`) for the life of the value.
pub struct Swap {
    file: PathBuf,
}

impl Swap {
    /// A swap area of `bytes` in `dir` (a real disk, not tmpfs).
    pub fn on(dir: &Path, bytes: u64) -> Result<Swap, String> {
        sweep_stale_swap();
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join(format!("{PREFIX}{}-swap", std::process::id()));
        let _ = std::fs::remove_file(&file);
        // Made new here (never through a link someone planted: root writes
        // a swap signature into whatever this path names).
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let s = Swap { file };
        run(Command::new("fallocate")
            .args(["-l", &bytes.to_string()])
            .arg(&s.file))?;
        std::fs::set_permissions(&s.file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        run(Command::new("mkswap").arg(&s.file))?;
        run(Command::new("swapon").arg(&s.file))?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        &self.file
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        // Deleted only once it is off: a deleted active swapfile could not
        // be found and turned off by a later sweep.
        for _ in 0..3 {
            if run(Command::new("swapoff").arg(&self.file)).is_ok() {
                let _ = std::fs::remove_file(&self.file);
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Our swap areas (from /proc/swaps) whose creator is gone: off and deleted.
fn sweep_stale_swap() {
    let text = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    for path in text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
    {
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with(PREFIX)
            && !owner_alive(&name)
            && run(Command::new("swapoff").arg(path)).is_ok()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Every swap area this machine has on (the test's own included), as
/// `/proc/swaps` lists them.
pub fn swap_areas() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// A memory cgroup limited to `limit` bytes, removed on drop after its
/// processes (ours, by pid) are killed.
pub struct MemCgroup {
    dir: PathBuf,
    v2: bool,
    kids: Vec<Child>,
}

/// Where the memory controller is: (root of the hierarchy, is it v2).
fn memory_root() -> Option<(PathBuf, bool)> {
    let v1 = PathBuf::from("/sys/fs/cgroup/memory");
    if v1.join("memory.limit_in_bytes").exists() {
        return Some((v1, false));
    }
    let v2 = PathBuf::from("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    let subtree = std::fs::read_to_string(v2.join("cgroup.subtree_control")).unwrap_or_default();
    (controllers.split_whitespace().any(|c| c == "memory")
        && subtree.split_whitespace().any(|c| c == "memory"))
    .then_some((v2, true))
}

impl MemCgroup {
    pub fn new(tag: &str, limit: u64) -> Result<MemCgroup, String> {
        let (root, v2) =
            memory_root().ok_or("no cgroup memory controller (v1 or v2) is mounted")?;
        sweep_stale_groups(&root);
        let dir = root.join(format!("{PREFIX}{}-{tag}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let g = MemCgroup {
            dir,
            v2,
            kids: Vec::new(),
        };
        let (key, value) = if v2 {
            ("memory.max", limit.to_string())
        } else {
            ("memory.limit_in_bytes", limit.to_string())
        };
        std::fs::write(g.dir.join(key), value).map_err(|e| format!("{key}: {e}"))?;
        if v2 {
            // Let the group use swap (v2 has a separate limit; v1's memsw
            // stays unlimited by default).
            let _ = std::fs::write(g.dir.join("memory.swap.max"), "max");
        } else {
            let _ = std::fs::write(g.dir.join("memory.swappiness"), "100");
        }
        Ok(g)
    }

    /// Starts `program args…` inside the group: a shell writes its own pid
    /// into `cgroup.procs`, then execs the program (so the pid is the
    /// program's). Its stdout is piped.
    pub fn spawn(&mut self, program: &Path, args: &[&str]) -> i32 {
        self.spawn_env(program, args, &[])
    }

    /// `spawn`, with extra environment variables.
    pub fn spawn_env(&mut self, program: &Path, args: &[&str], env: &[(&str, &Path)]) -> i32 {
        let procs = self.dir.join("cgroup.procs");
        let mut cmd = Command::new("sh");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(&procs)
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn into the cgroup");
        let pid = child.id() as i32;
        self.kids.push(child);
        // Returned once the kernel lists it in the group (the shell's write).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.members().contains(&pid) {
            assert!(
                Instant::now() < deadline,
                "pid {pid} never joined {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        pid
    }

    /// The pids in the group now.
    pub fn members(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The child started by `spawn`, to read its stdout or wait for it.
    pub fn child(&mut self, pid: i32) -> &mut Child {
        self.kids
            .iter_mut()
            .find(|c| c.id() as i32 == pid)
            .expect("a child of this group")
    }

    /// Bytes this group has in swap now (v1 `memory.stat` swap, v2
    /// `memory.swap.current`).
    pub fn swapped(&self) -> u64 {
        if self.v2 {
            return std::fs::read_to_string(self.dir.join("memory.swap.current"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
        }
        std::fs::read_to_string(self.dir.join("memory.stat"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("swap ").and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for c in &mut self.kids {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_group(&self.dir);
    }
}

/// rmdir a group once the kernel has let go of it (a killed process may
/// take a moment to leave).
fn remove_group(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Groups of ours whose creator is gone: their processes killed (they were
/// that test's children), the group removed.
fn sweep_stale_groups(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) || owner_alive(&name) {
            continue;
        }
        let procs = std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default();
        // Only real pids (v2 lists 0 for a task in another pid namespace:
        // kill(0) would hit our own group), and only while /proc says the
        // process is still in this group (a pid read above may be reused).
        for pid in procs
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)
        {
            let in_group = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.lines().any(|l| l.ends_with(&format!("/{name}"))));
            if in_group {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        remove_group(&e.path());
    }
}

/// A swapfile and a memory-limited group. Fields drop in order: the group
/// (its processes killed) before the swap area, so `swapoff` has nothing of
/// theirs to bring back.
pub struct SwapScene {
    pub group: MemCgroup,
    pub swap: Swap,
}

/// A `SwapScene` of `swap` bytes of swap and a group limited to `limit`, or
/// a loud skip (None) when this machine cannot have them (not root, no
/// cgroup memory controller, a filesystem that refuses swapfiles). Under CI
/// a skip is a failure.
pub fn scene(test: &str, swap: u64, limit: u64) -> Option<SwapScene> {
    if !super::need::root(test)
        || !super::need::programs(
            test,
            &[
                ("fallocate", "util-linux"),
                ("mkswap", "util-linux"),
                ("swapon", "mount"),
                ("swapoff", "mount"),
            ],
        )
    {
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let made = Swap::on(&dir, swap)
        .and_then(|swap| MemCgroup::new("group", limit).map(|group| SwapScene { group, swap }));
    match made {
        Ok(v) => Some(v),
        Err(e) => {
            super::need::skip(test, &format!("needs a swapfile and a memory cgroup: {e}"));
            None
        }
    }
}
