//! A simulated node agent for tests and benchmarks (a named fake, never in a
//! product binary). It speaks AgentService the way the real agent does —
//! Hello, a full snapshot, per-subtype updates with consecutive sequence
//! numbers, heartbeats — and lets a test break the protocol on purpose with
//! [`SimAgent::send`].

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use aicr::model::snapshot::Subtype;
use aicr::proto::agent_message::Body;
use aicr::proto::agent_service_client::AgentServiceClient;
use aicr::proto::aggregator_message::Body as Reply;
use aicr::proto::{
    AgentMessage, AggregatorMessage, FullSnapshot, Heartbeat, Hello, SubtypeState, SubtypeUpdate,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

/// How long a simulated agent waits for any one reply.
pub const REPLY_WAIT: Duration = Duration::from_secs(10);

/// FNV-1a over the JSON: any stable digest will do for the aggregator.
pub fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub fn state(kind: &str, st: &Subtype) -> SubtypeState {
    let json = serde_json::to_vec(st).expect("a subtype encodes");
    SubtypeState {
        r#type: kind.to_string(),
        subtype: st.subtype.clone(),
        digest: digest(&json),
        subtype_json: json,
    }
}

/// A node's readings much like a real agent reports them.
pub fn node_readings(os_version: &str) -> Vec<(String, Subtype)> {
    let mut kmod = Subtype::new("kmod");
    for m in [
        "nvidia",
        "nvidia_uvm",
        "nvidia_modeset",
        "nvidia_peermem",
        "ib_core",
        "mlx5_core",
    ] {
        kmod.data.insert(m.into(), true.into());
    }
    let mut sysctl = Subtype::new("sysctl");
    for i in 0..40 {
        sysctl.data.insert(
            format!("/proc/sys/net/ipv4/conf/eth{i}/rp_filter"),
            "1".into(),
        );
    }
    vec![
        (
            "OS".into(),
            Subtype::new("release")
                .with("ID", "ubuntu")
                .with("VERSION_ID", os_version)
                .with("PRETTY_NAME", format!("Ubuntu {os_version} LTS")),
        ),
        ("OS".into(), kmod),
        ("OS".into(), sysctl),
        (
            "OS".into(),
            Subtype::new("grub")
                .with("BOOT_IMAGE", "/boot/vmlinuz-6.8.0-1028-aws")
                .with("iommu", "pt"),
        ),
        (
            "GPU".into(),
            Subtype::new("smi")
                .with("driver", "570.133.20")
                .with("cuda-version", "12.8")
                .with("gpu-count", 8i64)
                .with("gpu.model", "NVIDIA H100 80GB HBM3"),
        ),
        (
            "SystemD".into(),
            Subtype::new("containerd")
                .with("ActiveState", "active")
                .with("SubState", "running"),
        ),
    ]
}

pub fn endpoint(url: &str) -> Endpoint {
    Endpoint::from_shared(url.to_string())
        .expect("a valid URL")
        .connect_timeout(Duration::from_secs(5))
}

pub async fn channel(url: &str) -> Channel {
    endpoint(url)
        .connect()
        .await
        .expect("the aggregator accepts connections")
}

pub fn hello(node: &str, token: &str) -> Hello {
    Hello {
        node_name: node.into(),
        agent_version: "v0.1.0-sim".into(),
        boot_id: format!("boot-{node}"),
        identity_token: token.into(),
    }
}

pub fn message(body: Body) -> AgentMessage {
    AgentMessage { body: Some(body) }
}

pub struct SimAgent {
    pub node: String,
    tx: mpsc::Sender<AgentMessage>,
    replies: Streaming<AggregatorMessage>,
    pub seq: u64,
    readings: BTreeMap<(String, String), Subtype>,
    /// From the aggregator's settings: bigger messages go in Parts.
    part_bytes: u32,
}

impl SimAgent {
    /// Open a session and send `first` before anything else (a Hello for a
    /// well-behaved agent); does not wait for the aggregator's answer.
    pub async fn open(
        channel: Channel,
        node: &str,
        first: Option<AgentMessage>,
    ) -> Result<SimAgent, Status> {
        let (tx, rx) = mpsc::channel(64);
        if let Some(m) = first {
            tx.send(m).await.expect("queue has room");
        }
        let mut client = AgentServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        let replies = client.session(ReceiverStream::new(rx)).await?.into_inner();
        Ok(SimAgent {
            node: node.into(),
            tx,
            replies,
            seq: 0,
            readings: BTreeMap::new(),
            part_bytes: 0,
        })
    }

    /// Hello, then wait until the aggregator accepts it (its settings).
    pub async fn connect(channel: Channel, node: &str, token: &str) -> Result<SimAgent, Status> {
        let mut a = Self::open(
            channel,
            node,
            Some(message(Body::Hello(hello(node, token)))),
        )
        .await?;
        match a.next().await {
            Some(Ok(AggregatorMessage {
                body: Some(Reply::Settings(cs)),
            })) => {
                a.part_bytes = cs.part_bytes;
                Ok(a)
            }
            Some(Ok(other)) => Err(Status::internal(format!(
                "expected settings, got {other:?}"
            ))),
            Some(Err(s)) => Err(s),
            None => Err(Status::unavailable("stream ended before settings")),
        }
    }

    /// Send anything, in or out of protocol.
    pub async fn send(&mut self, m: AgentMessage) {
        // A closed stream shows up as the next reply's error.
        let _ = self.tx.send(m).await;
    }

    /// Send a message as the real agent does: in Parts when it is larger
    /// than the aggregator asked for.
    pub async fn send_whole(&mut self, m: AgentMessage) {
        for piece in aicr::parts::split(m, self.part_bytes) {
            self.send(piece).await;
        }
    }

    pub async fn next(&mut self) -> Option<Result<AggregatorMessage, Status>> {
        match tokio::time::timeout(REPLY_WAIT, self.replies.message()).await {
            Ok(Ok(Some(m))) => Some(Ok(m)),
            Ok(Ok(None)) => None,
            Ok(Err(s)) => Some(Err(s)),
            Err(_) => Some(Err(Status::deadline_exceeded(
                "no reply from the aggregator",
            ))),
        }
    }

    /// The next reply must be an Ack of the last seq sent.
    pub async fn acked(&mut self) -> Result<(), Status> {
        match self.next().await {
            Some(Ok(AggregatorMessage {
                body: Some(Reply::Ack(a)),
            })) if a.seq == self.seq => Ok(()),
            Some(Ok(other)) => Err(Status::internal(format!(
                "expected ack {}, got {other:?}",
                self.seq
            ))),
            Some(Err(s)) => Err(s),
            None => Err(Status::unavailable("stream ended")),
        }
    }

    /// Send every reading as a full snapshot.
    pub async fn full(&mut self, readings: Vec<(String, Subtype)>) -> Result<(), Status> {
        self.readings = readings
            .into_iter()
            .map(|(k, s)| ((k, s.subtype.clone()), s))
            .collect();
        self.seq += 1;
        let subtypes = self
            .readings
            .iter()
            .map(|((k, _), s)| state(k, s))
            .collect();
        self.send_whole(message(Body::Full(FullSnapshot {
            seq: self.seq,
            subtypes,
        })))
        .await;
        self.acked().await
    }

    /// Resend the last full snapshot (what an agent does on reconnect).
    pub async fn resend_full(&mut self) -> Result<(), Status> {
        let all = self
            .readings
            .iter()
            .map(|((k, _), s)| (k.clone(), s.clone()))
            .collect();
        self.full(all).await
    }

    /// Send one changed subtype without waiting for the Ack.
    pub async fn push_update(&mut self, kind: &str, st: Subtype) {
        self.seq += 1;
        let changed = vec![state(kind, &st)];
        self.readings.insert((kind.into(), st.subtype.clone()), st);
        self.send_whole(message(Body::Update(SubtypeUpdate {
            seq: self.seq,
            changed,
            removed: Vec::new(),
        })))
        .await;
    }

    pub async fn update(&mut self, kind: &str, st: Subtype) -> Result<(), Status> {
        self.push_update(kind, st).await;
        self.acked().await
    }

    pub async fn heartbeat(&mut self) {
        let seq = self.seq;
        self.send(message(Body::Heartbeat(Heartbeat {
            seq,
            unix_millis: 0,
        })))
        .await;
    }

    pub fn reading(&self, kind: &str, subtype: &str) -> Option<&Subtype> {
        self.readings.get(&(kind.to_string(), subtype.to_string()))
    }
}
