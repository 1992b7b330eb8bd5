//! Command-line interface (clap definitions only; dispatch is in main.rs).

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
    /// Validate the config and print the effective values.
    CheckConfig {
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}
