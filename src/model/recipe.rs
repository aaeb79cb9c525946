//! Recipe documents: the overlays the catalog is made of (`RecipeMetadata`)
//! and the resolved recipe the engine emits (`RecipeResult`). Field names and
//! emission order follow the recipes spec; this module owns shapes only.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::criteria::{Criteria, OverlayCriteria};

pub const API_VERSION: &str = "aicr.nvidia.com/v1alpha1";
pub const RECIPE_METADATA_KIND: &str = "RecipeMetadata";
pub const RECIPE_RESULT_KIND: &str = "RecipeResult";

fn is_false(b: &bool) -> bool {
    !*b
}

/// One measurement expectation, `{Type}.{Subtype}.{Key}` against an
/// expression such as `>= 1.32.4`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub severity: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remediation: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

/// A Kubernetes object deployment validation expects a component to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedResource {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// A component of a recipe; keys are emitted in this declaration order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub values_file: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub overrides: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependency_refs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifest_files: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub cleanup: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_resources: Vec<ExpectedResource>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health_check_asserts: String,
}

impl ComponentRef {
    /// `overrides.enabled: false` disables a component for bundling; any
    /// other value (or none) leaves it enabled.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.overrides.get("enabled"), Some(Value::Bool(false)))
    }
}

/// Which nodes a validation phase targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelection {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub selector: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_nodes: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_nodes: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl NodeSelection {
    fn is_empty(&self) -> bool {
        self == &NodeSelection::default()
    }
}

/// One validation phase: presence means enabled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    #[serde(default, skip_serializing_if = "NodeSelection::is_empty")]
    pub node_selection: NodeSelection,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub infrastructure: String,
}

/// Validation phases, emitted in canonical order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conformance: Option<Phase>,
}

impl Validation {
    /// Each phase the overlay has replaces the same phase wholesale.
    pub fn merge_from(&mut self, other: &Validation) {
        for (dst, src) in [
            (&mut self.readiness, &other.readiness),
            (&mut self.deployment, &other.deployment),
            (&mut self.performance, &other.performance),
            (&mut self.conformance, &other.conformance),
        ] {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverlayName {
    #[serde(default)]
    pub name: String,
}

/// The body of a catalog overlay (or of the base).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipeSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criteria: Option<OverlayCriteria>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component_refs: Vec<ComponentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
}

/// A catalog document: `kind: RecipeMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipeMetadata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: OverlayName,
    #[serde(default)]
    pub spec: RecipeSpec,
}

impl RecipeMetadata {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}

/// Why snapshot mode left an overlay out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintWarning {
    pub overlay: String,
    pub constraint: String,
    pub expected: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actual: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultMetadata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_overlays: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_overlays: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraint_warnings: Vec<ConstraintWarning>,
}

/// The resolved recipe, as `aicr recipe` writes it and every later command
/// reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipeResult {
    pub kind: String,
    pub api_version: String,
    #[serde(default)]
    pub metadata: ResultMetadata,
    #[serde(default)]
    pub criteria: Criteria,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    #[serde(default)]
    pub component_refs: Vec<ComponentRef>,
    #[serde(default)]
    pub deployment_order: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
}

impl RecipeResult {
    pub fn component(&self, name: &str) -> Option<&ComponentRef> {
        self.component_refs.iter().find(|c| c.name == name)
    }
}
