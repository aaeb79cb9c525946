//! `aicr trust update`: refresh the Sigstore trusted root through TUF.
//!
//! Trust starts from the TUF `root.json` embedded in the binary (the one
//! `sigstore-trust-root` ships) and walks the repository's root chain,
//! then timestamp → snapshot → targets, before the `trusted_root.json` target
//! is accepted (`sigstore-tuf` does every signature, version, expiry and hash
//! check). Verified files land where sigstore-go and cosign keep theirs,
//! `~/.sigstore/root/<mirror>/`, so the three tools share one cache.
//!
//! This module owns the cache location and the refresh; it never reads the
//! cache for verification (that is `trust_root`'s job, and stays offline).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The public-good Sigstore TUF repository.
pub(crate) const DEFAULT_MIRROR: &str = "https://tuf-repo-cdn.sigstore.dev";
/// The variable naming another TUF repository (a mirror or a private
/// Sigstore), like cosign's `initialize --mirror`; the CLI reads it.
pub const MIRROR_ENV: &str = "AICR_TUF_MIRROR";
/// The variable naming a `root.json` to start trust from instead of the
/// embedded one, like cosign's `initialize --root`; the CLI reads it.
pub const ROOT_ENV: &str = "AICR_TUF_ROOT";

/// The whole refresh is bounded so a stalled mirror cannot hang the CLI
/// (TUF's slow-retrieval attack); running past it is exit 5.
pub(crate) const UPDATE_TIMEOUT: Duration = Duration::from_secs(30);

const TARGET: &str = "trusted_root.json";

/// Which TUF repository trust comes from and where its verified files are
/// cached. The caller builds it from its flags; nothing here reads the
/// environment.
#[derive(Debug, Clone)]
pub struct Repository {
    /// The repository URL, without a trailing `/`.
    pub mirror: String,
    /// A `root.json` to start from; `None` is the embedded public-good root.
    pub root: Option<PathBuf>,
    /// `~/.sigstore/root`, shared with cosign and sigstore-go.
    pub cache_base: PathBuf,
}

impl Repository {
    /// `mirror` (empty: the public-good one) cached under `home`'s
    /// `.sigstore/root` (no home: under the temp dir).
    pub fn new(mirror: Option<&str>, root: Option<PathBuf>, home: Option<&Path>) -> Repository {
        let mirror = mirror
            .map(|m| m.trim().trim_end_matches('/'))
            .filter(|m| !m.is_empty())
            .unwrap_or(DEFAULT_MIRROR)
            .to_string();
        let cache_base = home
            .filter(|h| !h.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir)
            .join(".sigstore/root");
        Repository {
            mirror,
            root: root.filter(|p| !p.as_os_str().is_empty()),
            cache_base,
        }
    }

    /// Where the verified metadata of this mirror is cached.
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.cache_base.join(mirror_dir_name(&self.mirror))
    }

    /// The cached `trusted_root.json` that `aicr verify` reads.
    pub fn trusted_root_cache_path(&self) -> PathBuf {
        self.cache_dir().join("targets").join(TARGET)
    }

    /// The file recording when the cache was last refreshed
    /// (`~/.sigstore/root/<mirror>.json`, `{"lastTimestamp": ...}`).
    fn refresh_record_path(&self) -> PathBuf {
        self.cache_base
            .join(format!("{}.json", mirror_dir_name(&self.mirror)))
    }
}

/// The cache folder name for a mirror, as sigstore-go derives it: the URL
/// without its scheme, `/` replaced by `-`.
pub(crate) fn mirror_dir_name(mirror: &str) -> String {
    let rest = mirror.split_once("://").map_or(mirror, |(_, r)| r);
    rest.trim_end_matches('/').replace('/', "-")
}

/// What a successful refresh installed.
#[derive(Debug, Clone)]
pub struct Updated {
    pub certificate_authorities: usize,
    pub transparency_logs: usize,
    /// The folder holding the verified metadata and targets.
    pub cache: PathBuf,
}

/// Bound on a `root.json` named by `--tuf-root`; real ones are ~5 KiB.
const MAX_ROOT_FILE: u64 = 1024 * 1024;

/// The `root.json` trust starts from: the repository's own, else the
/// embedded public-good root (only valid for the public-good repository).
fn bootstrap_root(repo: &Repository) -> Result<Vec<u8>> {
    let Some(path) = &repo.root else {
        if repo.mirror != DEFAULT_MIRROR {
            tracing::warn!(
                mirror = %repo.mirror,
                "starting trust from the embedded public-good root; pass --tuf-root ({ROOT_ENV}) for a private repository"
            );
        }
        return Ok(sigstore_trust_root::SigstoreInstance::PublicGood
            .tuf_root()
            .to_vec());
    };
    let read = || -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_ROOT_FILE + 1)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read().map_err(|e| {
        Error::not_found(format!(
            "cannot read TUF root {} (--tuf-root, {ROOT_ENV}): {e}",
            path.display()
        ))
    })?;
    if bytes.len() as u64 > MAX_ROOT_FILE {
        return Err(Error::invalid(format!(
            "TUF root {} (--tuf-root, {ROOT_ENV}) is larger than {MAX_ROOT_FILE} bytes; not a TUF root",
            path.display()
        )));
    }
    let is_root = serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|v| v["signed"]["_type"] == "root");
    if !is_root {
        return Err(Error::invalid(format!(
            "TUF root {} (--tuf-root, {ROOT_ENV}) is not a TUF root.json (signed._type must be \"root\")",
            path.display()
        )));
    }
    Ok(bytes)
}

fn check_mirror(mirror: &str) -> Result<()> {
    let ok = ["https://", "http://"]
        .iter()
        .any(|s| mirror.len() > s.len() && mirror.starts_with(s));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid TUF mirror {mirror:?} (--tuf-mirror, {MIRROR_ENV}): expected an http(s) URL such as {DEFAULT_MIRROR}"
        )))
    }
}

/// Refresh the trusted root from the repository into its cache.
///
/// Everything written is verified first (`sigstore-tuf` writes metadata
/// through to the cache only after its checks pass, each file by an atomic
/// rename), so a failed refresh leaves the previous cache usable.
pub async fn update(repo: &Repository) -> Result<Updated> {
    let mirror = repo.mirror.clone();
    check_mirror(&mirror)?;
    let root = bootstrap_root(repo)?;
    let cache = repo.cache_dir();
    crate::install_tls_provider();
    super::crypto_ready();
    let config = sigstore_trust_root::TufConfig::custom(
        mirror.clone(),
        sigstore_trust_root::TufBootstrap::trusted(root),
    )
    .with_cache_dir(cache.clone());
    let failed =
        |kind, msg: String| Error::new(kind, format!("failed to update trusted root: {msg}"));
    let trusted = tokio::time::timeout(
        UPDATE_TIMEOUT,
        sigstore_trust_root::TrustedRoot::from_tuf(config),
    )
    .await
    .map_err(|_| {
        failed(
            ErrorKind::Timeout,
            format!(
                "{mirror} did not complete within {}s",
                UPDATE_TIMEOUT.as_secs()
            ),
        )
    })?
    .map_err(|e| failed(ErrorKind::Unavailable, e.to_string()))?;
    record_refresh(&repo.refresh_record_path())?;
    Ok(Updated {
        certificate_authorities: trusted.certificate_authorities.len(),
        transparency_logs: trusted.tlogs.len(),
        cache,
    })
}

/// Write `{"lastTimestamp": ...}` beside the cache, atomically.
fn record_refresh(path: &Path) -> Result<()> {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let body = serde_json::json!({ "lastTimestamp": now.to_string() }).to_string();
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(body.as_bytes())?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|e| {
        Error::internal(format!(
            "cannot record the refresh in {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_folders_follow_sigstore_go() {
        assert_eq!(mirror_dir_name(DEFAULT_MIRROR), "tuf-repo-cdn.sigstore.dev");
        assert_eq!(
            mirror_dir_name("http://127.0.0.1:8080/a/b/"),
            "127.0.0.1:8080-a-b"
        );
    }

    #[test]
    fn only_http_mirrors_are_accepted() {
        assert!(check_mirror(DEFAULT_MIRROR).is_ok());
        assert!(check_mirror("http://127.0.0.1:1").is_ok());
        for bad in ["file:///etc", "https://", "tuf-repo-cdn.sigstore.dev", ""] {
            let e = check_mirror(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn embedded_root_is_a_self_signed_tuf_root() {
        let root = bootstrap_root(&Repository::new(None, None, None)).unwrap();
        let set = sigstore_tuf::TrustedMetadataSet::from_root(&root).unwrap();
        assert!(set.root().version >= 1);
    }
}
