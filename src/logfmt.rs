//! Log record shapes the `aicr`, `aicr-agent` and `aicr-aggregator`
//! binaries share, so a log pipeline parses all three the same way.
//!
//! [`Json`] writes the reference's JSON records: `time` (RFC 3339, UTC,
//! milliseconds), `level` (`DEBUG`, `INFO`, `WARN`, `ERROR`), `msg`, then
//! the event's fields as top-level keys in the order they were given.
//! [`level_filter`] picks the level from `AICR_LOG_LEVEL` / `LOG_LEVEL`
//! values the binary hands in; this module reads no environment itself.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// The environment variables that set the log level, in precedence order:
/// the reference's name first, then the older plain one.
pub(crate) const LEVEL_VARS: [&str; 2] = ["AICR_LOG_LEVEL", "LOG_LEVEL"];

/// The level filter: `debug` when asked for, else the first non-empty of
/// `LEVEL_VARS` as `lookup` returns them, else `info`. A plain level is
/// read case-insensitively (`WARNING` is `warn`); a value with `=` or `,`
/// is a `tracing` directive list (`info,aicr=debug`); anything unreadable
/// falls back to `info` rather than silencing the log.
pub fn level_filter(debug: bool, lookup: impl Fn(&str) -> Option<String>) -> EnvFilter {
    if debug {
        return EnvFilter::new("debug");
    }
    let value = LEVEL_VARS.iter().find_map(|k| {
        lookup(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    });
    let Some(value) = value else {
        return EnvFilter::new("info");
    };
    let lower = value.to_ascii_lowercase();
    let plain = match lower.as_str() {
        "warning" => Some("warn"),
        l @ ("trace" | "debug" | "info" | "warn" | "error" | "off") => Some(l),
        _ => None,
    };
    match plain {
        Some(l) => EnvFilter::new(l),
        None if value.contains('=') || value.contains(',') => {
            EnvFilter::try_new(&value).unwrap_or_else(|_| EnvFilter::new("info"))
        }
        None => EnvFilter::new("info"),
    }
}

/// The level's name as Go's `slog` spells it (TRACE is below DEBUG there).
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "DEBUG-4",
    }
}

/// Now as RFC 3339 in UTC with milliseconds: `2026-12-06T20:44:08.123Z`.
pub fn now_rfc3339_millis() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A field value as the event carried it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
}

impl Value {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::I64(n) => (*n).into(),
            Value::U64(n) => (*n).into(),
            Value::F64(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(f.to_string())),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Bool(b) => write!(f, "{b}"),
            Value::I64(n) => write!(f, "{n}"),
            Value::U64(n) => write!(f, "{n}"),
            Value::F64(x) => write!(f, "{x}"),
        }
    }
}

/// An event split into its message and its other fields, in order. Fields
/// the `log` bridge adds (`log.target`, `log.file`, ...) are dropped.
#[derive(Debug, Default)]
pub struct Record {
    pub msg: String,
    pub fields: Vec<(&'static str, Value)>,
}

impl Record {
    pub fn of(event: &Event<'_>) -> Record {
        let mut r = Record::default();
        event.record(&mut r);
        r
    }

    fn push(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.msg = value.to_string();
        } else if !name.starts_with("log.") {
            self.fields.push((name, value));
        }
    }
}

impl Visit for Record {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::Str(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::F64(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::Str(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::Str(format!("{value:?}")));
    }
}

/// One JSON object per line in the reference's shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Json {
    /// The line for `record` at `level`, stamped `time`, without newline.
    pub(crate) fn line(time: &str, level: &Level, record: &Record) -> String {
        let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
        let mut out = format!(
            "{{\"time\":{},\"level\":{},\"msg\":{}",
            s(time),
            s(level_name(level)),
            s(&record.msg)
        );
        for (k, v) in &record.fields {
            let _ = write!(out, ",{}:{}", s(k), v.to_json());
        }
        out.push('}');
        out
    }
}

impl<S, N> FormatEvent<S, N> for Json
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
        let record = Record::of(event);
        let line = Json::line(&now_rfc3339_millis(), event.metadata().level(), &record);
        writeln!(w, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicr_test_support::logs::Captured;
    use std::collections::HashMap;

    #[test]
    fn json_records_have_the_reference_keys_in_order() {
        let buf = Captured::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(Json)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(path = "a b", count = 3u64, ok = true, err = ?"x", "saved {}", 1);
        });
        let text = buf.text();
        let line = text.trim_end();
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["msg"], "saved 1");
        assert_eq!(v["path"], "a b");
        assert_eq!(v["count"], 3);
        assert_eq!(v["ok"], true);
        assert_eq!(v["err"], "\"x\"");
        let time = v["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-12-06T20:44:08.123Z".len(), "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for gone in ["timestamp", "message", "target", "fields"] {
            assert!(!keys.contains(&gone), "{line}");
        }
        assert!(
            line.starts_with("{\"time\":")
                && line.contains("\"level\":\"WARN\",\"msg\":\"saved 1\",\"path\""),
            "{line}"
        );
    }

    #[test]
    fn level_from_aicr_log_level_then_log_level() {
        let env = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |k: &str| m.get(k).cloned()
        };
        let show = |f: EnvFilter| f.to_string();
        assert_eq!(show(level_filter(false, env(&[]))), "info");
        assert_eq!(
            show(level_filter(false, env(&[("AICR_LOG_LEVEL", "DEBUG")]))),
            "debug"
        );
        assert_eq!(
            show(level_filter(false, env(&[("LOG_LEVEL", "error")]))),
            "error"
        );
        assert_eq!(
            show(level_filter(
                false,
                env(&[("AICR_LOG_LEVEL", "warning"), ("LOG_LEVEL", "error")])
            )),
            "warn"
        );
        assert_eq!(
            show(level_filter(
                false,
                env(&[("AICR_LOG_LEVEL", ""), ("LOG_LEVEL", "error")])
            )),
            "error"
        );
        assert_eq!(
            show(level_filter(false, env(&[("LOG_LEVEL", "loud")]))),
            "info"
        );
        assert_eq!(
            show(level_filter(true, env(&[("LOG_LEVEL", "error")]))),
            "debug"
        );
        assert_eq!(level_name(&Level::TRACE), "DEBUG-4");
    }
}
