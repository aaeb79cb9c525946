//! Keyless signing: an ephemeral P-256 key, a Fulcio certificate for the
//! OIDC identity, a DSSE signature over the statement and a Rekor entry,
//! assembled into a Sigstore bundle v0.3. The private key lives only in
//! memory for one signature.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use serde_json::Value;

use super::sigstore_bundle::{
    self, Envelope, IN_TOTO_PAYLOAD_TYPE, MEDIA_TYPE_V03, RawBytes, Signature, SigstoreBundle,
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
    /// Signs as the token's subject through these services (the caller's
    /// defaults are [`fulcio::PUBLIC_GOOD`] and [`rekor::PUBLIC_GOOD`]).
    pub fn new(token: String, fulcio_url: &str, rekor_url: &str) -> Result<Keyless> {
        let subject = oidc::subject(&oidc::claims(&token)?)?;
        tracing::info!("OIDC identity: {subject}");
        Ok(Keyless {
            fulcio_url: fulcio_url.to_string(),
            rekor_url: rekor_url.to_string(),
            token,
            subject,
        })
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = sigstore_bundle::b64(der);
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
        let sig = sign(&sigstore_bundle::pae(IN_TOTO_PAYLOAD_TYPE, &payload))?;
        let envelope = Envelope {
            payload: sigstore_bundle::b64(&payload),
            payload_type: IN_TOTO_PAYLOAD_TYPE.into(),
            signatures: vec![Signature {
                sig: sigstore_bundle::b64(&sig),
                keyid: String::new(),
            }],
        };
        let envelope_json = serde_json::to_string(&envelope)
            .map_err(|e| Error::internal(format!("cannot encode envelope: {e}")))?;
        let entry = rekor::upload_dsse(&self.rekor_url, &envelope_json, &pem("CERTIFICATE", leaf))?;

        SigstoreBundle {
            media_type: MEDIA_TYPE_V03.into(),
            verification_material: VerificationMaterial {
                certificate: Some(RawBytes {
                    raw_bytes: sigstore_bundle::b64(leaf),
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
