//! End-to-end `aicr bundle -o oci://...` through the real binary against an
//! in-process fake registry: the artifact's manifest and layer (which must
//! unpack to exactly the directory bundle), default tags, `--image-refs`,
//! reproducible digests, Docker config credentials and every failure with
//! its exit code.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use aicr_test_support::FakeOciRegistry;
use aicr_test_support::fixtures::EKS_TRAINING;
use assert_cmd::Command;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `aicr` with a Docker config directory of its own, so the developer's
/// real credentials are never read.
fn aicr(docker_config: &Path) -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1").env("DOCKER_CONFIG", docker_config);
    c
}

fn recipe(dir: &Path) -> PathBuf {
    let path = dir.join("recipe.yaml");
    aicr(dir)
        .arg("recipe")
        .args(EKS_TRAINING)
        .arg("-o")
        .arg(&path)
        .assert()
        .success();
    path
}

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stderr.clone()).unwrap()
}

use aicr_test_support::fixtures::{FileTree as Tree, file_tree as tree};

/// The layer's regular files as `tree` reports them, and its directories.
fn unpack(layer: &[u8]) -> (Tree, Vec<String>) {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut files = BTreeMap::new();
    let mut dirs = Vec::new();
    let mut order = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(h.mtime().unwrap(), 0, "{path}");
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{path}");
        assert_eq!(h.username().unwrap(), Some(""), "{path}");
        assert_eq!(h.groupname().unwrap(), Some(""), "{path}");
        order.push(path.clone());
        if h.entry_type().is_dir() {
            assert_eq!(h.mode().unwrap(), 0o755, "{path}");
            dirs.push(path);
        } else {
            assert!(h.entry_type().is_file(), "{path}");
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            files.insert(path, (h.mode().unwrap(), body));
        }
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "layer entries are sorted");
    (files, dirs)
}

/// A Docker config directory holding `auths` for `host`.
fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let d = dir.join("docker");
    fs::create_dir_all(&d).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    fs::write(
        d.join("config.json"),
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    d
}

fn empty_docker_config(dir: &Path) -> PathBuf {
    let d = dir.join("no-docker");
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn pushed_artifact_is_the_directory_bundle() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path());
    let docker = empty_docker_config(t.path());
    let reg = FakeOciRegistry::start();
    let host = reg.host();
    let refs = t.path().join("refs.txt");

    let a = aicr(&docker)
        .arg("bundle")
        .arg("-r")
        .arg(&r)
        .args(["-o", &format!("oci://{host}/team/bundles:v1")])
        .arg("--plain-http")
        .arg("--image-refs")
        .arg(&refs)
        .assert()
        .success();
    let out = stdout(&a);

    let stored = reg.manifest("team/bundles", "v1").expect("tag v1 pushed");
    assert_eq!(stored.content_type, OCI_MANIFEST);
    assert_eq!(stored.digest, sha256(&stored.body));
    let digest_ref = format!("{host}/team/bundles@{}", stored.digest);
    assert_eq!(
        fs::read_to_string(&refs).unwrap(),
        format!("{digest_ref}\n")
    );
    assert!(out.contains("pushed successfully"), "{out}");
    assert!(
        out.contains(&format!("Reference: {host}/team/bundles:v1")),
        "{out}"
    );
    assert!(out.contains(&format!("Digest: {}", stored.digest)), "{out}");
    assert!(out.contains(&digest_ref), "{out}");
    assert!(!out.contains("To deploy"), "{out}");

    let m: Value = serde_json::from_slice(&stored.body).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["artifactType"], "application/vnd.nvidia.aicr.artifact");
    let ann = &m["annotations"];
    assert_eq!(
        ann["org.opencontainers.image.created"],
        "1970-01-01T00:00:00Z"
    );
    assert_eq!(ann["org.opencontainers.image.version"], aicr::VERSION);
    assert_eq!(ann["org.opencontainers.image.title"], "team/bundles");
    assert!(ann["org.opencontainers.image.vendor"].is_string(), "{m}");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["config"]["size"], 2);
    let config = m["config"]["digest"].as_str().unwrap();
    assert_eq!(reg.blob("team/bundles", config).unwrap(), b"{}");
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{m}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "bundle.tar.gz"
    );
    let layer = reg
        .blob("team/bundles", layers[0]["digest"].as_str().unwrap())
        .expect("layer pushed");
    assert_eq!(layers[0]["size"], layer.len());
    assert_eq!(&layer[4..8], &[0, 0, 0, 0], "gzip mtime is zero");

    let dir = t.path().join("dir");
    aicr(&docker)
        .arg("bundle")
        .arg("-r")
        .arg(&r)
        .arg("-o")
        .arg(&dir)
        .assert()
        .success();
    let (files, dirs) = unpack(&layer);
    let expected = tree(&dir);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (path, (mode, content)) in &expected {
        let (m, c) = &files[path];
        assert_eq!(m, mode, "mode of {path}");
        assert!(c == content, "content of {path} differs");
    }
    assert_eq!(files["checksums.txt"], expected["checksums.txt"]);
    for path in files.keys() {
        let mut parent = path.as_str();
        while let Some((d, _)) = parent.rsplit_once('/') {
            assert!(
                dirs.contains(&format!("{d}/")),
                "no directory entry for {d}"
            );
            parent = d;
        }
    }
    // Nothing is staged on disk for a push.
    assert!(!t.path().join("bundle").exists());
}

#[test]
fn default_tag_is_the_version_and_pushes_are_reproducible() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path());
    let docker = empty_docker_config(t.path());
    let reg = FakeOciRegistry::start();
    let target = format!("oci://{}/bundles", reg.host());
    let push = |refs: &Path| {
        aicr(&docker)
            .arg("bundle")
            .arg("-r")
            .arg(&r)
            .args(["-o", &target, "--plain-http", "--image-refs"])
            .arg(refs)
            .assert()
            .success();
        fs::read_to_string(refs).unwrap()
    };
    let first = push(&t.path().join("a.txt"));
    let uploads_after_first = reg
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST "))
        .count();
    let second = push(&t.path().join("b.txt"));
    assert_eq!(first, second, "same bundle, same manifest digest");
    assert_eq!(
        reg.requests()
            .iter()
            .filter(|r| r.starts_with("POST "))
            .count(),
        uploads_after_first,
        "blobs already present are not uploaded again"
    );

    let tag = aicr::VERSION.replace('+', "_");
    let stored = reg
        .manifest("bundles", &tag)
        .expect("pushed under the CLI version");
    assert_eq!(first, format!("{}/bundles@{}\n", reg.host(), stored.digest));
    assert_eq!(reg.references("bundles"), [stored.digest.clone(), tag]);

    // A fresh registry sees byte-identical blobs and manifest.
    let other = FakeOciRegistry::start();
    let config = t.path().join("config.yaml");
    fs::write(
        &config,
        format!(
            "kind: AICRConfig\napiVersion: aicr.nvidia.com/v1alpha1\nmetadata: {{name: c}}\nspec:\n  bundle:\n    input: {{recipe: {}}}\n    output: {{target: \"oci://{}/bundles:again\", imageRefs: {}}}\n    registry: {{plainHTTP: true}}\n",
            r.display(),
            other.host(),
            t.path().join("c.txt").display()
        ),
    )
    .unwrap();
    aicr(&docker)
        .arg("bundle")
        .arg("--config")
        .arg(&config)
        .assert()
        .success();
    let again = other
        .manifest("bundles", "again")
        .expect("pushed from config");
    assert_eq!(again.digest, stored.digest);
    assert_eq!(
        fs::read_to_string(t.path().join("c.txt")).unwrap(),
        format!("{}/bundles@{}\n", other.host(), stored.digest)
    );
}

#[test]
fn credentials_come_from_the_docker_config() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path());
    let reg = FakeOciRegistry::start_with_basic_auth("ci", "s3cret-pw");
    let host = reg.host();
    let target = format!("oci://{host}/secure/bundle:v1");
    let refs = t.path().join("refs.txt");
    let run = |docker: &Path| {
        let mut c = aicr(docker);
        c.arg("bundle")
            .arg("-r")
            .arg(&r)
            .args(["-o", &target, "--plain-http", "--image-refs"])
            .arg(&refs);
        c
    };

    let a = run(&empty_docker_config(t.path())).assert().code(4);
    let err = stderr(&a);
    assert!(err.contains(&format!("docker login {host}")), "{err}");
    assert!(!refs.exists(), "nothing written on failure");

    let wrong = docker_config(&t.path().join("wrong"), &host, "ci", "nope");
    let a = run(&wrong).assert().code(4);
    let err = stderr(&a);
    assert!(err.contains(&format!("docker login {host}")), "{err}");
    assert!(!err.contains("nope"), "{err}");
    assert!(!refs.exists());
    assert!(reg.manifest("secure/bundle", "v1").is_none());

    let right = docker_config(&t.path().join("right"), &host, "ci", "s3cret-pw");
    let a = run(&right).assert().success();
    let out = stdout(&a) + &stderr(&a);
    assert!(!out.contains("s3cret-pw"), "{out}");
    let stored = reg
        .manifest("secure/bundle", "v1")
        .expect("pushed with credentials");
    assert_eq!(
        fs::read_to_string(&refs).unwrap(),
        format!("{host}/secure/bundle@{}\n", stored.digest)
    );
}

#[test]
fn unreachable_registry_exits_6_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refs = t.path().join("refs.txt");
    let a = aicr(&empty_docker_config(t.path()))
        .arg("bundle")
        .arg("-r")
        .arg(&r)
        .args(["-o", &format!("oci://127.0.0.1:{port}/bundles:v1")])
        .arg("--plain-http")
        .arg("--image-refs")
        .arg(&refs)
        .assert()
        .code(6);
    let err = stderr(&a);
    assert!(
        err.contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!refs.exists());
}

#[test]
fn bad_references_exit_2_before_any_work() {
    let t = tempfile::tempdir().unwrap();
    // The recipe does not exist: a reference error must come first.
    let missing = t.path().join("missing.yaml");
    let digest = format!("sha256:{}", "0".repeat(64));
    for (target, needle) in [
        (format!("oci://reg.example/bundles@{digest}"), "digest"),
        (format!("oci://reg.example/bundles:v1@{digest}"), "digest"),
        ("oci://reg.example".to_string(), "missing repository"),
        ("oci://reg.example/".to_string(), "invalid repository"),
        (
            "oci://reg.example/Bundles".to_string(),
            "invalid repository",
        ),
        (
            "oci://reg.example/bundles:v1+build".to_string(),
            "invalid tag",
        ),
        ("oci:///bundles".to_string(), "invalid registry"),
    ] {
        let a = aicr(&empty_docker_config(t.path()))
            .arg("bundle")
            .arg("-r")
            .arg(&missing)
            .args(["-o", &target])
            .assert()
            .code(2);
        let err = stderr(&a);
        assert!(
            err.contains("invalid bundle command options: invalid OCI reference"),
            "{target}: {err}"
        );
        assert!(err.contains(needle), "{target}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{target}: {err}");
    }
}
