//! `headroom explain`: the text people paste into bug reports — `vm_stat`,
//! optionally `memory_pressure` and `sysctl vm.swapusage` / `hw.memsize`
//! lines, in any order — read by label (never by column: line widths differ
//! between macOS builds) into the breakdown, the kernel-rule level and the
//! headroom level under the current config.

use crate::config::Config;
use crate::macos_vm::{self, SwapUsage, VmCounters};
use crate::model::{Bytes, KernelLevel, Level, Pressure, Snapshot};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Why the text could not be explained. One line; the caller exits 65.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExplainError {
    #[error("line {line_no}: cannot read '{text}': {why}")]
    Unreadable {
        line_no: usize,
        text: String,
        why: String,
    },
    #[error("no vm_stat output in the input (paste the full output of `vm_stat`)")]
    NoVmStat,
    #[error(
        "the vm_stat output has no {0} line (is it cut short? paste the full output of `vm_stat`)"
    )]
    Missing(String),
    #[error("no page size: the vm_stat header 'Mach Virtual Memory Statistics: (page size of N bytes)' is missing")]
    NoPageSize,
    #[error("--total-bytes must be a positive number of bytes, got {0}")]
    BadTotal(u64),
}

/// A counter `vm_stat` or `memory_pressure` prints, by label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Field {
    /// As printed: free − speculative.
    FreePrinted,
    Active,
    Inactive,
    Speculative,
    Throttled,
    Wired,
    Purgeable,
    External,
    Internal,
    Stored,
    Compressor,
    Compressions,
    Decompressions,
    Pageins,
    Pageouts,
    Swapins,
    Swapouts,
    /// Printed but not used.
    Other,
}

fn field(label: &str) -> Option<Field> {
    use Field::*;
    Some(match label {
        "Pages free" => FreePrinted,
        "Pages active" => Active,
        "Pages inactive" => Inactive,
        "Pages speculative" => Speculative,
        "Pages throttled" => Throttled,
        "Pages wired down" => Wired,
        "Pages purgeable" => Purgeable,
        "File-backed pages" => External,
        "Anonymous pages" => Internal,
        "Pages stored in compressor" => Stored,
        // vm_stat and memory_pressure name the same counter differently.
        "Pages occupied by compressor" | "Pages used by compressor" => Compressor,
        "Compressions" | "Pages compressed" => Compressions,
        "Decompressions" | "Pages decompressed" => Decompressions,
        "Pageins" => Pageins,
        "Pageouts" => Pageouts,
        "Swapins" => Swapins,
        "Swapouts" => Swapouts,
        "Translation faults"
        | "Pages copy-on-write"
        | "Pages zero filled"
        | "Pages reactivated"
        | "Pages purged" => Other,
        _ => return None,
    })
}

/// What the breakdown cannot do without, with the label to ask for.
const REQUIRED: &[(Field, &str)] = &[
    (Field::FreePrinted, "Pages free"),
    (Field::Active, "Pages active"),
    (Field::Inactive, "Pages inactive"),
    (Field::Speculative, "Pages speculative"),
    (Field::Wired, "Pages wired down"),
    (Field::Purgeable, "Pages purgeable"),
    (Field::External, "File-backed pages"),
    (Field::Internal, "Anonymous pages"),
    (Field::Compressor, "Pages occupied by compressor"),
];

/// memory_pressure's section headings ("Stats:", …), which carry no value.
const HEADINGS: &[&str] = &[
    "Stats",
    "Swap I/O",
    "Page Q counts",
    "Compressor Stats",
    "File I/O",
];

/// Everything read from the pasted text.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainInput {
    pub page_size: u64,
    pub counters: VmCounters,
    /// Total RAM and where it came from ("hw.memsize", "memory_pressure").
    pub total: Option<(Bytes, &'static str)>,
    pub swap: Option<SwapUsage>,
    /// A pasted `kern.memorystatus_vm_pressure_level` line.
    pub kernel_level_reported: Option<KernelLevel>,
    /// memory_pressure's "System-wide memory free percentage" (kern.memorystatus_level).
    pub memorystatus_level: Option<u64>,
    /// Pasted `iogpu.wired_limit_mb` / `iogpu.wired_lwm_mb` lines (MB).
    pub gpu_wired_limit_mb: Option<u64>,
    pub gpu_wired_lwm_mb: Option<u64>,
    /// Labels this version does not know (newer macOS adds lines): ignored.
    pub ignored: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    None,
    VmStat,
    MemoryPressure,
}

#[derive(Default)]
struct Reader {
    vm: HashMap<Field, u64>,
    mp: HashMap<Field, u64>,
    vm_page: Option<u64>,
    mp_page: Option<u64>,
    sysctl_page: Option<u64>,
    memsize: Option<u64>,
    mp_total: Option<u64>,
    swap: Option<SwapUsage>,
    kernel: Option<KernelLevel>,
    mem_level: Option<u64>,
    wired_limit_mb: Option<u64>,
    wired_lwm_mb: Option<u64>,
    ignored: Vec<String>,
}

/// Read the pasted text. Unknown labels are ignored; a line that is not
/// vm_stat, memory_pressure or sysctl output is an error naming it.
pub fn parse_input(text: &str) -> Result<ExplainInput, ExplainError> {
    let mut r = Reader::default();
    let mut section = Section::None;
    let mut bare_value_of: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let bad = |why: &str| ExplainError::Unreadable {
            line_no: i + 1,
            text: shorten(line),
            why: why.to_string(),
        };
        if line.is_empty() || line.starts_with("```") {
            continue;
        }
        if let Some(cmd) = command(line) {
            bare_value_of = cmd.bare_value_of;
            continue;
        }
        // `sysctl -n NAME` prints the value alone on the next line.
        if let Some(name) = bare_value_of.take() {
            r.sysctl(&name, line).map_err(|why| bad(&why))?;
            continue;
        }
        if let Some(rest) = line.strip_prefix("Mach Virtual Memory Statistics:") {
            let p = number_after(rest, "page size of")
                .filter(|p| p.is_power_of_two())
                .ok_or_else(|| bad("no page size in the vm_stat header"))?;
            // A second vm_stat run replaces the first.
            r.vm.clear();
            r.vm_page = Some(p);
            section = Section::VmStat;
            continue;
        }
        if let Some(rest) = line.strip_prefix("The system has ") {
            let total = leading_number(rest).ok_or_else(|| bad("no total in bytes"))?;
            r.mp_page = number_after(rest, "page size of").filter(|p| p.is_power_of_two());
            r.mp_total = Some(total);
            r.mp.clear();
            section = Section::MemoryPressure;
            continue;
        }
        if let Some(rest) = line.strip_prefix("System-wide memory free percentage:") {
            let v = rest.trim().trim_end_matches('%').trim();
            r.mem_level = Some(v.parse().map_err(|_| bad("not a percentage"))?);
            continue;
        }
        if let Some((name, value)) = sysctl_line(line) {
            r.sysctl(name, value).map_err(|why| bad(&why))?;
            continue;
        }
        let Some((label, value)) = line.split_once(':') else {
            return Err(bad(
                "not a line of vm_stat, memory_pressure or sysctl output",
            ));
        };
        let label = label.trim().trim_matches('"');
        if !is_label(label) {
            return Err(bad(
                "not a line of vm_stat, memory_pressure or sysctl output",
            ));
        }
        let value = value.trim();
        if value.is_empty() {
            if HEADINGS.contains(&label) {
                continue;
            }
            return Err(bad("no value after the label"));
        }
        let n = page_count(value).map_err(bad)?;
        match field(label) {
            Some(Field::Other) => {}
            Some(f) => {
                let map = if section == Section::MemoryPressure {
                    &mut r.mp
                } else {
                    &mut r.vm
                };
                map.insert(f, n);
            }
            None => r.ignored.push(label.to_string()),
        }
    }
    r.finish()
}

impl Reader {
    fn sysctl(&mut self, name: &str, value: &str) -> Result<(), String> {
        let int = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("'{name}' is not a whole number"))
        };
        match name {
            "hw.memsize" => {
                let v = int()?;
                if v == 0 {
                    return Err("'hw.memsize' is 0".into());
                }
                self.memsize = Some(v);
            }
            "hw.pagesize" => {
                let v = int()?;
                if !v.is_power_of_two() {
                    return Err(format!("'hw.pagesize' ({v}) is not a page size"));
                }
                self.sysctl_page = Some(v);
            }
            "vm.swapusage" => self.swap = Some(parse_swapusage(value)?),
            "kern.memorystatus_vm_pressure_level" => {
                let v = int()?;
                let k = i64::try_from(v).ok().and_then(KernelLevel::from_sysctl);
                self.kernel =
                    Some(k.ok_or_else(|| format!("unknown pressure level {v} (1, 2 or 4)"))?);
            }
            "kern.memorystatus_level" => self.mem_level = Some(int()?),
            // `sudo sysctl NAME=N` prints "NAME: old -> new": the new value counts.
            "iogpu.wired_limit_mb" | "iogpu.wired_lwm_mb" => {
                let v = value.rsplit("->").next().unwrap_or(value).trim();
                let v = v
                    .parse::<u64>()
                    .map_err(|_| format!("'{name}' is not a whole number of MB"))?;
                if name == "iogpu.wired_limit_mb" {
                    self.wired_limit_mb = Some(v);
                } else {
                    self.wired_lwm_mb = Some(v);
                }
            }
            other => self.ignored.push(other.to_string()),
        }
        Ok(())
    }

    fn finish(self) -> Result<ExplainInput, ExplainError> {
        // vm_stat's counters win; memory_pressure's fill gaps.
        let get = |f: Field| self.vm.get(&f).or_else(|| self.mp.get(&f)).copied();
        if self.vm.is_empty() && self.mp.is_empty() {
            return Err(ExplainError::NoVmStat);
        }
        let missing: Vec<String> = REQUIRED
            .iter()
            .filter(|(f, _)| get(*f).is_none())
            .map(|(_, l)| format!("'{l}'"))
            .collect();
        if !missing.is_empty() {
            return Err(ExplainError::Missing(missing.join(", ")));
        }
        let page_size = self
            .vm_page
            .or(self.mp_page)
            .or(self.sysctl_page)
            .ok_or(ExplainError::NoPageSize)?;
        let v = |f: Field| get(f).unwrap_or(0);
        let counters = VmCounters {
            // The kernel's free_count includes speculative pages; vm_stat
            // and memory_pressure print it without them.
            free: v(Field::FreePrinted).saturating_add(v(Field::Speculative)),
            active: v(Field::Active),
            inactive: v(Field::Inactive),
            speculative: v(Field::Speculative),
            throttled: v(Field::Throttled),
            wired: v(Field::Wired),
            purgeable: v(Field::Purgeable),
            external: v(Field::External),
            internal: v(Field::Internal),
            compressor: v(Field::Compressor),
            stored_in_compressor: v(Field::Stored),
            pageins: v(Field::Pageins),
            pageouts: v(Field::Pageouts),
            swapins: v(Field::Swapins),
            swapouts: v(Field::Swapouts),
            compressions: v(Field::Compressions),
            decompressions: v(Field::Decompressions),
        };
        let total = self
            .memsize
            .map(|b| (Bytes(b), "hw.memsize"))
            .or(self.mp_total.map(|b| (Bytes(b), "memory_pressure")));
        Ok(ExplainInput {
            page_size,
            counters,
            total,
            swap: self.swap,
            kernel_level_reported: self.kernel,
            memorystatus_level: self.mem_level,
            gpu_wired_limit_mb: self.wired_limit_mb,
            gpu_wired_lwm_mb: self.wired_lwm_mb,
            ignored: self.ignored,
        })
    }
}

/// `sysctl` output: "name: value" or "name = value", name like `vm.swapusage`.
fn sysctl_line(line: &str) -> Option<(&str, &str)> {
    let end = line.find([':', '=', ' '])?;
    let name = &line[..end];
    let is_name = name.contains('.')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if !is_name {
        return None;
    }
    let rest = line[end..].trim_start();
    let value = rest.strip_prefix([':', '='])?.trim();
    Some((name, value))
}

/// `vm.swapusage: total = 4096.00M  used = 2743.50M  free = 1352.50M  (encrypted)`.
pub fn parse_swapusage(value: &str) -> Result<SwapUsage, String> {
    let field = |key: &str| -> Result<Bytes, String> {
        let at = value
            .find(&format!("{key} ="))
            .ok_or_else(|| format!("vm.swapusage has no '{key} ='"))?;
        let v = value[at + key.len() + 2..]
            .split_whitespace()
            .next()
            .unwrap_or("");
        parse_sysctl_size(v).ok_or_else(|| format!("vm.swapusage '{key}' ('{v}') is not a size"))
    };
    Ok(SwapUsage {
        total: field("total")?,
        used: field("used")?,
        free: field("free")?,
        encrypted: value.contains("(encrypted)"),
    })
}

/// sysctl's sizes: "2743.50M" (binary units; sysctl prints M).
fn parse_sysctl_size(s: &str) -> Option<Bytes> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.parse().ok()?;
    let b = (v * mult as f64).round();
    (v.is_finite() && v >= 0.0 && b < u64::MAX as f64).then_some(Bytes(b as u64))
}

/// A count as vm_stat ("6987980.") or memory_pressure ("4229") prints it.
fn page_count(value: &str) -> Result<u64, &'static str> {
    let digits = value.strip_suffix('.').unwrap_or(value).trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a page count");
    }
    digits.parse().map_err(|_| "page count too large")
}

/// The digits right after `key` (skipping spaces), e.g. "page size of 16384".
fn number_after(s: &str, key: &str) -> Option<u64> {
    let at = s.find(key)? + key.len();
    leading_number(&s[at..])
}

fn leading_number(s: &str) -> Option<u64> {
    let s = s.trim_start();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// What vm_stat and memory_pressure labels are made of ("Pages wired down",
/// "File-backed pages", "Swap I/O").
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '/' | '_' | '(' | ')'))
}

/// A shell line that ran one of the tools ("$ vm_stat", "% sysctl vm.swapusage").
struct Command {
    /// For `sysctl -n NAME`: NAME, whose value is the next line.
    bare_value_of: Option<String>,
}

fn command(line: &str) -> Option<Command> {
    let l = line.trim_start_matches(['$', '%', '#', '>']).trim_start();
    let l = l.strip_prefix("sudo ").map_or(l, str::trim_start);
    let mut words = l.split_whitespace();
    let tool = words.next().unwrap_or("");
    let tool = tool.rsplit('/').next().unwrap_or(tool);
    // `sysctl NAME=N` sets a value (its output line says what it was).
    let forbidden: &[char] = if tool == "sysctl" {
        &['|', ';', '&', '<', '>', ':']
    } else {
        &['|', ';', '&', '<', '>', ':', '=']
    };
    if !matches!(tool, "vm_stat" | "memory_pressure" | "sysctl") || l.contains(forbidden) {
        return None;
    }
    let args: Vec<&str> = words.collect();
    let bare_value_of = match (tool, args.as_slice()) {
        ("sysctl", ["-n", name]) => Some(name.to_string()),
        _ => None,
    };
    Some(Command { bare_value_of })
}

fn shorten(line: &str) -> String {
    const MAX: usize = 80;
    crate::text::line_capped(line, MAX)
}

// ------------------------------------------------------------ the report

/// The explanation, also the `--json` form.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub page_size: u64,
    pub total_bytes: Option<Bytes>,
    /// "--total-bytes", "hw.memsize" or "memory_pressure".
    pub total_source: Option<&'static str>,
    pub app_bytes: Bytes,
    pub wired_bytes: Bytes,
    pub compressed_bytes: Bytes,
    pub cached_bytes: Bytes,
    /// The kernel's free_count: includes speculative pages.
    pub free_bytes: Bytes,
    /// (free − speculative) + file-backed + purgeable: needs no total.
    pub available_bytes: Bytes,
    /// Uncompressed data the compressor holds.
    pub stored_in_compressor_bytes: Bytes,
    /// ANC / total pages × 100; null without a total.
    pub free_percent: Option<f64>,
    /// ANC / AM, what the kernel's rule compares.
    pub anc_am_ratio: Option<f64>,
    /// The kernel's rule applied to these counters from a cold (normal) start.
    pub kernel_level: KernelLevel,
    /// The live level, when a `kern.memorystatus_vm_pressure_level` line was pasted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_level_reported: Option<KernelLevel>,
    /// headroom's level under the config; null without a total.
    pub level: Option<Level>,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_total_bytes: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_used_bytes: Option<Bytes>,
    /// Pasted `iogpu.wired_limit_mb` (0: the system default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_wired_limit_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_wired_lwm_mb: Option<u64>,
    /// What the wired limit leaves macOS (src/wired.rs); needs a total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_wired_level: Option<Level>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_wired: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_labels: Vec<String>,
}

/// Explain what was read. `total_override` (--total-bytes) beats any total in the text.
pub fn explain(input: &ExplainInput, total_override: Option<u64>, cfg: &Config) -> Explanation {
    let total = match total_override {
        Some(b) => Some((Bytes(b), "--total-bytes")),
        None => input.total,
    };
    let c = &input.counters;
    let ps = input.page_size;
    let mem = macos_vm::breakdown(c, ps, total.map(|t| t.0).unwrap_or_default());
    let rule = macos_vm::kernel_rule(KernelLevel::Normal, c);
    let (level, reasons) = match total {
        Some(_) => {
            let mut memory = mem.clone();
            memory.swap_total_bytes = input.swap.map(|s| s.total);
            memory.swap_used_bytes = input.swap.map(|s| s.used);
            let snapshot = Snapshot {
                memory,
                pressure: Pressure {
                    kernel_level: Some(input.kernel_level_reported.unwrap_or(rule)),
                    ..Default::default()
                },
                ..Default::default()
            };
            let c = crate::classify::classify_once(&snapshot, &cfg.thresholds);
            (
                Some(c.level),
                c.reasons.iter().map(|r| r.to_string()).collect(),
            )
        }
        None => (None, Vec::new()),
    };
    let wired = total.and_then(|(t, _)| {
        let memory = crate::model::SystemMemory {
            total_bytes: t,
            gpu_wired_limit_mb: input.gpu_wired_limit_mb,
            gpu_wired_lwm_mb: input.gpu_wired_lwm_mb,
            ..Default::default()
        };
        let lines = crate::classify::Lines::resolve(&cfg.thresholds, t);
        crate::wired::judge(&memory, &lines)
    });
    let bytes = |n: u64| Bytes(n.saturating_mul(ps));
    Explanation {
        page_size: ps,
        total_bytes: total.map(|t| t.0),
        total_source: total.map(|t| t.1),
        app_bytes: mem.app_bytes.unwrap_or_default(),
        wired_bytes: mem.wired_bytes.unwrap_or_default(),
        compressed_bytes: mem.compressed_bytes.unwrap_or_default(),
        cached_bytes: mem.cached_bytes.unwrap_or_default(),
        free_bytes: mem.free_bytes.unwrap_or_default(),
        available_bytes: match total {
            Some(_) => mem.available_bytes,
            None => bytes(c.available_pages()),
        },
        stored_in_compressor_bytes: bytes(c.stored_in_compressor),
        free_percent: total.and_then(|(t, _)| macos_vm::free_percent(c, ps, t)),
        anc_am_ratio: c.anc_am_ratio(),
        kernel_level: rule,
        kernel_level_reported: input.kernel_level_reported,
        level,
        reasons,
        swap_total_bytes: input.swap.map(|s| s.total),
        swap_used_bytes: input.swap.map(|s| s.used),
        gpu_wired_limit_mb: input.gpu_wired_limit_mb,
        gpu_wired_lwm_mb: input.gpu_wired_lwm_mb,
        gpu_wired_level: wired.as_ref().map(|v| v.level),
        gpu_wired: wired.map(|v| v.to_string()),
        ignored_labels: input.ignored.clone(),
    }
}

/// `headroom explain`: the text in, the report out (JSON or text).
pub fn run_explain(
    input: &str,
    total_bytes: Option<u64>,
    cfg: &Config,
    json: bool,
) -> Result<String, ExplainError> {
    if let Some(0) = total_bytes {
        return Err(ExplainError::BadTotal(0));
    }
    let parsed = parse_input(input)?;
    let e = explain(&parsed, total_bytes, cfg);
    if json {
        // Serialising plain numbers and strings cannot fail.
        Ok(serde_json::to_string_pretty(&e).unwrap_or_default() + "\n")
    } else {
        Ok(render(&e))
    }
}

fn render(e: &Explanation) -> String {
    let mut o = String::new();
    let total = match (e.total_bytes, e.total_source) {
        (Some(t), Some(src)) => format!("total {t} from {src}"),
        _ => "total unknown".to_string(),
    };
    let _ = writeln!(o, "Memory (page size {} bytes, {total})", e.page_size);
    let row = |o: &mut String, name: &str, v: String, note: &str| {
        let _ = writeln!(o, "  {name:<12} {v:>10}   {note}");
    };
    row(
        &mut o,
        "App",
        e.app_bytes.to_string(),
        "anonymous − purgeable",
    );
    row(
        &mut o,
        "Wired",
        e.wired_bytes.to_string(),
        "cannot be compressed or swapped",
    );
    let held = format!("holding {} of data", e.stored_in_compressor_bytes);
    row(&mut o, "Compressed", e.compressed_bytes.to_string(), &held);
    row(
        &mut o,
        "Cached",
        e.cached_bytes.to_string(),
        "file-backed + purgeable",
    );
    row(
        &mut o,
        "Free",
        e.free_bytes.to_string(),
        "includes speculative",
    );
    row(
        &mut o,
        "Available",
        e.available_bytes.to_string(),
        "(free − speculative) + file-backed + purgeable",
    );
    if let Some(p) = e.free_percent {
        row(
            &mut o,
            "Free share",
            format!("{p:.1} %"),
            "(active + inactive + free) / total",
        );
    }
    if let (Some(t), Some(u)) = (e.swap_total_bytes, e.swap_used_bytes) {
        row(&mut o, "Swap used", u.to_string(), &format!("of {t}"));
    }
    let ratio = e
        .anc_am_ratio
        .map(|r| format!("ANC/AM {r:.3}"))
        .unwrap_or_else(|| "no counters".into());
    let _ = writeln!(
        o,
        "Kernel rule: {} ({ratio}; warn below {}, normal above {}, critical below {}, warn again above {})",
        e.kernel_level.as_str(),
        macos_vm::rule::WARN_BELOW,
        macos_vm::rule::NORMAL_ABOVE,
        macos_vm::rule::CRITICAL_BELOW,
        macos_vm::rule::WARN_ABOVE,
    );
    if let Some(k) = e.kernel_level_reported {
        let _ = writeln!(o, "Kernel reported: {}", k.as_str());
    }
    match e.level {
        Some(l) => {
            let _ = writeln!(o, "Level: {l}");
            for r in &e.reasons {
                let _ = writeln!(o, "  - {r}");
            }
        }
        None => {
            let _ = writeln!(o, "Level: unknown without total RAM");
        }
    }
    match (&e.gpu_wired, e.gpu_wired_level, e.gpu_wired_limit_mb) {
        (Some(w), Some(l), _) => {
            let _ = writeln!(o, "GPU wired ({l}): {w}");
        }
        (_, _, Some(mb)) => {
            let _ = writeln!(
                o,
                "GPU wired: iogpu.wired_limit_mb={mb}; unjudged without total RAM"
            );
        }
        _ => {}
    }
    if !e.ignored_labels.is_empty() {
        let _ = writeln!(o, "Ignored: {}", e.ignored_labels.join(", "));
    }
    o
}
