//! Compatibility suite: the real `aicr` binary, given the upstream v0.11.1
//! catalog as its whole catalog (`--data DIR --data-only`), reproduces every
//! golden case recorded from the upstream binary. Outputs are compared as
//! parsed data; only `metadata.version` (the CLI's own version) may differ.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The reference corpus, or `None` (the test skips) in a clone without it.
fn shared() -> Option<PathBuf> {
    aicr_test_support::tools::corpus("upstream compatibility suite")
}

fn aicr(shared: &Path, args: &[String]) -> assert_cmd::assert::Assert {
    aicr_test_support::tools::aicr()
        .args(args)
        .arg("--data")
        .arg(shared.join("reference/aicr-v0.11.1/recipes"))
        .arg("--data-only")
        .env("NO_COLOR", "1")
        .assert()
}

fn index(shared: &Path, kind: &str) -> Vec<Value> {
    let p = shared.join(format!("reference/golden/{kind}/index.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn args_of(case: &Value) -> Vec<String> {
    case["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn parse_yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

fn strip_version(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("version");
    }
}

/// The fields the issue names for component refs.
const REF_FIELDS: [&str; 11] = [
    "name",
    "namespace",
    "chart",
    "type",
    "source",
    "version",
    "valuesFile",
    "overrides",
    "dependencyRefs",
    "manifestFiles",
    "expectedResources",
];

#[test]
fn recipe_goldens() {
    let Some(shared) = shared() else { return };
    let cases = index(&shared, "recipes");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut args = vec!["recipe".to_string(), "--format".into(), "json".into()];
        args.extend(args_of(&case));
        let out = aicr(&shared, &args).code(case["exit"].as_i64().unwrap() as i32);
        let got: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(shared.join(format!("reference/golden/recipes/{name}.json")))
                .unwrap(),
        )
        .unwrap();
        for key in [
            "kind",
            "apiVersion",
            "criteria",
            "constraints",
            "deploymentOrder",
            "validation",
        ] {
            assert_eq!(got.get(key), want.get(key), "{name}: {key}");
        }
        assert_eq!(
            got["metadata"]["appliedOverlays"], want["metadata"]["appliedOverlays"],
            "{name}: appliedOverlays"
        );
        let (g, w) = (
            got["componentRefs"].as_array().unwrap(),
            want["componentRefs"].as_array().unwrap(),
        );
        assert_eq!(g.len(), w.len(), "{name}: component count");
        for (gr, wr) in g.iter().zip(w) {
            for f in REF_FIELDS {
                assert_eq!(gr.get(f), wr.get(f), "{name}: {}.{f}", wr["name"]);
            }
        }
        // The same recipe as YAML parses to the same data.
        let mut yargs = args.clone();
        yargs[2] = "yaml".into();
        let y = aicr(&shared, &yargs).success();
        let mut from_yaml = parse_yaml(std::str::from_utf8(&y.get_output().stdout).unwrap());
        let mut from_json = got.clone();
        strip_version(&mut from_yaml);
        strip_version(&mut from_json);
        assert_eq!(from_yaml, from_json, "{name}: yaml vs json");
    }
}

#[test]
fn query_goldens() {
    let Some(shared) = shared() else { return };
    for case in index(&shared, "query") {
        let file = case["file"].as_str().unwrap();
        let code = case["exit"].as_i64().unwrap() as i32;
        let mut args = vec!["query".to_string()];
        args.extend(args_of(&case));
        let out = aicr(&shared, &args).code(code);
        if code != 0 {
            let stderr = String::from_utf8_lossy(&out.get_output().stderr);
            assert!(stderr.contains("not found"), "{file}: {stderr}");
            continue;
        }
        let got = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        let want = std::fs::read_to_string(shared.join("reference/golden").join(file)).unwrap();
        if got == want {
            continue;
        }
        let json = args.iter().any(|a| a == "json");
        let (mut g, mut w) = if json {
            (
                serde_json::from_str::<Value>(&got).unwrap(),
                serde_json::from_str::<Value>(&want).unwrap(),
            )
        } else {
            (parse_yaml(&got), parse_yaml(&want))
        };
        strip_version(&mut g);
        strip_version(&mut w);
        assert_eq!(g, w, "{file}\n--- got\n{got}\n--- want\n{want}");
    }
}
