//! The recorder: the one writer of the store. It takes records in the order
//! the hub produced them, commits them in batches (one fsync per batch, so
//! a burst costs one disk flush, not one per event), and only then hands
//! the events to the sinks.
//!
//! Runs on its own thread because a commit blocks on the disk; it must not
//! touch node state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc::UnboundedReceiver;

use crate::sinks::Sinks;
use crate::store::{Record, Store};

/// Most records in one transaction; bounds the latency a large burst adds
/// to the first event in it.
const MAX_BATCH: usize = 4096;

/// What the recorder is sent.
#[derive(Debug)]
pub enum Input {
    /// Boxed: a drift event is large, and the queue holds many.
    Record(Box<Record>),
    /// Commit what came before, then exit: shutdown must close the store
    /// even while stray tasks still hold a sender.
    Stop,
}

/// Run until [`Input::Stop`] or every sender is gone. `healthy` turns false when a commit
/// fails, which fails `/healthz` so the pod is restarted rather than
/// silently losing history.
pub fn spawn(
    store: Arc<Store>,
    mut rx: UnboundedReceiver<Input>,
    mut sinks: Sinks,
    healthy: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            let mut stopping = false;
            while !stopping {
                let mut batch = Vec::new();
                match rx.blocking_recv() {
                    Some(Input::Record(r)) => batch.push(*r),
                    Some(Input::Stop) | None => break,
                }
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Input::Record(r)) => batch.push(*r),
                        Ok(Input::Stop) => {
                            stopping = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match store.commit(batch) {
                    Ok(events) => {
                        for ev in &events {
                            sinks.publish(ev);
                        }
                    }
                    Err(e) => {
                        healthy.store(false, Ordering::SeqCst);
                        tracing::error!("failed to record drift events: {e}");
                    }
                }
            }
        })
        .expect("a thread can be started")
}
