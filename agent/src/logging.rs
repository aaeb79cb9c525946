//! The agent's log output: text or JSON lines (the shape `aicr::logfmt`
//! gives all three binaries) on stderr at `AICR_LOG_LEVEL` / `LOG_LEVEL`, and
//! a filter that lets an identical warning (same place, same fields)
//! through once per window. A collector that degrades the same way every
//! cycle (no GPU, no systemd socket) says so once an hour, not 120 times.
//! It owns formatting and suppression only; what is logged is up to the
//! callers.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// How long an identical warning stays quiet after it was logged.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(3600);
/// Distinct warnings remembered; past this the oldest are forgotten, so
/// ever-changing messages cannot grow memory.
const REMEMBERED: usize = 256;

/// Install the agent's logger for the whole process.
pub fn init(json: bool) {
    tracing_subscriber::registry()
        .with(layer(json, std::io::stderr, REPEAT_WINDOW))
        .init();
}

/// The formatting layer with its filters, writing to `writer`.
pub fn layer<S, W>(json: bool, writer: W, window: Duration) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level = aicr::logfmt::level_filter(false, |k| std::env::var(k).ok());
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = if json {
        fmt.with_ansi(false)
            .event_format(aicr::logfmt::Json)
            .boxed()
    } else {
        let color = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        fmt.with_ansi(color).boxed()
    };
    fmt.with_filter(level.and(Repeats::new(window))).boxed()
}

/// Drops a warning or error identical to one let through less than
/// `window` ago; other levels always pass.
pub struct Repeats {
    window: Duration,
    seen: Mutex<HashMap<u64, Instant>>,
}

impl Repeats {
    pub fn new(window: Duration) -> Repeats {
        Repeats {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn first_in_window(&self, key: u64, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = seen.get(&key)
            && now.duration_since(*at) < self.window
        {
            return false;
        }
        if seen.len() >= REMEMBERED {
            seen.retain(|_, at| now.duration_since(*at) < self.window);
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(key, now);
        true
    }
}

/// Hashes an event's fields, names and values alike.
struct FieldHash(DefaultHasher);

impl Visit for FieldHash {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        field.name().hash(&mut self.0);
        format!("{value:?}").hash(&mut self.0);
    }
}

impl<S> Filter<S> for Repeats {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        // Levels order by verbosity: anything above WARN is INFO or chattier.
        if *event.metadata().level() > Level::WARN {
            return true;
        }
        let mut h = FieldHash(DefaultHasher::new());
        event.metadata().callsite().hash(&mut h.0);
        event.record(&mut h);
        self.first_in_window(h.0.finish(), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicr_test_support::logs::Captured;

    fn lines(window: Duration, emit: impl FnOnce()) -> Vec<String> {
        let buf = Captured::default();
        let out = buf.clone();
        let subscriber =
            tracing_subscriber::registry().with(layer(true, move || out.clone(), window));
        tracing::subscriber::with_default(subscriber, emit);
        let text = buf.text();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn identical_warnings_are_logged_once_per_window() {
        let out = lines(Duration::from_secs(60), || {
            for _ in 0..3 {
                tracing::warn!("nvidia-smi not found");
                tracing::warn!(unit = "kubelet.service", "unit query failed");
                tracing::info!("collected");
            }
            tracing::warn!(unit = "containerd.service", "unit query failed");
        });
        let count = |s: &str| out.iter().filter(|l| l.contains(s)).count();
        assert_eq!(count("nvidia-smi not found"), 1, "{out:?}");
        assert_eq!(count("kubelet.service"), 1, "{out:?}");
        assert_eq!(
            count("containerd.service"),
            1,
            "other fields are another warning"
        );
        assert_eq!(count("collected"), 3, "info lines are never suppressed");
    }

    #[test]
    fn a_warning_returns_after_its_window() {
        let out = lines(Duration::ZERO, || {
            tracing::warn!("again");
            tracing::warn!("again");
        });
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn memory_for_distinct_warnings_is_bounded() {
        let r = Repeats::new(Duration::from_secs(60));
        let now = Instant::now();
        for k in 0..(REMEMBERED as u64 * 3) {
            assert!(r.first_in_window(k, now));
        }
        assert!(r.seen.lock().unwrap().len() <= REMEMBERED);
    }
}
