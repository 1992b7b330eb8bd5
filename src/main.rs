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
            // Errors quote paths, names and values from outside: the one rule
            // of src/text.rs, line breaks kept.
            eprintln!("headroom: {}", headroom::text::lines(&e.to_string()));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// A command's output on stdout. A full disk or a closed pipe is an error
/// with its exit code (74), not a panic (`print!` panics).
fn emit(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("standard output: {e}"),
            ))
        })
}

/// `explain`'s input, FILE or `-` (standard input), within its caps.
fn read_explain_input(file: Option<&std::path::Path>) -> Result<String, Error> {
    use headroom::input::{read_text, EXPLAIN};
    match file.filter(|p| p.as_os_str() != "-") {
        None => read_text(std::io::stdin().lock(), EXPLAIN).map_err(|e| e.error("standard input")),
        Some(p) => {
            let name = p.display().to_string();
            let f = std::fs::File::open(p).map_err(|e| Error::Input(format!("{name}: {e}")))?;
            read_text(f, EXPLAIN).map_err(|e| e.error(&name))
        }
    }
}

fn dispatch(cmd: Command) -> Result<(), Error> {
    match cmd {
        Command::Run { config, dry_run } => {
            let cfg = headroom::daemon::load_for_this_machine(config.as_deref())?;
            headroom::config::scope_for(&cfg)?;
            headroom::log::preflight(&cfg.log.path)?;
            let start = std::time::Instant::now();
            let log = headroom::log::init(&cfg.log.path, cfg.log.max_size.0, cfg.log.keep, start);
            let daemon = headroom::daemon::Daemon::new(cfg, config, dry_run, log, start)?;
            let rt = headroom::runtime().map_err(Error::Io)?;
            let done = rt.block_on(daemon.run());
            // A sample stuck in the kernel (a read under /proc that never
            // returns) must not hold up the exit: don't wait for it.
            rt.shutdown_background();
            done
        }
        Command::Doctor {
            config,
            json,
            notify,
        } => {
            let opts = headroom::doctor::Options {
                config: config.as_deref(),
                notify,
            };
            let (report, failed) = headroom::doctor::run(&opts, json);
            emit(&report)?;
            if failed {
                // Exit 1: a check failed (the report says which).
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Status { config, json } => {
            let cfg = Config::load(config.as_deref())?;
            emit(&headroom::status::status(&cfg, json)?)?;
            Ok(())
        }
        Command::Explain {
            file,
            total_bytes,
            config,
            json,
        } => {
            let cfg = Config::load(config.as_deref())?;
            let text = read_explain_input(file.as_deref())?;
            let out = headroom::explain::run_explain(&text, total_bytes, &cfg, json)
                .map_err(|e| Error::Data(e.to_string()))?;
            emit(&out)?;
            Ok(())
        }
        Command::Advise {
            model,
            bits,
            group_size,
            batch_size,
            max_seq_length,
            lora_layers,
            lora_rank,
            grad_checkpoint,
            cmd,
            config,
            json,
        } => {
            let cfg = Config::load(config.as_deref())?;
            let req = headroom::advise::Request {
                model,
                bits,
                group_size,
                batch_size,
                max_seq_length,
                lora_layers,
                lora_rank,
                grad_checkpoint,
                cmd,
            };
            emit(&headroom::advise::run(&req, &cfg, json)?)?;
            Ok(())
        }
        Command::CheckConfig { config } => {
            let cfg = headroom::daemon::load_for_this_machine(config.as_deref())?;
            emit(&headroom::check_config::effective_config(&cfg))?;
            Ok(())
        }
        Command::Install {
            manager,
            dry_run,
            force,
            config,
        } => headroom::agent::install(&headroom::agent::Options {
            manager: manager.unwrap_or_else(headroom::agent::Manager::native),
            dry_run,
            force,
            config,
        }),
        Command::Uninstall {
            manager,
            dry_run,
            force,
        } => headroom::agent::uninstall(&headroom::agent::Options {
            manager: manager.unwrap_or_else(headroom::agent::Manager::native),
            dry_run,
            force,
            config: None,
        }),
        Command::Completions { shell } => {
            headroom::cli::completions(shell);
            Ok(())
        }
        Command::Man => headroom::cli::man(),
        Command::NotifyTest => {
            let said = headroom::act::notify::notify_test().map_err(Error::Unavailable)?;
            emit(&format!("{said}\n"))
        }
        Command::Record {
            out,
            force,
            duration,
            config,
        } => {
            let cfg = Config::load(config.as_deref())?;
            let n = headroom::record::record(&cfg, &out, force, duration)?;
            eprintln!(
                "headroom: recorded {n} snapshots to {}",
                headroom::text::line(&out.display().to_string())
            );
            Ok(())
        }
        Command::Replay { file, config, json } => {
            let cfg = Config::load(config.as_deref())?;
            emit(&headroom::replay::run_replay(&file, &cfg, json)?)?;
            Ok(())
        }
        Command::Top { config } => {
            if let Err(msg) = headroom::top::require_terminal() {
                // Exit 2, like a bad command line: nothing was started.
                eprintln!("headroom: {msg}");
                std::process::exit(2);
            }
            let cfg = Config::load(config.as_deref())?;
            headroom::top::run(&cfg)
        }
    }
}
