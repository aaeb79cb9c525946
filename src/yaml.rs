//! YAML and JSON text handling in one place: hardened parsing (size and
//! structure budgets against hostile input) and the emitters every command
//! uses, so output conventions cannot drift between commands.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Largest document any source may hand us (data files, snapshots, configs).
pub(crate) const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;

/// Input formats, chosen by the caller (usually from a file extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` is JSON; everything else is read as YAML, which also accepts
    /// JSON text.
    pub fn from_path(path: &str) -> Format {
        if path.to_ascii_lowercase().ends_with(".json") {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // Catalog files are authored by people; a duplicated key is a
        // mistake we must not silently resolve either way.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        budget: serde_saphyr::budget! {
            max_total_scalar_bytes: MAX_DOCUMENT_BYTES,
        },
    }
}

fn parse_err(e: impl std::fmt::Display) -> Error {
    // Parser messages can span lines (snippets); keep one line for the CLI.
    let msg = e.to_string();
    let first = msg.lines().next().unwrap_or_default().trim().to_string();
    Error::internal(first)
}

/// Parse one YAML document into `T`.
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::internal(format!(
            "document too large ({} bytes, max {MAX_DOCUMENT_BYTES})",
            text.len()
        )));
    }
    serde_saphyr::from_str_with_options(text, options()).map_err(yaml_err)
}

/// A YAML error on one line; a breached budget (an alias bomb, absurd
/// nesting) says what was refused in words rather than as the parser's
/// internal value.
fn yaml_err(e: serde_saphyr::Error) -> Error {
    use serde_saphyr::budget::BudgetBreach as B;
    // The breach may sit under a snippet or an alias's location.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let budget = std::iter::from_fn(|| {
        let this = cause?;
        cause = this.source();
        Some(this)
    })
    .find_map(
        |c| match c.downcast_ref::<serde_saphyr::Error>()?.without_snippet() {
            serde_saphyr::Error::Budget { breach, location } => Some((breach, location)),
            _ => None,
        },
    );
    let Some((breach, location)) = budget else {
        return parse_err(e);
    };
    let what = match breach {
        B::Nodes { nodes } => format!("more than {} nodes", nodes.saturating_sub(1)),
        B::Depth { depth } => format!("nested {depth} levels deep"),
        B::Aliases { aliases } => format!("{aliases} aliases"),
        B::AliasAnchorRatio { aliases, anchors } => {
            format!("{aliases} aliases to {anchors} anchors")
        }
        B::ScalarBytes { total_scalar_bytes } => format!("{total_scalar_bytes} bytes of text"),
        _ => "beyond the reader's limits".to_string(),
    };
    Error::internal(format!(
        "line {} column {}: refused to read a document this large or deeply nested ({what})",
        location.line(),
        location.column()
    ))
}

/// Parse JSON into `T`.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(parse_err)
}

/// Parse text in the given format.
pub fn parse<T: DeserializeOwned>(text: &str, format: Format) -> Result<T> {
    match format {
        Format::Yaml => from_yaml(text),
        Format::Json => from_json(text),
    }
}

/// Bytes to UTF-8, with an error that says so.
pub fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| Error::internal(format!("not valid UTF-8: {e}")))
}

/// YAML with the given indentation step, newline-terminated.
pub fn to_yaml_indent<T: Serialize>(value: &T, indent: usize) -> Result<String> {
    let opts = serde_saphyr::ser_options! { indent_step: indent };
    let mut s = serde_saphyr::to_string_with_options(value, opts)
        .map_err(|e| Error::internal(format!("failed to encode YAML: {e}")))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// Documents (recipes, snapshots) use two-space YAML.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String> {
    to_yaml_indent(value, 2)
}

/// Compact JSON with Go's HTML-safe escaping, as Helm's `toJson` writes it.
pub fn to_json_compact<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let s = serde_json::to_string(value)
        .map_err(|e| Error::internal(format!("failed to encode JSON: {e}")))?;
    Ok(html_safe(&s))
}

/// `<`, `>` and `&` can only occur inside JSON strings, so replacing them
/// in the text is exact.
fn html_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out
}

/// Pretty JSON, two-space indent, HTML-safe escaping like upstream, newline
/// at the end.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let s = serde_json::to_string_pretty(value)
        .map_err(|e| Error::internal(format!("failed to encode JSON: {e}")))?;
    let mut out = html_safe(&s);
    out.push('\n');
    Ok(out)
}

/// A float as Go's `%v` prints it, which is how upstream renders readings:
/// shortest round-trip digits, exponent form (signed, at least two digits)
/// when the decimal exponent is below -4 or at least 6.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return "0".into();
    }
    let exp = f.abs().log10().floor() as i32;
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let sci = format!("{f:e}");
    let (mantissa, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let sign = if e < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", e.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_bomb_is_refused_in_words() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = from_yaml::<serde_json::Value>(&doc).unwrap_err();
        let msg = e.message();
        assert!(
            msg.contains("refused to read a document this large"),
            "{msg}"
        );
        assert!(msg.contains("nodes)"), "{msg}");
        assert!(!msg.contains('{'), "no internal value: {msg}");
    }

    #[test]
    fn go_float_matches_percent_v() {
        for (f, s) in [
            (24.04, "24.04"),
            (22.10, "22.1"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.00001, "1e-05"),
            (1e21, "1e+21"),
            (0.5, "0.5"),
            (1.0, "1"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(go_float(f), s, "{f}");
        }
    }

    #[test]
    fn json_is_html_safe() {
        let s = to_json(&serde_json::json!({"v": ">= 1 & <2"})).unwrap();
        assert!(s.contains(r#""\u003e= 1 \u0026 \u003c2""#), "{s}");
        assert!(s.ends_with("}\n"));
    }

    #[test]
    fn yaml_rejects_duplicate_keys_and_oversize() {
        assert!(from_yaml::<serde_json::Value>("a: 1\na: 2\n").is_err());
        let big = "x".repeat(MAX_DOCUMENT_BYTES + 1);
        assert!(from_yaml::<serde_json::Value>(&big).is_err());
    }

    #[test]
    fn yaml_quotes_strings_that_would_change_type() {
        let s = to_yaml(&serde_json::json!({"v": "24.04", "b": "true", "e": ""})).unwrap();
        let back: serde_json::Value = from_yaml(&s).unwrap();
        assert_eq!(back["v"], "24.04");
        assert_eq!(back["b"], "true");
        assert_eq!(back["e"], "");
    }
}
