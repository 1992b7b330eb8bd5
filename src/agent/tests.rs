//! Unit tests for the agent: plist and unit rendering, quoting, paths.

use super::*;

fn layout(manager: Manager, home: &str) -> Layout {
    let home = PathBuf::from(home);
    let log_dir = home.join("Library/Logs/headroom");
    Layout {
        manager,
        uid: 501,
        binary: home.join("bin dir/head%room"),
        config: Some(home.join("conf & co/config.toml")),
        service_file: service_file(manager, &home),
        stdout_path: log_dir.join("stdout.log"),
        stderr_path: log_dir.join("stderr.log"),
        log_dir,
        log_path: home.join("Library/Logs/headroom/headroom.log"),
        config_file: None,
        home,
    }
}

#[test]
fn plist_has_the_keys_with_absolute_escaped_paths() {
    let l = layout(Manager::Launchd, "/Users/A & B <x>");
    let xml = launchd::render_plist(&l).expect("render");
    assert!(
        xml.contains("/Users/A &amp; B &lt;x&gt;/bin dir/head%room"),
        "{xml}"
    );
    let v = plist::Value::from_reader_xml(xml.as_bytes()).expect("parse");
    let d = v.as_dictionary().expect("dict");
    let args: Vec<&str> = d["ProgramArguments"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a.as_string())
        .collect();
    assert_eq!(
        args,
        [
            "/Users/A & B <x>/bin dir/head%room",
            "run",
            "--config",
            "/Users/A & B <x>/conf & co/config.toml"
        ]
    );
    assert_eq!(d["Label"].as_string(), Some(launchd::LABEL));
    assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
    let ka = d["KeepAlive"].as_dictionary().expect("KeepAlive dict");
    assert_eq!(ka["SuccessfulExit"].as_boolean(), Some(false));
    assert_eq!(d["LimitLoadToSessionType"].as_string(), Some("Aqua"));
    assert_eq!(d["ProcessType"].as_string(), Some("Standard"));
    assert_eq!(
        d["StandardErrorPath"].as_string(),
        Some("/Users/A & B <x>/Library/Logs/headroom/stderr.log")
    );
    assert!(launchd::is_ours(xml.as_bytes()));
    assert!(!launchd::is_ours(b"<plist><dict></dict></plist>"));
}

#[test]
fn systemd_words_are_quoted_per_systemd_rules() {
    // (word, as written in ExecStart=) — systemd.service(5) "Command lines".
    let table = [
        ("/usr/bin/headroom", "/usr/bin/headroom"),
        ("/home/a b/headroom", "\"/home/a b/headroom\""),
        ("/opt/100%/x", "/opt/100%%/x"),
        ("/opt/$HOME/x", "/opt/$$HOME/x"),
        ("/a \"q\"/x", "\"/a \\\"q\\\"/x\""),
        ("/a\\b", "\"/a\\\\b\""),
        ("", "\"\""),
    ];
    for (w, want) in table {
        assert_eq!(systemd::quote_word(w).expect(w), want, "{w}");
    }
    assert!(systemd::quote_word("/a\nb").is_err());
}

#[test]
fn unit_renders_exec_start_and_marker() {
    let l = layout(Manager::Systemd, "/home/a b");
    let unit = systemd::render_unit(&l).expect("unit");
    assert!(systemd::is_ours(unit.as_bytes()));
    assert!(unit.contains(
        "ExecStart=\"/home/a b/bin dir/head%%room\" run --config \"/home/a b/conf & co/config.toml\"\n"
    ));
    assert!(unit.contains("Restart=on-failure\n"));
}

#[test]
fn cellar_binary_maps_to_the_stable_opt_link() {
    let d = tempfile::tempdir().expect("tmp");
    let real = d.path().join("Cellar/headroom/HEAD-abc/bin/headroom");
    std::fs::create_dir_all(real.parent().expect("parent")).expect("mkdir");
    std::fs::write(&real, "").expect("write");
    assert_eq!(stable_binary(&real), None, "no opt link yet");
    let opt = d.path().join("opt/headroom/bin/headroom");
    std::fs::create_dir_all(opt.parent().expect("parent")).expect("mkdir");
    std::fs::write(&opt, "").expect("write");
    assert_eq!(stable_binary(&real), Some(opt));
    assert_eq!(stable_binary(Path::new("/usr/local/bin/headroom")), None);
}

#[test]
fn launchctl_print_state_and_pid() {
    // Shape of `launchctl print gui/501/<label>` on macOS 14 (abridged).
    let text = "gui/501/dev.headroom.agent = {\n\tactive count = 1\n\tpath = /Users/a/Library/LaunchAgents/dev.headroom.agent.plist\n\tstate = running\n\n\tprogram = /usr/local/bin/headroom\n\tpid = 4242\n\tendpoints = {\n\t}\n}\n";
    assert_eq!(
        report::parse_launchctl_print(text),
        (Some("running".into()), Some(4242))
    );
}

#[test]
fn last_level_change_is_read_from_the_log() {
    let d = tempfile::tempdir().expect("tmp");
    let log = d.path().join("headroom.log");
    std::fs::write(
        &log,
        concat!(
            r#"{"ts":"t1","event":"level_changed","from":"green","to":"yellow","reasons_text":"a"}"#,
            "\n",
            r#"{"ts":"t2","event":"sample","level":"yellow"}"#,
            "\n",
            r#"{"ts":"t3","event":"level_changed","from":"yellow","to":"red","reasons_text":"b"}"#,
            "\n",
            r#"{"ts":"t4","event":"notified","body":"level_changed"}"#,
            "\n"
        ),
    )
    .expect("write");
    let v = report::last_level_change(&log).expect("found");
    assert_eq!(v["ts"], "t3");
    assert_eq!(v["to"], "red");
    assert!(report::last_level_change(&d.path().join("none")).is_none());
}
