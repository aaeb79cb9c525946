//! Offline verification of one Sigstore bundle against a trusted root.
//!
//! `sigstore-verify` does the cryptography: the certificate chain to a Fulcio
//! CA at the log's integrated time, its SCT, the DSSE signature, the Rekor
//! signed entry timestamp, inclusion proof and checkpoint, the log body's
//! binding to this envelope and the in-toto subject digest. On top of that
//! this module insists on a logged integrated time and applies our identity
//! policy, which matches SANs by regular expression.

use serde_json::Value;
use sigstore_verify::types::{Bundle, Sha256Hash, SignatureContent};
use sigstore_verify::{
    CertificateError, Error as SigstoreError, TransparencyLogError, VerificationPolicy, Verifier,
};

use super::identity::Policy;
use super::sigstore_bundle::{IN_TOTO_PAYLOAD_TYPE, MAX_BUNDLE_BYTES};
use super::statement;
use super::trust_root::{self, TrustedRoot};
use crate::error::{Error, ErrorKind, Result};

/// What a successful verification proves.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signing certificate's SAN identity (email or URI).
    pub identity: String,
    pub issuer: String,
    /// The signed in-toto statement.
    pub statement: Value,
    /// The log's integrated time (Unix seconds).
    pub signed_at: i64,
}

/// Seam between the bundler / `aicr verify` and the Sigstore checks.
pub trait SigstoreVerifier {
    fn verify(&self, bundle: &[u8], sha256_hex: &str, policy: &Policy) -> Result<Verified>;
}

/// The real verifier over a trusted root.
pub struct Offline<'a>(pub &'a TrustedRoot);

impl SigstoreVerifier for Offline<'_> {
    fn verify(&self, bundle: &[u8], sha256_hex: &str, policy: &Policy) -> Result<Verified> {
        verify(bundle, sha256_hex, policy, self.0)
    }
}

/// The verifier for the CLI: the trusted root cached at this path (else the
/// embedded one), read only when an attestation is actually present.
pub struct Cached(pub std::path::PathBuf);

impl SigstoreVerifier for Cached {
    fn verify(&self, bundle: &[u8], sha256_hex: &str, policy: &Policy) -> Result<Verified> {
        verify(bundle, sha256_hex, policy, &trust_root::load(&self.0)?)
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unauthorized, msg)
}

/// SCTs are checked wherever the root lists CT logs to check them against
/// (test and private roots list none).
fn sigstore_policy(root: &TrustedRoot) -> VerificationPolicy {
    let policy = VerificationPolicy::any_identity();
    if root.ctlogs.is_empty() {
        policy.skip_sct()
    } else {
        policy
    }
}

/// Verify `bytes` (a Sigstore bundle) for an artifact with this digest.
pub(crate) fn verify(
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
    let digest = Sha256Hash::from_hex(sha256_hex)
        .map_err(|e| Error::invalid(format!("invalid artifact digest {sha256_hex:?}: {e}")))?;
    let bundle = parse(bytes)?;
    super::crypto_ready();
    let verifier = Verifier::new(root)
        .map_err(|e| Error::invalid(format!("unusable Sigstore trusted root: {e}")))?;
    let result = verifier
        .verify(digest, &bundle, &sigstore_policy(root))
        .map_err(|e| explain(e, &bundle, root))?;
    // Checked again although sigstore-verify promises them: a policy that
    // silently skipped them would otherwise pass unnoticed.
    if !result.certificate_verified() || !result.tlog_verified() {
        return Err(bad(
            "certificate chain or transparency log was not verified",
        ));
    }
    // Only a Rekor signed entry timestamp authenticates the signing time.
    let signed_at = result
        .integrated_time()
        .ok_or_else(|| bad("transparency log entry has no signed entry timestamp"))?
        .as_second();

    let SignatureContent::DsseEnvelope(envelope) = &bundle.content else {
        return Err(bad("sigstore bundle holds no DSSE envelope"));
    };
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(bad(format!(
            "unexpected DSSE payload type {:?}",
            envelope.payload_type
        )));
    }
    let statement: Value = serde_json::from_slice(envelope.payload.as_bytes())
        .map_err(|e| bad(format!("signed payload is not an in-toto statement: {e}")))?;
    if statement["_type"].as_str() != Some(statement::STATEMENT_TYPE) {
        return Err(bad("signed payload is not an in-toto v1 statement"));
    }
    if !statement::has_subject_digest(&statement, &sha256_hex.to_ascii_lowercase()) {
        return Err(bad(format!(
            "no statement subject has digest sha256:{sha256_hex}"
        )));
    }
    let identity = result
        .identity()
        .map(|san| san.as_str().to_string())
        .ok_or_else(|| bad("signing certificate has no email or URI identity"))?;
    let issuer = result
        .issuer()
        .map(str::to_string)
        .ok_or_else(|| bad("signing certificate has no OIDC issuer extension"))?;
    policy.check(&issuer, &identity)?;
    Ok(Verified {
        identity,
        issuer,
        statement,
        signed_at,
    })
}

fn parse(bytes: &[u8]) -> Result<Bundle> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(Error::invalid(format!(
            "sigstore bundle is larger than {MAX_BUNDLE_BYTES} bytes"
        )));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("malformed sigstore bundle JSON: {e}")))
}

/// A verification failure as the user can act on it.
fn explain(e: SigstoreError, bundle: &Bundle, root: &TrustedRoot) -> Error {
    match &e {
        SigstoreError::Certificate(
            CertificateError::Expired { .. } | CertificateError::NotYetValid { .. },
        ) => expired(&e),
        // The chain check fails first for a certificate used outside its
        // validity; the logged time only picks the message here, the
        // verification has failed either way.
        SigstoreError::Certificate(CertificateError::ChainInvalid(_))
            if logged_outside_validity(bundle) =>
        {
            expired(&e)
        }
        SigstoreError::Certificate(
            CertificateError::ChainInvalid(_) | CertificateError::NoValidAuthority { .. },
        ) => bad(format!(
            "certificate chain does not lead to a trusted Fulcio CA ({e}); the signing certificate may come from a CA missing in the local trusted root (Sigstore rotated keys) — run `aicr trust update`"
        )),
        // An unlisted log can fail any of the log checks first (its SET,
        // proof or checkpoint), not only the lookup by log id.
        SigstoreError::TransparencyLog(TransparencyLogError::UnknownLog { .. }) => unknown_log(&e),
        SigstoreError::TransparencyLog(_) if logged_elsewhere(bundle, root) => unknown_log(&e),
        _ => bad(e.to_string()),
    }
}

fn unknown_log(e: &SigstoreError) -> Error {
    bad(format!(
        "transparency log entry is from a log not in the trusted root ({e}); run `aicr trust update`"
    ))
}

/// Whether an entry names a log the trusted root does not list.
fn logged_elsewhere(bundle: &Bundle, root: &TrustedRoot) -> bool {
    bundle.verification_material.tlog_entries.iter().any(|t| {
        !root
            .tlogs
            .iter()
            .any(|l| l.log_id.key_id.as_bytes() == t.log_id.key_id.as_bytes())
    })
}

fn expired(e: &SigstoreError) -> Error {
    bad(format!(
        "signing certificate was not valid when the signature was logged: {e}"
    ))
}

fn logged_outside_validity(bundle: &Bundle) -> bool {
    let Some(cert) = bundle
        .signing_certificate()
        .and_then(|c| sigstore_verify::crypto::parse_certificate_info(c).ok())
    else {
        return false;
    };
    bundle
        .verification_material
        .tlog_entries
        .iter()
        .filter_map(|t| t.integrated_time)
        .any(|t| t < cert.not_before || t > cert.not_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sct_checks_follow_the_roots_ct_logs() {
        let production =
            trust_root::parse(sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes())
                .unwrap();
        let checks_sct = |root: &TrustedRoot| {
            matches!(
                sigstore_policy(root).certificate(),
                sigstore_verify::CertificatePolicy::Verify {
                    verify_sct: true,
                    ..
                }
            )
        };
        assert!(checks_sct(&production));
        let mut private = production;
        private.ctlogs.clear();
        assert!(!checks_sct(&private));
    }

    #[test]
    fn bad_input_is_refused_before_any_check() {
        let root =
            trust_root::parse(sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes())
                .unwrap();
        let any = Policy::any();
        let e = verify(b"{not json", &"a".repeat(64), &any, &root).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(e.message().starts_with("malformed sigstore bundle JSON"));
        assert!(!e.message().contains('\n'));
        let e = verify(
            &vec![b' '; MAX_BUNDLE_BYTES + 1],
            &"a".repeat(64),
            &any,
            &root,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(verify(b"{}", "", &any, &root).is_err());
    }
}
