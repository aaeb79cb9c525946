//! The agent's memory self-limit: its own resident set size, read from
//! `/proc/self/status`, against a ceiling. Owns measuring and judging only;
//! the caller decides to exit (and the DaemonSet restarts it), which is
//! cheaper and more predictable than trying to shrink a leaking process.

use std::io;

/// `VmRSS` of `/proc/self/status`, in bytes. The kernel reports it in kB,
/// so no page size (and no `sysconf`) is needed.
pub fn resident_bytes() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status")?;
    parse_status_rss(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no VmRSS line in /proc/self/status",
        )
    })
}

fn parse_status_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let kb: u64 = fields.next()?.parse().ok()?;
    (fields.next()? == "kB").then(|| kb.saturating_mul(1024))
}

/// `Err` with the line to log when `rss` is over `limit`.
pub fn check(rss: u64, limit: u64) -> Result<(), String> {
    if rss <= limit {
        return Ok(());
    }
    Err(format!(
        "resident memory {} MiB exceeds --max-rss {} MiB; exiting so the DaemonSet restarts the agent",
        rss >> 20,
        limit >> 20
    ))
}

/// A byte size as flags take it: `67108864`, `64Mi`, `64MiB`, `512Ki`, `1Gi`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (use e.g. 64Mi)"))?;
    let shift = match unit.trim().trim_end_matches('B') {
        "" => 0,
        "Ki" | "K" => 10,
        "Mi" | "M" => 20,
        "Gi" | "G" => 30,
        other => return Err(format!("unknown size unit {other:?} (use Ki, Mi or Gi)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_rss_is_the_vmrss_line_in_kb() {
        let status = "Name:\taicr-agent\nVmHWM:\t    9000 kB\nVmRSS:\t    7344 kB\nThreads:\t4\n";
        assert_eq!(parse_status_rss(status), Some(7344 * 1024));
        assert_eq!(parse_status_rss("VmRSS:\t12\n"), None);
        assert_eq!(parse_status_rss("VmRSS:\tx kB\n"), None);
        assert_eq!(parse_status_rss("Name: x\n"), None);
    }

    #[test]
    fn own_rss_is_plausible() {
        let rss = resident_bytes().unwrap();
        assert!(rss > 100 * 1024 && rss < 4 << 30, "{rss}");
    }

    #[test]
    fn over_the_limit_names_both_numbers() {
        assert!(check(64 << 20, 64 << 20).is_ok());
        let msg = check(65 << 20, 64 << 20).unwrap_err();
        assert!(msg.contains("65 MiB exceeds --max-rss 64 MiB"), "{msg}");
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("64Mi"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size(" 512Ki "), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("Mi").is_err());
        assert!(parse_size("5Ti").is_err());
        assert!(parse_size("99999999999999Gi").is_err());
    }
}
