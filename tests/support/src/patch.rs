//! PATCH bodies, chosen by content type. Strategic merge and server-side
//! apply are approximated by a JSON merge patch: lists are replaced whole and
//! no field ownership is tracked, except that server-side apply merges the
//! associative lists product code applies into ([`KEYED_LISTS`]) element by
//! element, so another writer's entries survive as they do on a real API
//! server.

use crate::resources::{Class, ResourceType};
use crate::status::ApiError;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Json,
    /// Server-side apply: creates a missing object, merges into an existing one.
    Apply,
}

const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

impl PatchKind {
    /// Custom resources refuse strategic merge, as the real apiserver does,
    /// so product code that relies on it fails here as it would in a cluster.
    pub fn from_content_type(content_type: &str, rt: &ResourceType) -> Result<Self, ApiError> {
        let custom = rt.class == Class::Custom;
        match content_type.split(';').next().unwrap_or("").trim() {
            MERGE => Ok(PatchKind::Merge),
            STRATEGIC if !custom => Ok(PatchKind::Merge),
            JSON_PATCH => Ok(PatchKind::Json),
            APPLY => Ok(PatchKind::Apply),
            _ if custom => Err(ApiError::unsupported_media_type(&[
                JSON_PATCH, MERGE, APPLY,
            ])),
            _ => Err(ApiError::unsupported_media_type(&[
                JSON_PATCH, MERGE, APPLY, STRATEGIC,
            ])),
        }
    }
}

/// Decodes a body that must be one JSON object.
pub(crate) fn decode_object(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(other) => Err(ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: cannot unmarshal {} into Go value of type struct",
            json_type(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: {e}"
        ))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `current` with the patch applied.
pub(crate) fn apply(kind: PatchKind, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut patched = current.clone();
    match kind {
        PatchKind::Merge => {
            let patch = decode_object(body)?;
            json_patch::merge(&mut patched, &patch);
        }
        PatchKind::Apply => {
            let patch = decode_object(body)?;
            apply_merge(&mut patched, &patch);
        }
        PatchKind::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            json_patch::patch(&mut patched, &patch)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        }
    }
    Ok(patched)
}

/// Lists that server-side apply treats as maps, by field name and key
/// (`x-kubernetes-list-type: map`, or a `patchMergeKey` in the built-in
/// types): every `conditions` list of the Kubernetes API is keyed by `type`.
const KEYED_LISTS: &[(&str, &str)] = &[("conditions", "type")];

/// A JSON merge patch (RFC 7396), except that lists named in
/// [`KEYED_LISTS`] merge element by element on their key.
fn apply_merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(object) = target else {
        unreachable!("made an object above")
    };
    for (name, value) in fields {
        if value.is_null() {
            object.remove(name);
            continue;
        }
        let key = KEYED_LISTS
            .iter()
            .find(|(list, _)| list == name)
            .map(|(_, key)| *key);
        match (key, object.get_mut(name), value) {
            (Some(key), Some(Value::Array(current)), Value::Array(applied)) => {
                for element in applied {
                    match current.iter_mut().find(|c| c[key] == element[key]) {
                        Some(existing) => apply_merge(existing, element),
                        None => current.push(element.clone()),
                    }
                }
            }
            _ => apply_merge(object.entry(name.clone()).or_insert(Value::Null), value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Catalogue;
    use serde_json::json;

    #[test]
    fn patches_apply_by_kind() {
        let current = json!({"data": {"a": "1", "b": "2"}});
        let merged = apply(
            PatchKind::Merge,
            &current,
            br#"{"data":{"a":null,"c":"3"}}"#,
        )
        .unwrap();
        assert_eq!(merged, json!({"data": {"b": "2", "c": "3"}}));
        let json_patched = apply(
            PatchKind::Json,
            &current,
            br#"[{"op":"replace","path":"/data/a","value":"9"}]"#,
        )
        .unwrap();
        assert_eq!(json_patched["data"]["a"], "9");
        let failed = apply(
            PatchKind::Json,
            &current,
            br#"[{"op":"remove","path":"/data/zzz"}]"#,
        );
        assert_eq!(failed.unwrap_err().code, 422);
    }

    #[test]
    fn server_side_apply_merges_conditions_by_type() {
        let node = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            {"type": "AICRConformant", "status": "True", "reason": "Conformant"},
        ], "capacity": {"cpu": "8"}}});
        let applied = apply(
            PatchKind::Apply,
            &node,
            br#"{"status":{"conditions":[{"type":"AICRConformant","status":"False","reason":"ConstraintViolated"},{"type":"Other","status":"True"}]}}"#,
        )
        .unwrap();
        let conditions = applied["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 3);
        assert_eq!(conditions[0]["reason"], "KubeletReady");
        assert_eq!(conditions[1]["status"], "False");
        assert_eq!(conditions[1]["reason"], "ConstraintViolated");
        assert_eq!(conditions[2]["type"], "Other");
        assert_eq!(applied["status"]["capacity"]["cpu"], "8");
        // A merge patch still replaces the list whole, as RFC 7396 says.
        let merged = apply(
            PatchKind::Merge,
            &node,
            br#"{"status":{"conditions":[{"type":"Other","status":"True"}]}}"#,
        )
        .unwrap();
        assert_eq!(merged["status"]["conditions"].as_array().unwrap().len(), 1);
        // Other lists stay atomic under apply.
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let applied = apply(
            PatchKind::Apply,
            &pod,
            br#"{"spec":{"containers":[{"name":"c"}]}}"#,
        )
        .unwrap();
        assert_eq!(applied["spec"]["containers"], json!([{"name": "c"}]));
    }

    #[test]
    fn custom_resources_refuse_strategic_merge() {
        let crd = json!({"spec": {"group": "example.com", "names": {"kind": "W", "plural": "ws"},
                                  "versions": [{"name": "v1"}]}});
        let catalogue = Catalogue::new(std::iter::once(&crd));
        let custom = catalogue.by_name("ws").unwrap();
        let built_in = catalogue.by_name("configmaps").unwrap();
        assert_eq!(
            PatchKind::from_content_type(STRATEGIC, custom)
                .unwrap_err()
                .code,
            415
        );
        assert_eq!(
            PatchKind::from_content_type(STRATEGIC, built_in),
            Ok(PatchKind::Merge)
        );
    }
}
