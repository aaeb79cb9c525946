//! The documents clients read to learn what the server serves: `/version`,
//! the legacy discovery endpoints (`/api`, `/apis`, `/apis/{group}`,
//! `/apis/{group}/{version}`) and aggregated discovery (the same paths asked
//! for `as=APIGroupDiscoveryList`), all computed from the live catalogue.

use crate::resources::{Catalogue, Class, ResourceType, version_priority};
use serde_json::{Value, json};

/// Content type of an aggregated discovery answer.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery.
pub(crate) fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList")
}

/// `/version` for a `gitVersion` like `v1.33.5-eks-3025e55`; managed
/// distributions (anything after the patch number) report minor as `33+`.
pub(crate) fn version_info(git_version: &str) -> Value {
    let bare = git_version.trim_start_matches('v');
    let core_end = bare.find(['-', '+']).unwrap_or(bare.len());
    let mut numbers = bare[..core_end].split('.');
    let major = numbers.next().unwrap_or_default();
    let minor = numbers.next().unwrap_or_default();
    let marker = if core_end < bare.len() { "+" } else { "" };
    let previous_minor = minor
        .parse::<u32>()
        .map_or(String::new(), |m| m.saturating_sub(1).to_string());
    json!({
        "major": major,
        "minor": format!("{minor}{marker}"),
        "emulationMajor": major,
        "emulationMinor": minor,
        "minCompatibilityMajor": major,
        "minCompatibilityMinor": previous_minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// Named groups with their versions, best version first.
fn groups(catalogue: &Catalogue) -> Vec<(&str, Vec<&str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for t in catalogue.types.iter().filter(|t| !t.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) if !versions.contains(&t.version.as_str()) => {
                versions.push(&t.version)
            }
            Some(_) => {}
            None => groups.push((&t.group, vec![&t.version])),
        }
    }
    for (_, versions) in &mut groups {
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    }
    groups
}

fn group_document(name: &str, versions: &[&str]) -> Value {
    let entry = |v: &&str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(entry).collect::<Vec<_>>(),
        "preferredVersion": entry(&versions[0]),
    })
}

/// `/apis`.
pub(crate) fn group_list(catalogue: &Catalogue) -> Value {
    let groups: Vec<Value> = groups(catalogue)
        .iter()
        .map(|(name, versions)| group_document(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if the group is served.
pub(crate) fn group(catalogue: &Catalogue, name: &str) -> Option<Value> {
    let groups = groups(catalogue);
    let (_, versions) = groups.iter().find(|(g, _)| *g == name)?;
    let mut document = group_document(name, versions);
    document["kind"] = "APIGroup".into();
    document["apiVersion"] = "v1".into();
    Some(document)
}

fn verbs(rt: &ResourceType) -> Vec<&'static str> {
    match rt.class {
        Class::Review => vec!["create"],
        Class::BuiltIn | Class::Custom => vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
    }
}

fn subresource_verbs(subresource: &str) -> Vec<&'static str> {
    match subresource {
        "status" => vec!["get", "patch", "update"],
        _ => vec!["get"],
    }
}

/// `/api/v1` or `/apis/{group}/{version}`, if that group version is served.
pub(crate) fn resource_list(catalogue: &Catalogue, group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = catalogue
        .types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    let first = types.first()?;
    let mut resources = Vec::new();
    for t in &types {
        let mut entry = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": verbs(t),
        });
        if !t.short_names.is_empty() {
            entry["shortNames"] = json!(t.short_names);
        }
        resources.push(entry);
        for sub in &t.subresources {
            resources.push(json!({
                "name": format!("{}/{sub}", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": subresource_verbs(sub),
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": first.api_version(),
        "resources": resources,
    }))
}

fn aggregated_version(catalogue: &Catalogue, group: &str, version: &str) -> Value {
    let kind_of = |t: &ResourceType| json!({"group": group, "version": version, "kind": t.kind});
    let resources: Vec<Value> = catalogue
        .types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .map(|t| {
            let subresources: Vec<Value> = t
                .subresources
                .iter()
                .map(|sub| json!({"subresource": sub, "responseKind": kind_of(t), "verbs": subresource_verbs(sub)}))
                .collect();
            json!({
                "resource": t.plural,
                "responseKind": kind_of(t),
                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": t.singular,
                "verbs": verbs(t),
                "shortNames": t.short_names,
                "subresources": subresources,
            })
        })
        .collect();
    json!({"version": version, "freshness": "Current", "resources": resources})
}

/// Aggregated discovery: the core group alone for `/api`, every named group
/// for `/apis`.
pub(crate) fn aggregated(catalogue: &Catalogue, core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![json!({"metadata": {}, "versions": [aggregated_version(catalogue, "", "v1")]})]
    } else {
        groups(catalogue)
            .iter()
            .map(|(name, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|v| aggregated_version(catalogue, name, v))
                    .collect();
                json!({"metadata": {"name": name}, "versions": versions})
            })
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_versions_mark_the_minor() {
        let eks = version_info("v1.33.5-eks-3025e55");
        assert_eq!(
            (eks["major"].as_str(), eks["minor"].as_str()),
            (Some("1"), Some("33+"))
        );
        assert_eq!(version_info("v1.32.0")["minor"], "32");
    }

    #[test]
    fn groups_list_preferred_version_first() {
        let crd = json!({"spec": {"group": "example.com", "names": {"kind": "W", "plural": "ws"},
            "versions": [{"name": "v1beta1"}, {"name": "v1"}]}});
        let catalogue = Catalogue::new(std::iter::once(&crd));
        let example = group(&catalogue, "example.com").unwrap();
        assert_eq!(example["preferredVersion"]["version"], "v1");
        assert!(group(&catalogue, "missing.example.com").is_none());
        let apps = resource_list(&catalogue, "apps", "v1").unwrap();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"deployments/status"));
    }
}
