//! AgentService: one bidirectional stream per node agent. Checks who is
//! speaking, enforces the stream's protocol (Hello first, then a full
//! snapshot, then consecutive updates and heartbeats) and a per-agent rate
//! limit, and hands every accepted message to the hub.
//!
//! Each session is its own task and only ever slows itself down: throttling
//! sleeps in that task, and a misbehaving stream ends with a status without
//! touching other nodes. This module must not evaluate or record anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aicr::model::snapshot::{MEASUREMENT_TYPES, Subtype};
use aicr::proto::agent_message::Body;
use aicr::proto::agent_service_server::AgentService;
use aicr::proto::aggregator_message::Body as Reply;
use aicr::proto::{
    Ack, AgentMessage, AggregatorMessage, CollectionSettings, Hello, Resync, SubtypeState,
};
use futures::SinkExt;
use futures::channel::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::hub::{Hub, Refusal, Session};
use crate::identity::NodeIdentity;
use crate::metrics::{KindLabel, ReasonLabel};
use crate::state::{Reported, scope};
use crate::states::{States, content_key};

/// Non-Hello messages tolerated (each answered with Resync) before Hello.
const HELLO_STRIKES: u32 = 3;
/// A client that does not read its replies for this long is dropped.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits one agent session lives under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sustained messages per second.
    pub rate: f64,
    /// Messages that may arrive at once above the rate.
    pub burst: f64,
    /// Time allowed between opening the stream and Hello.
    pub hello_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate: 20.0,
            burst: 40.0,
            hello_timeout: Duration::from_secs(10),
        }
    }
}

/// A token bucket that tells how long to wait instead of refusing, so a
/// chatty agent is slowed (HTTP/2 flow control then pushes back on it) but
/// never cut off, and never costs other agents anything.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate: rate.max(0.001),
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

pub struct Ingest {
    pub hub: Arc<Hub>,
    pub identity: Arc<dyn NodeIdentity>,
    pub limits: Limits,
    /// Agents must present a client certificate (mTLS is configured).
    pub require_client_cert: bool,
    pub settings: CollectionSettings,
    /// The largest agent message, whole or reassembled from Parts.
    pub max_message_bytes: usize,
    pub shutdown: CancellationToken,
    /// Every distinct subtype state, held once.
    pub states: States,
}

/// The tonic service over a shared [`Ingest`].
pub struct AgentApi(pub Arc<Ingest>);

#[tonic::async_trait]
impl AgentService for AgentApi {
    type SessionStream = mpsc::Receiver<Result<AggregatorMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let this = &self.0;
        if !this.hub.leading() {
            this.reject("not_leader");
            return Err(Status::unavailable(
                "this aggregator replica is not the leader; reconnect through the Service",
            ));
        }
        if this.require_client_cert && request.peer_certs().is_none_or(|c| c.is_empty()) {
            this.reject("no_client_cert");
            return Err(Status::unauthenticated(
                "agents must present a client certificate",
            ));
        }
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(REPLY_QUEUE);
        tokio::spawn(this.clone().run(inbound, tx));
        Ok(Response::new(rx))
    }
}

/// The `ingested` kind of an applied full snapshot; the heap trim after a
/// burst of them ([`crate::memory`]) watches its count.
pub const FULL: &str = "full";

/// Replies a session may queue before its agent reads them.
const REPLY_QUEUE: usize = 32;

/// A session's replies. futures' channel, not tokio's: tokio allocates a
/// block of 32 slots and a cache-padded header when the channel is made,
/// about 1.5 KiB for every connected agent, while this one allocates per
/// queued reply, and an agent's session nearly always has none queued.
type Tx = mpsc::Sender<Result<AggregatorMessage, Status>>;

async fn reply(tx: &mut Tx, item: Result<AggregatorMessage, Status>) -> bool {
    matches!(
        tokio::time::timeout(REPLY_TIMEOUT, tx.send(item)).await,
        Ok(Ok(()))
    )
}

fn msg(body: Reply) -> Result<AggregatorMessage, Status> {
    Ok(AggregatorMessage { body: Some(body) })
}

fn decode(states: &States, s: SubtypeState) -> Result<Reported, String> {
    if !MEASUREMENT_TYPES.contains(&s.r#type.as_str()) {
        return Err(format!(
            "unknown measurement type {:?} (valid: {})",
            s.r#type,
            MEASUREMENT_TYPES.join(", ")
        ));
    }
    if s.subtype.is_empty() {
        return Err(format!("{} subtype without a name", s.r#type));
    }
    let key = content_key(&s.r#type, &s.subtype, &s.subtype_json);
    // A state some node already holds was decoded and checked then.
    let state = match states.lookup(&key) {
        Some(state) => state,
        None => {
            let mut subtype: Subtype = serde_json::from_slice(&s.subtype_json).map_err(|e| {
                format!(
                    "{}.{}: subtype_json is not a Subtype: {e}",
                    s.r#type, s.subtype
                )
            })?;
            // The envelope names the subtype; the document must not disagree.
            subtype.subtype = s.subtype.clone();
            states.intern(&scope(&s.r#type, &s.subtype), key, subtype)
        }
    };
    Ok(Reported {
        kind: s.r#type,
        name: s.subtype,
        state,
    })
}

fn decode_all(states: &States, sent: Vec<SubtypeState>) -> Result<Vec<Reported>, String> {
    sent.into_iter().map(|s| decode(states, s)).collect()
}

impl Ingest {
    fn reject(&self, reason: &'static str) {
        self.hub
            .metrics()
            .rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    fn ingested(&self, kind: &'static str, took: Duration) {
        let metrics = self.hub.metrics();
        let kind = KindLabel { kind };
        metrics.ingested.get_or_create(&kind).inc();
        metrics
            .ingest_seconds
            .get_or_create(&kind)
            .observe(took.as_secs_f64());
    }

    /// Wait for Hello; other messages get Resync until the strikes run out.
    async fn hello(&self, inbound: &mut Streaming<AgentMessage>, tx: &mut Tx) -> Option<Hello> {
        let deadline = tokio::time::Instant::now() + self.limits.hello_timeout;
        let mut strikes = 0;
        loop {
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep_until(deadline) => {
                    self.reject("no_hello");
                    reply(tx, Err(Status::deadline_exceeded("no Hello received in time"))).await;
                    return None;
                }
                m = inbound.message() => m,
            };
            match next {
                Ok(Some(AgentMessage {
                    body: Some(Body::Hello(h)),
                })) => return Some(h),
                Ok(Some(_)) => {
                    strikes += 1;
                    self.reject("before_hello");
                    if strikes >= HELLO_STRIKES {
                        reply(
                            tx,
                            Err(Status::failed_precondition(
                                "the first message of a session must be Hello",
                            )),
                        )
                        .await;
                        return None;
                    }
                    let r = Reply::Resync(Resync {
                        reason: "send Hello first, then a full snapshot".into(),
                    });
                    if !reply(tx, msg(r)).await {
                        return None;
                    }
                }
                Ok(None) => return None,
                Err(status) => {
                    self.reject("stream_error");
                    tracing::debug!("agent stream failed before Hello: {status}");
                    reply(tx, Err(status)).await;
                    return None;
                }
            }
        }
    }

    async fn run(self: Arc<Self>, mut inbound: Streaming<AgentMessage>, mut tx: Tx) {
        let Some(hello) = self.hello(&mut inbound, &mut tx).await else {
            return;
        };
        if !aicr::flags::is_node_name(&hello.node_name) {
            self.reject("bad_node_name");
            reply(
                &mut tx,
                Err(Status::invalid_argument(format!(
                    "Hello.node_name {:?} is not a Kubernetes node name",
                    hello.node_name
                ))),
            )
            .await;
            return;
        }
        if let Err(status) = self.identity.verify(&hello).await {
            self.reject("identity");
            tracing::warn!(
                "refused agent claiming node {}: {}",
                hello.node_name,
                status.message()
            );
            reply(&mut tx, Err(status)).await;
            return;
        }
        if !self.hub.leading() {
            reply(
                &mut tx,
                Err(Status::unavailable(
                    "this aggregator replica is not the leader",
                )),
            )
            .await;
            return;
        }
        let session = self
            .hub
            .register(&hello.node_name, &hello.agent_version, &hello.boot_id);
        let reconnect = session
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reported;
        if reconnect {
            self.hub.metrics().agent_reconnects.inc();
        }
        tracing::debug!(
            "agent connected: node={} version={}",
            hello.node_name,
            hello.agent_version
        );
        if reply(&mut tx, msg(Reply::Settings(self.settings.clone()))).await {
            let end = self.serve(&session, &mut inbound, &mut tx).await;
            if let Some(status) = end {
                reply(&mut tx, Err(status)).await;
            }
        }
        self.hub.disconnect(&session);
        tracing::debug!("agent disconnected: node={}", hello.node_name);
    }

    /// The session after Hello; returns the status to end it with, if any.
    async fn serve(
        &self,
        session: &Session,
        inbound: &mut Streaming<AgentMessage>,
        tx: &mut Tx,
    ) -> Option<Status> {
        let mut bucket = Bucket::new(self.limits.rate, self.limits.burst);
        let mut parts = aicr::parts::Assembler::default();
        loop {
            let next = tokio::select! {
                _ = session.cancel.cancelled() => {
                    return Some(Status::unavailable("session superseded, or this replica stopped leading; reconnect"));
                }
                _ = self.shutdown.cancelled() => return Some(Status::unavailable("aggregator shutting down; reconnect")),
                m = inbound.message() => m,
            };
            let message = match next {
                Ok(Some(m)) => m,
                Ok(None) => return None,
                Err(status) => {
                    self.reject("stream_error");
                    tracing::debug!("agent stream failed: {status}");
                    return Some(status);
                }
            };
            // The rate limit counts whole messages; a parted one is bounded
            // by its size instead.
            let message = match parts.push(message, self.max_message_bytes) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e @ aicr::parts::PartsError::TooLarge(_)) => {
                    self.reject("invalid");
                    return Some(Status::out_of_range(e.to_string()));
                }
                Err(e) => {
                    self.reject("invalid");
                    return Some(Status::invalid_argument(e.to_string()));
                }
            };
            if let Some(wait) = bucket.take(Instant::now()) {
                self.hub.metrics().throttled.inc();
                tokio::select! {
                    _ = session.cancel.cancelled() => continue,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let applying = Instant::now();
            let (outcome, ack) = match message.body {
                Some(Body::Full(f)) => match decode_all(&self.states, f.subtypes) {
                    Ok(r) => (self.hub.apply_full(session, f.seq, r).map(|_| FULL), f.seq),
                    Err(e) => (Err(Refusal::Invalid(e)), 0),
                },
                Some(Body::Update(u)) => match decode_all(&self.states, u.changed) {
                    Ok(r) => (
                        self.hub
                            .apply_update(session, u.seq, r, &u.removed)
                            .map(|_| "update"),
                        u.seq,
                    ),
                    Err(e) => (Err(Refusal::Invalid(e)), 0),
                },
                Some(Body::Heartbeat(h)) => {
                    (self.hub.heartbeat(session, h.seq).map(|_| "heartbeat"), 0)
                }
                Some(Body::Hello(_)) => (
                    Err(Refusal::Invalid("Hello sent twice in one session".into())),
                    0,
                ),
                Some(Body::Part(_)) => (
                    Err(Refusal::Invalid("a Part outside a parted message".into())),
                    0,
                ),
                None => (Err(Refusal::Invalid("empty AgentMessage".into())), 0),
            };
            match outcome {
                Ok(kind) => {
                    self.ingested(kind, applying.elapsed());
                    if kind != "heartbeat" {
                        // Applying let go of the states the node replaced.
                        self.hub
                            .metrics()
                            .subtype_states
                            .set(self.states.len() as i64);
                    }
                    if kind != "heartbeat" && !reply(tx, msg(Reply::Ack(Ack { seq: ack }))).await {
                        return None;
                    }
                }
                Err(Refusal::Resync(reason)) => {
                    self.reject("resync");
                    if !reply(tx, msg(Reply::Resync(Resync { reason }))).await {
                        return None;
                    }
                }
                Err(Refusal::Invalid(reason)) => {
                    self.reject("invalid");
                    return Some(Status::invalid_argument(reason));
                }
                Err(Refusal::Superseded) => {
                    return Some(Status::unavailable("session superseded; reconnect"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_paces() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 3.0);
        assert!(b.take(t0).is_none());
        assert!(b.take(t0).is_none());
        assert!(b.take(t0).is_none());
        let wait = b.take(t0).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        let wait = b.take(t0).unwrap();
        assert!(
            (wait.as_secs_f64() - 0.2).abs() < 1e-9,
            "debt accumulates: {wait:?}"
        );
        assert!(
            b.take(t0 + Duration::from_secs(1)).is_none(),
            "refills with time"
        );
    }

    #[test]
    fn subtype_envelopes_are_checked() {
        let ok = SubtypeState {
            r#type: "OS".into(),
            subtype: "release".into(),
            subtype_json: br#"{"subtype":"other","data":{"ID":"ubuntu"}}"#.to_vec(),
            digest: "d".into(),
        };
        let i = States::default();
        let r = decode(&i, ok.clone()).unwrap();
        assert_eq!(
            r.state.to_subtype().subtype,
            "release",
            "the envelope names it"
        );
        assert_eq!(r.scope(), "OS.release");
        let bad_type = SubtypeState {
            r#type: "Disk".into(),
            ..ok.clone()
        };
        assert!(
            decode(&i, bad_type)
                .unwrap_err()
                .contains("unknown measurement type")
        );
        let junk = SubtypeState {
            subtype_json: b"\xff\x00".to_vec(),
            ..ok
        };
        assert!(decode(&i, junk).unwrap_err().contains("not a Subtype"));
    }
}
