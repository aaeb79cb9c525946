//! `aicr bundle --attest` and `aicr verify` against a virtual Sigstore: a
//! local CA acting as Fulcio and a local log key acting as Rekor, served on
//! loopback HTTP; each test writes its trusted root into its own HOME. No
//! test touches the public Sigstore services.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aicr::attest::{self, sign::Attester, sign::Keyless, statement};
use aicr::bundle::checksums::sha256_hex;
use assert_cmd::Command;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use predicates::str::contains;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DistinguishedName,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SubjectPublicKeyInfo,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

const GH_ISSUER: &str = "https://token.actions.githubusercontent.com";
const CREATOR: &str = "ci@example.com";

/// The fake Fulcio + Rekor and the keys behind them.
struct Sigstore {
    url: String,
    /// Intermediate then root, DER.
    ca_chain: Vec<Vec<u8>>,
    log_spki: Vec<u8>,
}

struct Keys {
    url: String,
    /// Device-flow token polls so far: the first is told to wait.
    polls: AtomicUsize,
    inter: CertifiedIssuer<'static, KeyPair>,
    root_pem: String,
    log: EcdsaKeyPair,
    log_id: Vec<u8>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn ca(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// A self-signed root and an intermediate under it.
fn make_ca(
    name: &str,
) -> (
    CertifiedIssuer<'static, KeyPair>,
    CertifiedIssuer<'static, KeyPair>,
) {
    let root = CertifiedIssuer::self_signed(ca(name), KeyPair::generate().unwrap()).unwrap();
    let inter = CertifiedIssuer::signed_by(
        ca(&format!("{name} intermediate")),
        KeyPair::generate().unwrap(),
        &root,
    )
    .unwrap();
    (root, inter)
}

fn der_utf8(s: &str) -> Vec<u8> {
    assert!(s.len() < 128);
    let mut v = vec![0x0c, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn email_token(email: &str, expired: bool) -> String {
    jwt(json!({"iss": "https://issuer.test", "sub": "u1", "email": email, "expired": expired}))
}

fn release_token(tag_ref: &str) -> String {
    jwt(json!({
        "iss": GH_ISSUER,
        "sub": format!("repo:{}:ref:{tag_ref}", attest::identity::RELEASE_REPOSITORY),
        "job_workflow_ref": format!(
            "{}/.github/workflows/{}@{tag_ref}",
            attest::identity::RELEASE_REPOSITORY,
            attest::identity::RELEASE_WORKFLOW
        ),
    }))
}

/// Fulcio: certify the posted key for the token's identity.
fn fulcio(keys: &Keys, req: &Value) -> Value {
    let claims = claims_of(req["credentials"]["oidcIdentityToken"].as_str().unwrap());
    let pem = req["publicKeyRequest"]["publicKey"]["content"]
        .as_str()
        .unwrap();
    let spki = SubjectPublicKeyInfo::from_pem(pem).unwrap();
    let iss = claims["iss"].as_str().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![if iss == GH_ISSUER {
        let uri = format!(
            "https://github.com/{}",
            claims["job_workflow_ref"].as_str().unwrap()
        );
        SanType::URI(uri.try_into().unwrap())
    } else {
        SanType::Rfc822Name(claims["email"].as_str().unwrap().try_into().unwrap())
    }];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    p.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
        der_utf8(iss),
    )];
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let (from, to) = if claims["expired"] == true {
        (now() - 1800, now() - 1200)
    } else {
        (now() - 60, now() + 600)
    };
    p.not_before = epoch + Duration::from_secs(from);
    p.not_after = epoch + Duration::from_secs(to);
    let leaf = p.signed_by(&spki, &keys.inter).unwrap();
    json!({"signedCertificateEmbeddedSct": {"chain": {"certificates": [
        leaf.pem(), keys.inter.pem(), keys.root_pem,
    ]}}})
}

/// Rekor: a one-entry log whose root is the entry's leaf hash.
fn rekor(keys: &Keys, req: &Value) -> Value {
    let content = &req["spec"]["proposedContent"];
    let envelope: Value = serde_json::from_str(content["envelope"].as_str().unwrap()).unwrap();
    let payload = STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let body = json!({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "envelopeHash": {"algorithm": "sha256", "value": sha256_hex(content["envelope"].as_str().unwrap().as_bytes())},
        "payloadHash": {"algorithm": "sha256", "value": sha256_hex(&payload)},
        "signatures": [{"signature": envelope["signatures"][0]["sig"], "verifier": content["verifiers"][0]}],
    }});
    let body_b64 = STANDARD.encode(body.to_string());
    let rng = SystemRandom::new();
    let sign = |m: &[u8]| keys.log.sign(&rng, m).unwrap().as_ref().to_vec();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let time = now();
    let log_id = hex(&keys.log_id);
    let set = sign(
        format!(
            "{{\"body\":\"{body_b64}\",\"integratedTime\":{time},\"logID\":\"{log_id}\",\"logIndex\":7}}"
        )
        .as_bytes(),
    );
    let mut leaf = vec![0u8];
    leaf.extend_from_slice(&STANDARD.decode(&body_b64).unwrap());
    let root_hex = sha256_hex(&leaf);
    let root: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&root_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let note = format!("rekor.test - 1\n1\n{}\n", STANDARD.encode(&root));
    let mut sig = keys.log_id[..4].to_vec();
    sig.extend(sign(note.as_bytes()));
    let checkpoint = format!("{note}\n— rekor.test {}\n", STANDARD.encode(sig));
    json!({"00ab": {
        "body": body_b64, "integratedTime": time, "logID": log_id, "logIndex": 7,
        "verification": {
            "signedEntryTimestamp": STANDARD.encode(set),
            "inclusionProof": {"checkpoint": checkpoint, "hashes": [], "logIndex": 0,
                "rootHash": root_hex, "treeSize": 1},
        },
    }})
}

fn serve(keys: &Keys, mut s: TcpStream) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let mut len = 0;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        let h = h.trim().to_ascii_lowercase();
        if let Some(v) = h.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        headers.push(h);
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let form = String::from_utf8_lossy(&body);
    let url = &keys.url;
    let (status, answer) = if line.contains("/api/v2/signingCert") {
        (201, fulcio(keys, &req))
    } else if line.contains("/api/v1/log/entries") {
        (201, rekor(keys, &req))
    } else if line.starts_with("GET /gha-token?audience=sigstore ")
        && headers
            .iter()
            .any(|h| h == "authorization: bearer req-token")
    {
        (200, json!({"value": email_token("gha@example.com", false)}))
    } else if line.starts_with("GET /.well-known/openid-configuration ") {
        (
            200,
            json!({"device_authorization_endpoint": format!("{url}/device"), "token_endpoint": format!("{url}/token")}),
        )
    } else if line.starts_with("POST /device ") && form.contains("client_id=sigstore") {
        (
            200,
            json!({"device_code": "dc-1", "user_code": "ABCD-EFGH", "verification_uri": format!("{url}/activate"), "interval": 1, "expires_in": 300}),
        )
    } else if line.starts_with("POST /token ") && form.contains("device_code=dc-1") {
        if keys.polls.fetch_add(1, Ordering::SeqCst) == 0 {
            (400, json!({"error": "authorization_pending"}))
        } else {
            (
                200,
                json!({"id_token": email_token("device@example.com", false)}),
            )
        }
    } else {
        (404, json!({}))
    };
    let text = answer.to_string();
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn sigstore() -> &'static Sigstore {
    static S: OnceLock<Sigstore> = OnceLock::new();
    S.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (root, inter) = make_ca("Test Fulcio");
        let log_kp = KeyPair::generate().unwrap();
        let log_spki = rcgen::PublicKeyData::subject_public_key_info(&log_kp);
        let keys = Arc::new(Keys {
            root_pem: root.pem(),
            log: EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_ASN1_SIGNING,
                &log_kp.serialize_der(),
                &SystemRandom::new(),
            )
            .unwrap(),
            log_id: hex_bytes(&sha256_hex(&log_spki)),
            inter,
            url: url.clone(),
            polls: AtomicUsize::new(0),
        });
        let ca_chain = vec![keys.inter.der().to_vec(), root.der().to_vec()];
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let k = keys.clone();
                std::thread::spawn(move || serve(&k, s));
            }
        });
        Sigstore {
            url,
            ca_chain,
            log_spki,
        }
    })
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn trusted_root_json(ca_chain: &[Vec<u8>], log_spki: &[u8]) -> String {
    json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{"baseUrl": "http://rekor.test", "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": STANDARD.encode(log_spki), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": "2000-01-01T00:00:00Z"}},
            "logId": {"keyId": STANDARD.encode(hex_bytes(&sha256_hex(log_spki)))}}],
        "certificateAuthorities": [{"subject": {"organization": "test", "commonName": "test"},
            "uri": "http://fulcio.test",
            "certChain": {"certificates": ca_chain.iter().map(|c| json!({"rawBytes": STANDARD.encode(c)})).collect::<Vec<_>>()},
            "validFor": {"start": "2000-01-01T00:00:00Z"}}],
    })
    .to_string()
}

/// A HOME holding a trusted root: the test CA, or an unrelated one (stale).
fn home(stale: bool) -> tempfile::TempDir {
    let s = sigstore();
    let h = tempfile::tempdir().unwrap();
    let dir = h
        .path()
        .join(".sigstore/root/tuf-repo-cdn.sigstore.dev/targets");
    std::fs::create_dir_all(&dir).unwrap();
    let chain = if stale {
        let (root, inter) = make_ca("Rotated Fulcio");
        vec![inter.der().to_vec(), root.der().to_vec()]
    } else {
        s.ca_chain.clone()
    };
    std::fs::write(
        dir.join("trusted_root.json"),
        trusted_root_json(&chain, &s.log_spki),
    )
    .unwrap();
    h
}

fn signer(token: &str) -> Keyless {
    Keyless::new(token.to_string(), &sigstore().url, &sigstore().url).unwrap()
}

/// A release attestation for `exe`, as the release workflow would make it.
fn binary_attestation(exe: &Path, tag_ref: &str) -> String {
    let digest = sha256_hex(&std::fs::read(exe).unwrap());
    let st = json!({"_type": statement::STATEMENT_TYPE,
        "subject": [{"name": "aicr", "digest": {"sha256": digest}}],
        "predicateType": statement::SLSA_PROVENANCE_V1, "predicate": {}});
    signer(&release_token(tag_ref)).attest(&st).unwrap()
}

/// The aicr binary linked into its own directory with a release
/// attestation beside it; the cargo-built binary stays without one.
fn released_aicr() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        // A fixed place, replaced each run, so old binaries do not pile up.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("released-aicr");
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("aicr");
        let built = assert_cmd::cargo::cargo_bin("aicr");
        let _ = std::fs::remove_file(&exe);
        if std::fs::hard_link(&built, &exe).is_err() {
            std::fs::copy(&built, &exe).unwrap();
        }
        std::fs::write(
            attest::binary_attestation_path(&exe),
            binary_attestation(&exe, "refs/tags/v0.1.0"),
        )
        .unwrap();
        exe
    })
}

fn aicr(exe: &Path, home: &Path) -> Command {
    let mut c = Command::new(exe);
    c.env("HOME", home)
        .env("AICR_FULCIO_URL", &sigstore().url)
        .env("AICR_REKOR_URL", &sigstore().url)
        .env("NO_COLOR", "1")
        .env_remove("COSIGN_IDENTITY_TOKEN")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .env_remove("AICR_OIDC_DEVICE_FLOW");
    c
}

fn recipe(dir: &Path) -> PathBuf {
    let p = dir.join("recipe.yaml");
    aicr_test_support::tools::aicr()
        .args(["recipe", "--service", "eks", "--accelerator", "h100"])
        .args(["--intent", "training", "--os", "ubuntu", "-o"])
        .arg(&p)
        .assert()
        .success();
    p
}

/// `bundle --attest` into `<tmp>/out` with an email identity.
fn attested_bundle(home: &Path, t: &Path, expired: bool) -> PathBuf {
    let out = t.join("out");
    aicr(released_aicr(), home)
        .arg("bundle")
        .arg("-r")
        .arg(recipe(t))
        .arg("-o")
        .arg(&out)
        .arg("--attest")
        .env("COSIGN_IDENTITY_TOKEN", email_token(CREATOR, expired))
        .assert()
        .success();
    out
}

fn verify_json(home: &Path, dir: &Path, extra: &[&str], code: i32) -> Value {
    let out = aicr(released_aicr(), home)
        .arg("verify")
        .arg(dir)
        .args(["--format", "json"])
        .args(extra)
        .assert()
        .code(code)
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn attested_bundle_verifies_and_policies_apply() {
    let h = home(false);
    let t = tempfile::tempdir().unwrap();
    let out = attested_bundle(h.path(), t.path(), false);
    for f in [attest::BUNDLE_ATTESTATION, attest::BINARY_ATTESTATION_COPY] {
        let meta = std::fs::metadata(out.join(f)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        // Signed statements are public: the user's umask decides.
        assert_eq!(
            meta.permissions().mode() & 0o777,
            aicr::sink::under_umask(0o644),
            "{f}"
        );
    }
    let copy = std::fs::read(out.join(attest::BINARY_ATTESTATION_COPY)).unwrap();
    assert_eq!(
        copy,
        std::fs::read(attest::binary_attestation_path(released_aicr())).unwrap()
    );
    let signed: Value =
        serde_json::from_slice(&std::fs::read(out.join(attest::BUNDLE_ATTESTATION)).unwrap())
            .unwrap();
    assert_eq!(
        signed["mediaType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    let st: Value = serde_json::from_slice(
        &STANDARD
            .decode(signed["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(st["subject"][0]["name"], "checksums.txt");
    assert_eq!(
        st["subject"][0]["digest"]["sha256"],
        sha256_hex(&std::fs::read(out.join("checksums.txt")).unwrap())
    );
    assert_eq!(st["predicate"]["runDetails"]["builder"]["id"], CREATOR);

    let v = verify_json(h.path(), &out, &[], 0);
    assert_eq!(v["trustLevel"], "verified");
    assert_eq!(v["bundleCreator"], CREATOR);
    assert_eq!(v["identityPinned"], true);
    assert_eq!(v["toolVersion"], aicr::VERSION);
    assert!(
        v["binaryBuilder"]
            .as_str()
            .unwrap()
            .ends_with("@refs/tags/v0.1.0")
    );
    aicr(released_aicr(), h.path())
        .arg("verify")
        .arg(&out)
        .args([
            "--min-trust-level",
            "verified",
            "--require-creator",
            CREATOR,
        ])
        .args(["--cli-version-constraint", "0.1"])
        .assert()
        .success()
        .stdout(contains("✓ Bundle attested by: ci@example.com"))
        .stdout(contains("✓ Identity pinned to release CI"))
        .stdout(contains("Trust level: verified"));
    aicr(released_aicr(), h.path())
        .arg("verify")
        .arg(&out)
        .args(["--require-creator", "mallory@example.com"])
        .assert()
        .code(2)
        .stdout(contains(
            "bundle creator \"ci@example.com\" does not match required \"mallory@example.com\"",
        ));
    aicr(released_aicr(), h.path())
        .arg("verify")
        .arg(&out)
        .args(["--cli-version-constraint", ">= v9.0.0"])
        .assert()
        .code(2)
        .stdout(contains("does not satisfy constraint \">= 9.0.0\""));
    aicr(released_aicr(), h.path())
        .arg("verify")
        .arg(&out)
        .args(["--cli-version-constraint", ">= what"])
        .assert()
        .code(2)
        .stderr(contains("invalid --cli-version-constraint"));

    // External data caps the level at attested, which the default policy accepts.
    std::fs::create_dir(out.join("data")).unwrap();
    let v = verify_json(h.path(), &out, &[], 0);
    assert_eq!(v["trustLevel"], "attested");
    std::fs::remove_dir(out.join("data")).unwrap();

    // A tampered file: unknown, exit 4.
    let victim = std::fs::read_to_string(out.join("checksums.txt")).unwrap();
    let rel = victim.lines().next().unwrap().split_once("  ").unwrap().1;
    std::fs::write(out.join(rel), "tampered\n").unwrap();
    let v = verify_json(h.path(), &out, &[], 4);
    assert_eq!(v["trustLevel"], "unknown");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("checksum mismatch")
    );
}

#[test]
fn wrong_identities_expired_certificates_and_stale_roots() {
    let h = home(false);
    let t = tempfile::tempdir().unwrap();
    let out = attested_bundle(h.path(), t.path(), false);

    // A failed attestation is below what the bundle could reach: the
    // default `max` policy fails (exit 2) after printing the report.
    // A stale local root lacks the CA: unknown, with the refresh hint. So
    // does the production root built into the binary, used when nothing is
    // cached (nothing is fetched): it does not know the test Sigstore.
    let stale = home(true);
    let bare = tempfile::tempdir().unwrap();
    for h in [stale.path(), bare.path()] {
        let v = verify_json(h, &out, &[], 2);
        assert_eq!(v["trustLevel"], "unknown");
        assert!(
            v["errors"][0]
                .as_str()
                .unwrap()
                .contains("run `aicr trust update`"),
            "{v}"
        );
    }

    // A binary attestation from a branch build is not the release identity.
    let exe = released_aicr();
    std::fs::write(
        out.join(attest::BINARY_ATTESTATION_COPY),
        binary_attestation(exe, "refs/heads/main"),
    )
    .unwrap();
    let v = verify_json(h.path(), &out, &[], 2);
    assert_eq!(v["trustLevel"], "attested");
    assert_eq!(v["binaryAttested"], false);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("binary attestation verification failed: certificate identity"),
        "{v}"
    );
    // With the policy lowered to what was proven, the error still exits 4.
    aicr(exe, h.path())
        .arg("verify")
        .arg(&out)
        .args(["--min-trust-level", "attested"])
        .assert()
        .code(4)
        .stderr(contains(
            "bundle verification failed: binary attestation verification failed",
        ));
    // An identity override must name this project's repository.
    aicr(exe, h.path())
        .arg("verify")
        .arg(&out)
        .args([
            "--certificate-identity-regexp",
            "^https://github\\.com/evil/",
        ])
        .assert()
        .code(2)
        .stderr(contains("invalid --certificate-identity-regexp"));

    // Malformed sigstore bundle JSON: unknown, one-line error.
    std::fs::write(out.join(attest::BUNDLE_ATTESTATION), "{\"mediaType\": ").unwrap();
    let v = verify_json(h.path(), &out, &[], 2);
    assert_eq!(v["trustLevel"], "unknown");
    let e = v["errors"][0].as_str().unwrap();
    assert!(
        e.starts_with("bundle attestation verification failed: malformed sigstore bundle JSON"),
        "{e}"
    );
    assert!(!e.contains('\n'));

    // A certificate that had expired when the entry was logged.
    let t2 = tempfile::tempdir().unwrap();
    let expired = attested_bundle(h.path(), t2.path(), true);
    let v = verify_json(h.path(), &expired, &[], 2);
    assert_eq!(v["trustLevel"], "unknown");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("not valid when the signature was logged"),
        "{v}"
    );
}

#[test]
fn attest_fails_early_and_writes_nothing() {
    let h = home(false);
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path());
    let out = t.path().join("out");
    let bundle = |exe: &Path, home: &Path| {
        let mut c = aicr(exe, home);
        c.arg("bundle").arg("-r").arg(&r).arg("-o").arg(&out);
        c.arg("--attest");
        c
    };

    // The cargo-built binary has no attestation beside it.
    bundle(&assert_cmd::cargo::cargo_bin("aicr"), h.path())
        .env("COSIGN_IDENTITY_TOKEN", email_token(CREATOR, false))
        .assert()
        .code(3)
        .stderr(contains("binary attestation not found at"));
    assert!(!out.exists());

    bundle(released_aicr(), h.path())
        .assert()
        .code(6)
        .stderr(contains("no OIDC identity token available"));
    assert!(!out.exists());

    // Against a stale root the binary's own attestation does not verify.
    let stale = home(true);
    bundle(released_aicr(), stale.path())
        .env("COSIGN_IDENTITY_TOKEN", email_token(CREATOR, false))
        .assert()
        .code(4)
        .stderr(contains("only release-built binaries can attest bundles"));
    assert!(!out.exists());

    // Fulcio unreachable.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    bundle(released_aicr(), h.path())
        .env("COSIGN_IDENTITY_TOKEN", email_token(CREATOR, false))
        .env("AICR_FULCIO_URL", &dead)
        .assert()
        .code(6)
        .stderr(contains("Fulcio"));
    assert!(!out.exists());

    bundle(released_aicr(), h.path())
        .args(["--certificate-identity-regexp", "^https://example\\.com/"])
        .assert()
        .code(2)
        .stderr(contains("invalid --certificate-identity-regexp"));

    // Missing checksums.txt in a directory handed to verify.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let v = verify_json(h.path(), &empty, &[], 4);
    assert_eq!(v["trustLevel"], "unknown");
    assert_eq!(v["errors"][0], "checksums.txt not found");
}

#[test]
fn corrupting_the_attestation_never_raises_the_level() {
    use aicr::attest::trust_root;
    use aicr::attest::verifier::Offline;
    use aicr::bundle::verify::{Checks, TrustLevel, inspect};
    use proptest::prelude::*;

    let h = home(false);
    let t = tempfile::tempdir().unwrap();
    let out = attested_bundle(h.path(), t.path(), false);
    let root =
        trust_root::parse(trusted_root_json(&sigstore().ca_chain, &sigstore().log_spki).as_bytes())
            .unwrap();
    let verifier = Offline(&root);
    let checks = Checks {
        verifier: &verifier,
        binary_identity: attest::identity::Policy::release(None).unwrap(),
    };
    assert_eq!(
        inspect(&out, &checks).unwrap().trust_level,
        TrustLevel::Verified
    );
    let original = std::fs::read(out.join(attest::BUNDLE_ATTESTATION)).unwrap();
    let n = original.len();
    proptest!(ProptestConfig::with_cases(64), |(pos in 0..n, byte in any::<u8>())| {
        let mut b = original.clone();
        b[pos] = byte;
        std::fs::write(out.join(attest::BUNDLE_ATTESTATION), &b).unwrap();
        let o = inspect(&out, &checks).unwrap();
        if o.trust_level >= TrustLevel::Attested {
            // Only edits that leave the signed content intact may pass.
            let a: Value = serde_json::from_slice(&b).unwrap();
            let z: Value = serde_json::from_slice(&original).unwrap();
            prop_assert_eq!(&a["dsseEnvelope"], &z["dsseEnvelope"]);
            prop_assert_eq!(
                &a["verificationMaterial"]["certificate"],
                &z["verificationMaterial"]["certificate"]
            );
        } else {
            prop_assert_eq!(o.trust_level, TrustLevel::Unknown);
        }
    });
}

/// The signer identity a token source produced, read back through verify.
fn creator_via(env: &[(&str, String)], extra: &[&str]) -> (String, String) {
    let h = home(false);
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let mut c = aicr(released_aicr(), h.path());
    c.arg("bundle")
        .arg("-r")
        .arg(recipe(t.path()))
        .arg("-o")
        .arg(&out)
        .arg("--attest")
        .args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let stderr = String::from_utf8(c.assert().success().get_output().stderr.clone()).unwrap();
    let v = verify_json(h.path(), &out, &[], 0);
    (v["bundleCreator"].as_str().unwrap().to_string(), stderr)
}

#[test]
fn github_actions_and_device_flow_token_sources() {
    let url = &sigstore().url;
    let (who, _) = creator_via(
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{url}/gha-token")),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "req-token".into()),
        ],
        &[],
    );
    assert_eq!(who, "gha@example.com");

    let (who, stderr) = creator_via(
        &[("AICR_OIDC_ISSUER", url.clone())],
        &["--oidc-device-flow"],
    );
    assert_eq!(who, "device@example.com");
    assert!(stderr.contains("enter the code ABCD-EFGH"), "{stderr}");
    assert!(!stderr.contains(&email_token("device@example.com", false)));

    // An explicit token wins over the ambient one.
    let (who, _) = creator_via(
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{url}/gha-token")),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "req-token".into()),
        ],
        &["--identity-token", &email_token("flag@example.com", false)],
    );
    assert_eq!(who, "flag@example.com");
}
