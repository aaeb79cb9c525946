//! The SystemD collector against a real D-Bus peer: a zbus peer-to-peer
//! server on a Unix socket at `<root>/run/systemd/private`, answering
//! `Properties.GetAll("")` the way systemd's private socket does.

use std::path::Path;

use crate::common::FakeSystemd;
use aicr::model::snapshot::{Measurement, Reading};
use aicr_agent::collect::{Root, systemd};

fn names(m: &Measurement) -> Vec<&str> {
    m.subtypes.iter().map(|s| s.subtype.as_str()).collect()
}

#[tokio::test]
async fn reads_units_with_upstream_encodings() {
    let fake = FakeSystemd::start().await;
    let m = systemd::collect(&fake.root, &systemd::DEFAULT_UNITS).await;
    assert_eq!(m.kind, "SystemD");
    // docker.service answers with an error and is skipped.
    assert_eq!(names(&m), ["containerd.service", "kubelet.service"]);
    assert_eq!(
        *fake.asked.lock().unwrap(),
        [
            "/org/freedesktop/systemd1/unit/containerd_2eservice",
            "/org/freedesktop/systemd1/unit/docker_2eservice",
            "/org/freedesktop/systemd1/unit/kubelet_2eservice",
        ]
    );

    let c = &m.subtypes[0].data;
    let s = |v: &str| Reading::Str(v.into());
    let expected = [
        ("ActiveEnterTimestamp", Reading::Uint(1_732_700_000_000_000)),
        ("ActiveState", s("active")),
        ("After", s("[network.target local-fs.target]")),
        ("CPUQuotaPerSecUSec", Reading::Int(-1)),
        ("CPUWeightFraction", Reading::float(0.5)),
        ("Delegate", Reading::Bool(true)),
        ("Environment", s("map[a:1 b:2]")),
        (
            "ExecStart",
            s("[[/usr/bin/containerd [/usr/bin/containerd] false 0 0 0 0 0 0 0]]"),
        ),
        ("Following", s("/org/freedesktop/systemd1/unit/x")),
        ("IOSchedulingClass", s("2")),
        ("InvocationID", s("[12 250 0]")),
        ("Job", s("[0 /]")),
        ("LoadState", s("loaded")),
        ("MainPID", s("1234")),
        ("MemoryMax", Reading::Uint(u64::MAX)),
        ("NRestarts", s("0")),
        ("Nice", s("-5")),
        ("OOMScoreAdjust", s("-500")),
        ("PropertySignature", s("a{sv}")),
        ("StartLimitAction", s("7")),
        ("SubState", s("running")),
        ("UnitFileState", s("enabled")),
        ("Wants", s("[]")),
        ("Wrapped", s("inner")),
    ];
    let got: Vec<(&str, &Reading)> = c.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let want: Vec<(&str, &Reading)> = expected.iter().map(|(k, v)| (*k, v)).collect();
    assert_eq!(got, want);

    let k = &m.subtypes[1].data;
    assert_eq!(k["LoadState"], s("not-found"));
    assert_eq!(k["ActiveState"], s("inactive"));
    assert_eq!(
        k["LoadError"],
        s("[org.freedesktop.systemd1.NoSuchUnit Unit not found.]")
    );
    assert!(!k.contains_key("Id"));

    // Integers wide enough for a timestamp survive a YAML round trip as
    // numbers; the narrow ones stay quoted strings.
    let yaml = aicr::yaml::to_yaml(&m).unwrap();
    assert!(yaml.contains("MemoryMax: 18446744073709551615"), "{yaml}");
    assert!(
        yaml.contains("MainPID: '1234'") || yaml.contains("MainPID: \"1234\""),
        "{yaml}"
    );
}

#[tokio::test]
async fn unit_list_is_configurable_and_unknown_units_are_skipped() {
    let fake = FakeSystemd::start().await;
    let m = systemd::collect(&fake.root, &["kubelet.service", "nope.service"]).await;
    assert_eq!(names(&m), ["kubelet.service"]);
    let empty = systemd::collect(&fake.root, &[]).await;
    assert!(empty.subtypes.is_empty());
}

#[tokio::test]
async fn concurrent_collections_each_get_their_own_connection() {
    let fake = FakeSystemd::start().await;
    let (a, b) = tokio::join!(
        systemd::collect(&fake.root, &systemd::DEFAULT_UNITS),
        systemd::collect(&fake.root, &systemd::DEFAULT_UNITS),
    );
    assert_eq!(a, b);
    assert_eq!(a.subtypes.len(), 2);
}

#[tokio::test]
async fn no_socket_gives_a_measurement_without_subtypes() {
    let dir = tempfile::tempdir().unwrap();
    let m = systemd::collect(&Root::new(dir.path()), &systemd::DEFAULT_UNITS).await;
    assert_eq!(m.kind, "SystemD");
    assert!(m.subtypes.is_empty());
    assert_eq!(aicr::yaml::to_yaml(&m).unwrap(), "type: SystemD\n");
}

#[tokio::test]
async fn stale_socket_and_non_dbus_peer_give_no_subtypes() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let socket = root.join(systemd::PRIVATE_SOCKET);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(
        systemd::collect(&root, &systemd::DEFAULT_UNITS)
            .await
            .subtypes
            .is_empty()
    );

    // A listener that hangs up instead of authenticating.
    std::fs::remove_file(&socket).unwrap();
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    assert!(
        systemd::collect(&root, &systemd::DEFAULT_UNITS)
            .await
            .subtypes
            .is_empty()
    );
    assert!(Path::new(&socket).exists());
}
