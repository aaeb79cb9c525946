//! Giving freed heap memory back to the system after a burst of intake.
//!
//! Two bursts leave far more freed memory behind than they keep. When every
//! agent sends its full snapshot at once (the first start, or a restart of
//! the aggregator), the decoded snapshots in flight take far more memory
//! than the states they leave behind. A complete Node list arrives as one
//! response the size of every Node object in the cluster and is stripped
//! to a few fields per Node. glibc's allocator keeps what was freed inside
//! its arenas and returns only the top of each heap, so the process would
//! stay resident at the burst's peak: 3.1 GiB instead of 2.4 after 100,000
//! agents connect in the scale bench, and 100 MiB instead of 79 for an idle
//! aggregator that has listed 10,000 Nodes. Once intake has been quiet for
//! a moment, `malloc_trim` returns those free pages.
//!
//! This module owns that one call and when to make it; it must not touch
//! node state.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often intake is looked at; a burst is over after one quiet period.
pub const QUIET: Duration = Duration::from_secs(2);

/// When to trim: after the intake count (full snapshots applied and Node
/// lists received) moved and then stood still for a whole period. Pure,
/// so the rule is tested alone.
#[derive(Debug, Default)]
pub struct Bursts {
    seen: u64,
    moved: bool,
}

impl Bursts {
    /// Look at the count now; whether to trim.
    pub fn quiet(&mut self, applied: u64) -> bool {
        if applied != self.seen {
            self.seen = applied;
            self.moved = true;
            return false;
        }
        std::mem::take(&mut self.moved)
    }
}

/// Ask the allocator to return the free pages of every arena; whether it
/// returned any. Only glibc keeps them; elsewhere this does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release() -> bool {
    // SAFETY: `malloc_trim` takes no pointers and touches only glibc's own
    // free lists, under the same arena locks `malloc` and `free` take.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release() -> bool {
    false
}

/// Trim once after each burst of intake, as `applied` counts it; `trims`
/// counts the trims.
pub fn spawn(
    applied: impl Fn() -> u64 + Send + 'static,
    trims: Counter,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut bursts = Bursts {
            seen: applied(),
            moved: false,
        };
        let mut tick = tokio::time::interval(QUIET);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if bursts.quiet(applied()) {
                // It walks every arena: off the runtime's worker threads.
                let started = std::time::Instant::now();
                let released = tokio::task::spawn_blocking(release).await.unwrap_or(false);
                trims.inc();
                tracing::debug!(
                    released,
                    "returned freed heap pages after a burst of intake in {:?}",
                    started.elapsed()
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_the_count_stands_still() {
        let mut b = Bursts::default();
        assert!(!b.quiet(0), "nothing happened yet");
        assert!(!b.quiet(5), "intake is busy");
        assert!(!b.quiet(9), "still busy");
        assert!(b.quiet(9), "quiet for a whole period after a burst");
        assert!(!b.quiet(9), "once per burst");
        assert!(!b.quiet(10));
        assert!(b.quiet(10));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_pages_below_a_live_block_go_back() {
        // Many small blocks, then one kept above them: freeing the small
        // ones leaves whole free pages that glibc cannot return from the
        // top of its heap, only through a trim.
        let small: Vec<Box<[u8; 512]>> = (0..20_000).map(|_| Box::new([1u8; 512])).collect();
        let kept = Box::new([2u8; 512]);
        drop(small);
        assert!(release(), "glibc returned no pages");
        assert_eq!(kept[0], 2);
    }
}
