//! Value parsers shared by the `aicr`, `aicr-agent` and `aicr-aggregator`
//! command lines, so the same flag spelling means the same thing in each.

use std::time::Duration;

/// A duration such as `90s`, `10m` or `1h30m`; a bare `0` is zero. The
/// error names accepted spellings, since clap prints it as the whole hint.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s, 10m, 1h30m)"))
}

/// A wait bound where `0` asks for the default of five minutes.
pub fn timeout(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    Ok(if d.is_zero() {
        Duration::from_secs(300)
    } else {
        d
    })
}

/// An interval of at least one second (agent collection and backoff).
pub fn interval(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_zero_and_bounds() {
        assert_eq!(duration(" 1h30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("soon").unwrap_err().contains("use e.g."));
        assert_eq!(timeout("0"), Ok(Duration::from_secs(300)));
        assert_eq!(timeout("0s"), Ok(Duration::from_secs(300)));
        assert_eq!(timeout("90s"), Ok(Duration::from_secs(90)));
        assert!(interval("500ms").is_err());
        assert_eq!(interval("5s"), Ok(Duration::from_secs(5)));
    }
}
