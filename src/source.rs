//! Where input documents come from: local paths, `http(s)://` URLs and
//! `cm://namespace/name` ConfigMaps. Owns URI parsing and the byte-level
//! fetch with its limits; parsing the bytes is the caller's business.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::yaml::{Format, MAX_DOCUMENT_BYTES};

/// Connect timeout for HTTP sources.
pub(crate) const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout for HTTP sources.
pub(crate) const HTTP_TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed `cm://namespace/name` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ConfigMapRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cm://{}/{}", self.namespace, self.name)
    }
}

/// An RFC 1123 label/subdomain as Kubernetes requires for namespaces and
/// ConfigMap names.
fn valid_k8s_name(s: &str, max: usize, dots: bool) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
        })
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

impl ConfigMapRef {
    /// Parse `cm://namespace/name`; anything malformed is invalid input.
    pub fn parse(uri: &str) -> Result<ConfigMapRef> {
        let rest = uri.strip_prefix("cm://").ok_or_else(|| {
            Error::invalid(format!(
                "invalid ConfigMap URI {uri:?}: must start with cm://"
            ))
        })?;
        let bad = |why: &str| {
            Error::invalid(format!(
                "invalid ConfigMap URI {uri:?}: {why} (expected cm://<namespace>/<name>)"
            ))
        };
        let (ns, name) = rest.split_once('/').ok_or_else(|| bad("missing name"))?;
        if name.contains('/') {
            return Err(bad("too many path segments"));
        }
        if !valid_k8s_name(ns, 63, false) {
            return Err(bad("namespace is not a valid Kubernetes name"));
        }
        if !valid_k8s_name(name, 253, true) {
            return Err(bad("name is not a valid Kubernetes name"));
        }
        Ok(ConfigMapRef {
            namespace: ns.to_string(),
            name: name.to_string(),
        })
    }
}

/// An input location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Http(String),
    ConfigMap(ConfigMapRef),
}

impl Source {
    pub fn parse(uri: &str) -> Result<Source> {
        if uri.starts_with("cm://") {
            return ConfigMapRef::parse(uri).map(Source::ConfigMap);
        }
        if uri.starts_with("http://") || uri.starts_with("https://") {
            return Ok(Source::Http(uri.to_string()));
        }
        if let Some((scheme, _)) = uri.split_once("://")
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return Err(Error::invalid(format!(
                "unsupported URI scheme {scheme:?} in {uri:?} (use a path, http(s):// or cm://)"
            )));
        }
        Ok(Source::File(PathBuf::from(uri)))
    }

    /// The document format implied by the location (ConfigMaps carry their
    /// own format hint, see the kube layer).
    pub fn format(&self, uri: &str) -> Format {
        let path = match self {
            Source::Http(u) => u.split(['?', '#']).next().unwrap_or(u),
            _ => uri,
        };
        Format::from_path(path)
    }
}

/// Read a local file, refusing anything larger than a document may be.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| io_error(e, path))?;
    let mut buf = Vec::new();
    f.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(e, path))?;
    if buf.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::invalid(format!(
            "{}: file too large (max {MAX_DOCUMENT_BYTES} bytes)",
            path.display()
        )));
    }
    Ok(buf)
}

fn io_error(e: std::io::Error, path: &std::path::Path) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::Unauthorized,
        _ => ErrorKind::Internal,
    };
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    Error::new(kind, format!("{}: {reason}", path.display()))
}

/// GET an http(s) URL with connect/total timeouts and a size limit; only a
/// 200 answer counts.
pub fn fetch_http(url: &str) -> Result<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(HTTP_CONNECT_TIMEOUT))
        .timeout_global(Some(HTTP_TOTAL_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent.get(url).call().map_err(|e| http_error(url, e))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let kind = match status {
            404 => ErrorKind::NotFound,
            401 | 403 => ErrorKind::Unauthorized,
            408 | 504 => ErrorKind::Timeout,
            429 => ErrorKind::RateLimit,
            502 | 503 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        return Err(Error::new(
            kind,
            format!("GET {url}: unexpected HTTP status {status}"),
        ));
    }
    let body = resp
        .into_body()
        .into_with_config()
        .limit(MAX_DOCUMENT_BYTES as u64)
        .read_to_vec()
        .map_err(|e| http_error(url, e))?;
    Ok(body)
}

fn http_error(url: &str, e: ureq::Error) -> Error {
    let kind = match &e {
        ureq::Error::Timeout(_) => ErrorKind::Timeout,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            ErrorKind::Unavailable
        }
        ureq::Error::BodyExceedsLimit(_) => ErrorKind::InvalidRequest,
        _ => ErrorKind::Internal,
    };
    let msg = match &e {
        ureq::Error::BodyExceedsLimit(n) => format!("response larger than {n} bytes"),
        other => other.to_string(),
    };
    Error::new(kind, format!("GET {url}: {msg}"))
}

/// Fetch a file or URL source. ConfigMaps need a cluster client and are
/// read through `kube::read_configmap_document`.
pub fn read_local_or_http(source: &Source) -> Result<Vec<u8>> {
    match source {
        Source::File(p) => read_file(p),
        Source::Http(u) => fetch_http(u),
        Source::ConfigMap(cm) => Err(Error::invalid(format!(
            "{cm}: ConfigMap sources need a cluster connection"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_uris_are_validated() {
        let cm = ConfigMapRef::parse("cm://gpu-operator/aicr-snapshot").unwrap();
        assert_eq!(
            (cm.namespace.as_str(), cm.name.as_str()),
            ("gpu-operator", "aicr-snapshot")
        );
        for bad in [
            "cm://",
            "cm://ns",
            "cm://ns/",
            "cm:///name",
            "cm://NS/x",
            "cm://ns/a/b",
            "cm://ns/-x",
        ] {
            let e = ConfigMapRef::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn sources_by_scheme() {
        assert_eq!(
            Source::parse("a/b.yaml").unwrap(),
            Source::File("a/b.yaml".into())
        );
        assert!(matches!(
            Source::parse("https://x/s.json").unwrap(),
            Source::Http(_)
        ));
        assert!(Source::parse("ftp://x/y").is_err());
        let s = Source::parse("https://x/s.json?sig=1").unwrap();
        assert_eq!(s.format("https://x/s.json?sig=1"), Format::Json);
    }

    #[test]
    fn missing_file_is_not_found_and_named() {
        let e = read_file(std::path::Path::new("/nonexistent/x.yaml")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "/nonexistent/x.yaml: no such file or directory"
        );
    }

    #[test]
    fn oversized_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.yaml");
        std::fs::write(&p, vec![b'a'; MAX_DOCUMENT_BYTES + 10]).unwrap();
        assert!(read_file(&p).unwrap_err().to_string().contains("too large"));
    }
}
