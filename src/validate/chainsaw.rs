//! Component health-check asserts (spec §7.4): Chainsaw `Test` documents
//! from the catalog's `checks/<component>/health-check.yaml`, or plain
//! `---`-separated partial objects.
//!
//! Tests made only of `assert`/`error` operations on inline resources — all
//! of the catalog's — are evaluated here with Chainsaw's assertion-tree
//! semantics (subset match, `(expression): value` projections), so the CLI
//! needs no external binary for them. Anything else is handed to the
//! `chainsaw` binary. Owns matching and the small expression language; reads
//! the cluster, never writes it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::api::Cluster;

/// Chainsaw's default for an operation without a timeout.
const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause between two evaluations of an operation.
const RETRY_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    /// Some object matches.
    Assert,
    /// No object matches.
    Error,
}

#[derive(Debug, Clone, PartialEq)]
struct Op {
    step: String,
    kind: OpKind,
    resource: Value,
    timeout: Duration,
}

/// Run one component's asserts until they hold or `deadline` passes. The
/// error is the explanation to report.
pub(crate) async fn run(
    cluster: &Cluster,
    text: &str,
    deadline: Instant,
    kubeconfig: Option<&Path>,
) -> Result<(), String> {
    let ops = if is_full_test(text) {
        match plan_test(text) {
            Ok(ops) => ops,
            Err(why) => {
                tracing::info!("chainsaw test needs the chainsaw binary: {why}");
                return run_binary(text, deadline, kubeconfig).await;
            }
        }
    } else {
        plan_partial(text, deadline)?
    };
    for op in &ops {
        run_op(cluster, op, deadline).await?;
    }
    Ok(())
}

fn is_full_test(text: &str) -> bool {
    text.contains("chainsaw.kyverno.io") && text.lines().any(|l| l.trim_end() == "kind: Test")
}

fn duration_at(v: &Value, pointer: &str) -> Option<Duration> {
    humantime::parse_duration(v.pointer(pointer)?.as_str()?.trim()).ok()
}

/// The operations of a full test, or why it needs the real binary.
fn plan_test(text: &str) -> Result<Vec<Op>, String> {
    let doc: Value = crate::yaml::from_yaml(text).map_err(|e| e.to_string())?;
    let assert_timeout = duration_at(&doc, "/spec/timeouts/assert").unwrap_or(DEFAULT_OP_TIMEOUT);
    let error_timeout = duration_at(&doc, "/spec/timeouts/error").unwrap_or(DEFAULT_OP_TIMEOUT);
    let steps = doc
        .pointer("/spec/steps")
        .and_then(Value::as_array)
        .ok_or("no spec.steps")?;
    let mut ops = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let name = step["name"]
            .as_str()
            .map_or_else(|| format!("step-{}", i + 1), str::to_string);
        if let Some(k) = step.as_object().and_then(|o| {
            o.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "name" | "description" | "try" | "catch" | "finally"
                )
            })
        }) {
            return Err(format!("step {name}: unsupported field {k:?}"));
        }
        for entry in step["try"]
            .as_array()
            .ok_or(format!("step {name}: no try"))?
        {
            let obj = entry
                .as_object()
                .ok_or(format!("step {name}: odd operation"))?;
            let (kind, body) = match (obj.get("assert"), obj.get("error")) {
                (Some(b), None) => (OpKind::Assert, b),
                (None, Some(b)) => (OpKind::Error, b),
                _ => {
                    let keys: Vec<&String> = obj.keys().collect();
                    return Err(format!("step {name}: unsupported operation {keys:?}"));
                }
            };
            let resource = body
                .get("resource")
                .filter(|r| r.is_object())
                .ok_or(format!("step {name}: only inline resources are supported"))?;
            if let Some(k) = body.as_object().and_then(|o| {
                o.keys()
                    .find(|k| !matches!(k.as_str(), "resource" | "timeout"))
            }) {
                return Err(format!("step {name}: unsupported operation field {k:?}"));
            }
            check_tree(resource).map_err(|e| format!("step {name}: {e}"))?;
            let timeout = duration_at(body, "/timeout").unwrap_or(match kind {
                OpKind::Assert => assert_timeout,
                OpKind::Error => error_timeout,
            });
            ops.push(Op {
                step: name.clone(),
                kind,
                resource: resource.clone(),
                timeout,
            });
        }
    }
    Ok(ops)
}

/// Partial objects: each document names one object and is asserted until
/// the overall budget ends.
fn plan_partial(text: &str, deadline: Instant) -> Result<Vec<Op>, String> {
    let budget = deadline.saturating_duration_since(Instant::now());
    let mut ops = Vec::new();
    let mut doc = String::new();
    let mut docs = Vec::new();
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(std::mem::take(&mut doc));
        } else {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.push(doc);
    for (i, d) in docs.iter().enumerate() {
        if d.lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let v: Value = crate::yaml::from_yaml(d)
            .map_err(|e| format!("invalid assert document #{}: {e}", i + 1))?;
        for field in ["/apiVersion", "/kind", "/metadata/name"] {
            if v.pointer(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(format!(
                    "invalid assert document #{}: {} is required",
                    i + 1,
                    &field[1..].replace('/', ".")
                ));
            }
        }
        check_tree(&v).map_err(|e| format!("assert document #{}: {e}", i + 1))?;
        ops.push(Op {
            step: format!("assert-{}", i + 1),
            kind: OpKind::Assert,
            resource: v,
            timeout: budget,
        });
    }
    Ok(ops)
}

/// Every `(expression)` key of a tree must be one we evaluate.
fn check_tree(v: &Value) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if let Some(expr) = projection(k) {
                    parse_expr(expr)?;
                }
                check_tree(child)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_tree),
        _ => Ok(()),
    }
}

fn projection(key: &str) -> Option<&str> {
    key.strip_prefix('(')?.strip_suffix(')')
}

fn describe(resource: &Value) -> String {
    let kind = resource["kind"].as_str().unwrap_or("?");
    let ns = resource
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = resource
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("*");
    if ns.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {ns}/{name}")
    }
}

async fn run_op(cluster: &Cluster, op: &Op, deadline: Instant) -> Result<(), String> {
    let op_deadline = (Instant::now() + op.timeout).min(deadline);
    let mut wait = Duration::from_millis(100);
    loop {
        let why = match evaluate(cluster, op).await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        let now = Instant::now();
        if now >= op_deadline {
            let verb = match op.kind {
                OpKind::Assert => "assert",
                OpKind::Error => "error",
            };
            return Err(format!(
                "step {}: {verb} {}: {why}",
                op.step,
                describe(&op.resource)
            ));
        }
        tokio::time::sleep(wait.min(op_deadline - now)).await;
        wait = (wait * 2).min(RETRY_EVERY);
    }
}

/// One evaluation of an operation against the live cluster.
async fn evaluate(cluster: &Cluster, op: &Op) -> Result<(), String> {
    let r = &op.resource;
    let api_version = r["apiVersion"].as_str().unwrap_or("");
    let kind = r["kind"].as_str().unwrap_or("");
    let ns = r
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = r
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let labels: Vec<String> = r
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect()
        })
        .unwrap_or_default();
    let ty = cluster
        .resolve(api_version, kind)
        .await
        .map_err(|e| format!("cannot discover {api_version} {kind}: {e}"))?;
    let objects = match &ty {
        Some(d) => cluster
            .find(d, ns, name, &labels.join(","))
            .await
            .map_err(|e| format!("cannot read {kind}: {e}"))?,
        None => Vec::new(),
    };
    // Identity fields chose the objects; list items do not repeat them.
    let mut tree = r.clone();
    if let Some(m) = tree.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    match op.kind {
        OpKind::Assert => {
            if ty.is_none() {
                return Err(format!("{api_version} {kind} is not served"));
            }
            let mut first = None;
            for o in &objects {
                match matches(&tree, o, "") {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            Err(first.unwrap_or_else(|| "not found".to_string()))
        }
        OpKind::Error => {
            for o in &objects {
                if matches(&tree, o, "").is_ok() {
                    let on = o
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    return Err(format!("{kind} {on} matches the error condition"));
                }
            }
            Ok(())
        }
    }
}

/// Chainsaw's assertion-tree match: every expected field must be present
/// and match; arrays match element-wise with equal length; `(expr)` keys
/// compare the expression's result.
fn matches(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match expected {
        Value::Object(m) => {
            for (k, ev) in m {
                let (child_at, av) = match projection(k) {
                    Some(expr) => {
                        let e = parse_expr(expr)?;
                        (format!("{at}.({expr})"), eval(&e, actual))
                    }
                    None => (
                        format!("{at}.{k}"),
                        actual.get(k).cloned().unwrap_or(Value::Null),
                    ),
                };
                if ev.is_object() && !av.is_object() {
                    return Err(format!(
                        "{}: field missing",
                        child_at.trim_start_matches('.')
                    ));
                }
                matches(ev, &av, &child_at)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let Some(got) = actual.as_array() else {
                return Err(format!("{}: expected an array", at.trim_start_matches('.')));
            };
            if got.len() != items.len() {
                return Err(format!(
                    "{}: expected {} items, got {}",
                    at.trim_start_matches('.'),
                    items.len(),
                    got.len()
                ));
            }
            for (i, (e, a)) in items.iter().zip(got).enumerate() {
                matches(e, a, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        scalar => {
            if scalar_eq(scalar, actual) {
                Ok(())
            } else {
                Err(format!(
                    "{}: expected {scalar}, got {actual}",
                    at.trim_start_matches('.')
                ))
            }
        }
    }
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The JMESPath subset the catalog's asserts use: field paths, literals
/// (`` `json` ``, `'text'`), `length(...)` and one comparison.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Field(Vec<String>),
    Literal(Value),
    Length(Box<Expr>),
    Compare(Box<Expr>, Cmp, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

fn parse_expr(s: &str) -> Result<Expr, String> {
    let s = s.trim();
    let unsupported = || format!("unsupported assertion expression ({s})");
    for (sym, cmp) in [
        ("==", Cmp::Eq),
        ("!=", Cmp::Ne),
        (">=", Cmp::Ge),
        ("<=", Cmp::Le),
        (">", Cmp::Gt),
        ("<", Cmp::Lt),
    ] {
        if let Some(i) = find_outside_literals(s, sym) {
            let left = parse_operand(&s[..i]).ok_or_else(unsupported)?;
            let right = parse_operand(&s[i + sym.len()..]).ok_or_else(unsupported)?;
            return Ok(Expr::Compare(Box::new(left), cmp, Box::new(right)));
        }
    }
    parse_operand(s).ok_or_else(unsupported)
}

/// The byte offset of `sym` outside backtick and quote literals.
fn find_outside_literals(s: &str, sym: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '`' || c == '\'' => quote = Some(c),
            None if s[i..].starts_with(sym) => return Some(i),
            None => {}
        }
    }
    None
}

fn parse_operand(s: &str) -> Option<Expr> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return serde_json::from_str(inner).ok().map(Expr::Literal);
    }
    if let Some(inner) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Some(Expr::Literal(Value::String(inner.to_string())));
    }
    if let Some(inner) = s.strip_prefix("length(").and_then(|r| r.strip_suffix(')')) {
        return Some(Expr::Length(Box::new(parse_operand(inner)?)));
    }
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    let ident = |p: &String| {
        let mut chars = p.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    parts.iter().all(ident).then_some(Expr::Field(parts))
}

fn eval(e: &Expr, at: &Value) -> Value {
    match e {
        Expr::Field(path) => path
            .iter()
            .try_fold(at, |v, k| v.get(k))
            .cloned()
            .unwrap_or(Value::Null),
        Expr::Literal(v) => v.clone(),
        Expr::Length(inner) => match eval(inner, at) {
            Value::Array(a) => Value::from(a.len()),
            Value::Object(o) => Value::from(o.len()),
            Value::String(s) => Value::from(s.chars().count()),
            _ => Value::Null,
        },
        Expr::Compare(l, cmp, r) => {
            let (a, b) = (eval(l, at), eval(r, at));
            match cmp {
                Cmp::Eq => Value::Bool(scalar_eq(&a, &b)),
                Cmp::Ne => Value::Bool(!scalar_eq(&a, &b)),
                // Ordering is defined on numbers only; anything else is null.
                _ => match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => Value::Bool(match cmp {
                        Cmp::Ge => x >= y,
                        Cmp::Le => x <= y,
                        Cmp::Gt => x > y,
                        _ => x < y,
                    }),
                    _ => Value::Null,
                },
            }
        }
    }
}

/// Where the `chainsaw` binary is: on `PATH`, else the conventional path.
fn chainsaw_binary() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("chainsaw"))
        .chain(std::iter::once("/usr/local/bin/chainsaw".into()))
        .find(|p| p.is_file())
}

/// `chainsaw test --test-dir <tmp> --no-color`, killed at the deadline.
async fn run_binary(
    text: &str,
    deadline: Instant,
    kubeconfig: Option<&Path>,
) -> Result<(), String> {
    let Some(bin) = chainsaw_binary() else {
        return Err(
            "error: this health check needs the chainsaw binary (https://kyverno.github.io/chainsaw), which is not on PATH or at /usr/local/bin/chainsaw".into(),
        );
    };
    let text = text.to_string();
    let kubeconfig = kubeconfig.map(Path::to_path_buf);
    let budget = deadline.saturating_duration_since(Instant::now());
    let joined = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| format!("error: {e}"))?;
        std::fs::write(dir.path().join("chainsaw-test.yaml"), text)
            .map_err(|e| format!("error: {e}"))?;
        let log = tempfile::tempfile().map_err(|e| format!("error: {e}"))?;
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(["test", "--test-dir"])
            .arg(dir.path())
            .arg("--no-color")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| format!("error: {e}"))?)
            .stderr(log.try_clone().map_err(|e| format!("error: {e}"))?);
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("error: cannot run {}: {e}", bin.display()))?;
        let started = std::time::Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if started.elapsed() >= budget => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("error: {e}")),
            }
        };
        let output = read_all(log);
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("{output}\nerror: chainsaw exited with {s}")),
            None => Err(format!(
                "{output}\nerror: chainsaw did not finish within {}",
                humantime::format_duration(budget)
            )),
        }
    })
    .await;
    joined.unwrap_or_else(|e| Err(format!("error: chainsaw runner failed: {e}")))
}

fn read_all(mut f: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut s = String::new();
    let _ = f.rewind();
    let _ = f.read_to_string(&mut s);
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trees_match_as_subsets_with_projections() {
        let actual = json!({"status": {"availableReplicas": 2, "phase": "Running",
                             "conditions": [{"type": "Ready", "status": "True"}]},
                            "metadata": {"name": "x"}});
        let ok = |e: Value| matches(&e, &actual, "");
        ok(json!({"status": {"(availableReplicas > `0`)": true}})).unwrap();
        ok(json!({"status": {"phase": "Running"}})).unwrap();
        ok(json!({"status": {"(length(conditions))": 1}})).unwrap();
        ok(json!({"status": {"conditions": [{"type": "Ready"}]}})).unwrap();
        assert_eq!(
            ok(json!({"status": {"(availableReplicas > `5`)": true}})).unwrap_err(),
            "status.(availableReplicas > `5`): expected true, got false"
        );
        assert_eq!(
            ok(json!({"status": {"phase": "Pending"}})).unwrap_err(),
            "status.phase: expected \"Pending\", got \"Running\""
        );
        assert!(
            ok(json!({"spec": {"x": 1}})).is_err(),
            "missing object fails"
        );
        assert!(
            ok(json!({"status": {"(missing > `0`)": true}})).is_err(),
            "null comparison is not true"
        );
        assert!(
            ok(json!({"status": {"conditions": []}})).is_err(),
            "lengths differ"
        );
    }

    #[test]
    fn expressions_outside_the_subset_are_reported() {
        assert!(parse_expr("a.b >= `1`").is_ok());
        assert!(parse_expr("x == 'a>b'").is_ok());
        assert!(parse_expr("a && b").is_err());
        assert!(parse_expr("a[0].b").is_err());
    }

    #[test]
    fn catalog_tests_are_planned_natively() {
        let cat = crate::catalog::Catalog::embedded().unwrap();
        let files: Vec<&str> = cat.paths().filter(|p| p.starts_with("checks/")).collect();
        assert!(!files.is_empty());
        for f in files {
            let text = String::from_utf8_lossy(cat.file(f).unwrap()).into_owned();
            assert!(is_full_test(&text), "{f}");
            let ops = plan_test(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(ops.iter().any(|o| o.kind == OpKind::Assert), "{f}");
            for o in &ops {
                let want = match o.kind {
                    OpKind::Assert => 300,
                    OpKind::Error => DEFAULT_OP_TIMEOUT.as_secs(),
                };
                assert_eq!(o.timeout.as_secs(), want, "{f}");
            }
        }
    }

    #[test]
    fn other_operations_need_the_binary() {
        let text = "apiVersion: chainsaw.kyverno.io/v1alpha1\nkind: Test\nspec:\n  steps:\n    - try:\n        - script:\n            content: echo hi\n";
        assert!(
            plan_test(text)
                .unwrap_err()
                .contains("unsupported operation")
        );
    }

    #[test]
    fn partial_documents_need_identity() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let ok = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n  namespace: b\nstatus:\n  readyReplicas: 1\n---\n# trailing comment\n";
        assert_eq!(plan_partial(ok, deadline).unwrap().len(), 1);
        let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  namespace: b\n";
        assert_eq!(
            plan_partial(bad, deadline).unwrap_err(),
            "invalid assert document #1: metadata.name is required"
        );
    }
}
