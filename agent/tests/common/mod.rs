//! Test support shared by the integration tests: a stand-in for systemd's
//! private D-Bus endpoint, served by a real zbus peer-to-peer connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aicr_agent::collect::{Root, systemd};
use futures_util::StreamExt;
use zbus::message::Type as MessageType;
use zbus::{Connection, Guid, ObjectPath, Signature, Variant, connection::Builder};

const UNIT_PREFIX: &str = "/org/freedesktop/systemd1/unit/";

/// A stand-in for systemd's private bus endpoint. It records the object
/// paths it was asked about and rejects any call that is not exactly the
/// GetAll systemd would be sent.
pub struct FakeSystemd {
    _dir: tempfile::TempDir,
    pub root: Root,
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl FakeSystemd {
    pub async fn start() -> FakeSystemd {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let socket = root.join(systemd::PRIVATE_SOCKET);
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, log.clone()));
            }
        });
        FakeSystemd {
            _dir: dir,
            root,
            asked,
        }
    }
}

async fn serve(stream: tokio::net::UnixStream, asked: Arc<Mutex<Vec<String>>>) {
    let mut messages = Builder::unix_stream(stream.into_std().unwrap())
        .server(Guid::generate())
        .p2p()
        .build_message_stream()
        .await
        .unwrap();
    let conn = Connection::from(&messages);
    while let Some(Ok(msg)) = messages.next().await {
        let header = msg.header();
        if header.message_type() != MessageType::MethodCall {
            continue;
        }
        let path = header
            .path()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        asked.lock().unwrap().push(path.clone());
        let interface_arg: String = msg.body().deserialize().unwrap_or_else(|_| "?".into());
        let well_formed = header.interface().map(|i| i.as_str())
            == Some("org.freedesktop.DBus.Properties")
            && header.member().map(|m| m.as_str()) == Some("GetAll")
            && header.destination().map(|d| d.as_str()) == Some("org.freedesktop.systemd1")
            && interface_arg.is_empty();
        let unit = path.strip_prefix(UNIT_PREFIX).unwrap_or_default();
        let sent = match (well_formed, unit) {
            (false, _) => {
                conn.reply_error(
                    &header,
                    "org.freedesktop.DBus.Error.InvalidArgs",
                    &"malformed call",
                )
                .await
            }
            (true, "containerd_2eservice") => conn.reply(&header, &containerd()).await,
            (true, "kubelet_2eservice") => conn.reply(&header, &not_found("kubelet.service")).await,
            (true, "docker_2eservice") => {
                conn.reply_error(
                    &header,
                    "org.freedesktop.DBus.Error.AccessDenied",
                    &"denied",
                )
                .await
            }
            (true, _) => {
                conn.reply_error(
                    &header,
                    "org.freedesktop.DBus.Error.UnknownObject",
                    &"no such unit",
                )
                .await
            }
        };
        sent.unwrap();
    }
}

/// One `ExecStart` entry, D-Bus `(sasbttttuii)`: path, argv, ignore-failure,
/// start/exit timestamps (realtime, monotonic), pid, code, status.
type ExecCommand = (
    &'static str,
    Vec<&'static str>,
    bool,
    u64,
    u64,
    u64,
    u64,
    u32,
    i32,
    i32,
);

type Props = HashMap<&'static str, Variant<'static>>;

/// A running service with properties of every D-Bus type systemd uses, plus
/// the keys the collector must drop.
fn containerd() -> Props {
    let exec: Vec<ExecCommand> = vec![(
        "/usr/bin/containerd",
        vec!["/usr/bin/containerd"],
        false,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    )];
    let mut dict = HashMap::new();
    dict.insert("b", 2u32);
    dict.insert("a", 1u32);
    let mut p: Props = HashMap::new();
    p.insert("ActiveState", Variant::from("active"));
    p.insert("SubState", Variant::from("running"));
    p.insert("LoadState", Variant::from("loaded"));
    p.insert("UnitFileState", Variant::from("enabled"));
    p.insert("Delegate", Variant::from(true));
    p.insert("MemoryMax", Variant::from(u64::MAX));
    p.insert(
        "ActiveEnterTimestamp",
        Variant::from(1_732_700_000_000_000u64),
    );
    p.insert("CPUQuotaPerSecUSec", Variant::from(-1i64));
    p.insert("MainPID", Variant::from(1234u32));
    p.insert("NRestarts", Variant::from(0u32));
    p.insert("OOMScoreAdjust", Variant::from(-500i32));
    p.insert("IOSchedulingClass", Variant::from(2u16));
    p.insert("Nice", Variant::from(-5i16));
    p.insert("StartLimitAction", Variant::from(7u8));
    p.insert("CPUWeightFraction", Variant::from(0.5f64));
    p.insert(
        "After",
        Variant::from(vec!["network.target", "local-fs.target"]),
    );
    p.insert("Wants", Variant::from(Vec::<String>::new()));
    p.insert("InvocationID", Variant::from(vec![12u8, 250, 0]));
    p.insert("ExecStart", Variant::from(exec));
    p.insert(
        "Job",
        Variant::from((0u32, ObjectPath::try_from("/").unwrap())),
    );
    p.insert(
        "Following",
        Variant::from(ObjectPath::try_from("/org/freedesktop/systemd1/unit/x").unwrap()),
    );
    p.insert(
        "PropertySignature",
        Variant::from(Signature::try_from("a{sv}").unwrap()),
    );
    p.insert("Environment", Variant::from(dict));
    p.insert(
        "Wrapped",
        Variant::Variant(Box::new(Variant::from("inner"))),
    );
    // Dropped by the collector.
    p.insert("Id", Variant::from("containerd.service"));
    p.insert("BusName", Variant::from(""));
    p.insert("AllowedCPUs", Variant::from(vec![1u8]));
    p.insert("AllowedMemoryNodes", Variant::from(Vec::<u8>::new()));
    p.insert(
        "BPFProgram",
        Variant::from(vec![("egress", "/sys/fs/bpf/x")]),
    );
    p.insert(
        "Asserts",
        Variant::from(vec![("AssertPathExists", false, false, "/x", 0i32)]),
    );
    p.insert(
        "LoadCredential",
        Variant::from(vec![("token", "/etc/token")]),
    );
    p.insert(
        "SetCredentialEncrypted",
        Variant::from(vec![("k", vec![1u8, 2])]),
    );
    p.insert("ImportCredential", Variant::from(vec!["*"]));
    p
}

/// What systemd answers for a unit that is not installed.
fn not_found(name: &'static str) -> Props {
    let mut p: Props = HashMap::new();
    p.insert("Id", Variant::from(name));
    p.insert("LoadState", Variant::from("not-found"));
    p.insert("ActiveState", Variant::from("inactive"));
    p.insert("SubState", Variant::from("dead"));
    p.insert(
        "LoadError",
        Variant::from(("org.freedesktop.systemd1.NoSuchUnit", "Unit not found.")),
    );
    p
}
