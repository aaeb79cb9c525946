//! Hostile input never panics: the parsers that read user files and flags
//! (snapshots, constraint expressions, Go templates in catalog manifests,
//! `--set`, scheduling flags, OCI references) answer arbitrary text with a
//! value or an error, never a crash; deep nesting is an error, not a stack
//! overflow. Run with `PROPTEST_CASES=50000` for a longer hunt.

use aicr::bundle::gotmpl::Template;
use aicr::bundle::oci::Target;
use aicr::bundle::set::{DynamicPaths, SetOverrides};
use aicr::constraint::{Expr, Path};
use aicr::model::snapshot::Snapshot;
use aicr::yaml::Format;
use proptest::prelude::*;
use serde_json::json;

/// Text made mostly of the characters each grammar cares about, so cases
/// reach deep into the parsers instead of failing on the first byte.
fn text(alphabet: &'static str) -> impl Strategy<Value = String> {
    let chars: Vec<char> = alphabet.chars().collect();
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(chars),
            1 => any::<char>(),
        ],
        0..80,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Go-template token soup: real keywords and functions in random order.
fn template_tokens() -> impl Strategy<Value = String> {
    let tokens = vec![
        "{{",
        "}}",
        "{{-",
        "-}}",
        " ",
        "if",
        "else",
        "end",
        "range",
        "with",
        "$x",
        ":=",
        "$",
        ".",
        ".Values",
        ".Values.a",
        ".Values.name",
        ".Release.Name",
        "|",
        "default",
        "toYaml",
        "nindent",
        "indent",
        "quote",
        "eq",
        "ne",
        "and",
        "or",
        "not",
        "len",
        "index",
        "printf",
        "\"%s\"",
        "\"",
        "(",
        ")",
        "1",
        "2",
        "-1",
        "true",
        "nil",
        "\n",
        "text",
        "include",
        "tpl",
        "required",
        "b64enc",
        "trim",
        "upper",
        "lower",
        "/*",
        "*/",
        "`",
        ",",
    ];
    prop::collection::vec(prop::sample::select(tokens), 0..40).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn go_template_token_soup(src in template_tokens()) {
        if let Ok(t) = Template::parse("fuzz", &src) {
            let _ = t.render(&json!({"Values": {"a": [1, "x", {"b": true}], "name": "n"}, "Release": {"Name": "r"}}));
        }
    }

    #[test]
    fn go_templates(src in text("{}.$|-()\" abcdefghijklmnopqrstuvwxyz_0123456789\n:=")) {
        if let Ok(t) = Template::parse("fuzz", &src) {
            let _ = t.render(&json!({"Values": {"a": [1, "x", {"b": true}], "name": "n"}, "Release": {"Name": "r"}}));
        }
    }

    #[test]
    fn constraint_expressions(expr in text("<>=!~ .0123456789vV-+*abc"), actual in text(".0123456789vV-+abc ")) {
        if let Ok(e) = Expr::parse(&expr) {
            let _ = e.test(&actual);
        }
        let _ = Path::parse(&expr);
    }

    #[test]
    fn snapshots(doc in text("kind: Snapshot\nmeasurements:- type subtypes data{}[]\"'&*!|>#%@`0123456789. ")) {
        let _ = Snapshot::parse(&doc, Format::Yaml);
        let _ = Snapshot::parse(&doc, Format::Json);
    }

    #[test]
    fn set_and_dynamic_flags(a in text("abc:.=[]0123456789\\\"' "), b in text("abc:.=[]0123456789 ")) {
        let _ = SetOverrides::parse(&[a.clone(), b.clone()]);
        let _ = DynamicPaths::parse(&[a, b]);
    }

    #[test]
    fn scheduling_flags(s in text("abc.-/=:_ NoSchedule NoExecute PreferNoSchedule0123456789")) {
        let _ = aicr::kubernetes::scheduling::parse_toleration(&s);
        let _ = aicr::kubernetes::scheduling::parse_taint(&s);
        let _ = aicr::kubernetes::scheduling::parse_node_selectors(std::slice::from_ref(&s));
    }

    #[test]
    fn oci_references(s in text("oci:/abc.-_:@0123456789[]ABC")) {
        let _ = Target::parse(&s);
        let _ = Target::parse(&format!("oci://{s}"));
    }
}

const DEEP: usize = 100_000;

fn nested_go_template(depth: usize) -> [String; 2] {
    [
        format!("{{{{ {}1{} }}}}", "(".repeat(depth), ")".repeat(depth)),
        format!(
            "{}x{}",
            "{{if true}}".repeat(depth),
            "{{end}}".repeat(depth)
        ),
    ]
}

#[test]
fn deep_go_templates_fail_instead_of_overflowing_the_stack() {
    for src in nested_go_template(DEEP) {
        let e = Template::parse("deep", &src).expect_err("refused");
        assert!(
            e.message().contains("nesting deeper than 100 levels"),
            "{e}"
        );
    }
    for src in nested_go_template(50) {
        let out = Template::parse("ok", &src).and_then(|t| t.render(&json!({})));
        assert!(matches!(out.as_deref(), Ok("1" | "x")), "{out:?}");
    }
}

#[test]
fn deep_snapshot_templates() {
    let ifs = format!(
        "{}x{}",
        "{% if true %}".repeat(DEEP),
        "{% endif %}".repeat(DEEP)
    );
    let _ = aicr::template::Template::parse(&ifs);
}

#[test]
fn deep_yaml_snapshots() {
    let yaml = format!(
        "kind: Snapshot\nmeasurements: {}{}",
        "[".repeat(DEEP),
        "]".repeat(DEEP)
    );
    assert!(Snapshot::parse(&yaml, Format::Yaml).is_err());
}

#[test]
fn deep_json_snapshots() {
    let json_doc = format!("{}{}", "[".repeat(DEEP), "]".repeat(DEEP));
    assert!(Snapshot::parse(&json_doc, Format::Json).is_err());
}

#[test]
fn deep_yaml_values() {
    let doc = format!("{}1{}", "{a: ".repeat(DEEP), "}".repeat(DEEP));
    assert!(aicr::yaml::from_yaml::<serde_json::Value>(&doc).is_err());
    let doc = format!("{}1{}", "[".repeat(DEEP), "]".repeat(DEEP));
    assert!(aicr::yaml::from_yaml::<serde_json::Value>(&doc).is_err());
}
