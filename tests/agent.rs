//! `headroom install` / `uninstall` / `completions` / `man`, end to end
//! against a temporary HOME.
//!
//! launchctl cannot exist on Linux, so the launchd tests put a stand-in
//! `launchctl` first on PATH: a shell script that records its argv and
//! emulates launchd's answers (`print gui/UID/LABEL` exits 113 "Could not
//! find service" until `bootstrap`, as the real one does). There is no
//! systemd user manager in this container (`systemctl --user` fails with
//! "Failed to connect to bus"), and installing into a developer's real one
//! from a test would start a daemon in their session, so systemd uses the
//! same approach; the rendered unit is checked with the real
//! `systemd-analyze verify` when it is installed.

mod common;

use assert_cmd::Command;
use std::path::{Path, PathBuf};

const BIN: &str = env!("CARGO_BIN_EXE_headroom");
const LABEL: &str = "dev.headroom.agent";

const FAKE_LAUNCHCTL: &str = r#"#!/bin/sh
# Stand-in for launchctl: argv to $FAKE_LOG (fields ended by \037), state in $FAKE_STATE.
for a in "$@"; do printf '%s\037' "$a" >> "$FAKE_LOG"; done
printf '\n' >> "$FAKE_LOG"
loaded="$FAKE_STATE/loaded"
case "$1" in
  print)
    case "$2" in
      gui/*/*)
        if [ -e "$loaded" ]; then
          printf '%s = {\n\tstate = running\n\tpid = 4242\n}\n' "$2"; exit 0
        fi
        echo "Could not find service \"${2##*/}\" in domain for user gui: 501" >&2; exit 113 ;;
      *)
        if [ -n "$FAKE_NO_GUI" ]; then echo "Could not find domain for user gui: 501" >&2; exit 112; fi
        echo "$2 = { type = login }"; exit 0 ;;
    esac ;;
  bootstrap)
    if [ -n "$FAKE_BOOTSTRAP_EXIT" ]; then echo "Bootstrap failed: $FAKE_BOOTSTRAP_EXIT: Input/output error" >&2; exit "$FAKE_BOOTSTRAP_EXIT"; fi
    # A disabled label cannot be bootstrapped: the real launchctl says 5.
    if [ -e "$FAKE_STATE/disabled" ]; then echo "Bootstrap failed: 5: Input/output error" >&2; exit 5; fi
    : > "$loaded"; exit 0 ;;
  enable) rm -f "$FAKE_STATE/disabled"; exit 0 ;;
  disable) : > "$FAKE_STATE/disabled"; exit 0 ;;
  bootout) rm -f "$loaded"; exit 0 ;;
esac
exit 64
"#;

const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
# Stand-in for systemctl --user: argv to $FAKE_LOG, state in $FAKE_STATE.
for a in "$@"; do printf '%s\037' "$a" >> "$FAKE_LOG"; done
printf '\n' >> "$FAKE_LOG"
active="$FAKE_STATE/active"
case "$2" in
  is-active) if [ -e "$active" ]; then echo active; exit 0; fi; echo inactive; exit 3 ;;
  restart) : > "$active" ;;
  disable) rm -f "$active" ;;
esac
exit 0
"#;

struct Env {
    _dir: tempfile::TempDir,
    home: PathBuf,
    bin_dir: PathBuf,
    log: PathBuf,
    state: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        // Spaces and `&`: launchd takes paths verbatim, and XML must escape `&`.
        let home = dir.path().join("Home & Co/a user");
        std::fs::create_dir_all(&home).expect("home");
        let bin_dir = dir.path().join("stand-ins");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&bin_dir).expect("bin");
        std::fs::create_dir_all(&state).expect("state");
        for (name, text) in [("launchctl", FAKE_LAUNCHCTL), ("systemctl", FAKE_SYSTEMCTL)] {
            let p = bin_dir.join(name);
            std::fs::write(&p, text).expect("stand-in");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let log = dir.path().join("argv.log");
        Env {
            _dir: dir,
            home,
            bin_dir,
            log,
            state,
        }
    }

    fn cmd_with(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        let path = format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("HOME", &self.home)
            .env("PATH", path)
            .env("FAKE_LOG", &self.log)
            .env("FAKE_STATE", &self.state)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("HEADROOM_CONFIG");
        c
    }

    fn cmd(&self) -> Command {
        self.cmd_with(Path::new(BIN))
    }

    /// The recorded argv lists since the last call, and forget them.
    fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines()
            .map(|l| {
                l.split('\x1f')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .collect()
    }

    fn plist(&self) -> PathBuf {
        self.home
            .join("Library/LaunchAgents")
            .join(format!("{LABEL}.plist"))
    }

    fn unit(&self) -> PathBuf {
        self.home.join(".config/systemd/user/headroom.service")
    }
}

fn uid() -> String {
    nix::unistd::getuid().as_raw().to_string()
}

fn v(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn real_binary() -> String {
    Path::new(BIN)
        .canonicalize()
        .expect("canonical")
        .display()
        .to_string()
}

fn check_plist(xml: &[u8], home: &Path) {
    let val = plist::Value::from_reader_xml(xml).expect("plist crate parses it");
    let d = val.as_dictionary().expect("dict");
    let home = home.display().to_string();
    assert_eq!(d["Label"].as_string(), Some(LABEL));
    let args: Vec<&str> = d["ProgramArguments"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a.as_string())
        .collect();
    assert_eq!(args, [real_binary().as_str(), "run"]);
    assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
    let ka = d["KeepAlive"].as_dictionary().expect("KeepAlive");
    assert_eq!(ka["SuccessfulExit"].as_boolean(), Some(false));
    assert!(d["ThrottleInterval"].as_signed_integer().is_some());
    assert_eq!(d["LimitLoadToSessionType"].as_string(), Some("Aqua"));
    assert_eq!(d["ProcessType"].as_string(), Some("Standard"));
    // Issue 16: LowPriorityIO throttles the watchdog's own I/O under pressure.
    assert!(d.get("LowPriorityIO").is_none(), "no LowPriorityIO");
    for (k, f) in [
        ("StandardOutPath", "stdout.log"),
        ("StandardErrorPath", "stderr.log"),
    ] {
        assert_eq!(
            d[k].as_string(),
            Some(format!("{home}/Library/Logs/headroom/{f}").as_str()),
            "{k}: absolute, no ~"
        );
    }
    // Python's plistlib, the parser CI has everywhere.
    if !common::need::programs("the plistlib check of the plist", &[("python3", "python3")]) {
        return;
    }
    let py = std::process::Command::new("python3")
        .args([
            "-c",
            "import plistlib,sys,json; d=plistlib.loads(sys.stdin.buffer.read()); print(json.dumps(d))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut py = py.expect("python3 runs");
    use std::io::Write;
    py.stdin
        .take()
        .expect("stdin")
        .write_all(xml)
        .expect("write");
    let out = py.wait_with_output().expect("python3");
    assert!(out.status.success(), "plistlib rejected the plist");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["Label"], LABEL);
    assert_eq!(j["ProgramArguments"][0], real_binary());
    assert_eq!(j["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(
        j["StandardErrorPath"],
        format!("{home}/Library/Logs/headroom/stderr.log")
    );
}

#[test]
fn dry_run_renders_the_plist_on_any_os_and_touches_nothing() {
    let e = Env::new();
    let out = e
        .cmd()
        .args(["install", "--dry-run", "--manager", "launchd"])
        .assert()
        .success();
    let o = out.get_output();
    check_plist(&o.stdout, &e.home);
    let err = String::from_utf8_lossy(&o.stderr);
    let boot = err
        .find(&format!("launchctl bootstrap gui/{} ", uid()))
        .unwrap_or_else(|| panic!("no bootstrap: {err}"));
    let enable = err
        .find(&format!("launchctl enable gui/{}/{LABEL}", uid()))
        .unwrap_or_else(|| panic!("no enable: {err}"));
    let bootout = err.find("launchctl bootout").expect("bootout");
    assert!(
        bootout < enable && enable < boot,
        "bootout, enable, bootstrap: {err}"
    );
    assert!(e.calls().is_empty(), "dry run ran a command");
    let entries: Vec<_> = std::fs::read_dir(&e.home).expect("home").collect();
    assert!(entries.is_empty(), "dry run wrote into HOME");
}

#[test]
fn launchd_install_is_idempotent_and_uninstall_leaves_config_and_logs() {
    let e = Env::new();
    let cfg_file = e.home.join(".config/headroom/config.toml");
    std::fs::create_dir_all(cfg_file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&cfg_file, "[thresholds]\nred_below = \"1536MiB\"\n").expect("cfg");
    assert!(
        !e.home.join("Library/LaunchAgents").exists(),
        "starts missing"
    );
    let target = format!("gui/{}/{LABEL}", uid());
    let domain = format!("gui/{}", uid());
    let plist = e.plist().display().to_string();

    let out = e
        .cmd()
        .args(["install", "--manager", "launchd"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert_eq!(
        e.calls(),
        [
            v(&["print", &domain]),
            v(&["print", &target]),
            v(&["enable", &target]),
            v(&["bootstrap", &domain, &plist]),
        ]
    );
    check_plist(&std::fs::read(e.plist()).expect("plist written"), &e.home);
    assert!(e.home.join("Library/Logs/headroom").is_dir());
    assert!(text.contains(&cfg_file.display().to_string()), "{text}");
    assert!(text.contains("headroom.log"), "{text}");

    // Again: loaded now, so bootout first, then bootstrap.
    e.cmd()
        .args(["install", "--manager", "launchd"])
        .assert()
        .success();
    assert_eq!(
        e.calls(),
        [
            v(&["print", &domain]),
            v(&["print", &target]),
            v(&["bootout", &target]),
            v(&["enable", &target]),
            v(&["bootstrap", &domain, &plist]),
        ]
    );

    e.cmd()
        .args(["uninstall", "--manager", "launchd"])
        .assert()
        .success();
    assert_eq!(
        e.calls(),
        [v(&["print", &target]), v(&["bootout", &target])]
    );
    assert!(!e.plist().exists());
    assert!(cfg_file.exists(), "config left");
    assert!(e.home.join("Library/Logs/headroom").is_dir(), "logs left");

    // Uninstalling again is not an error.
    e.cmd()
        .args(["uninstall", "--manager", "launchd"])
        .assert()
        .success()
        .stdout(predicates::str::contains("not installed"));
}

/// Issue 16: after `launchctl disable` (or an old `unload -w`) bootstrap
/// fails with 5 until the label is enabled; install enables it first.
#[test]
fn install_enables_a_disabled_label_before_bootstrap() {
    let e = Env::new();
    let target = format!("gui/{}/{LABEL}", uid());
    std::fs::write(e.state.join("disabled"), "").expect("disabled marker");
    e.cmd()
        .args(["install", "--manager", "launchd"])
        .assert()
        .success();
    let calls = e.calls();
    let pos = |verb: &str| calls.iter().position(|c| c[0] == verb);
    let (enable, boot) = (pos("enable"), pos("bootstrap"));
    assert!(enable.is_some() && enable < boot, "{calls:?}");
    assert_eq!(calls[enable.expect("enable")], v(&["enable", &target]));
    assert!(!e.state.join("disabled").exists());
}

#[test]
fn foreign_plist_is_refused_unless_forced() {
    let e = Env::new();
    std::fs::create_dir_all(e.plist().parent().expect("parent")).expect("mkdir");
    let foreign = "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>Label</key><string>com.example.other</string></dict></plist>";
    std::fs::write(e.plist(), foreign).expect("write");
    e.cmd()
        .args(["install", "--manager", "launchd"])
        .assert()
        .code(73)
        .stderr(predicates::str::contains("--force"));
    assert_eq!(std::fs::read_to_string(e.plist()).expect("read"), foreign);
    assert!(e.calls().is_empty());
    e.cmd()
        .args(["uninstall", "--manager", "launchd"])
        .assert()
        .code(73);
    assert!(
        e.plist().exists(),
        "uninstall must not remove a foreign file"
    );

    e.cmd()
        .args(["install", "--manager", "launchd", "--force"])
        .assert()
        .success()
        .stderr(predicates::str::contains("did not write"));
    check_plist(&std::fs::read(e.plist()).expect("plist"), &e.home);
}

#[test]
fn no_gui_session_warns_and_leaves_the_plist_for_next_login() {
    let e = Env::new();
    e.cmd()
        .env("FAKE_NO_GUI", "1")
        .args(["install", "--manager", "launchd"])
        .assert()
        .success()
        .stderr(predicates::str::contains("no GUI session"));
    assert_eq!(e.calls(), [v(&["print", &format!("gui/{}", uid())])]);
    assert!(e.plist().exists());
}

#[test]
fn bootstrap_failure_is_a_distinct_exit() {
    let e = Env::new();
    e.cmd()
        .env("FAKE_BOOTSTRAP_EXIT", "5")
        .args(["install", "--manager", "launchd"])
        .assert()
        .code(69)
        .stderr(predicates::str::contains("bootstrap"));
}

#[test]
fn binary_path_is_resolved_to_an_absolute_real_path() {
    let e = Env::new();
    let links = e.home.join("links dir");
    std::fs::create_dir_all(&links).expect("mkdir");
    std::os::unix::fs::symlink(BIN, links.join("headroom")).expect("symlink");
    // Started through a relative path via a symlink.
    let out = e
        .cmd_with(Path::new("sh"))
        .current_dir(&links)
        .args([
            "-c",
            "./headroom install --dry-run --manager launchd 2>/dev/null",
        ])
        .assert()
        .success();
    check_plist(&out.get_output().stdout, &e.home);
}

#[test]
fn systemd_install_uninstall_with_stand_in() {
    let e = Env::new();
    let unit = "headroom.service";
    e.cmd()
        .args(["install", "--manager", "systemd"])
        .assert()
        .success();
    let install_calls = [
        v(&["--user", "daemon-reload"]),
        v(&["--user", "enable", unit]),
        v(&["--user", "restart", unit]),
    ];
    assert_eq!(e.calls(), install_calls);
    let text = std::fs::read_to_string(e.unit()).expect("unit written");
    assert!(
        text.contains(&format!("ExecStart={} run\n", real_binary())),
        "{text}"
    );
    assert!(text.contains("Restart=on-failure"));

    // `headroom status` (systemd is this platform's manager) reports it, and
    // the last level change from the log.
    let log = e.home.join(".local/state/headroom/headroom.log");
    std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
    std::fs::write(&log, "{\"ts\":\"2025-01-02T03:04:05Z\",\"event\":\"level_changed\",\"from\":\"green\",\"to\":\"yellow\",\"reasons_text\":\"available 3 GiB < 4 GiB\"}\n").expect("log");
    let out = e.cmd().args(["status"]).assert().success();
    let s = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(s.contains("agent:     installed (systemd"), "{s}");
    assert!(s.contains("running"), "{s}");
    assert!(s.contains(&format!("log:       {}", log.display())), "{s}");
    assert!(s.contains("2025-01-02T03:04:05Z green → yellow"), "{s}");
    let out = e.cmd().args(["status", "--json"]).assert().success();
    let j: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    assert_eq!(j["agent"]["installed"], true);
    assert_eq!(j["agent"]["running"], true);
    assert_eq!(j["last_level_change"]["to"], "yellow");
    e.calls();

    e.cmd()
        .args(["install", "--manager", "systemd"])
        .assert()
        .success();
    assert_eq!(e.calls(), install_calls, "idempotent");

    e.cmd()
        .args(["uninstall", "--manager", "systemd"])
        .assert()
        .success();
    assert_eq!(
        e.calls(),
        [
            v(&["--user", "disable", "--now", unit]),
            v(&["--user", "daemon-reload"]),
        ]
    );
    assert!(!e.unit().exists());
    assert!(log.exists(), "logs left");
}

#[test]
fn systemd_unit_with_awkward_binary_path_passes_systemd_analyze_verify() {
    let e = Env::new();
    // A binary whose path needs quoting (space) and escaping (`%`): a hard link
    // to the real one, so ExecStart points at an executable that exists.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("agent bin 100% {}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let bin = dir.join("headroom");
    let _ = std::fs::remove_file(&bin);
    if std::fs::hard_link(BIN, &bin).is_err() {
        std::fs::copy(BIN, &bin).expect("copy binary");
    }
    let out = e
        .cmd_with(&bin)
        .args(["install", "--dry-run", "--manager", "systemd"])
        .assert()
        .success();
    let unit_text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let quoted = format!(
        "ExecStart=\"{}\" run\n",
        bin.display().to_string().replace('%', "%%")
    );
    assert!(unit_text.contains(&quoted), "{unit_text}");
    if !common::need::programs(
        "systemd_unit_with_awkward_binary_path_passes_systemd_analyze_verify",
        &[("systemd-analyze", "systemd")],
    ) {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let unit_dir = tempfile::tempdir().expect("tmp");
    let unit = unit_dir.path().join("headroom.service");
    std::fs::write(&unit, &unit_text).expect("write unit");
    let v = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "systemd-analyze verify failed: {err}");
    assert!(!err.contains("headroom.service:"), "warnings: {err}");
}

#[test]
fn completions_and_man_page_mention_install() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .assert()
            .success();
        let s = String::from_utf8_lossy(&out.get_output().stdout).to_string();
        assert!(s.contains("install"), "{shell}: {s}");
    }
    let out = Command::new(BIN).arg("man").assert().success();
    let s = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(s.starts_with(".ie") || s.contains(".TH"), "roff: {s}");
    assert!(s.contains("install"), "{s}");
}
