//! The layering of `validate`, read from its source: which sibling modules
//! each lower module names. A cycle starts with one forbidden `use`, and
//! the compiler accepts it, so this test is what refuses it.
//!
//! Only `super::…` and `crate::validate::…` paths count (with `{a, b}`
//! groups), comments and doc links included: naming a module in a doc link
//! is a dependency of the reader's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Modules a check may name: the vocabulary, the API view, pod reading,
/// the report types and the health-check assert runner. None of them
/// names a check, `phases`, `runner` or this module's items.
const NEUTRAL: [&str; 5] = ["api", "chainsaw", "check", "ctrf", "pods"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/validate")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first segment of each path that follows `prefix` in `text`, where
/// the prefix starts a path (`super::` inside `super::super::` does not).
fn after(text: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '*')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c == ':' || c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let end = group
                .find(|c| {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .unwrap_or(group.len());
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|n| !n.is_empty() && n != "*" && n != "super" && n != "self");
    out
}

/// The `validate` modules a file names; `depth` is how many `super::`
/// reach `validate` from it (1 for `validate/x.rs` and `checks/mod.rs`,
/// 2 for `checks/x.rs`).
fn names_in_validate(text: &str, depth: usize) -> BTreeSet<String> {
    let mut out = after(text, "crate::validate::");
    out.extend(after(text, &"super::".repeat(depth)));
    out
}

fn forbidden(file: &str, text: &str, depth: usize, allowed: &[&str]) -> Vec<String> {
    names_in_validate(text, depth)
        .into_iter()
        .filter(|n| !allowed.contains(&n.as_str()))
        .map(|n| format!("{file} names validate::{n}"))
        .collect()
}

#[test]
fn lower_modules_name_only_what_lies_beneath_them() {
    let mut problems = Vec::new();
    for (file, allowed) in [
        ("api.rs", &[][..]),
        ("ctrf.rs", &[]),
        ("pods.rs", &[]),
        // The context carries the cluster handle: that much, and no more.
        ("check.rs", &["api"]),
        ("chainsaw.rs", &["api"]),
        ("checks/mod.rs", &NEUTRAL),
    ] {
        problems.extend(forbidden(file, &read(&dir().join(file)), 1, allowed));
    }
    let checks = dir().join("checks");
    let mut seen = 0;
    for entry in std::fs::read_dir(&checks).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "mod.rs" || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        seen += 1;
        let file = format!("checks/{name}");
        let text = read(&path);
        problems.extend(forbidden(&file, &text, 2, &NEUTRAL));
        // One `super::` is the registry and, through it, the other checks.
        problems.extend(
            after(&text, "super::")
                .into_iter()
                .map(|n| format!("{file} names checks::{n}")),
        );
    }
    assert!(seen >= 4, "found only {seen} check modules in {checks:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_paths_groups_and_nesting() {
    let check = "use crate::validate::{api::{self, ResourceType}, check::Ctx};\n\
                 use super::super::phases::Plan;\n\
                 use super::gpu;\n\
                 mod tests { use super::*; }";
    assert_eq!(
        names_in_validate(check, 2),
        BTreeSet::from(["api".into(), "check".into(), "phases".into()])
    );
    assert_eq!(after(check, "super::"), BTreeSet::from(["gpu".into()]));
    assert_eq!(
        forbidden("checks/x.rs", check, 2, &NEUTRAL),
        ["checks/x.rs names validate::phases"]
    );
}
