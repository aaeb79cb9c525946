//! The streaming client: connect to the aggregator, open one AgentService
//! session (Hello, then a full snapshot), then on every interval tick or
//! change signal re-collect and send only what changed, with heartbeats in
//! between; answer Resync with a full snapshot and apply pushed collection
//! settings. When the session ends for any reason it reconnects, forever,
//! with jittered backoff.
//!
//! Owns connection policy (URL and TLS checks, keepalives, backoff) and the
//! agent's own memory ceiling. What a message carries is `session`'s
//! business; what a measurement holds is `collect`'s.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aicr::proto::agent_message::Body;
use aicr::proto::agent_service_client::AgentServiceClient;
use aicr::proto::aggregator_message::Body as Reply;
use aicr::proto::{AgentMessage, AggregatorMessage, CollectionSettings, Hello, SubtypeState};
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::backoff::Backoff;
use crate::collect::{CollectOptions, collect_node};
use crate::session::Session;
use crate::watch::Change;
use crate::{digest, rss, volatile};

/// Messages queued toward the aggregator; more than this and the
/// aggregator is not reading, which [`SEND_TIMEOUT`] turns into a
/// reconnect instead of unbounded buffering.
const OUTBOUND: usize = 8;
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings notice an aggregator that vanished without closing the
/// connection (node lost, network partition) long before TCP would.
const KEEPALIVE: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Change signals come in bursts (a restart changes a dozen properties);
/// one collection this long after the first signal covers the burst.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// How long a closing agent waits for the aggregator to end the stream.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// PEM files for TLS; read again on every connect so rotated
/// certificates are picked up without a restart.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA that signed the aggregator's certificate (default: system roots).
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for an aggregator that requires mTLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Where the aggregator is and how to reach it, checked once up front.
#[derive(Debug, Clone)]
pub struct Target {
    url: String,
    /// `None`: plain-text gRPC (only ever to loopback).
    tls: Option<TlsFiles>,
}

impl Target {
    /// `http://` needs `insecure` and a loopback host; `https://` refuses
    /// `insecure`; a client certificate needs its key and vice versa.
    pub fn new(url: &str, tls: TlsFiles, insecure: bool) -> Result<Target, String> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("--aggregator {url:?} is not a URL: {e}"))?;
        let uri = endpoint.uri();
        let host = uri.host().unwrap_or_default();
        if tls.cert.is_some() != tls.key.is_some() {
            return Err("--tls-cert and --tls-key go together".into());
        }
        match uri.scheme_str() {
            Some("https") if insecure => Err(format!(
                "--insecure is only for http:// on loopback, not {url}"
            )),
            Some("https") => Ok(Target {
                url: url.to_string(),
                tls: Some(tls),
            }),
            Some("http") => {
                if !insecure {
                    return Err(format!(
                        "{url} is plain text: use https:// with --tls-ca, or --insecure for a loopback aggregator"
                    ));
                }
                if !aicr::flags::is_loopback_host(host) {
                    return Err(format!(
                        "--insecure is accepted only for loopback aggregators, not {host:?}"
                    ));
                }
                if tls.ca.is_some() || tls.cert.is_some() {
                    return Err("TLS flags need an https:// --aggregator URL".into());
                }
                Ok(Target {
                    url: url.to_string(),
                    tls: None,
                })
            }
            _ => Err(format!(
                "--aggregator {url:?} must start with https:// (or http:// with --insecure)"
            )),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn endpoint(&self) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        let Some(files) = &self.tls else {
            return Ok(endpoint);
        };
        let read = |p: &PathBuf, flag: &str| {
            std::fs::read(p).map_err(|e| format!("{flag} {}: {e}", p.display()))
        };
        let mut tls = ClientTlsConfig::new();
        tls = match &files.ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "--tls-ca")?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
            tls = tls.identity(Identity::from_pem(
                read(cert, "--tls-cert")?,
                read(key, "--tls-key")?,
            ));
        }
        endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS set-up: {}", aicr::error::chain(&e)))
    }
}

/// Everything the streaming client runs with.
#[derive(Clone)]
pub struct Config {
    pub target: Target,
    pub node_name: String,
    pub boot_id: String,
    /// Projected ServiceAccount token, read on every connect (the kubelet
    /// rotates it).
    pub token_file: Option<PathBuf>,
    /// Collectors' settings; `systemd_units` is the default the aggregator
    /// may override.
    pub collect: CollectOptions,
    /// Default collection interval; the aggregator may override it.
    pub interval: Duration,
    pub heartbeat: Duration,
    /// Resident-memory ceiling in bytes; 0 for none.
    pub max_rss: u64,
}

/// Why [`run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop.
    Shutdown,
    /// Over `max_rss`; the message says by how much.
    MemoryLimit(String),
}

/// Why one session ended.
enum End {
    Exit(Exit),
    /// Anything that a reconnect may cure.
    Lost(String),
}

/// Stream until `shutdown` is cancelled or the memory ceiling is hit.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Exit {
    let (units, units_rx) = watch::channel(cfg.collect.systemd_units.clone());
    // One slot: a pending signal already means "collect soon".
    let (changes_tx, mut changes) = mpsc::channel(1);
    tokio::spawn(crate::watch::systemd(
        cfg.collect.root.clone(),
        units_rx,
        changes_tx.clone(),
    ));
    crate::watch::gpu(&cfg.collect.gpu.backend, changes_tx);
    let mut agent = Agent {
        interval: cfg.interval,
        cfg,
        units,
        backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP),
        sessions: 0,
    };
    loop {
        let why = match agent.session(&mut changes, &shutdown).await {
            Err(End::Exit(exit)) => return exit,
            Err(End::Lost(why)) => why,
            Ok(never) => match never {},
        };
        let delay = agent.backoff.next_delay();
        tracing::warn!(
            aggregator = agent.cfg.target.url(),
            "{why}; reconnecting in {:.1}s",
            delay.as_secs_f64()
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Exit::Shutdown,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

struct Agent {
    cfg: Config,
    /// The interval in force (the aggregator's, else the flag's).
    interval: Duration,
    /// The unit list in force; the systemd watcher follows it.
    units: watch::Sender<Vec<String>>,
    backoff: Backoff,
    /// Sessions that got their first snapshot acknowledged.
    sessions: u64,
}

type Outbound = mpsc::Sender<AgentMessage>;

fn ticker(period: Duration) -> Interval {
    let mut t = tokio::time::interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn status_text(s: &tonic::Status) -> String {
    use std::error::Error;
    let mut out = format!("{:?}: {}", s.code(), s.message());
    if let Some(src) = s.source() {
        out.push_str(": ");
        out.push_str(&aicr::error::chain(src));
    }
    out
}

/// The sending half of a session. Messages larger than the aggregator's
/// part size go as Parts (`aicr::parts`).
struct Wire {
    tx: Outbound,
    part_bytes: u32,
}

impl Wire {
    async fn send(&self, body: Body) -> Result<(), End> {
        let m = AgentMessage { body: Some(body) };
        for piece in aicr::parts::split(m, self.part_bytes) {
            self.tx
                .send_timeout(piece, SEND_TIMEOUT)
                .await
                .map_err(|e| {
                    End::Lost(match e {
                        SendTimeoutError::Timeout(_) => {
                            "the aggregator stopped reading the stream".into()
                        }
                        SendTimeoutError::Closed(_) => "the stream closed".into(),
                    })
                })?;
        }
        Ok(())
    }
}

impl Agent {
    fn token(&self) -> String {
        let Some(path) = &self.cfg.token_file else {
            return String::new();
        };
        match std::fs::read_to_string(path) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                tracing::warn!(
                    "cannot read --identity-token-file {}: {e}; connecting without a token",
                    path.display()
                );
                String::new()
            }
        }
    }

    /// One collection cycle, which is also when the memory ceiling is
    /// checked.
    async fn collect(&self) -> Result<BTreeMap<String, SubtypeState>, End> {
        let opts = CollectOptions {
            systemd_units: self.units.borrow().clone(),
            ..self.cfg.collect.clone()
        };
        let mut measurements = collect_node(&opts).await;
        volatile::strip(&mut measurements);
        let states = digest::states(&measurements);
        match rss::resident_bytes() {
            Ok(bytes) => {
                tracing::debug!(subtypes = states.len(), rss_kib = bytes >> 10, "collected");
                if self.cfg.max_rss > 0 {
                    rss::check(bytes, self.cfg.max_rss)
                        .map_err(|line| End::Exit(Exit::MemoryLimit(line)))?;
                }
            }
            Err(e) => tracing::warn!("cannot read own memory use: {e}"),
        }
        Ok(states)
    }

    async fn send_changes(&self, s: &mut Session, tx: &Wire) -> Result<(), End> {
        let current = self.collect().await?;
        if let Some(update) = s.update(&current) {
            tracing::debug!(
                seq = update.seq,
                changed = update.changed.len(),
                removed = update.removed.len(),
                "sending update"
            );
            tx.send(Body::Update(update)).await?;
        }
        Ok(())
    }

    async fn send_full(&self, s: &mut Session, tx: &Wire) -> Result<(), End> {
        let current = self.collect().await?;
        let full = s.full(&current);
        tracing::debug!(
            seq = full.seq,
            subtypes = full.subtypes.len(),
            "sending full snapshot"
        );
        tx.send(Body::Full(full)).await
    }

    async fn open(&self) -> Result<(Outbound, tonic::Streaming<AggregatorMessage>), End> {
        let endpoint = self.cfg.target.endpoint().map_err(End::Lost)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| End::Lost(format!("cannot connect: {}", aicr::error::chain(&e))))?;
        let (tx, rx) = mpsc::channel(OUTBOUND);
        let hello = Hello {
            node_name: self.cfg.node_name.clone(),
            agent_version: aicr::VERSION.to_string(),
            boot_id: self.cfg.boot_id.clone(),
            identity_token: self.token(),
        };
        Wire {
            tx: tx.clone(),
            part_bytes: 0,
        }
        .send(Body::Hello(hello))
        .await?;
        let inbound = AgentServiceClient::new(channel)
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|s| End::Lost(status_text(&s)))?
            .into_inner();
        Ok((tx, inbound))
    }

    async fn session(
        &mut self,
        changes: &mut mpsc::Receiver<Change>,
        shutdown: &CancellationToken,
    ) -> Result<Infallible, End> {
        let (tx, mut inbound) = tokio::select! {
            _ = shutdown.cancelled() => return Err(End::Exit(Exit::Shutdown)),
            opened = self.open() => opened?,
        };
        // The aggregator answers Hello with its settings; they say how large
        // a message may be before it must go in Parts.
        let settings = tokio::select! {
            _ = shutdown.cancelled() => return Err(End::Exit(Exit::Shutdown)),
            m = tokio::time::timeout(SEND_TIMEOUT, inbound.message()) => match m {
                Ok(Ok(Some(AggregatorMessage { body: Some(Reply::Settings(cs)) }))) => cs,
                Ok(Ok(Some(other))) => {
                    return Err(End::Lost(format!("expected settings after Hello, got {other:?}")));
                }
                Ok(Ok(None)) => return Err(End::Lost("the aggregator ended the session".into())),
                Ok(Err(status)) => return Err(End::Lost(status_text(&status))),
                Err(_) => return Err(End::Lost("no answer to Hello".into())),
            },
        };
        let tx = Wire {
            tx,
            part_bytes: settings.part_bytes,
        };
        self.apply(settings);
        let mut s = Session::new();
        self.send_full(&mut s, &tx).await?;
        let first_full = s.seq();
        let mut collect_tick = ticker(self.interval);
        let mut heartbeat = ticker(self.cfg.heartbeat);
        let mut due: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    drop(tx.tx);
                    let _ = tokio::time::timeout(CLOSE_GRACE, inbound.message()).await;
                    return Err(End::Exit(Exit::Shutdown));
                }
                m = inbound.message() => match m {
                    Ok(Some(AggregatorMessage { body: Some(reply) })) => {
                        match reply {
                            Reply::Ack(ack) if ack.seq == first_full => {
                                self.backoff.reset();
                                self.sessions += 1;
                                tracing::info!(
                                    aggregator = self.cfg.target.url(),
                                    node = self.cfg.node_name,
                                    "{} (seq {})",
                                    if self.sessions == 1 { "streaming" } else { "reconnected; streaming" },
                                    ack.seq
                                );
                            }
                            Reply::Ack(_) => {}
                            Reply::Resync(r) => {
                                tracing::info!(reason = r.reason, "aggregator asked for a full snapshot");
                                self.send_full(&mut s, &tx).await?;
                            }
                            Reply::Settings(cs) => {
                                if self.apply(cs) {
                                    self.send_changes(&mut s, &tx).await?;
                                }
                                if collect_tick.period() != self.interval {
                                    collect_tick = ticker(self.interval);
                                }
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(End::Lost("the aggregator ended the session".into())),
                    Err(status) => return Err(End::Lost(status_text(&status))),
                },
                _ = collect_tick.tick() => {
                    due = None;
                    self.send_changes(&mut s, &tx).await?;
                }
                Some(change) = changes.recv() => {
                    tracing::debug!(?change, "change signal");
                    due.get_or_insert(Instant::now() + DEBOUNCE);
                }
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    due = None;
                    self.send_changes(&mut s, &tx).await?;
                }
                _ = heartbeat.tick() => tx.send(Body::Heartbeat(s.heartbeat(unix_millis()))).await?,
            }
        }
    }

    /// Take pushed settings (zero or empty means "the agent's own"); true
    /// when the unit list changed and a collection is due.
    fn apply(&mut self, cs: CollectionSettings) -> bool {
        let interval = match cs.interval_seconds {
            0 => self.cfg.interval,
            n => Duration::from_secs(n.into()),
        };
        if interval != self.interval {
            tracing::info!(
                "collection interval {}",
                humantime::format_duration(interval)
            );
            self.interval = interval;
        }
        let units = if cs.systemd_units.is_empty() {
            self.cfg.collect.systemd_units.clone()
        } else {
            cs.systemd_units
        };
        if *self.units.borrow() == units {
            return false;
        }
        tracing::info!(units = ?units, "systemd units to report");
        self.units.send_replace(units);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(ca: bool, cert: bool, key: bool) -> TlsFiles {
        TlsFiles {
            ca: ca.then(|| "/ca.pem".into()),
            cert: cert.then(|| "/c.pem".into()),
            key: key.then(|| "/k.pem".into()),
        }
    }

    #[test]
    fn plain_text_only_to_loopback_and_only_when_asked() {
        for url in [
            "http://127.0.0.1:50051",
            "http://[::1]:1",
            "http://localhost:9",
        ] {
            assert!(Target::new(url, TlsFiles::default(), true).is_ok(), "{url}");
        }
        let e = Target::new("http://127.0.0.1:1", TlsFiles::default(), false).unwrap_err();
        assert!(e.contains("--insecure"), "{e}");
        let e = Target::new("http://10.0.0.1:1", TlsFiles::default(), true).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let e = Target::new("http://127.0.0.1:1", tls(true, false, false), true).unwrap_err();
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn tls_urls_refuse_insecure_and_half_identities() {
        assert!(Target::new("https://agg.aicr.svc:50051", tls(true, true, true), false).is_ok());
        assert!(Target::new("https://agg:1", TlsFiles::default(), false).is_ok());
        assert!(Target::new("https://agg:1", TlsFiles::default(), true).is_err());
        let e = Target::new("https://agg:1", tls(true, true, false), false).unwrap_err();
        assert!(e.contains("--tls-key"), "{e}");
        assert!(Target::new("agg:1", TlsFiles::default(), false).is_err());
        assert!(Target::new("ftp://agg:1", TlsFiles::default(), false).is_err());
    }

    #[test]
    fn missing_tls_files_are_named_at_connect_time() {
        let t = Target::new("https://agg:1", tls(true, false, false), false).unwrap();
        let e = t.endpoint().unwrap_err();
        assert!(e.contains("--tls-ca /ca.pem"), "{e}");
    }
}
