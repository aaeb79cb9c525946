//! Helm's `toYaml`, byte for byte: Helm marshals through JSON into go-yaml
//! v2, so its YAML is go-yaml v2's: keys in go-yaml's natural order,
//! sequences not indented under their key, YAML 1.1 quoting (`"y"`, `"on"`,
//! `"1_000"` are quoted because go-yaml would read them back as something
//! other than a string), literal blocks for multi-line strings, and lines
//! folded at 80 columns.
//!
//! go-yaml v2's emitter is a port of libyaml's; so is `libyaml_safer`. This
//! module makes go-yaml's choices (which style to ask for, key order,
//! number text) and lets the libyaml emitter do the rest, as go-yaml does.
//! It owns nothing else: documents and recipes use `crate::yaml`.

use std::cmp::Ordering;

use libyaml_safer::{Emitter, Encoding, Event, MappingStyle, ScalarStyle, SequenceStyle};
use serde_json::Value;

/// `value` as Helm's `toYaml` writes it, before Helm trims the final
/// newline. Numbers are written as Go's JSON encoder and go-yaml write a
/// `float64`: integral values as integers.
pub(crate) fn to_yaml(value: &Value) -> Result<String, String> {
    let mut out = Vec::new();
    {
        let mut e = Emitter::new();
        e.set_output_string(&mut out);
        e.set_unicode(true);
        let mut emit = |ev: Event| e.emit(ev).map_err(|err| err.to_string());
        emit(Event::stream_start(Encoding::Utf8))?;
        emit(Event::document_start(None, &[], true))?;
        node(value, &mut emit)?;
        emit(Event::document_end(true))?;
        emit(Event::stream_end())?;
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn node(v: &Value, emit: &mut impl FnMut(Event) -> Result<(), String>) -> Result<(), String> {
    match v {
        Value::Null => plain(emit, "null"),
        Value::Bool(b) => plain(emit, if *b { "true" } else { "false" }),
        Value::Number(n) => plain(emit, &number(n)),
        Value::String(s) => string(emit, s),
        Value::Array(items) => {
            emit(Event::sequence_start(
                None,
                None,
                true,
                SequenceStyle::Block,
            ))?;
            for item in items {
                node(item, emit)?;
            }
            emit(Event::sequence_end())
        }
        Value::Object(map) => {
            emit(Event::mapping_start(None, None, true, MappingStyle::Block))?;
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| natural(a, b));
            for k in keys {
                string(emit, k)?;
                node(&map[k], emit)?;
            }
            emit(Event::mapping_end())
        }
    }
}

fn plain(emit: &mut impl FnMut(Event) -> Result<(), String>, text: &str) -> Result<(), String> {
    emit(Event::scalar(
        None,
        None,
        text,
        true,
        true,
        ScalarStyle::Plain,
    ))
}

/// go-yaml's choice for a string: a literal block when it spans lines,
/// plain when it would read back as the same string (the emitter falls
/// back to single quotes where plain text cannot hold it), double quotes
/// otherwise.
fn string(emit: &mut impl FnMut(Event) -> Result<(), String>, s: &str) -> Result<(), String> {
    let style = if s.contains('\n') {
        ScalarStyle::Literal
    } else if reads_as_string(s) {
        ScalarStyle::Plain
    } else {
        ScalarStyle::DoubleQuoted
    };
    emit(Event::scalar(None, None, s, true, true, style))
}

/// A JSON number as go-yaml writes the value JSON decodes to: an integer
/// when it fits one, else Go's shortest `%g` form.
fn number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or_default();
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        return (f as i64).to_string();
    }
    crate::yaml::go_float(f)
}

/// Whether go-yaml v2 (YAML 1.1) reads `s`, unquoted, back as the string
/// `s`: not a boolean, null, number, timestamp or base-60 float.
fn reads_as_string(s: &str) -> bool {
    const NOT_STRINGS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF", "<<",
    ];
    if NOT_STRINGS.contains(&s) {
        return false;
    }
    let first = s.as_bytes()[0];
    let numeric_hint = first.is_ascii_digit() || first == b'+' || first == b'-' || first == b'.';
    if !numeric_hint {
        return true;
    }
    if first == b'.' {
        return s.parse::<f64>().is_err() || s.contains(['i', 'I', 'n', 'N']);
    }
    let plain = s.replace('_', "");
    !(go_parse_int(&plain)
        || is_yaml_float(&plain)
        || binary(&plain)
        || (first.is_ascii_digit() && is_timestamp(s))
        || is_base60_float(s))
}

/// Go's `strconv.ParseInt(s, 0, 64)` succeeds (sign, then 0x/0o/0b or a
/// leading-zero octal, or decimal); underscores are already removed.
fn go_parse_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (digits, radix) = match body.get(..2) {
        Some("0x" | "0X") => (&body[2..], 16),
        Some("0o" | "0O") => (&body[2..], 8),
        Some("0b" | "0B") => (&body[2..], 2),
        _ if body.len() > 1 && body.starts_with('0') => (&body[1..], 8),
        _ => (body, 10),
    };
    !digits.is_empty() && i64::from_str_radix(digits, radix).is_ok()
        || !body.starts_with(['+', '-'])
            && !digits.is_empty()
            && u64::from_str_radix(digits, radix).is_ok()
}

/// go-yaml's float syntax: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let digits = |b: &[u8], i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let mut i = 0;
    let int_part = digits(b, &mut i);
    if int_part == 0 {
        if i >= b.len() || b[i] != b'.' {
            return false;
        }
        i += 1;
        if digits(b, &mut i) == 0 {
            return false;
        }
    } else if i < b.len() && b[i] == b'.' {
        i += 1;
        digits(b, &mut i);
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(b, &mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// go-yaml's explicit binary forms `0b…` and `-0b…`.
fn binary(s: &str) -> bool {
    let digits = s.strip_prefix("0b").or_else(|| s.strip_prefix("-0b"));
    digits.is_some_and(|d| !d.is_empty() && i64::from_str_radix(d, 2).is_ok())
}

/// go-yaml's timestamps: `YYYY-M-D`, optionally followed by `T`, `t` or a
/// space and a time.
fn is_timestamp(s: &str) -> bool {
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let day_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (d, time) = rest.split_at(day_end);
    let num = |x: &str, min: usize, max: usize| {
        (min..=max).contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit())
    };
    if !(num(y, 4, 4) && num(m, 1, 2) && num(d, 1, 2)) {
        return false;
    }
    if time.is_empty() {
        return true;
    }
    let t = &time[1..];
    matches!(time.as_bytes()[0], b'T' | b't' | b' ')
        && t.split(':').count() >= 3
        && t.split(':').take(2).all(|p| num(p, 1, 2))
}

/// go-yaml's base-60 floats (`1:20`, `-1:30:00.5`), which YAML 1.1 reads
/// as numbers.
fn is_base60_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (head, frac) = body.split_once('.').unwrap_or((body, ""));
    let mut groups = head.split(':');
    let Some(first) = groups.next() else {
        return false;
    };
    let first_ok = first.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && first.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    let rest: Vec<&str> = groups.collect();
    first_ok
        && !rest.is_empty()
        && rest.iter().all(|g| {
            (1..=2).contains(&g.len())
                && g.bytes().all(|b| b.is_ascii_digit())
                && (g.len() == 1 || g.as_bytes()[0] <= b'5')
        })
        && frac.bytes().all(|b| b.is_ascii_digit() || b == b'_')
}

/// go-yaml v2's key order: runs of digits compare as numbers, and where
/// the strings first differ a non-letter sorts before a letter.
fn natural(a: &str, b: &str) -> Ordering {
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let mut an: i64 = 0;
        let mut bn: i64 = 0;
        if ar[i] == '0' || br[i] == '0' {
            // Inside a number that already has a non-zero digit, a zero is
            // just a digit, not a leading zero.
            if ar[..i]
                .iter()
                .rev()
                .take_while(|c| c.is_ascii_digit())
                .any(|c| *c != '0')
            {
                an = 1;
                bn = 1;
            }
        }
        let run = |r: &[char], n: &mut i64| {
            let mut j = i;
            while j < r.len() && r[j].is_ascii_digit() {
                *n = n
                    .wrapping_mul(10)
                    .wrapping_add(i64::from(r[j] as u8 - b'0'));
                j += 1;
            }
            j
        };
        let (ai, bi) = (run(&ar, &mut an), run(&br, &mut bn));
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quoting_follows_yaml_1_1() {
        let out = to_yaml(&json!({"y": "yes", "n": "3", "a": "- x", "d": "2001-12-14", "t": "1:20", "s": "plain"}))
            .unwrap();
        assert_eq!(
            out,
            "a: '- x'\nd: \"2001-12-14\"\n\"n\": \"3\"\ns: plain\nt: \"1:20\"\n\"y\": \"yes\"\n"
        );
    }

    #[test]
    fn sequences_sit_under_their_key_and_numbers_read_as_go_writes_them() {
        let out = to_yaml(&json!({"l": [1, 1.5, 3.0, {"k": []}], "m": {}})).unwrap();
        assert_eq!(out, "l:\n- 1\n- 1.5\n- 3\n- k: []\nm: {}\n");
    }

    #[test]
    fn keys_sort_naturally() {
        let mut keys = vec!["a10", "a9", "_x", "ax", "a09"];
        keys.sort_by(|a, b| natural(a, b));
        assert_eq!(keys, ["_x", "a9", "a09", "a10", "ax"]);
    }
}
