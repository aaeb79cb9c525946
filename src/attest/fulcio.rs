//! Fulcio client: trade an OIDC token and a proof of possession of an
//! ephemeral key for a short-lived signing certificate (`/api/v2/signingCert`).

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use super::http;
use crate::error::{Error, ErrorKind, Result};

pub const PUBLIC_GOOD: &str = "https://fulcio.sigstore.dev";

/// Request a certificate chain (leaf first, DER) for `public_key_pem`.
/// `proof` is the key's signature over the token's subject.
pub(crate) fn signing_cert(
    base: &str,
    token: &str,
    public_key_pem: &str,
    proof: &[u8],
) -> Result<Vec<Vec<u8>>> {
    let url = format!("{}/api/v2/signingCert", base.trim_end_matches('/'));
    let body = json!({
        "credentials": {"oidcIdentityToken": token},
        "publicKeyRequest": {
            "publicKey": {"algorithm": "ECDSA", "content": public_key_pem},
            "proofOfPossession": super::sigstore_bundle::b64(proof),
        },
    });
    let (_, v) = http::post_json(
        "Fulcio signing certificate request",
        &url,
        &body,
        None,
        &[200, 201],
    )?;
    let chain = v["signedCertificateEmbeddedSct"]["chain"]["certificates"]
        .as_array()
        .or_else(|| v["signedCertificateDetachedSct"]["chain"]["certificates"].as_array())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "Fulcio answer has no certificate chain",
            )
        })?;
    chain
        .iter()
        .map(|pem| {
            let pem = pem.as_str().unwrap_or_default();
            CertificateDer::from_pem_slice(pem.as_bytes())
                .map(|c| c.to_vec())
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!("Fulcio returned an unreadable certificate: {e}"),
                    )
                })
        })
        .collect()
}
