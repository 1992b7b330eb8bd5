//! The systemd user unit (`headroom.service`), rendered in code with
//! systemd's quoting rules, and the `systemctl --user` argv for each step.

use super::{AgentError, Layout};

/// The unit name; the file is `$XDG_CONFIG_HOME/systemd/user/<UNIT>`.
pub const UNIT: &str = "headroom.service";
/// The first line of every unit we write: how `install` recognises its own file.
pub const MARKER: &str = "# Written by `headroom install`; `headroom uninstall` removes it.";
/// Seconds before systemd restarts a failed daemon.
pub const RESTART_SEC: u32 = 10;

/// One ExecStart word, quoted per systemd.service(5) "Command lines": `%`
/// starts a specifier (`%%` is a literal one), `$` an environment variable
/// (`$$`), and a word with whitespace, quotes or backslashes goes in double
/// quotes with C-style escapes. Control characters cannot be written at all.
pub fn quote_word(w: &str) -> Result<String, AgentError> {
    if w.chars().any(|c| c.is_control()) {
        return Err(AgentError::Environment(format!(
            "{w:?}: a control character cannot be written into a systemd unit"
        )));
    }
    let needs_quotes = w.is_empty()
        || w == ";"
        || w.chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    let mut out = String::with_capacity(w.len() + 2);
    if needs_quotes {
        out.push('"');
    }
    for c in w.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\\' if needs_quotes => out.push_str("\\\\"),
            '"' if needs_quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    if needs_quotes {
        out.push('"');
    }
    Ok(out)
}

/// The unit file's text.
pub fn render_unit(l: &Layout) -> Result<String, AgentError> {
    let mut words = vec![super::utf8(&l.binary)?.to_string(), "run".to_string()];
    if let Some(c) = &l.config {
        words.push("--config".into());
        words.push(super::utf8(c)?.to_string());
    }
    let exec = words
        .iter()
        .map(|w| quote_word(w))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    Ok(format!(
        "{MARKER}
[Unit]
Description=headroom: keeps the machine usable while MLX jobs train
Documentation=man:headroom(1)

[Service]
Type=simple
ExecStart={exec}
# Restart after a crash or a failure exit; exit 0 is a deliberate stop.
Restart=on-failure
RestartSec={RESTART_SEC}

[Install]
WantedBy=default.target
"
    ))
}

/// True when `text` is a unit this command wrote.
pub fn is_ours(text: &[u8]) -> bool {
    text.starts_with(MARKER.as_bytes())
}
