//! Wiring: the settings the binary's flags (or a test) choose, the checks
//! that refuse unsafe combinations, and starting and stopping every part in
//! the right order.
//!
//! Owns lifecycles only: no protocol or evaluation logic lives here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aicr::error::{Error, ErrorKind, Result, ResultExt};
use aicr::model::recipe::{RECIPE_RESULT_KIND, RecipeResult};
use aicr::proto::CollectionSettings;
use aicr::proto::agent_service_server::AgentServiceServer;
use aicr::proto::cluster_service_server::ClusterServiceServer;
use aicr::yaml;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::api::{CliAuth, ClusterApi};
use crate::hub::Hub;
use crate::identity::{NodeIdentity, TokenReview, TrustNodeNames};
use crate::ingest::{AgentApi, Ingest, Limits};
use crate::ingest_body::Aligned;
use crate::leader::{self, Election};
use crate::metrics::{KindLabel, Metrics};
use crate::node_status;
use crate::peers;
use crate::recorder::{self, Input};
use crate::sinks::Sinks;
use crate::states::States;
use crate::store::Store;

/// Largest CLI request (a recipe for `SetRecipe`/`Validate`).
const MAX_CLI_MESSAGE: usize = 16 * 1024 * 1024;
/// How long shutdown waits for open streams before cutting them.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require agents (and accept CLI callers) with certificates from this CA.
    pub client_ca: Option<PathBuf>,
}

/// Everything the aggregator is started with.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub recipe: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    /// Plain gRPC; only on loopback.
    pub insecure: bool,
    /// Believe agents' node names (loopback demos only).
    pub trust_node_names: bool,
    pub cli_token: Option<String>,
    /// The cluster; without it there is no cluster-level state, no
    /// TokenReview, no leader election and no Kubernetes Events.
    pub kube: Option<kube::Client>,
    /// The bound that client puts on each request; its watches end and
    /// are reopened before it.
    pub kube_timeout: Duration,
    pub token_audiences: Vec<String>,
    /// `NAMESPACE:NAME` of the agents' service account.
    pub agent_service_account: Option<String>,
    pub stale_after: Duration,
    pub election: Option<Election>,
    pub limits: Limits,
    pub max_message_bytes: usize,
    pub alertmanager: Option<String>,
    pub alert_resend: Duration,
    pub kube_events: bool,
    pub history_limit: u64,
    pub settings: CollectionSettings,
    pub version_poll: Duration,
    /// This replica's name in Events and the lease.
    pub instance: String,
    /// Node labels whose values name a node's pool.
    pub pool_labels: Vec<String>,
    /// How pools judge their members.
    pub peers: peers::Settings,
    /// The condition, reports and taint kept on Nodes (with a cluster).
    pub node_status: node_status::Settings,
}

/// Instance type, then GPU product: nodes alike in both should read alike.
pub const DEFAULT_POOL_LABELS: [&str; 2] =
    ["node.kubernetes.io/instance-type", "nvidia.com/gpu.product"];

impl Config {
    /// Local defaults: loopback, plain gRPC, trusted node names, no cluster.
    pub fn local() -> Config {
        Config {
            listen: ([127, 0, 0, 1], 0).into(),
            http_listen: ([127, 0, 0, 1], 0).into(),
            recipe: None,
            state_dir: None,
            tls: None,
            insecure: true,
            trust_node_names: true,
            cli_token: None,
            kube: None,
            kube_timeout: Duration::from_secs(30),
            token_audiences: Vec::new(),
            agent_service_account: None,
            stale_after: Duration::from_secs(30),
            election: None,
            limits: Limits::default(),
            max_message_bytes: 4 * 1024 * 1024,
            alertmanager: None,
            alert_resend: Duration::from_secs(60),
            kube_events: true,
            history_limit: 100_000,
            settings: CollectionSettings::default(),
            version_poll: Duration::from_secs(60),
            instance: "aicr-aggregator".into(),
            pool_labels: DEFAULT_POOL_LABELS.map(String::from).to_vec(),
            peers: peers::Settings::default(),
            node_status: node_status::Settings::default(),
        }
    }

    /// Refuse combinations that would expose state or accept forged agents.
    pub fn check(&self) -> Result<()> {
        let loopback = self.listen.ip().is_loopback();
        if self.tls.is_none() && !self.insecure {
            return Err(Error::invalid(
                "no TLS configured: pass --tls-cert and --tls-key (and --tls-client-ca for mTLS), or --insecure on a loopback --listen",
            ));
        }
        if self.tls.is_some() && self.insecure {
            return Err(Error::invalid(
                "--insecure and --tls-cert are mutually exclusive",
            ));
        }
        if self.insecure && !loopback {
            return Err(Error::invalid(format!(
                "--insecure is accepted only for loopback addresses, not --listen {}",
                self.listen
            )));
        }
        if self.trust_node_names && !loopback {
            return Err(Error::invalid(format!(
                "--trust-node-names is for local demos and accepted only on a loopback --listen, not {}",
                self.listen
            )));
        }
        if !self.trust_node_names && self.kube.is_none() {
            return Err(Error::invalid(
                "agent identity is checked with TokenReview, which needs a cluster (--kubeconfig or in-cluster); for a local demo use --trust-node-names",
            ));
        }
        if self.election.is_some() && self.kube.is_none() {
            return Err(Error::invalid(
                "--leader-elect needs a cluster (--kubeconfig or in-cluster)",
            ));
        }
        let client_ca = self.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if !self.insecure && !client_ca && self.cli_token.is_none() {
            return Err(Error::invalid(
                "CLI calls would be unauthenticated: pass --cli-token-file, or --tls-client-ca for client certificates",
            ));
        }
        if self
            .cli_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(Error::invalid("--cli-token-file is empty"));
        }
        if self.stale_after.is_zero() {
            return Err(Error::invalid("--stale-after must be positive"));
        }
        self.check_limits()
    }

    /// Refuse settings that would spin a loop, starve every agent or drop
    /// what must be kept; each is a mistyped flag, never a wish.
    fn check_limits(&self) -> Result<()> {
        if !(self.limits.rate.is_finite() && self.limits.rate > 0.0) {
            return Err(Error::invalid(format!(
                "--agent-rate must be a positive number of messages per second, not {}",
                self.limits.rate
            )));
        }
        if !(self.limits.burst.is_finite() && self.limits.burst >= 1.0) {
            return Err(Error::invalid(format!(
                "--agent-burst must be at least 1, not {}",
                self.limits.burst
            )));
        }
        if self.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(Error::invalid(format!(
                "--max-message-bytes must be at least {MIN_MESSAGE_BYTES}: it bounds every gRPC message, a recipe set through the API included, not {}",
                self.max_message_bytes
            )));
        }
        if self.history_limit == 0 {
            return Err(Error::invalid(
                "--history-limit must be at least 1: open drift is recovered from the history at start",
            ));
        }
        let mut periods = vec![
            ("--alertmanager-resend", self.alert_resend),
            ("--version-poll", self.version_poll),
        ];
        if let Some(e) = &self.election {
            periods.push(("--lease-duration", e.lease_duration));
        }
        for (flag, period) in periods {
            if period.is_zero() {
                return Err(Error::invalid(format!("{flag} must be positive")));
            }
        }
        if let Some(url) = &self.alertmanager {
            let uri: Option<http::Uri> = url.parse().ok();
            let web = uri.as_ref().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
            });
            if !web {
                return Err(Error::invalid(format!(
                    "--alertmanager-url {url:?} is not an http(s) URL (e.g. http://alertmanager:9093)"
                )));
            }
        }
        for key in &self.pool_labels {
            if !aicr::kubernetes::is_label_key(key) {
                return Err(Error::invalid(format!(
                    "--pool-label {key:?} is not a Kubernetes label key ([prefix/]name, e.g. node.kubernetes.io/instance-type)"
                )));
            }
        }
        Ok(())
    }
}

/// The smallest `--max-message-bytes`: room for a Part and its envelope,
/// and for recipes set through the API.
const MIN_MESSAGE_BYTES: usize = 64 * 1024;

/// Read a recipe document (YAML or JSON) from a file.
pub fn load_recipe(path: &Path) -> Result<RecipeResult> {
    let text = aicr::source::read_file(path)?;
    let recipe: RecipeResult = yaml::parse(
        yaml::utf8(&text)?,
        yaml::Format::from_path(&path.to_string_lossy()),
    )
    .context(format!("failed to load recipe {}", path.display()))?;
    if recipe.kind != RECIPE_RESULT_KIND {
        return Err(Error::invalid(format!(
            "{}: not a recipe: kind {:?}, expected {RECIPE_RESULT_KIND:?} (generate one with `aicr recipe`)",
            path.display(),
            recipe.kind
        )));
    }
    Ok(recipe)
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::invalid(format!("{what} {}: {e}", path.display())))
}

fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig> {
    let identity = Identity::from_pem(
        read_pem(&files.cert, "--tls-cert")?,
        read_pem(&files.key, "--tls-key")?,
    );
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        // Optional at the handshake: the CLI may use a bearer token
        // instead; agent sessions insist on a certificate themselves.
        tls = tls
            .client_ca_root(Certificate::from_pem(read_pem(ca, "--tls-client-ca")?))
            .client_auth_optional(true);
    }
    Ok(tls)
}

/// A deep accept backlog: after a restart or failover every agent of the
/// cluster reconnects at once, and dropped SYNs cost seconds of retry.
const BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    listen().map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot listen on {what} {addr}: {e}"),
        )
    })
}

/// A started aggregator.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub hub: Arc<Hub>,
    cancel: CancellationToken,
    grpc: JoinHandle<()>,
    http: JoinHandle<()>,
    leader: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    records: UnboundedSender<Input>,
    recorder: std::thread::JoinHandle<()>,
    store: Arc<Store>,
}

/// Start every part; returns once both listeners are bound.
pub async fn start(config: Config) -> Result<Running> {
    config.check()?;
    // Everything that can fail comes before anything is spawned.
    let identity: Arc<dyn NodeIdentity> = match &config.kube {
        _ if config.trust_node_names => Arc::new(TrustNodeNames),
        Some(client) => Arc::new(TokenReview::new(
            client.clone(),
            config.token_audiences.clone(),
            config.agent_service_account.as_deref(),
        )),
        None => return Err(Error::invalid("TokenReview needs a cluster")),
    };
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(files) = &config.tls {
        builder = builder
            .tls_config(tls_config(files)?)
            .map_err(|e| Error::invalid(format!("TLS configuration: {e}")))?;
    }
    // Listeners first: a port in use must fail before anything starts.
    let grpc_listener = bind(config.listen, "--listen")?;
    let http_listener = bind(config.http_listen, "--http-listen")?;
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(Store::open(
        config.state_dir.as_deref(),
        config.history_limit,
    )?);
    let open = store.open_events()?;
    let (records, rx) = unbounded_channel();
    let hub = Arc::new(Hub::new(
        records.clone(),
        metrics.clone(),
        config.stale_after,
        config.peers.clone(),
        config.pool_labels.clone(),
    ));
    if config.kube.is_some() {
        // Restored nodes wait for the Node watch to name their pools.
        hub.watch_node_objects();
    }
    hub.restore(store.nodes()?, &open);
    let mut baselines = Vec::new();
    for (pool, json) in store.baselines()? {
        let b = serde_json::from_slice(&json).map_err(|e| {
            Error::internal(format!(
                "state store holds an unreadable baseline for pool {pool}: {e}"
            ))
        })?;
        baselines.push((pool, b));
    }
    hub.restore_baselines(baselines);
    let recipe = match &config.recipe {
        Some(path) => Some((load_recipe(path)?, true)),
        None => match store.recipe()? {
            Some(json) => Some((
                serde_json::from_slice(&json).map_err(|e| {
                    Error::internal(format!("state store holds an unreadable recipe: {e}"))
                })?,
                false,
            )),
            None => None,
        },
    };
    if let Some((recipe, persist)) = recipe {
        let n = hub.set_recipe(recipe, persist)?;
        tracing::info!("active recipe has {n} constraints");
    } else {
        tracing::warn!(
            "no active recipe: nothing is evaluated until one is set (--recipe or SetRecipe)"
        );
    }

    let cancel = CancellationToken::new();
    let mut background = Vec::new();
    let mut sinks = Sinks::new(metrics.clone(), &open);
    if let (Some(client), true) = (&config.kube, config.kube_events) {
        background.push(sinks.start_kube_events(
            client.clone(),
            config.instance.clone(),
            cancel.clone(),
        ));
    }
    if let Some(url) = &config.alertmanager {
        // Detached: it exits when the recorder drops its queue.
        drop(sinks.start_alertmanager(url, config.alert_resend, open.clone()));
    }
    let watchers = sinks.watch_sender();
    let healthy = Arc::new(AtomicBool::new(true));
    let recorder = recorder::spawn(store.clone(), rx, sinks, healthy.clone());

    if let Some(client) = &config.kube {
        background.extend(crate::cluster_state::spawn(
            client.clone(),
            hub.clone(),
            config.version_poll,
            aicr::kubernetes::watch_timeout(config.kube_timeout),
            cancel.clone(),
        ));
    }
    if let Some(client) = &config.kube
        && config.node_status.any()
    {
        background.push(node_status::spawn(
            client.clone(),
            hub.clone(),
            config.node_status.clone(),
            metrics.clone(),
            cancel.clone(),
        ));
    }
    if let (Some(e), Some(client)) = (&config.election, &config.kube) {
        // Replicas keep their stores on their own volumes; baselines must
        // outlive a failover.
        background.push(crate::baseline_mirror::spawn(
            client.clone(),
            &e.namespace,
            e.name.clone(),
            hub.clone(),
            cancel.clone(),
        ));
    }
    let leader = match (&config.election, &config.kube) {
        (Some(e), Some(client)) => Some(leader::spawn(
            client.clone(),
            e.clone(),
            hub.clone(),
            cancel.clone(),
        )),
        _ => {
            hub.take_over();
            None
        }
    };
    {
        let hub = hub.clone();
        let cancel = cancel.clone();
        let every =
            (config.stale_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => hub.sweep_stale(),
                }
            }
        }));
    }

    {
        let full = hub
            .metrics()
            .ingested
            .get_or_create(&KindLabel {
                kind: crate::ingest::FULL,
            })
            .clone();
        let lists = hub.metrics().node_lists.clone();
        let trims = hub.metrics().heap_trims.clone();
        background.push(crate::memory::spawn(
            move || full.get() + lists.get(),
            trims,
            cancel.clone(),
        ));
    }

    let client_ca = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let ingest = Arc::new(Ingest {
        hub: hub.clone(),
        identity,
        limits: config.limits.clone(),
        require_client_cert: client_ca,
        settings: CollectionSettings {
            part_bytes: aicr::parts::PART_BYTES,
            ..config.settings.clone()
        },
        max_message_bytes: config.max_message_bytes,
        shutdown: cancel.clone(),
        states: States::default(),
    });
    let agents = Aligned(
        AgentServiceServer::new(AgentApi(ingest))
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes),
    );
    let cli = InterceptedService::new(
        ClusterServiceServer::new(ClusterApi {
            hub: hub.clone(),
            store: store.clone(),
            watchers,
            shutdown: cancel.clone(),
        })
        .max_decoding_message_size(MAX_CLI_MESSAGE)
        .max_encoding_message_size(MAX_CLI_MESSAGE),
        CliAuth {
            hub: hub.clone(),
            token: config.cli_token.as_deref().map(|t| Arc::from(t.trim())),
            open: config.insecure && config.cli_token.is_none() && !client_ca,
        },
    );
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|e| Error::internal(e.to_string()))?;
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let router = builder.add_service(agents).add_service(cli);
    let stop = cancel.clone();
    let grpc = tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
        {
            tracing::error!("gRPC server failed: {e}");
        }
    });

    let http_addr = http_listener
        .local_addr()
        .map_err(|e| Error::internal(e.to_string()))?;
    let app = crate::http::router(hub.clone(), healthy);
    let stop = cancel.clone();
    let http = tokio::spawn(async move {
        if let Err(e) = axum::serve(http_listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!("HTTP server failed: {e}");
        }
    });
    tracing::info!("aggregator listening: grpc={grpc_addr} http={http_addr}");
    Ok(Running {
        grpc_addr,
        http_addr,
        hub,
        cancel,
        grpc,
        http,
        leader,
        background,
        records,
        recorder,
        store,
    })
}

async fn join_or_abort(task: JoinHandle<()>) {
    let abort = task.abort_handle();
    if tokio::time::timeout(GRACE, task).await.is_err() {
        abort.abort();
    }
}

impl Running {
    /// Stop cleanly: hand back the lease, end sessions (agents reconnect
    /// elsewhere), commit what is pending and close the store.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Some(leader) = self.leader {
            join_or_abort(leader).await;
        }
        join_or_abort(self.grpc).await;
        join_or_abort(self.http).await;
        for task in self.background {
            task.abort();
        }
        Self::finish(self.records, self.recorder, self.store).await;
    }

    /// Stop as a crash would: no lease hand-back, connections cut. Only
    /// the store is closed, so the same process can start again on it.
    pub async fn kill(self) {
        for task in self.background {
            task.abort();
        }
        if let Some(leader) = self.leader {
            leader.abort();
        }
        self.grpc.abort();
        self.http.abort();
        self.hub.step_down();
        self.cancel.cancel();
        Self::finish(self.records, self.recorder, self.store).await;
    }

    async fn finish(
        records: UnboundedSender<Input>,
        recorder: std::thread::JoinHandle<()>,
        store: Arc<Store>,
    ) {
        let _ = records.send(Input::Stop);
        let _ = tokio::task::spawn_blocking(move || recorder.join()).await;
        store.close();
    }
}
