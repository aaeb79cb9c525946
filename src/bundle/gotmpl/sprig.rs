//! The Sprig functions that user templates reach for (Go's `printf` lives
//! in `printf`), with Sprig's argument order and Go's typing: a `string`
//! parameter takes
//! only a string (`upper 1` fails as it fails in Go), an `interface{}`
//! parameter takes anything.
//!
//! | function | Go signature (Sprig v3) |
//! |---|---|
//! | `dict k v …` | `func(...interface{}) map[string]interface{}` (keys printed with `%v`; an odd last key maps to `""`) |
//! | `list v …` | `func(...interface{}) []interface{}` |
//! | `has needle list` | `reflect.DeepEqual` against each element; nil list: false; not a list: error |
//! | `keys map …` | `func(...map[string]interface{}) []string` (Go's order is random; ours is sorted) |
//! | `sortAlpha list` | elements as strings, sorted; not a list: a one-element list |
//! | `join sep list` | elements as strings, nil elements dropped; a scalar joins alone |
//! | `splitList sep s` | `strings.Split(s, sep)` |
//! | `replace old new s` | `strings.Replace(s, old, new, -1)` |
//! | `contains sub s`, `hasPrefix pre s`, `hasSuffix suf s` | `strings.Contains(s, sub)` … |
//! | `trimPrefix pre s`, `trimSuffix suf s`, `trim s` | `strings.TrimPrefix(s, pre)` …, `strings.TrimSpace` |
//! | `upper s`, `lower s`, `title s` | `strings.ToUpper`, `ToLower`, `Title` (simple case mapping) |
//! | `now` | `time.Now()` |
//! | `date layout t` | `t` a time, or Unix seconds as an `int`; anything else means now (as in Sprig); local time zone |

use serde_json::Value;

use super::{Special, arity, gotime, is_int, print_value, special, str_arg, type_name};

/// Sprig's `strval`: a value as text (`%v`, Stringers through `String`).
fn strval(v: &Value) -> String {
    print_value(v, "<nil>")
}

/// Sprig's `strslice`: a list's non-nil elements as text; nil is empty;
/// anything else is a list of one.
fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter(|x| !x.is_null()).map(strval).collect(),
        Value::Null => Vec::new(),
        other => vec![strval(other)],
    }
}

fn strings(v: Vec<String>) -> Value {
    Value::Array(v.into_iter().map(Value::String).collect())
}

/// Go's simple (one rune to one rune) case mapping, as `strings.ToUpper`
/// uses: a rune whose full mapping is several runes keeps itself.
fn map_case<I: Iterator<Item = char> + ExactSizeIterator>(c: char, f: impl Fn(char) -> I) -> char {
    let mut m = f(c);
    if m.len() == 1 {
        m.next().unwrap_or(c)
    } else {
        c
    }
}

/// `strings.Title`'s word boundary.
fn separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    if c.is_alphanumeric() {
        return false;
    }
    c.is_whitespace()
}

/// `strings.Split(s, sep)`: an empty separator splits into characters.
fn split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(String::from).collect()
}

/// The instant a `date` argument stands for, in Unix nanoseconds.
fn instant(v: &Value) -> i128 {
    match (special(v), v) {
        (Some(Special::Time(n)), _) => n,
        (_, Value::Number(n)) if is_int(n) => {
            i128::from(n.as_i64().unwrap_or_default()) * 1_000_000_000
        }
        // Sprig formats the current time for anything else.
        _ => gotime::now(),
    }
}

/// Calls `name` if it is one of ours: `None` when it is not.
pub(super) fn call(name: &str, a: &[Value]) -> Option<Result<Value, String>> {
    let s = |v: String| Ok(Value::String(v));
    let b = |v: bool| Ok(Value::Bool(v));
    Some(match name {
        "dict" => {
            let mut m = serde_json::Map::new();
            for pair in a.chunks(2) {
                let v = pair.get(1).cloned().unwrap_or_else(|| Value::from(""));
                m.insert(strval(&pair[0]), v);
            }
            Ok(Value::Object(m))
        }
        "list" => Ok(Value::Array(a.to_vec())),
        "has" => arity(a, 2).and_then(|()| match &a[1] {
            Value::Null => Ok(Value::Bool(false)),
            Value::Array(items) => Ok(Value::Bool(items.contains(&a[0]))),
            other => Err(format!(
                "Cannot find has on type {}",
                match other {
                    Value::Object(_) if special(other).is_some() => "struct",
                    Value::Object(_) => "map",
                    Value::Number(n) if is_int(n) => "int",
                    Value::Number(_) => "float64",
                    Value::Bool(_) => "bool",
                    _ => "string",
                }
            )),
        }),
        "keys" => {
            let mut out = Vec::new();
            for v in a {
                match v {
                    Value::Null => {}
                    Value::Object(m) if special(v).is_none() => {
                        out.extend(m.keys().cloned());
                    }
                    other => {
                        return Some(Err(format!(
                            "wrong type for value; expected map[string]interface {{}}; got {}",
                            type_name(other)
                        )));
                    }
                }
            }
            Ok(strings(out))
        }
        "sortAlpha" => arity(a, 1).map(|()| {
            let mut v = match &a[0] {
                Value::Array(_) => strslice(&a[0]),
                other => vec![strval(other)],
            };
            v.sort();
            strings(v)
        }),
        "join" => arity(a, 2).and_then(|()| s(strslice(&a[1]).join(str_arg(&a[0])?))),
        "splitList" => {
            arity(a, 2).and_then(|()| Ok(strings(split(str_arg(&a[1])?, str_arg(&a[0])?))))
        }
        "replace" => {
            arity(a, 3).and_then(|()| s(str_arg(&a[2])?.replace(str_arg(&a[0])?, str_arg(&a[1])?)))
        }
        "contains" => arity(a, 2).and_then(|()| b(str_arg(&a[1])?.contains(str_arg(&a[0])?))),
        "hasPrefix" => arity(a, 2).and_then(|()| b(str_arg(&a[1])?.starts_with(str_arg(&a[0])?))),
        "hasSuffix" => arity(a, 2).and_then(|()| b(str_arg(&a[1])?.ends_with(str_arg(&a[0])?))),
        "trimPrefix" => arity(a, 2).and_then(|()| {
            let text = str_arg(&a[1])?;
            s(text
                .strip_prefix(str_arg(&a[0])?)
                .unwrap_or(text)
                .to_string())
        }),
        "trimSuffix" => arity(a, 2).and_then(|()| {
            let text = str_arg(&a[1])?;
            s(text
                .strip_suffix(str_arg(&a[0])?)
                .unwrap_or(text)
                .to_string())
        }),
        "trim" => arity(a, 1).and_then(|()| s(str_arg(&a[0])?.trim().to_string())),
        "upper" => arity(a, 1).and_then(|()| {
            s(str_arg(&a[0])?
                .chars()
                .map(|c| map_case(c, char::to_uppercase))
                .collect())
        }),
        "lower" => arity(a, 1).and_then(|()| {
            s(str_arg(&a[0])?
                .chars()
                .map(|c| map_case(c, char::to_lowercase))
                .collect())
        }),
        "title" => arity(a, 1).and_then(|()| {
            let mut prev = ' ';
            s(str_arg(&a[0])?
                .chars()
                .map(|c| {
                    let out = if separator(prev) {
                        map_case(c, char::to_uppercase)
                    } else {
                        c
                    };
                    prev = c;
                    out
                })
                .collect())
        }),
        "now" => arity(a, 0).map(|()| super::time_value(gotime::now())),
        "date" => arity(a, 2).and_then(|()| {
            let layout = str_arg(&a[0])?;
            gotime::format(layout, instant(&a[1]))
                .map(Value::String)
                .ok_or_else(|| "time out of range".to_string())
        }),
        _ => return None,
    })
}
