//! Flags read off an MLX job's command line: one concrete remedy from the
//! guide ("retry with --batch-size 2 --grad-checkpoint"), a short, safe
//! rendering of the flags that matter, the program's short name, and the
//! `mlx_lm.lora` flags `headroom advise --cmd` reads (`TrainFlags`).
//!
//! Command lines arrive as arguments joined by single spaces (see
//! `sample::linux::parse_cmdline`), so an argument that itself contains a
//! space is seen as two words; the rules only ever read flags and numbers,
//! and a word they cannot read is ignored rather than guessed at.

use regex::Regex;
use std::sync::OnceLock;

/// mlx_lm.lora's defaults for the flags the rules read (mlx_lm/lora.py
/// `CONFIG_DEFAULTS`).
pub const LORA_BATCH_SIZE: u64 = 4;
pub const LORA_MAX_SEQ_LENGTH: u64 = 2048;
pub const LORA_NUM_LAYERS: i64 = 16;
/// What to suggest when a generation/serving job sets no KV-cache bound.
const SUGGESTED_MAX_KV_SIZE: u64 = 4096;
/// `key_flags` output length, in chars.
const KEY_FLAGS_MAX_CHARS: usize = 120;
/// A model name quoted in a remedy, in chars.
const MODEL_NAME_MAX_CHARS: usize = 60;

/// The flags `key_flags` shows, in the order they appear on the command line.
const KEY_FLAGS: &[&str] = &[
    "--model",
    "--batch-size",
    "--max-seq-length",
    "--grad-checkpoint",
    "--max-kv-size",
    "--num-layers",
];
/// Of those, the ones that take no value.
const SWITCHES: &[&str] = &["--grad-checkpoint"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    FineTune,
    Generate,
    Other,
}

/// One concrete remedy from the guide for the process with this command
/// line, or `None` when the command line says nothing the rules can use.
pub fn remedy(cmdline: &str) -> Option<String> {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let four_bit = model(&words).filter(|m| !is_quantized(m)).map(four_bit);
    let flags = match job(&words) {
        Job::FineTune => fine_tune(&words),
        Job::Generate => generate(&words),
        Job::Other => Vec::new(),
    };
    match (flags.is_empty(), four_bit) {
        (false, Some(m)) => Some(format!("retry with {}, or {m}", flags.join(" "))),
        (false, None) => Some(format!("retry with {}", flags.join(" "))),
        (true, Some(m)) => Some(format!("retry with {m}")),
        (true, None) => None,
    }
}

/// The process's short name (script or module, e.g. `mlx_lm.lora`) and its
/// key flags, e.g. `mlx_lm.lora --model m --batch-size 4 --grad-checkpoint`;
/// control characters replaced, at most ~120 chars.
pub fn key_flags(cmdline: &str) -> String {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    key_flags_of(&short_name(&words), cmdline)
}

/// `key_flags` with the program's name given (a running process's program,
/// read off its argv: a path with spaces does not split it).
pub fn key_flags_of(program: &str, cmdline: &str) -> String {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let mut out = program.to_string();
    let mut i = 0;
    while i < words.len() {
        let (name, inline) = split_flag(words[i]);
        i += 1;
        let Some(&key) = KEY_FLAGS.iter().find(|k| **k == name) else {
            continue;
        };
        out.push(' ');
        out.push_str(key);
        if SWITCHES.contains(&key) {
            continue;
        }
        let value = match inline {
            Some(v) => Some(v),
            None if i < words.len() && !words[i].starts_with("--") => {
                i += 1;
                Some(words[i - 1])
            }
            None => None,
        };
        if let Some(v) = value {
            out.push(' ');
            out.push_str(v);
        }
    }
    crate::text::line_capped(&out, KEY_FLAGS_MAX_CHARS)
}

/// The short name people know a process by (`mlx_lm.lora`, `train.py`),
/// read off its command line; `fallback` (the kernel's name for it) when
/// the command line is empty.
pub fn program_name(cmdline: &str, fallback: &str) -> String {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let name = short_name(&words);
    let name = if name.is_empty() { fallback } else { &name };
    crate::text::line_capped(name, KEY_FLAGS_MAX_CHARS)
}

/// How a notice names an MLX process: its program (`mlx_lm.lora`,
/// `train.py`) read off argv and checked against the kernel, never split
/// from the joined command line ("/Users/John Smith/…" is not "John").
pub fn display_name(p: &crate::model::MlxProcess) -> String {
    if p.program.is_empty() || p.program == "mlx_lm" {
        // Old traces carry no program; `mlx_lm lora` shows its subcommand.
        return program_name(&p.cmdline, &p.name);
    }
    printable(&p.program)
}

/// A process name made safe and short for a notice or a log reason:
/// control characters and bidi overrides replaced, at most ~120 chars.
pub fn printable(name: &str) -> String {
    crate::text::line_capped(name, KEY_FLAGS_MAX_CHARS)
}

/// The flags of a planned or running `mlx_lm.lora` that the guide's
/// checklist reads, with mlx_lm's defaults for absent flags and `None` for
/// a flag whose value cannot be read. `headroom advise --cmd` and the
/// daemon's remedy both read command lines through this.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainFlags {
    pub model: Option<String>,
    pub quantized: bool,
    pub batch_size: Option<u64>,
    pub max_seq_length: Option<u64>,
    /// `--num-layers` (older mlx_lm: `--lora-layers`); -1 trains every layer.
    pub num_layers: Option<i64>,
    pub grad_checkpoint: bool,
}

impl TrainFlags {
    pub fn from_cmdline(cmdline: &str) -> TrainFlags {
        let words: Vec<&str> = cmdline.split_whitespace().collect();
        TrainFlags::from_words(&words)
    }

    fn from_words(words: &[&str]) -> TrainFlags {
        let layers_flag = if has(words, "--lora-layers") && !has(words, "--num-layers") {
            "--lora-layers"
        } else {
            "--num-layers"
        };
        let model = model(words);
        TrainFlags {
            quantized: model.is_some_and(is_quantized),
            model: model.map(str::to_string),
            batch_size: number(words, "--batch-size", LORA_BATCH_SIZE),
            max_seq_length: number(words, "--max-seq-length", LORA_MAX_SEQ_LENGTH),
            num_layers: number(words, layers_flag, LORA_NUM_LAYERS),
            grad_checkpoint: has(words, "--grad-checkpoint"),
        }
    }
}

/// The weight bits a model name states ("…-4bit", "…-int8"), if any.
pub fn bits_in_name(name: &str) -> Option<u32> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?i)(?:([0-9]+)[-_]?bit|int([0-9]+)|(?:^|[^a-z])q([0-9]))").ok()
    });
    let caps = re.as_ref()?.captures(name)?;
    let n = caps.get(1).or(caps.get(2)).or(caps.get(3))?;
    n.as_str().parse().ok()
}

/// The parameter count a model name states ("Mistral-7B-v0.1" → 7e9).
pub fn size_in_name(name: &str) -> Option<f64> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE
        .get_or_init(|| Regex::new(r"(?i)(?:^|[^0-9.a-z])([0-9]+(?:\.[0-9]+)?)b(?:[^a-z]|$)").ok());
    let caps = re.as_ref()?.captures(name)?;
    let n: f64 = caps.get(1)?.as_str().parse().ok()?;
    (n > 0.0).then_some(n * 1e9)
}

fn fine_tune(words: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let flags = TrainFlags::from_words(words);
    let batch = flags.batch_size;
    if let Some(b) = batch.filter(|b| *b > 1) {
        out.push(format!("--batch-size {}", b / 2));
    }
    let checkpointing = flags.grad_checkpoint;
    if !checkpointing {
        out.push("--grad-checkpoint".to_string());
    }
    if batch == Some(1) && checkpointing {
        // Already at the guide's smallest batch, with checkpointing: what is
        // left is shorter sequences or fewer trained layers.
        let seq = flags.max_seq_length;
        let layers = flags.num_layers;
        let mut alternatives = Vec::new();
        if let Some(s) = seq.filter(|s| *s > 1) {
            alternatives.push(format!("--max-seq-length {}", s / 2));
        }
        match layers {
            // -1 trains every layer: the default is already fewer.
            Some(-1) => alternatives.push(format!("--num-layers {LORA_NUM_LAYERS}")),
            Some(n) if n > 1 => alternatives.push(format!("--num-layers {}", n / 2)),
            _ => {}
        }
        if !alternatives.is_empty() {
            out.push(alternatives.join(" or "));
        }
    }
    out
}

fn generate(words: &[&str]) -> Vec<String> {
    if !has(words, "--max-kv-size") {
        return vec![format!("--max-kv-size {SUGGESTED_MAX_KV_SIZE}")];
    }
    match number(words, "--max-kv-size", SUGGESTED_MAX_KV_SIZE) {
        Some(n) if n > 1 => vec![format!("--max-kv-size {}", n / 2)],
        _ => Vec::new(),
    }
}

/// What kind of job this is: from the script/module name (`mlx_lm.lora`,
/// `generate.py`), an `mlx_lm` subcommand (`mlx_lm lora`), or `--train`.
fn job(words: &[&str]) -> Job {
    const SERVE: &[&str] = &["generate", "server", "chat", "serve"];
    // "lora" or "x.lora", the way mlx_lm and mlx_vlm name their entry points.
    let is = |stem: &str, names: &[&str]| {
        names
            .iter()
            .any(|n| stem == *n || stem.strip_suffix(n).is_some_and(|s| s.ends_with('.')))
    };
    // The program is named before the first long option; later words are values.
    let program_end = words
        .iter()
        .position(|w| w.starts_with("--"))
        .unwrap_or(words.len());
    let mut found = Job::Other;
    for (i, w) in words.iter().enumerate() {
        if *w == "--train" {
            return Job::FineTune;
        }
        if i >= program_end {
            continue;
        }
        let stem = stem(w);
        let sub = if stem == "mlx_lm" {
            words
                .get(i + 1)
                .copied()
                .filter(|s| !s.starts_with('-'))
                .unwrap_or("")
        } else {
            ""
        };
        if is(stem, &["lora"]) || sub == "lora" {
            return Job::FineTune;
        }
        if is(stem, SERVE) || SERVE.contains(&sub) {
            found = Job::Generate;
        }
    }
    found
}

/// The basename of a path, without a `.py` suffix.
fn stem(word: &str) -> &str {
    let base = word.rsplit('/').next().unwrap_or(word);
    base.strip_suffix(".py").unwrap_or(base)
}

/// `--flag=value` → ("--flag", Some("value")); `--flag` → ("--flag", None).
/// Underscores in the name count as dashes (`--batch_size`).
fn split_flag(word: &str) -> (String, Option<&str>) {
    if !word.starts_with("--") {
        return (String::new(), None);
    }
    let (name, value) = match word.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (word, None),
    };
    (name.replace('_', "-"), value)
}

fn has(words: &[&str], flag: &str) -> bool {
    words.iter().any(|w| split_flag(w).0 == flag)
}

/// The value of the last `flag` (argparse: the last one wins), in either
/// `--flag value` or `--flag=value` form.
fn value<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    let mut found = None;
    for (i, w) in words.iter().enumerate() {
        let (name, inline) = split_flag(w);
        if name != flag {
            continue;
        }
        found = match inline {
            Some(v) => Some(v),
            None => words.get(i + 1).copied().filter(|v| !v.starts_with("--")),
        };
    }
    found
}

/// The number given for `flag`, `default` when the flag is absent, `None`
/// when it is present but unreadable.
fn number<T: std::str::FromStr>(words: &[&str], flag: &str, default: T) -> Option<T> {
    if !has(words, flag) {
        return Some(default);
    }
    value(words, flag).and_then(|v| v.parse().ok())
}

fn model<'a>(words: &[&'a str]) -> Option<&'a str> {
    value(words, "--model").filter(|m| !m.is_empty())
}

/// Whether a model path or name says it is quantized ("4bit", "Q4_K_M",
/// "int8", "mxfp4", "AWQ", …).
fn is_quantized(model: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?i)[0-9][-_]?bit|(^|[^a-z])q[0-9]|int[0-9]|fp[48]\b|mxfp|nvfp|awq|gptq|dwq|bnb|quant").ok()
    });
    re.as_ref().is_some_and(|re| re.is_match(model))
}

/// "a 4-bit model (e.g. Mistral-7B-v0.1-4bit)" for `mistralai/Mistral-7B-v0.1/`,
/// printable and short.
fn four_bit(model: &str) -> String {
    let base = model.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if base.is_empty() {
        return "a 4-bit model".to_string();
    }
    format!(
        "a 4-bit model (e.g. {}-4bit)",
        crate::text::line_capped(base, MODEL_NAME_MAX_CHARS)
    )
}

fn short_name(words: &[&str]) -> String {
    let mut i = 0;
    let first = words.first().map_or("", |w| stem(w));
    if first.starts_with("python") {
        i = 1;
        while i < words.len() {
            match words[i] {
                "-m" => return with_subcommand(words, i + 1),
                "-c" => return "python -c".to_string(),
                // Interpreter options that take a value.
                "-W" | "-X" | "-Q" => i += 2,
                w if w.starts_with('-') => i += 1,
                _ => break,
            }
        }
    }
    if i >= words.len() {
        return first.to_string();
    }
    with_subcommand(words, i)
}

/// The program at `words[i]`, plus its subcommand for `mlx_lm lora` style.
fn with_subcommand(words: &[&str], i: usize) -> String {
    let Some(w) = words.get(i) else {
        return String::new();
    };
    let name = stem(w);
    match words.get(i + 1) {
        Some(sub) if name == "mlx_lm" && !sub.starts_with('-') => format!("{name} {sub}"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedies() {
        // Command lines as mlx-lm's own docs write them (mlx_lm/LORA.md,
        // mlx_lm/SERVER.md, README), plus the forms /proc shows for them.
        let cases: &[(&str, Option<&str>)] = &[
            // The guide's example (DESIGN.md "Actions"), no --model: no 4-bit advice.
            ("mlx_lm.lora --train --data data --batch-size 4 --max-seq-length 2048", Some("retry with --batch-size 2 --grad-checkpoint")),
            ("mlx_lm.lora --train --batch-size=4 --max-seq-length=2048", Some("retry with --batch-size 2 --grad-checkpoint")),
            // Defaults: batch 4.
            ("/venv/bin/python3.11 -m mlx_lm.lora --train", Some("retry with --batch-size 2 --grad-checkpoint")),
            ("python -m mlx_lm lora --data d", Some("retry with --batch-size 2 --grad-checkpoint")),
            ("/opt/bin/mlx_lm lora --batch-size 8 --grad-checkpoint", Some("retry with --batch-size 4")),
            ("python my_trainer.py --train --batch_size 2", Some("retry with --batch-size 1 --grad-checkpoint")),
            ("mlx_lm.lora --batch-size 1", Some("retry with --grad-checkpoint")),
            // Already at batch 1 with checkpointing: shorter sequences or fewer layers.
            ("mlx_lm.lora --train --batch-size 1 --grad-checkpoint", Some("retry with --max-seq-length 1024 or --num-layers 8")),
            (
                "mlx_lm.lora --train --batch-size 1 --grad-checkpoint --max-seq-length 512 --num-layers 4",
                Some("retry with --max-seq-length 256 or --num-layers 2"),
            ),
            ("mlx_lm.lora --batch-size=1 --grad-checkpoint --num-layers -1", Some("retry with --max-seq-length 1024 or --num-layers 16")),
            ("mlx_lm.lora --batch-size 1 --grad-checkpoint --max-seq-length 1 --num-layers 1", None),
            // Unquantized model: add the 4-bit alternative.
            (
                "mlx_lm.lora --model mistralai/Mistral-7B-v0.1 --train --batch-size 4",
                Some("retry with --batch-size 2 --grad-checkpoint, or a 4-bit model (e.g. Mistral-7B-v0.1-4bit)"),
            ),
            ("mlx_lm.lora --model=/Users/me/models/Llama-3-8B/ --train", Some("retry with --batch-size 2 --grad-checkpoint, or a 4-bit model (e.g. Llama-3-8B-4bit)")),
            ("mlx_lm.lora --model mlx-community/Mistral-7B-Instruct-v0.3-4bit --train", Some("retry with --batch-size 2 --grad-checkpoint")),
            ("mlx_lm.lora --model mlx-community/Qwen2.5-7B-Instruct-8bit --train", Some("retry with --batch-size 2 --grad-checkpoint")),
            // Generation and serving: bound the KV cache.
            ("mlx_lm.generate --model mlx-community/Llama-3.2-3B-Instruct-4bit --prompt hi", Some("retry with --max-kv-size 4096")),
            ("mlx_lm.generate --model m-4bit --max-kv-size 8192", Some("retry with --max-kv-size 4096")),
            ("python -m mlx_lm generate --model m-q4 --max-kv-size=1024", Some("retry with --max-kv-size 512")),
            ("mlx_lm.server --model Qwen/Qwen2.5-0.5B-Instruct --port 8080", Some("retry with --max-kv-size 4096, or a 4-bit model (e.g. Qwen2.5-0.5B-Instruct-4bit)")),
            ("mlx_lm.chat --model m-int4", Some("retry with --max-kv-size 4096")),
            ("python generate.py --model x-3bit", Some("retry with --max-kv-size 4096")),
            // Anything else: only the 4-bit advice, when there is a model.
            ("python train_my_net.py --model meta-llama/Llama-3.2-1B", Some("retry with a 4-bit model (e.g. Llama-3.2-1B-4bit)")),
            ("python bench.py --model m-4bit", None),
            ("python -c import mlx.core", None),
            ("", None),
            // Unreadable values are ignored, not guessed.
            ("mlx_lm.lora --batch-size lots --grad-checkpoint", None),
            ("mlx_lm.generate --max-kv-size big --model m-4bit", None),
            ("mlx_lm.lora --batch-size", Some("retry with --grad-checkpoint")),
        ];
        for (cmd, want) in cases {
            assert_eq!(remedy(cmd).as_deref(), *want, "remedy({cmd:?})");
        }
    }

    #[test]
    fn sizes_and_bits_in_model_names() {
        let cases: &[(&str, Option<f64>, Option<u32>)] = &[
            ("mistralai/Mistral-7B-v0.1", Some(7e9), None),
            (
                "mlx-community/Mistral-7B-Instruct-v0.3-4bit",
                Some(7e9),
                Some(4),
            ),
            ("Qwen2.5-0.5B-Instruct-8bit", Some(0.5e9), Some(8)),
            ("meta-llama/Llama-3.2-1B", Some(1e9), None),
            ("llama-13b-int8", Some(13e9), Some(8)),
            ("llama-Q4_K_M", None, Some(4)),
            ("gpt2", None, None),
        ];
        for (name, size, bits) in cases {
            assert_eq!(size_in_name(name), *size, "{name}");
            assert_eq!(bits_in_name(name), *bits, "{name}");
        }
    }

    #[test]
    fn train_flags_for_advise_and_remedy() {
        let f = TrainFlags::from_cmdline(
            "mlx_lm.lora --model m-4bit --train --batch-size 2 --lora-layers 8 --grad-checkpoint",
        );
        assert_eq!(f.model.as_deref(), Some("m-4bit"));
        assert!(f.quantized && f.grad_checkpoint);
        assert_eq!(
            (f.batch_size, f.max_seq_length, f.num_layers),
            (Some(2), Some(2048), Some(8))
        );
        let f = TrainFlags::from_cmdline("mlx_lm.lora --batch-size lots");
        assert_eq!(f.batch_size, None);
    }

    #[test]
    fn quantized_names() {
        for m in [
            "x-4bit",
            "X-4-BIT",
            "llama-Q4_K_M",
            "m-int8",
            "m-mxfp4",
            "m-3bit",
            "m-6bit",
            "TheBloke/x-AWQ",
            "x-GPTQ",
            "m-DWQ",
            "m_4_bit",
        ] {
            assert!(is_quantized(m), "{m} is quantized");
        }
        for m in [
            "mistralai/Mistral-7B-v0.1",
            "Qwen/Qwen2.5-7B",
            "m-bf16",
            "m-fp16",
            "/models/llama-3-8b",
            "gemma-2-9b-it",
        ] {
            assert!(!is_quantized(m), "{m} is not quantized");
        }
    }

    #[test]
    fn key_flag_text() {
        let cases: &[(&str, &str)] = &[
            (
                "/venv/bin/python3 -m mlx_lm.lora --model mistralai/Mistral-7B-v0.1 --train --data d --batch-size 4 --max-seq-length 2048",
                "mlx_lm.lora --model mistralai/Mistral-7B-v0.1 --batch-size 4 --max-seq-length 2048",
            ),
            ("python -u -W ignore train.py --grad-checkpoint --num-layers=8 --iters 100", "train --grad-checkpoint --num-layers 8"),
            ("/usr/local/bin/mlx_lm.generate --model=m --max-kv-size 4096 --prompt hello", "mlx_lm.generate --model m --max-kv-size 4096"),
            ("python -m mlx_lm server --model m --port 1", "mlx_lm server --model m"),
            ("mlx_lm.lora --model --batch-size 2", "mlx_lm.lora --model --batch-size 2"),
            ("python", "python"),
            ("", ""),
        ];
        for (cmd, want) in cases {
            assert_eq!(key_flags(cmd), *want, "key_flags({cmd:?})");
        }
    }

    #[test]
    fn hostile_command_lines_do_not_panic_and_stay_printable() {
        let long = "ü".repeat(5000);
        let cases = [
            format!("python -m mlx_lm.lora --model /tmp/a b)/{long} --batch-size 4"),
            "mlx_lm.lora --model x\u{1b}[31mred\u{7} --batch-size=\n8".to_string(),
            "mlx_lm.generate --model=/p/(weird) name)/ --max-kv-size=99999999999999999999999"
                .to_string(),
            "--model".to_string(),
            "--model=".to_string(),
            "mlx_lm.lora --model / --train".to_string(),
            "mlx_lm --batch-size 4 lora".to_string(),
            "mlx_lm --batch-size=".to_string(),
            format!("{long} --model {long}-bf16 --max-kv-size 10"),
            "\u{0}\u{0} \u{202e}evil --model \u{0}".to_string(),
        ];
        for cmd in &cases {
            let k = key_flags(cmd);
            assert!(k.chars().count() <= KEY_FLAGS_MAX_CHARS, "{k}");
            assert!(!k.chars().any(char::is_control), "{k:?}");
            if let Some(r) = remedy(cmd) {
                assert!(!r.chars().any(char::is_control), "{r:?}");
                assert!(r.chars().count() < 200, "{r}");
            }
        }
        assert_eq!(
            remedy("mlx_lm.lora --model / --train").as_deref(),
            Some("retry with --batch-size 2 --grad-checkpoint, or a 4-bit model")
        );
        assert!(key_flags("x --model \u{202e}gnp.exe").contains("?gnp.exe"));
        // Newlines separate words like spaces do.
        assert_eq!(
            remedy("mlx_lm.lora --batch-size\n8 --grad-checkpoint").as_deref(),
            Some("retry with --batch-size 4")
        );
    }
}
