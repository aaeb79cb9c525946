//! Registry-driven component validations run before a bundle is written:
//! condition matching against the recipe criteria, the built-in checks,
//! and the warning/error split. It reports findings; the caller decides
//! how to print them.

use crate::error::{Error, Result};
use crate::model::ANY;
use crate::model::criteria::{Criteria, Field};
use crate::model::registry::{ComponentRegistry, ComponentValidation};

/// What the checks look at besides the registry.
pub(crate) struct Context<'a> {
    pub criteria: &'a Criteria,
    pub workload_selector_set: bool,
    pub accelerated_selector_set: bool,
}

fn field(key: &str) -> Option<Field> {
    Field::ALL.into_iter().find(|f| f.name() == key)
}

/// All condition keys must hold; a key holds when the recipe's value is
/// `any` or listed. A recipe with no criteria at all fails any condition.
fn conditions_hold(v: &ComponentValidation, c: &Criteria) -> bool {
    let known: Vec<(Field, &Vec<String>)> = v
        .conditions
        .iter()
        .filter_map(|(k, vals)| field(k).map(|f| (f, vals)))
        .collect();
    if known.is_empty() {
        return true;
    }
    if c.is_unset() {
        return false;
    }
    known.iter().all(|(f, vals)| {
        let have = c.get(*f);
        have == ANY || vals.iter().any(|v| v == have)
    })
}

/// Run the validations of every bundled component, in order. Returns the
/// warnings (already prefixed `Warning: `); the first error-severity
/// finding fails.
pub(crate) fn run(
    registry: &ComponentRegistry,
    components: &[&str],
    ctx: &Context,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for name in components {
        let Some(reg) = registry.get(name) else {
            continue;
        };
        for v in &reg.validations {
            if !conditions_hold(v, ctx.criteria) {
                continue;
            }
            let base = match v.function.as_str() {
                "CheckWorkloadSelectorMissing" if !ctx.workload_selector_set => {
                    format!("{name} is enabled but --workload-selector is not set")
                }
                "CheckAcceleratedSelectorMissing" if !ctx.accelerated_selector_set => {
                    format!("{name} is enabled but --accelerated-node-selector is not set")
                }
                "CheckWorkloadSelectorMissing" | "CheckAcceleratedSelectorMissing" => continue,
                other => {
                    tracing::warn!(
                        "unknown validation function {other:?} for component {name}; skipped"
                    );
                    continue;
                }
            };
            let text = if v.message.is_empty() {
                base
            } else {
                format!("{base}. {}", v.message)
            };
            if v.severity == "error" {
                return Err(Error::invalid(format!(
                    "component validation failed: {text}"
                )));
            }
            let text = if text.starts_with("Warning: ") {
                text
            } else {
                format!("Warning: {text}")
            };
            tracing::warn!("{text}");
            warnings.push(text);
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn criteria(intent: &str) -> Criteria {
        let mut c = Criteria::default();
        c.set(Field::Intent, intent).unwrap();
        c.set(Field::Service, "eks").unwrap();
        c
    }

    #[test]
    fn nodewright_warnings_follow_intent_and_flags() {
        let reg = Catalog::embedded().unwrap().registry();
        let c = criteria("training");
        let ctx = Context {
            criteria: &c,
            workload_selector_set: false,
            accelerated_selector_set: false,
        };
        let w = run(reg, &["gpu-operator", "nodewright-customizations"], &ctx).unwrap();
        assert_eq!(
            w,
            [
                "Warning: nodewright-customizations is enabled but --workload-selector is not set. This may cause nodewright to evict running training jobs. Consider setting --workload-selector to prevent eviction.",
                "Warning: nodewright-customizations is enabled but --accelerated-node-selector is not set. Without this selector, the customization will run on all nodes. Consider setting --accelerated-node-selector to target specific nodes."
            ]
        );
        let c = criteria("inference");
        let ctx = Context {
            criteria: &c,
            workload_selector_set: false,
            accelerated_selector_set: true,
        };
        assert!(
            run(reg, &["nodewright-customizations"], &ctx)
                .unwrap()
                .is_empty()
        );
        let none = Criteria::default();
        let ctx = Context {
            criteria: &none,
            workload_selector_set: false,
            accelerated_selector_set: false,
        };
        assert!(
            run(reg, &["nodewright-customizations"], &ctx)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn error_severity_fails() {
        let mut reg = Catalog::embedded().unwrap().registry().clone();
        let nc = reg
            .components
            .iter_mut()
            .find(|c| c.name == "nodewright-customizations")
            .unwrap();
        nc.validations[0].severity = "error".into();
        let c = criteria("training");
        let ctx = Context {
            criteria: &c,
            workload_selector_set: false,
            accelerated_selector_set: false,
        };
        let e = run(&reg, &["nodewright-customizations"], &ctx).unwrap_err();
        assert!(e.to_string().starts_with("component validation failed: nodewright-customizations is enabled but --workload-selector is not set. This may"), "{e}");
        assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
    }
}
