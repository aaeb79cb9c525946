//! ClusterService: what the CLI asks of the aggregator (node list, a node's
//! snapshot, open and past drift, a live drift stream, per-node validation,
//! the active recipe), and who may ask.
//!
//! Reads the hub and the store; its only writes are `SetRecipe` and the
//! baselines, through the hub. Documents travel as the JSON of their spec'd shapes, produced by the
//! same core types as the CLI's local commands.

use std::sync::Arc;
use std::time::SystemTime;

use aicr::model::recipe::{RECIPE_RESULT_KIND, RecipeResult};
use aicr::model::snapshot::Snapshot;
use aicr::proto::cluster_service_server::ClusterService;
use aicr::proto::drift_event::Source;
use aicr::proto::list_violations_request::Which;
use aicr::proto::{
    Baseline, BundleRequest, ClearBaselineReply, ClearBaselineRequest, DocumentReply, DriftEvent,
    FileChunk, GetRecipeRequest, GetSnapshotRequest, ListBaselinesReply, ListBaselinesRequest,
    ListNodesReply, ListNodesRequest, ListViolationsReply, ListViolationsRequest,
    SetBaselineRequest, SetRecipeReply, SetRecipeRequest, ValidateRequest, WatchDriftRequest,
};
use aicr::validate::ctrf::{Report, Test, epoch_ms};
use aicr::validate::readiness::{self, Fleet, NodeSnapshot};
use subtle::ConstantTimeEq;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::hub::Hub;
use crate::store::Store;

/// Default and maximum events one `ListViolations` answer carries.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
/// Page size when a watch replays history from the store.
const REPLAY_PAGE: usize = 1000;

/// Admits CLI calls: a verified client certificate, or the bearer token
/// from `--cli-token-file`; with neither configured (loopback `--insecure`
/// only) everyone. Also refuses everything while this replica does not lead,
/// since a standby's view is empty.
#[derive(Clone)]
pub struct CliAuth {
    pub hub: Arc<Hub>,
    pub token: Option<Arc<str>>,
    pub open: bool,
}

/// Whether the bearer token sent is the one expected, compared in constant
/// time so that a mismatch does not tell where it starts.
fn token_matches(sent: &str, want: &str) -> bool {
    bool::from(sent.trim().as_bytes().ct_eq(want.as_bytes()))
}

impl tonic::service::Interceptor for CliAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if !self.hub.leading() {
            return Err(Status::unavailable(
                "this aggregator replica is not the leader; retry through the Service",
            ));
        }
        if self.open || req.peer_certs().is_some_and(|c| !c.is_empty()) {
            return Ok(req);
        }
        if let Some(want) = &self.token {
            let got = req
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if token_matches(got, want) {
                return Ok(req);
            }
        }
        Err(Status::unauthenticated(
            "aggregator refused the call: send the token from the aggregator's --cli-token-file (AICR_TOKEN or --token) or a client certificate",
        ))
    }
}

pub struct ClusterApi {
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    pub watchers: broadcast::Sender<DriftEvent>,
    /// Ends watch streams when the aggregator stops.
    pub shutdown: CancellationToken,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Response<DocumentReply>, Status> {
    Ok(Response::new(DocumentReply {
        json: serde_json::to_vec(v).map_err(internal)?,
    }))
}

fn parse_recipe(json: &[u8]) -> Result<RecipeResult, Status> {
    let recipe: RecipeResult = serde_json::from_slice(json)
        .map_err(|e| Status::invalid_argument(format!("recipe_json is not a RecipeResult: {e}")))?;
    if recipe.kind != RECIPE_RESULT_KIND {
        return Err(Status::invalid_argument(format!(
            "not a recipe: kind {:?}, expected {RECIPE_RESULT_KIND:?}",
            recipe.kind
        )));
    }
    Ok(recipe)
}

impl ClusterApi {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> aicr::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(internal)?
            .map_err(internal)
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<DocumentReply>, Status> {
        let node = request.into_inner().node_name;
        if node.is_empty() {
            return to_json(&self.hub.cluster_snapshot());
        }
        match self.hub.node_snapshot(&node) {
            Some(snap) => to_json(&snap),
            None if self.hub.list_nodes().iter().any(|n| n.node_name == node) => {
                Err(Status::not_found(format!(
                    "node {node:?} has not sent its state since the aggregator started; wait for its agent to reconnect"
                )))
            }
            None => Err(Status::not_found(format!(
                "node {node:?} is unknown to the aggregator (no agent has reported it); see `aicr nodes`"
            ))),
        }
    }

    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesReply>, Status> {
        Ok(Response::new(ListNodesReply {
            nodes: self.hub.list_nodes(),
        }))
    }

    type WatchDriftStream = ReceiverStream<Result<DriftEvent, Status>>;

    async fn watch_drift(
        &self,
        request: Request<WatchDriftRequest>,
    ) -> Result<Response<Self::WatchDriftStream>, Status> {
        // Subscribe before reading history so nothing falls in between;
        // ids drop what both deliver.
        let mut live = self.watchers.subscribe();
        let since = request.into_inner().since_id;
        let store = self.store.clone();
        let shutdown = self.shutdown.clone();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut last = since;
            let replay = |after: u64| {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.after(after, REPLAY_PAGE))
            };
            let mut catch_up = since > 0;
            loop {
                if catch_up {
                    match replay(last).await {
                        Ok(Ok(page)) => {
                            catch_up = page.len() == REPLAY_PAGE;
                            for ev in page {
                                last = ev.id;
                                if tx.send(Ok(ev)).await.is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(internal(e))).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(internal(e))).await;
                            return;
                        }
                    }
                }
                let ev = tokio::select! {
                    _ = tx.closed() => return,
                    _ = shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("aggregator shutting down"))).await;
                        return;
                    }
                    ev = live.recv() => ev,
                };
                match ev {
                    Ok(ev) if ev.id <= last => {}
                    Ok(ev) => {
                        last = ev.id;
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    // Fell behind the live buffer: the store has it all.
                    Err(broadcast::error::RecvError::Lagged(_)) => catch_up = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_violations(
        &self,
        request: Request<ListViolationsRequest>,
    ) -> Result<Response<ListViolationsReply>, Status> {
        let req = request.into_inner();
        let limit = match req.limit as usize {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let which = req.which();
        let keep = move |ev: &DriftEvent| match which {
            Which::All => true,
            Which::Peers => ev.source == Source::Peers as i32,
            Which::Constraints => ev.source != Source::Peers as i32,
        };
        let events = if req.history {
            self.blocking(move |s| s.recent(limit, keep)).await?
        } else {
            let mut open = self.blocking(|s| s.open_events()).await?;
            open.retain(keep);
            if req.limit > 0 && open.len() > limit {
                open.drain(..open.len() - limit);
            }
            open
        };
        Ok(Response::new(ListViolationsReply { events }))
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<DocumentReply>, Status> {
        let started = SystemTime::now();
        let json = request.into_inner().recipe_json;
        let recipe = if json.is_empty() {
            self.hub.recipe().ok_or_else(|| {
                Status::failed_precondition(
                    "no active recipe: pass one, or set it with --recipe / SetRecipe",
                )
            })?
        } else {
            Arc::new(parse_recipe(&json)?)
        };
        readiness::check_recipe(&recipe, "request")
            .map_err(|e| Status::invalid_argument(e.message().to_string()))?;
        let mut nodes = Vec::new();
        let mut skipped = Vec::new();
        for info in self.hub.list_nodes() {
            match self.hub.node_snapshot(&info.node_name) {
                Some(snapshot) => nodes.push(NodeSnapshot {
                    node: info.node_name.clone(),
                    source: format!("aggregator:{}", info.node_name),
                    snapshot,
                }),
                None => skipped.push(info.node_name),
            }
        }
        if nodes.is_empty() && skipped.is_empty() {
            return Err(Status::failed_precondition(
                "no node has reported to the aggregator yet",
            ));
        }
        let mut tests = Fleet::evaluate(&recipe.constraints, &nodes).tests();
        for node in &skipped {
            for c in &recipe.constraints {
                tests.push(Test::skipped(
                    &c.name,
                    &[readiness::SUITE, node],
                    "no state from this node's agent since the aggregator started",
                ));
            }
        }
        let report = Report::build(aicr::VERSION, epoch_ms(started), tests, SystemTime::now());
        let text = report.to_json().map_err(internal)?;
        Ok(Response::new(DocumentReply {
            json: text.into_bytes(),
        }))
    }

    type BundleStream = ReceiverStream<Result<FileChunk, Status>>;

    async fn bundle(
        &self,
        request: Request<BundleRequest>,
    ) -> Result<Response<Self::BundleStream>, Status> {
        let req = request.into_inner();
        let recipe = if req.recipe_json.is_empty() {
            self.hub.recipe().ok_or_else(|| {
                Status::failed_precondition(
                    "no active recipe: pass one, or set it with --recipe / SetRecipe",
                )
            })?
        } else {
            Arc::new(parse_recipe(&req.recipe_json)?)
        };
        let invalid = |e: aicr::Error| Status::invalid_argument(e.message().to_string());
        let opts = aicr::bundle::Options {
            deployer: if req.deployer.is_empty() {
                aicr::bundle::Deployer::Helm
            } else {
                aicr::bundle::Deployer::parse(&req.deployer).map_err(invalid)?
            },
            set: aicr::bundle::set::SetOverrides::parse(&req.set).map_err(invalid)?,
            ..Default::default()
        };
        // Rendering is CPU-bound and may run kustomize; keep it off the
        // reactor threads that serve agents.
        let bundle = tokio::task::spawn_blocking(move || {
            let catalog = aicr::catalog::Catalog::embedded()?;
            aicr::bundle::generate(
                catalog,
                &recipe,
                &opts,
                &aicr::bundle::manifests::ExternalKustomize,
            )
        })
        .await
        .map_err(internal)?
        .map_err(|e| match e.kind() {
            aicr::ErrorKind::InvalidRequest => invalid(e),
            _ => internal(e),
        })?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let total = bundle.files.len();
            for (i, (path, file)) in bundle.files.into_iter().enumerate() {
                let chunk = FileChunk {
                    path,
                    data: file.content.into_owned(),
                    mode: file.mode,
                    last: i + 1 == total,
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_recipe(
        &self,
        _: Request<GetRecipeRequest>,
    ) -> Result<Response<DocumentReply>, Status> {
        match self.hub.recipe() {
            Some(r) => to_json(&*r),
            None => Err(Status::not_found(
                "no active recipe: start the aggregator with --recipe or set one with SetRecipe",
            )),
        }
    }

    async fn set_recipe(
        &self,
        request: Request<SetRecipeRequest>,
    ) -> Result<Response<SetRecipeReply>, Status> {
        let recipe = parse_recipe(&request.into_inner().recipe_json)?;
        let hub = self.hub.clone();
        let n = tokio::task::spawn_blocking(move || hub.set_recipe(recipe, true))
            .await
            .map_err(internal)?
            .map_err(|e| Status::invalid_argument(e.message().to_string()))?;
        Ok(Response::new(SetRecipeReply {
            constraints: n as u32,
        }))
    }

    async fn set_baseline(
        &self,
        request: Request<SetBaselineRequest>,
    ) -> Result<Response<Baseline>, Status> {
        let req = request.into_inner();
        let pool = pool_name(&req.pool)?;
        let snapshot = if req.snapshot_json.is_empty() {
            None
        } else {
            let text = std::str::from_utf8(&req.snapshot_json)
                .map_err(|_| Status::invalid_argument("snapshot_json is not UTF-8"))?;
            Some(
                Snapshot::parse(text, aicr::yaml::Format::Json).map_err(|e| {
                    Status::invalid_argument(format!("snapshot_json: {}", e.message()))
                })?,
            )
        };
        let hub = self.hub.clone();
        let b = tokio::task::spawn_blocking(move || {
            hub.set_baseline(&pool, snapshot.as_ref())
                .map(|b| b.to_proto(&pool))
        })
        .await
        .map_err(internal)?
        .map_err(|e| match e.kind() {
            aicr::ErrorKind::NotFound => Status::not_found(e.message().to_string()),
            aicr::ErrorKind::InvalidRequest => Status::invalid_argument(e.message().to_string()),
            _ => internal(e),
        })?;
        Ok(Response::new(b))
    }

    async fn list_baselines(
        &self,
        request: Request<ListBaselinesRequest>,
    ) -> Result<Response<ListBaselinesReply>, Status> {
        let pool = request.into_inner().pool;
        let pool = (!pool.is_empty()).then_some(pool.as_str());
        let baselines = self
            .hub
            .baselines(pool)
            .into_iter()
            .map(|(name, b)| b.to_proto(&name))
            .collect();
        Ok(Response::new(ListBaselinesReply { baselines }))
    }

    async fn clear_baseline(
        &self,
        request: Request<ClearBaselineRequest>,
    ) -> Result<Response<ClearBaselineReply>, Status> {
        let pool = pool_name(&request.into_inner().pool)?;
        let hub = self.hub.clone();
        let cleared = tokio::task::spawn_blocking(move || hub.clear_baseline(&pool))
            .await
            .map_err(internal)?;
        Ok(Response::new(ClearBaselineReply { cleared }))
    }
}

/// Pool names are label values joined by `/`: short, printable.
fn pool_name(pool: &str) -> Result<String, Status> {
    if pool.is_empty() || pool.len() > 512 || pool.chars().any(char::is_control) {
        return Err(Status::invalid_argument(
            "pool must be a pool name as `aicr nodes` shows it",
        ));
    }
    Ok(pool.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_is_exact() {
        assert!(token_matches("abc", "abc"));
        assert!(
            token_matches(" abc\n", "abc"),
            "surrounding space is not the token"
        );
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "abcd"));
        assert!(!token_matches("abcd", "abc"));
        assert!(!token_matches("", "a"));
    }

    #[test]
    fn recipes_must_say_what_they_are() {
        assert!(parse_recipe(b"{").is_err());
        let e = parse_recipe(br#"{"kind":"Snapshot","apiVersion":"x"}"#).unwrap_err();
        assert!(e.message().contains("not a recipe"), "{e}");
    }
}
