//! The daemon's log: one line per event on stdout, readable at a terminal and understood by
//! the journal.
//!
//! A line is a short message, then `key=value` fields in logfmt style (a value with a space,
//! a quote, an `=` or a control character is quoted and escaped). When stdout is the journal
//! (systemd says so in `$JOURNAL_STREAM`, see systemd.exec(5)) each line starts with a syslog
//! priority prefix, `<3>` error, `<4>` warning, `<6>` info, `<7>` debug: journald strips it
//! and files the line at that priority (sd-daemon(3); the unit's `SyslogLevelPrefix=` is on
//! by default). At a terminal or in a pipe the prefix is left out, so a person, or a script
//! matching messages, reads the same text as ever. `SHEETCAKE_LOG=journal` or `plain` forces
//! one style (a supervisor other than systemd that understands the prefixes, say).
//!
//! Only the control thread logs; a worker never formats text. A multi-line report (the tc-like
//! statistics) goes out line by line, each line an event of its own.

use std::fmt::{Display, Write as _};
use std::io::Write as _;
use std::sync::OnceLock;

/// How important an event is: the syslog priorities journald knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Something failed: sheetcake cannot start, or refused what it was asked.
    Error = 3,
    /// Something the operator should act on, though sheetcake goes on.
    Warning = 4,
    /// The normal course: start-up, reloads, status lines, the exit report.
    Info = 6,
    /// Detail for whoever is looking into something.
    Debug = 7,
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// With the priority prefix, for the journal.
    Journal,
    /// Without it, for a person or a pipe.
    Plain,
}

impl Style {
    /// The style for this process: `SHEETCAKE_LOG` when set, else journal when stdout is the
    /// stream `$JOURNAL_STREAM` names (`DEVICE:INODE`), else plain.
    fn detect() -> Style {
        let forced = std::env::var("SHEETCAKE_LOG").ok();
        let journal = std::env::var("JOURNAL_STREAM").ok();
        Style::choose(forced.as_deref(), journal.as_deref(), stdout_identity())
    }

    /// The decision [`Style::detect`] makes, on its inputs.
    fn choose(
        forced: Option<&str>,
        journal_stream: Option<&str>,
        stdout: Option<(u64, u64)>,
    ) -> Style {
        match forced {
            Some("journal") => return Style::Journal,
            Some("plain") => return Style::Plain,
            _ => {}
        }
        let named = journal_stream.and_then(|s| {
            let (device, inode) = s.split_once(':')?;
            Some((device.parse().ok()?, inode.parse().ok()?))
        });
        match (named, stdout) {
            (Some(named), Some(actual)) if named == actual => Style::Journal,
            _ => Style::Plain,
        }
    }
}

/// The device and inode of stdout, as `$JOURNAL_STREAM` writes them.
fn stdout_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

fn style() -> Style {
    static STYLE: OnceLock<Style> = OnceLock::new();
    *STYLE.get_or_init(Style::detect)
}

/// One event, built with [`field`](Event::field) and written with [`emit`](Event::emit).
#[must_use = "an event is written by emit()"]
pub struct Event {
    priority: Priority,
    message: String,
    fields: String,
}

/// An error event.
pub fn error(message: impl Into<String>) -> Event {
    Event::new(Priority::Error, message.into())
}

/// A warning event.
pub fn warning(message: impl Into<String>) -> Event {
    Event::new(Priority::Warning, message.into())
}

/// An informational event.
pub fn info(message: impl Into<String>) -> Event {
    Event::new(Priority::Info, message.into())
}

/// A debug event.
pub fn debug(message: impl Into<String>) -> Event {
    Event::new(Priority::Debug, message.into())
}

/// Writes a multi-line report (the tc-like statistics) as one info event per line, so the
/// journal keeps every line at the same priority and a terminal shows the layout unchanged.
pub fn report(text: &str) {
    for line in text.lines() {
        Event {
            priority: Priority::Info,
            message: line.to_owned(),
            fields: String::new(),
        }
        .emit();
    }
}

impl Event {
    fn new(priority: Priority, message: String) -> Event {
        Event {
            priority,
            message,
            fields: String::new(),
        }
    }

    /// Adds `key=value`.
    pub fn field(mut self, key: &str, value: impl Display) -> Event {
        let value = value.to_string();
        let _ = write!(self.fields, " {key}=");
        quote_into(&mut self.fields, &value);
        self
    }

    /// Writes the event as one line on stdout. A log line that cannot be written (stdout
    /// closed) is lost rather than stopping the shaper.
    pub fn emit(self) {
        let line = self.render(style());
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }

    /// The line, newline included.
    fn render(&self, style: Style) -> String {
        let mut line = String::with_capacity(self.message.len() + self.fields.len() + 5);
        if style == Style::Journal {
            let _ = write!(line, "<{}>", self.priority as u8);
        }
        // One event, one line: a message is never split.
        line.extend(
            self.message
                .chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
        line.push_str(&self.fields);
        line.push('\n');
        line
    }
}

/// Appends `value` as a logfmt value: bare when it is a simple word, else in double quotes
/// with `"`, `\` and control characters escaped.
fn quote_into(out: &mut String, value: &str) {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_line_starts_with_the_syslog_priority() {
        // sd-daemon(3): "<3>" error, "<4>" warning, "<6>" info, "<7>" debug.
        let lines: Vec<String> = [error("e"), warning("w"), info("i"), debug("d")]
            .iter()
            .map(|e| e.render(Style::Journal))
            .collect();
        assert_eq!(lines, ["<3>e\n", "<4>w\n", "<6>i\n", "<7>d\n"]);
    }

    #[test]
    fn a_plain_line_is_the_message_and_its_fields() {
        let e = info("reload: 1 added")
            .field("file", "/etc/sheetcake/subs.toml")
            .field("took_ms", 1.5);
        assert_eq!(
            e.render(Style::Plain),
            "reload: 1 added file=/etc/sheetcake/subs.toml took_ms=1.5\n"
        );
    }

    #[test]
    fn values_with_spaces_quotes_or_newlines_are_quoted_and_escaped() {
        let e = warning("restart needed")
            .field("keys", "workers.cores ports.mtu")
            .field("said", "a \"b\"\nc\\d")
            .field("empty", "")
            .field("eq", "a=b");
        assert_eq!(
            e.render(Style::Journal),
            "<4>restart needed keys=\"workers.cores ports.mtu\" said=\"a \\\"b\\\"\\nc\\\\d\" \
             empty=\"\" eq=\"a=b\"\n"
        );
    }

    #[test]
    fn an_event_is_one_line_even_when_its_message_has_several() {
        let e = error("first\nsecond");
        assert_eq!(e.render(Style::Plain), "first second\n");
    }

    #[test]
    fn the_journal_style_is_chosen_only_when_stdout_is_the_journal_stream() {
        // systemd.exec(5): JOURNAL_STREAM is "DEVICE:INODE" of the stream it connected.
        let stdout = Some((25, 3141));
        assert_eq!(Style::choose(None, Some("25:3141"), stdout), Style::Journal);
        // Inherited by a child whose stdout was redirected elsewhere: not the journal.
        assert_eq!(Style::choose(None, Some("25:9999"), stdout), Style::Plain);
        assert_eq!(Style::choose(None, None, stdout), Style::Plain);
        assert_eq!(Style::choose(None, Some("garbage"), stdout), Style::Plain);
        assert_eq!(Style::choose(Some("journal"), None, stdout), Style::Journal);
        assert_eq!(
            Style::choose(Some("plain"), Some("25:3141"), stdout),
            Style::Plain
        );
    }
}
