//! `aicr bundle -o oci://...` against the real CNCF distribution registry
//! (`docker-registry`, the Debian package of distribution 2.8): what the
//! registry stores and serves back must be exactly what aicr says it
//! pushed, and the bundle inside must be the directory bundle byte for
//! byte. Its htpasswd auth checks the Docker config credentials path.
//!
//! `bundle_oci.rs` covers the protocol details against an in-process fake;
//! this file asks an implementation other than our own. Without
//! `docker-registry` installed (scripts/install-test-tools.sh) the tests
//! skip, and fail under CI=true.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use aicr_test_support::fixtures::EKS_TRAINING;
use aicr_test_support::tools;
use assert_cmd::Command;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

// ------------------------------------------------------------ the registry

/// A `docker-registry` process on a loopback port, storing in a temporary
/// directory; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    /// `user:password` for reads when the registry has htpasswd auth.
    basic: Option<String>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry, with htpasswd auth for `user`/`password` when
    /// given; `None` (skipped) when `docker-registry` is not installed.
    fn start(auth: Option<(&str, &str)>) -> Option<Registry> {
        let bin = tools::system_tool("docker-registry")?;
        let mut dir = tempfile::tempdir().unwrap();
        let auth_section = match auth {
            None => String::new(),
            Some((user, password)) => {
                let htpasswd = dir.path().join("htpasswd");
                fs::write(&htpasswd, format!("{user}:{}\n", bcrypt_hash(password)?)).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: aicr-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        // The port is found free, then handed over: another process may
        // take it in between, so a registry that dies at start is retried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: aicr-test-secret\n{auth_section}",
                    dir.path().join("storage").display()
                ),
            )
            .unwrap();
            let log = fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut cmd = Process::new(&bin);
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            // REGISTRY_* variables override the config file.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            let child = cmd.spawn().expect("docker-registry starts");
            let mut reg = Registry {
                child,
                port,
                basic: auth.map(|(u, p)| format!("{u}:{p}")),
                dir,
            };
            if reg.wait_ready() {
                return Some(reg);
            }
            let _ = reg.child.kill();
            let _ = reg.child.wait();
            dir = std::mem::replace(&mut reg.dir, tempfile::tempdir().unwrap());
        }
        panic!("docker-registry did not start");
    }

    /// Whether `/v2/` answers (200, or 401 behind auth) within 15 s; false
    /// when the process exited first.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(r) = self.try_get("/v2/", None, false)
                && (r.status == 200 || r.status == 401)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry is not answering:\n{}", self.log());
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `GET path`, with the registry's credentials when it has any.
    fn get(&self, path: &str, accept: Option<&str>) -> Response {
        self.try_get(path, accept, true)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()))
    }

    /// A minimal HTTP/1.1 GET: one request per connection, so the body
    /// ends at EOF unless the registry chunks it.
    fn try_get(&self, path: &str, accept: Option<&str>, auth: bool) -> std::io::Result<Response> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host()
        );
        if let Some(a) = accept {
            req.push_str(&format!("Accept: {a}\r\n"));
        }
        if let (true, Some(basic)) = (auth, &self.basic) {
            let b = base64::engine::general_purpose::STANDARD.encode(basic);
            req.push_str(&format!("Authorization: Basic {b}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        Ok(Response::parse(&raw))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    /// Lowercased names.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Response {
    fn parse(raw: &[u8]) -> Response {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// A bcrypt hash for an htpasswd line (distribution accepts only bcrypt),
/// made by the tools venv's `bcrypt`.
fn bcrypt_hash(password: &str) -> Option<String> {
    let judge = tools::Judge::find()?;
    let out = Process::new(judge.python())
        .args([
            "-c",
            "import sys, bcrypt; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=4)).decode())",
            password,
        ])
        .output()
        .expect("the venv python runs");
    assert!(
        out.status.success(),
        "bcrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap().trim().to_string())
}

// ----------------------------------------------------------------- aicr

/// `aicr` with a Docker config directory of its own, so the developer's
/// real credentials are never read.
fn aicr(docker_config: &Path) -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1").env("DOCKER_CONFIG", docker_config);
    c
}

fn recipe(dir: &Path) -> PathBuf {
    let path = dir.join("recipe.yaml");
    let docker = empty_docker_config(dir);
    aicr(&docker)
        .arg("recipe")
        .args(EKS_TRAINING)
        .arg("-o")
        .arg(&path)
        .assert()
        .success();
    path
}

fn empty_docker_config(dir: &Path) -> PathBuf {
    let d = dir.join("no-docker");
    fs::create_dir_all(&d).unwrap();
    d
}

/// A Docker config directory holding `auths` for `host`, as `docker login`
/// writes it.
fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    fs::write(
        dir.join("config.json"),
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    dir.to_path_buf()
}

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value after `label: ` on the line that starts with it.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{out}"))
        .trim()
}

use aicr_test_support::fixtures::{FileTree as Tree, file_tree as tree};

/// The regular files of a gzip tar layer.
fn unpack(layer: &[u8]) -> Tree {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut files = BTreeMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.header().entry_type().is_file() {
            assert!(
                e.header().entry_type().is_dir(),
                "only files and directories"
            );
            continue;
        }
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mode = e.header().mode().unwrap();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        files.insert(path, (mode, body));
    }
    files
}

// ---------------------------------------------------------------- tests

#[test]
fn the_registry_serves_back_exactly_the_pushed_bundle() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let host = reg.host();
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path());
    let docker = empty_docker_config(t.path());
    let refs = t.path().join("refs.txt");

    let push = |tag: &str, refs: &Path| {
        let a = aicr(&docker)
            .arg("bundle")
            .arg("-r")
            .arg(&r)
            .args([
                "-o",
                &format!("oci://{host}/aicr/bundle:{tag}"),
                "--plain-http",
            ])
            .arg("--image-refs")
            .arg(refs)
            .assert();
        let out = a.get_output();
        assert!(
            out.status.success(),
            "push failed: {}\nregistry log:\n{}",
            text(&out.stderr),
            reg.log()
        );
        text(&out.stdout)
    };
    let out = push("v1", &refs);
    let digest = field(&out, "Digest:").to_string();
    assert_eq!(
        fs::read_to_string(&refs).unwrap(),
        format!("{host}/aicr/bundle@{digest}\n")
    );
    assert_eq!(
        field(&out, "Pinned reference:"),
        format!("{host}/aicr/bundle@{digest}")
    );

    // The manifest, by tag and by digest: the registry's digest is ours,
    // and it is the sha256 of the bytes it serves.
    let by_tag = reg.get("/v2/aicr/bundle/manifests/v1", Some(OCI_MANIFEST));
    assert_eq!(by_tag.status, 200, "{}", text(&by_tag.body));
    assert_eq!(by_tag.header("docker-content-digest"), digest);
    assert_eq!(by_tag.header("content-type"), OCI_MANIFEST);
    assert_eq!(sha256(&by_tag.body), digest);
    let by_digest = reg.get(
        &format!("/v2/aicr/bundle/manifests/{digest}"),
        Some(OCI_MANIFEST),
    );
    assert_eq!(by_digest.status, 200);
    assert_eq!(by_digest.body, by_tag.body);

    let m: Value = serde_json::from_slice(&by_tag.body).unwrap();
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["artifactType"], "application/vnd.nvidia.aicr.artifact");
    let config = reg.get(
        &format!(
            "/v2/aicr/bundle/blobs/{}",
            m["config"]["digest"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(config.status, 200);
    assert_eq!(config.body, b"{}");
    assert_eq!(sha256(&config.body), m["config"]["digest"]);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{m}");
    let layer_digest = layers[0]["digest"].as_str().unwrap();
    let layer = reg.get(&format!("/v2/aicr/bundle/blobs/{layer_digest}"), None);
    assert_eq!(layer.status, 200);
    assert_eq!(sha256(&layer.body), layer_digest);
    assert_eq!(layer.header("docker-content-digest"), layer_digest);
    assert_eq!(layers[0]["size"], layer.body.len());

    // The layer is the directory bundle, byte for byte and mode for mode.
    let dir = t.path().join("dir");
    aicr(&docker)
        .arg("bundle")
        .arg("-r")
        .arg(&r)
        .arg("-o")
        .arg(&dir)
        .assert()
        .success();
    let pushed = unpack(&layer.body);
    let written = tree(&dir);
    assert_eq!(
        pushed.keys().collect::<Vec<_>>(),
        written.keys().collect::<Vec<_>>()
    );
    for (path, (mode, content)) in &written {
        let (m, c) = &pushed[path];
        assert_eq!(m, mode, "mode of {path}");
        assert!(c == content, "content of {path} differs");
    }

    // Pushed again under another tag: the blobs are found in place and the
    // registry reports the same manifest digest.
    let again = push("v2", &t.path().join("refs2.txt"));
    assert_eq!(field(&again, "Digest:"), digest);
    let v2 = reg.get("/v2/aicr/bundle/manifests/v2", Some(OCI_MANIFEST));
    assert_eq!(v2.header("docker-content-digest"), digest);
    let tags: Value =
        serde_json::from_slice(&reg.get("/v2/aicr/bundle/tags/list", None).body).unwrap();
    assert_eq!(
        tags,
        serde_json::json!({"name": "aicr/bundle", "tags": ["v1", "v2"]})
    );
}

#[test]
fn htpasswd_auth_takes_the_docker_config_credentials() {
    let Some(reg) = Registry::start(Some(("ci", "s3cret-pw"))) else {
        return;
    };
    let host = reg.host();
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path());
    let target = format!("oci://{host}/secure/bundle:v1");
    let refs = t.path().join("refs.txt");
    let run = |docker: &Path| {
        let mut c = aicr(docker);
        c.arg("bundle")
            .arg("-r")
            .arg(&r)
            .args(["-o", &target, "--plain-http", "--image-refs"])
            .arg(&refs);
        c.output().unwrap()
    };
    // The error is one line, the last on stderr, naming the fix.
    let failure = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        let last = err
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        let mentions: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(&format!("registry {host}")))
            .collect();
        assert_eq!(mentions, [last.as_str()], "{err}");
        assert!(last.contains(&format!("docker login {host}")), "{err}");
        assert!(!refs.exists(), "nothing written on failure");
        last
    };

    let anonymous = run(&empty_docker_config(t.path()));
    let line = failure(&anonymous);
    assert!(
        line.contains("requires authentication (HTTP 401)"),
        "{line}"
    );

    let wrong = run(&docker_config(&t.path().join("wrong"), &host, "ci", "nope"));
    let line = failure(&wrong);
    assert!(
        line.contains("rejected the docker config credentials"),
        "{line}"
    );
    assert!(!text(&wrong.stderr).contains("nope"));
    let missing = reg.get("/v2/secure/bundle/manifests/v1", Some(OCI_MANIFEST));
    assert_eq!(missing.status, 404, "nothing was pushed");

    let right = run(&docker_config(
        &t.path().join("right"),
        &host,
        "ci",
        "s3cret-pw",
    ));
    assert!(
        right.status.success(),
        "{}\nregistry log:\n{}",
        text(&right.stderr),
        reg.log()
    );
    let all = text(&right.stdout) + &text(&right.stderr);
    assert!(!all.contains("s3cret-pw"), "{all}");
    let digest = field(&text(&right.stdout), "Digest:").to_string();
    let stored = reg.get("/v2/secure/bundle/manifests/v1", Some(OCI_MANIFEST));
    assert_eq!(stored.status, 200);
    assert_eq!(stored.header("docker-content-digest"), digest);
    assert_eq!(
        fs::read_to_string(&refs).unwrap(),
        format!("{host}/secure/bundle@{digest}\n")
    );
}
