//! The in-toto Statement v1 with an SLSA Build Provenance v1 predicate that
//! a bundle attestation signs: subject `checksums.txt`, the running binary
//! as the first resolved dependency, then every `data/` file.

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::model::criteria::Criteria;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub(crate) const BUILD_TYPE: &str = "https://aicr.nvidia.com/bundle/v1";

/// What goes into a bundle's provenance.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// The attested file's name in the bundle (its checksum list) and its
    /// sha256; the caller names it so attestation needs no bundle layout.
    pub subject: String,
    pub checksums_sha256: String,
    pub criteria: Criteria,
    pub external_data: bool,
    pub components: Vec<String>,
    pub output_dir: String,
    pub tool_version: String,
    pub binary_path: String,
    pub binary_sha256: String,
    /// `data/`-relative path → sha256 hex.
    pub data_files: Vec<(String, String)>,
    pub builder_id: String,
    pub invocation_id: String,
    pub started_on: std::time::SystemTime,
}

/// `criteria(k=v, …)` in field order, skipping `any` and zero nodes.
pub(crate) fn render_criteria(c: &Criteria) -> String {
    let mut parts: Vec<String> = [
        ("service", &c.service),
        ("accelerator", &c.accelerator),
        ("intent", &c.intent),
        ("os", &c.os),
        ("platform", &c.platform),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty() && v.as_str() != "any")
    .map(|(k, v)| format!("{k}={v}"))
    .collect();
    if c.nodes > 0 {
        parts.push(format!("nodes={}", c.nodes));
    }
    if parts.is_empty() {
        "criteria(any)".into()
    } else {
        format!("criteria({})", parts.join(", "))
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The statement as JSON, validated the way a verifier will read it.
pub fn build(info: &BuildInfo) -> Result<Value> {
    if !is_sha256_hex(&info.checksums_sha256) {
        return Err(Error::internal(
            "attestation subject digest must be 64 hex characters",
        ));
    }
    let mut deps = vec![json!({
        "uri": format!("file://{}", info.binary_path),
        "digest": {"sha256": info.binary_sha256},
    })];
    deps.extend(
        info.data_files
            .iter()
            .map(|(p, h)| json!({"uri": format!("file://data/{p}"), "digest": {"sha256": h}})),
    );
    Ok(json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": info.subject, "digest": {"sha256": info.checksums_sha256}}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "recipe": render_criteria(&info.criteria),
                    "recipeSource": if info.external_data { "external" } else { "embedded" },
                },
                "internalParameters": {
                    "components": info.components,
                    "outputDir": info.output_dir,
                    "toolVersion": info.tool_version,
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": info.builder_id},
                "metadata": {
                    "invocationId": info.invocation_id,
                    "startedOn": humantime::format_rfc3339_seconds(info.started_on).to_string(),
                },
            },
        },
    }))
}

/// Whether some subject carries this sha256 digest.
pub(crate) fn has_subject_digest(statement: &Value, sha256: &str) -> bool {
    statement["subject"].as_array().is_some_and(|subjects| {
        subjects
            .iter()
            .any(|s| s["digest"]["sha256"].as_str() == Some(sha256))
    })
}

/// `internalParameters.toolVersion`, when present.
pub(crate) fn tool_version(statement: &Value) -> Option<String> {
    statement["predicate"]["buildDefinition"]["internalParameters"]["toolVersion"]
        .as_str()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The first resolved dependency with a sha256 digest: the binary.
pub(crate) fn binary_digest(statement: &Value) -> Option<String> {
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()?
        .iter()
        .find_map(|d| d["digest"]["sha256"].as_str().map(str::to_string))
}

/// A v4 UUID from the system RNG.
pub fn random_uuid() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::internal("system random number generator failed"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> BuildInfo {
        BuildInfo {
            subject: "checksums.txt".into(),
            checksums_sha256: "a".repeat(64),
            criteria: Criteria {
                service: "eks".into(),
                accelerator: "h100".into(),
                intent: "training".into(),
                os: "ubuntu".into(),
                ..Criteria::default()
            },
            external_data: true,
            components: vec!["cert-manager".into()],
            output_dir: "/out".into(),
            tool_version: "v0.1.0".into(),
            binary_path: "/usr/bin/aicr".into(),
            binary_sha256: "b".repeat(64),
            data_files: vec![("registry.yaml".into(), "c".repeat(64))],
            builder_id: "me@example.com".into(),
            invocation_id: random_uuid().unwrap(),
            started_on: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_774_087_200),
        }
    }

    #[test]
    fn statement_follows_the_slsa_layout() {
        let s = build(&info()).unwrap();
        assert_eq!(s["subject"][0]["name"], "checksums.txt");
        assert!(has_subject_digest(&s, &"a".repeat(64)));
        assert!(!has_subject_digest(&s, &"b".repeat(64)));
        let bd = &s["predicate"]["buildDefinition"];
        assert_eq!(
            bd["externalParameters"]["recipe"],
            "criteria(service=eks, accelerator=h100, intent=training, os=ubuntu)"
        );
        assert_eq!(bd["externalParameters"]["recipeSource"], "external");
        assert_eq!(bd["resolvedDependencies"][0]["uri"], "file:///usr/bin/aicr");
        assert_eq!(
            bd["resolvedDependencies"][1]["uri"],
            "file://data/registry.yaml"
        );
        assert_eq!(binary_digest(&s).unwrap(), "b".repeat(64));
        assert_eq!(tool_version(&s).as_deref(), Some("v0.1.0"));
        assert_eq!(
            s["predicate"]["runDetails"]["metadata"]["startedOn"],
            "2026-03-21T10:00:00Z"
        );
        let id = s["predicate"]["runDetails"]["metadata"]["invocationId"]
            .as_str()
            .unwrap();
        assert_eq!((id.len(), &id[14..15]), (36, "4"));
    }

    #[test]
    fn bad_digest_and_any_criteria() {
        let mut i = info();
        i.checksums_sha256 = "xyz".into();
        assert!(build(&i).is_err());
        assert_eq!(render_criteria(&Criteria::default()), "criteria(any)");
    }
}
