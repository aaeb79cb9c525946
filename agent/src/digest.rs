//! Turning measurements into the wire's per-subtype states: each
//! `{Type}.{Subtype}` becomes its canonical JSON and a SHA-256 digest of
//! exactly those bytes. Owns the encoding and the digest only; which states
//! are sent, and when, is the session's business.
//!
//! The JSON is canonical because [`Subtype`] serialises its fields in a
//! fixed order and keeps `data` and `context` in `BTreeMap`s: equal
//! readings always give equal bytes, whatever order a collector found them
//! in, so an unchanged subtype never looks changed.

use std::collections::BTreeMap;
use std::fmt::Write;

use aicr::model::snapshot::{Measurement, Subtype};
use aicr::proto::SubtypeState;
use sha2::{Digest, Sha256};

/// The key the aggregator and the proto use for one subtype, e.g.
/// `OS.release`; also what `SubtypeUpdate.removed` lists.
pub fn scope(kind: &str, subtype: &str) -> String {
    format!("{kind}.{subtype}")
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(hash.len() * 2);
    for b in hash {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// One subtype as it travels: canonical JSON plus its digest.
pub fn state(kind: &str, subtype: &Subtype) -> SubtypeState {
    // A Subtype holds only strings, numbers, booleans and string-keyed
    // maps, which serde_json always encodes.
    let json = serde_json::to_vec(subtype).expect("a Subtype encodes as JSON");
    SubtypeState {
        r#type: kind.to_string(),
        subtype: subtype.subtype.clone(),
        digest: digest(&json),
        subtype_json: json,
    }
}

/// Every subtype of `measurements`, keyed by scope. A scope reported twice
/// keeps the last report, as the aggregator would.
pub fn states(measurements: &[Measurement]) -> BTreeMap<String, SubtypeState> {
    measurements
        .iter()
        .flat_map(|m| m.subtypes.iter().map(move |s| (m.kind.as_str(), s)))
        .map(|(kind, s)| (scope(kind, &s.subtype), state(kind, s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicr::model::snapshot::Reading;

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn equal_readings_give_equal_bytes_whatever_the_insertion_order() {
        let a = Subtype::new("release")
            .with("ID", "ubuntu")
            .with("VERSION_ID", "24.04")
            .with("count", 3i64);
        let mut b = Subtype::new("release");
        b.data.insert("count".into(), Reading::Int(3));
        b.data.insert("VERSION_ID".into(), "24.04".into());
        b.data.insert("ID".into(), "ubuntu".into());
        let (sa, sb) = (state("OS", &a), state("OS", &b));
        assert_eq!(sa.subtype_json, sb.subtype_json);
        assert_eq!(sa.digest, sb.digest);
        assert_eq!(sa.digest, digest(&sa.subtype_json));
        assert_eq!(
            String::from_utf8(sa.subtype_json).unwrap(),
            r#"{"subtype":"release","data":{"ID":"ubuntu","VERSION_ID":"24.04","count":3}}"#
        );
    }

    #[test]
    fn any_change_changes_the_digest() {
        let base = Subtype::new("release").with("VERSION_ID", "24.04");
        let d = state("OS", &base).digest;
        assert_ne!(
            d,
            state("OS", &base.clone().with("VERSION_ID", "22.04")).digest
        );
        assert_ne!(d, state("OS", &base.clone().with("x", "")).digest);
        assert_ne!(
            state("OS", &base.clone().with("n", 1i64)).digest,
            state("OS", &base.clone().with("n", "1")).digest,
            "a number and its text are different readings"
        );
    }

    #[test]
    fn states_are_keyed_by_scope() {
        let ms = vec![
            Measurement {
                kind: "OS".into(),
                subtypes: vec![Subtype::new("release"), Subtype::new("grub")],
            },
            Measurement {
                kind: "GPU".into(),
                subtypes: vec![Subtype::new("smi")],
            },
        ];
        let keys: Vec<String> = states(&ms).into_keys().collect();
        assert_eq!(keys, ["GPU.smi", "OS.grub", "OS.release"]);
    }
}
