//! Criteria: the five enumerated fields plus a node count that select
//! overlays. Owns parsing (aliases, normalisation) and the asymmetric
//! wildcard match; knows nothing about overlays' contents.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The literal every unset string field holds.
pub const ANY: &str = "any";

/// One criteria field and its accepted spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Service,
    Accelerator,
    Intent,
    Os,
    Platform,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::Service,
        Field::Accelerator,
        Field::Intent,
        Field::Os,
        Field::Platform,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Field::Service => "service",
            Field::Accelerator => "accelerator",
            Field::Intent => "intent",
            Field::Os => "os",
            Field::Platform => "platform",
        }
    }

    /// Canonical values, alphabetically (as help texts list them).
    pub const fn values(self) -> &'static [&'static str] {
        match self {
            Field::Service => &["aks", "eks", "gke", "kind", "oke"],
            Field::Accelerator => &["a100", "b200", "gb200", "h100", "l40"],
            Field::Intent => &["inference", "training"],
            Field::Os => &["amazonlinux", "cos", "rhel", "ubuntu"],
            Field::Platform => &["dynamo", "kubeflow"],
        }
    }

    /// Normalise a user-supplied value: trim, lower-case, resolve aliases.
    /// Empty and the wildcard spellings give [`ANY`].
    pub(crate) fn parse(self, raw: &str) -> Result<&'static str> {
        let v = raw.trim().to_ascii_lowercase();
        if v.is_empty() || v == ANY {
            return Ok(ANY);
        }
        let alias = match (self, v.as_str()) {
            (Field::Service, "self-managed" | "self" | "vanilla") => Some(ANY),
            (Field::Os, "al2" | "al2023") => Some("amazonlinux"),
            _ => None,
        };
        if let Some(a) = alias {
            return Ok(a);
        }
        self.values()
            .iter()
            .find(|c| **c == v)
            .copied()
            .ok_or_else(|| {
                Error::invalid(format!(
                    "invalid {} type: {raw} (valid: {})",
                    self.name(),
                    self.values().join(", ")
                ))
            })
    }
}

/// A normalised query. Every string field holds a canonical value or `any`;
/// a field a document leaves out (hand-written upstream recipes omit
/// `platform`) reads as `any`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Criteria {
    pub service: String,
    pub accelerator: String,
    pub intent: String,
    pub os: String,
    pub platform: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nodes: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria {
            service: ANY.into(),
            accelerator: ANY.into(),
            intent: ANY.into(),
            os: ANY.into(),
            platform: ANY.into(),
            nodes: 0,
        }
    }
}

impl Criteria {
    pub fn get(&self, f: Field) -> &str {
        match f {
            Field::Service => &self.service,
            Field::Accelerator => &self.accelerator,
            Field::Intent => &self.intent,
            Field::Os => &self.os,
            Field::Platform => &self.platform,
        }
    }

    fn slot(&mut self, f: Field) -> &mut String {
        match f {
            Field::Service => &mut self.service,
            Field::Accelerator => &mut self.accelerator,
            Field::Intent => &mut self.intent,
            Field::Os => &mut self.os,
            Field::Platform => &mut self.platform,
        }
    }

    /// Parse `raw` for `f` and store it; returns the previous value.
    pub fn set(&mut self, f: Field, raw: &str) -> Result<String> {
        let v = f.parse(raw)?;
        Ok(std::mem::replace(self.slot(f), v.to_string()))
    }

    /// True when no field narrows the query.
    pub fn is_unset(&self) -> bool {
        Field::ALL.iter().all(|f| self.get(*f) == ANY) && self.nodes == 0
    }

    /// Whether an overlay's own (verbatim, unnormalised) criteria match this
    /// query: an overlay's `any` matches everything, but a query's `any`
    /// never selects an overlay that is specific in that field.
    pub fn admits(&self, overlay: &OverlayCriteria) -> bool {
        let fields_match = Field::ALL.iter().all(|f| {
            let r = overlay.get(*f);
            r.is_empty() || r == ANY || {
                let q = self.get(*f);
                q != ANY && q == r
            }
        });
        let nodes = overlay.nodes.unwrap_or(0);
        fields_match && (nodes == 0 || (self.nodes != 0 && i64::from(self.nodes) == nodes))
    }
}

impl Criteria {
    /// Every combination of field values, `any` included, nodes unset: the
    /// whole query space the catalog must answer (tests and benchmarks).
    pub fn every_combination() -> Vec<Criteria> {
        let mut out = vec![Criteria::default()];
        for f in Field::ALL {
            let values: Vec<&str> = std::iter::once(ANY)
                .chain(f.values().iter().copied())
                .collect();
            out = out
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        *c.slot(f) = v.to_string();
                        c
                    })
                })
                .collect();
        }
        out
    }
}

impl fmt::Display for Criteria {
    /// `criteria(service=eks, accelerator=h100)`, or `criteria(any)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Field::ALL
            .iter()
            .filter(|fld| self.get(**fld) != ANY)
            .map(|fld| format!("{}={}", fld.name(), self.get(*fld)))
            .collect();
        if self.nodes != 0 {
            parts.push(format!("nodes={}", self.nodes));
        }
        if parts.is_empty() {
            f.write_str("criteria(any)")
        } else {
            write!(f, "criteria({})", parts.join(", "))
        }
    }
}

/// Criteria as an overlay or a criteria file writes them: raw strings, every
/// field optional. Overlay criteria are compared verbatim, never normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayCriteria {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<i64>,
}

impl OverlayCriteria {
    pub fn get(&self, f: Field) -> &str {
        let v = match f {
            Field::Service => &self.service,
            Field::Accelerator => &self.accelerator,
            Field::Intent => &self.intent,
            Field::Os => &self.os,
            Field::Platform => &self.platform,
        };
        v.as_deref().unwrap_or("")
    }

    /// Upstream's ordering score: a field counts as specific unless it is
    /// spelled `any` — so an omitted field counts too. Kept as is because it
    /// decides the order overlays are merged in.
    pub fn score(&self) -> u32 {
        let specific = Field::ALL.iter().filter(|f| self.get(**f) != ANY).count() as u32;
        specific + u32::from(self.nodes.unwrap_or(0) != 0)
    }

    /// Normalise into a query (criteria files, config files): every value
    /// parsed with the flag parser, negative node counts rejected.
    pub fn to_query(&self, what: &str) -> Result<Criteria> {
        let mut c = Criteria::default();
        for f in Field::ALL {
            c.set(f, self.get(f))
                .map_err(|e| e.context(format!("invalid {what}.{}", f.name())))?;
        }
        match self.nodes {
            Some(n) if n < 0 => {
                return Err(Error::invalid(format!(
                    "{what}.nodes must be >= 0, got {n}"
                )));
            }
            Some(n) => {
                c.nodes = u32::try_from(n)
                    .map_err(|_| Error::invalid(format!("{what}.nodes is too large: {n}")))?
            }
            None => {}
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(service: &str, accelerator: &str) -> OverlayCriteria {
        OverlayCriteria {
            service: Some(service.into()),
            accelerator: Some(accelerator.into()),
            ..Default::default()
        }
    }

    #[test]
    fn parse_normalises_and_resolves_aliases() {
        assert_eq!(Field::Service.parse(" EKS ").unwrap(), "eks");
        assert_eq!(Field::Service.parse("self-managed").unwrap(), ANY);
        assert_eq!(Field::Os.parse("AL2023").unwrap(), "amazonlinux");
        assert_eq!(Field::Accelerator.parse("").unwrap(), ANY);
        let e = Field::Service.parse("foo").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
        assert!(e.to_string().starts_with("invalid service type: foo"));
    }

    #[test]
    fn wildcard_matching_is_asymmetric() {
        let mut q = Criteria::default();
        q.set(Field::Service, "eks").unwrap();
        assert!(q.admits(&overlay("eks", "any")));
        assert!(
            !q.admits(&overlay("eks", "h100")),
            "generic query, specific overlay"
        );
        q.set(Field::Accelerator, "h100").unwrap();
        assert!(q.admits(&overlay("eks", "h100")));
        assert!(!q.admits(&overlay("gke", "h100")));
        assert!(
            !q.admits(&overlay("EKS", "h100")),
            "overlay values are verbatim"
        );
    }

    #[test]
    fn nodes_match_only_when_equal_or_overlay_unset() {
        let mut o = overlay("oke", "any");
        o.nodes = Some(8);
        let mut q = Criteria::default();
        q.set(Field::Service, "oke").unwrap();
        assert!(!q.admits(&o));
        q.nodes = 8;
        assert!(q.admits(&o));
        q.nodes = 9;
        assert!(!q.admits(&o));
    }

    #[test]
    fn score_counts_omitted_fields_as_specific() {
        let only_intent_any = OverlayCriteria {
            intent: Some("any".into()),
            ..Default::default()
        };
        assert_eq!(only_intent_any.score(), 4);
        assert_eq!(overlay("eks", "h100").score(), 5);
    }

    #[test]
    fn display_lists_set_fields_in_order() {
        let mut q = Criteria::default();
        assert_eq!(q.to_string(), "criteria(any)");
        q.set(Field::Os, "ubuntu").unwrap();
        q.set(Field::Service, "eks").unwrap();
        q.nodes = 4;
        assert_eq!(q.to_string(), "criteria(service=eks, os=ubuntu, nodes=4)");
    }
}
