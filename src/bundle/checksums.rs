//! `checksums.txt`: building it over a bundle's files and verifying a
//! bundle directory against it (`sha256sum -c` compatible). Owns the line
//! format and the path-safety rule for entries; trust levels are `verify`'s.

#[cfg(feature = "trust")]
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

/// The file name at the bundle root.
pub const FILE: &str = "checksums.txt";

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes).into())
}

/// Lower-case hex of a digest.
fn hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Whether a bundle-relative path is covered (everything but the
/// checksum file itself and attestations, which are written after it).
pub(crate) fn covered(path: &str) -> bool {
    path != FILE && !path.starts_with("attestation/")
}

/// `<hex>  <path>\n` per file, sorted by path (byte order).
#[cfg(test)]
pub(crate) fn render<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    render_with(files, |_| None)
}

/// `<hex>  <path>\n` per file, sorted by path (byte order), taking the SHA-256 of content `known` already knows (bytes
/// identical to an embedded catalog file, hashed at build time) instead
/// of hashing it again.
pub(crate) fn render_with<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    known: impl Fn(&[u8]) -> Option<[u8; 32]>,
) -> String {
    let mut rows: Vec<(&str, String)> = files
        .into_iter()
        .filter(|(p, _)| covered(p))
        .map(|(p, b)| match known(b) {
            Some(d) => (p, hex(&d)),
            None => (p, sha256_hex(b)),
        })
        .collect();
    rows.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    rows.iter().map(|(p, h)| format!("{h}  {p}\n")).collect()
}

/// Result of checking a directory against its checksum file's text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Non-blank lines.
    pub files: usize,
    /// Every problem, in file order.
    pub errors: Vec<String>,
}

/// A checksum entry must stay inside the bundle: relative, no `..`.
#[cfg(feature = "trust")]
fn safe(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Check every entry of `text` against files under `dir`; problems are
/// collected, not fail-fast. Only `aicr verify` checks a bundle's sums.
#[cfg(feature = "trust")]
pub(crate) fn verify(dir: &Path, text: &str) -> Report {
    let mut r = Report::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        r.files += 1;
        let Some((hex, rel)) = line.split_once("  ") else {
            r.errors.push(format!("invalid checksum line: {line}"));
            continue;
        };
        if !safe(rel) {
            r.errors
                .push(format!("path traversal detected in checksum entry: {rel}"));
            continue;
        }
        let path = dir.join(rel);
        // A symlink could point outside the bundle; refuse to follow it.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            r.errors
                .push(format!("path traversal detected in checksum entry: {rel}"));
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                let got = sha256_hex(&bytes);
                if !got.eq_ignore_ascii_case(hex.trim()) {
                    r.errors.push(format!(
                        "checksum mismatch: {rel} (expected {}, got {got})",
                        hex.trim()
                    ));
                }
            }
            Err(e) => r.errors.push(format!("failed to read {rel}: {e}")),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sorted_two_space_lines_without_itself() {
        let text = render([
            ("b.txt", b"b".as_slice()),
            ("A.txt", b"a".as_slice()),
            (FILE, b"x".as_slice()),
            ("attestation/x.json", b"x".as_slice()),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("  A.txt"));
        assert_eq!(
            lines[1],
            "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d  b.txt"
        );
    }

    #[test]
    #[cfg(feature = "trust")]
    fn verify_collects_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok"), "ok").unwrap();
        std::fs::write(dir.path().join("bad"), "tampered").unwrap();
        let text = format!(
            "{}  ok\n\n{}  bad\nnot-a-line\n{}  ../etc/passwd\n{}  missing\n",
            sha256_hex(b"ok"),
            sha256_hex(b"bad"),
            sha256_hex(b""),
            sha256_hex(b"")
        );
        let r = verify(dir.path(), &text);
        assert_eq!(r.files, 5);
        assert_eq!(r.errors.len(), 4, "{:?}", r.errors);
        assert!(r.errors[0].starts_with("checksum mismatch: bad (expected "));
        assert_eq!(r.errors[1], "invalid checksum line: not-a-line");
        assert_eq!(
            r.errors[2],
            "path traversal detected in checksum entry: ../etc/passwd"
        );
        assert!(r.errors[3].starts_with("failed to read missing: "));
    }
}
