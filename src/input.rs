//! Reading text from outside — traces, pasted `explain` input, config files,
//! a model's config.json — with a cap on each line and on the whole, so an
//! endless or hostile input (`/dev/zero`, one 10 GB line) ends in one error
//! naming the line instead of filling memory. Every such reader uses this.

use std::fmt;
use std::io::{self, BufRead, Read};

const MIB: u64 = 1 << 20;

/// The most a reader accepts: bytes in one line (without its '\n') and in
/// the whole input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub line: u64,
    pub total: u64,
}

/// `headroom replay`: a Snapshot line is a few KiB (a busy machine's
/// snapshot with a hundred MLX processes is ~40 KiB); 1 GiB is months of
/// `record` at the default 1 s poll.
pub const REPLAY: Caps = Caps {
    line: MIB,
    total: 1024 * MIB,
};

/// `headroom explain`: pasted vm_stat / memory_pressure / sysctl output is a
/// few KiB.
pub const EXPLAIN: Caps = Caps {
    line: MIB,
    total: 16 * MIB,
};

/// headroom's own config.toml (the shipped default is ~6 KiB).
pub const CONFIG: Caps = Caps {
    line: MIB,
    total: MIB,
};

/// A model's config.json: a few KiB, sometimes one long line (minified, or
/// a big `id2label`), so the line cap is the total cap.
pub const MODEL_CONFIG_JSON: Caps = Caps {
    line: 4 * MIB,
    total: 4 * MIB,
};

/// Why an input was refused.
#[derive(Debug)]
pub enum InputError {
    /// The read itself failed (exit 66 for the callers, like a missing file).
    Io(io::Error),
    /// Line `line` (1-based) is longer than the cap.
    LineTooLong { line: u64, cap: u64 },
    /// The input passes the total cap within line `line`.
    TooLarge { line: u64, cap: u64 },
    /// Line `line` is not UTF-8.
    NotUtf8 { line: u64 },
}

impl InputError {
    /// The line the error is about, if any.
    pub fn line(&self) -> Option<u64> {
        match self {
            InputError::Io(_) => None,
            InputError::LineTooLong { line, .. }
            | InputError::TooLarge { line, .. }
            | InputError::NotUtf8 { line } => Some(*line),
        }
    }

    /// What is wrong, without the line number: "longer than the 1 MiB line cap".
    pub fn why(&self) -> String {
        match self {
            InputError::Io(e) => e.to_string(),
            InputError::LineTooLong { cap, .. } => {
                format!("line longer than the {} line cap", size(*cap))
            }
            InputError::TooLarge { cap, .. } => {
                format!("input larger than the {} cap", size(*cap))
            }
            InputError::NotUtf8 { .. } => "not UTF-8 text".to_string(),
        }
    }

    /// One line for the user: `NAME:LINE: why` (the form of compiler and
    /// grep messages), or `NAME: why` when no line is concerned.
    pub fn at(&self, name: &str) -> String {
        match self.line() {
            Some(n) => format!("{name}:{n}: {}", self.why()),
            None => format!("{name}: {}", self.why()),
        }
    }
}

impl InputError {
    /// The command's error: a failed read is exit 66 like a missing file;
    /// input past a cap or not text is exit 65 (data).
    pub fn error(&self, name: &str) -> crate::Error {
        match self {
            InputError::Io(_) => crate::Error::Input(self.at(name)),
            _ => crate::Error::Data(self.at(name)),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line() {
            Some(n) => write!(f, "line {n}: {}", self.why()),
            None => f.write_str(&self.why()),
        }
    }
}

/// "1 MiB", "1024 MiB", "100 B": caps are whole MiB in practice.
fn size(bytes: u64) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} B")
    }
}

/// Lines of a reader, each read with at most `caps.line + 1` bytes in
/// memory, the running total checked against `caps.total`.
pub struct Lines<R> {
    reader: R,
    caps: Caps,
    line: u64,
    total: u64,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R, caps: Caps) -> Lines<R> {
        Lines {
            reader,
            caps,
            line: 0,
            total: 0,
        }
    }

    /// The next line into `buf` (with its '\n', if it had one) and its
    /// 1-based number; `None` at the end of the input.
    pub fn next_bytes(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>, InputError> {
        buf.clear();
        // One byte over the cap, plus the '\n': enough to tell a line of
        // exactly `caps.line` bytes from a longer one, never more.
        let limit = self.caps.line.saturating_add(1);
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', buf)
            .map_err(InputError::Io)?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let line = self.line;
        self.total = self.total.saturating_add(n as u64);
        let content = buf.strip_suffix(b"\n").unwrap_or(buf).len() as u64;
        if content > self.caps.line {
            return Err(InputError::LineTooLong {
                line,
                cap: self.caps.line,
            });
        }
        if self.total > self.caps.total {
            return Err(InputError::TooLarge {
                line,
                cap: self.caps.total,
            });
        }
        Ok(Some(line))
    }

    /// The next line as text (with its '\n', if it had one).
    pub fn next_str<'b>(
        &mut self,
        buf: &'b mut Vec<u8>,
    ) -> Result<Option<(u64, &'b str)>, InputError> {
        let Some(line) = self.next_bytes(buf)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(buf).map_err(|_| InputError::NotUtf8 { line })?;
        Ok(Some((line, text)))
    }
}

/// The whole of `reader` as text, within `caps`.
pub fn read_text<R: Read>(reader: R, caps: Caps) -> Result<String, InputError> {
    let mut lines = Lines::new(io::BufReader::new(reader), caps);
    let mut out = String::new();
    let mut buf = Vec::new();
    while let Some((_, text)) = lines.next_str(&mut buf)? {
        out.push_str(text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Caps = Caps { line: 4, total: 12 };

    fn read(bytes: &[u8]) -> Result<String, InputError> {
        read_text(bytes, SMALL)
    }

    #[test]
    fn caps_on_lines_and_total() {
        // Exactly at the line cap, with and without the final '\n'.
        assert_eq!(read(b"abcd\nefgh").expect("at the cap"), "abcd\nefgh");
        assert_eq!(read(b"").expect("empty"), "");
        assert_eq!(read(b"\n\n").expect("blank lines"), "\n\n");
        let e = read(b"ab\nabcde\n").expect_err("line 2 too long");
        assert!(
            matches!(e, InputError::LineTooLong { line: 2, cap: 4 }),
            "{e:?}"
        );
        assert_eq!(e.at("f.txt"), "f.txt:2: line longer than the 4 B line cap");
        // A last line over the cap with no '\n'.
        let e = read(b"abcde").expect_err("too long");
        assert_eq!(e.line(), Some(1));
        // 12 bytes pass; the 13th is in line 4.
        assert_eq!(
            read(b"abc\nabc\nabc\n").expect("at the total cap").len(),
            12
        );
        let e = read(b"abc\nabc\nabc\na").expect_err("over the total");
        assert!(
            matches!(e, InputError::TooLarge { line: 4, cap: 12 }),
            "{e:?}"
        );
        let e = read(b"ok\n\xff\n").expect_err("not utf-8");
        assert!(matches!(e, InputError::NotUtf8 { line: 2 }), "{e:?}");
        assert_eq!(e.to_string(), "line 2: not UTF-8 text");
        assert_eq!(size(MIB), "1 MiB");
        assert_eq!(size(1024 * MIB), "1024 MiB");
    }

    #[test]
    fn an_endless_line_is_read_only_up_to_the_cap() {
        // io::repeat never ends: only a cap stops it.
        let mut buf = Vec::new();
        let mut lines = Lines::new(io::BufReader::new(io::repeat(0)), SMALL);
        let e = lines.next_bytes(&mut buf).expect_err("endless");
        assert_eq!(e.line(), Some(1));
        assert_eq!(buf.len(), 5, "cap + 1 bytes read");
        let mut lines = Lines::new(io::BufReader::new(io::repeat(b'\n')), SMALL);
        let e = std::iter::from_fn(|| Some(lines.next_bytes(&mut buf)))
            .find_map(Result::err)
            .expect("endless newlines stop at the total cap");
        assert!(matches!(e, InputError::TooLarge { line: 13, .. }), "{e:?}");
    }
}
