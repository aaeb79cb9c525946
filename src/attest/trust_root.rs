//! The Sigstore trusted root (`trusted_root.json`): Fulcio certificate
//! authorities and Rekor log keys with their validity windows, and the
//! cache location shared with cosign and sigstore-go
//! (`~/.sigstore/root/tuf-repo-cdn.sigstore.dev/targets/trusted_root.json`).

use std::path::PathBuf;

use serde::Deserialize;

use super::bundle_json::unb64;
use crate::error::{Error, Result};

/// The TUF repository whose cache directory name we share.
pub const TUF_HOST: &str = "tuf-repo-cdn.sigstore.dev";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawCa>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    public_key: RawKey,
    log_id: RawKeyId,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKeyId {
    key_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    raw_bytes: String,
    #[serde(default)]
    valid_for: Option<Validity>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCa {
    cert_chain: RawChain,
    #[serde(default)]
    valid_for: Option<Validity>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawChain {
    certificates: Vec<RawCert>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Validity {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

/// A time window in Unix seconds; `None` ends are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl Window {
    pub fn contains(&self, t: i64) -> bool {
        self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t <= e)
    }
}

/// A Fulcio CA: DER certificates, leaf-most (intermediate) first, root last.
#[derive(Debug, Clone)]
pub struct CertificateAuthority {
    pub chain: Vec<Vec<u8>>,
    pub valid: Window,
}

/// A transparency log key: DER SubjectPublicKeyInfo and its log id.
#[derive(Debug, Clone)]
pub struct TransparencyLog {
    pub log_id: Vec<u8>,
    pub spki: Vec<u8>,
    pub valid: Window,
}

#[derive(Debug, Clone)]
pub struct TrustedRoot {
    pub cas: Vec<CertificateAuthority>,
    pub logs: Vec<TransparencyLog>,
}

fn window(v: Option<Validity>) -> Result<Window> {
    let v = v.unwrap_or_default();
    let t = |s: Option<String>| -> Result<Option<i64>> {
        s.map(|s| {
            humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
                .or_else(|_| humantime::parse_rfc3339(&s))
                .map_err(|e| Error::invalid(format!("invalid time {s:?} in trusted root: {e}")))
                .map(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64)
                })
        })
        .transpose()
    };
    Ok(Window {
        start: t(v.start)?,
        end: t(v.end)?,
    })
}

impl TrustedRoot {
    pub fn parse(bytes: &[u8]) -> Result<TrustedRoot> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(format!("malformed trusted root JSON: {e}")))?;
        let cas = raw
            .certificate_authorities
            .into_iter()
            .map(|ca| {
                Ok(CertificateAuthority {
                    chain: ca
                        .cert_chain
                        .certificates
                        .iter()
                        .map(|c| unb64(&c.raw_bytes, "trusted root certificate"))
                        .collect::<Result<_>>()?,
                    valid: window(ca.valid_for)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let logs = raw
            .tlogs
            .into_iter()
            .map(|l| {
                Ok(TransparencyLog {
                    log_id: unb64(&l.log_id.key_id, "trusted root log id")?,
                    spki: unb64(&l.public_key.raw_bytes, "trusted root log key")?,
                    valid: window(l.public_key.valid_for)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TrustedRoot { cas, logs })
    }

    /// The cached root written by `aicr trust update` (or cosign). Never
    /// fetched here: verification stays offline.
    pub fn load_cached() -> Result<TrustedRoot> {
        let path = cached_path();
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::not_found(format!(
                "no Sigstore trusted root at {}: {e}; run `aicr trust update`",
                path.display()
            ))
        })?;
        TrustedRoot::parse(&bytes).map_err(|e| e.context(path.display()))
    }
}

/// `~/.sigstore/root`, or under the temp dir when there is no home.
pub fn cache_base() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".sigstore/root")
}

pub fn cached_path() -> PathBuf {
    cache_base()
        .join(TUF_HOST)
        .join("targets/trusted_root.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cas_logs_and_windows() {
        let r = TrustedRoot::parse(
            br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs":[{"baseUrl":"x","hashAlgorithm":"SHA2_256","publicKey":{"rawBytes":"AQI=","keyDetails":"PKIX_ECDSA_P256_SHA_256","validFor":{"start":"2021-01-12T11:53:27Z"}},"logId":{"keyId":"AwQ="}}],
            "certificateAuthorities":[{"certChain":{"certificates":[{"rawBytes":"BQY="}]},"validFor":{"start":"2022-04-13T20:06:15.000Z","end":"2023-01-01T00:00:00Z"}}]}"#,
        )
        .unwrap();
        assert_eq!(r.logs[0].spki, [1, 2]);
        assert_eq!(r.logs[0].log_id, [3, 4]);
        assert_eq!(r.cas[0].chain, [vec![5, 6]]);
        assert!(r.cas[0].valid.contains(1_660_000_000));
        assert!(!r.cas[0].valid.contains(1_700_000_000));
        assert!(TrustedRoot::parse(b"[").is_err());
    }
}
