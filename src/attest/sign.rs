//! Keyless signing: an ephemeral P-256 key, a Fulcio certificate for the
//! OIDC identity, a DSSE signature over the statement and a Rekor entry,
//! assembled into a Sigstore bundle v0.3. The private key lives only in
//! memory for one signature.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use serde_json::Value;

use super::bundle_json::{
    self, Bundle, Envelope, IN_TOTO_PAYLOAD_TYPE, MEDIA_TYPE_V03, RawBytes, Signature,
    VerificationMaterial,
};
use super::{fulcio, oidc, rekor};
use crate::error::{Error, Result};

/// Seam between the bundler and Sigstore: statement → bundle JSON.
pub trait Attester {
    fn attest(&self, statement: &Value) -> Result<String>;
    /// The identity the signature will carry, for the provenance.
    fn identity(&self) -> &str;
}

/// Sigstore keyless signing against Fulcio and Rekor.
pub struct Keyless {
    pub fulcio_url: String,
    pub rekor_url: String,
    token: String,
    subject: String,
}

impl Keyless {
    /// Service URLs default to the public-good instance; `AICR_FULCIO_URL`
    /// and `AICR_REKOR_URL` point at a private deployment.
    pub fn new(token: String) -> Result<Keyless> {
        let subject = oidc::subject(&oidc::claims(&token)?)?;
        tracing::info!("OIDC identity: {subject}");
        let url = |var: &str, default: &str| {
            std::env::var(var)
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Ok(Keyless {
            fulcio_url: url("AICR_FULCIO_URL", fulcio::PUBLIC_GOOD),
            rekor_url: url("AICR_REKOR_URL", rekor::PUBLIC_GOOD),
            token,
            subject,
        })
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = bundle_json::b64(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

impl Attester for Keyless {
    fn identity(&self) -> &str {
        &self.subject
    }

    fn attest(&self, statement: &Value) -> Result<String> {
        let rng = SystemRandom::new();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::internal(format!("cannot generate signing key: {e}")))?;
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der(), &rng)
                .map_err(|e| Error::internal(format!("cannot load signing key: {e}")))?;
        let sign = |msg: &[u8]| {
            signer
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::internal("signing failed"))
        };

        let proof = sign(self.subject.as_bytes())?;
        let chain =
            fulcio::signing_cert(&self.fulcio_url, &self.token, &key.public_key_pem(), &proof)?;
        let leaf = &chain[0];

        let payload = serde_json::to_vec(statement)
            .map_err(|e| Error::internal(format!("cannot encode statement: {e}")))?;
        let sig = sign(&bundle_json::pae(IN_TOTO_PAYLOAD_TYPE, &payload))?;
        let envelope = Envelope {
            payload: bundle_json::b64(&payload),
            payload_type: IN_TOTO_PAYLOAD_TYPE.into(),
            signatures: vec![Signature {
                sig: bundle_json::b64(&sig),
                keyid: String::new(),
            }],
        };
        let envelope_json = serde_json::to_string(&envelope)
            .map_err(|e| Error::internal(format!("cannot encode envelope: {e}")))?;
        let entry = rekor::upload_dsse(&self.rekor_url, &envelope_json, &pem("CERTIFICATE", leaf))?;

        Bundle {
            media_type: MEDIA_TYPE_V03.into(),
            verification_material: VerificationMaterial {
                certificate: Some(RawBytes {
                    raw_bytes: bundle_json::b64(leaf),
                }),
                x509_certificate_chain: None,
                tlog_entries: vec![entry],
            },
            dsse_envelope: envelope,
        }
        .to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_at_64_columns() {
        let p = pem("CERTIFICATE", &[7u8; 60]);
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last().unwrap(), &"-----END CERTIFICATE-----");
    }
}
