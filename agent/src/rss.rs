//! The agent's memory self-limit: its own resident set size, read from
//! `/proc/self/statm`, against a ceiling. Owns measuring and judging only;
//! the caller decides to exit (and the DaemonSet restarts it), which is
//! cheaper and more predictable than trying to shrink a leaking process.

use std::io;

/// `/proc/self/statm`'s second field (resident pages) in bytes.
pub fn resident_bytes() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/statm")?;
    let pages = parse_statm_resident(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/self/statm: {text:?}"),
        )
    })?;
    Ok(pages.saturating_mul(page_size()))
}

fn parse_statm_resident(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
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
    fn statm_resident_is_the_second_field() {
        assert_eq!(
            parse_statm_resident("2960 581 492 152 0 306 0\n"),
            Some(581)
        );
        assert_eq!(parse_statm_resident("1"), None);
        assert_eq!(parse_statm_resident("1 x"), None);
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
