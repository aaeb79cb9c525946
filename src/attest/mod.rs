//! Bundle attestation (Sigstore keyless signing) and its offline
//! verification.
//!
//! - `statement`: the in-toto Statement with an SLSA Build Provenance v1
//!   predicate whose subject is `checksums.txt`.
//! - `sigstore_bundle`: the Sigstore bundle v0.3 JSON document and DSSE envelope.
//! - `trust_root`: which Sigstore `trusted_root.json` verification uses: the
//!   cached copy if present, else the one embedded in the binary.
//! - `tuf`: `aicr trust update`, the TUF refresh of that trusted root into
//!   the cache shared with cosign, and where the cache lives.
//! - `verifier`: checks a Sigstore bundle against a trusted root with
//!   `sigstore-verify`, then applies the identity policy.
//! - `identity`: the release identity binary attestations are pinned to and
//!   the allow-list for `--certificate-identity-regexp`.
//! - `oidc`: where the signer's OIDC identity token comes from.
//! - `fulcio`, `rekor`: HTTP clients for the certificate authority and the
//!   transparency log.
//! - `sign`: the keyless signing flow that ties these together.
//!
//! Verification cryptography (certificate paths, SCTs, signatures, log
//! proofs) is `sigstore-verify`'s, on `aws-lc-rs`; signing uses `ring`. This
//! module only wires formats and policies together.
//!
//! "Bundle" is overloaded here: the *Sigstore bundle* is the signed JSON
//! document (`sigstore_bundle`), the *deploy bundle* is what `aicr bundle`
//! writes. This module must not import the deploy bundle's code
//! (`crate::bundle`); its verification (`bundle::verify`) builds on this one,
//! and the arrow only goes that way.

pub mod fulcio;
mod http;
pub mod identity;
pub mod oidc;
pub mod rekor;
pub mod sign;
pub(crate) mod sigstore_bundle;
pub mod statement;
pub mod trust_root;
pub mod tuf;
pub mod verifier;

/// The binary's own attestation file: the executable path plus this suffix.
pub(crate) const BINARY_ATTESTATION_SUFFIX: &str = "-attestation.sigstore.json";
/// Attestation files inside a bundle.
pub const BUNDLE_ATTESTATION: &str = "attestation/bundle-attestation.sigstore.json";
pub const BINARY_ATTESTATION_COPY: &str = "attestation/aicr-attestation.sigstore.json";

/// Where the running executable's attestation is expected.
pub fn binary_attestation_path(exe: &std::path::Path) -> std::path::PathBuf {
    let mut s = exe.as_os_str().to_owned();
    s.push(BINARY_ATTESTATION_SUFFIX);
    std::path::PathBuf::from(s)
}

/// Have aws-lc detect the CPU's features before it verifies anything.
///
/// The workspace builds aws-lc without its static initialiser
/// (`.cargo/config.toml`), which probed the CPU in every `aicr` process,
/// before `main`, whatever the command. Without this call verification
/// would still be correct but use no AES, SHA or vector instructions.
/// Idempotent, and a no-op where aws-lc was built with the initialiser.
pub(crate) fn crypto_ready() {
    aws_lc_rs::init();
}
