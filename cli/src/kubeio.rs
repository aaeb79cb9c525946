//! The CLI's bridge from its synchronous commands to sources and sinks that
//! may live in the cluster (`cm://`). File and URL I/O stays synchronous; a
//! small runtime is started only when a ConfigMap is involved.

use std::path::PathBuf;

use aicr::error::Result;
use aicr::sink::{self, OutputFormat};
use aicr::source::{self, Source};
use aicr::yaml::Format;

/// Read a source's bytes and the format they are in.
pub fn read_source(
    source: &Source,
    uri: &str,
    kubeconfig: Option<&PathBuf>,
) -> Result<(Vec<u8>, Format)> {
    match source {
        Source::ConfigMap(cm) => crate::runtime::block_on(async {
            let client = aicr::k8s::client(kubeconfig.map(|p| p.as_path())).await?;
            aicr::k8s::read_document(&client, cm).await
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
            let client = aicr::k8s::client(kubeconfig.map(|p| p.as_path())).await?;
            aicr::k8s::write_document(&client, &cm, doc_type, content, format).await
        })?;
    }
    sink::write_local(dest, content)
}
