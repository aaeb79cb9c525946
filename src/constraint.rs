//! Constraint evaluation: `{Type}.{Subtype}.{Key}` paths, the expression
//! grammar, and version semantics. A pure function of (constraint, snapshot);
//! callers decide what an error means (readiness fails closed, snapshot-mode
//! recipe generation excludes the overlay).

use std::cmp::Ordering;
use std::fmt;

use crate::model::snapshot::{LookupMiss, MEASUREMENT_TYPES, Reading, Snapshot};

/// A parsed measurement path. The key keeps any further dots and slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path<'a> {
    pub kind: &'a str,
    pub subtype: &'a str,
    pub key: &'a str,
}

impl<'a> Path<'a> {
    pub fn parse(name: &'a str) -> Result<Path<'a>, EvalError> {
        let mut it = name.splitn(3, '.');
        let (Some(kind), Some(subtype), Some(key)) = (it.next(), it.next(), it.next()) else {
            return Err(EvalError::InvalidPath(
                "expected format {Type}.{Subtype}.{Key}".into(),
            ));
        };
        if !MEASUREMENT_TYPES.contains(&kind) {
            return Err(EvalError::InvalidPath(format!(
                "invalid measurement type in constraint path: {kind:?} (valid: {})",
                MEASUREMENT_TYPES.join(", ")
            )));
        }
        Ok(Path { kind, subtype, key })
    }

    /// `{Type}.{Subtype}`: the unit the agent streams and the aggregator
    /// re-evaluates on change.
    pub fn scope(&self) -> String {
        format!("{}.{}", self.kind, self.subtype)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Le,
    Ne,
    Eq,
    Gt,
    Lt,
    Exact,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Ne => "!=",
            Op::Eq => "==",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Exact => "",
        }
    }
}

/// A parsed expression such as `>= 1.32.4` or a bare `ubuntu`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr<'a> {
    pub op: Op,
    pub value: &'a str,
    /// `==`/`!=` compare as versions only when the value looks like one.
    pub version: bool,
}

impl<'a> Expr<'a> {
    pub fn parse(expr: &'a str) -> Result<Expr<'a>, EvalError> {
        let t = expr.trim();
        if t.is_empty() {
            return Err(EvalError::InvalidExpr(
                "constraint expression cannot be empty".into(),
            ));
        }
        for op in [Op::Ge, Op::Le, Op::Ne, Op::Eq, Op::Gt, Op::Lt] {
            if let Some(rest) = t.strip_prefix(op.symbol()) {
                let value = rest.trim();
                if value.is_empty() {
                    return Err(EvalError::InvalidExpr(
                        "constraint value cannot be empty after operator".into(),
                    ));
                }
                let version = match op {
                    Op::Eq | Op::Ne => looks_like_version(value),
                    _ => true,
                };
                return Ok(Expr { op, value, version });
            }
        }
        Ok(Expr {
            op: Op::Exact,
            value: t,
            version: false,
        })
    }

    /// Test an actual (already rendered) value.
    pub fn test(&self, actual: &str) -> Result<bool, EvalError> {
        let actual = actual.trim();
        let eq = |a: &str| -> bool {
            if self.version
                && let (Ok(x), Ok(y)) = (Version::parse(a), Version::parse(self.value))
            {
                return x.eq_numeric(&y);
            }
            a == self.value
        };
        Ok(match self.op {
            Op::Exact => actual == self.value,
            Op::Eq => eq(actual),
            Op::Ne => !eq(actual),
            Op::Ge | Op::Le | Op::Gt | Op::Lt => {
                let want = Version::parse(self.value).map_err(|e| {
                    EvalError::Eval(format!(
                        "cannot parse expected version {:?}: {e}",
                        self.value
                    ))
                })?;
                let got = Version::parse(actual).map_err(|e| {
                    EvalError::Eval(format!("cannot parse actual version {actual:?}: {e}"))
                })?;
                let ord = got.cmp_prefix(&want);
                match self.op {
                    Op::Ge => ord != Ordering::Less,
                    Op::Le => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    _ => ord == Ordering::Less,
                }
            }
        })
    }
}

fn looks_like_version(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    !v.is_empty() && v.contains('.') && v.bytes().any(|b| b.is_ascii_digit())
}

/// Up to three numeric components; pre-release, build and distro suffixes
/// are kept out of comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version {
    pub parts: [u64; 3],
    pub precision: usize,
}

impl Version {
    pub(crate) fn parse(s: &str) -> Result<Version, String> {
        if s.is_empty() {
            return Err("version string is empty".into());
        }
        let s = s.strip_prefix('v').unwrap_or(s);
        let bytes = s.as_bytes();
        // Cut at the first '-' or '+' that follows a digit: `6.8.0-1028-aws`.
        let cut = (1..bytes.len())
            .find(|&i| matches!(bytes[i], b'-' | b'+') && bytes[i - 1].is_ascii_digit())
            .unwrap_or(bytes.len());
        let main = &s[..cut];
        let parts: Vec<&str> = main.split('.').collect();
        if parts.len() > 3 {
            return Err("version has more than 3 components".into());
        }
        let mut v = Version {
            parts: [0; 3],
            precision: parts.len(),
        };
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() {
                return Err("empty version component".into());
            }
            let digits = p.strip_prefix('+').unwrap_or(p);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("non-numeric component: {p:?}"));
            }
            v.parts[i] = digits
                .parse()
                .map_err(|_| format!("non-numeric component: {p:?}"))?;
        }
        Ok(v)
    }

    /// Ordering over the shared precision only: `6.8` vs `6.8.0-1028` is equal.
    pub(crate) fn cmp_prefix(&self, other: &Version) -> Ordering {
        let n = self.precision.min(other.precision);
        self.parts[..n].cmp(&other.parts[..n])
    }

    /// Equality of all three components, missing ones being zero.
    pub(crate) fn eq_numeric(&self, other: &Version) -> bool {
        self.parts == other.parts
    }
}

/// Why a constraint could not be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    InvalidPath(String),
    NotFound(String),
    InvalidExpr(String),
    Eval(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::InvalidPath(m) => write!(f, "invalid constraint path: {m}"),
            EvalError::NotFound(m) => write!(f, "value not found in snapshot: {m}"),
            EvalError::InvalidExpr(m) => write!(f, "invalid constraint expression: {m}"),
            EvalError::Eval(m) => write!(f, "evaluation failed: {m}"),
        }
    }
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed {
        actual: String,
    },
    Failed {
        actual: String,
    },
    Error {
        actual: Option<String>,
        error: EvalError,
    },
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed { .. })
    }

    pub fn actual(&self) -> Option<&str> {
        match self {
            Outcome::Passed { actual } | Outcome::Failed { actual } => Some(actual),
            Outcome::Error { actual, .. } => actual.as_deref(),
        }
    }
}

/// Check that a constraint is well-formed without a snapshot (catalog
/// checks, recipe loading).
pub fn check_syntax(name: &str, value: &str) -> Result<(), EvalError> {
    Path::parse(name)?;
    Expr::parse(value)?;
    Ok(())
}

/// Evaluate `name` / `value` against a snapshot.
pub fn evaluate(name: &str, value: &str, snapshot: &Snapshot) -> Outcome {
    evaluate_with(name, value, |kind, subtype, key| {
        snapshot.lookup(kind, subtype, key)
    })
}

/// Evaluate `name` / `value` against readings held in any shape; `lookup`
/// answers as [`Snapshot::lookup`] does. The aggregator keeps live node
/// state outside a `Snapshot` and must judge it by exactly these rules.
pub fn evaluate_with<'r>(
    name: &str,
    value: &str,
    lookup: impl FnOnce(&str, &str, &str) -> Result<&'r Reading, LookupMiss>,
) -> Outcome {
    let path = match Path::parse(name) {
        Ok(p) => p,
        Err(error) => {
            return Outcome::Error {
                actual: None,
                error,
            };
        }
    };
    let actual = match lookup(path.kind, path.subtype, path.key) {
        Ok(r) => r.render(),
        Err(miss) => {
            return Outcome::Error {
                actual: None,
                error: EvalError::NotFound(format!("{name}: {miss}")),
            };
        }
    };
    let expr = match Expr::parse(value) {
        Ok(e) => e,
        Err(error) => {
            return Outcome::Error {
                actual: Some(actual),
                error,
            };
        }
    };
    match expr.test(&actual) {
        Ok(true) => Outcome::Passed { actual },
        Ok(false) => Outcome::Failed { actual },
        Err(error) => Outcome::Error {
            actual: Some(actual),
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::{Measurement, Subtype};

    fn t(expr: &str, actual: &str) -> Result<bool, EvalError> {
        Expr::parse(expr)?.test(actual)
    }

    #[test]
    fn observed_reference_table() {
        let cases: &[(&str, &str, Option<bool>)] = &[
            (">= 1.32.4", "v1.33.5-eks-3025e55", Some(true)),
            (">= 1.32.4", "v1.32.3", Some(false)),
            (">= 1.32.4", "1.32.4-rc.1", Some(true)),
            ("> 1.32", "v1.32.9", Some(false)),
            ("== 1.32", "1.32.4", Some(false)),
            ("== v1.32.4", "1.32.4-gke.100", Some(true)),
            ("1.32.4", "v1.32.4", Some(false)),
            (">= 6.8.1", "6.8.0-1028-aws", Some(false)),
            (">= 6.8", "6.8.0-1028-aws", Some(true)),
            ("< 6", "5.15.0-1.el9", Some(true)),
            ("== 24.04", "24.4", Some(true)),
            ("24.04", "24.4", Some(false)),
            ("== ubuntu", "Ubuntu", Some(false)),
            ("ubuntu", " ubuntu ", Some(true)),
            (">= 1.2.3.4", "1.32.4", None),
            ("> ubuntu", "ubuntu", None),
            (">= 1.32", "abc", None),
            ("<= 1.32", "1.32.9", Some(true)),
            ("< 1.33", "1.33.0", Some(false)),
            ("== 1.32.0", "1.32", Some(true)),
            ("!= 1.32.4", "1.32.4-rc1", Some(false)),
            ("=1.2", "=1.2", Some(true)),
            (">=1.32.4", "1.32.4", Some(true)),
        ];
        for (expr, actual, want) in cases {
            assert_eq!(t(expr, actual).ok(), *want, "{expr} vs {actual}");
        }
    }

    #[test]
    fn grammar_errors() {
        assert!(matches!(Expr::parse("  "), Err(EvalError::InvalidExpr(_))));
        assert!(matches!(Expr::parse(">= "), Err(EvalError::InvalidExpr(_))));
        assert!(Path::parse("k8s.server.version").is_err());
        assert!(Path::parse("K8s.server").is_err());
        let p = Path::parse("OS.sysctl./proc/sys/net.ipv4.ip_forward").unwrap();
        assert_eq!(
            (p.subtype, p.key),
            ("sysctl", "/proc/sys/net.ipv4.ip_forward")
        );
    }

    #[test]
    fn version_parsing_rules() {
        assert_eq!(
            Version::parse("1.-2").unwrap_err(),
            "non-numeric component: \"-2\""
        );
        assert!(Version::parse("V1.2").is_err());
        assert_eq!(Version::parse("v1.2").unwrap().precision, 2);
        assert_eq!(Version::parse("24.04").unwrap().parts, [24, 4, 0]);
        assert!(Version::parse("").is_err());
        assert!(Version::parse("1..2").is_err());
    }

    #[test]
    fn evaluate_reports_missing_paths_by_name() {
        let snap = Snapshot {
            measurements: vec![Measurement {
                kind: "OS".into(),
                subtypes: vec![Subtype::new("release").with("VERSION_ID", "24.04")],
            }],
            ..Default::default()
        };
        assert!(evaluate("OS.release.VERSION_ID", "24.04", &snap).passed());
        let out = evaluate("OS.release.ID", "ubuntu", &snap);
        let Outcome::Error { error, .. } = out else {
            panic!()
        };
        assert_eq!(
            error.to_string(),
            "value not found in snapshot: OS.release.ID: key not found in subtype"
        );
        let out = evaluate("OS.release.VERSION_ID", ">= x", &snap);
        assert!(matches!(
            out,
            Outcome::Error {
                actual: Some(_),
                ..
            }
        ));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn ver() -> impl Strategy<Value = (u64, u64, u64)> {
            (0u64..50, 0u64..50, 0u64..50)
        }

        proptest! {
            #[test]
            fn ordering_is_total_and_antisymmetric(a in ver(), b in ver()) {
                let va = Version::parse(&format!("{}.{}.{}", a.0, a.1, a.2)).unwrap();
                let vb = Version::parse(&format!("{}.{}.{}", b.0, b.1, b.2)).unwrap();
                prop_assert_eq!(va.cmp_prefix(&vb), vb.cmp_prefix(&va).reverse());
                prop_assert_eq!(va.cmp_prefix(&vb), a.cmp(&b));
            }

            #[test]
            fn suffixes_and_v_prefix_never_change_the_order(a in ver(), suffix in "[-+][a-z0-9.]{1,8}") {
                let plain = format!("{}.{}.{}", a.0, a.1, a.2);
                let decorated = format!("v{plain}{suffix}");
                let ge = t(&format!(">= {}", plain), &decorated).unwrap();
                let le = t(&format!("<= {}", plain), &decorated).unwrap();
                let gt = t(&format!("> {}", plain), &decorated).unwrap();
                prop_assert!(ge && le && !gt);
            }

            #[test]
            fn ge_is_the_negation_of_lt(a in ver(), b in ver()) {
                let x = format!("{}.{}.{}", a.0, a.1, a.2);
                let y = format!("{}.{}.{}", b.0, b.1, b.2);
                let ge = t(&format!(">= {y}"), &x).unwrap();
                let lt = t(&format!("< {y}"), &x).unwrap();
                prop_assert_eq!(ge, !lt);
            }
        }

        fn t(expr: &str, actual: &str) -> Result<bool, EvalError> {
            Expr::parse(expr)?.test(actual)
        }
    }
}
