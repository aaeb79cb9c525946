//! Kubeconfig files pointing clients at a server URL, so product code loads
//! its client exactly as it would for a real cluster.

use crate::fake_cluster::USER;
use std::io::Write;
use tempfile::NamedTempFile;

/// The bearer token the generated kubeconfig presents; the fake accepts any.
const TOKEN: &str = "fake-token";

/// Writes a kubeconfig whose current context reaches `server_url` (e.g.
/// `http://127.0.0.1:8080`) as user `fake-user` with a bearer token and
/// default namespace `default`. The file lives as long as the returned handle.
pub fn kubeconfig_for(server_url: &str) -> NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("fake-kubeconfig-")
        .suffix(".yaml")
        .tempfile()
        .expect("a temporary kubeconfig can be created");
    write!(
        file,
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server_url}
contexts:
- name: fake
  context:
    cluster: fake
    user: {USER}
    namespace: default
current-context: fake
users:
- name: {USER}
  user:
    token: {TOKEN}
"
    )
    .expect("the temporary kubeconfig can be written");
    file.flush()
        .expect("the temporary kubeconfig can be flushed");
    file
}

/// A kubeconfig for a local port nothing listens on, so connections are
/// refused. The port was just free; another process could claim it, which
/// is unlikely enough for tests.
pub fn unreachable_kubeconfig() -> NamedTempFile {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port can be found")
        .port();
    kubeconfig_for(&format!("http://127.0.0.1:{port}"))
}
