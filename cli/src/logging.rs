//! The three logging modes of the CLI reference: CLI mode (bare messages,
//! `[cli]` prefix, red for errors on a terminal), text mode (`--debug`:
//! key=value with time, level, module and version) and JSON mode
//! (`--log-json`). Everything goes to stderr; stdout is for documents.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Cli,
    Text,
    Json,
}

/// Whether stderr may carry ANSI colour: a terminal, and `NO_COLOR` unset.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Install the logger. Our formatters colour what they print themselves
/// (only on a terminal without `NO_COLOR`), so the writer never adds ANSI
/// styling of its own: files and pipes get plain text.
pub fn init(mode: Mode, debug: bool) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(aicr::logfmt::level_filter(debug, |k| std::env::var(k).ok()));
    let _ = match mode {
        Mode::Json => builder.event_format(aicr::logfmt::Json).try_init(),
        Mode::Text => builder.event_format(TextFormat).try_init(),
        Mode::Cli => builder
            .event_format(CliFormat {
                color: color_enabled(),
            })
            .try_init(),
    };
}

/// Print the final error line in the active mode. Errors always reach the
/// user, whatever `AICR_LOG_LEVEL` or `LOG_LEVEL` say.
pub fn report_error(mode: Mode, message: &str, exit_code: i32) {
    match mode {
        Mode::Cli => {
            let line = format!("error: {message}");
            if color_enabled() {
                eprintln!("\x1b[31m{line}\x1b[0m");
            } else {
                eprintln!("{line}");
            }
        }
        Mode::Text | Mode::Json => {
            tracing::error!(error = message, exitCode = exit_code, "command failed");
        }
    }
}

struct CliFormat {
    color: bool,
}

impl<S, N> FormatEvent<S, N> for CliFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let (start, end) = match (*event.metadata().level(), self.color) {
            (_, false) => ("", ""),
            // Red for errors on a terminal; nothing else is coloured.
            (Level::ERROR, true) => ("\x1b[31m", "\x1b[0m"),
            (_, true) => ("", ""),
        };
        write!(w, "{start}[cli] ")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w, "{end}")
    }
}

struct TextFormat;

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let record = aicr::logfmt::Record::of(event);
        write!(
            w,
            "time={} level={} module=aicr version={} source={}:{} msg={}",
            aicr::logfmt::now_rfc3339_millis(),
            aicr::logfmt::level_name(meta.level()),
            aicr::VERSION,
            meta.file().unwrap_or("?"),
            meta.line().unwrap_or(0),
            text_value(&record.msg)
        )?;
        for (k, v) in &record.fields {
            write!(w, " {k}={}", text_value(&v.to_string()))?;
        }
        writeln!(w)
    }
}

/// A value in key=value text: bare when it has no space, quote, `=` or
/// control character (and is not empty), else quoted with escapes.
fn text_value(v: &str) -> String {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if bare {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}
