//! The systemd change watcher against a real zbus peer on a private-style
//! socket: it subscribes, turns only the watched units' PropertiesChanged
//! (and manager reloads) into change signals, follows a changed unit list,
//! and reconnects when systemd goes away. Also the GPU event thread over a
//! fake [`GpuSource`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aicr_agent::collect::gpu::{GpuBackend, GpuSource, OpenSource, Query, QueryError};
use aicr_agent::collect::{Root, systemd};
use aicr_agent::watch::{self, Change};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch as tokio_watch};
use zbus::message::Type as MessageType;
use zbus::{Connection, Guid, Variant, connection::Builder};

const WAIT: Duration = Duration::from_secs(10);
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// Accept connections on `<root>/run/systemd/private`; each one, once it
/// has called Subscribe, is handed to the test to emit signals on.
fn fake_systemd(root: &Root) -> mpsc::Receiver<Connection> {
    let socket = root.join(systemd::PRIVATE_SOCKET);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut messages = Builder::unix_stream(stream.into_std().unwrap())
                    .server(Guid::generate())
                    .p2p()
                    .build_message_stream()
                    .await
                    .unwrap();
                let conn = Connection::from(&messages);
                while let Some(Ok(msg)) = messages.next().await {
                    let h = msg.header();
                    if h.message_type() == MessageType::MethodCall
                        && h.member().map(|m| m.as_str()) == Some("Subscribe")
                        && h.interface().map(|i| i.as_str()) == Some(MANAGER)
                    {
                        conn.reply(&h, &()).await.unwrap();
                        tx.send(conn.clone()).await.unwrap();
                    }
                }
            });
        }
    });
    rx
}

async fn properties_changed(conn: &Connection, unit: &str) {
    let path = format!(
        "{}{}",
        systemd::UNIT_PATH_PREFIX,
        systemd::escape_unit(unit)
    );
    let changed: HashMap<&str, Variant<'_>> =
        HashMap::from([("ActiveState", Variant::from("failed"))]);
    conn.emit_signal(
        None::<&str>,
        path.as_str(),
        PROPERTIES,
        "PropertiesChanged",
        &("org.freedesktop.systemd1.Unit", changed, Vec::<&str>::new()),
    )
    .await
    .unwrap();
}

async fn manager_signal(conn: &Connection, member: &str) {
    conn.emit_signal(
        None::<&str>,
        "/org/freedesktop/systemd1",
        MANAGER,
        member,
        &(),
    )
    .await
    .unwrap();
}

async fn recv(rx: &mut mpsc::Receiver<Change>) -> Change {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a change signal in time")
        .expect("the watcher is running")
}

async fn session<T>(rx: &mut mpsc::Receiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the watcher connects and subscribes in time")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_units_signal_and_the_watcher_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let mut sessions = fake_systemd(&root);
    let (units, units_rx) = tokio_watch::channel(vec!["kubelet.service".to_string()]);
    // Room for every signal, so a wrongly relevant one would be counted.
    let (tx, mut changes) = mpsc::channel(16);
    let watcher = tokio::spawn(watch::systemd(root.clone(), units_rx, tx));

    let conn = session(&mut sessions).await;
    properties_changed(&conn, "cron.service").await;
    manager_signal(&conn, "JobNew").await;
    properties_changed(&conn, "kubelet.service").await;
    manager_signal(&conn, "Reloading").await;
    assert_eq!(recv(&mut changes).await, Change::Systemd);
    assert_eq!(recv(&mut changes).await, Change::Systemd);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        changes.try_recv().is_err(),
        "unwatched units must not signal"
    );

    units.send_replace(vec!["cron.service".to_string()]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    properties_changed(&conn, "kubelet.service").await;
    properties_changed(&conn, "cron.service").await;
    assert_eq!(recv(&mut changes).await, Change::Systemd);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(changes.try_recv().is_err(), "kubelet is no longer watched");

    // systemd restarts: the watcher connects and subscribes again.
    conn.close().await.unwrap();
    let conn = session(&mut sessions).await;
    properties_changed(&conn, "cron.service").await;
    assert_eq!(recv(&mut changes).await, Change::Systemd);

    // Nobody listens any more: the watcher ends on its own.
    drop(changes);
    tokio::time::timeout(WAIT, watcher)
        .await
        .expect("the watcher stops when its receiver is gone")
        .unwrap();
}

#[tokio::test]
async fn without_systemd_the_watcher_waits_quietly_and_stops_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (_units, units_rx) = tokio_watch::channel(vec!["kubelet.service".to_string()]);
    let (tx, changes) = mpsc::channel(1);
    let watcher = tokio::spawn(watch::systemd(Root::new(dir.path()), units_rx, tx));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!watcher.is_finished(), "it keeps retrying");
    drop(changes);
    tokio::time::timeout(WAIT, watcher).await.unwrap().unwrap();
}

/// A GPU with nothing to report but events: `events` of them at once
/// (then `fired`), then ticks until the watcher says stop (then `stopped`).
struct EventfulGpu {
    events: usize,
    fired: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

impl GpuSource for EventfulGpu {
    fn driver_version(&self) -> Query<String> {
        Err(QueryError::NotSupported)
    }
    fn cuda_driver_version(&self) -> Query<i32> {
        Err(QueryError::NotSupported)
    }
    fn device_count(&self) -> Query<u32> {
        Ok(0)
    }
    fn name(&self) -> Query<String> {
        Err(QueryError::NotSupported)
    }
    fn architecture(&self) -> Query<String> {
        Err(QueryError::NotSupported)
    }
    fn display_mode(&self) -> Query<bool> {
        Err(QueryError::NotSupported)
    }
    fn display_active(&self) -> Query<bool> {
        Err(QueryError::NotSupported)
    }
    fn persistence_mode(&self) -> Query<bool> {
        Err(QueryError::NotSupported)
    }
    fn addressing_mode(&self) -> Query<u32> {
        Err(QueryError::NotSupported)
    }
    fn vbios_version(&self) -> Query<String> {
        Err(QueryError::NotSupported)
    }
    fn gsp_firmware_version(&self) -> Query<String> {
        Err(QueryError::NotSupported)
    }
    fn mig_mode(&self) -> Query<u32> {
        Err(QueryError::NotSupported)
    }
    fn watch_events(&self, _tick: Duration, on_event: &mut dyn FnMut(bool) -> bool) -> Query<()> {
        for _ in 0..self.events {
            if !on_event(true) {
                return Ok(());
            }
        }
        self.fired.store(true, Ordering::SeqCst);
        while on_event(false) {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stopped.store(true, Ordering::SeqCst);
        Ok(())
    }
}

async fn until(flag: &AtomicBool, what: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while !flag.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn gpu_events_coalesce_into_signals_and_stop_with_the_receiver() {
    let fired = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let (f, s) = (fired.clone(), stopped.clone());
    let open: OpenSource = Arc::new(move || {
        Ok(Box::new(EventfulGpu {
            events: 5,
            fired: f.clone(),
            stopped: s.clone(),
        }) as Box<dyn GpuSource>)
    });
    let (tx, mut changes) = mpsc::channel(1);
    watch::gpu(&GpuBackend::Source(open), tx);
    // Nobody reads yet: a watcher that blocked on a full channel would
    // never get past the second event.
    until(&fired, "all five events were delivered").await;
    assert_eq!(recv(&mut changes).await, Change::Gpu);
    assert!(changes.try_recv().is_err(), "five events left one signal");
    drop(changes);
    until(&stopped, "the event thread stops without a receiver").await;
}
