//! `headroom install` / `uninstall`: run the daemon as a launchd LaunchAgent
//! (macOS) or a systemd user service (Linux). The service-manager commands
//! are found on PATH, so tests put a recording stand-in first.

pub mod launchd;
pub mod report;
pub mod runner;
pub mod systemd;

use crate::config::{self, Config};
use runner::{display, run, shell_quote, Output};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a launchctl/systemctl call may take before we give up on it.
const MANAGER_TIMEOUT: Duration = Duration::from_secs(20);

/// Which service manager runs the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    Launchd,
    Systemd,
}

impl Manager {
    /// This platform's own.
    pub fn native() -> Manager {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Launchd => "launchd",
            Manager::Systemd => "systemd",
        }
    }
}

/// A failure of install/uninstall, with its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file headroom did not write is where the plist/unit goes.
    #[error("{0}: exists and was not written by headroom install; move it away or pass --force")]
    Foreign(String),
    /// launchctl/systemctl is missing, failed, or hung.
    #[error("{0}")]
    Manager(String),
    /// HOME or the binary path is unusable.
    #[error("{0}")]
    Environment(String),
    #[error("{0}")]
    Io(String),
    /// A directory another user could plant in or redirect (issue 13).
    #[error("{0}")]
    Refused(String),
}

impl AgentError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Foreign(_) => 73,     // EX_CANTCREAT
            AgentError::Manager(_) => 69,     // EX_UNAVAILABLE
            AgentError::Environment(_) => 71, // EX_OSERR
            AgentError::Io(_) => 74,          // EX_IOERR
            AgentError::Refused(_) => 73,     // EX_CANTCREAT
        }
    }
}

/// What `install` and `uninstall` were asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub manager: Manager,
    pub dry_run: bool,
    pub force: bool,
    pub config: Option<PathBuf>,
}

/// Every path the agent involves, all absolute.
#[derive(Debug, Clone)]
pub struct Layout {
    pub manager: Manager,
    pub home: PathBuf,
    pub uid: u32,
    /// The binary the service manager starts (`<binary> run`).
    pub binary: PathBuf,
    /// `--config` passed to `run`, when the user chose a file explicitly.
    pub config: Option<PathBuf>,
    /// The plist or the unit file.
    pub service_file: PathBuf,
    /// launchd's StandardOutPath / StandardErrorPath (systemd: the journal).
    pub log_dir: PathBuf,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    /// The daemon's own JSON-lines log.
    pub log_path: PathBuf,
    /// The config file the daemon will read, if any (else the embedded defaults).
    pub config_file: Option<PathBuf>,
}

pub(crate) fn utf8(p: &Path) -> Result<&str, AgentError> {
    p.to_str()
        .ok_or_else(|| AgentError::Environment(format!("{}: path is not valid UTF-8", p.display())))
}

/// `$HOME`, required absolute: launchd and systemd need absolute paths.
pub fn home() -> Result<PathBuf, AgentError> {
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(h) if h.is_absolute() => Ok(h),
        Some(h) => Err(AgentError::Environment(format!(
            "$HOME ({}) is not an absolute path",
            h.display()
        ))),
        None => Err(AgentError::Environment("$HOME is not set".into())),
    }
}

/// The plist or unit path for `manager` under `home`.
pub fn service_file(manager: Manager, home: &Path) -> PathBuf {
    match manager {
        Manager::Launchd => home
            .join("Library/LaunchAgents")
            .join(format!("{}.plist", launchd::LABEL)),
        Manager::Systemd => std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".config"))
            .join("systemd/user")
            .join(systemd::UNIT),
    }
}

/// The daemon's log for `manager`: the config's `log.path`, unless that is
/// the default of the OS we run on and the agent is for the other one.
pub fn log_path_for(manager: Manager, cfg: &Config, home: &Path) -> PathBuf {
    if config::default_log_path().ok().as_ref() != Some(&cfg.log.path)
        || manager == Manager::native()
    {
        return cfg.log.path.clone();
    }
    match manager {
        Manager::Launchd => home.join("Library/Logs/headroom/headroom.log"),
        Manager::Systemd => home.join(".local/state/headroom/headroom.log"),
    }
}

/// The binary to start: this executable, absolute with symlinks resolved —
/// except inside a Homebrew Cellar, whose versioned directory disappears on
/// `brew upgrade`; there the stable `<prefix>/opt/<name>/bin/…` link is used.
pub fn resolve_binary() -> Result<PathBuf, AgentError> {
    let exe = std::env::current_exe()
        .map_err(|e| AgentError::Environment(format!("cannot find this executable's path: {e}")))?;
    let real = exe
        .canonicalize()
        .map_err(|e| AgentError::Environment(format!("{}: cannot resolve: {e}", exe.display())))?;
    Ok(stable_binary(&real).unwrap_or(real))
}

/// `<prefix>/Cellar/<name>/<version>/bin/<exe>` → `<prefix>/opt/<name>/bin/<exe>`
/// when that exists.
pub fn stable_binary(real: &Path) -> Option<PathBuf> {
    let exe = real.file_name()?;
    let bin = real.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    let version_dir = bin.parent()?;
    let name_dir = version_dir.parent()?;
    let cellar = name_dir.parent()?;
    if cellar.file_name()? != "Cellar" {
        return None;
    }
    let opt = cellar
        .parent()?
        .join("opt")
        .join(name_dir.file_name()?)
        .join("bin")
        .join(exe);
    opt.exists().then_some(opt)
}

impl Layout {
    /// Resolve every path; loads (and so validates) the config the agent will use.
    pub fn resolve(manager: Manager, config_arg: Option<&Path>) -> Result<Layout, crate::Error> {
        let home = home()?;
        // launchd and systemd do not pass our environment on: a config chosen
        // through $HEADROOM_CONFIG must be written into the service as --config.
        let chosen = config_arg.map(Path::to_path_buf).or_else(|| {
            std::env::var_os("HEADROOM_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let config = match chosen {
            Some(p) => Some(
                p.canonicalize()
                    .map_err(|e| crate::Error::Input(format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        let cfg = Config::load(config.as_deref())?;
        let config_file = match &config {
            Some(p) => Some(p.clone()),
            None => config::locate(None)?,
        };
        let log_dir = home.join("Library/Logs/headroom");
        Ok(Layout {
            manager,
            uid: nix::unistd::getuid().as_raw(),
            binary: resolve_binary()?,
            config,
            service_file: service_file(manager, &home),
            stdout_path: log_dir.join("stdout.log"),
            stderr_path: log_dir.join("stderr.log"),
            log_dir,
            log_path: log_path_for(manager, &cfg, &home),
            config_file,
            home,
        })
    }

    /// The plist or the unit.
    pub fn render(&self) -> Result<String, AgentError> {
        match self.manager {
            Manager::Launchd => launchd::render_plist(self),
            Manager::Systemd => systemd::render_unit(self),
        }
    }
}

impl Manager {
    /// Whether `text` is a plist or unit that `headroom install` wrote.
    fn is_ours(self, text: &[u8]) -> bool {
        match self {
            Manager::Launchd => launchd::is_ours(text),
            Manager::Systemd => systemd::is_ours(text),
        }
    }
}

/// The most of an existing plist or unit read to tell whether it is ours
/// (ours is ~2 KiB).
const SERVICE_FILE_MAX_BYTES: u64 = 1 << 20;

/// What is at the service-file path now.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    Nothing,
    Ours,
    /// Someone else's, and --force was given.
    Forced,
}

fn existing(manager: Manager, p: &Path, force: bool) -> Result<Existing, AgentError> {
    use std::io::Read;
    if std::fs::symlink_metadata(p).is_err() {
        return Ok(Existing::Nothing);
    }
    // Only a regular file can be ours, and ours is a few KiB: a FIFO is not
    // opened (it would wait for a writer) and a huge file is not read whole.
    let ours = std::fs::metadata(p).is_ok_and(|m| m.is_file())
        && std::fs::File::open(p)
            .and_then(|f| {
                let mut text = Vec::new();
                f.take(SERVICE_FILE_MAX_BYTES).read_to_end(&mut text)?;
                Ok(text)
            })
            .is_ok_and(|t| manager.is_ours(&t));
    match (ours, force) {
        (true, _) => Ok(Existing::Ours),
        (false, true) => Ok(Existing::Forced),
        (false, false) => Err(AgentError::Foreign(p.display().to_string())),
    }
}

fn io(p: &Path, what: &str, e: std::io::Error) -> AgentError {
    AgentError::Io(format!("{}: cannot {what}: {e}", p.display()))
}

/// Create `p` (missing parents too) with `mode`, then hold it to the rule
/// for directories headroom writes into (`fsafe::check_own_dir`): not a
/// symlink, this user's, writable by no one else.
fn create_dir(p: &Path, mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(p)
        .map_err(|e| io(p, "create the directory", e))?;
    crate::fsafe::check_own_dir(p, crate::fsafe::euid()).map_err(|e| match e {
        crate::fsafe::FileError::Refused(s) => AgentError::Refused(s),
        crate::fsafe::FileError::Io(e) => AgentError::Io(e.to_string()),
    })
}

/// Write `text` to `path` through a temporary file and a rename, so the
/// service manager never reads half a file.
fn write_file(path: &Path, text: &str) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".headroom-tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| io(&tmp, "create", e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, "write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, "write", e))
}

fn remove_file(path: &Path) -> Result<(), AgentError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, "remove", e)),
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Run a command that must succeed.
fn must(program: &str, a: &[String], hint: &str) -> Result<Output, AgentError> {
    let o = run(program, a, MANAGER_TIMEOUT)?;
    if o.ok() {
        Ok(o)
    } else {
        Err(AgentError::Manager(format!(
            "`{}` failed ({}){hint}",
            display(program, a),
            o.detail()
        )))
    }
}

fn warn(msg: &str) {
    eprintln!("headroom: warning: {msg}");
}

fn p(path: &Path) -> String {
    shell_quote(&path.display().to_string())
}

/// Where things are, after install (or for --dry-run).
fn print_locations(l: &Layout) {
    println!("binary:  {}", p(&l.binary));
    match &l.config_file {
        Some(c) => println!("config:  {}", p(c)),
        None => println!(
            "config:  embedded defaults (to change them, create {})",
            p(&l.home.join(".config/headroom/config.toml"))
        ),
    }
    println!("log:     {}", p(&l.log_path));
    println!(
        "         tail -f {} | jq -c 'select(.event != \"sample\")'",
        p(&l.log_path)
    );
    match l.manager {
        Manager::Launchd => println!("stdout/stderr: {} {}", p(&l.stdout_path), p(&l.stderr_path)),
        Manager::Systemd => println!(
            "stdout/stderr: the journal (journalctl --user -u {})",
            systemd::UNIT
        ),
    }
}

/// `headroom install`.
pub fn install(opts: &Options) -> Result<(), crate::Error> {
    let l = Layout::resolve(opts.manager, opts.config.as_deref())?;
    let text = l.render()?;
    let state = existing(l.manager, &l.service_file, opts.force)?;
    if opts.dry_run {
        print!("{text}");
        eprintln!("# dry run: nothing was written and nothing was run. install would:");
        eprintln!("#   write {}", p(&l.service_file));
        for c in planned_install(&l) {
            eprintln!("#   {c}");
        }
        return Ok(());
    }
    if state == Existing::Forced {
        warn(&format!(
            "replacing {}, which headroom did not write (--force)",
            l.service_file.display()
        ));
    }
    if let Some(dir) = l.service_file.parent() {
        create_dir(dir, 0o755)?;
    }
    match l.manager {
        Manager::Launchd => install_launchd(&l, &text)?,
        Manager::Systemd => install_systemd(&l, &text)?,
    }
    print_locations(&l);
    println!("status:  headroom status");
    Ok(())
}

/// The commands install runs, as text.
fn planned_install(l: &Layout) -> Vec<String> {
    let file = utf8(&l.service_file).unwrap_or_default().to_string();
    match l.manager {
        Manager::Launchd => vec![
            format!("mkdir -p {}", p(&l.log_dir)),
            display("launchctl", &args(&["print", &launchd::domain(l.uid)]))
                + "   # is there a GUI session?",
            display(
                "launchctl",
                &args(&["print", &launchd::service_target(l.uid)]),
            ) + "   # already loaded?",
            display(
                "launchctl",
                &args(&["bootout", &launchd::service_target(l.uid)]),
            ) + "   # only if loaded",
            display(
                "launchctl",
                &args(&["enable", &launchd::service_target(l.uid)]),
            ) + "   # undo an earlier disable or `unload -w`",
            display(
                "launchctl",
                &args(&["bootstrap", &launchd::domain(l.uid), &file]),
            ),
        ],
        Manager::Systemd => systemd_install_steps()
            .iter()
            .map(|a| display("systemctl", a))
            .collect(),
    }
}

fn install_launchd(l: &Layout, text: &str) -> Result<(), AgentError> {
    create_dir(&l.log_dir, 0o700)?;
    write_file(&l.service_file, text)?;
    println!("wrote:   {}", p(&l.service_file));
    let domain = launchd::domain(l.uid);
    let target = launchd::service_target(l.uid);
    // No gui/<uid> domain: an SSH login, or nobody logged in at the screen.
    // The plist is in place, so launchd loads it at the next GUI login.
    let gui = run("launchctl", &args(&["print", &domain]), MANAGER_TIMEOUT)?;
    if !gui.ok() {
        warn(&format!(
            "no GUI session for uid {} (`launchctl print {domain}`: {}) — over SSH? \
             The agent will start at your next login at the screen; notifications need that GUI (Aqua) session.",
            l.uid,
            gui.detail()
        ));
        return Ok(());
    }
    let loaded = run("launchctl", &args(&["print", &target]), MANAGER_TIMEOUT)?.ok();
    if loaded {
        must("launchctl", &args(&["bootout", &target]), "")?;
    }
    // A label left disabled (`launchctl disable`, or an old `unload -w`) makes
    // bootstrap fail with 5 (Input/output error) however often it is retried.
    must("launchctl", &args(&["enable", &target]), "")?;
    let file = utf8(&l.service_file)?;
    let boot = args(&["bootstrap", &domain, file]);
    // Right after a bootout the old job can still be exiting, and bootstrap
    // then fails with 5 (Input/output error): give it a moment.
    let mut tries = 0;
    loop {
        tries += 1;
        let o = run("launchctl", &boot, MANAGER_TIMEOUT)?;
        if o.ok() {
            break;
        }
        if !(loaded && o.code == Some(5) && tries < 4) {
            return Err(AgentError::Manager(format!(
                "`{}` failed ({}); the plist is at {}",
                display("launchctl", &boot),
                o.detail(),
                l.service_file.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "loaded:  {target} ({})",
        if loaded {
            "replaced the running agent"
        } else {
            "started"
        }
    );
    Ok(())
}

fn systemd_install_steps() -> Vec<Vec<String>> {
    // `restart` starts a stopped unit and restarts a running one, so a second
    // install picks up a new binary path; `enable` makes it start at login.
    vec![
        args(&["--user", "daemon-reload"]),
        args(&["--user", "enable", systemd::UNIT]),
        args(&["--user", "restart", systemd::UNIT]),
    ]
}

const SYSTEMD_HINT: &str = "; is there a systemd user manager for this login? \
    (over SSH or in a container there may be none: `loginctl enable-linger $USER`)";

fn install_systemd(l: &Layout, text: &str) -> Result<(), AgentError> {
    write_file(&l.service_file, text)?;
    println!("wrote:   {}", p(&l.service_file));
    for a in systemd_install_steps() {
        must("systemctl", &a, SYSTEMD_HINT)?;
    }
    println!(
        "started: {} (systemctl --user status {})",
        systemd::UNIT,
        systemd::UNIT
    );
    Ok(())
}

/// `headroom uninstall`: stop the agent and remove its file; the config and
/// the logs stay.
pub fn uninstall(opts: &Options) -> Result<(), crate::Error> {
    let home = home()?;
    let cfg = Config::load(None).ok();
    let file = service_file(opts.manager, &home);
    let uid = nix::unistd::getuid().as_raw();
    // The config may not load any more (that is no reason not to uninstall):
    // then the log's place is not known and is shown as ''.
    let log_path = cfg
        .as_ref()
        .map(|c| log_path_for(opts.manager, c, &home))
        .unwrap_or_default();
    let state = existing(opts.manager, &file, opts.force)?;
    let target = launchd::service_target(uid);
    if opts.dry_run {
        println!("# dry run: nothing was removed and nothing was run. uninstall would:");
        match opts.manager {
            Manager::Launchd => {
                println!(
                    "#   {}   # loaded?",
                    display("launchctl", &args(&["print", &target]))
                );
                println!(
                    "#   {}   # only if loaded",
                    display("launchctl", &args(&["bootout", &target]))
                );
            }
            Manager::Systemd => {
                println!(
                    "#   {}",
                    display(
                        "systemctl",
                        &args(&["--user", "disable", "--now", systemd::UNIT])
                    )
                );
            }
        }
        println!("#   rm {}", p(&file));
        if opts.manager == Manager::Systemd {
            println!(
                "#   {}",
                display("systemctl", &args(&["--user", "daemon-reload"]))
            );
        }
        return Ok(());
    }
    match opts.manager {
        Manager::Launchd => {
            let loaded = run("launchctl", &args(&["print", &target]), MANAGER_TIMEOUT)?.ok();
            if loaded {
                must("launchctl", &args(&["bootout", &target]), "")?;
                println!("stopped: {target}");
            }
            remove_file(&file)?;
        }
        Manager::Systemd => {
            if state != Existing::Nothing {
                must(
                    "systemctl",
                    &args(&["--user", "disable", "--now", systemd::UNIT]),
                    SYSTEMD_HINT,
                )?;
                println!("stopped: {}", systemd::UNIT);
                remove_file(&file)?;
                must(
                    "systemctl",
                    &args(&["--user", "daemon-reload"]),
                    SYSTEMD_HINT,
                )?;
            }
        }
    }
    if state == Existing::Nothing {
        println!("not installed: {} does not exist", p(&file));
    } else {
        println!("removed: {}", p(&file));
    }
    let conf = config::locate(None).ok().flatten();
    println!(
        "left in place: config {}, log {}",
        conf.map(|c| p(&c))
            .unwrap_or_else(|| "(none: embedded defaults)".into()),
        p(&log_path)
    );
    Ok(())
}

#[cfg(test)]
mod tests;
