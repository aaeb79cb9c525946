//! Test support shared by the workspace's integration tests.
//!
//! Everything here is a named fake for tests; nothing in it is linked into a
//! production binary.
//!
//! The centrepiece is [`FakeApiServer`]: an in-process Kubernetes API server
//! spoken to over real HTTP through a generated kubeconfig, so product code
//! builds its `kube::Client` exactly as it would against a cluster.
//!
//! ```no_run
//! # async fn demo() {
//! use aicr_test_support::{FakeApiServer, fixtures};
//! let api = FakeApiServer::start().await;
//! api.insert(fixtures::node("gpu-1").gpus(8).build());
//! api.deny("configmaps", "create");
//! let client = api.client().await;
//! // ... run product code with `client` or `api.kubeconfig_path()` ...
//! assert!(api.requests().iter().all(|r| !r.is_write()));
//! # }
//! ```

pub mod api_objects;
mod discovery;
mod fake_cluster;
pub mod fixtures;
mod kubeconfig;
pub mod logs;
mod oci_registry;
mod patch;
mod proc;
mod resources;
mod selectors;
mod serve;
mod server;
mod static_http;
mod status;
mod store;
pub mod tools;
mod validation;

pub use fake_cluster::{FakeCluster, RecordedRequest};
pub use kubeconfig::{kubeconfig_for, unreachable_kubeconfig};
pub use oci_registry::{FakeOciRegistry, StoredManifest};
pub use proc::Proc;
pub use static_http::StaticHttp;

use std::path::Path;
use tempfile::NamedTempFile;

/// A fake API server listening on `127.0.0.1` at a random port, with a
/// kubeconfig pointing at it. It dereferences to [`FakeCluster`] for seeding,
/// inspecting and shaping the cluster.
///
/// The server runs on its own thread and runtime, so tests may block (or run
/// product code that starts its own runtime) without stalling it. Dropping it
/// stops the server and ends open watches.
pub struct FakeApiServer {
    cluster: FakeCluster,
    served: serve::Served,
    kubeconfig: NamedTempFile,
}

impl FakeApiServer {
    /// Starts a server from async code. The server never shares the caller's
    /// runtime; this is `async` so call sites read naturally in async tests.
    pub async fn start() -> Self {
        Self::start_blocking()
    }

    /// Starts a server from synchronous code.
    pub fn start_blocking() -> Self {
        let cluster = FakeCluster::new();
        let served = serve::Served::start("fake-apiserver", server::router(cluster.clone()));
        FakeApiServer {
            kubeconfig: kubeconfig_for(&format!("http://{}", served.address)),
            cluster,
            served,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.served.address)
    }

    /// A kubeconfig whose current context reaches this server.
    pub fn kubeconfig_path(&self) -> &Path {
        self.kubeconfig.path()
    }

    /// The client configuration loaded from [`Self::kubeconfig_path`], for
    /// tests that adjust it (timeouts) before building a client.
    pub async fn config(&self) -> kube::Config {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())
            .expect("the generated kubeconfig parses");
        kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("the generated kubeconfig is usable")
    }

    /// A client built from the generated kubeconfig.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config().await)
            .expect("a client can be built for the fake API server")
    }
}

impl std::ops::Deref for FakeApiServer {
    type Target = FakeCluster;

    fn deref(&self) -> &FakeCluster {
        &self.cluster
    }
}
