//! Rekor client: record a DSSE envelope and its certificate in the
//! transparency log and turn the answer into a bundle tlog entry.

use serde_json::{Value, json};

use super::http;
use super::sigstore_bundle::{
    Checkpoint, InclusionPromise, InclusionProof, KeyId, KindVersion, TlogEntry, b64,
};
use crate::error::{Error, ErrorKind, Result};

pub const PUBLIC_GOOD: &str = "https://rekor.sigstore.dev";

fn unavailable(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unavailable, msg)
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(unavailable(format!("Rekor returned invalid hex {s:?}")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| unavailable(format!("Rekor returned invalid hex {s:?}")))
        })
        .collect()
}

fn int(v: &Value, what: &str) -> Result<String> {
    v.as_i64()
        .map(|n| n.to_string())
        .ok_or_else(|| unavailable(format!("Rekor answer lacks {what}")))
}

/// Upload a `dsse` entry; `envelope_json` is the DSSE envelope as JSON and
/// `cert_pem` the signing certificate.
pub(crate) fn upload_dsse(base: &str, envelope_json: &str, cert_pem: &str) -> Result<TlogEntry> {
    let url = format!("{}/api/v1/log/entries", base.trim_end_matches('/'));
    let body = json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {"proposedContent": {
            "envelope": envelope_json,
            "verifiers": [b64(cert_pem.as_bytes())],
        }},
    });
    let (_, v) = http::post_json("Rekor upload", &url, &body, None, &[200, 201])?;
    let entry = v
        .as_object()
        .and_then(|m| m.values().next())
        .ok_or_else(|| unavailable("Rekor answer has no log entry"))?;
    let proof = &entry["verification"]["inclusionProof"];
    let inclusion_proof = if proof.is_object() {
        Some(InclusionProof {
            log_index: int(&proof["logIndex"], "inclusionProof.logIndex")?,
            root_hash: b64(&unhex(proof["rootHash"].as_str().unwrap_or_default())?),
            tree_size: int(&proof["treeSize"], "inclusionProof.treeSize")?,
            hashes: proof["hashes"]
                .as_array()
                .map(|hs| {
                    hs.iter()
                        .map(|h| unhex(h.as_str().unwrap_or_default()).map(|b| b64(&b)))
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?
                .unwrap_or_default(),
            checkpoint: Checkpoint {
                envelope: proof["checkpoint"].as_str().unwrap_or_default().to_string(),
            },
        })
    } else {
        None
    };
    let set = entry["verification"]["signedEntryTimestamp"]
        .as_str()
        .ok_or_else(|| unavailable("Rekor answer lacks a signed entry timestamp"))?;
    Ok(TlogEntry {
        log_index: int(&entry["logIndex"], "logIndex")?,
        log_id: KeyId {
            key_id: b64(&unhex(entry["logID"].as_str().unwrap_or_default())?),
        },
        kind_version: KindVersion {
            kind: "dsse".into(),
            version: "0.0.1".into(),
        },
        integrated_time: int(&entry["integratedTime"], "integratedTime")?,
        inclusion_promise: Some(InclusionPromise {
            signed_entry_timestamp: set.to_string(),
        }),
        inclusion_proof,
        canonicalized_body: entry["body"]
            .as_str()
            .ok_or_else(|| unavailable("Rekor answer lacks the entry body"))?
            .to_string(),
    })
}
