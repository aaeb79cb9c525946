//! http(s) sources (`--snapshot URL`, `--config URL`, `--criteria URL`)
//! against a local HTTP server: success, non-200 answers, oversized bodies.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;

use assert_cmd::Command;
use predicates::prelude::*;

/// Serve canned answers by path on 127.0.0.1 until the test ends.
fn serve(routes: Vec<(&'static str, u16, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((404, b"not found".to_vec()));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

fn aicr() -> Command {
    let mut c = Command::cargo_bin("aicr").unwrap();
    c.env("NO_COLOR", "1");
    c
}

#[test]
fn snapshot_config_and_criteria_over_http() {
    let snapshot = b"kind: Snapshot\nmeasurements:\n  - type: OS\n    subtypes:\n      - subtype: release\n        data: {ID: ubuntu}\n".to_vec();
    let config = b"kind: AICRConfig\napiVersion: aicr.nvidia.com/v1alpha1\nspec:\n  recipe:\n    criteria: {service: kind}\n".to_vec();
    let criteria = br#"{"kind": "RecipeCriteria", "spec": {"service": "aks"}}"#.to_vec();
    let base = serve(vec![
        ("/snap.yaml", 200, snapshot),
        ("/cfg.yaml", 200, config),
        ("/c.json", 200, criteria),
        ("/broken.yaml", 500, b"oops".to_vec()),
        ("/huge.yaml", 200, vec![b'#'; 10 * 1024 * 1024 + 1]),
    ]);
    aicr()
        .args([
            "query",
            "--selector",
            "criteria.os",
            "--snapshot",
            &format!("{base}/snap.yaml"),
        ])
        .assert()
        .success()
        .stdout("ubuntu\n");
    aicr()
        .args([
            "query",
            "--selector",
            "criteria.service",
            "--config",
            &format!("{base}/cfg.yaml"),
        ])
        .assert()
        .success()
        .stdout("kind\n");
    aicr()
        .args([
            "query",
            "--selector",
            "criteria.service",
            "-c",
            &format!("{base}/c.json"),
        ])
        .assert()
        .success()
        .stdout("aks\n");
    aicr()
        .args(["recipe", "--snapshot", &format!("{base}/missing.yaml")])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("unexpected HTTP status 404"));
    aicr()
        .args(["recipe", "--snapshot", &format!("{base}/broken.yaml")])
        .assert()
        .code(8)
        .stderr(predicate::str::contains("unexpected HTTP status 500"));
    aicr()
        .args(["recipe", "--config", &format!("{base}/huge.yaml")])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("larger than"));
}
