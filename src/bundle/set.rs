//! Parsers for the bundle command's `--set` and `--dynamic` options and the
//! value type conversion `--set` applies. Pure string handling; knows nothing
//! about the registry or the recipe (keys are resolved by the bundler).
//! Selectors, tolerations and taints use the shared `crate::kubernetes::scheduling`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Result};

/// `--set` overrides as typed: override key → ordered `(path, value)` pairs.
/// A repeated key and path keeps its first position and the last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOverrides {
    entries: BTreeMap<String, Vec<(String, String)>>,
}

impl SetOverrides {
    /// Parse every `--set` argument, in order.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<SetOverrides> {
        let mut out = SetOverrides::default();
        for arg in args {
            let (key, path, value) = parse_set(arg.as_ref())?;
            let list = out.entries.entry(key).or_default();
            match list.iter_mut().find(|(p, _)| *p == path) {
                Some(slot) => slot.1 = value,
                None => list.push((path, value)),
            }
        }
        Ok(out)
    }

    /// Override keys as the user typed them.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The `(path, value)` pairs given under one override key.
    pub(crate) fn get(&self, key: &str) -> Option<&[(String, String)]> {
        self.entries.get(key).map(Vec::as_slice)
    }
}

fn parse_set(arg: &str) -> Result<(String, String, String)> {
    let bad = || {
        Error::invalid(format!(
            "invalid format '{arg}': expected 'bundler:path=value'"
        ))
    };
    let (key, rest) = arg.split_once(':').ok_or_else(bad)?;
    let (path, value) = rest.split_once('=').ok_or_else(bad)?;
    let (key, path, value) = (key.trim(), path.trim(), value.trim());
    if key.is_empty() {
        return Err(bad());
    }
    if path.is_empty() || value.is_empty() {
        return Err(Error::invalid(format!(
            "invalid format '{arg}': path and value cannot be empty"
        )));
    }
    reject_array_index(path, "--set")?;
    Ok((key.to_string(), path.to_string(), value.to_string()))
}

/// `a[0].b` would silently create a literal key `a[0]`; lists can only be
/// replaced whole through recipe overrides, so say so instead.
fn reject_array_index(path: &str, flag: &str) -> Result<()> {
    let indexed = path.split('.').any(|seg| {
        seg.find('[').is_some_and(|open| {
            seg.ends_with(']')
                && seg[open + 1..seg.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_digit())
        })
    });
    if indexed {
        return Err(Error::invalid(format!(
            "array index syntax is not supported in {flag} path '{path}': lists can only be replaced whole through the recipe's componentRefs[].overrides"
        )));
    }
    Ok(())
}

/// `--dynamic` declarations as typed: override key → paths, in order,
/// duplicates kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicPaths {
    entries: BTreeMap<String, Vec<String>>,
}

impl DynamicPaths {
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<DynamicPaths> {
        let mut out = DynamicPaths::default();
        for arg in args {
            let arg = arg.as_ref();
            let bad =
                || Error::invalid(format!("invalid format '{arg}': expected 'component:path'"));
            let (key, path) = arg.split_once(':').ok_or_else(bad)?;
            let (key, path) = (key.trim(), path.trim());
            if path.contains('=') {
                return Err(Error::invalid(format!(
                    "invalid format '{arg}': dynamic declaration does not accept '=value'"
                )));
            }
            if key.is_empty() || path.is_empty() {
                return Err(Error::invalid(format!(
                    "invalid format '{arg}': component and path cannot be empty"
                )));
            }
            reject_array_index(path, "--dynamic")?;
            out.entries
                .entry(key.to_string())
                .or_default()
                .push(path.to_string());
        }
        Ok(out)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The `--set` type conversion, first match wins: `true`/`false`, a base-10
/// 64-bit integer (sign and leading zeros allowed), a finite float, else the
/// string. Non-finite floats stay strings: JSON values cannot hold them.
pub(crate) fn convert(raw: &str) -> Value {
    match raw {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let digits = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = raw.strip_prefix('+').unwrap_or(raw).parse::<i64>()
    {
        return Value::from(i);
    }
    if looks_numeric(raw)
        && let Ok(f) = raw.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(raw.to_string())
}

/// Rust's float parser accepts forms Go's does not (`1.`, `.5` are fine in
/// both; `infinity` spelled out is only ours); restrict to digits, one dot,
/// an exponent and a sign so the same strings convert as upstream.
fn looks_numeric(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut dots = 0;
    let mut digits = 0;
    for b in mantissa.bytes() {
        match b {
            b'.' => dots += 1,
            b'0'..=b'9' => digits += 1,
            _ => return false,
        }
    }
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    dots <= 1 && digits > 0 && exp_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_splits_at_first_colon_and_equals_and_last_value_wins() {
        let s = SetOverrides::parse(&[
            "gpuoperator:driver.version=570:x=y",
            "gpuoperator:gds.enabled=true",
            "gpuoperator:driver.version=580",
        ])
        .unwrap();
        assert_eq!(
            s.get("gpuoperator").unwrap(),
            &[
                ("driver.version".to_string(), "580".to_string()),
                ("gds.enabled".to_string(), "true".to_string())
            ]
        );
    }

    #[test]
    fn set_rejects_bad_syntax_with_the_spec_messages() {
        for (arg, msg) in [
            (
                "nocolon",
                "invalid format 'nocolon': expected 'bundler:path=value'",
            ),
            ("a:b", "invalid format 'a:b': expected 'bundler:path=value'"),
            (
                "a:=v",
                "invalid format 'a:=v': path and value cannot be empty",
            ),
            (
                "a:p=",
                "invalid format 'a:p=': path and value cannot be empty",
            ),
        ] {
            let e = SetOverrides::parse(&[arg]).unwrap_err();
            assert_eq!(e.to_string(), msg);
            assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
        }
        let e = SetOverrides::parse(&["a:list[0].x=1"]).unwrap_err();
        assert!(e.to_string().contains("array index syntax"), "{e}");
        assert!(SetOverrides::parse(&["a:weird[x]=1"]).is_ok());
    }

    #[test]
    fn dynamic_rejects_values() {
        let d = DynamicPaths::parse(&["alloy:clusterName", "alloy:clusterName"]).unwrap();
        assert_eq!(d.iter().next().unwrap().1.len(), 2);
        let e = DynamicPaths::parse(&["alloy:clusterName=x"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid format 'alloy:clusterName=x': dynamic declaration does not accept '=value'"
        );
        assert!(DynamicPaths::parse(&["nocolon"]).is_err());
    }

    #[test]
    fn conversion_follows_upstream_order() {
        assert_eq!(convert("true"), json!(true));
        assert_eq!(convert("True"), json!("True"));
        assert_eq!(convert("0123"), json!(123));
        assert_eq!(convert("+7"), json!(7));
        assert_eq!(convert("-7"), json!(-7));
        assert_eq!(convert("1.10"), json!(1.1));
        assert_eq!(convert("1e3"), json!(1000.0));
        assert_eq!(convert("580.105.08"), json!("580.105.08"));
        assert_eq!(convert("v1.2"), json!("v1.2"));
        assert_eq!(convert("inf"), json!("inf"));
        assert_eq!(convert("99999999999999999999"), json!(1e20));
        assert_eq!(convert("gp3"), json!("gp3"));
    }
}
