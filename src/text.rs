//! The one rule for text from outside (process names, command lines, paths,
//! error messages) shown on a terminal, in a notification or as a Prometheus
//! label: control characters and bidi controls become '?', and a caller may
//! cap the length. Issue 13: six copies with three rules let an `ESC[2J`
//! process name through the daemon's stderr line and the metrics labels.
//! The JSON log is not cleaned here: serde escapes it and keeps it exact.

/// What a terminal, a notification bubble or a dashboard must never be
/// handed raw: C0 controls (ESC among them), DEL, C1 controls (`char::is_control`
/// is exactly Unicode's Cc: U+0000–001F, U+007F–009F), the directional marks
/// U+200E/U+200F, the embeddings and overrides U+202A–U+202E and the
/// isolates U+2066–U+2069 (which make text read differently from what it is,
/// "\u{202e}gnp.exe").
pub fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` on one line: every hostile character (newline and tab too) is '?'.
pub fn line(s: &str) -> String {
    s.chars()
        .map(|c| if is_hostile(c) { '?' } else { c })
        .collect()
}

/// `s` with its line breaks and tabs kept (a notification body has several
/// lines); every other hostile character is '?'.
pub fn lines(s: &str) -> String {
    s.chars()
        .map(|c| {
            if is_hostile(c) && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// At most `max` chars, cut on a char boundary and marked with '…' (which
/// counts towards `max`). Does not clean: compose with [`line`] or [`lines`].
pub fn cap(s: &str, max: usize) -> String {
    if s.chars().nth(max).is_none() {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// [`line`], then [`cap`]: the usual treatment of a name in a table cell.
pub fn line_capped(s: &str, max: usize) -> String {
    cap(&line(s), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each row: input, line(), lines(). The names are the attacks of
    // issue 13 (a process named ESC[2J ESC[H…, bidi overrides, C1 CSI).
    #[test]
    fn every_hostile_character_becomes_a_question_mark() {
        let table: &[(&str, &str, &str)] = &[
            ("mlx_lm.lora", "mlx_lm.lora", "mlx_lm.lora"),
            ("\u{1b}[2J\u{1b}[Hmlx_lm", "?[2J?[Hmlx_lm", "?[2J?[Hmlx_lm"),
            ("a\u{0}b\u{7}c\u{8}d", "a?b?c?d", "a?b?c?d"),
            ("del\u{7f}", "del?", "del?"),
            (
                "c1 csi \u{9b}31m \u{85} \u{9f}",
                "c1 csi ?31m ? ?",
                "c1 csi ?31m ? ?",
            ),
            ("x\u{202e}gnp.exe", "x?gnp.exe", "x?gnp.exe"),
            (
                "\u{200e}\u{200f}\u{202a}\u{202b}\u{202c}\u{202d}",
                "??????",
                "??????",
            ),
            ("\u{2066}\u{2067}\u{2068}\u{2069}", "????", "????"),
            (
                "two\nlines\tand tab\r",
                "two?lines?and tab?",
                "two\nlines\tand tab?",
            ),
            // Printable neighbours of the bidi range stay.
            (
                "\u{2010}\u{2029}\u{2030}\u{2065}\u{206a}",
                "\u{2010}\u{2029}\u{2030}\u{2065}\u{206a}",
                "\u{2010}\u{2029}\u{2030}\u{2065}\u{206a}",
            ),
            ("ü日本 é", "ü日本 é", "ü日本 é"),
            ("", "", ""),
        ];
        for (input, want_line, want_lines) in table {
            assert_eq!(line(input), *want_line, "line({input:?})");
            assert_eq!(lines(input), *want_lines, "lines({input:?})");
            assert!(!line(input).chars().any(is_hostile), "{input:?}");
            assert!(!lines(input)
                .chars()
                .any(|c| is_hostile(c) && c != '\n' && c != '\t'));
        }
        for c in (0u32..0x20).chain(0x7f..0xa0) {
            let c = char::from_u32(c).expect("char");
            assert!(is_hostile(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn cap_cuts_on_char_boundaries_and_counts_the_ellipsis() {
        assert_eq!(cap("abc", 3), "abc");
        assert_eq!(cap("abcd", 3), "ab…");
        assert_eq!(cap(&"ü".repeat(10), 10), "ü".repeat(10));
        assert_eq!(cap(&"ü".repeat(11), 10), format!("{}…", "ü".repeat(9)));
        assert_eq!(cap("abc", 0), "…");
        assert_eq!(cap("", 0), "");
        assert_eq!(line_capped("\u{1b}[2Jabcdef", 5), "?[2J…");
    }
}
