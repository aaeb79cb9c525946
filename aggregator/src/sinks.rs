//! Where recorded drift events go: the violation gauges, the CLI's watch
//! streams, Kubernetes Events on the Node, and an optional Alertmanager v2.
//!
//! Each external sink has its own bounded queue and worker, so a slow API
//! server or Alertmanager drops its own events (counted) and never delays
//! recording or the other sinks. This module must not decide what an event
//! means; it only delivers what the recorder has made durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aicr::proto::DriftEvent;
use aicr::proto::drift_event::{Kind, Source};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::metrics::{DeviationLabels, KindLabel, Metrics, NodeLabel, SinkLabel, Violation};
use crate::store;

/// Watch streams that fall this far behind resume from the store.
const WATCH_BUFFER: usize = 8192;
const QUEUE: usize = 4096;

fn is_deviation(ev: &DriftEvent) -> bool {
    ev.source == Source::Peers as i32
}

/// The node and what on it an event is about ([`store::subject`]).
fn subject(ev: &DriftEvent) -> (String, String) {
    (ev.node_name.clone(), store::subject(ev))
}

pub fn kind_name(kind: i32) -> &'static str {
    match Kind::try_from(kind) {
        Ok(Kind::Opened) => "opened",
        Ok(Kind::Resolved) => "resolved",
        Ok(Kind::Stale) => "stale",
        _ => "unspecified",
    }
}

/// The fan-out the recorder calls after each durable commit.
pub struct Sinks {
    metrics: Arc<Metrics>,
    /// The severity each open violation's gauge series was created with,
    /// so resolving removes exactly that series even if the recipe has
    /// since changed the severity.
    severity: HashMap<(String, String), String>,
    watchers: broadcast::Sender<DriftEvent>,
    kube: Option<mpsc::Sender<DriftEvent>>,
    alerts: Option<SyncSender<DriftEvent>>,
}

impl Sinks {
    /// `open` (from the store) restores the gauges.
    pub fn new(metrics: Arc<Metrics>, open: &[DriftEvent]) -> Sinks {
        let mut s = Sinks {
            metrics,
            severity: HashMap::new(),
            watchers: broadcast::channel(WATCH_BUFFER).0,
            kube: None,
            alerts: None,
        };
        for ev in open {
            s.gauges(ev);
        }
        s
    }

    fn gauges(&mut self, ev: &DriftEvent) {
        if is_deviation(ev) {
            let series = DeviationLabels {
                node: ev.node_name.clone(),
                pool: ev.pool.clone(),
                reading: ev.constraint.clone(),
            };
            match Kind::try_from(ev.kind) {
                Ok(Kind::Opened) => {
                    self.metrics.deviations.get_or_create(&series).set(1);
                }
                Ok(Kind::Resolved) => {
                    self.metrics.deviations.remove(&series);
                }
                _ => {}
            }
            return;
        }
        let node = NodeLabel {
            node: ev.node_name.clone(),
        };
        let key = (ev.node_name.clone(), ev.constraint.clone());
        let stale_marker = ev.constraint.is_empty();
        match Kind::try_from(ev.kind) {
            Ok(Kind::Stale) => {
                self.metrics.stale.get_or_create(&node).set(1);
            }
            Ok(Kind::Resolved) if stale_marker => {
                self.metrics.stale.remove(&node);
            }
            Ok(Kind::Opened) => {
                let series = Violation {
                    node: ev.node_name.clone(),
                    constraint: ev.constraint.clone(),
                    severity: ev.severity.clone(),
                };
                self.metrics.violations.get_or_create(&series).set(1);
                self.severity.insert(key, ev.severity.clone());
            }
            Ok(Kind::Resolved) => {
                let severity = self
                    .severity
                    .remove(&key)
                    .unwrap_or_else(|| ev.severity.clone());
                self.metrics.violations.remove(&Violation {
                    node: key.0,
                    constraint: key.1,
                    severity,
                });
            }
            _ => {}
        }
    }

    /// The live feed `WatchDrift` subscribes to.
    pub fn watch_sender(&self) -> broadcast::Sender<DriftEvent> {
        self.watchers.clone()
    }

    pub fn publish(&mut self, ev: &DriftEvent) {
        self.gauges(ev);
        self.metrics
            .events
            .get_or_create(&KindLabel {
                kind: kind_name(ev.kind),
            })
            .inc();
        // No watcher listening is normal.
        let _ = self.watchers.send(ev.clone());
        if let Some(q) = &self.kube
            && q.try_send(ev.clone()).is_err()
        {
            self.dropped("kubernetes-events");
        }
        if let Some(q) = &self.alerts
            && let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                q.try_send(ev.clone())
        {
            self.dropped("alertmanager");
        }
    }

    fn dropped(&self, sink: &'static str) {
        self.metrics
            .sink_dropped
            .get_or_create(&SinkLabel { sink })
            .inc();
    }

    /// Post events on their Node (`events.k8s.io/v1`). Cluster-level events
    /// have no Node and stay out of it.
    ///
    /// One recorder per constraint: a recorder folds an event into the
    /// series of an earlier one with the same node, type and reason,
    /// whatever its note says, so with one recorder a second constraint
    /// violated on a node would only bump the count of the first one's
    /// Event. Repeats of one constraint still form a series.
    pub fn start_kube_events(
        &mut self,
        client: kube::Client,
        instance: String,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let (tx, mut rx) = mpsc::channel::<DriftEvent>(QUEUE);
        self.kube = Some(tx);
        let metrics = self.metrics.clone();
        let reporter = Reporter {
            controller: "aicr-aggregator".into(),
            instance: Some(instance),
        };
        let mut recorders: HashMap<String, Recorder> = HashMap::new();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => return,
                    ev = rx.recv() => match ev { Some(ev) => ev, None => return },
                };
                if ev.node_name.is_empty() {
                    continue;
                }
                let reference = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(ev.node_name.clone()),
                    ..Default::default()
                };
                let recorder = recorders
                    .entry(subject(&ev).1)
                    .or_insert_with(|| Recorder::new(client.clone(), reporter.clone()));
                if let Err(e) = recorder.publish(&node_event(&ev), &reference).await {
                    metrics
                        .sink_dropped
                        .get_or_create(&SinkLabel {
                            sink: "kubernetes-events",
                        })
                        .inc();
                    tracing::warn!("failed to post event on node {}: {e}", ev.node_name);
                }
            }
        })
    }

    /// POST alerts to Alertmanager's `/api/v2/alerts`, re-sending what is
    /// firing every `resend` so Alertmanager does not time it out. `open`
    /// seeds what is firing from the store.
    pub fn start_alertmanager(
        &mut self,
        base_url: &str,
        resend: Duration,
        open: Vec<DriftEvent>,
    ) -> std::thread::JoinHandle<()> {
        let (tx, rx) = sync_channel::<DriftEvent>(QUEUE);
        self.alerts = Some(tx);
        let url = format!("{}/api/v2/alerts", base_url.trim_end_matches('/'));
        let metrics = self.metrics.clone();
        std::thread::Builder::new()
            .name("alertmanager".into())
            .spawn(move || alertmanager_loop(&url, rx, resend, open, &metrics))
            .expect("a thread can be started")
    }
}

/// The API server refuses an Event whose note is longer, in bytes.
const NOTE_LIMIT: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn node_event(ev: &DriftEvent) -> Event {
    if is_deviation(ev) {
        let opened = ev.kind == Kind::Opened as i32;
        return Event {
            type_: if opened {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: if opened {
                "PeerDeviation"
            } else {
                "PeerAgreement"
            }
            .into(),
            note: Some(cut(
                format!("{}: {} ({})", ev.constraint, ev.actual, ev.reason),
                NOTE_LIMIT,
            )),
            action: "ComparePeers".into(),
            secondary: None,
        };
    }
    let (type_, reason, note) = match Kind::try_from(ev.kind) {
        Ok(Kind::Opened) => (
            EventType::Warning,
            "ConstraintViolated",
            format!(
                "{}: expected {}, actual {} ({})",
                ev.constraint, ev.expected, ev.actual, ev.reason
            ),
        ),
        Ok(Kind::Stale) => (EventType::Warning, "AgentStale", ev.reason.clone()),
        Ok(Kind::Resolved) if ev.constraint.is_empty() => {
            (EventType::Normal, "AgentReporting", ev.reason.clone())
        }
        _ => (
            EventType::Normal,
            "ConstraintMet",
            format!("{}: {} ({})", ev.constraint, ev.actual, ev.reason),
        ),
    };
    Event {
        type_,
        reason: reason.into(),
        note: Some(cut(note, NOTE_LIMIT)),
        action: "EvaluateRecipe".into(),
        secondary: None,
    }
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// One Alertmanager v2 postable alert.
pub fn alert(ev: &DriftEvent, ends_at: Option<i64>) -> Value {
    let stale = ev.constraint.is_empty();
    let severity = if ev.severity.is_empty() {
        "warning"
    } else {
        &ev.severity
    };
    let deviation = is_deviation(ev);
    let alertname = if stale {
        "AICRNodeStale"
    } else if deviation {
        "AICRPeerDeviation"
    } else {
        "AICRConstraintViolated"
    };
    let mut labels = json!({
        "alertname": alertname,
        "node": ev.node_name,
        "severity": severity,
    });
    if deviation {
        labels["reading"] = ev.constraint.clone().into();
        labels["pool"] = ev.pool.clone().into();
    } else if !stale {
        labels["constraint"] = ev.constraint.clone().into();
    }
    let summary = if deviation {
        format!(
            "{} differs from its pool {} on {}",
            ev.node_name, ev.pool, ev.constraint
        )
    } else if stale {
        format!("agent on {} stopped reporting", ev.node_name)
    } else if ev.node_name.is_empty() {
        format!("cluster violates {}", ev.constraint)
    } else {
        format!("{} violates {}", ev.node_name, ev.constraint)
    };
    let mut a = json!({
        "labels": labels,
        "annotations": {
            "summary": summary,
            "expected": ev.expected,
            "actual": ev.actual,
            "reason": ev.reason,
        },
        "startsAt": rfc3339(ev.unix_millis),
    });
    if let Some(end) = ends_at {
        a["endsAt"] = rfc3339(end).into();
    }
    a
}

fn alertmanager_loop(
    url: &str,
    rx: Receiver<DriftEvent>,
    resend: Duration,
    open: Vec<DriftEvent>,
    metrics: &Metrics,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut firing: HashMap<(String, String), DriftEvent> =
        open.into_iter().map(|e| (subject(&e), e)).collect();
    let mut last_full = Instant::now()
        .checked_sub(resend)
        .unwrap_or_else(Instant::now);
    loop {
        let wait = resend.saturating_sub(last_full.elapsed());
        let mut batch: Vec<Value> = Vec::new();
        match rx.recv_timeout(wait) {
            Ok(ev) => {
                let mut next = Some(ev);
                while let Some(ev) = next {
                    let key = subject(&ev);
                    if ev.kind == Kind::Resolved as i32 {
                        // Alertmanager matches on labels; the opening
                        // event's labels with an end time resolve it.
                        let opened = firing.remove(&key).unwrap_or_else(|| ev.clone());
                        batch.push(alert(&opened, Some(ev.unix_millis)));
                    } else {
                        batch.push(alert(&ev, None));
                        firing.insert(key, ev);
                    }
                    next = rx.try_recv().ok();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_full.elapsed() >= resend {
            batch.extend(firing.values().map(|e| alert(e, None)));
            last_full = Instant::now();
        }
        if batch.is_empty() {
            continue;
        }
        let body = Value::Array(batch);
        let n = body.as_array().map_or(0, Vec::len) as u64;
        let text = body.to_string();
        let failed = match agent
            .post(url)
            .header("content-type", "application/json")
            .send(text.as_bytes())
        {
            Ok(resp) if resp.status().is_success() => None,
            Ok(resp) => Some(format!("HTTP {}", resp.status().as_u16())),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            tracing::warn!("alertmanager POST {url} failed: {why}");
            metrics
                .sink_dropped
                .get_or_create(&SinkLabel {
                    sink: "alertmanager",
                })
                .inc_by(n);
        }
    }
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_to_the_api_servers_limit_in_bytes() {
        assert_eq!(cut("short".into(), NOTE_LIMIT), "short");
        let ascii = cut("a".repeat(2000), NOTE_LIMIT);
        assert_eq!(ascii.len(), NOTE_LIMIT);
        // Two-byte characters: 512 of them fill the limit exactly; three-byte
        // ones leave one byte unused rather than split a character.
        assert_eq!(cut("é".repeat(1000), NOTE_LIMIT).len(), 1024);
        let cjk = cut("界".repeat(1000), NOTE_LIMIT);
        assert_eq!(cjk.len(), 1023);
        assert!(cjk.chars().all(|c| c == '界'));
    }

    #[test]
    fn resolving_removes_the_series_opened_even_if_severity_changed() {
        let metrics = Arc::new(Metrics::new());
        let open = DriftEvent {
            id: 1,
            kind: Kind::Opened as i32,
            node_name: "gpu-1".into(),
            constraint: "OS.release.ID".into(),
            severity: "critical".into(),
            ..Default::default()
        };
        let mut sinks = Sinks::new(metrics.clone(), std::slice::from_ref(&open));
        let text = metrics.encode();
        assert!(text.contains(r#"aicr_constraint_violation{node="gpu-1",constraint="OS.release.ID",severity="critical"} 1"#), "{text}");
        sinks.publish(&DriftEvent {
            kind: Kind::Resolved as i32,
            severity: "warning".into(),
            ..open
        });
        assert!(
            !metrics.encode().contains("aicr_constraint_violation{"),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn alerts_carry_labels_alertmanager_groups_by() {
        let ev = DriftEvent {
            kind: Kind::Opened as i32,
            node_name: "gpu-1".into(),
            constraint: "OS.release.VERSION_ID".into(),
            expected: "== 24.04".into(),
            actual: "22.04".into(),
            unix_millis: 1_700_000_000_000,
            ..Default::default()
        };
        let a = alert(&ev, None);
        assert_eq!(a["labels"]["alertname"], "AICRConstraintViolated");
        assert_eq!(a["labels"]["severity"], "warning");
        assert_eq!(a["labels"]["constraint"], "OS.release.VERSION_ID");
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert!(a.get("endsAt").is_none());
        let r = alert(&ev, Some(1_700_000_001_000));
        assert_eq!(r["endsAt"], "2023-11-14T22:13:21.000Z");
        let stale = DriftEvent {
            kind: Kind::Stale as i32,
            node_name: "gpu-1".into(),
            ..Default::default()
        };
        assert_eq!(alert(&stale, None)["labels"]["alertname"], "AICRNodeStale");
    }

    #[test]
    fn deviations_have_their_own_gauge_alert_and_event() {
        let metrics = Arc::new(Metrics::new());
        let mut sinks = Sinks::new(metrics.clone(), &[]);
        let dev = DriftEvent {
            kind: Kind::Opened as i32,
            node_name: "gpu-1".into(),
            constraint: "OS.sysctl./proc/sys/vm/swappiness".into(),
            expected: "60".into(),
            actual: "10".into(),
            severity: "warning".into(),
            source: Source::Peers as i32,
            pool: "p5.48xlarge/H100".into(),
            agreeing: 2,
            pool_size: 3,
            ..Default::default()
        };
        sinks.publish(&dev);
        let text = metrics.encode();
        assert!(text.contains(r#"aicr_peer_deviation{node="gpu-1",pool="p5.48xlarge/H100",reading="OS.sysctl./proc/sys/vm/swappiness"} 1"#), "{text}");
        assert!(!text.contains("aicr_constraint_violation{"), "{text}");
        let a = alert(&dev, None);
        assert_eq!(a["labels"]["alertname"], "AICRPeerDeviation");
        assert_eq!(a["labels"]["pool"], "p5.48xlarge/H100");
        assert_eq!(a["labels"]["reading"], "OS.sysctl./proc/sys/vm/swappiness");
        assert!(a["labels"].get("constraint").is_none());
        let e = node_event(&dev);
        assert_eq!(e.reason, "PeerDeviation");
        assert!(matches!(e.type_, EventType::Warning));
        assert_ne!(
            subject(&dev),
            subject(&DriftEvent {
                source: 0,
                ..dev.clone()
            })
        );
        sinks.publish(&DriftEvent {
            kind: Kind::Resolved as i32,
            ..dev.clone()
        });
        assert!(!metrics.encode().contains("aicr_peer_deviation{"));
        assert_eq!(
            node_event(&DriftEvent {
                kind: Kind::Resolved as i32,
                ..dev
            })
            .reason,
            "PeerAgreement"
        );
    }
}
