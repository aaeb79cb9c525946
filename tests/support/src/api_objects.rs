//! The objects clients sent to the fake API server, judged the way a real
//! one would: by the published schemas (kubernetes-validate, strict, and
//! the CRD fixtures, through [`Judge`]) and by the metadata rules the API
//! server enforces in code, which no OpenAPI document carries (name and
//! label syntax).
//!
//! What is judged is what the client SENT, from the request log, not what
//! the fake stored: a server adds fields (uid, resourceVersion,
//! managedFields, status) that are not the client's to answer for. Creates
//! (POST), replaces (PUT) and server-side applies (PATCH with
//! `application/apply-patch+yaml`) carry whole objects and are judged;
//! merge and JSON patches carry fragments and are not.

use serde_json::{Value, json};

use crate::fake_cluster::FakeCluster;
use crate::tools::{self, Judge, NEWEST_KUBERNETES};

/// The lowest `K8s.server.version` floor any recipe in the catalog has:
/// the oldest Kubernetes aicr must talk to.
pub const OLDEST_KUBERNETES: &str = "1.25.0";

/// The first release serving `resource.k8s.io/v1`. aicr creates DRA objects
/// (and pods that use claims) only after discovery shows that version is
/// served, so they are judged from this release on.
pub const FIRST_DRA_V1: &str = "1.34.0";

/// One whole object a client sent.
pub struct Sent {
    /// `METHOD path`, to say where a finding came from.
    pub how: String,
    pub object: Value,
}

/// The whole objects in the request log (see the module comment).
pub fn sent(cluster: &FakeCluster) -> Vec<Sent> {
    cluster
        .requests()
        .into_iter()
        .filter(|r| match r.method.as_str() {
            "POST" | "PUT" => true,
            "PATCH" => r
                .content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/apply-patch")),
            _ => false,
        })
        .filter_map(|r| {
            let object = r.json()?;
            (object.get("apiVersion").is_some() && object.get("kind").is_some()).then(|| Sent {
                how: format!("{} {}", r.method, r.path),
                object,
            })
        })
        .collect()
}

fn kind_of(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

/// Objects that exist only where `resource.k8s.io/v1` is served.
fn needs_dra_v1(object: &Value) -> bool {
    object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("resource.k8s.io/"))
        || object.pointer("/spec/resourceClaims").is_some()
}

/// Judges everything in `sent` for [`OLDEST_KUBERNETES`] (or
/// [`FIRST_DRA_V1`]) and [`NEWEST_KUBERNETES`], panicking with every
/// finding; asserts that the kinds in `expect` were among what was sent, so
/// a scenario that silently stopped creating objects fails too. Returns the
/// kinds judged.
pub fn judge_sent(judge: &Judge, sent: &[Sent], expect: &[&str]) -> Vec<String> {
    assert!(!sent.is_empty(), "nothing was sent to the API server");
    let crds = tools::crd_fixtures();
    let groups: [(&[&str], Vec<&Sent>); 2] = [
        (
            &[OLDEST_KUBERNETES, NEWEST_KUBERNETES],
            sent.iter().filter(|s| !needs_dra_v1(&s.object)).collect(),
        ),
        (
            &[FIRST_DRA_V1, NEWEST_KUBERNETES],
            sent.iter().filter(|s| needs_dra_v1(&s.object)).collect(),
        ),
    ];
    let mut findings = Vec::new();
    for (versions, objects) in &groups {
        if objects.is_empty() {
            continue;
        }
        let request = json!({
            "op": "k8s_validate",
            "objects": objects.iter().map(|s| &s.object).collect::<Vec<_>>(),
            "versions": versions,
            "crds": crds,
        });
        let results = judge
            .batch(&[request])
            .pop()
            .unwrap()
            .unwrap_or_else(|e| panic!("schema validation could not run: {e}"));
        for (s, r) in objects.iter().zip(results.as_array().unwrap()) {
            for e in r["errors"].as_array().unwrap() {
                findings.push(format!(
                    "{} ({}): {}\n  {}",
                    kind_of(&s.object),
                    s.how,
                    e.as_str().unwrap_or_default(),
                    s.object
                ));
            }
        }
    }
    for s in sent {
        for e in api_server_rules(&s.object) {
            findings.push(format!("{} ({}): {e}", kind_of(&s.object), s.how));
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
    let mut kinds: Vec<String> = sent
        .iter()
        .map(|s| kind_of(&s.object).to_string())
        .collect();
    kinds.sort();
    kinds.dedup();
    for k in expect {
        assert!(
            kinds.iter().any(|x| x == k),
            "no {k} was sent; sent: {kinds:?}"
        );
    }
    kinds
}

fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

/// A label value, or the name part of a label or annotation key.
fn qualified_part(s: &str, empty_ok: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return empty_ok;
    }
    b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn qualified_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && qualified_part(name, false),
        None => qualified_part(k, false),
    }
}

/// Every `metadata` map in `v` (the object's and its templates'), with its
/// path. ConfigMap `data` is text, not objects, and is not searched.
fn metadata_maps<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k == "metadata" && child.is_object() {
                    out.push((here.clone(), child));
                }
                if k != "data" {
                    metadata_maps(child, &here, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                metadata_maps(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The API server's name and label rules (apimachinery's validation) for
/// the object and every embedded template's metadata: one line per
/// violation.
pub fn api_server_rules(object: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let kind = kind_of(object);
    let group = object["apiVersion"].as_str().unwrap_or_default();
    if let Some(name) = object["metadata"].get("name") {
        let name = name.as_str().unwrap_or_default();
        let ok = if group.starts_with("rbac.authorization.k8s.io/") {
            // RBAC names are path segments.
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
        } else if kind == "Namespace" {
            dns_label(name)
        } else if kind == "Job" {
            // The name becomes the value of its pods' job-name labels.
            dns_subdomain(name) && qualified_part(name, false)
        } else {
            dns_subdomain(name)
        };
        if !ok {
            problems.push(format!("metadata.name {name:?} is not a valid {kind} name"));
        }
    }
    if group == "events.k8s.io/v1" && kind == "Event" {
        // Limits the events validation enforces, in bytes.
        for (field, limit) in [
            ("note", 1024),
            ("reason", 128),
            ("action", 128),
            ("reportingController", 128),
            ("reportingInstance", 128),
        ] {
            let len = object[field].as_str().map_or(0, str::len);
            if len > limit {
                problems.push(format!("{field}: {len} bytes, more than {limit}"));
            }
        }
    }
    let mut metas = Vec::new();
    metadata_maps(object, "", &mut metas);
    for (path, meta) in metas {
        for (k, v) in meta["labels"].as_object().into_iter().flatten() {
            if !qualified_key(k) {
                problems.push(format!("{path}.labels: invalid key {k:?}"));
            }
            if !v.as_str().is_some_and(|v| qualified_part(v, true)) {
                problems.push(format!("{path}.labels.{k}: invalid value {v}"));
            }
        }
        for (k, _) in meta["annotations"].as_object().into_iter().flatten() {
            if !qualified_key(k) {
                problems.push(format!("{path}.annotations: invalid key {k:?}"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_server_rules_catch_what_they_should() {
        let ok = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "aicr-x-0a1b2c3d", "labels": {"app.kubernetes.io/name": "aicr", "e": ""}},
            "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}});
        assert_eq!(api_server_rules(&ok), Vec::<String>::new());
        let bad = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "x".repeat(64), "labels": {"a": "v0.1.0+build", "-b": "c"}},
            "spec": {"template": {"metadata": {"labels": {"k": "x".repeat(64)}}}}});
        let problems = api_server_rules(&bad);
        assert_eq!(problems.len(), 4, "{problems:#?}");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}});
        assert_eq!(api_server_rules(&ns).len(), 1);
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:aicr"}});
        assert!(api_server_rules(&crb).is_empty());
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {}, "spec": {}});
        assert!(api_server_rules(&review).is_empty());
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"x": "{\"metadata\": {\"labels\": {\"-\": \"-\"}}}"}});
        assert!(api_server_rules(&cm).is_empty());
        let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "n.1"},
            "note": "é".repeat(600), "reason": "R"});
        assert_eq!(api_server_rules(&event).len(), 1, "1200 bytes of note");
    }
}
