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
pub const DEFAULT_MIRROR: &str = "https://tuf-repo-cdn.sigstore.dev";
/// Another TUF repository (a mirror or a private Sigstore), like cosign's
/// `initialize --mirror`.
pub const MIRROR_ENV: &str = "AICR_TUF_MIRROR";
/// A `root.json` to start trust from instead of the embedded one, like
/// cosign's `initialize --root`; needed for a private Sigstore.
pub const ROOT_ENV: &str = "AICR_TUF_ROOT";

/// The whole refresh is bounded so a stalled mirror cannot hang the CLI
/// (TUF's slow-retrieval attack); running past it is exit 5.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(30);

const TARGET: &str = "trusted_root.json";

/// The TUF repository in use: `AICR_TUF_MIRROR` or the public-good one.
pub fn mirror() -> String {
    std::env::var(MIRROR_ENV)
        .ok()
        .map(|m| m.trim().trim_end_matches('/').to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// `~/.sigstore/root`, or under the temp dir when there is no home.
pub fn cache_base() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".sigstore/root")
}

/// The cache folder name for a mirror, as sigstore-go derives it: the URL
/// without its scheme, `/` replaced by `-`.
pub fn mirror_dir_name(mirror: &str) -> String {
    let rest = mirror.split_once("://").map_or(mirror, |(_, r)| r);
    rest.trim_end_matches('/').replace('/', "-")
}

/// Where the verified metadata of `mirror()` is cached.
pub fn cache_dir() -> PathBuf {
    cache_base().join(mirror_dir_name(&mirror()))
}

/// The cached `trusted_root.json` that `aicr verify` reads.
pub fn trusted_root_cache_path() -> PathBuf {
    cache_dir().join("targets").join(TARGET)
}

/// The file recording when the cache was last refreshed
/// (`~/.sigstore/root/<mirror>.json`, `{"lastTimestamp": ...}`).
fn refresh_record_path() -> PathBuf {
    cache_base().join(format!("{}.json", mirror_dir_name(&mirror())))
}

/// What a successful refresh installed.
#[derive(Debug, Clone)]
pub struct Updated {
    pub certificate_authorities: usize,
    pub transparency_logs: usize,
    /// The folder holding the verified metadata and targets.
    pub cache: PathBuf,
}

/// Bound on a `root.json` named by `AICR_TUF_ROOT`; real ones are ~5 KiB.
const MAX_ROOT_FILE: u64 = 1024 * 1024;

/// The `root.json` trust starts from: `AICR_TUF_ROOT`, else the embedded
/// public-good root (only valid for the public-good repository).
fn bootstrap_root(mirror: &str) -> Result<Vec<u8>> {
    let Some(path) = std::env::var_os(ROOT_ENV).filter(|p| !p.is_empty()) else {
        if mirror != DEFAULT_MIRROR {
            tracing::warn!(
                mirror,
                "starting trust from the embedded public-good root; set {ROOT_ENV} for a private repository"
            );
        }
        return Ok(sigstore_trust_root::SigstoreInstance::PublicGood
            .tuf_root()
            .to_vec());
    };
    let path = PathBuf::from(path);
    let read = || -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(&path)?
            .take(MAX_ROOT_FILE + 1)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read()
        .map_err(|e| Error::not_found(format!("cannot read {ROOT_ENV} {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_ROOT_FILE {
        return Err(Error::invalid(format!(
            "{ROOT_ENV} {} is larger than {MAX_ROOT_FILE} bytes; not a TUF root",
            path.display()
        )));
    }
    let is_root = serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|v| v["signed"]["_type"] == "root");
    if !is_root {
        return Err(Error::invalid(format!(
            "{ROOT_ENV} {} is not a TUF root.json (signed._type must be \"root\")",
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
            "invalid {MIRROR_ENV} {mirror:?}: expected an http(s) URL such as {DEFAULT_MIRROR}"
        )))
    }
}

/// Refresh the trusted root from `mirror()` into `cache_dir()`.
///
/// Everything written is verified first (`sigstore-tuf` writes metadata
/// through to the cache only after its checks pass, each file by an atomic
/// rename), so a failed refresh leaves the previous cache usable.
pub fn update() -> Result<Updated> {
    let mirror = mirror();
    check_mirror(&mirror)?;
    let root = bootstrap_root(&mirror)?;
    let cache = cache_dir();
    crate::install_tls_provider();
    let config = sigstore_trust_root::TufConfig::custom(
        mirror.clone(),
        sigstore_trust_root::TufBootstrap::trusted(root),
    )
    .with_cache_dir(cache.clone());
    let failed =
        |kind, msg: String| Error::new(kind, format!("failed to update trusted root: {msg}"));
    let trusted = crate::k8s::block_on(async {
        tokio::time::timeout(
            UPDATE_TIMEOUT,
            sigstore_trust_root::TrustedRoot::from_tuf(config),
        )
        .await
    })?
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
    record_refresh(&refresh_record_path())?;
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
        let root = bootstrap_root(DEFAULT_MIRROR).unwrap();
        let set = sigstore_tuf::TrustedMetadataSet::from_root(&root).unwrap();
        assert!(set.root().version >= 1);
    }
}
