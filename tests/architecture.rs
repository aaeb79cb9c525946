//! The dependency invariants of ARCHITECTURE.md, checked on the real
//! dependency graph (`cargo tree`, offline, from Cargo.lock): the node
//! agent links no Kubernetes, Sigstore, OCI, HTTP-client or template code;
//! the aggregator links no supply-chain code.

use std::collections::BTreeSet;
use std::process::Command;

/// The normal (non-dev, non-build) dependency closure of `package`.
fn closure(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn linked<'a>(closure: &BTreeSet<String>, forbidden: &[&'a str]) -> Vec<&'a str> {
    forbidden
        .iter()
        .copied()
        .filter(|f| {
            closure
                .iter()
                .any(|c| c == f || c.starts_with(&format!("{f}-")))
        })
        .collect()
}

const SUPPLY_CHAIN: &[&str] = &[
    "sigstore",
    "aws-lc-rs",
    "aws-lc-sys",
    "oci-client",
    "reqwest",
    "docker_credential",
];

#[test]
fn the_agent_links_only_the_light_core() {
    let agent = closure("aicr-agent");
    assert!(agent.contains("aicr"), "the agent uses the core: {agent:?}");
    let mut forbidden = vec!["kube", "k8s-openapi", "tera", "ureq", "include_dir"];
    forbidden.extend(SUPPLY_CHAIN);
    assert_eq!(linked(&agent, &forbidden), Vec::<&str>::new());
}

#[test]
fn the_aggregator_links_no_supply_chain_code() {
    let aggregator = closure("aicr-aggregator");
    assert!(
        aggregator.contains("kube"),
        "the aggregator watches the cluster"
    );
    assert_eq!(linked(&aggregator, SUPPLY_CHAIN), Vec::<&str>::new());
}
