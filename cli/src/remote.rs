//! The CLI's client of the aggregator: reaching it (URL, TLS, bearer
//! token), bounding calls, and mapping its answers onto the exit-code
//! table. `snapshot --aggregator`, `validate --aggregator` and the fleet
//! verbs (`nodes`, `drift`, `watch`) all go through here; nothing here
//! prints.

use std::path::PathBuf;
use std::time::Duration;

use aicr::error::{Error, ErrorKind, Result};
use aicr::model::recipe::RecipeResult;
use aicr::model::snapshot::Snapshot;
use aicr::proto::cluster_service_client::ClusterServiceClient;
use aicr::proto::{GetSnapshotRequest, ValidateRequest};
use aicr::sink::OutputFormat;
use aicr::validate::Report;
use aicr::yaml;

use clap::Args;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for one unary call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest document the aggregator may send back (a fleet's CTRF report).
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// How to authenticate to the aggregator.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Bearer token for the aggregator's CLI API
    #[arg(long, env = "AICR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate that signed the aggregator's certificate (https URLs)
    #[arg(long, env = "AICR_AGGREGATOR_CA")]
    pub aggregator_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, instead of a token
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Key of --client-cert (PEM)
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// The aggregator URL: `--aggregator`, else `AICR_AGGREGATOR`.
pub fn resolve_url(flag: Option<&str>) -> Result<String> {
    flag.map(str::to_string)
        .or_else(|| std::env::var("AICR_AGGREGATOR").ok())
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            Error::invalid("no aggregator given: pass --aggregator URL or set AICR_AGGREGATOR")
        })
}

/// Map a gRPC status onto the exit-code table.
pub fn status_error(s: Status, what: &str) -> Error {
    let kind = match s.code() {
        Code::NotFound => ErrorKind::NotFound,
        Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Unauthorized,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        Code::Unavailable => ErrorKind::Unavailable,
        Code::ResourceExhausted => ErrorKind::RateLimit,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            ErrorKind::InvalidRequest
        }
        _ => ErrorKind::Internal,
    };
    let msg = s.message().lines().next().unwrap_or_default().to_string();
    Error::new(kind, format!("{what}: {msg}"))
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Client = ClusterServiceClient<InterceptedService<Channel, Bearer>>;

fn read(path: &PathBuf, flag: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::invalid(format!("{flag} {}: {e}", path.display())))
}

/// Connect to the aggregator at `url`.
pub async fn connect(url: &str, conn: &Connection) -> Result<Client> {
    let https = url.starts_with("https://");
    if !https && !url.starts_with("http://") {
        return Err(Error::invalid(format!(
            "--aggregator {url:?} must be an http:// or https:// URL"
        )));
    }
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::invalid(format!("--aggregator {url:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT);
    if https {
        let ca = conn.aggregator_ca.as_ref().ok_or_else(|| {
            Error::invalid(
                "an https:// aggregator needs --aggregator-ca (the CA that signed its certificate)",
            )
        })?;
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca, "--aggregator-ca")?));
        if let (Some(cert), Some(key)) = (&conn.client_cert, &conn.client_key) {
            tls = tls.identity(Identity::from_pem(
                read(cert, "--client-cert")?,
                read(key, "--client-key")?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::invalid(format!("TLS settings: {e}")))?;
    } else if conn.client_cert.is_some() {
        return Err(Error::invalid(
            "--client-cert needs an https:// aggregator URL",
        ));
    }
    let token = match conn
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| Error::invalid("the token has characters a header cannot carry"))?,
        ),
        None => None,
    };
    let host = endpoint.uri().host().unwrap_or_default();
    if !https && token.is_some() && !aicr::flags::is_loopback_host(host) {
        return Err(Error::invalid(format!(
            "refusing to send the token in plain text to {url}: use an https:// aggregator URL (http:// is for loopback, such as a port-forward)"
        )));
    }
    let channel = endpoint.connect().await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot reach the aggregator at {url}: {}", cause(&e)),
        )
    })?;
    Ok(
        ClusterServiceClient::with_interceptor(channel, Bearer(token))
            .max_decoding_message_size(MAX_REPLY),
    )
}

/// The innermost cause, which says what actually went wrong.
fn cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        last = c.to_string();
        cur = c.source();
    }
    last
}

pub async fn call<T>(
    what: &str,
    fut: impl Future<Output = std::result::Result<tonic::Response<T>, Status>>,
) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(status_error(s, what)),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("{what}: the aggregator did not answer in time"),
        )),
    }
}

/// A node's snapshot (`node` empty: the cluster-level one) from the aggregator.
pub fn fetch_snapshot(url: Option<&str>, conn: &Connection, node: &str) -> Result<Snapshot> {
    let url = resolve_url(url)?;
    let json = crate::runtime::block_on(async {
        let mut c = connect(&url, conn).await?;
        let req = GetSnapshotRequest {
            node_name: node.to_string(),
        };
        call(
            "failed to get the snapshot from the aggregator",
            c.get_snapshot(req),
        )
        .await
    })??
    .json;
    Snapshot::parse(yaml::utf8(&json)?, yaml::Format::Json)
}

/// `validate --aggregator`: the aggregator judges `recipe` against every
/// node's live state and returns a CTRF report with one suite per node;
/// written to `output` like a local report. Check phases are not run.
pub fn validate_remote(
    url: Option<&str>,
    conn: &Connection,
    recipe: &RecipeResult,
    output: &str,
    kubeconfig: Option<&PathBuf>,
    fail_on_error: bool,
) -> Result<()> {
    let url = resolve_url(url)?;
    let recipe_json = serde_json::to_vec(recipe)
        .map_err(|e| Error::internal(format!("failed to encode the recipe: {e}")))?;
    let reply = crate::runtime::block_on(async {
        let mut c = connect(&url, conn).await?;
        call(
            "the aggregator could not validate",
            c.validate(ValidateRequest { recipe_json }),
        )
        .await
    })??;
    let report: Report = serde_json::from_slice(&reply.json)
        .map_err(|e| Error::internal(format!("the aggregator's report is not CTRF: {e}")))?;
    crate::kubernetes::write_destination(
        output,
        &reply.json,
        "report",
        kubeconfig,
        OutputFormat::Json,
    )?;
    let s = &report.results.summary;
    tracing::info!(
        "validation report written: output={} nodes={} tests={} passed={} failed={} skipped={}",
        if output.is_empty() { "stdout" } else { output },
        report
            .tests()
            .iter()
            .filter_map(|t| t.suite.get(1))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        s.tests,
        s.passed,
        s.failed,
        s.skipped
    );
    if fail_on_error && aicr::validate::run_failed(&report) {
        return Err(Error::internal(format!(
            "validation failed: {} of {} constraint checks failed across the aggregator's nodes",
            s.failed + s.other,
            s.tests
        )));
    }
    Ok(())
}

// ------------------------------------------------------------------ verbs

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_onto_exit_codes() {
        let code = |c: Code| status_error(Status::new(c, "x"), "op").kind().exit_code();
        assert_eq!(code(Code::NotFound), 3);
        assert_eq!(code(Code::Unauthenticated), 4);
        assert_eq!(code(Code::PermissionDenied), 4);
        assert_eq!(code(Code::DeadlineExceeded), 5);
        assert_eq!(code(Code::Unavailable), 6);
        assert_eq!(code(Code::ResourceExhausted), 7);
        assert_eq!(code(Code::InvalidArgument), 2);
        assert_eq!(code(Code::Internal), 8);
    }
}
