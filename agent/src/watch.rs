//! Change signals that make the agent collect before its interval is up:
//! systemd's `PropertiesChanged` for the watched units (and its reload and
//! unit-file signals), read on the same private socket the collector uses,
//! and NVML device events through the
//! [`GpuSource`](crate::collect::gpu::GpuSource) trait. Owns only the
//! noticing: a signal carries no data, the caller re-collects and diffs.
//!
//! Signals go through a bounded channel with `try_send`, so a storm of
//! events coalesces into one pending signal instead of growing memory. A
//! watcher that cannot run logs once and leaves the interval to do the work.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use zbus::MessageStream;
use zbus::message::{Message, Type as MessageType};

use crate::backoff::Backoff;
use crate::collect::gpu::{self, GpuBackend, QueryError};
use crate::collect::{Root, systemd};

/// What noticed a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Systemd,
    Gpu,
}

const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_INTERFACE: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES_INTERFACE: &str = "org.freedesktop.DBus.Properties";

/// How often a blocked NVML wait comes back to check whether the agent
/// still listens; long, because each wake-up costs idle CPU.
const GPU_TICK: Duration = Duration::from_secs(5);

/// Follow systemd for as long as `tx` has a receiver, reconnecting with
/// backoff when the socket is absent or systemd restarts. `units` is the
/// current unit list (the aggregator may change it).
pub async fn systemd(
    root: Root,
    mut units: watch::Receiver<Vec<String>>,
    tx: mpsc::Sender<Change>,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut reported = false;
    loop {
        let outcome = tokio::select! {
            _ = tx.closed() => return,
            r = follow(&root, &mut units, &tx, &mut backoff) => r,
        };
        match outcome {
            Ok(()) => return,
            Err(e) if !reported => {
                reported = true;
                tracing::info!(error = %e, "no systemd change signals - relying on the collection interval");
            }
            Err(e) => tracing::debug!(error = %e, "systemd change signals unavailable"),
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

async fn follow(
    root: &Root,
    units: &mut watch::Receiver<Vec<String>>,
    tx: &mpsc::Sender<Change>,
    backoff: &mut Backoff,
) -> zbus::Result<()> {
    let conn = systemd::connect(root).await?;
    // Created before Subscribe so no signal sent in between is missed.
    let mut messages = MessageStream::from(&conn);
    // The private socket delivers unit signals to every peer already;
    // Subscribe is what the system bus would need, and harmless here.
    if let Err(e) = conn
        .call_method(
            Some(systemd::DESTINATION),
            MANAGER_PATH,
            Some(MANAGER_INTERFACE),
            "Subscribe",
            &(),
        )
        .await
    {
        tracing::debug!(error = %e, "systemd Subscribe failed; listening anyway");
    }
    backoff.reset();
    tracing::debug!("watching systemd units for changes");
    let mut paths = unit_paths(&units.borrow_and_update());
    loop {
        let msg = tokio::select! {
            _ = tx.closed() => return Ok(()),
            changed = units.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                paths = unit_paths(&units.borrow_and_update());
                continue;
            }
            m = messages.next() => m,
        };
        match msg {
            Some(Ok(m)) if relevant(&m, &paths) => {
                // Full means a signal is already pending; one is enough.
                let _ = tx.try_send(Change::Systemd);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(zbus::Error::Failure("systemd closed the connection".into())),
        }
    }
}

/// The object paths of `units` on systemd's bus.
pub fn unit_paths(units: &[String]) -> BTreeSet<String> {
    units
        .iter()
        .map(|u| format!("{}{}", systemd::UNIT_PATH_PREFIX, systemd::escape_unit(u)))
        .collect()
}

/// A property change on a watched unit, or a manager signal after which
/// any unit's properties may read differently (daemon-reload, unit files
/// edited or enabled).
pub fn relevant(m: &Message, unit_paths: &BTreeSet<String>) -> bool {
    let h = m.header();
    if h.message_type() != MessageType::Signal {
        return false;
    }
    let (Some(path), Some(interface), Some(member)) = (h.path(), h.interface(), h.member()) else {
        return false;
    };
    match (interface.as_str(), member.as_str()) {
        (PROPERTIES_INTERFACE, "PropertiesChanged") => unit_paths.contains(path.as_str()),
        (MANAGER_INTERFACE, "Reloading" | "UnitFilesChanged") => path.as_str() == MANAGER_PATH,
        _ => false,
    }
}

/// Wait for GPU device events on a thread of its own (NVML's wait blocks)
/// while `tx` has a receiver. Returns at once when the backend has no event
/// source; a source without events, or one that fails, is logged and the
/// thread ends.
pub fn gpu(backend: &GpuBackend, tx: mpsc::Sender<Change>) {
    let Some(open) = gpu::opener(backend) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("gpu-events".into())
        .spawn(move || {
            let source = match open() {
                Ok(s) => s,
                Err(why) => {
                    tracing::debug!(reason = %why, "no GPU events: source unavailable");
                    return;
                }
            };
            let outcome = source.watch_events(GPU_TICK, &mut |arrived| {
                if arrived {
                    let _ = tx.try_send(Change::Gpu);
                }
                !tx.is_closed()
            });
            match outcome {
                Ok(()) => {}
                Err(QueryError::NotSupported) => {
                    tracing::info!("GPU events not supported - relying on the collection interval")
                }
                Err(QueryError::Failed(e)) => {
                    tracing::warn!(error = %e, "GPU event wait failed - relying on the collection interval")
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the GPU event thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(path: &str, interface: &str, member: &str) -> Message {
        Message::signal(path, interface, member).build(&()).unwrap()
    }

    #[test]
    fn only_watched_units_and_manager_reloads_count() {
        let paths = unit_paths(&["kubelet.service".to_string()]);
        let kubelet = "/org/freedesktop/systemd1/unit/kubelet_2eservice";
        assert!(paths.contains(kubelet));
        assert!(relevant(
            &signal(kubelet, PROPERTIES_INTERFACE, "PropertiesChanged"),
            &paths
        ));
        assert!(!relevant(
            &signal(
                "/org/freedesktop/systemd1/unit/cron_2eservice",
                PROPERTIES_INTERFACE,
                "PropertiesChanged"
            ),
            &paths
        ));
        assert!(relevant(
            &signal(MANAGER_PATH, MANAGER_INTERFACE, "Reloading"),
            &paths
        ));
        assert!(relevant(
            &signal(MANAGER_PATH, MANAGER_INTERFACE, "UnitFilesChanged"),
            &paths
        ));
        assert!(!relevant(
            &signal(MANAGER_PATH, MANAGER_INTERFACE, "JobNew"),
            &paths
        ));
    }
}
