//! `AICRConfig`: one file that drives `recipe`, `query` and `bundle`.
//! Owns the document shape and its load-time validation; precedence against
//! command-line flags is applied by the commands themselves.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::criteria::{Criteria, OverlayCriteria};
use super::recipe::API_VERSION;
use crate::error::{Error, Result};

pub(crate) const CONFIG_KIND: &str = "AICRConfig";

/// Output formats `recipe` accepts.
pub(crate) const OUTPUT_FORMATS: [&str; 3] = ["yaml", "json", "table"];
/// Deployers `bundle` accepts.
pub(crate) const DEPLOYERS: [&str; 3] = ["helm", "argocd", "argocd-helm"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AicrConfig {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ConfigMetadata,
    #[serde(default)]
    pub spec: ConfigSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMetadata {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    #[serde(default)]
    pub recipe: Option<RecipeSection>,
    #[serde(default)]
    pub bundle: Option<BundleSection>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeSection {
    #[serde(default)]
    pub criteria: Option<OverlayCriteria>,
    #[serde(default)]
    pub input: RecipeInput,
    #[serde(default)]
    pub output: RecipeOutput,
    #[serde(default)]
    pub data: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeInput {
    #[serde(default)]
    pub snapshot: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeOutput {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub format: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSection {
    #[serde(default)]
    pub input: BundleInput,
    #[serde(default)]
    pub output: BundleOutput,
    #[serde(default)]
    pub deployment: BundleDeployment,
    #[serde(default)]
    pub scheduling: BundleScheduling,
    #[serde(default)]
    pub attestation: BundleAttestation,
    #[serde(default)]
    pub registry: BundleRegistry,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInput {
    #[serde(default)]
    pub recipe: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleOutput {
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub image_refs: String,
}

/// Lists are `Option` so an omitted list ("unset") differs from `[]`
/// ("clear the defaults").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleDeployment {
    #[serde(default)]
    pub deployer: String,
    #[serde(default)]
    pub repo: String,
    #[serde(default)]
    pub set: Option<Vec<String>>,
    #[serde(default)]
    pub dynamic: Option<Vec<String>>,
    #[serde(default)]
    pub vendor_charts: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleScheduling {
    #[serde(default)]
    pub system_node_selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub system_node_tolerations: Option<Vec<String>>,
    #[serde(default)]
    pub accelerated_node_selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub accelerated_node_tolerations: Option<Vec<String>>,
    #[serde(default)]
    pub workload_gate: String,
    #[serde(default)]
    pub workload_selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub nodes: i64,
    #[serde(default)]
    pub storage_class: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleAttestation {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub certificate_identity_regexp: String,
    #[serde(default)]
    pub oidc_device_flow: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleRegistry {
    #[serde(rename = "insecureTLS", default)]
    pub insecure_tls: bool,
    #[serde(rename = "plainHTTP", default)]
    pub plain_http: bool,
}

impl AicrConfig {
    /// Every rule the config must satisfy before any command runs.
    pub fn validate(&self) -> Result<()> {
        if self.kind != CONFIG_KIND {
            return Err(Error::invalid(format!(
                "invalid kind {:?}: expected {CONFIG_KIND:?}",
                self.kind
            )));
        }
        if self.api_version != API_VERSION {
            return Err(Error::invalid(format!(
                "invalid apiVersion {:?}: expected {API_VERSION:?}",
                self.api_version
            )));
        }
        if self.spec.recipe.is_none() && self.spec.bundle.is_none() {
            return Err(Error::invalid(
                "config has neither spec.recipe nor spec.bundle; at least one is required",
            ));
        }
        if let Some(r) = &self.spec.recipe {
            if r.criteria.is_some() && !r.input.snapshot.is_empty() {
                return Err(Error::invalid(
                    "spec.recipe.criteria and spec.recipe.input.snapshot are mutually exclusive",
                ));
            }
            self.criteria()?;
            let f = &r.output.format;
            if !f.is_empty() && !OUTPUT_FORMATS.contains(&f.as_str()) {
                return Err(Error::invalid(format!(
                    "invalid spec.recipe.output.format {f:?} (valid: yaml, json, table)"
                )));
            }
        }
        if let Some(b) = &self.spec.bundle {
            let d = &b.deployment.deployer;
            if !d.is_empty() && !DEPLOYERS.contains(&d.as_str()) {
                return Err(Error::invalid(format!(
                    "invalid spec.bundle.deployment.deployer: unknown deployer {d:?} (valid: helm, argocd, argocd-helm)"
                )));
            }
            if b.scheduling.nodes < 0 {
                return Err(Error::invalid(format!(
                    "spec.bundle.scheduling.nodes must be >= 0, got {}",
                    b.scheduling.nodes
                )));
            }
        }
        if let (Some(r), Some(b)) = (&self.spec.recipe, &self.spec.bundle) {
            let (a, bb) = (&r.output.path, &b.input.recipe);
            if !a.is_empty() && !bb.is_empty() && clean_path(a) != clean_path(bb) {
                return Err(Error::invalid(format!(
                    "spec.recipe.output.path ({a:?}) and spec.bundle.input.recipe ({bb:?}) must reference the same file when both are set"
                )));
            }
        }
        Ok(())
    }

    /// The config's criteria, normalised; `None` when it gives none.
    pub fn criteria(&self) -> Result<Option<Criteria>> {
        match self.spec.recipe.as_ref().and_then(|r| r.criteria.as_ref()) {
            Some(c) => c.to_query("spec.recipe.criteria").map(Some),
            None => Ok(None),
        }
    }

    pub fn recipe(&self) -> RecipeSection {
        self.spec.recipe.clone().unwrap_or_default()
    }
}

/// Lexical path cleaning: drop `.`, collapse separators, resolve `..`
/// against preceding segments. No filesystem access.
pub(crate) fn clean_path(p: &str) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::from_yaml;

    fn load(text: &str) -> Result<AicrConfig> {
        let c: AicrConfig = from_yaml(text)?;
        c.validate()?;
        Ok(c)
    }

    const HEAD: &str = "kind: AICRConfig\napiVersion: aicr.nvidia.com/v1alpha1\n";

    #[test]
    fn accepts_a_full_document() {
        let c = load(&format!(
            "{HEAD}spec:\n  recipe:\n    criteria: {{service: EKS, accelerator: gb200, nodes: 8}}\n    output: {{path: ./r.yaml, format: json}}\n  bundle:\n    input: {{recipe: r.yaml}}\n    deployment: {{deployer: argocd, set: []}}\n    scheduling: {{systemNodeSelector: {{nodeGroup: sys}}}}\n"
        ))
        .unwrap();
        let crit = c.criteria().unwrap().unwrap();
        assert_eq!((crit.service.as_str(), crit.nodes), ("eks", 8));
        assert_eq!(c.spec.bundle.unwrap().deployment.set, Some(vec![]));
    }

    #[test]
    fn rejects_what_the_spec_lists() {
        let cases = [
            (
                "kind: Nope\napiVersion: aicr.nvidia.com/v1alpha1\nspec: {recipe: {}}",
                "invalid kind",
            ),
            (
                &format!("{HEAD}spec: {{}}"),
                "neither spec.recipe nor spec.bundle",
            ),
            (
                &format!(
                    "{HEAD}spec: {{recipe: {{criteria: {{service: eks}}, input: {{snapshot: s.yaml}}}}}}"
                ),
                "mutually exclusive",
            ),
            (
                &format!("{HEAD}spec: {{recipe: {{criteria: {{service: foo}}}}}}"),
                "invalid spec.recipe.criteria.service",
            ),
            (
                &format!("{HEAD}spec: {{recipe: {{criteria: {{nodes: -1}}}}}}"),
                "nodes must be >= 0",
            ),
            (
                &format!("{HEAD}spec: {{recipe: {{output: {{format: xml}}}}}}"),
                "invalid spec.recipe.output.format",
            ),
            (
                &format!("{HEAD}spec: {{bundle: {{deployment: {{deployer: flux}}}}}}"),
                "deployer",
            ),
            (
                &format!(
                    "{HEAD}spec: {{recipe: {{output: {{path: a.yaml}}}}, bundle: {{input: {{recipe: b.yaml}}}}}}"
                ),
                "same file",
            ),
            (&format!("{HEAD}spec: {{recipe: {{bogus: 1}}}}"), "bogus"),
        ];
        for (text, needle) in cases {
            let e = load(text).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn hand_off_paths_compare_lexically() {
        assert_eq!(clean_path("./out/../r.yaml"), clean_path("r.yaml"));
        assert_eq!(clean_path("a//b/./c"), clean_path("a/b/c"));
        assert_ne!(clean_path("/r.yaml"), clean_path("r.yaml"));
    }
}
