//! The SystemD measurement: every property of selected units, read over
//! systemd's private peer-to-peer D-Bus socket (not the system bus, which a
//! pod usually cannot reach). It only reads properties; it never starts,
//! stops or reloads units.
//!
//! Values keep the types upstream gives them so snapshots compare equal:
//! 64-bit integers stay integers, narrower ones become decimal strings, and
//! containers become Go `%v` text.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;

use aicr::model::snapshot::{Measurement, Reading, Subtype};
use zbus::{Connection, Variant, connection::Builder};

use super::Root;

pub const TYPE: &str = "SystemD";

/// The units a snapshot describes, in subtype order.
pub const DEFAULT_UNITS: [&str; 3] = ["containerd.service", "docker.service", "kubelet.service"];

/// systemd's private socket, relative to the host root.
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";

pub const DESTINATION: &str = "org.freedesktop.systemd1";
pub const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit/";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// Properties upstream leaves out: credentials may hold secrets, the rest
/// are noisy or identify the unit redundantly.
const DROPPED: [&str; 6] = [
    "AllowedCPUs",
    "AllowedMemoryNodes",
    "Asserts",
    "BPFProgram",
    "BusName",
    "Id",
];

/// One subtype per unit that answered. Without a D-Bus connection the
/// measurement has no subtypes; a unit whose query fails is left out.
pub async fn collect(root: &Root, units: &[&str]) -> Measurement {
    let mut m = Measurement {
        kind: TYPE.into(),
        subtypes: Vec::new(),
    };
    let conn = match connect(root).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "D-Bus not available - no systemd data will be collected");
            return m;
        }
    };
    for unit in units {
        match unit_properties(&conn, unit).await {
            Ok(data) => m.subtypes.push(Subtype {
                subtype: (*unit).to_string(),
                data,
                ..Default::default()
            }),
            Err(e) => tracing::warn!(unit, error = %e, "failed to get unit properties - skipping"),
        }
    }
    m
}

/// A peer-to-peer connection to systemd's private socket under `root`.
pub async fn connect(root: &Root) -> zbus::Result<Connection> {
    let stream = tokio::net::UnixStream::connect(root.join(PRIVATE_SOCKET)).await?;
    // systemd's private socket speaks D-Bus without a bus daemon: no Hello.
    Builder::unix_stream(stream.into_std()?).p2p().build().await
}

async fn unit_properties(conn: &Connection, unit: &str) -> zbus::Result<BTreeMap<String, Reading>> {
    let path = format!("{UNIT_PATH_PREFIX}{}", escape_unit(unit));
    // An empty interface name asks for the properties of all the unit's
    // interfaces (Unit, Service, ...) merged.
    let reply = conn
        .call_method(Some(DESTINATION), path, Some(PROPERTIES), "GetAll", &"")
        .await?;
    let body = reply.body();
    let props: BTreeMap<&str, Variant<'_>> = body.deserialize()?;
    Ok(props
        .into_iter()
        .filter(|(k, _)| !dropped(k))
        .map(|(k, v)| (k.to_string(), reading(&v)))
        .collect())
}

fn dropped(key: &str) -> bool {
    DROPPED.contains(&key) || key.contains("Credential")
}

/// systemd's object-path label escaping: bytes outside `[A-Za-z0-9]`, and a
/// leading digit, become `_` and two lowercase hex digits.
pub fn escape_unit(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The reading a property value becomes (see the module docs).
pub fn reading(v: &Variant<'_>) -> Reading {
    match v {
        Variant::Bool(b) => Reading::Bool(*b),
        Variant::U64(n) => Reading::Uint(*n),
        Variant::I64(n) => Reading::Int(*n),
        Variant::F64(f) => Reading::float(*f),
        Variant::Variant(inner) => reading(inner),
        other => Reading::Str(go_text(other)),
    }
}

/// Go's `%v` rendering of a decoded D-Bus value: lists and structs in
/// brackets separated by spaces, maps as `map[k:v ...]` with sorted keys,
/// strings unquoted.
pub fn go_text(v: &Variant<'_>) -> String {
    match v {
        Variant::U8(n) => n.to_string(),
        Variant::Bool(b) => b.to_string(),
        Variant::I16(n) => n.to_string(),
        Variant::U16(n) => n.to_string(),
        Variant::I32(n) => n.to_string(),
        Variant::U32(n) => n.to_string(),
        Variant::I64(n) => n.to_string(),
        Variant::U64(n) => n.to_string(),
        Variant::F64(f) => aicr::yaml::go_float(*f),
        Variant::Str(s) => s.to_string(),
        Variant::Signature(s) => s.to_string(),
        Variant::ObjectPath(p) => p.as_str().to_string(),
        Variant::Variant(inner) => go_text(inner),
        Variant::Array(a) => bracketed(a.inner().iter().map(go_text)),
        Variant::Structure(s) => bracketed(s.fields().iter().map(go_text)),
        Variant::Dict(d) => {
            let mut pairs: Vec<String> = d
                .iter()
                .map(|(k, v)| format!("{}:{}", go_text(k), go_text(v)))
                .collect();
            pairs.sort();
            format!("map[{}]", pairs.join(" "))
        }
        Variant::Fd(fd) => fd.as_raw_fd().to_string(),
    }
}

fn bracketed(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_systemd() {
        assert_eq!(escape_unit("kubelet.service"), "kubelet_2eservice");
        assert_eq!(escape_unit("containerd.service"), "containerd_2eservice");
        assert_eq!(escape_unit("getty@tty1.service"), "getty_40tty1_2eservice");
        assert_eq!(escape_unit("1a-b"), "_31a_2db");
        assert_eq!(escape_unit("a1"), "a1");
    }

    #[test]
    fn narrow_integers_become_strings_wide_ones_stay_numbers() {
        assert_eq!(reading(&Variant::U32(1234)), Reading::Str("1234".into()));
        assert_eq!(reading(&Variant::I32(-5)), Reading::Str("-5".into()));
        assert_eq!(reading(&Variant::U8(7)), Reading::Str("7".into()));
        assert_eq!(reading(&Variant::U64(u64::MAX)), Reading::Uint(u64::MAX));
        assert_eq!(reading(&Variant::I64(-1)), Reading::Int(-1));
        assert_eq!(reading(&Variant::F64(0.5)), Reading::float(0.5));
        assert_eq!(reading(&Variant::Bool(true)), Reading::Bool(true));
    }

    #[test]
    fn containers_render_like_go() {
        let list = Variant::from(vec!["a.target", "b.target"]);
        assert_eq!(go_text(&list), "[a.target b.target]");
        let empty = Variant::from(Vec::<String>::new());
        assert_eq!(go_text(&empty), "[]");
        let bytes = Variant::from(vec![12u8, 250]);
        assert_eq!(go_text(&bytes), "[12 250]");
        let nested = Variant::Variant(Box::new(Variant::from("x")));
        assert_eq!(reading(&nested), Reading::Str("x".into()));
        let mut map = std::collections::HashMap::new();
        map.insert("b", 2u32);
        map.insert("a", 1u32);
        assert_eq!(go_text(&Variant::from(map)), "map[a:1 b:2]");
    }

    #[test]
    fn credentials_and_listed_keys_are_dropped() {
        for k in [
            "Id",
            "BusName",
            "LoadCredential",
            "SetCredentialEncrypted",
            "Asserts",
        ] {
            assert!(dropped(k), "{k}");
        }
        for k in ["ActiveState", "Names", "IdleAction"] {
            assert!(!dropped(k), "{k}");
        }
    }
}
