//! `headroom top`: a full-screen live view refreshed every second — level,
//! memory, swap, pressure and the MLX process table with time to red —
//! drawn in place on the alternate screen (no flicker); `q` quits.

use crate::classify::{secs_to_red, Classification, Classifier};
use crate::config::Config;
use crate::model::{Bytes, Level, MlxProcess, Snapshot};
use crate::Error;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Color, Print, ResetColor, SetAttribute, SetForegroundColor};
use crossterm::terminal::{self, BeginSynchronizedUpdate, ClearType, EndSynchronizedUpdate};
use crossterm::{cursor, execute, queue};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the view samples and redraws.
pub const REFRESH: Duration = Duration::from_secs(1);

/// A piece of a screen row, optionally coloured (and then bold).
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub text: String,
    pub color: Option<Color>,
}

fn plain(text: impl Into<String>) -> Span {
    Span {
        text: text.into(),
        color: None,
    }
}

pub type Row = Vec<Span>;

/// The text of a row, without colours (for tests).
pub fn row_text(row: &Row) -> String {
    row.iter().map(|s| s.text.as_str()).collect()
}

pub fn level_color(l: Level) -> Color {
    match l {
        Level::Green => Color::Green,
        Level::Yellow => Color::Yellow,
        Level::Red => Color::Red,
    }
}

fn rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec == 0.0 {
        return "0".into();
    }
    let sign = if bytes_per_sec < 0.0 { "-" } else { "+" };
    format!("{sign}{}/s", Bytes(bytes_per_sec.abs() as u64))
}

fn fmt_secs(s: f64) -> String {
    if s <= 0.0 {
        "now".into()
    } else if s < 120.0 {
        format!("~{s:.0} s")
    } else if s < 7200.0 {
        format!("~{:.0} min", s / 60.0)
    } else {
        "> 2 h".into()
    }
}

/// The whole screen for one sample, as rows of spans (pure; tested).
pub fn frame(snap: &Snapshot, c: &Classification) -> Vec<Row> {
    let m = &snap.memory;
    let lines = c.lines;
    let mut rows: Vec<Row> = Vec::new();
    rows.push(vec![
        plain("headroom top  level "),
        Span {
            text: format!(" {} ", c.level.as_str().to_uppercase()),
            color: Some(level_color(c.level)),
        },
        plain(format!("   refresh {} s, q quits", REFRESH.as_secs_f64())),
    ]);
    rows.push(vec![plain("")]);
    rows.push(vec![
        plain("available   "),
        Span {
            text: format!("{}", m.available_bytes),
            color: Some(level_color(c.level)),
        },
        plain(format!(
            " of {}   (yellow below {}, red below {})",
            m.total_bytes, lines.yellow, lines.red
        )),
    ]);
    let parts: Vec<String> = m.parts().iter().map(|(k, b)| format!("{k} {b}")).collect();
    if !parts.is_empty() {
        rows.push(vec![plain(format!("memory      {}", parts.join("   ")))]);
    }
    let swap_rate = snap
        .pressure
        .swapout_bytes_per_sec
        .map(|r| format!(", swap-out {}/s", Bytes(r.max(0.0) as u64)))
        .unwrap_or_default();
    match (m.swap_total_bytes, m.swap_used_bytes) {
        (Some(t), Some(u)) => rows.push(vec![plain(format!(
            "swap        {u} used of {t}{swap_rate}"
        ))]),
        _ if !swap_rate.is_empty() => rows.push(vec![plain(format!(
            "swap        {}",
            swap_rate.trim_start_matches(", ")
        ))]),
        _ => {}
    }
    let mut pressure = Vec::new();
    if let Some(k) = snap.pressure.kernel_level {
        pressure.push(format!("kernel {}", k.as_str()));
    }
    if let (Some(s), Some(f)) = (snap.pressure.psi_some_avg10, snap.pressure.psi_full_avg10) {
        pressure.push(format!("PSI some {s:.2}%  full {f:.2}% (avg10)"));
    }
    if !pressure.is_empty() {
        rows.push(vec![plain(format!("pressure    {}", pressure.join("   ")))]);
    }
    if let Some(w) = crate::wired::judge(m, &lines) {
        rows.push(match w.warning() {
            Some(warn) => vec![
                plain("GPU wired   "),
                Span {
                    text: crate::text::line(&warn),
                    color: Some(level_color(w.level)),
                },
            ],
            None => vec![plain(format!("GPU wired   {}", w.figures()))],
        });
    }
    let why: Vec<String> = c.reasons.iter().map(|r| r.to_string()).collect();
    rows.push(vec![plain(format!(
        "reasons     {}",
        if why.is_empty() {
            "none".to_string()
        } else {
            crate::text::line(&why.join("; "))
        }
    ))]);
    rows.push(vec![plain("")]);
    rows.push(vec![plain(format!(
        "MLX processes: {}",
        snap.mlx_processes.len()
    ))]);
    if !snap.mlx_processes.is_empty() {
        rows.push(vec![Span {
            text: format!(
                "{:>7}  {:<18} {:>10} {:>11} {:>10} {:>8}  COMMAND",
                "PID", "NAME", "FOOTPRINT", "GROWTH", "PEAK", "RED IN"
            ),
            color: Some(Color::Cyan),
        }]);
        let mut procs: Vec<&MlxProcess> = snap.mlx_processes.iter().collect();
        procs.sort_by(|a, b| {
            b.footprint_bytes
                .cmp(&a.footprint_bytes)
                .then(a.pid.cmp(&b.pid))
        });
        for p in procs {
            let name = crate::text::line(&crate::cmdline::display_name(p));
            let red_in = secs_to_red(m.available_bytes, lines.red, p.growth_bytes_per_sec)
                .map(fmt_secs)
                .unwrap_or_else(|| "-".into());
            let row = format!(
                "{:>7}  {:<18} {:>10} {:>11} {:>10} {:>8}  {}",
                p.pid.0,
                name.chars().take(18).collect::<String>(),
                p.footprint_bytes.to_string(),
                rate(p.growth_bytes_per_sec),
                p.peak_bytes.to_string(),
                red_in,
                crate::text::line(&p.cmdline)
            );
            rows.push(vec![plain(row)]);
        }
    }
    rows
}

/// Write the frame over the previous one: each row is rewritten and cleared
/// to its end, then everything below; the screen is never blanked first.
fn draw(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    let (w, h) = terminal::size().unwrap_or((80, 24));
    let width = usize::from(w).saturating_sub(1);
    queue!(out, BeginSynchronizedUpdate)?;
    for (i, row) in rows.iter().take(usize::from(h)).enumerate() {
        queue!(out, cursor::MoveTo(0, i as u16))?;
        let mut left = width;
        for span in row {
            if left == 0 {
                break;
            }
            let text: String = span.text.chars().take(left).collect();
            left -= text.chars().count();
            match span.color {
                Some(c) => queue!(
                    out,
                    SetForegroundColor(c),
                    SetAttribute(Attribute::Bold),
                    Print(text),
                    SetAttribute(Attribute::Reset),
                    ResetColor
                )?,
                None => queue!(out, Print(text))?,
            }
        }
        queue!(out, terminal::Clear(ClearType::UntilNewLine))?;
    }
    if rows.len() < usize::from(h) {
        queue!(
            out,
            cursor::MoveTo(0, rows.len() as u16),
            terminal::Clear(ClearType::FromCursorDown)
        )?;
    }
    queue!(out, EndSynchronizedUpdate)?;
    out.flush()
}

/// Raw mode and the alternate screen for as long as it lives; the terminal
/// is restored when it drops (also on an error or a panic).
struct Screen;

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let screen = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// `top` draws on a terminal only; `Err` says why not.
pub fn require_terminal() -> Result<(), String> {
    if std::io::stdout().is_terminal() {
        Ok(())
    } else {
        Err("top needs a terminal: standard output is not a TTY (use 'headroom status --json' or 'headroom record' instead)".into())
    }
}

fn quits(ev: &Event) -> bool {
    let Event::Key(k) = ev else {
        return false;
    };
    k.kind == KeyEventKind::Press
        && (matches!(k.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc)
            || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
}

/// Run the view until `q`, Esc or Ctrl-C.
pub fn run(cfg: &Config) -> Result<(), Error> {
    let (mut sampler, _) = crate::sample::open(cfg, Instant::now())?;
    let io = |e: std::io::Error| Error::Io(std::io::Error::new(e.kind(), format!("terminal: {e}")));
    let _screen = Screen::enter().map_err(io)?;
    let mut out = std::io::stdout();
    let mut classifier = Classifier::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next {
            rows = match sampler.sample() {
                Ok(snap) => {
                    let _ = sampler.take_events();
                    let c = classifier.step(&snap, &cfg.thresholds);
                    frame(&snap, &c)
                }
                Err(e) => vec![
                    vec![plain("headroom top   q quits")],
                    vec![Span {
                        text: crate::text::line(&format!("sample failed: {e}")),
                        color: Some(Color::Red),
                    }],
                ],
            };
            draw(&mut out, &rows).map_err(io)?;
            next = (next + REFRESH).max(now);
        }
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait).map_err(io)? {
            let ev = event::read().map_err(io)?;
            if quits(&ev) {
                return Ok(());
            }
            if matches!(ev, Event::Resize(..)) {
                draw(&mut out, &rows).map_err(io)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pid;

    fn mlx(pid: i32, fp_gib: u64, growth_mib: f64) -> MlxProcess {
        MlxProcess {
            pid: Pid(pid),
            uid: 501,
            start_time: 1,
            name: "python3".into(),
            cmdline: "python3 -m mlx_lm.lora --train --batch-size 4\x1b[2J".into(),
            footprint_bytes: Bytes::gib(fp_gib),
            rss_bytes: Bytes::gib(fp_gib),
            peak_bytes: Bytes::gib(fp_gib),
            growth_bytes_per_sec: growth_mib * Bytes::MIB as f64,
            program: "mlx_lm.lora".into(),
            matched_by: "pattern:x".into(),
            job: None,
        }
    }

    #[test]
    fn frame_shows_level_memory_and_the_mlx_table_without_control_characters() {
        let cfg = Config::embedded().expect("defaults");
        let mut s = Snapshot::default();
        s.memory.total_bytes = Bytes::gib(16);
        s.memory.available_bytes = Bytes::gib(3);
        s.memory.wired_bytes = Some(Bytes::gib(5));
        s.memory.swap_total_bytes = Some(Bytes::gib(4));
        s.memory.swap_used_bytes = Some(Bytes::gib(1));
        s.pressure.swapout_bytes_per_sec = Some(20.0 * Bytes::MIB as f64);
        s.pressure.psi_some_avg10 = Some(3.0);
        s.pressure.psi_full_avg10 = Some(1.0);
        s.mlx_processes = vec![mlx(7, 2, 0.0), mlx(4242, 9, 102.4)];
        let c = Classifier::default().step(&s, &cfg.thresholds);
        let rows = frame(&s, &c);
        let text: Vec<String> = rows.iter().map(row_text).collect();
        let all = text.join("\n");
        assert!(all.contains(" YELLOW "), "{all}");
        assert!(all.contains("available   3.00 GiB of 16.00 GiB"), "{all}");
        assert!(all.contains("wired 5.00 GiB"), "{all}");
        assert!(
            all.contains("1.00 GiB used of 4.00 GiB, swap-out 20 MiB/s"),
            "{all}"
        );
        assert!(all.contains("PSI some 3.00%"), "{all}");
        assert!(
            !all.contains('\x1b'),
            "escape sequences from a command line are neutralised"
        );
        let table: Vec<&String> = text.iter().filter(|l| l.contains("--batch-size")).collect();
        assert_eq!(table.len(), 2);
        // Largest footprint first; 1 GiB of room at 102.4 MiB/s is 10 s.
        assert!(table[0].trim_start().starts_with("4242"), "{}", table[0]);
        assert!(
            table[0].contains("+102 MiB/s") && table[0].contains("~10 s"),
            "{}",
            table[0]
        );
        assert!(
            table[1].contains(" - "),
            "not growing: no time to red: {}",
            table[1]
        );
        let level = &rows[0][1];
        assert_eq!(level.color, Some(Color::Yellow));
    }

    /// Issue 21: a Mac whose wired limit leaves macOS 1 GiB shows it in red
    /// with the command; at the default it is one plain line; absent, none.
    #[test]
    fn frame_shows_the_gpu_wired_limit() {
        let cfg = Config::embedded().expect("defaults");
        let mut s = Snapshot::default();
        s.memory.total_bytes = Bytes::gib(16);
        s.memory.available_bytes = Bytes::gib(10);
        let c = Classifier::default().step(&s, &cfg.thresholds);
        let all = |s: &Snapshot| -> String {
            frame(s, &c)
                .iter()
                .map(row_text)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(!all(&s).contains("GPU wired"), "Linux: nothing");
        s.memory.gpu_wired_limit_mb = Some(0);
        let text = all(&s);
        assert!(
            text.contains("GPU wired   GPU wired limit about 10.67 GiB (the system default)"),
            "{text}"
        );
        assert!(!text.contains("sudo"), "{text}");
        s.memory.gpu_wired_limit_mb = Some(15 * 1024);
        let rows = frame(&s, &c);
        let row = rows
            .iter()
            .find(|r| row_text(r).starts_with("GPU wired"))
            .expect("a row");
        let text = row_text(row);
        assert!(text.contains("macOS keeps 1.00 GiB of 16.00 GiB"), "{text}");
        assert!(
            text.contains("sudo sysctl iogpu.wired_limit_mb=12288"),
            "{text}"
        );
        assert_eq!(row[1].color, Some(Color::Red));
    }
}
