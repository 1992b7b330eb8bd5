//! Command-line interface: the clap definitions, and what is printed from
//! them alone (`completions`, `man`); dispatch is in main.rs.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "headroom",
    version,
    about = "Keeps the machine usable while MLX jobs train: watches memory, warns early, stops runaway MLX processes."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (SIGINT/SIGTERM stop it, SIGHUP reloads the config).
    Run {
        /// Config file (default: $HEADROOM_CONFIG, else ~/.config/headroom/config.toml if present, else the embedded defaults).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Log every decision but send no signal.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check this machine and headroom's setup, each figure beside the system tool's
    /// (free / vm_stat / sysctl); exit 1 when a check fails (docs/doctor.md).
    Doctor {
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Print JSON instead of a report.
        #[arg(long)]
        json: bool,
        /// Also post one test notification through the real path.
        #[arg(long)]
        notify: bool,
    },
    /// Take one sample and show the level, the reasons and the MLX processes.
    Status {
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read pasted macOS `vm_stat` (optionally with `memory_pressure`,
    /// `sysctl vm.swapusage` / `hw.memsize` lines) and explain it.
    Explain {
        /// File with the text; `-` or nothing reads standard input.
        #[arg(value_name = "FILE|-")]
        file: Option<PathBuf>,
        /// Total RAM in bytes, when the text does not say.
        #[arg(long, value_name = "N")]
        total_bytes: Option<u64>,
        /// Config whose thresholds decide the headroom level.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate the config (also against this machine's total RAM and, as
    /// root, that only root can write it and its hooks) and print the effective values.
    CheckConfig {
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Install the agent: a LaunchAgent (macOS) or a systemd user service (Linux) that runs `headroom run` at login.
    Install {
        /// Service manager (default: this platform's own).
        #[arg(long, value_enum)]
        manager: Option<crate::agent::Manager>,
        /// Print the plist/unit and the commands; write and run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace a file at the plist/unit path that headroom did not write.
        #[arg(long)]
        force: bool,
        /// Config file the agent runs with (default: the one `run` would find).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Stop and remove the agent; the config and the logs stay.
    Uninstall {
        #[arg(long, value_enum)]
        manager: Option<crate::agent::Manager>,
        /// Print the commands; remove and run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove a file at the plist/unit path that headroom did not write.
        #[arg(long)]
        force: bool,
    },
    /// Sample at the poll interval and write one Snapshot per line (a trace)
    /// until the duration passes or SIGINT/SIGTERM.
    Record {
        /// The trace file to write, created 0600; never through a symlink.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing FILE: only a regular file you own (never a
        /// symlink, FIFO or device).
        #[arg(long)]
        force: bool,
        /// Stop after this long ("90s", "10m"); default: until SIGINT/SIGTERM.
        #[arg(long, value_name = "D", value_parser = crate::config::parse_duration)]
        duration: Option<std::time::Duration>,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Feed a trace (or a headroom log) through the real classifier and
    /// policy and print every level change and action with its time and reason.
    Replay {
        /// A trace from `headroom record`, or a headroom log file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Config whose thresholds and actions to replay with.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// One JSON object per decision (the log's event names and fields).
        #[arg(long)]
        json: bool,
    },
    /// A live full-screen view: level, memory, swap, pressure and the MLX
    /// processes with their growth and time to red (`q` quits).
    Top {
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// The memory guide's sizing rules for this machine, a model
    /// (folder, size or name) and a planned `mlx_lm.lora` run: will it
    /// fit, and with which flags.
    Advise {
        /// A local MLX / Hugging Face model folder, a size (7B, 13b) or a
        /// name from the guide (llama-7b … llama-70b, nemotron-253b).
        #[arg(long, value_name = "PATH_OR_SIZE", allow_hyphen_values = true)]
        model: Option<String>,
        /// Weight bits: 4, 8 or 16 (default: the folder's, else 16).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        bits: Option<i64>,
        /// Quantization group size: 32, 64 or 128 (default: the folder's, else 64).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        group_size: Option<i64>,
        /// Default: mlx_lm.lora's 4.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        batch_size: Option<i64>,
        /// Default: mlx_lm.lora's 2048.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        max_seq_length: Option<i64>,
        /// Trained blocks (mlx_lm.lora --num-layers); default 16.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        lora_layers: Option<i64>,
        /// Default: mlx_lm.lora's 8.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        lora_rank: Option<i64>,
        #[arg(long)]
        grad_checkpoint: bool,
        /// A planned command line, e.g. "mlx_lm.lora --model … --batch-size 4".
        #[arg(long, value_name = "COMMAND", allow_hyphen_values = true)]
        cmd: Option<String>,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send one test notification through the path the daemon uses
    /// (osascript on macOS, D-Bus on Linux) and say whether it was accepted.
    NotifyTest,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// `headroom completions <shell>`.
pub fn completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "headroom", &mut std::io::stdout());
}

/// `headroom man`: the man page, roff, on stdout.
pub fn man() -> Result<(), crate::Error> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .map_err(crate::Error::Io)
}
