//! `aicr verify`: the trust level of a bundle directory, the minimum-level
//! policy and the text/JSON reports. This build checks checksums only; a
//! bundle attestation, when present, is reported as not verifiable here
//! and never raises the level above `unverified`. Fully offline.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::checksums;
use crate::error::{Error, Result};
use crate::yaml;

/// Trust levels, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustLevel {
    Unknown,
    Unverified,
    Attested,
    Verified,
}

impl TrustLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Unknown => "unknown",
            TrustLevel::Unverified => "unverified",
            TrustLevel::Attested => "attested",
            TrustLevel::Verified => "verified",
        }
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--min-trust-level`: `max` (the best this bundle can reach) or a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Max,
    AtLeast(TrustLevel),
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "max" => Policy::Max,
            "unknown" => Policy::AtLeast(TrustLevel::Unknown),
            "unverified" => Policy::AtLeast(TrustLevel::Unverified),
            "attested" => Policy::AtLeast(TrustLevel::Attested),
            "verified" => Policy::AtLeast(TrustLevel::Verified),
            _ => {
                return Err(Error::invalid(format!(
                    "invalid trust level {s:?}: must be one of unknown, unverified, attested, verified"
                )));
            }
        })
    }
}

/// The JSON report; key order and omissions follow the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub trust_level: TrustLevel,
    pub checksums_passed: bool,
    pub checksum_files: usize,
    pub bundle_attested: bool,
    pub binary_attested: bool,
    pub identity_pinned: bool,
    pub has_external_data: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Why the level stops where it does, for policy messages.
    #[serde(skip)]
    pub attestation_note: &'static str,
}

const NO_ATTESTATION: &str = "no attestation present";
const UNSUPPORTED: &str =
    "bundle attestation present, but signature verification is not available in this build";

/// Inspect a bundle directory. Missing directory → NOT_FOUND.
pub fn inspect(dir: &Path) -> Result<Outcome> {
    if !dir.is_dir() {
        return Err(Error::not_found(format!(
            "bundle directory not found: {}",
            dir.display()
        )));
    }
    let attestation = dir
        .join("attestation/bundle-attestation.sigstore.json")
        .exists();
    let mut out = Outcome {
        trust_level: TrustLevel::Unknown,
        checksums_passed: false,
        checksum_files: 0,
        bundle_attested: false,
        binary_attested: false,
        identity_pinned: false,
        has_external_data: dir.join("data").is_dir(),
        errors: Vec::new(),
        attestation_note: if attestation {
            UNSUPPORTED
        } else {
            NO_ATTESTATION
        },
    };
    let text = match std::fs::read(dir.join(checksums::FILE)) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => {
            out.errors.push("checksums.txt not found".into());
            return Ok(out);
        }
    };
    let report = checksums::verify(dir, &text);
    out.checksum_files = report.files;
    if !report.errors.is_empty() {
        out.errors = report.errors;
        return Ok(out);
    }
    out.checksums_passed = true;
    out.trust_level = TrustLevel::Unverified;
    if attestation {
        tracing::warn!("{UNSUPPORTED}; trust level stays unverified");
    }
    Ok(out)
}

impl Outcome {
    /// The highest level this bundle could reach with every check passing.
    fn max_achievable(&self) -> TrustLevel {
        if self.checksums_passed {
            TrustLevel::Unverified
        } else {
            TrustLevel::Unknown
        }
    }

    /// The policy failure line, if the policy is not met.
    pub fn policy_failure(&self, policy: Policy) -> Option<String> {
        let level = self.trust_level;
        match policy {
            Policy::Max if level < self.max_achievable() => Some(format!(
                "trust level \"{level}\" does not meet maximum achievable \"{}\" for this bundle",
                self.max_achievable()
            )),
            Policy::AtLeast(min) if level < min => {
                let why = if min >= TrustLevel::Attested && self.checksums_passed {
                    format!(": {}", self.attestation_note)
                } else {
                    String::new()
                };
                Some(format!(
                    "trust level \"{level}\" does not meet minimum \"{min}\"{why}"
                ))
            }
            _ => None,
        }
    }

    pub fn text(&self, policy_failure: Option<&str>) -> String {
        let mut s = String::new();
        if self.checksums_passed {
            s.push_str(&format!(
                "  ✓ Checksums verified ({} files)\n",
                self.checksum_files
            ));
        } else {
            s.push_str("  ✗ Checksum verification failed\n");
        }
        s.push_str(&format!("  Trust level: {}\n", self.trust_level));
        if !self.errors.is_empty() {
            s.push_str("\nDetails:\n");
            for e in &self.errors {
                s.push_str(&format!("  - {e}\n"));
            }
        }
        let passed = self.errors.is_empty() && policy_failure.is_none();
        s.push_str(&format!(
            "\nBundle verification: {}\n",
            if passed { "PASSED" } else { "FAILED" }
        ));
        if let Some(p) = policy_failure {
            s.push_str(&format!("  {p}\n"));
        }
        s
    }

    pub fn json(&self) -> Result<String> {
        yaml::to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yaml"), "a: 1\n").unwrap();
        let sums = checksums::render([("a.yaml", b"a: 1\n".as_slice())]);
        std::fs::write(d.path().join(checksums::FILE), sums).unwrap();
        d
    }

    #[test]
    fn intact_bundle_is_unverified_and_passes_max() {
        let d = bundle();
        let o = inspect(d.path()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Unverified);
        assert_eq!(o.checksum_files, 1);
        assert_eq!(o.policy_failure(Policy::Max), None);
        assert_eq!(
            o.policy_failure(Policy::parse("ATTESTED").unwrap())
                .unwrap(),
            "trust level \"unverified\" does not meet minimum \"attested\": no attestation present"
        );
        assert_eq!(
            o.json().unwrap(),
            "{\n  \"trustLevel\": \"unverified\",\n  \"checksumsPassed\": true,\n  \"checksumFiles\": 1,\n  \"bundleAttested\": false,\n  \"binaryAttested\": false,\n  \"identityPinned\": false,\n  \"hasExternalData\": false\n}\n"
        );
        assert!(o.text(None).contains("✓ Checksums verified (1 files)\n  Trust level: unverified\n\nBundle verification: PASSED"));
    }

    #[test]
    fn tampered_or_missing_checksums_are_unknown() {
        let d = bundle();
        std::fs::write(d.path().join("a.yaml"), "a: 2\n").unwrap();
        let o = inspect(d.path()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Unknown);
        assert!(o.errors[0].starts_with("checksum mismatch: a.yaml"));
        assert_eq!(o.policy_failure(Policy::Max), None);
        assert!(
            o.policy_failure(Policy::AtLeast(TrustLevel::Unverified))
                .is_some()
        );
        assert!(o.text(None).contains("✗ Checksum verification failed"));
        std::fs::remove_file(d.path().join(checksums::FILE)).unwrap();
        let o = inspect(d.path()).unwrap();
        assert_eq!(o.errors, ["checksums.txt not found"]);
        let e = inspect(&d.path().join("nope")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
        assert!(Policy::parse("gold").is_err());
    }

    #[test]
    fn an_attestation_cannot_raise_the_level_in_this_build() {
        let d = bundle();
        std::fs::create_dir(d.path().join("attestation")).unwrap();
        std::fs::write(
            d.path()
                .join("attestation/bundle-attestation.sigstore.json"),
            "{}",
        )
        .unwrap();
        let o = inspect(d.path()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Unverified);
        assert!(o.errors.is_empty());
        let f = o
            .policy_failure(Policy::AtLeast(TrustLevel::Verified))
            .unwrap();
        assert!(
            f.ends_with("signature verification is not available in this build"),
            "{f}"
        );
    }
}
