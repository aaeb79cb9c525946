//! Readings that change on every read without anything being configured
//! differently: kernel counters and random values under `/proc/sys`, and
//! systemd's live resource accounting. The stream leaves them out, or each
//! cycle would resend whole subtypes and the digests would never settle.
//! `aicr snapshot` still reports them; only what the agent streams, and so
//! the aggregator's view of a node, goes without. This module decides what
//! is volatile and removes it; it never changes another reading.

use aicr::model::snapshot::Measurement;

use crate::collect::{os, systemd};

/// `/proc/sys` files that are counters or fresh random values.
const SYSCTL_KEYS: [&str; 9] = [
    "/proc/sys/fs/aio-nr",
    "/proc/sys/fs/dentry-state",
    "/proc/sys/fs/file-nr",
    "/proc/sys/fs/inode-nr",
    "/proc/sys/fs/inode-state",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/kernel/pty/nr",
    "/proc/sys/kernel/random/entropy_avail",
    "/proc/sys/kernel/random/uuid",
];

/// Disk-quota statistics: every file under it counts something.
const SYSCTL_PREFIX: &str = "/proc/sys/fs/quota/";

/// systemd's accounting properties (cgroup usage, traffic, watchdog pings).
const SYSTEMD_KEYS: [&str; 12] = [
    "CPUUsageNSec",
    "IOReadBytes",
    "IOReadOperations",
    "IOWriteBytes",
    "IOWriteOperations",
    "IPEgressBytes",
    "IPEgressPackets",
    "IPIngressBytes",
    "IPIngressPackets",
    "MemoryAvailable",
    "WatchdogTimestamp",
    "WatchdogTimestampMonotonic",
];

fn volatile_sysctl(key: &str) -> bool {
    SYSCTL_KEYS.contains(&key) || key.starts_with(SYSCTL_PREFIX)
}

/// `MemoryCurrent`, `TasksCurrent`, `MemoryPeak`, `MemorySwapPeak`, ...
fn volatile_property(key: &str) -> bool {
    SYSTEMD_KEYS.contains(&key) || key.ends_with("Current") || key.ends_with("Peak")
}

/// Remove every volatile reading from `measurements`.
pub fn strip(measurements: &mut [Measurement]) {
    for m in measurements {
        let drop: fn(&str) -> bool = match m.kind.as_str() {
            os::TYPE => volatile_sysctl,
            systemd::TYPE => volatile_property,
            _ => continue,
        };
        for st in &mut m.subtypes {
            if m.kind == os::TYPE && st.subtype != "sysctl" {
                continue;
            }
            st.data.retain(|k, _| !drop(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicr::model::snapshot::Subtype;

    #[test]
    fn counters_go_and_settings_stay() {
        let mut ms = vec![
            Measurement {
                kind: "OS".into(),
                subtypes: vec![
                    Subtype::new("sysctl")
                        .with("/proc/sys/kernel/random/uuid", "5e1f")
                        .with("/proc/sys/fs/file-nr", "1024 0 9223372036854775807")
                        .with("/proc/sys/fs/quota/lookups", "0")
                        .with("/proc/sys/fs/file-max", "9223372036854775807")
                        .with("/proc/sys/kernel/random/boot_id", "b00t"),
                    // Only sysctl holds counters; other OS subtypes keep all.
                    Subtype::new("grub").with("/proc/sys/fs/file-nr", "x"),
                ],
            },
            Measurement {
                kind: "SystemD".into(),
                subtypes: vec![
                    Subtype::new("kubelet.service")
                        .with("MemoryCurrent", 123u64)
                        .with("MemoryPeak", 456u64)
                        .with("CPUUsageNSec", 789u64)
                        .with("TasksCurrent", 12u64)
                        .with("MemoryMax", u64::MAX)
                        .with("ActiveState", "active")
                        .with("NRestarts", "0"),
                ],
            },
            Measurement {
                kind: "GPU".into(),
                subtypes: vec![Subtype::new("smi").with("MemoryCurrent", "kept")],
            },
        ];
        strip(&mut ms);
        let keys = |m: usize, s: usize| -> Vec<&str> {
            ms[m].subtypes[s].data.keys().map(String::as_str).collect()
        };
        assert_eq!(
            keys(0, 0),
            ["/proc/sys/fs/file-max", "/proc/sys/kernel/random/boot_id"]
        );
        assert_eq!(keys(0, 1), ["/proc/sys/fs/file-nr"]);
        assert_eq!(keys(1, 0), ["ActiveState", "MemoryMax", "NRestarts"]);
        assert_eq!(keys(2, 0), ["MemoryCurrent"]);
    }
}
