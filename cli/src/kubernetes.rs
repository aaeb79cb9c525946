//! The CLI's door to the cluster: Kubernetes clients bounded by the
//! process's `--kube-timeout`, and the bridge from synchronous commands to
//! sources and sinks that may live in the cluster (`cm://`). File and URL
//! I/O stays synchronous; a small runtime is started only when a ConfigMap
//! is involved.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use aicr::error::Result;
use aicr::sink::{self, OutputFormat};
use aicr::source::{self, Source};
use aicr::yaml::Format;

static REQUEST_TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// Set once, from the global `--kube-timeout`, before any command runs.
pub fn set_request_timeout(timeout: Duration) {
    let _ = REQUEST_TIMEOUT.set(timeout);
}

/// The per-request bound every Kubernetes call of this process uses.
pub fn request_timeout() -> Duration {
    REQUEST_TIMEOUT
        .get()
        .copied()
        .unwrap_or(aicr::kubernetes::REQUEST_TIMEOUT)
}

/// A client from `kubeconfig` (else the standard resolution).
pub async fn client(kubeconfig: Option<&Path>) -> Result<aicr::kubernetes::Client> {
    aicr::kubernetes::client(kubeconfig, request_timeout()).await
}

/// Read a source's bytes and the format they are in.
pub fn read_source(
    source: &Source,
    uri: &str,
    kubeconfig: Option<&PathBuf>,
) -> Result<(Vec<u8>, Format)> {
    match source {
        Source::ConfigMap(cm) => crate::runtime::block_on(async {
            let client = client(kubeconfig.map(|p| p.as_path())).await?;
            aicr::kubernetes::read_document(&client, cm).await
        })?,
        other => Ok((source::read_local_or_http(other)?, other.format(uri))),
    }
}

/// Write a document to stdout, a file or a ConfigMap.
pub fn write_destination(
    dest: &str,
    content: &[u8],
    doc_type: &str,
    kubeconfig: Option<&PathBuf>,
    format: OutputFormat,
) -> Result<()> {
    if dest.starts_with("cm://") {
        let cm = source::ConfigMapRef::parse(dest)?;
        return crate::runtime::block_on(async {
            let client = client(kubeconfig.map(|p| p.as_path())).await?;
            aicr::kubernetes::write_document(&client, &cm, doc_type, content, format).await
        })?;
    }
    sink::write_local(dest, content)
}
