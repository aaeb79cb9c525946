//! The catalogue of resource types the fake serves: the built-in Kubernetes
//! types it knows, plus the custom types derived from the CRD objects stored
//! at the moment of the request (so a CRD created mid-test is served at once
//! and a deleted one disappears).

use serde_json::Value;
use std::sync::LazyLock;

/// The sort of type a resource is; the real apiserver treats the sorts
/// differently (strategic merge, delete answers, storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// A type compiled into the apiserver.
    BuiltIn,
    /// A type defined by a CustomResourceDefinition.
    Custom,
    /// A create-only review (TokenReview, SelfSubjectAccessReview): answered,
    /// never stored.
    Review,
}

/// One resource type at one served version.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Subresources by name; `status` also means writes to the main resource
    /// leave `.status` alone, as the real apiserver does.
    pub subresources: Vec<&'static str>,
    /// Field selector labels accepted besides `metadata.name` and
    /// `metadata.namespace`.
    pub field_labels: &'static [&'static str],
    pub class: Class,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmaps` or `deployments.apps`: how apiserver messages name a resource.
    pub fn qualified_resource(&self) -> String {
        qualify(&self.plural, &self.group)
    }

    /// `ConfigMap` or `Deployment.apps`: how validation messages name a kind.
    pub fn qualified_kind(&self) -> String {
        qualify(&self.kind, &self.group)
    }

    /// Objects of every version of a type share one storage slot.
    pub fn storage_key(&self) -> StorageKey {
        (self.group.clone(), self.plural.clone())
    }

    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }
}

/// `(group, plural)`: where objects of a type live, whatever version they were
/// written through.
pub(crate) type StorageKey = (String, String);

pub(crate) fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// Whether a test-supplied resource name (`*`, `configmaps`, `jobs.batch`,
/// `ConfigMap`) refers to the type with this group, plural and kind.
pub(crate) fn name_matches(pattern: &str, group: &str, plural: &str, kind: &str) -> bool {
    pattern == "*" || pattern == plural || pattern == kind || pattern == qualify(plural, group)
}

struct BuiltIn {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
    field_labels: &'static [&'static str],
    class: Class,
}

const fn stored(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> BuiltIn {
    BuiltIn {
        group,
        version,
        kind,
        plural,
        namespaced,
        short_names: &[],
        subresources: &[],
        field_labels: &[],
        class: Class::BuiltIn,
    }
}

impl BuiltIn {
    const fn short(mut self, names: &'static [&'static str]) -> Self {
        self.short_names = names;
        self
    }
    const fn subresources(mut self, names: &'static [&'static str]) -> Self {
        self.subresources = names;
        self
    }
    const fn fields(mut self, labels: &'static [&'static str]) -> Self {
        self.field_labels = labels;
        self
    }
    const fn review(mut self) -> Self {
        self.class = Class::Review;
        self
    }
}

const NAMESPACED: bool = true;
const CLUSTER: bool = false;

/// The built-in types, core group first so it wins ambiguous short names the
/// way kubectl's preference does.
const BUILT_INS: &[BuiltIn] = &[
    stored("", "v1", "Namespace", "namespaces", CLUSTER)
        .short(&["ns"])
        .subresources(&["status"])
        .fields(&["status.phase"]),
    stored("", "v1", "Node", "nodes", CLUSTER)
        .short(&["no"])
        .subresources(&["status"])
        .fields(&["spec.unschedulable"]),
    stored("", "v1", "Pod", "pods", NAMESPACED)
        .short(&["po"])
        .subresources(&["status", "log"])
        .fields(&[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]),
    stored("", "v1", "ConfigMap", "configmaps", NAMESPACED).short(&["cm"]),
    stored("", "v1", "Secret", "secrets", NAMESPACED).fields(&["type"]),
    stored("", "v1", "ServiceAccount", "serviceaccounts", NAMESPACED).short(&["sa"]),
    stored("", "v1", "Event", "events", NAMESPACED)
        .short(&["ev"])
        .fields(&[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]),
    stored("", "v1", "Service", "services", NAMESPACED)
        .short(&["svc"])
        .subresources(&["status"]),
    stored("apps", "v1", "Deployment", "deployments", NAMESPACED)
        .short(&["deploy"])
        .subresources(&["status"]),
    stored("apps", "v1", "DaemonSet", "daemonsets", NAMESPACED)
        .short(&["ds"])
        .subresources(&["status"]),
    stored("apps", "v1", "StatefulSet", "statefulsets", NAMESPACED)
        .short(&["sts"])
        .subresources(&["status"]),
    stored("events.k8s.io", "v1", "Event", "events", NAMESPACED).short(&["ev"]),
    stored(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        CLUSTER,
    )
    .review(),
    stored(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        CLUSTER,
    )
    .review(),
    stored("batch", "v1", "Job", "jobs", NAMESPACED)
        .subresources(&["status"])
        .fields(&["status.successful"]),
    stored("coordination.k8s.io", "v1", "Lease", "leases", NAMESPACED),
    stored(
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        CLUSTER,
    ),
    stored(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        NAMESPACED,
    ),
    stored(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        NAMESPACED,
    ),
    stored(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        CLUSTER,
    ),
    stored(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        CLUSTER,
    ),
    stored(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        CLUSTER,
    )
    .short(&["crd", "crds"])
    .subresources(&["status"]),
];

static BUILT_IN_TYPES: LazyLock<Vec<ResourceType>> = LazyLock::new(|| {
    BUILT_INS
        .iter()
        .map(|b| ResourceType {
            group: b.group.into(),
            version: b.version.into(),
            kind: b.kind.into(),
            plural: b.plural.into(),
            singular: b.kind.to_lowercase(),
            namespaced: b.namespaced,
            short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
            subresources: b.subresources.to_vec(),
            field_labels: b.field_labels,
            class: b.class,
        })
        .collect()
});

/// Where CRD objects are stored; the catalogue reads them from there.
pub(crate) fn crd_storage_key() -> StorageKey {
    (
        "apiextensions.k8s.io".into(),
        "customresourcedefinitions".into(),
    )
}

/// Every type served right now, built-ins first.
pub(crate) struct Catalogue {
    pub types: Vec<ResourceType>,
}

impl Catalogue {
    pub fn new<'a>(crds: impl Iterator<Item = &'a Value>) -> Self {
        let mut types = BUILT_IN_TYPES.clone();
        types.extend(crds.flat_map(types_of_crd));
        Catalogue { types }
    }

    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    pub fn by_api_version_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
    }

    /// Resolves a test-supplied name; prefers the core group when a name is
    /// shared (`events`), and otherwise refuses to guess between groups.
    pub fn by_name(&self, name: &str) -> Result<&ResourceType, String> {
        if name == "*" {
            return Err("a wildcard names no single resource".into());
        }
        let mut found: Vec<&ResourceType> = Vec::new();
        for t in &self.types {
            if name_matches(name, &t.group, &t.plural, &t.kind)
                && !found.iter().any(|f| f.storage_key() == t.storage_key())
            {
                found.push(t);
            }
        }
        match found.as_slice() {
            [] => Err(format!(
                "the fake API server serves no resource named {name:?}"
            )),
            [only] => Ok(only),
            many => match many.iter().find(|t| t.group.is_empty()) {
                Some(core) => Ok(core),
                None => Err(format!(
                    "resource name {name:?} is ambiguous; qualify it as plural.group (one of {})",
                    many.iter()
                        .map(|t| t.qualified_resource())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            },
        }
    }
}

/// One type per served version of a CRD object; unparseable CRDs yield none,
/// so a broken fixture shows up as "not found" rather than a panic in the server.
fn types_of_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        names["kind"].as_str(),
        names["plural"].as_str(),
    ) else {
        return Vec::new();
    };
    let singular = names["singular"]
        .as_str()
        .map_or_else(|| kind.to_lowercase(), str::to_string);
    let short_names: Vec<String> = names["shortNames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let versions = spec["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool() != Some(false))
        .filter_map(|v| {
            Some(ResourceType {
                group: group.into(),
                version: v["name"].as_str()?.into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: singular.clone(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: short_names.clone(),
                subresources: if v["subresources"]["status"].is_object() {
                    vec!["status"]
                } else {
                    Vec::new()
                },
                field_labels: &[],
                class: Class::Custom,
            })
        })
        .collect()
}

/// Kubernetes version ordering (GA > beta > alpha, higher numbers first,
/// anything unparseable last), used to pick a group's preferred version.
pub(crate) fn version_priority(version: &str) -> (u8, u32, u32) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let Ok(major) = rest[..digits].parse::<u32>() else {
        return (0, 0, 0);
    };
    let suffix = &rest[digits..];
    let (stability, minor) = if suffix.is_empty() {
        (3, 0)
    } else if let Some(n) = suffix.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = suffix.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        return (0, 0, 0);
    };
    (stability, major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_priority_orders_like_kubernetes() {
        let mut versions = vec!["v1alpha1", "v2", "v1beta2", "foo", "v1", "v1beta1"];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            versions,
            ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn names_resolve_by_plural_group_or_kind_preferring_core() {
        let catalogue = Catalogue::new(std::iter::empty());
        assert_eq!(catalogue.by_name("jobs.batch").unwrap().kind, "Job");
        assert_eq!(catalogue.by_name("ConfigMap").unwrap().plural, "configmaps");
        assert_eq!(catalogue.by_name("events").unwrap().group, "");
        assert!(catalogue.by_name("widgets").is_err());
    }

    #[test]
    fn crds_yield_one_type_per_served_version() {
        let crd = json!({"spec": {
        "group": "example.com", "scope": "Cluster",
        "names": {"kind": "Widget", "plural": "widgets"},
        "versions": [
            {"name": "v1", "served": true, "subresources": {"status": {}}},
            {"name": "v1beta1", "served": false},
        ]}});
        let catalogue = Catalogue::new(std::iter::once(&crd));
        let widget = catalogue.by_path("example.com", "v1", "widgets").unwrap();
        assert!(!widget.namespaced && widget.has_status());
        assert!(
            catalogue
                .by_path("example.com", "v1beta1", "widgets")
                .is_none()
        );
    }
}
