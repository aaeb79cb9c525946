//! A minimal OCI distribution registry on 127.0.0.1, over real HTTP, for
//! tests that push artifacts: the `/v2/` probe, blob existence, monolithic
//! and chunked uploads (the digest of what arrived is checked), and
//! manifests by tag or digest. It can demand HTTP basic auth, so the Docker
//! config credential path is exercised end to end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::serve::Served;

/// A manifest as the registry stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub content_type: String,
    pub body: Vec<u8>,
    /// `sha256:<hex>` of `body`.
    pub digest: String,
}

#[derive(Default)]
struct Registry {
    /// `Authorization` header value required on every request, when set.
    basic: Option<String>,
    blobs: Mutex<HashMap<(String, String), Vec<u8>>>,
    uploads: Mutex<HashMap<String, (String, Vec<u8>)>>,
    manifests: Mutex<HashMap<(String, String), StoredManifest>>,
    requests: Mutex<Vec<String>>,
    next_upload: AtomicU64,
}

/// Serves on its own thread and runtime until dropped.
pub struct FakeOciRegistry {
    served: Served,
    registry: Arc<Registry>,
}

fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl FakeOciRegistry {
    /// A registry that accepts anonymous pushes.
    pub fn start() -> Self {
        Self::serve(Registry::default())
    }

    /// A registry that answers 401 with a `Basic` challenge unless the
    /// request carries these credentials.
    pub fn start_with_basic_auth(username: &str, password: &str) -> Self {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        Self::serve(Registry {
            basic: Some(format!("Basic {token}")),
            ..Registry::default()
        })
    }

    fn serve(registry: Registry) -> Self {
        let registry = Arc::new(registry);
        let router = axum::Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(registry.clone());
        FakeOciRegistry {
            served: Served::start("fake-oci-registry", router),
            registry,
        }
    }

    /// `127.0.0.1:PORT`, the registry part of a reference.
    pub fn host(&self) -> String {
        self.served.address.to_string()
    }

    /// The manifest stored under `reference` (a tag or a digest).
    pub fn manifest(&self, repository: &str, reference: &str) -> Option<StoredManifest> {
        self.registry
            .manifests
            .lock()
            .unwrap()
            .get(&(repository.to_string(), reference.to_string()))
            .cloned()
    }

    /// Tags and digests with a manifest in `repository`, sorted.
    pub fn references(&self, repository: &str) -> Vec<String> {
        let mut refs: Vec<String> = self
            .registry
            .manifests
            .lock()
            .unwrap()
            .keys()
            .filter(|(repo, _)| repo == repository)
            .map(|(_, r)| r.clone())
            .collect();
        refs.sort();
        refs
    }

    pub fn blob(&self, repository: &str, digest: &str) -> Option<Vec<u8>> {
        self.registry
            .blobs
            .lock()
            .unwrap()
            .get(&(repository.to_string(), digest.to_string()))
            .cloned()
    }

    /// `METHOD /path` of every request so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.registry.requests.lock().unwrap().clone()
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn with_headers(status: StatusCode, headers: &[(&'static str, String)], body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    for (name, value) in headers {
        r.headers_mut().insert(
            *name,
            HeaderValue::from_str(value).expect("a valid header value"),
        );
    }
    r
}

async fn handle(
    State(reg): State<Arc<Registry>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    reg.requests
        .lock()
        .unwrap()
        .push(format!("{method} {path}"));
    if let Some(expected) = &reg.basic {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fake\""),
            );
            return r;
        }
    }
    if path == "/v2/" || path == "/v2" {
        return with_headers(
            StatusCode::OK,
            &[("Docker-Distribution-API-Version", "registry/2.0".into())],
            b"{}".to_vec(),
        );
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a registry path");
    };
    if let Some((name, upload)) = rest.split_once("/blobs/uploads") {
        let id = upload.trim_start_matches('/');
        return handle_upload(&reg, &method, &uri, name, id, &body);
    }
    if let Some((name, digest)) = rest.split_once("/blobs/") {
        return match reg
            .blobs
            .lock()
            .unwrap()
            .get(&(name.to_string(), digest.to_string()))
        {
            Some(b) if method == Method::GET || method == Method::HEAD => with_headers(
                StatusCode::OK,
                &[
                    ("Docker-Content-Digest", digest.to_string()),
                    ("Content-Type", "application/octet-stream".into()),
                ],
                b.clone(),
            ),
            Some(_) => error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method"),
            None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown"),
        };
    }
    if let Some((name, reference)) = rest.split_once("/manifests/") {
        return handle_manifest(&reg, &method, &headers, name, reference, &body);
    }
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown endpoint")
}

fn handle_upload(
    reg: &Registry,
    method: &Method,
    uri: &Uri,
    name: &str,
    id: &str,
    body: &[u8],
) -> Response {
    let location = |id: &str| format!("/v2/{name}/blobs/uploads/{id}");
    if *method == Method::POST && id.is_empty() {
        let id = reg.next_upload.fetch_add(1, Ordering::SeqCst).to_string();
        reg.uploads
            .lock()
            .unwrap()
            .insert(id.clone(), (name.to_string(), Vec::new()));
        if query_param(uri, "digest").is_some() {
            return finish_upload(reg, uri, name, &id, body);
        }
        return with_headers(
            StatusCode::ACCEPTED,
            &[
                ("Location", location(&id)),
                ("Docker-Upload-UUID", id.clone()),
                ("Range", "0-0".into()),
            ],
            Vec::new(),
        );
    }
    let mut uploads = reg.uploads.lock().unwrap();
    let Some((repo, data)) = uploads.get_mut(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "upload unknown",
        );
    };
    if repo != name {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "upload unknown",
        );
    }
    if *method == Method::PATCH {
        data.extend_from_slice(body);
        let end = data.len().saturating_sub(1);
        return with_headers(
            StatusCode::ACCEPTED,
            &[
                ("Location", location(id)),
                ("Docker-Upload-UUID", id.to_string()),
                ("Range", format!("0-{end}")),
            ],
            Vec::new(),
        );
    }
    if *method == Method::PUT {
        drop(uploads);
        return finish_upload(reg, uri, name, id, body);
    }
    error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method")
}

fn finish_upload(reg: &Registry, uri: &Uri, name: &str, id: &str, body: &[u8]) -> Response {
    let Some(digest) = query_param(uri, "digest") else {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "digest missing");
    };
    let Some((_, mut data)) = reg.uploads.lock().unwrap().remove(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "upload unknown",
        );
    };
    data.extend_from_slice(body);
    if sha256_digest(&data) != digest {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "uploaded content does not match the digest",
        );
    }
    reg.blobs
        .lock()
        .unwrap()
        .insert((name.to_string(), digest.clone()), data);
    with_headers(
        StatusCode::CREATED,
        &[
            ("Location", format!("/v2/{name}/blobs/{digest}")),
            ("Docker-Content-Digest", digest),
        ],
        Vec::new(),
    )
}

fn handle_manifest(
    reg: &Registry,
    method: &Method,
    headers: &HeaderMap,
    name: &str,
    reference: &str,
    body: &[u8],
) -> Response {
    let key = (name.to_string(), reference.to_string());
    if *method == Method::PUT {
        let digest = sha256_digest(body);
        if reference.starts_with("sha256:") && reference != digest {
            return error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "manifest does not match the digest",
            );
        }
        let stored = StoredManifest {
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: body.to_vec(),
            digest: digest.clone(),
        };
        let mut manifests = reg.manifests.lock().unwrap();
        manifests.insert((name.to_string(), digest.clone()), stored.clone());
        manifests.insert(key, stored);
        return with_headers(
            StatusCode::CREATED,
            &[
                ("Location", format!("/v2/{name}/manifests/{digest}")),
                ("Docker-Content-Digest", digest),
            ],
            Vec::new(),
        );
    }
    if *method == Method::GET || *method == Method::HEAD {
        return match reg.manifests.lock().unwrap().get(&key) {
            Some(m) => with_headers(
                StatusCode::OK,
                &[
                    ("Docker-Content-Digest", m.digest.clone()),
                    ("Content-Type", m.content_type.clone()),
                ],
                m.body.clone(),
            ),
            None => error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            ),
        };
    }
    error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// One raw HTTP/1.1 exchange: status line, headers (lowercased names)
    /// and body.
    fn call(
        host: &str,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, HashMap<String, String>, Vec<u8>) {
        let mut s = std::net::TcpStream::connect(host).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        (status, headers, raw[split + 4..].to_vec())
    }

    #[test]
    fn chunked_upload_checks_the_digest_and_manifests_round_trip() {
        let reg = FakeOciRegistry::start();
        let host = reg.host();
        let data = b"hello, registry";
        let good = sha256_digest(data);

        let (status, h, _) = call(&host, "POST", "/v2/a/b/blobs/uploads/", &[], b"");
        assert_eq!(status, 202);
        let location = h["location"].clone();
        assert_eq!(call(&host, "PATCH", &location, &[], &data[..5]).0, 202);
        assert_eq!(call(&host, "PATCH", &location, &[], &data[5..]).0, 202);
        let wrong = format!("{location}?digest={}", sha256_digest(b"other"));
        assert_eq!(call(&host, "PUT", &wrong, &[], b"").0, 400);
        assert!(reg.blob("a/b", &good).is_none());

        let (_, h, _) = call(&host, "POST", "/v2/a/b/blobs/uploads/", &[], b"");
        let location = h["location"].clone();
        assert_eq!(call(&host, "PATCH", &location, &[], &data[..5]).0, 202);
        let put = format!("{location}?digest={good}");
        let (status, h, _) = call(&host, "PUT", &put, &[], &data[5..]);
        assert_eq!(status, 201);
        assert_eq!(h["docker-content-digest"], good);
        assert_eq!(reg.blob("a/b", &good).unwrap(), data);
        assert_eq!(
            call(&host, "HEAD", &format!("/v2/a/b/blobs/{good}"), &[], b"").0,
            200
        );
        assert_eq!(
            call(&host, "HEAD", "/v2/a/b/blobs/sha256:00", &[], b"").0,
            404
        );

        let manifest = br#"{"schemaVersion":2}"#;
        let ct = "application/vnd.oci.image.manifest.v1+json";
        let (status, h, _) = call(
            &host,
            "PUT",
            "/v2/a/b/manifests/v1",
            &[("Content-Type", ct)],
            manifest,
        );
        assert_eq!(status, 201);
        let digest = sha256_digest(manifest);
        assert_eq!(h["docker-content-digest"], digest);
        let (status, h, body) = call(&host, "GET", "/v2/a/b/manifests/v1", &[], b"");
        assert_eq!((status, body.as_slice()), (200, &manifest[..]));
        assert_eq!(h["content-type"], ct);
        assert_eq!(reg.manifest("a/b", &digest).unwrap().body, manifest);
        assert_eq!(reg.references("a/b"), [digest, "v1".to_string()]);
    }

    #[test]
    fn basic_auth_is_challenged() {
        let reg = FakeOciRegistry::start_with_basic_auth("u", "p");
        let host = reg.host();
        let (status, h, _) = call(&host, "GET", "/v2/", &[], b"");
        assert_eq!(status, 401);
        assert_eq!(h["www-authenticate"], "Basic realm=\"fake\"");
        // base64("u:p")
        assert_eq!(
            call(
                &host,
                "GET",
                "/v2/",
                &[("Authorization", "Basic dTpw")],
                b""
            )
            .0,
            200
        );
        assert_eq!(
            call(
                &host,
                "GET",
                "/v2/",
                &[("Authorization", "Basic dTp4")],
                b""
            )
            .0,
            401
        );
    }
}
