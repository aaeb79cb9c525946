//! The component registry (`registry.yaml`): per-component defaults the
//! engine fills into recipes, and the value paths bundle and validate use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmDefaults {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_chart: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeDefaults {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_tag: String,
}

/// Accepted and ignored: upstream has no field for it (recipes spec §1.6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDefaults {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_namespace: String,
}

/// Helm value paths where the bundler injects selectors, tolerations, taints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingPaths {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selector_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub toleration_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taint_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taint_str_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeScheduling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SchedulingPaths>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerated: Option<SchedulingPaths>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_count_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadScheduling {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_selector_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodScheduling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadScheduling>,
}

/// A bundle-time check attached to a component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentValidation {
    pub function: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub severity: String,
    /// Criteria field name → allowed values (any of them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conditions: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub assert_file: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryComponent {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_override_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmDefaults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeDefaults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestDefaults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_scheduling: Option<NodeScheduling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_scheduling: Option<PodScheduling>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_class_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validations: Vec<ComponentValidation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

impl RegistryComponent {
    /// Whether `key` names this component in `--set`/`--dynamic`.
    pub fn answers_to(&self, key: &str) -> bool {
        self.name == key || self.value_override_keys.iter().any(|k| k == key)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRegistry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default)]
    pub components: Vec<RegistryComponent>,
}

impl ComponentRegistry {
    pub fn get(&self, name: &str) -> Option<&RegistryComponent> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Resolve a `--set`/`--dynamic` key, checking components in registry
    /// order against their name and override keys.
    pub fn lookup_key(&self, key: &str) -> Option<&RegistryComponent> {
        self.components.iter().find(|c| c.answers_to(key))
    }

    /// Layer an external registry: same-name entries replace the embedded
    /// entry whole, in place; new names are appended in external order.
    pub fn merge_external(&mut self, external: ComponentRegistry) {
        for comp in external.components {
            match self.components.iter_mut().find(|c| c.name == comp.name) {
                Some(slot) => *slot = comp,
                None => self.components.push(comp),
            }
        }
    }
}
