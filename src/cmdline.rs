//! What a process runs, read off its argv and checked against the kernel's
//! name for it: the *program string* that `mlx.patterns` and `never_kill`
//! match. Arguments never count — `tail -f mlx_lm.log` runs `tail`
//! (issue 12: lookalikes were SIGTERMed because an argument mentioned MLX).
//!
//! The program string is, in this order:
//! - for a Python interpreter (`python`, `python3`, `python3.12`, `Python`, …):
//!   the module of `-m MODULE` (`python -m mlx_lm.lora` → `mlx_lm.lora`), else
//!   the basename of the script, the first argument that is not an
//!   interpreter option (`/v/bin/python3 /v/bin/mlx_lm.lora …` → `mlx_lm.lora`,
//!   `python train.py` → `train.py`), else the interpreter's basename
//!   (`python3 -c …`, a REPL → `python3`);
//! - otherwise the basename of argv[0] (`/usr/bin/tail -f mlx_lm.log` → `tail`).
//!
//! argv[0] and a process's arguments are whatever the process wrote there
//! (`exec -a`, setproctitle), so the program must agree with the name the
//! kernel gave it at exec (Linux `comm`, macOS `p_comm`/`pbi_name`, cut at
//! 15–31 bytes): an interpreter's name or the script's (a `#!` script is
//! named after the script), or argv[0]'s basename. When they disagree the
//! kernel's name is the program: `exec -a mlx_lm.lora sleep 1000` runs `sleep`.

mod flags;
pub use flags::{
    bits_in_name, display_name, key_flags, key_flags_of, printable, program_name, remedy,
    size_in_name, TrainFlags, LORA_BATCH_SIZE, LORA_MAX_SEQ_LENGTH, LORA_NUM_LAYERS,
};

/// How the program string was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `python -m MODULE`.
    Module,
    /// `python SCRIPT`.
    Script,
    /// The interpreter itself (`-c`, REPL, stdin).
    Interpreter,
    /// The basename of argv[0].
    Executable,
    /// The kernel's name: argv is empty or disagrees with it.
    KernelName,
}

/// A process's program, from [`Program::of`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The program string (see the module doc).
    pub name: String,
    /// The next word after an `mlx_lm` launcher (`mlx_lm lora` → `lora`).
    pub subcommand: Option<String>,
    /// The process runs a Python interpreter, which may `import mlx` at any time.
    pub interpreter: bool,
    pub via: Via,
}

/// Whether an executable's basename is a Python interpreter: `python`,
/// `python3`, `python3.12`, `python3.13t`, `pythonw`, macOS's `Python`.
pub fn is_interpreter(base: &str) -> bool {
    let Some(rest) = base
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("python"))
        .map(|_| &base[6..])
    else {
        return false;
    };
    let rest = rest
        .strip_suffix(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(rest);
    rest.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The last path component.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether the kernel's `name` for a process is `base` as the kernel keeps
/// it: equal, or a prefix at least 15 bytes long (Linux cuts `comm` at 15
/// bytes, macOS `p_comm` at 16 and `pbi_name` at 32).
fn kernel_name_is(name: &str, base: &str) -> bool {
    !name.is_empty()
        && base.as_bytes().starts_with(name.as_bytes())
        && (name.len() == base.len() || name.len() >= 15)
}

impl Program {
    /// The program of a process with arguments `argv` and kernel name
    /// `name`. `argv` may also be whitespace-split words of a command line.
    pub fn of<S: AsRef<str>>(argv: &[S], name: &str) -> Program {
        match Program::claimed(argv) {
            Some(p) if p.agrees_with(name, argv) => p,
            _ => Program {
                name: name.to_string(),
                subcommand: None,
                interpreter: is_interpreter(name),
                via: Via::KernelName,
            },
        }
    }

    /// The program argv claims, before checking it against the kernel's name.
    fn claimed<S: AsRef<str>>(argv: &[S]) -> Option<Program> {
        let arg = |i: usize| argv.get(i).map(|s| s.as_ref());
        let argv0 = basename(arg(0)?);
        if argv0.is_empty() {
            return None;
        }
        let plain = |name: &str, via: Via, next: usize| Program {
            subcommand: (name == "mlx_lm")
                .then(|| arg(next).filter(|w| !w.starts_with('-') && !w.is_empty()))
                .flatten()
                .map(str::to_string),
            name: name.to_string(),
            interpreter: via != Via::Executable,
            via,
        };
        if !is_interpreter(argv0) {
            return Some(plain(argv0, Via::Executable, 1));
        }
        // Python's options (`python3 --help`): -c and -m end them and take
        // an argument, as do -W, -X and --check-hash-based-pycs; the others
        // are switches and may be grouped (`-uBm mlx_lm.lora`).
        let mut i = 1;
        while let Some(a) = arg(i) {
            i += 1;
            if a == "--" {
                break;
            }
            if a == "--check-hash-based-pycs" {
                i += 1;
                continue;
            }
            if a.starts_with("--") {
                continue;
            }
            let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) else {
                i -= 1; // the script (or "-": stdin)
                break;
            };
            for (k, c) in cluster.char_indices() {
                let rest = &cluster[k + c.len_utf8()..];
                match c {
                    'c' => return Some(plain(argv0, Via::Interpreter, usize::MAX)),
                    'm' => {
                        let (module, next) = if rest.is_empty() {
                            (arg(i)?, i + 1)
                        } else {
                            (rest, i)
                        };
                        return Some(plain(module, Via::Module, next));
                    }
                    'W' | 'X' => {
                        if rest.is_empty() {
                            i += 1;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        match arg(i).filter(|s| *s != "-" && !s.is_empty()) {
            Some(script) if !basename(script).is_empty() => {
                Some(plain(basename(script), Via::Script, i + 1))
            }
            _ => Some(plain(argv0, Via::Interpreter, usize::MAX)),
        }
    }

    /// Whether the kernel's name backs this claim: an interpreter runs under
    /// an interpreter's name or, for a `#!` script, the script's; anything
    /// else under argv[0]'s basename.
    fn agrees_with<S: AsRef<str>>(&self, name: &str, argv: &[S]) -> bool {
        let argv0 = argv.first().map_or("", |a| basename(a.as_ref()));
        match self.via {
            Via::Executable => kernel_name_is(name, argv0),
            Via::Script => is_interpreter(name) || kernel_name_is(name, &self.name),
            Via::Module | Via::Interpreter => is_interpreter(name),
            Via::KernelName => true,
        }
    }

    /// How people call it: `mlx_lm.lora`, `mlx_lm lora`, `train.py`.
    pub fn display(&self) -> String {
        match &self.subcommand {
            Some(s) => format!("{} {s}", self.name),
            None => self.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(cmd: &str, name: &str) -> Program {
        let argv: Vec<&str> = cmd.split(' ').filter(|w| !w.is_empty()).collect();
        Program::of(&argv, name)
    }

    #[test]
    fn interpreters() {
        for yes in [
            "python",
            "python3",
            "python3.12",
            "python3.13t",
            "pythonw",
            "Python",
            "PYTHON3",
        ] {
            assert!(is_interpreter(yes), "{yes}");
        }
        for no in [
            "py",
            "pythonista",
            "python-config",
            "ipython",
            "bpython3",
            "",
            "pyth",
        ] {
            assert!(!is_interpreter(no), "{no}");
        }
    }

    #[test]
    fn the_program_is_what_runs_never_an_argument() {
        // (command line, kernel name, program, via)
        let rows = [
            (
                "/v/bin/python3 /v/bin/mlx_lm.lora --model m --train",
                "mlx_lm.lora",
                "mlx_lm.lora",
                Via::Script,
            ),
            (
                "/v/bin/python3 /v/bin/mlx_lm.lora --train",
                "python3",
                "mlx_lm.lora",
                Via::Script,
            ),
            (
                "python -m mlx_lm.lora --train",
                "python",
                "mlx_lm.lora",
                Via::Module,
            ),
            (
                "python3 -u -X importtime -m mlx_lm lora --train",
                "python3",
                "mlx_lm",
                Via::Module,
            ),
            (
                "python3 -uBmmlx_vlm.generate --model x",
                "python3",
                "mlx_vlm.generate",
                Via::Module,
            ),
            (
                "python3 -W ignore train.py --lr 1",
                "python3",
                "train.py",
                Via::Script,
            ),
            (
                "python3 -Wignore /a/b/train.py",
                "python3.11",
                "train.py",
                Via::Script,
            ),
            (
                "python3 -c import mlx_lm.lora",
                "python3",
                "python3",
                Via::Interpreter,
            ),
            ("python3", "python3", "python3", Via::Interpreter),
            ("python3 -", "python3", "python3", Via::Interpreter),
            ("tail -f ./mlx_lm.log", "tail", "tail", Via::Executable),
            ("grep mlx_vlm.generate", "grep", "grep", Via::Executable),
            (
                "tmux new -s mlx-lm",
                "tmux: server",
                "tmux: server",
                Via::KernelName,
            ),
            ("tmux new -s mlx-lm", "tmux", "tmux", Via::Executable),
            (
                "/v/bin/python3 /v/bin/pip install -U mlx-lm",
                "pip",
                "pip",
                Via::Script,
            ),
            (
                "git clone https://github.com/ml-explore/mlx-lm",
                "git",
                "git",
                Via::Executable,
            ),
            (
                "/usr/lib/git-core/git-remote-https origin https://github.com/ml-explore/mlx-lm",
                "git-remote-http",
                "git-remote-https",
                Via::Executable,
            ),
            (
                "ssh box python -m mlx_lm.lora --train",
                "ssh",
                "ssh",
                Via::Executable,
            ),
            (
                "docker run --name mlx-lm img",
                "docker",
                "docker",
                Via::Executable,
            ),
            ("man mlx.launch", "man", "man", Via::Executable),
            // argv[0] rewritten: the kernel's name wins.
            ("mlx_lm.lora 1000", "sleep", "sleep", Via::KernelName),
            ("python3 -m mlx_lm.lora", "sleep", "sleep", Via::KernelName),
            (
                "/v/bin/python3 /v/bin/mlx_lm.lora",
                "bash",
                "bash",
                Via::KernelName,
            ),
            ("", "kworker/0:1", "kworker/0:1", Via::KernelName),
        ];
        for (cmd, name, want, via) in rows {
            let p = of(cmd, name);
            assert_eq!(
                (p.name.as_str(), p.via),
                (want, via),
                "{cmd:?} named {name:?}"
            );
        }
    }

    #[test]
    fn subcommands_and_display() {
        assert_eq!(
            of("python3 -m mlx_lm lora --train", "python3").display(),
            "mlx_lm lora"
        );
        assert_eq!(
            of("/v/bin/python3 /v/bin/mlx_lm generate --x", "mlx_lm").display(),
            "mlx_lm generate"
        );
        assert_eq!(
            of("/v/bin/python3 /v/bin/mlx_lm --help", "mlx_lm").display(),
            "mlx_lm"
        );
        assert_eq!(
            of("python3 -m mlx_lm.lora --train", "python3").display(),
            "mlx_lm.lora"
        );
    }

    #[test]
    fn argv_keeps_paths_with_spaces_whole() {
        let argv = [
            "/Users/a b/venv/bin/python3",
            "/Users/a b/venv/bin/mlx_lm.lora",
            "--train",
        ];
        let p = Program::of(&argv, "mlx_lm.lora");
        assert_eq!((p.name.as_str(), p.via), ("mlx_lm.lora", Via::Script));
        // One argv element holding a whole command line (setproctitle) is one program name.
        let p = Program::of(&["python -m mlx_lm.lora"], "python");
        assert_eq!(p.via, Via::KernelName);
    }
}
