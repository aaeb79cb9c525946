//! `aicr trust update` against a TUF repository generated here and served on
//! loopback: the root chain is walked from the bootstrap root, the target is
//! installed where `verify` reads it, and tampered, badly signed, expired or
//! rolled-back metadata is refused without touching the installed root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aicr_test_support::StaticHttp;
use assert_cmd::Command;
use predicates::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

const FAR: &str = "2099-01-01T00:00:00Z";
const PAST: &str = "2001-01-01T00:00:00Z";

struct Key {
    pair: Ed25519KeyPair,
    id: String,
}

impl Key {
    fn new() -> Key {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let id =
            hex(ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref()).as_ref());
        Key { pair, id }
    }

    fn public(&self) -> Value {
        json!({"keytype": "ed25519", "scheme": "ed25519",
               "keyval": {"public": hex(self.pair.public_key().as_ref())}})
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// Sign `signed` with each key, as TUF metadata.
fn sign(signed: Value, keys: &[&Key]) -> Vec<u8> {
    let canonical = sigstore_tuf::canonical_json::to_canonical_bytes(&signed).unwrap();
    let signatures: Vec<Value> = keys
        .iter()
        .map(|k| json!({"keyid": k.id, "sig": hex(k.pair.sign(&canonical).as_ref())}))
        .collect();
    serde_json::to_vec_pretty(&json!({"signed": signed, "signatures": signatures})).unwrap()
}

/// A consistent-snapshot TUF repository with one online key for timestamp,
/// snapshot and targets, and a rotating root key.
struct Repo {
    http: StaticHttp,
    root_key: Key,
    online: Key,
    root_version: u64,
    version: u64,
    bootstrap: Vec<u8>,
}

impl Repo {
    fn new() -> Repo {
        let mut repo = Repo {
            http: StaticHttp::start(),
            root_key: Key::new(),
            online: Key::new(),
            root_version: 0,
            version: 0,
            bootstrap: Vec::new(),
        };
        let key = Key::new();
        repo.bootstrap = repo.publish_root(key, &[]);
        repo
    }

    fn root_signed(&self, version: u64, root_key: &Key) -> Value {
        let role = |k: &Key| json!({"keyids": [k.id], "threshold": 1});
        json!({
            "_type": "root", "spec_version": "1.0.31", "version": version,
            "expires": FAR, "consistent_snapshot": true,
            "keys": {root_key.id.clone(): root_key.public(), self.online.id.clone(): self.online.public()},
            "roles": {"root": role(root_key), "timestamp": role(&self.online),
                      "snapshot": role(&self.online), "targets": role(&self.online)},
        })
    }

    /// Publish the next root version with `next` as its root key, signed by
    /// the current and the next root key (plus `extra` signers), as TUF
    /// rotation requires. Returns the published bytes.
    fn publish_root(&mut self, next: Key, extra: &[&Key]) -> Vec<u8> {
        self.root_version += 1;
        let signed = self.root_signed(self.root_version, &next);
        let mut signers: Vec<&Key> = extra.to_vec();
        if self.root_version > 1 {
            signers.push(&self.root_key);
        }
        signers.push(&next);
        let bytes = sign(signed, &signers);
        self.http
            .put(&format!("/{}.root.json", self.root_version), bytes.clone());
        self.root_key = next;
        bytes
    }

    /// Publish `content` as `trusted_root.json` under a new targets,
    /// snapshot and timestamp version. `served` replaces the bytes actually
    /// served for the target (tampering); `timestamp_expires` ages it.
    fn publish_target(&mut self, content: &[u8], served: Option<&[u8]>, timestamp_expires: &str) {
        self.version += 1;
        let v = self.version;
        let hash = sha256_hex(content);
        let meta = |name: &str| json!({name: {"version": v}});
        let common = |t: &str, expires: &str| json!({"_type": t, "spec_version": "1.0.31", "version": v, "expires": expires});
        let mut targets = common("targets", FAR);
        targets["targets"] = json!({"trusted_root.json":
            {"length": content.len(), "hashes": {"sha256": hash}}});
        let mut snapshot = common("snapshot", FAR);
        snapshot["meta"] = meta("targets.json");
        let mut timestamp = common("timestamp", timestamp_expires);
        timestamp["meta"] = meta("snapshot.json");
        let h = &self.http;
        h.put(
            &format!("/{v}.targets.json"),
            sign(targets, &[&self.online]),
        );
        h.put(
            &format!("/{v}.snapshot.json"),
            sign(snapshot, &[&self.online]),
        );
        h.put("/timestamp.json", sign(timestamp, &[&self.online]));
        h.put(
            &format!("/targets/{hash}.trusted_root.json"),
            served.unwrap_or(content).to_vec(),
        );
    }
}

/// A trusted root the way Sigstore publishes it, with `drop_cas` of its
/// certificate authorities removed so versions are told apart by counts.
fn trusted_root(drop_cas: usize) -> (Vec<u8>, usize, usize) {
    let mut v: Value =
        serde_json::from_str(sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT).unwrap();
    let cas = v["certificateAuthorities"].as_array_mut().unwrap();
    cas.truncate(cas.len() - drop_cas);
    let (n_cas, n_logs) = (cas.len(), v["tlogs"].as_array().unwrap().len());
    (serde_json::to_vec_pretty(&v).unwrap(), n_cas, n_logs)
}

struct Env {
    home: tempfile::TempDir,
    root_file: PathBuf,
    mirror: String,
}

impl Env {
    fn new(repo: &Repo) -> Env {
        let home = tempfile::tempdir().unwrap();
        let root_file = home.path().join("bootstrap-root.json");
        std::fs::write(&root_file, &repo.bootstrap).unwrap();
        Env {
            home,
            root_file,
            mirror: repo.http.url().to_string(),
        }
    }

    fn aicr(&self) -> Command {
        let mut c = aicr_test_support::tools::aicr();
        c.env("NO_COLOR", "1")
            .env("HOME", self.home.path())
            .env("AICR_TUF_MIRROR", &self.mirror)
            .env("AICR_TUF_ROOT", &self.root_file)
            .args(["trust", "update"]);
        c
    }

    fn cache(&self) -> PathBuf {
        let dir = self.mirror.trim_start_matches("http://");
        self.home.path().join(".sigstore/root").join(dir)
    }

    fn installed(&self) -> Vec<u8> {
        std::fs::read(self.cache().join("targets/trusted_root.json")).unwrap()
    }
}

fn version_of(path: &Path) -> u64 {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

#[test]
fn update_walks_the_root_chain_and_installs_the_verified_target() {
    let mut repo = Repo::new();
    repo.publish_root(Key::new(), &[]);
    let (first, cas, logs) = trusted_root(0);
    repo.publish_target(&first, None, FAR);
    let env = Env::new(&repo);

    env.aicr().assert().success().stdout(format!(
        "  ✓ Trusted root updated\n  CAs: {cas} certificate authorities\n  Logs: {logs} transparency logs\n"
    ));
    assert_eq!(env.installed(), first);
    for file in ["timestamp.json", "snapshot.json", "targets.json"] {
        assert!(env.cache().join(file).is_file(), "{file} cached");
    }
    assert_eq!(
        version_of(&env.cache().join("root.json")),
        2,
        "rotated root adopted"
    );
    let requests = repo.http.requests();
    for path in [
        "/2.root.json",
        "/3.root.json",
        "/timestamp.json",
        "/1.snapshot.json",
        "/1.targets.json",
    ] {
        assert!(requests.iter().any(|r| r == path), "{path} in {requests:?}");
    }
    let mut record = env.cache().into_os_string();
    record.push(".json");
    let record: Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    let at = humantime::parse_rfc3339(record["lastTimestamp"].as_str().unwrap()).unwrap();
    assert!(at.elapsed().unwrap_or_default() < Duration::from_secs(600));

    // A newer target replaces the installed one on the next run.
    let (second, cas, _) = trusted_root(1);
    repo.publish_target(&second, None, FAR);
    env.aicr()
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "CAs: {cas} certificate authorities"
        )));
    assert_eq!(env.installed(), second);
}

#[test]
fn bad_metadata_is_refused_and_the_installed_root_stays() {
    let mut repo = Repo::new();
    let (good, _, _) = trusted_root(0);
    repo.publish_target(&good, None, FAR);
    let env = Env::new(&repo);
    env.aicr().assert().success();
    let refused = |what: &str| {
        env.aicr()
            .assert()
            .code(6)
            .stderr(predicate::str::starts_with(
                "error: failed to update trusted root:",
            ))
            .stderr(predicate::str::contains(what));
        assert_eq!(env.installed(), good, "installed root kept after: {what}");
    };

    // The mirror serves bytes that do not match the signed hash.
    let (newer, _, _) = trusted_root(1);
    repo.publish_target(&newer, Some(b"{\"tlogs\": []}"), FAR);
    refused("integrity");

    // An expired timestamp.
    repo.publish_target(&newer, None, PAST);
    refused("expired");

    // A rollback to an older timestamp than the one already trusted.
    let rolled_back = repo.version - 2;
    let signed = json!({"_type": "timestamp", "spec_version": "1.0.31", "version": rolled_back,
        "expires": FAR, "meta": {"snapshot.json": {"version": rolled_back}}});
    repo.http
        .put("/timestamp.json", sign(signed, &[&repo.online]));
    refused("rollback");

    // A new root signed only by a key the current root does not name.
    repo.publish_target(&newer, None, FAR);
    let stranger = Key::new();
    let next = repo.root_version + 1;
    let signed = repo.root_signed(next, &stranger);
    repo.http
        .put(&format!("/{next}.root.json"), sign(signed, &[&stranger]));
    refused("threshold");
    assert_eq!(
        version_of(&env.cache().join("root.json")),
        1,
        "root not rotated"
    );
}

#[test]
fn bad_settings_and_unreachable_mirrors_fail_clearly() {
    let repo = Repo::new();
    let env = Env::new(&repo);
    env.aicr()
        .env("AICR_TUF_MIRROR", "ftp://mirror.example")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid TUF mirror \"ftp://mirror.example\" (--tuf-mirror, AICR_TUF_MIRROR)",
        ));
    env.aicr()
        .env("AICR_TUF_ROOT", env.home.path().join("missing.json"))
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("cannot read TUF root")
                .and(predicate::str::contains("(--tuf-root, AICR_TUF_ROOT)")),
        );
    // The flags say the same as the variables, and win over them.
    env.aicr()
        .args(["--tuf-mirror", "ftp://flag.example"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid TUF mirror \"ftp://flag.example\"",
        ));
    env.aicr()
        .arg("--tuf-root")
        .arg(env.home.path().join("flag-missing.json"))
        .assert()
        .code(3)
        .stderr(predicate::str::contains("flag-missing.json"));
    let garbage = env.home.path().join("garbage.json");
    std::fs::write(&garbage, "{\"signed\": {\"_type\": \"targets\"}}").unwrap();
    env.aicr()
        .env("AICR_TUF_ROOT", &garbage)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a TUF root.json"));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    env.aicr()
        .env("AICR_TUF_MIRROR", &url)
        .env_remove("AICR_TUF_ROOT")
        .assert()
        .code(6)
        .stderr(predicate::str::contains("failed to update trusted root"));
    assert!(
        !env.home
            .path()
            .join(".sigstore/root")
            .join(url.trim_start_matches("http://"))
            .join("targets")
            .exists(),
        "no target written for an unreachable mirror"
    );
}

#[test]
fn a_mirror_that_never_answers_times_out() {
    let repo = Repo::new();
    repo.http.go_silent();
    let env = Env::new(&repo);
    let started = std::time::Instant::now();
    env.aicr()
        .timeout(Duration::from_secs(120))
        .assert()
        .code(5)
        .stderr(predicate::str::contains("did not complete within 30s"));
    assert!(started.elapsed() >= Duration::from_secs(29));
}
