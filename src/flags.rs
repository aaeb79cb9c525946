//! Value parsers and name rules shared by the `aicr`, `aicr-agent` and
//! `aicr-aggregator` command lines, so the same flag spelling means the same
//! thing in each, and a name one binary sends is one the other accepts.

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

/// Whether `name` is an RFC 1123 label (a namespace, one part of a DNS
/// name): lowercase letters, digits and `-`, 1 to 63 bytes, alphanumeric
/// at both ends.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is an RFC 1123 subdomain: dot-separated labels, at most
/// 253 bytes.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Whether `name` can name a Kubernetes Node (a DNS subdomain). Agents
/// check their own before connecting and the aggregator checks every
/// Hello, since node names become metric labels and Event objects.
pub fn is_node_name(name: &str) -> bool {
    is_dns_subdomain(name)
}

/// Whether `host` (a URL's host, IPv6 in brackets or not) is this machine:
/// `localhost` or a loopback address. Plain text is allowed only there.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

/// The value parser of flags whose values the core defines (`--format`,
/// `--phase`): the type's `FromStr`, so the flag is typed from the start,
/// and a rejected value keeps the core's message and exit code (the
/// binary's usage-error handler finds the [`crate::Error`] in clap's
/// error) rather than turning into a generic usage error.
pub fn typed<T>(s: &str) -> Result<T, crate::Error>
where
    T: std::str::FromStr<Err = crate::Error>,
{
    s.parse()
}

/// A value parser that offers `names` to shell completion while `parse`
/// alone decides what is valid, so a core type keeps its own spelling
/// rules, message and exit code (as with [`typed`]). Pair it with
/// `hide_possible_values` where the flag's help already lists them.
#[derive(Clone, Copy)]
pub struct Offered<T> {
    parse: fn(&str) -> Result<T, crate::Error>,
    names: &'static [&'static str],
}

/// [`Offered`]: `parse`, offering `names`.
pub const fn offered<T>(
    parse: fn(&str) -> Result<T, crate::Error>,
    names: &'static [&'static str],
) -> Offered<T> {
    Offered { parse, names }
}

/// Any text, left for the command to judge (a value that may also come
/// from a config file, and is checked once both are merged).
pub fn text(s: &str) -> Result<String, crate::Error> {
    Ok(s.to_string())
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Offered<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        self.parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            self.names
                .iter()
                .copied()
                .map(clap::builder::PossibleValue::new),
        ))
    }
}

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and
/// `0 f F FALSE false False`, nothing else.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The value parser of every boolean flag bound to an environment variable
/// (`#[arg(long, env = "AICR_DEBUG", value_parser = aicr::flags::EnvBool)]`).
/// Such a flag only ever sees `true` from the command line; from the
/// environment it accepts what `parse_bool` accepts, treats an empty
/// value as unset (false), and a bad value is a usage error naming the
/// variable, not a flag the user never typed.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvBool;

impl clap::builder::TypedValueParser for EnvBool {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        let text = value.to_str();
        if let Some(b) = text.and_then(parse_bool) {
            return Ok(b);
        }
        if value.is_empty() {
            return Ok(false);
        }
        let name = match arg {
            Some(a) => match (a.get_env(), a.get_long()) {
                (Some(env), _) => env.to_string_lossy().into_owned(),
                (None, Some(long)) => format!("--{long}"),
                (None, None) => a.get_id().to_string(),
            },
            None => "a boolean".to_string(),
        };
        let shown = value.to_string_lossy();
        let message = format!(
            "invalid value '{shown}' for {name}: not a boolean (use one of 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False; empty means unset)\n"
        );
        Err(clap::Error::raw(clap::error::ErrorKind::InvalidValue, message).with_cmd(cmd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_dns_subdomains() {
        assert!(is_node_name("ip-10-0-1-2.ec2.internal"));
        assert!(!is_node_name(""));
        assert!(!is_node_name("Node_1"));
        assert!(!is_node_name(&"a".repeat(254)));
        assert!(!is_node_name("a..b") && !is_node_name("-a.b"));
        assert!(is_dns_label("gpu-operator") && !is_dns_label("a.b"));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1", "example.com", "[::2]", ""] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

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

    #[test]
    fn booleans_as_go_parses_them() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "yes", "on", "tRUE", " true"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }
}
