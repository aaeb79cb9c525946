//! Parsers for the scheduling flags several commands share: node selectors
//! (`key=value`), tolerations (`key=value:effect`, `key:effect`) and taints
//! (`key=value:effect`). One grammar, one set of error messages.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::error::{Error, Result};

const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// `key=value` pairs; a repeated key keeps the last value.
pub fn parse_node_selectors(items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for s in items {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            Error::invalid(format!(
                "invalid node-selector: invalid format {s:?}, expected key=value"
            ))
        })?;
        // The API server would refuse the object carrying it, much later.
        if !super::is_label_key(k) || !super::is_label_value(v) {
            return Err(Error::invalid(format!(
                "invalid node-selector: {s:?} is not a label: key [prefix/]name, value empty or up to 63 of A-Z a-z 0-9 . _ -"
            )));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// One toleration. A value gives `operator: Equal`, none `Exists`; an empty
/// key tolerates every taint with that effect.
pub fn parse_toleration(s: &str) -> Result<Toleration> {
    let bad = || {
        Error::invalid(format!(
            "invalid toleration: invalid format {s:?}, expected key=value:effect or key:effect"
        ))
    };
    let parts: Vec<&str> = s.split(':').collect();
    let [left, effect] = parts.as_slice() else {
        return Err(bad());
    };
    if !EFFECTS.contains(effect) {
        return Err(Error::invalid(format!(
            "invalid toleration: invalid effect {effect:?} in {s:?} (valid: NoSchedule, PreferNoSchedule, NoExecute)"
        )));
    }
    let (key, value) = match left.split_once('=') {
        Some((k, v)) => (k, v),
        None => (*left, ""),
    };
    Ok(Toleration {
        key: (!key.is_empty()).then(|| key.to_string()),
        operator: Some(if value.is_empty() { "Exists" } else { "Equal" }.to_string()),
        value: (!value.is_empty()).then(|| value.to_string()),
        effect: Some(effect.to_string()),
        toleration_seconds: None,
    })
}

pub fn parse_tolerations(items: &[String]) -> Result<Vec<Toleration>> {
    items.iter().map(|s| parse_toleration(s)).collect()
}

/// The toleration used when the user gives none: tolerate every taint.
pub fn tolerate_all() -> Toleration {
    Toleration {
        operator: Some("Exists".into()),
        ..Default::default()
    }
}

/// A taint `key=value:effect` (value optional: `key:effect`).
pub fn parse_taint(s: &str) -> Result<Taint> {
    let t = parse_toleration(s).map_err(|_| {
        Error::invalid(format!(
            "invalid taint {s:?}: expected key=value:effect or key:effect"
        ))
    })?;
    let key = t
        .key
        .ok_or_else(|| Error::invalid(format!("invalid taint {s:?}: the key cannot be empty")))?;
    Ok(Taint {
        key,
        value: t.value,
        effect: t.effect.unwrap_or_default(),
        time_added: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let m = parse_node_selectors(&["a=b".into(), "a=c".into(), "e=".into()]).unwrap();
        assert_eq!(m["a"], "c");
        assert_eq!(m["e"], "");
        assert!(
            parse_node_selectors(&["ab".into()])
                .unwrap_err()
                .to_string()
                .contains("expected key=value")
        );
        for bad in ["=x", "Bad Key=x", "k=has space", "k=-lead"] {
            let e = parse_node_selectors(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains("is not a label"), "{bad}: {e}");
        }
    }

    #[test]
    fn tolerations() {
        let t = parse_toleration("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_deref(), t.operator.as_deref(), t.value.as_deref()),
            (Some("dedicated"), Some("Equal"), Some("gpu"))
        );
        let t = parse_toleration("nvidia.com/gpu:NoExecute").unwrap();
        assert_eq!(t.operator.as_deref(), Some("Exists"));
        let t = parse_toleration(":NoSchedule").unwrap();
        assert_eq!(t.key, None);
        for bad in ["a=b", "a:b:NoSchedule", "a:noschedule"] {
            assert!(parse_toleration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn taints() {
        let t = parse_taint("dedicated=system:NoExecute").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("system"), "NoExecute")
        );
        assert!(parse_taint(":NoSchedule").is_err());
    }
}
