//! Bundles as OCI artifacts: parsing `oci://registry/repository[:tag]`
//! targets, packing the in-memory bundle into one reproducible gzip tar
//! layer, and pushing it with the user's Docker credentials. It owns the
//! registry side of `aicr bundle`; directories are `write`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::BundleFile;
use super::checksums::sha256_hex;
use crate::error::{Error, ErrorKind, Result};

pub const SCHEME: &str = "oci://";
pub(crate) const ARTIFACT_TYPE: &str = "application/vnd.nvidia.aicr.artifact";
pub(crate) const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub(crate) const EMPTY_CONFIG: &[u8] = b"{}";
pub(crate) const LAYER_TITLE: &str = "bundle.tar.gz";
/// Fixed so that the same bundle always yields the same manifest digest.
pub(crate) const CREATED: &str = "1970-01-01T00:00:00Z";

const ANN_CREATED: &str = "org.opencontainers.image.created";
const ANN_VERSION: &str = "org.opencontainers.image.version";
const ANN_VENDOR: &str = "org.opencontainers.image.vendor";
const ANN_TITLE: &str = "org.opencontainers.image.title";
const ANN_SOURCE: &str = "org.opencontainers.image.source";

/// The whole push, authentication included; a stalled registry must not hang
/// the CLI forever.
const PUSH_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a bundle is pushed: `registry/repository:tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

pub fn is_oci(output: &str) -> bool {
    output.starts_with(SCHEME)
}

fn bad_ref(s: &str, why: &str) -> Error {
    Error::invalid(format!(
        "invalid OCI reference {s:?}: {why}; expected oci://registry/repository[:tag]"
    ))
}

fn valid_registry(r: &str) -> bool {
    !r.is_empty()
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && !r.starts_with(['.', '-', ':'])
}

/// Distribution-spec repository names: lowercase path components joined by
/// `/`, each `[a-z0-9]+` groups separated by `.`, `_`, `__` or `-`+.
fn valid_repository(r: &str) -> bool {
    r.split('/').all(|part| {
        let b = part.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(&b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(&b[i]) {
                i += 1;
            }
            let sep = &part[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
        }
        true
    }) && r.len() <= 255
}

/// OCI tags: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && t.len() <= 128
}

/// The tag used when the target names none: the CLI version, made a legal
/// tag the way Helm does it for SemVer build metadata (`+` → `_`).
pub(crate) fn default_tag() -> String {
    let mut tag: String = crate::VERSION
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if !tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        tag.replace_range(..1, "_");
    }
    tag
}

impl Target {
    /// Parse `oci://registry/repository[:tag]`. Digest references are refused:
    /// a push creates the digest, it cannot be chosen.
    pub fn parse(s: &str) -> Result<Target> {
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad_ref(s, "missing oci:// prefix"))?;
        if rest.contains('@') {
            return Err(bad_ref(
                s,
                "a digest cannot be pushed to; name a tag (or none, for the CLI version)",
            ));
        }
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad_ref(s, "missing repository"))?;
        if !valid_registry(registry) {
            return Err(bad_ref(s, "invalid registry host"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        if !valid_repository(repository) {
            return Err(bad_ref(
                s,
                "invalid repository name (lowercase letters, digits and . _ - separators)",
            ));
        }
        let tag = match tag {
            Some(t) if valid_tag(t) => t.to_string(),
            Some(_) => {
                return Err(bad_ref(
                    s,
                    "invalid tag (at most 128 of A-Z a-z 0-9 _ . -, not starting with . or -)",
                ));
            }
            None => default_tag(),
        };
        Ok(Target {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
        })
    }

    /// `registry/repository@digest`, what `--image-refs` records.
    pub(crate) fn digest_ref(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }

    fn reference(&self) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            self.tag.clone(),
        )
    }
}

fn tar_err(e: std::io::Error) -> Error {
    Error::internal(format!("failed to pack the bundle: {e}"))
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    // Both names are already empty in a fresh GNU header; setting them keeps
    // that explicit should the constructor ever change.
    let _ = h.set_username("");
    let _ = h.set_groupname("");
    h
}

/// The bundle as a gzip tar whose bytes depend only on the files: sorted
/// paths, parents before children as `0755` directories, no times, owners
/// or host details.
pub(crate) fn pack(files: &BTreeMap<String, BundleFile>) -> Result<Vec<u8>> {
    // Directory keys end in `/`, so each sorts right before its contents.
    let mut entries: BTreeMap<String, Option<&BundleFile>> = BTreeMap::new();
    for (path, file) in files {
        let mut parent = path.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            entries.insert(format!("{dir}/"), None);
            parent = dir;
        }
        entries.insert(path.clone(), Some(file));
    }
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, entry) in &entries {
        match entry {
            None => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, path, std::io::empty())
                    .map_err(tar_err)?;
            }
            Some(f) => {
                let mut h = header(tar::EntryType::Regular, f.mode, f.content.len() as u64);
                tar.append_data(&mut h, path, &*f.content)
                    .map_err(tar_err)?;
            }
        }
    }
    let mut gz = tar.into_inner().map_err(tar_err)?;
    gz.flush().map_err(tar_err)?;
    gz.finish().map_err(tar_err)
}

/// The project that built this binary (the release repository's owner),
/// not the upstream vendor: the artifact type keeps upstream's name for
/// compatibility, the provenance annotations tell the truth.
fn vendor() -> &'static str {
    let repo = crate::attest::identity::RELEASE_REPOSITORY;
    repo.split('/').next().unwrap_or(repo)
}

fn source() -> String {
    format!(
        "https://github.com/{}",
        crate::attest::identity::RELEASE_REPOSITORY
    )
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// The manifest bytes exactly as pushed, for a packed layer.
pub(crate) fn manifest(layer: &[u8], repository: &str) -> Result<Vec<u8>> {
    let annotations = BTreeMap::from([
        (ANN_CREATED.to_string(), CREATED.to_string()),
        (ANN_VERSION.to_string(), crate::VERSION.to_string()),
        (ANN_VENDOR.to_string(), vendor().to_string()),
        (ANN_TITLE.to_string(), repository.to_string()),
        (ANN_SOURCE.to_string(), source()),
    ]);
    let m = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: OciDescriptor {
            media_type: EMPTY_MEDIA_TYPE.to_string(),
            digest: digest_of(EMPTY_CONFIG),
            size: EMPTY_CONFIG.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: LAYER_MEDIA_TYPE.to_string(),
            digest: digest_of(layer),
            size: layer.len() as i64,
            annotations: Some(BTreeMap::from([(
                ANN_TITLE.to_string(),
                LAYER_TITLE.to_string(),
            )])),
            ..Default::default()
        }],
        subject: None,
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        annotations: Some(annotations),
    };
    serde_json::to_vec(&m).map_err(|e| Error::internal(format!("cannot encode the manifest: {e}")))
}

/// How to reach the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushOptions {
    pub plain_http: bool,
    pub insecure_tls: bool,
}

/// What a push produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
    /// `registry/repository@sha256:<hex>`.
    pub digest_ref: String,
}

/// How the push authenticates. No `Debug`: it holds secrets.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
}

impl Credentials {
    /// Credentials for `registry` from the Docker config (`$DOCKER_CONFIG`
    /// or `~/.docker`), credential helpers included; anonymous when it has
    /// none. The caller decides whether to consult the environment at all.
    pub fn from_docker_config(registry: &str) -> Credentials {
        use docker_credential::{CredentialRetrievalError as E, DockerCredential};
        match docker_credential::get_credential(registry) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                tracing::debug!("using docker config credentials for {registry}");
                Credentials::Basic { username, password }
            }
            Ok(DockerCredential::IdentityToken(token)) => {
                tracing::debug!("using docker config identity token for {registry}");
                Credentials::Bearer(token)
            }
            Err(E::ConfigNotFound | E::ConfigReadError | E::NoCredentialConfigured) => {
                tracing::debug!("no docker config credentials for {registry}; pushing anonymously");
                Credentials::Anonymous
            }
            // Only the kind of failure is logged: helper output may hold secrets.
            Err(e) => {
                let kind = match e {
                    E::HelperFailure { helper, .. } => format!("credential helper {helper} failed"),
                    other => other.to_string(),
                };
                tracing::warn!(
                    "cannot read docker credentials for {registry} ({kind}); pushing anonymously"
                );
                Credentials::Anonymous
            }
        }
    }

    fn registry_auth(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        }
    }
}

/// Cause chain on one line; reqwest's own message omits the root cause.
fn chain(e: &dyn std::error::Error) -> String {
    crate::error::chain(e).replace(['\n', '\r'], " ")
}

/// The useful part of an error body: an OCI error envelope's first message,
/// else its first line, and nothing for an HTML error page.
fn body_detail(body: &str) -> String {
    let envelope = serde_json::from_str::<serde_json::Value>(body).ok();
    if let Some(m) = envelope
        .as_ref()
        .and_then(|v| v["errors"][0]["message"].as_str())
    {
        return first_line(m);
    }
    if body.trim_start().starts_with('<') {
        return String::new();
    }
    first_line(body)
}

fn first_line(s: &str) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.chars().take(200).collect()
}

fn status_error(code: u16, detail: &str, target: &Target, anonymous: bool) -> Error {
    let reg = &target.registry;
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    match code {
        401 if anonymous => Error::new(
            ErrorKind::Unauthorized,
            format!(
                "registry {reg} requires authentication (HTTP 401){detail}; run docker login {reg}"
            ),
        ),
        401 => Error::new(
            ErrorKind::Unauthorized,
            format!(
                "registry {reg} rejected the docker config credentials (HTTP 401){detail}; run docker login {reg} again"
            ),
        ),
        403 => Error::new(
            ErrorKind::Unauthorized,
            format!(
                "registry {reg} denied the push to {} (HTTP 403){detail}; check that your account may push there, or run docker login {reg}",
                target.repository
            ),
        ),
        429 => Error::new(
            ErrorKind::RateLimit,
            format!("registry {reg} is throttling requests (HTTP 429); retry later"),
        ),
        400..=499 => Error::invalid(format!(
            "registry {reg} rejected the push to {target} (HTTP {code}){detail}"
        )),
        _ => Error::new(
            ErrorKind::Unavailable,
            format!("registry {reg} failed (HTTP {code}){detail}; retry later"),
        ),
    }
}

fn push_error(e: OciDistributionError, target: &Target, o: PushOptions, anonymous: bool) -> Error {
    let reg = &target.registry;
    match e {
        OciDistributionError::RequestError(r) => {
            if let Some(status) = r.status() {
                return status_error(status.as_u16(), "", target, anonymous);
            }
            let cause = chain(&r);
            if r.is_timeout() {
                Error::new(
                    ErrorKind::Timeout,
                    format!("registry {reg} did not answer in time: {cause}"),
                )
            } else {
                let hint = if o.plain_http {
                    "check the registry address and that it is running"
                } else if cause.contains("certificate") || cause.contains("Certificate") {
                    "pass --insecure-tls for a registry with an untrusted certificate"
                } else {
                    "check the registry address, or pass --plain-http for a registry without TLS"
                };
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot reach registry {reg}: {cause}; {hint}"),
                )
            }
        }
        OciDistributionError::ServerError { code, message, .. } => {
            status_error(code, &body_detail(&message), target, anonymous)
        }
        OciDistributionError::UnauthorizedError { .. } => status_error(401, "", target, anonymous),
        OciDistributionError::AuthenticationFailure(m) => Error::new(
            ErrorKind::Unauthorized,
            format!(
                "registry {reg} refused to authenticate: {}; run docker login {reg}",
                first_line(&m)
            ),
        ),
        OciDistributionError::RegistryError { envelope, .. } => {
            let code = match envelope.errors.first().map(|e| &e.code) {
                Some(OciErrorCode::Unauthorized) => 401,
                Some(OciErrorCode::Denied) => 403,
                Some(OciErrorCode::Toomanyrequests) => 429,
                _ => 400,
            };
            let detail = envelope
                .errors
                .first()
                .map(|e| first_line(&e.message))
                .unwrap_or_default();
            status_error(code, &detail, target, anonymous)
        }
        other => Error::new(
            ErrorKind::Unavailable,
            format!(
                "registry {reg} answered unexpectedly: {}",
                first_line(&chain(&other))
            ),
        ),
    }
}

fn client(o: PushOptions) -> Client {
    crate::install_tls_provider();
    Client::new(ClientConfig {
        protocol: if o.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: o.insecure_tls,
        // One PUT per blob: bundles are small, and every registry accepts it,
        // while chunked uploads are where registries diverge most.
        use_monolithic_push: true,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        ..Default::default()
    })
}

async fn upload(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
    layer: Vec<u8>,
    manifest: Vec<u8>,
) -> std::result::Result<(), OciDistributionError> {
    client
        .auth(reference, auth, RegistryOperation::Push)
        .await?;
    let layer_digest = digest_of(&layer);
    for (data, digest) in [
        (EMPTY_CONFIG.to_vec(), digest_of(EMPTY_CONFIG)),
        (layer, layer_digest),
    ] {
        // A reproducible bundle pushed again needs no upload.
        if !client.blob_exists(reference, &digest).await? {
            client.push_blob(reference, data, &digest).await?;
        }
    }
    client
        .push_manifest_raw(
            reference,
            manifest,
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await?;
    Ok(())
}

/// Pack `files` and push them to `target` as one artifact.
pub async fn push(
    files: &BTreeMap<String, BundleFile>,
    target: &Target,
    o: PushOptions,
    credentials: &Credentials,
) -> Result<Pushed> {
    let layer = pack(files)?;
    let manifest = manifest(&layer, &target.repository)?;
    // The digest is the sha256 of the exact manifest bytes sent: registries
    // must store manifests byte for byte, so this is what they report, and
    // it needs no extra round trip that some registries answer without a
    // Docker-Content-Digest header.
    let digest = digest_of(&manifest);
    let layer_digest = digest_of(&layer);
    let layer_size = layer.len();
    if o.insecure_tls && !o.plain_http {
        tracing::warn!(
            "TLS verification is off for {}: the registry's identity is not checked",
            target.registry
        );
    }
    let auth = credentials.registry_auth();
    let anonymous = matches!(auth, RegistryAuth::Anonymous);
    let client = client(o);
    let reference = target.reference();
    tracing::info!("pushing bundle to {target}: layer={layer_digest} size={layer_size}");
    let outcome = tokio::time::timeout(
        PUSH_TIMEOUT,
        upload(&client, &reference, &auth, layer, manifest),
    )
    .await;
    match outcome {
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "pushing to {target} did not finish within {}s; check the network or retry",
                PUSH_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(e)) => Err(push_error(e, target, o, anonymous)),
        Ok(Ok(())) => Ok(Pushed {
            digest_ref: target.digest_ref(&digest),
            digest,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn file(content: &str, mode: u32) -> BundleFile {
        BundleFile {
            content: content.as_bytes().to_vec().into(),
            mode,
        }
    }

    fn sample() -> BTreeMap<String, BundleFile> {
        BTreeMap::from([
            ("README.md".to_string(), file("# hi\n", 0o644)),
            ("deploy.sh".to_string(), file("#!/bin/sh\n", 0o755)),
            ("001-a/values.yaml".to_string(), file("a: 1\n", 0o644)),
            ("001-a/x/y/z.txt".to_string(), file("z", 0o600)),
            ("001-a-b/values.yaml".to_string(), file("b: 2\n", 0o644)),
        ])
    }

    #[test]
    fn parses_targets() {
        let t = Target::parse("oci://localhost:5000/team/bundles:v1.2").unwrap();
        assert_eq!(
            t,
            Target {
                registry: "localhost:5000".into(),
                repository: "team/bundles".into(),
                tag: "v1.2".into()
            }
        );
        assert_eq!(t.to_string(), "localhost:5000/team/bundles:v1.2");
        assert_eq!(
            t.digest_ref("sha256:ab"),
            "localhost:5000/team/bundles@sha256:ab"
        );
        let t = Target::parse("oci://ghcr.io/nvidia/aicr-bundle").unwrap();
        assert_eq!(t.registry, "ghcr.io");
        assert_eq!(t.repository, "nvidia/aicr-bundle");
        assert_eq!(t.tag, default_tag());
        let t = Target::parse("oci://localhost:5000/bundles").unwrap();
        assert_eq!(
            (t.registry.as_str(), t.repository.as_str()),
            ("localhost:5000", "bundles")
        );
    }

    #[test]
    fn rejects_bad_targets() {
        for bad in [
            "oci://",
            "oci://registry",
            "oci://registry/",
            "oci://registry/Upper",
            "oci://registry/a//b",
            "oci://registry/a:",
            "oci://registry/a:-x",
            "oci://registry/a:x+y",
            "oci:///repo",
            "oci://registry/repo@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "oci://registry/repo:tag@sha256:00",
            "registry/repo",
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{bad}");
            assert!(e.message().contains("invalid OCI reference"), "{bad}: {e}");
        }
        let long = format!("oci://r/a:{}", "x".repeat(129));
        assert!(Target::parse(&long).is_err());
        assert!(Target::parse("oci://r/a__b.c-d---e:_x.Y-1").is_ok());
    }

    #[test]
    fn default_tag_is_a_legal_tag() {
        let t = default_tag();
        assert!(valid_tag(&t), "{t}");
        assert!(!t.contains('+'));
        assert_eq!(t, crate::VERSION.replace('+', "_"));
    }

    fn unpack(layer: &[u8]) -> Vec<(String, tar::EntryType, u32, u64, Vec<u8>)> {
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(layer));
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                assert_eq!(h.uid().unwrap(), 0);
                assert_eq!(h.gid().unwrap(), 0);
                assert_eq!(h.username().unwrap(), Some(""));
                assert_eq!(h.groupname().unwrap(), Some(""));
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    body,
                )
            })
            .collect()
    }

    #[test]
    fn pack_is_sorted_with_parents_and_modes() {
        let layer = pack(&sample()).unwrap();
        // Gzip header: magic, deflate, no flags, mtime 0.
        assert_eq!(&layer[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let entries = unpack(&layer);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "001-a-b/",
                "001-a-b/values.yaml",
                "001-a/",
                "001-a/values.yaml",
                "001-a/x/",
                "001-a/x/y/",
                "001-a/x/y/z.txt",
                "README.md",
                "deploy.sh",
            ]
        );
        for (name, kind, mode, mtime, body) in &entries {
            assert_eq!(*mtime, 0, "{name}");
            if name.ends_with('/') {
                assert_eq!(*kind, tar::EntryType::Directory);
                assert_eq!(*mode, 0o755);
            } else {
                assert_eq!(*kind, tar::EntryType::Regular);
                let f = &sample()[name];
                assert_eq!(*mode, f.mode, "{name}");
                assert_eq!(body[..], f.content[..]);
            }
        }
    }

    #[test]
    fn long_paths_survive() {
        let long = format!("{}/{}.yaml", "d".repeat(120), "f".repeat(120));
        let files = BTreeMap::from([(long.clone(), file("x", 0o644))]);
        let entries = unpack(&pack(&files).unwrap());
        assert_eq!(entries.last().unwrap().0, long);
    }

    #[test]
    fn same_files_same_digests() {
        let a = pack(&sample()).unwrap();
        let b = pack(&sample()).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            manifest(&a, "team/bundles").unwrap(),
            manifest(&b, "team/bundles").unwrap()
        );
        let mut changed = sample();
        changed.get_mut("README.md").unwrap().mode = 0o600;
        assert_ne!(pack(&changed).unwrap(), a);
    }

    #[test]
    fn manifest_is_an_artifact_with_fixed_annotations() {
        let layer = pack(&sample()).unwrap();
        let m: serde_json::Value =
            serde_json::from_slice(&manifest(&layer, "team/bundles").unwrap()).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], OCI_IMAGE_MEDIA_TYPE);
        assert_eq!(m["artifactType"], ARTIFACT_TYPE);
        assert_eq!(m["config"]["mediaType"], EMPTY_MEDIA_TYPE);
        assert_eq!(
            m["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(m["config"]["size"], 2);
        assert_eq!(m["layers"].as_array().unwrap().len(), 1);
        assert_eq!(m["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(m["layers"][0]["digest"], digest_of(&layer));
        assert_eq!(m["layers"][0]["size"], layer.len());
        assert_eq!(m["layers"][0]["annotations"][ANN_TITLE], LAYER_TITLE);
        let ann = &m["annotations"];
        assert_eq!(ann[ANN_CREATED], CREATED);
        assert_eq!(ann[ANN_VERSION], crate::VERSION);
        assert_eq!(ann[ANN_VENDOR], vendor());
        assert_eq!(ann[ANN_SOURCE], source());
        assert_eq!(ann[ANN_TITLE], "team/bundles");
    }

    #[test]
    fn status_codes_map_to_exit_kinds() {
        let t = Target::parse("oci://reg.example/a:b").unwrap();
        let e = status_error(401, "", &t, true);
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(e.message().contains("docker login reg.example"), "{e}");
        assert_eq!(
            status_error(403, "", &t, false).kind(),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            status_error(429, "", &t, false).kind(),
            ErrorKind::RateLimit
        );
        assert_eq!(
            status_error(404, "", &t, false).kind(),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            status_error(503, "", &t, false).kind(),
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn error_bodies_shrink_to_one_useful_line() {
        assert_eq!(
            body_detail(r#"{"errors":[{"code":"DENIED","message":"no push\nat all"}]}"#),
            "no push"
        );
        assert_eq!(body_detail("<!DOCTYPE HTML>\n<html>"), "");
        assert_eq!(body_detail("\n plain text \nmore"), "plain text");
    }
}
