//! headroom: keeps Apple Silicon Macs (and Linux boxes) usable while MLX
//! jobs run — sample → classify → policy → act → log.

pub mod act;
pub mod action;
pub mod advise;
pub mod agent;
pub mod attribute;
pub mod check_config;
pub mod classify;
pub mod cli;
pub mod cmdline;
pub mod config;
pub mod daemon;
pub mod discover;
pub mod doctor;
pub mod engine;
pub mod explain;
pub mod fsafe;
pub mod input;
pub mod log;
pub mod macos_vm;
pub mod metrics;
pub mod model;
pub mod pace;
pub mod policy;
pub mod rate;
pub mod record;
pub mod replay;
pub mod sample;
pub mod status;
pub mod sys;
pub mod text;
pub mod timer;
pub mod top;
pub mod wired;

/// A failure that ends a command, with its exit code (sysexits).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Sample(#[from] sample::SampleError),
    #[error("{0}")]
    Io(std::io::Error),
    /// Input data (a trace, pasted text) that cannot be understood.
    #[error("{0}")]
    Data(String),
    /// An input file that cannot be opened or read.
    #[error("{0}")]
    Input(String),
    /// A file another user could plant or redirect (issue 13): exit 73.
    #[error("{0}")]
    Refused(String),
    /// A service headroom needs is not there (`notify-test`): exit 69.
    #[error("{0}")]
    Unavailable(String),
    /// install/uninstall: its own exit codes (73 foreign file, 69 service manager, …).
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(e) => e.exit_code(), // 78 EX_CONFIG, 71 no HOME
            Error::Sample(_) => 69,            // EX_UNAVAILABLE
            Error::Io(_) => 74,                // EX_IOERR
            Error::Data(_) => 65,              // EX_DATAERR
            Error::Input(_) => 66,             // EX_NOINPUT
            Error::Refused(_) => 73,           // EX_CANTCREAT
            Error::Unavailable(_) => 69,       // EX_UNAVAILABLE
            Error::Agent(e) => e.exit_code(),
        }
    }
}

impl From<fsafe::FileError> for Error {
    fn from(e: fsafe::FileError) -> Error {
        match e {
            fsafe::FileError::Refused(s) => Error::Refused(s),
            fsafe::FileError::Io(e) => Error::Io(e),
        }
    }
}

/// The single-threaded tokio runtime every async part runs on (the daemon's
/// loop, `record`, the metrics server's thread): timers and I/O enabled.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // The daemon's listings run on a blocking thread every 10 polls
        // while quiet: kept alive past that, it is not made anew each time
        // (a new thread's id is a new pid, which would look like a process
        // to look at).
        .thread_keep_alive(std::time::Duration::from_secs(60))
        .build()
}
