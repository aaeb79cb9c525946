//! Offline verification of one Sigstore bundle against a trusted root:
//! transparency-log entry (signed entry timestamp, inclusion proof and
//! signed checkpoint, body bound to this envelope), the signing
//! certificate's chain to a Fulcio CA at the logged time, the DSSE
//! signature, the in-toto subject digest and the identity policy.

use std::time::Duration;

use ring::signature::{self, UnparsedPublicKey};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::Value;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::bundle_json::{self, Bundle, Envelope, IN_TOTO_PAYLOAD_TYPE, TlogEntry, unb64};
use super::identity::Policy;
use super::statement;
use super::trust_root::TrustedRoot;
use crate::error::{Error, ErrorKind, Result};

/// Fulcio's OIDC issuer extension (v2, DER UTF8String) and its legacy form.
const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// id-kp-codeSigning, DER content octets (enforced for CAs that list EKUs).
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// What a successful verification proves.
#[derive(Debug, Clone)]
pub struct Verified {
    /// First email SAN, else first URI SAN, of the signing certificate.
    pub identity: String,
    pub issuer: String,
    /// The signed in-toto statement.
    pub statement: Value,
    /// The log's integrated time (Unix seconds).
    pub signed_at: i64,
}

/// Seam between the bundler / `aicr verify` and the Sigstore checks.
pub trait BundleVerifier {
    fn verify(&self, bundle: &[u8], sha256_hex: &str, policy: &Policy) -> Result<Verified>;
}

/// The real verifier over a trusted root.
pub struct Offline<'a>(pub &'a TrustedRoot);

impl BundleVerifier for Offline<'_> {
    fn verify(&self, bundle: &[u8], sha256_hex: &str, policy: &Policy) -> Result<Verified> {
        verify(bundle, sha256_hex, policy, self.0)
    }
}

/// The verifier for the CLI: the cached trusted root, read only when an
/// attestation is actually present.
pub struct Cached;

impl BundleVerifier for Cached {
    fn verify(&self, bundle: &[u8], sha256_hex: &str, policy: &Policy) -> Result<Verified> {
        verify(bundle, sha256_hex, policy, &TrustedRoot::load_cached()?)
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unauthorized, msg)
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Verify an ECDSA (ASN.1 DER) signature with a DER SubjectPublicKeyInfo.
fn verify_ecdsa(spki_der: &[u8], msg: &[u8], sig: &[u8]) -> Result<()> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| bad(format!("unreadable public key: {e}")))?;
    verify_ecdsa_point(&spki.subject_public_key.data, msg, sig)
}

fn verify_ecdsa_point(point: &[u8], msg: &[u8], sig: &[u8]) -> Result<()> {
    let alg: &dyn signature::VerificationAlgorithm = match point.len() {
        65 => &signature::ECDSA_P256_SHA256_ASN1,
        97 => &signature::ECDSA_P384_SHA384_ASN1,
        n => return Err(bad(format!("unsupported public key ({n}-byte point)"))),
    };
    UnparsedPublicKey::new(alg, point)
        .verify(msg, sig)
        .map_err(|_| bad("signature does not verify"))
}

/// Verify `bytes` (a Sigstore bundle) for an artifact with this digest.
pub fn verify(
    bytes: &[u8],
    sha256_hex: &str,
    policy: &Policy,
    root: &TrustedRoot,
) -> Result<Verified> {
    if sha256_hex.is_empty() {
        return Err(Error::invalid(
            "refusing to verify without an artifact digest",
        ));
    }
    let b = Bundle::parse(bytes)?;
    let env = &b.dsse_envelope;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(bad(format!(
            "unexpected DSSE payload type {:?}",
            env.payload_type
        )));
    }
    let payload = unb64(&env.payload, "DSSE payload")?;
    let certs = b.certificates()?;
    let leaf_der = &certs[0];
    let entries = &b.verification_material.tlog_entries;
    if entries.is_empty() {
        return Err(bad("sigstore bundle has no transparency log entry"));
    }
    let mut signed_at = None;
    for e in entries {
        signed_at = Some(verify_tlog(e, root, env, &payload, leaf_der)?);
    }
    let signed_at = signed_at.unwrap_or_default();

    verify_chain(leaf_der, &certs[1..], root, signed_at)?;

    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| bad(format!("unreadable signing certificate: {e}")))?;
    let pae = bundle_json::pae(&env.payload_type, &payload);
    let point = &leaf.public_key().subject_public_key.data;
    let signed = env.signatures.iter().any(|s| {
        unb64(&s.sig, "DSSE signature")
            .is_ok_and(|sig| verify_ecdsa_point(point, &pae, &sig).is_ok())
    });
    if !signed {
        return Err(bad(
            "DSSE signature does not verify with the signing certificate",
        ));
    }

    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|e| bad(format!("signed payload is not an in-toto statement: {e}")))?;
    if statement["_type"].as_str() != Some(statement::STATEMENT_TYPE) {
        return Err(bad("signed payload is not an in-toto v1 statement"));
    }
    if !statement::has_subject_digest(&statement, &sha256_hex.to_ascii_lowercase()) {
        return Err(bad(format!(
            "no statement subject has digest sha256:{sha256_hex}"
        )));
    }
    let (identity, issuer) = identity_of(&leaf)?;
    policy.check(&issuer, &identity)?;
    Ok(Verified {
        identity,
        issuer,
        statement,
        signed_at,
    })
}

/// SAN (email first, then URI) and OIDC issuer of a Fulcio certificate.
fn identity_of(cert: &X509Certificate<'_>) -> Result<(String, String)> {
    let code_signing = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.code_signing);
    if !code_signing {
        return Err(bad("signing certificate is not valid for code signing"));
    }
    let mut email = None;
    let mut uri = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::RFC822Name(s) if email.is_none() => email = Some(s.to_string()),
                GeneralName::URI(s) if uri.is_none() => uri = Some(s.to_string()),
                _ => {}
            }
        }
    }
    let identity = email
        .or(uri)
        .ok_or_else(|| bad("signing certificate has no email or URI identity"))?;
    let mut issuer = None;
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if oid == OID_ISSUER_V2 {
            let (_, obj) = x509_parser::der_parser::der::parse_der_utf8string(ext.value)
                .map_err(|e| bad(format!("unreadable issuer extension: {e}")))?;
            issuer = obj.as_str().ok().map(str::to_string);
            break;
        }
        if oid == OID_ISSUER_V1 {
            issuer = std::str::from_utf8(ext.value).ok().map(str::to_string);
        }
    }
    let issuer = issuer.ok_or_else(|| bad("signing certificate has no OIDC issuer extension"))?;
    Ok((identity, issuer))
}

/// Chain the leaf to a Fulcio CA that was valid at `at`.
fn verify_chain(leaf: &[u8], extra: &[Vec<u8>], root: &TrustedRoot, at: i64) -> Result<()> {
    let leaf_der = CertificateDer::from(leaf);
    let ee = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| bad(format!("unreadable signing certificate: {e}")))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(at.max(0) as u64));
    let mut last = None;
    for ca in root.cas.iter().filter(|ca| ca.valid.contains(at)) {
        let Some((anchor_der, inter)) = ca.chain.split_last() else {
            continue;
        };
        let anchor_der = CertificateDer::from(anchor_der.as_slice());
        let Ok(anchor) = webpki::anchor_from_trusted_cert(&anchor_der) else {
            continue;
        };
        let intermediates: Vec<CertificateDer<'_>> = inter
            .iter()
            .chain(extra)
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        match ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &intermediates,
            time,
            // CAs may omit the EKU extension; the leaf's is checked in `identity_of`.
            webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
            None,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e @ (webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. })) => {
            bad(format!(
                "signing certificate was not valid when the signature was logged: {e}"
            ))
        }
        other => bad(format!(
            "certificate chain does not lead to a trusted Fulcio CA ({}); the signing certificate may come from a CA missing in the local trusted root (Sigstore rotated keys) — run `aicr trust update`",
            other.map_or_else(
                || "no CA valid at signing time".to_string(),
                |e| e.to_string()
            )
        )),
    })
}

/// Check one log entry; returns its integrated time.
fn verify_tlog(
    e: &TlogEntry,
    root: &TrustedRoot,
    env: &Envelope,
    payload: &[u8],
    leaf: &[u8],
) -> Result<i64> {
    let log_id = unb64(&e.log_id.key_id, "log id")?;
    let integrated = bundle_json::parse_i64(&e.integrated_time, "integratedTime")?;
    let log = root
        .logs
        .iter()
        .find(|l| l.log_id == log_id && l.valid.contains(integrated))
        .ok_or_else(|| {
            bad("transparency log entry is from a log not in the trusted root; run `aicr trust update`")
        })?;
    let body = unb64(&e.canonicalized_body, "canonicalizedBody")?;
    let index = bundle_json::parse_i64(&e.log_index, "logIndex")?;

    let promise = e
        .inclusion_promise
        .as_ref()
        .ok_or_else(|| bad("transparency log entry has no signed entry timestamp"))?;
    let set_payload = format!(
        "{{\"body\":{},\"integratedTime\":{integrated},\"logID\":\"{}\",\"logIndex\":{index}}}",
        serde_json::Value::String(e.canonicalized_body.clone()),
        hex(&log_id)
    );
    let set = unb64(&promise.signed_entry_timestamp, "signedEntryTimestamp")?;
    verify_ecdsa(&log.spki, set_payload.as_bytes(), &set)
        .map_err(|_| bad("signed entry timestamp does not verify with the log key"))?;

    if let Some(p) = &e.inclusion_proof {
        let size = bundle_json::parse_i64(&p.tree_size, "treeSize")?;
        let pidx = bundle_json::parse_i64(&p.log_index, "inclusionProof.logIndex")?;
        let hashes = p
            .hashes
            .iter()
            .map(|h| unb64(h, "inclusion proof hash"))
            .collect::<Result<Vec<_>>>()?;
        let want = unb64(&p.root_hash, "rootHash")?;
        let leaf_hash = sha256(&[&[0u8], &body]);
        let got = merkle_root(pidx as u64, size as u64, leaf_hash, &hashes)
            .ok_or_else(|| bad("malformed inclusion proof"))?;
        if got.as_slice() != want.as_slice() {
            return Err(bad("inclusion proof does not lead to the logged root hash"));
        }
        verify_checkpoint(&p.checkpoint.envelope, &log.spki, size, &want)?;
    }
    bind_body(&body, env, payload, leaf)?;
    Ok(integrated)
}

/// RFC 9162 inclusion proof → root hash.
fn merkle_root(index: u64, size: u64, leaf: [u8; 32], proof: &[Vec<u8>]) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, leaf);
    for p in proof {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = sha256(&[&[1u8], p, &r]);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = sha256(&[&[1u8], &r, p]);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// A signed note: `origin\nsize\nbase64(root)\n[other]\n\n— name base64(hint‖sig)\n`.
fn verify_checkpoint(note: &str, log_spki: &[u8], size: i64, root_hash: &[u8]) -> Result<()> {
    let (text, sigs) = note
        .split_once("\n\n")
        .ok_or_else(|| bad("malformed checkpoint"))?;
    let signed = format!("{text}\n");
    let mut lines = text.lines();
    let _origin = lines.next();
    let ok_size = lines.next().and_then(|s| s.parse::<i64>().ok()) == Some(size);
    let ok_root = lines
        .next()
        .and_then(|r| unb64(r, "checkpoint root").ok())
        .is_some_and(|r| r == root_hash);
    if !ok_size || !ok_root {
        return Err(bad("checkpoint does not match the inclusion proof"));
    }
    let verified = sigs.lines().filter_map(|l| l.strip_prefix("— ")).any(|l| {
        l.rsplit_once(' ')
            .and_then(|(_, s)| unb64(s, "checkpoint signature").ok())
            .filter(|s| s.len() > 4)
            .is_some_and(|s| verify_ecdsa(log_spki, signed.as_bytes(), &s[4..]).is_ok())
    });
    if verified {
        Ok(())
    } else {
        Err(bad("checkpoint signature does not verify with the log key"))
    }
}

/// The logged body must describe this envelope and certificate, or a valid
/// log entry for something else could be replayed.
fn bind_body(body: &[u8], env: &Envelope, payload: &[u8], leaf: &[u8]) -> Result<()> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("unreadable log entry body: {e}")))?;
    let spec = &v["spec"];
    let (hash, sigs) = match v["kind"].as_str() {
        Some("dsse") => (&spec["payloadHash"], spec["signatures"].as_array()),
        Some("intoto") => (
            &spec["content"]["payloadHash"],
            spec["content"]["envelope"]["signatures"].as_array(),
        ),
        other => return Err(bad(format!("unsupported log entry kind {other:?}"))),
    };
    if hash["value"].as_str() != Some(hex(&sha256(&[payload])).as_str()) {
        return Err(bad("log entry does not record this payload"));
    }
    let leaf_b64 = bundle_json::b64(leaf);
    let matches = sigs.is_some_and(|sigs| {
        sigs.iter().any(|s| {
            let key = s["verifier"]
                .as_str()
                .or(s["publicKey"].as_str())
                .unwrap_or("");
            let pem = unb64(key, "log entry verifier").unwrap_or_default();
            let pem = String::from_utf8_lossy(&pem);
            let body_cert: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            body_cert == leaf_b64
                && env.signatures.iter().any(|es| {
                    s["signature"].as_str() == Some(es.sig.as_str())
                        || s["sig"]
                            .as_str()
                            .map(|x| unb64(x, "sig").unwrap_or_default())
                            == Some(es.sig.clone().into_bytes())
                })
        })
    });
    if matches {
        Ok(())
    } else {
        Err(bad(
            "log entry does not record this signature and certificate",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_roots_follow_rfc9162() {
        let l = |i: u8| sha256(&[&[0u8], &[i]]);
        let n = |a: [u8; 32], b: [u8; 32]| sha256(&[&[1u8], &a, &b]);
        assert_eq!(merkle_root(0, 1, l(0), &[]), Some(l(0)));
        let root3 = n(n(l(0), l(1)), l(2));
        assert_eq!(
            merkle_root(2, 3, l(2), &[n(l(0), l(1)).to_vec()]),
            Some(root3)
        );
        assert_eq!(
            merkle_root(1, 3, l(1), &[l(0).to_vec(), l(2).to_vec()]),
            Some(root3)
        );
        assert_eq!(merkle_root(3, 3, l(1), &[]), None);
        assert_eq!(merkle_root(0, 2, l(0), &[]), None);
    }
}
