//! The Kubernetes edge: building a client (`--kubeconfig`, `KUBECONFIG`,
//! `~/.kube/config`, in-cluster), mapping API failures onto the exit-code
//! kinds, and reading/writing documents kept in ConfigMaps (`cm://`).
//! Commands that need more of the cluster build on [`client`]:
//!
//! - [`measure`]: what the API server says, as snapshot measurements;
//! - [`snapshot_job`]: `aicr snapshot` in a cluster (the agent Job);
//! - [`scheduling`]: the node-selector, toleration and taint flag grammar.
//!
//! Every function that talks to the API server is `async`; whoever owns the
//! process owns the runtime.

pub mod measure;
pub mod scheduling;
pub mod snapshot_job;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, ErrorKind, Result};
use crate::sink::OutputFormat;
use crate::source::ConfigMapRef;
use crate::yaml::Format;

/// The client type the binaries hold, so they need not name `kube`.
pub use kube::Client;

/// Field manager name for server-side apply.
pub(crate) const FIELD_MANAGER: &str = "aicr";
/// Connect timeout for API calls.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The per-request read/write timeout binaries default to
/// (`--kube-timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client from an explicit kubeconfig, else the standard resolution,
/// bounding every request by `request_timeout`.
pub async fn client(kubeconfig: Option<&Path>, request_timeout: Duration) -> Result<kube::Client> {
    let mut config = match kubeconfig {
        Some(p) => {
            if !p.exists() {
                return Err(Error::not_found(format!(
                    "kubeconfig not found: {}",
                    p.display()
                )));
            }
            // kube's read error quotes the path a second time; say it once.
            let kc = Kubeconfig::read_from(p).map_err(|e| match e {
                kube::config::KubeconfigError::ReadConfig(io, _) => {
                    Error::invalid(format!("cannot read kubeconfig {}: {io}", p.display()))
                }
                other => Error::invalid(format!(
                    "invalid kubeconfig {}: {}",
                    p.display(),
                    one_line(&other)
                )),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    Error::invalid(format!(
                        "invalid kubeconfig {}: {}",
                        p.display(),
                        one_line(&e)
                    ))
                })?
        }
        None => kube::Config::infer().await.map_err(|e| {
            // KUBECONFIG naming a file that is not there is a missing input.
            let missing =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |c| {
                    c.source()
                })
                .filter_map(|c| c.downcast_ref::<std::io::Error>())
                .any(|io| io.kind() == std::io::ErrorKind::NotFound);
            Error::new(
                if missing {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::Unavailable
                },
                format!(
                    "no Kubernetes configuration found (set --kubeconfig or KUBECONFIG): {}",
                    one_line(&e)
                ),
            )
        })?,
    };
    let timeout = request_timeout;
    config.connect_timeout = Some(CONNECT_TIMEOUT.min(timeout));
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // Count the read timeout from each request, not from when its pooled
    // connection went idle; exec and attach, which this trades away a
    // check on, are never used.
    config.reset_reader_on_write = true;
    kube::Client::try_from(config).map_err(|e| api_error(e, "failed to create Kubernetes client"))
}

/// The server-side timeout, in seconds, for a watch made by a client whose
/// requests are bounded by `request_timeout`. The bound is the client's
/// read timeout, so a watch that sees no event for that long would fail as
/// a dead connection; asking the API server to end it sooner (it is then
/// reopened from the last version seen) keeps a quiet watch healthy. A
/// fifth is left as margin, within the 1 s to 290 s the API server takes.
pub fn watch_timeout(request_timeout: Duration) -> u32 {
    let secs = request_timeout.as_secs() * 4 / 5;
    secs.clamp(1, 290) as u32
}

/// A Kubernetes label value from arbitrary text: every character outside
/// `[A-Za-z0-9._-]` becomes `replacement`, at most 63 bytes, alphanumeric
/// at both ends; empty when nothing is left. The API server refuses any
/// other value.
pub fn label_value(text: &str, replacement: char) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                replacement
            }
        })
        .collect();
    let edge = |c: char| !c.is_ascii_alphanumeric();
    let mut v = mapped.trim_matches(edge);
    if v.len() > 63 {
        v = v[..63].trim_end_matches(edge);
    }
    v.to_string()
}

/// Whether `key` is a Kubernetes label key: an optional DNS-subdomain
/// prefix and `/`, then a name of at most 63 characters from
/// `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    is_label_name(name) && prefix.is_none_or(crate::flags::is_dns_subdomain)
}

/// Whether `v` is a Kubernetes label value: empty, or a label name.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty() || is_label_name(v)
}

/// A label key's name part, and any non-empty label value: at most 63
/// characters from `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn is_label_name(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Refuse a `--namespace` the API server would refuse (an RFC 1123 label:
/// lowercase letters, digits and `-`, at most 63, alphanumeric at both
/// ends), before any request is made.
pub fn check_namespace(ns: &str) -> crate::Result<()> {
    if crate::flags::is_dns_label(ns) {
        Ok(())
    } else {
        Err(crate::Error::invalid(format!(
            "invalid --namespace {ns:?}: a namespace is lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit"
        )))
    }
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Classify a kube error by what the user can do about it: 404 → not
/// found, 401/403 → unauthorized, timeouts, unreachable servers.
pub(crate) fn api_error(e: kube::Error, what: &str) -> Error {
    if let kube::Error::Api(status) = &e {
        let kind = match status.code {
            404 => ErrorKind::NotFound,
            401 | 403 => ErrorKind::Unauthorized,
            408 | 504 => ErrorKind::Timeout,
            429 => ErrorKind::RateLimit,
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        let reason = if status.message.is_empty() {
            status.reason.clone()
        } else {
            status.message.clone()
        };
        return Error::new(kind, format!("{what}: {reason} (HTTP {})", status.code));
    }
    let mut kind = ErrorKind::Internal;
    let mut cause: Option<&dyn std::error::Error> = Some(&e);
    let mut text = String::new();
    while let Some(c) = cause {
        text = c.to_string();
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            kind = match io.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::NotConnected
                | std::io::ErrorKind::AddrNotAvailable => ErrorKind::Unavailable,
                _ => kind,
            };
        }
        let lower = text.to_ascii_lowercase();
        if kind == ErrorKind::Internal {
            if lower.contains("timed out") || lower.contains("timeout") || lower.contains("elapsed")
            {
                kind = ErrorKind::Timeout;
            } else if lower.contains("connection refused")
                || lower.contains("dns error")
                || lower.contains("connect")
            {
                kind = ErrorKind::Unavailable;
            }
        }
        cause = c.source();
    }
    let hint = match kind {
        ErrorKind::Timeout => "the API server did not answer in time",
        ErrorKind::Unavailable => "the API server is unreachable",
        _ => "",
    };
    let detail = if hint.is_empty() {
        one_line(&text)
    } else {
        format!("{hint} ({})", one_line(&text))
    };
    Error::new(kind, format!("{what}: {detail}"))
}

/// Read the document a ConfigMap holds (snapshot or recipe) and its format.
/// The format comes from `data.format` when present; the key is
/// `<document>.<ext>`, trying yaml, json, txt in turn.
pub async fn read_document(client: &kube::Client, cm: &ConfigMapRef) -> Result<(Vec<u8>, Format)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &cm.namespace);
    let obj = api.get(&cm.name).await.map_err(|e| {
        api_error(
            e,
            &format!("failed to get ConfigMap {}/{}", cm.namespace, cm.name),
        )
    })?;
    let data = obj.data.unwrap_or_default();
    let hinted = data
        .get("format")
        .map(String::as_str)
        .unwrap_or("yaml")
        .to_string();
    let mut candidates: Vec<String> = Vec::new();
    for doc in ["snapshot", "recipe"] {
        candidates.push(format!("{doc}.{hinted}"));
    }
    for ext in ["yaml", "json", "txt"] {
        for doc in ["snapshot", "recipe"] {
            candidates.push(format!("{doc}.{ext}"));
        }
    }
    for key in candidates {
        if let Some(text) = data.get(&key) {
            let ext = key.rsplit('.').next().unwrap_or("yaml");
            let format = match ext {
                "json" => Format::Json,
                "yaml" | "yml" => Format::Yaml,
                _ => {
                    return Err(Error::invalid(format!(
                        "{cm}: key {key:?} holds table output, which cannot be read back"
                    )));
                }
            };
            return Ok((text.clone().into_bytes(), format));
        }
    }
    Err(Error::not_found(format!(
        "ConfigMap {}/{} has no snapshot or recipe data (expected a key such as snapshot.yaml or recipe.yaml)",
        cm.namespace, cm.name
    )))
}

/// Create or replace a ConfigMap holding one document, with server-side
/// apply so repeated writes are idempotent and no read-modify-write race
/// exists. `doc_type` is `snapshot`, `recipe` or `report`.
pub async fn write_document(
    client: &kube::Client,
    cm: &ConfigMapRef,
    doc_type: &str,
    content: &[u8],
    format: OutputFormat,
) -> Result<()> {
    let (ext, fmt) = match format {
        OutputFormat::Yaml => ("yaml", "yaml"),
        OutputFormat::Json => ("json", "json"),
        OutputFormat::Table => ("txt", "table"),
    };
    let text = String::from_utf8(content.to_vec())
        .map_err(|_| Error::internal("document is not valid UTF-8"))?;
    let component = {
        let mut c = doc_type.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "aicr".to_string()),
        ("app.kubernetes.io/component".to_string(), component),
        (
            "app.kubernetes.io/version".to_string(),
            crate::VERSION.to_string(),
        ),
    ]);
    let data = BTreeMap::from([
        (format!("{doc_type}.{ext}"), text),
        ("format".to_string(), fmt.to_string()),
        (
            "timestamp".to_string(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        ),
    ]);
    let obj = ConfigMap {
        metadata: ObjectMeta {
            name: Some(cm.name.clone()),
            namespace: Some(cm.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &cm.namespace);
    api.patch(
        &cm.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .map_err(|e| {
        api_error(
            e,
            &format!("failed to write ConfigMap {}/{}", cm.namespace, cm.name),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_end_before_the_read_timeout_within_the_api_servers_range() {
        let secs = |s| watch_timeout(Duration::from_secs(s));
        assert_eq!(secs(30), 24);
        assert_eq!(secs(2), 1);
        assert_eq!(watch_timeout(Duration::from_millis(500)), 1);
        assert_eq!(secs(3600), 290);
    }

    /// The read timeout bounds each response, not the time a pooled
    /// connection sat idle before it: a request handed a connection idle
    /// for most of the timeout used to fail ("client error (SendRequest)")
    /// however promptly the API server answered. The aggregator's watches
    /// hit that after every quiet spell.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_time_in_the_pool_does_not_count_against_the_next_response() {
        let api = aicr_test_support::FakeApiServer::start().await;
        let c = client(Some(api.kubeconfig_path()), Duration::from_secs(2))
            .await
            .unwrap();
        c.apiserver_version().await.expect("a pooled connection");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        api.set_latency(Duration::from_millis(1000));
        c.apiserver_version()
            .await
            .expect("an answer within the timeout on the idle connection");
    }

    #[test]
    fn label_keys() {
        for ok in [
            "node.kubernetes.io/instance-type",
            "nvidia.com/gpu.product",
            "topology.kubernetes.io/zone",
            "pool",
            "a_b.c-9",
        ] {
            assert!(is_label_key(ok), "{ok}");
        }
        for bad in [
            "",
            "/name",
            "prefix/",
            "-name",
            "name-",
            "Upper.Case/x",
            "a..b/x",
            "a/b/c",
            "has space",
            &"n".repeat(64),
        ] {
            assert!(!is_label_key(bad), "{bad:?}");
        }
        for ok in ["", "gpu-worker", "H100_80GB", "1.2"] {
            assert!(is_label_value(ok), "{ok:?}");
        }
        for bad in ["-x", "x.", "a b", "a/b", &"v".repeat(64)] {
            assert!(!is_label_value(bad), "{bad:?}");
        }
        assert!(check_namespace("gpu-operator").is_ok());
        for bad in ["", "Bad_NS", "-x", "x-", "a.b", &"n".repeat(64)] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }
}
