//! `aicr verify`: the trust level of a bundle directory (checksums, then
//! the bundle attestation, then the binary attestation it names), the
//! policy flags and the text/JSON reports. Fully offline: signatures are
//! checked against the cached or given trusted root, never fetched.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::checksums;
use crate::attest::identity;
use crate::attest::statement;
use crate::attest::verifier::SigstoreVerifier;
use crate::attest::{BINARY_ATTESTATION_COPY, BUNDLE_ATTESTATION};
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
    pub(crate) fn as_str(self) -> &'static str {
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
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bundle_creator: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub binary_builder: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tool_version: String,
    pub has_external_data: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Everything `aicr verify` asks of a bundle beyond its trust level.
#[derive(Debug, Clone)]
pub struct Requirements {
    pub min: Policy,
    pub creator: Option<String>,
    pub version: Option<VersionConstraint>,
}

/// `--cli-version-constraint`: an operator and a version; bare means `>=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConstraint {
    pub op: &'static str,
    pub version: semver::Version,
}

fn parse_version(s: &str) -> Option<semver::Version> {
    let s = s.trim().trim_start_matches('v');
    let core_len = s.find(['-', '+']).unwrap_or(s.len());
    let dots = s[..core_len].matches('.').count();
    let padded = match dots {
        0 => format!("{}.0.0{}", &s[..core_len], &s[core_len..]),
        1 => format!("{}.0{}", &s[..core_len], &s[core_len..]),
        _ => s.to_string(),
    };
    semver::Version::parse(&padded).ok()
}

impl VersionConstraint {
    pub fn parse(s: &str) -> Result<VersionConstraint> {
        let t = s.trim();
        let (op, rest) = ["==", "!=", ">=", "<=", ">", "<"]
            .iter()
            .find_map(|op| t.strip_prefix(op).map(|r| (*op, r)))
            .unwrap_or((">=", t));
        let version = parse_version(rest).ok_or_else(|| {
            Error::invalid(format!(
                "invalid --cli-version-constraint {s:?}: expected [op] version, op one of >=, >, <=, <, ==, !="
            ))
        })?;
        Ok(VersionConstraint { op, version })
    }

    pub(crate) fn allows(&self, v: &semver::Version) -> bool {
        let (a, b) = (v, &self.version);
        match self.op {
            "==" => a == b,
            "!=" => a != b,
            ">" => a > b,
            "<" => a < b,
            "<=" => a <= b,
            _ => a >= b,
        }
    }
}

impl fmt::Display for VersionConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.version)
    }
}

/// How attestations are checked: the Sigstore verifier and the identity
/// binary attestations must carry.
pub struct Checks<'a> {
    pub verifier: &'a dyn SigstoreVerifier,
    pub binary_identity: identity::Policy,
}

/// Inspect a bundle directory. Missing directory → NOT_FOUND; a path that
/// is something else → INVALID_REQUEST.
pub fn inspect(dir: &Path, checks: &Checks<'_>) -> Result<Outcome> {
    if !dir.exists() {
        return Err(Error::not_found(format!(
            "bundle directory not found: {}",
            dir.display()
        )));
    }
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "bundle path is not a directory: {} (aicr verify takes the bundle's directory)",
            dir.display()
        )));
    }
    let mut out = Outcome {
        trust_level: TrustLevel::Unknown,
        checksums_passed: false,
        checksum_files: 0,
        bundle_attested: false,
        binary_attested: false,
        identity_pinned: false,
        bundle_creator: String::new(),
        binary_builder: String::new(),
        tool_version: String::new(),
        has_external_data: dir.join("data").is_dir(),
        errors: Vec::new(),
    };
    // One read: these bytes are both checked and the attestation subject.
    let sums = match std::fs::read(dir.join(checksums::FILE)) {
        Ok(b) => b,
        Err(_) => {
            out.errors.push("checksums.txt not found".into());
            return Ok(out);
        }
    };
    let report = checksums::verify(dir, &String::from_utf8_lossy(&sums));
    out.checksum_files = report.files;
    if !report.errors.is_empty() {
        out.errors = report.errors;
        return Ok(out);
    }
    out.checksums_passed = true;
    out.trust_level = TrustLevel::Unverified;

    let Ok(bundle_att) = std::fs::read(dir.join(BUNDLE_ATTESTATION)) else {
        return Ok(out);
    };
    let signed = match checks.verifier.verify(
        &bundle_att,
        &checksums::sha256_hex(&sums),
        &identity::Policy::any(),
    ) {
        Ok(v) => v,
        Err(e) => {
            out.trust_level = TrustLevel::Unknown;
            out.errors.push(format!(
                "bundle attestation verification failed: {}",
                e.message()
            ));
            return Ok(out);
        }
    };
    out.bundle_attested = true;
    out.bundle_creator = signed.identity;
    out.tool_version = statement::tool_version(&signed.statement).unwrap_or_default();
    out.trust_level = TrustLevel::Attested;

    let Ok(binary_att) = std::fs::read(dir.join(BINARY_ATTESTATION_COPY)) else {
        return Ok(out);
    };
    let Some(binary_digest) = statement::binary_digest(&signed.statement) else {
        out.errors.push(
            "binary attestation verification failed: the bundle statement names no binary digest"
                .into(),
        );
        return Ok(out);
    };
    match checks
        .verifier
        .verify(&binary_att, &binary_digest, &checks.binary_identity)
    {
        Ok(v) => {
            out.binary_attested = true;
            out.identity_pinned = true;
            out.binary_builder = v.identity;
        }
        Err(e) => {
            out.errors.push(format!(
                "binary attestation verification failed: {}",
                e.message()
            ));
            return Ok(out);
        }
    }
    if !out.has_external_data {
        out.trust_level = TrustLevel::Verified;
    }
    Ok(out)
}

impl Outcome {
    /// The highest level this bundle could reach with every check passing.
    fn max_achievable(&self) -> TrustLevel {
        if !self.checksums_passed {
            TrustLevel::Unknown
        } else if !self.bundle_attested {
            TrustLevel::Unverified
        } else if self.has_external_data {
            TrustLevel::Attested
        } else {
            TrustLevel::Verified
        }
    }

    /// The first policy failure, if any.
    pub fn policy_failure(&self, req: &Requirements) -> Option<String> {
        let level = self.trust_level;
        match req.min {
            Policy::Max if level < self.max_achievable() => {
                return Some(format!(
                    "trust level \"{level}\" does not meet maximum achievable \"{}\" for this bundle",
                    self.max_achievable()
                ));
            }
            Policy::AtLeast(min) if level < min => {
                let why =
                    if self.checksums_passed && !self.bundle_attested && self.errors.is_empty() {
                        ": no attestation present"
                    } else {
                        ""
                    };
                return Some(format!(
                    "trust level \"{level}\" does not meet minimum \"{min}\"{why}"
                ));
            }
            _ => {}
        }
        if let Some(c) = &req.creator
            && c != &self.bundle_creator
        {
            return Some(format!(
                "bundle creator \"{}\" does not match required \"{c}\"",
                self.bundle_creator
            ));
        }
        if let Some(vc) = &req.version {
            if self.tool_version.is_empty() {
                return Some(
                    "tool version not available in attestation (bundle may be unattested)".into(),
                );
            }
            let ok = parse_version(&self.tool_version).is_some_and(|v| vc.allows(&v));
            if !ok {
                return Some(format!(
                    "tool version \"{}\" does not satisfy constraint \"{vc}\"",
                    self.tool_version
                ));
            }
        }
        None
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
        if self.bundle_attested {
            s.push_str(&format!(
                "  ✓ Bundle attested by: {}\n",
                self.bundle_creator
            ));
        }
        if self.binary_attested {
            s.push_str(&format!("  ✓ Binary built by: {}\n", self.binary_builder));
        }
        if self.identity_pinned {
            s.push_str("  ✓ Identity pinned to release CI\n");
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
    use crate::attest::verifier::Verified;
    use proptest::prelude::*;
    use serde_json::json;

    /// Accepts attestation files of the form
    /// `{"ok": true, "identity": …, "issuer": …, "statement": …}`.
    struct Fake;

    impl SigstoreVerifier for Fake {
        fn verify(&self, b: &[u8], digest: &str, p: &identity::Policy) -> Result<Verified> {
            let v: serde_json::Value =
                serde_json::from_slice(b).map_err(|e| Error::invalid(e.to_string()))?;
            if v["ok"] != true || !statement::has_subject_digest(&v["statement"], digest) {
                return Err(Error::invalid("fake verification failed"));
            }
            let identity = v["identity"].as_str().unwrap_or_default().to_string();
            p.check(v["issuer"].as_str().unwrap_or_default(), &identity)?;
            Ok(Verified {
                identity,
                issuer: String::new(),
                statement: v["statement"].clone(),
                signed_at: 0,
            })
        }
    }

    const BIN: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn checks() -> Checks<'static> {
        Checks {
            verifier: &Fake,
            binary_identity: identity::Policy::release(None).unwrap(),
        }
    }

    fn req(min: Policy) -> Requirements {
        Requirements {
            min,
            creator: None,
            version: None,
        }
    }

    fn bundle() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yaml"), "a: 1\n").unwrap();
        let sums = checksums::render([("a.yaml", b"a: 1\n".as_slice())]);
        std::fs::write(d.path().join(checksums::FILE), sums).unwrap();
        d
    }

    fn attest(d: &Path, bundle_ok: bool, binary: Option<bool>) {
        let sums = std::fs::read(d.join(checksums::FILE)).unwrap();
        std::fs::create_dir_all(d.join("attestation")).unwrap();
        let st = json!({"_type": statement::STATEMENT_TYPE,
            "subject": [{"name": "checksums.txt", "digest": {"sha256": checksums::sha256_hex(&sums)}}],
            "predicate": {"buildDefinition": {
                "internalParameters": {"toolVersion": "v0.12.0"},
                "resolvedDependencies": [{"uri": "file:///aicr", "digest": {"sha256": BIN}}]}}});
        let b =
            json!({"ok": bundle_ok, "identity": "ci@example.com", "issuer": "x", "statement": st});
        std::fs::write(d.join(BUNDLE_ATTESTATION), b.to_string()).unwrap();
        if let Some(ok) = binary {
            let san = format!(
                "https://github.com/{}/.github/workflows/{}@refs/tags/v0.12.0",
                identity::RELEASE_REPOSITORY,
                identity::RELEASE_WORKFLOW
            );
            let b = json!({"ok": ok, "identity": san, "issuer": identity::GITHUB_ACTIONS_ISSUER,
                "statement": {"subject": [{"name": "aicr", "digest": {"sha256": BIN}}]}});
            std::fs::write(d.join(BINARY_ATTESTATION_COPY), b.to_string()).unwrap();
        }
    }

    #[test]
    fn intact_bundle_is_unverified_and_passes_max() {
        let d = bundle();
        let o = inspect(d.path(), &checks()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Unverified);
        assert_eq!(o.checksum_files, 1);
        assert_eq!(o.policy_failure(&req(Policy::Max)), None);
        assert_eq!(
            o.policy_failure(&req(Policy::parse("ATTESTED").unwrap()))
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
        let o = inspect(d.path(), &checks()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Unknown);
        assert!(o.errors[0].starts_with("checksum mismatch: a.yaml"));
        assert_eq!(o.policy_failure(&req(Policy::Max)), None);
        assert!(
            o.policy_failure(&req(Policy::AtLeast(TrustLevel::Unverified)))
                .is_some()
        );
        assert!(o.text(None).contains("✗ Checksum verification failed"));
        std::fs::remove_file(d.path().join(checksums::FILE)).unwrap();
        let o = inspect(d.path(), &checks()).unwrap();
        assert_eq!(o.errors, ["checksums.txt not found"]);
        let e = inspect(&d.path().join("nope"), &checks()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
        assert!(Policy::parse("gold").is_err());
    }

    #[test]
    fn levels_follow_the_attestations() {
        let d = bundle();
        attest(d.path(), true, None);
        let o = inspect(d.path(), &checks()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Attested);
        assert_eq!(
            (o.bundle_creator.as_str(), o.tool_version.as_str()),
            ("ci@example.com", "v0.12.0")
        );
        assert!(
            o.policy_failure(&req(Policy::Max))
                .unwrap()
                .contains("maximum achievable \"verified\"")
        );

        attest(d.path(), true, Some(true));
        let o = inspect(d.path(), &checks()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Verified);
        assert!(o.binary_attested && o.identity_pinned);
        let t = o.text(None);
        assert!(t.contains(
            "✓ Bundle attested by: ci@example.com\n  ✓ Binary built by: https://github.com/"
        ));
        assert!(t.contains("✓ Identity pinned to release CI\n  Trust level: verified"));

        std::fs::create_dir(d.path().join("data")).unwrap();
        let o = inspect(d.path(), &checks()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Attested);
        assert!(o.has_external_data && o.errors.is_empty());
        assert_eq!(o.policy_failure(&req(Policy::Max)), None);
        std::fs::remove_dir(d.path().join("data")).unwrap();

        attest(d.path(), true, Some(false));
        let o = inspect(d.path(), &checks()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Attested);
        assert!(o.errors[0].starts_with("binary attestation verification failed"));

        attest(d.path(), false, None);
        let o = inspect(d.path(), &checks()).unwrap();
        assert_eq!(o.trust_level, TrustLevel::Unknown);
        assert!(o.errors[0].starts_with("bundle attestation verification failed"));
    }

    #[test]
    fn creator_and_version_policies() {
        let d = bundle();
        attest(d.path(), true, Some(true));
        let o = inspect(d.path(), &checks()).unwrap();
        let mut r = req(Policy::Max);
        r.creator = Some("other@example.com".into());
        assert_eq!(
            o.policy_failure(&r).unwrap(),
            "bundle creator \"ci@example.com\" does not match required \"other@example.com\""
        );
        r.creator = Some("ci@example.com".into());
        r.version = Some(VersionConstraint::parse("0.12").unwrap());
        assert_eq!(o.policy_failure(&r), None);
        r.version = Some(VersionConstraint::parse("> v0.12.0").unwrap());
        assert_eq!(
            o.policy_failure(&r).unwrap(),
            "tool version \"v0.12.0\" does not satisfy constraint \"> 0.12.0\""
        );
        for (c, ok) in [
            ("<=0.12.0", true),
            ("!=0.12.0", false),
            ("==v0.12.0", true),
            ("<1", true),
        ] {
            r.version = Some(VersionConstraint::parse(c).unwrap());
            assert_eq!(o.policy_failure(&r).is_none(), ok, "{c}");
        }
        assert!(VersionConstraint::parse(">= banana").is_err());
        r.creator = None;
        let plain = inspect(bundle().path(), &checks()).unwrap();
        assert_eq!(
            plain.policy_failure(&r).unwrap(),
            "tool version not available in attestation (bundle may be unattested)"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever fails, the level never exceeds what actually passed.
        #[test]
        fn level_never_exceeds_what_was_checked(
            tamper in any::<bool>(), bundle_att in 0u8..3, binary_att in 0u8..3, data in any::<bool>()
        ) {
            let d = bundle();
            if bundle_att > 0 {
                attest(d.path(), bundle_att == 2, (binary_att > 0).then_some(binary_att == 2));
            }
            if data {
                std::fs::create_dir(d.path().join("data")).unwrap();
            }
            if tamper {
                std::fs::write(d.path().join("a.yaml"), "a: 3\n").unwrap();
            }
            let o = inspect(d.path(), &checks()).unwrap();
            let ceiling = if tamper {
                TrustLevel::Unknown
            } else if bundle_att == 0 {
                TrustLevel::Unverified
            } else if bundle_att == 1 {
                TrustLevel::Unknown
            } else if binary_att != 2 || data {
                TrustLevel::Attested
            } else {
                TrustLevel::Verified
            };
            prop_assert!(o.trust_level <= ceiling, "{:?} > {:?}", o.trust_level, ceiling);
            prop_assert_eq!(o.trust_level, ceiling);
        }
    }
}
