//! The `headroom` binary: parse the CLI, load the config, dispatch; every
//! failure becomes a one-line message and a distinct exit code.

use clap::Parser;
use headroom::cli::{Cli, Command};
use headroom::config::Config;
use headroom::Error;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headroom: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn dispatch(cmd: Command) -> Result<(), Error> {
    match cmd {
        Command::Run { config, dry_run } => {
            let cfg = Config::load(config.as_deref())?;
            headroom::daemon::scope_for(&cfg)?;
            let start = std::time::Instant::now();
            let log = headroom::log::init(&cfg.log.path, cfg.log.max_size.0, cfg.log.keep, start);
            let daemon = headroom::daemon::Daemon::new(cfg, config, dry_run, log, start)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Io)?;
            rt.block_on(daemon.run())
        }
        Command::Status { config, json } => {
            let cfg = Config::load(config.as_deref())?;
            print!("{}", headroom::status::status(&cfg, json)?);
            Ok(())
        }
        Command::CheckConfig { config } => {
            let cfg = Config::load(config.as_deref())?;
            print!("{}", headroom::status::effective_config(&cfg));
            Ok(())
        }
    }
}
