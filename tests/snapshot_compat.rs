//! Snapshots as the upstream tool writes them parse, round-trip through our
//! YAML and JSON writers without changing data, and feed recipe
//! generation. The document is the snapshot spec's example (taken from
//! upstream output, kept as a fixture), both as written and re-indented the
//! way the upstream agent stores them in ConfigMaps.

use aicr::catalog::Catalog;
use aicr::engine;
use aicr::model::snapshot::{Reading, Snapshot};
use aicr::yaml::{self, Format};

/// A snapshot as the upstream tool writes it: the example of snapshot spec
/// §1.6 (taken from upstream output), kept in the repository.
fn upstream_example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/upstream-snapshot.yaml"
    ))
    .unwrap()
}

#[test]
fn the_fixture_is_the_spec_example() {
    let Some(shared) = aicr_test_support::tools::corpus("snapshot spec example") else {
        return;
    };
    let spec = std::fs::read_to_string(shared.join("spec/snapshot.md")).unwrap();
    let start = spec.find("### 1.6 Example").expect("section 1.6");
    let body = &spec[start..];
    let open = body.find("```yaml\n").unwrap() + "```yaml\n".len();
    let close = body[open..].find("```").unwrap();
    assert_eq!(upstream_example(), &body[open..open + close]);
}

/// The same document with four-space indentation (upstream's ConfigMap form).
fn four_space(text: &str) -> String {
    let v: serde_json::Value = yaml::from_yaml(text).unwrap();
    let out = yaml::to_yaml_indent(&v, 4).unwrap();
    assert!(out.contains("\n        "), "re-indented: {out}");
    out
}

#[test]
fn upstream_snapshots_parse_with_their_encodings() {
    for text in [upstream_example(), four_space(&upstream_example())] {
        let s = Snapshot::parse(&text, Format::Yaml).unwrap();
        assert_eq!(s.metadata["source-node"], "gpu-1");
        let r = |t, st, k| s.lookup(t, st, k).unwrap().clone();
        assert_eq!(r("GPU", "smi", "gpu-count"), Reading::Int(8));
        assert_eq!(r("OS", "kmod", "nvidia"), Reading::Bool(true));
        assert_eq!(r("OS", "release", "VERSION_ID").render(), "24.04");
        assert_eq!(
            r("OS", "sysctl", "/proc/sys/kernel/printk").render(),
            "4\t4\t1\t7"
        );
        assert_eq!(
            r("OS", "sysctl", "/proc/sys/kernel/core_modes").render(),
            "file\npipe"
        );
        assert_eq!(r("K8s", "policy", "driver.enabled").render(), "true");
        assert!(matches!(
            r("K8s", "policy", "driver.enabled"),
            Reading::Str(_)
        ));
        assert!(s.measurement("SystemD").unwrap().subtypes.is_empty());
    }
}

#[test]
fn round_trips_keep_data() {
    let s = Snapshot::parse(&upstream_example(), Format::Yaml).unwrap();
    let via_yaml = Snapshot::parse(&yaml::to_yaml(&s).unwrap(), Format::Yaml).unwrap();
    let via_json = Snapshot::parse(&yaml::to_json(&s).unwrap(), Format::Json).unwrap();
    for back in [&via_yaml, &via_json] {
        assert_eq!(back.metadata, s.metadata);
        assert_eq!(back.measurements.len(), s.measurements.len());
        for (a, b) in s.measurements.iter().zip(&back.measurements) {
            assert_eq!(a.kind, b.kind);
            for (x, y) in a.subtypes.iter().zip(&b.subtypes) {
                assert_eq!(x.subtype, y.subtype);
                let xr: Vec<(String, String)> = x
                    .data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render()))
                    .collect();
                let yr: Vec<(String, String)> = y
                    .data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render()))
                    .collect();
                assert_eq!(xr, yr, "{}.{}", a.kind, x.subtype);
            }
        }
    }
}

#[test]
fn upstream_snapshot_feeds_recipe() {
    let s = Snapshot::parse(&upstream_example(), Format::Yaml).unwrap();
    let mut c = engine::criteria_from_snapshot(&s);
    assert_eq!(
        c.to_string(),
        "criteria(service=eks, accelerator=h100, os=ubuntu)"
    );
    c.intent = "training".into();
    let r = engine::resolve(Catalog::embedded().unwrap(), &c, Some(&s)).unwrap();
    assert_eq!(
        r.metadata.applied_overlays.last().unwrap(),
        "h100-eks-ubuntu-training"
    );
    assert!(
        r.metadata.excluded_overlays.is_empty(),
        "{:?}",
        r.metadata.constraint_warnings
    );
}
