//! The subset of apiserver validation that product code can trip over: object
//! names, the ConfigMap size limit and CRD naming. Each failure is a 422
//! `Invalid` worded like the real one.

use crate::resources::ResourceType;
use crate::status::ApiError;
use serde_json::Value;

/// ConfigMaps (and Secrets) are capped at 1 MiB of keys plus values.
pub(crate) const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

pub(crate) fn required_name(rt: &ResourceType) -> ApiError {
    ApiError::invalid(
        rt,
        "",
        "metadata.name",
        "FieldValueRequired",
        "Required value: name or generateName is required",
    )
}

/// Names follow the rule each type's validation applies: namespaces are DNS
/// labels, services DNS-1035 labels, RBAC objects any path segment
/// (`system:controller:x`), everything else DNS subdomains.
pub(crate) fn check_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    let problem = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => label_problem(name, false),
        ("", "services") => label_problem(name, true),
        ("rbac.authorization.k8s.io", _) => path_segment_problem(name),
        _ => subdomain_problem(name),
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(ApiError::invalid(
            rt,
            name,
            "metadata.name",
            "FieldValueInvalid",
            &format!("Invalid value: \"{name}\": {why}"),
        )),
    }
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn is_label(part: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    alnum(part.chars().next()) && alnum(part.chars().last()) && part.chars().all(is_label_char)
}

fn subdomain_problem(name: &str) -> Option<String> {
    if name.len() > 253 {
        Some("must be no more than 253 characters".into())
    } else if !name.split('.').all(is_label) {
        Some(SUBDOMAIN.into())
    } else {
        None
    }
}

fn label_problem(name: &str, must_start_alphabetic: bool) -> Option<String> {
    if name.len() > 63 {
        Some("must be no more than 63 characters".into())
    } else if !is_label(name) {
        Some(
            if must_start_alphabetic {
                DNS1035
            } else {
                LABEL
            }
            .into(),
        )
    } else if must_start_alphabetic && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some(DNS1035.into())
    } else {
        None
    }
}

fn path_segment_problem(name: &str) -> Option<String> {
    match name {
        "." | ".." => Some(format!("may not be '{name}'")),
        _ if name.contains('/') => Some("may not contain '/'".into()),
        _ if name.contains('%') => Some("may not contain '%'".into()),
        _ => None,
    }
}

/// Type-specific rules on the whole object.
pub(crate) fn check_object(rt: &ResourceType, name: &str, object: &Value) -> Result<(), ApiError> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "configmaps") => check_config_map_size(rt, name, object),
        ("apiextensions.k8s.io", "customresourcedefinitions") => check_crd(rt, name, object),
        _ => Ok(()),
    }
}

fn check_config_map_size(rt: &ResourceType, name: &str, object: &Value) -> Result<(), ApiError> {
    let size: usize = ["data", "binaryData"]
        .iter()
        .filter_map(|field| object[field].as_object())
        .flatten()
        .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
        .sum();
    if size > MAX_CONFIG_MAP_BYTES {
        return Err(ApiError::invalid(
            rt,
            name,
            "[]",
            "FieldValueTooLong",
            &format!("Too long: must have at most {MAX_CONFIG_MAP_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn check_crd(rt: &ResourceType, name: &str, crd: &Value) -> Result<(), ApiError> {
    let spec = &crd["spec"];
    for (field, value) in [
        ("spec.group", &spec["group"]),
        ("spec.names.plural", &spec["names"]["plural"]),
        ("spec.names.kind", &spec["names"]["kind"]),
    ] {
        if value.as_str().is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                rt,
                name,
                field,
                "FieldValueRequired",
                "Required value",
            ));
        }
    }
    if spec["versions"].as_array().is_none_or(Vec::is_empty) {
        return Err(ApiError::invalid(
            rt,
            name,
            "spec.versions",
            "FieldValueRequired",
            "Required value",
        ));
    }
    let expected = format!(
        "{}.{}",
        spec["names"]["plural"].as_str().unwrap_or_default(),
        spec["group"].as_str().unwrap_or_default()
    );
    if name != expected {
        return Err(ApiError::invalid(
            rt,
            name,
            "metadata.name",
            "FieldValueInvalid",
            &format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Catalogue;

    #[test]
    fn names_follow_each_types_rule() {
        let catalogue = Catalogue::new(std::iter::empty());
        let check = |resource: &str, name: &str| {
            check_name(catalogue.by_name(resource).unwrap(), name).is_ok()
        };
        assert!(check("configmaps", "aicr-snapshot.v1"));
        assert!(!check("configmaps", "Bad_Name"));
        assert!(!check("configmaps", "a/b"));
        assert!(!check("namespaces", "a.b"));
        assert!(!check("services", "1abc"));
        assert!(check("clusterroles", "system:aggregate-to-admin"));
        assert!(!check("clusterroles", "a/b"));
    }
}
