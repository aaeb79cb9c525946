//! The three logging modes of the CLI reference: CLI mode (bare messages,
//! `[cli]` prefix, green for info, red for errors), text mode (`--debug`:
//! key=value with time, level, module and version) and JSON mode
//! (`--log-json`). Everything goes to stderr; stdout is for documents.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
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

fn filter(debug: bool) -> EnvFilter {
    let level = if debug {
        "debug".to_string()
    } else {
        std::env::var("LOG_LEVEL")
            .ok()
            .map(|l| l.trim().to_ascii_lowercase())
            .filter(|l| ["trace", "debug", "info", "warn", "error"].contains(&l.as_str()))
            .unwrap_or_else(|| "info".into())
    };
    EnvFilter::new(level)
}

pub fn init(mode: Mode, debug: bool) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter(debug));
    let _ = match mode {
        Mode::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        Mode::Text => builder.event_format(TextFormat).try_init(),
        Mode::Cli => builder
            .event_format(CliFormat {
                color: color_enabled(),
            })
            .try_init(),
    };
}

/// Print the final error line in the active mode. Errors always reach the
/// user, whatever `LOG_LEVEL` says.
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
            tracing::error!(exitCode = exit_code, "command failed: {message}");
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
            (Level::ERROR, true) => ("\x1b[31m", "\x1b[0m"),
            (_, true) => ("\x1b[32m", "\x1b[0m"),
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
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        write!(
            w,
            "time={now} level={} module=aicr version={} source={}:{} msg=\"",
            meta.level(),
            aicr::VERSION,
            meta.file().unwrap_or("?"),
            meta.line().unwrap_or(0)
        )?;
        let mut fields = FormattedFields::<N>::new(String::new());
        ctx.field_format()
            .format_fields(fields.as_writer(), event)?;
        writeln!(w, "{}\"", fields.fields.replace('"', "\\\""))
    }
}
