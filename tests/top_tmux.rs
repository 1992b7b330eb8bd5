//! `headroom top` in a real terminal: tmux runs it in a detached 120×40
//! pane; the test reads the screen with capture-pane, starts a real process
//! whose command line matches an MLX pattern and waits for its pid in the
//! table, quits with `q` through send-keys, and checks the process exited 0
//! and left the alternate screen. Needs the Debian package `tmux` (a loud skip without it).

mod common;

use common::tmux::Tmux;
use common::{bin, Kid};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn top_draws_level_memory_and_a_new_mlx_process_then_q_restores_the_terminal() {
    let Some(t) = Tmux::new(
        "top_draws_level_memory_and_a_new_mlx_process_then_q_restores_the_terminal",
        "top-test",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[poll]\ninterval = \"1s\"\n").expect("config");
    // The shell records top's own exit status (128+n for a signal) in a
    // file: tmux 3.3 does not always fill #{pane_dead_status}.
    let status_file = dir.path().join("status");
    let command = format!(
        "sh -c \"env -u HEADROOM_CONFIG '{}' top --config '{}'; echo \\$? > '{}'\"",
        bin().display(),
        cfg.display(),
        status_file.display()
    );
    t.start(120, 40, &command);

    let screen = t.wait_screen(90, "the first frame", |s| {
        s.contains("available") && ["GREEN", "YELLOW", "RED"].iter().any(|l| s.contains(l))
    });
    assert!(screen.contains("MLX processes:"), "{screen}");

    // A real process whose program is mlx_lm.lora: `sleep` through a link
    // of that name (the kernel names it after the link, issue 12).
    let link = dir.path().join("mlx_lm.lora");
    std::os::unix::fs::symlink("/bin/sleep", &link).expect("symlink");
    let fake = Command::new(&link)
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the fake MLX process");
    let fake = Kid::new(fake);
    let pid = fake.pid().to_string();
    let screen = t.wait_screen(90, "the MLX process in the table", |s| {
        s.lines()
            .any(|l| l.split_whitespace().next() == Some(pid.as_str()) && l.contains("mlx_lm.lora"))
    });
    assert!(
        screen.contains("FOOTPRINT") && screen.contains("RED IN"),
        "{screen}"
    );
    assert!(screen.lines().count() <= 40);

    t.cmd(&["send-keys", "-t", "s", "q"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = std::fs::read_to_string(&status_file)
            .ok()
            .filter(|s| s.ends_with('\n'))
        {
            break s.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "top did not exit after q; the screen:\n{}",
            t.capture()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, "0", "exit status");
    let after = t.capture();
    assert!(
        !after.contains("MLX processes:"),
        "the alternate screen was left on exit:\n{after}"
    );
}

#[test]
fn top_without_a_terminal_is_a_one_line_error_with_exit_2() {
    let o = Command::new(bin())
        .args(["top"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("headroom runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs a terminal"), "{err}");
}
