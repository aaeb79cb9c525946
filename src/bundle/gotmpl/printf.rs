//! Go's `fmt.Sprintf`, for the `printf` template function: flags
//! (`-+# 0`), width and precision (also `*` and `[n]` argument indexes),
//! the verbs `v s q x X d b o O c U t f F e E g G T %`, and Go's in-band
//! errors (`%!d(string=x)`, `%!v(MISSING)`, `%!(EXTRA int=2)`,
//! `%!(NOVERB)`). Arguments are typed as the rest of gotmpl types them
//! (integers `int`, other numbers `float64`); lists and maps print their
//! elements with the same verb, maps in key order, as Go does.

use serde_json::Value;

use super::{Special, is_int, special, type_name};

/// One directive's flags, width and precision.
#[derive(Debug, Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

/// `fmt.Sprintf(format, args...)`. `helm_values` is Helm's `.Values`
/// object, whose Go type (`common.Values`) shows in `%T` and `%!(EXTRA …)`.
pub(super) fn sprintf(format: &str, args: &[Value], helm_values: Option<&Value>) -> String {
    let type_of = |v: &Value| -> &'static str {
        if v.is_object() && helm_values.is_some_and(|h| h == v) {
            "common.Values"
        } else {
            type_of(v)
        }
    };
    let mut out = String::new();
    let chars: Vec<char> = format.chars().collect();
    let end = chars.len();
    let mut i = 0;
    let mut arg_num = 0;
    let mut reordered = false;
    while i < end {
        let start = i;
        while i < end && chars[i] != '%' {
            i += 1;
        }
        out.extend(&chars[start..i]);
        if i >= end {
            break;
        }
        i += 1;
        let mut f = Spec::default();
        while i < end {
            match chars[i] {
                '#' => f.sharp = true,
                '0' => f.zero = !f.minus,
                '+' => f.plus = true,
                '-' => {
                    f.minus = true;
                    f.zero = false;
                }
                ' ' => f.space = true,
                _ => break,
            }
            i += 1;
        }
        let mut good_arg = true;
        let mut after_index;
        (arg_num, i, after_index, good_arg) =
            arg_number(&chars, i, arg_num, args.len(), good_arg, &mut reordered);
        // Width.
        if i < end && chars[i] == '*' {
            i += 1;
            match args.get(arg_num).and_then(int_of) {
                Some(w) => {
                    if w < 0 {
                        f.minus = true;
                        f.zero = false;
                    }
                    f.wid = usize::try_from(w.unsigned_abs()).ok();
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            arg_num += 1;
            after_index = false;
        } else {
            let (n, next) = parse_num(&chars, i);
            f.wid = n;
            i = next;
            if after_index && f.wid.is_some() {
                good_arg = false;
            }
        }
        // Precision.
        if i + 1 < end && chars[i] == '.' {
            i += 1;
            if after_index {
                good_arg = false;
            }
            (arg_num, i, after_index, good_arg) =
                arg_number(&chars, i, arg_num, args.len(), good_arg, &mut reordered);
            if i < end && chars[i] == '*' {
                i += 1;
                match args.get(arg_num).and_then(int_of) {
                    Some(p) if p >= 0 => f.prec = usize::try_from(p).ok(),
                    _ => out.push_str("%!(BADPREC)"),
                }
                arg_num += 1;
                after_index = false;
            } else {
                let (n, next) = parse_num(&chars, i);
                f.prec = Some(n.unwrap_or(0));
                i = next;
            }
        }
        if !after_index {
            (arg_num, i, _, good_arg) =
                arg_number(&chars, i, arg_num, args.len(), good_arg, &mut reordered);
        }
        if i >= end {
            out.push_str("%!(NOVERB)");
            break;
        }
        let verb = chars[i];
        i += 1;
        if verb == '%' {
            out.push('%');
        } else if !good_arg {
            out.push_str(&format!("%!{verb}(BADINDEX)"));
        } else if arg_num >= args.len() {
            out.push_str(&format!("%!{verb}(MISSING)"));
        } else {
            // `%+v` and `%#v` mean struct fields and Go syntax, not signs.
            if verb == 'v' {
                f.plus = false;
                f.sharp = false;
            }
            let a = &args[arg_num];
            if verb == 'T' {
                pad(&mut out, &f, if a.is_null() { "<nil>" } else { type_of(a) });
            } else {
                print_arg(&mut out, &f, a, verb, true);
            }
            arg_num += 1;
        }
    }
    if !reordered && arg_num < args.len() {
        out.push_str("%!(EXTRA ");
        for (n, a) in args[arg_num..].iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            if a.is_null() {
                out.push_str("<nil>");
            } else {
                out.push_str(type_of(a));
                out.push('=');
                print_arg(&mut out, &Spec::default(), a, 'v', true);
            }
        }
        out.push(')');
    }
    out
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) if is_int(n) => n.as_i64(),
        _ => None,
    }
}

/// Go's `parsenum`: a decimal number at `i`, if any.
fn parse_num(chars: &[char], mut i: usize) -> (Option<usize>, usize) {
    let start = i;
    let mut n: usize = 0;
    while i < chars.len() && chars[i].is_ascii_digit() {
        if n > 1_000_000 {
            return (None, chars.len());
        }
        n = n * 10 + chars[i].to_digit(10).unwrap_or(0) as usize;
        i += 1;
    }
    ((i > start).then_some(n), i)
}

/// Go's `argNumber`: an explicit `[n]` argument index at `i`.
fn arg_number(
    chars: &[char],
    i: usize,
    arg_num: usize,
    num_args: usize,
    good: bool,
    reordered: &mut bool,
) -> (usize, usize, bool, bool) {
    if chars.get(i) != Some(&'[') {
        return (arg_num, i, false, good);
    }
    *reordered = true;
    let Some(close) = chars[i + 1..].iter().position(|c| *c == ']') else {
        return (arg_num, i + 1, false, false);
    };
    let text: String = chars[i + 1..i + 1 + close].iter().collect();
    let next = i + close + 2;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return (arg_num, next, false, false);
    }
    match text.parse::<usize>() {
        Ok(n) if n >= 1 && n <= num_args => (n - 1, next, true, good),
        _ => (arg_num, next, true, false),
    }
}

/// Go's name of a value's dynamic type, as `%T` and the error forms print it.
fn type_of(v: &Value) -> &'static str {
    match special(v) {
        Some(Special::Time(_)) => "time.Time",
        Some(Special::Reading { .. }) => "measurement.Reading",
        None => type_name(v),
    }
}

/// Go's `printArg` (`top`) and `printValue` (an element of a list or map).
fn print_arg(out: &mut String, f: &Spec, v: &Value, verb: char, top: bool) {
    match special(v) {
        Some(Special::Reading { any, text }) => {
            if matches!(verb, 'v' | 's' | 'x' | 'X' | 'q') {
                fmt_string(out, f, text, verb, v);
            } else {
                print_arg(out, f, any, verb, top);
            }
            return;
        }
        Some(Special::Time(_)) => {
            let text = super::print_value(v, "<nil>");
            fmt_string(out, f, &text, verb, v);
            return;
        }
        None => {}
    }
    match v {
        Value::Null => {
            // A nil inside a list or map prints as <nil> whatever the verb.
            if !top || verb == 'v' {
                pad(out, f, "<nil>");
            } else {
                out.push_str(&format!("%!{verb}(<nil>)"));
            }
        }
        Value::Bool(b) => match verb {
            't' | 'v' => pad(out, f, if *b { "true" } else { "false" }),
            _ => bad_verb(out, f, verb, v),
        },
        Value::String(s) => fmt_string(out, f, s, verb, v),
        Value::Number(n) if is_int(n) => {
            let (neg, mag) = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => (i < 0, i.unsigned_abs()),
                (None, Some(u)) => (false, u),
                _ => (false, 0),
            };
            fmt_int(out, f, neg, mag, verb, v);
        }
        Value::Number(n) => fmt_float(out, f, n.as_f64().unwrap_or_default(), verb, v),
        Value::Array(items) => {
            out.push('[');
            for (n, x) in items.iter().enumerate() {
                if n > 0 {
                    out.push(' ');
                }
                print_arg(out, f, x, verb, false);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push_str("map[");
            for (n, (k, x)) in m.iter().enumerate() {
                if n > 0 {
                    out.push(' ');
                }
                fmt_string(out, f, k, verb, &Value::String(k.clone()));
                out.push(':');
                print_arg(out, f, x, verb, false);
            }
            out.push(']');
        }
    }
}

/// `%!verb(type=value)`, the value printed with `%v` and the same flags.
fn bad_verb(out: &mut String, f: &Spec, verb: char, v: &Value) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    out.push_str(type_of(v));
    out.push('=');
    let plain = match special(v) {
        Some(Special::Reading { any, .. }) => any,
        _ => v,
    };
    print_arg(out, f, plain, 'v', true);
    out.push(')');
}

/// Pad to the width: spaces (zeros with the `0` flag) on the left, or
/// spaces on the right with `-`.
fn pad(out: &mut String, f: &Spec, s: &str) {
    let len = s.chars().count();
    let fill = f.wid.unwrap_or(0).saturating_sub(len);
    if f.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        out.extend(std::iter::repeat_n(if f.zero { '0' } else { ' ' }, fill));
        out.push_str(s);
    }
}

fn truncate(s: &str, f: &Spec) -> String {
    match f.prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    }
}

fn fmt_string(out: &mut String, f: &Spec, s: &str, verb: char, v: &Value) {
    match verb {
        'v' | 's' => pad(out, f, &truncate(s, f)),
        'q' => {
            let s = truncate(s, f);
            let q = if f.sharp && !s.contains(['`', '\n', '\r', '\t']) {
                format!("`{s}`")
            } else {
                quote(&s, '"', f.plus)
            };
            pad(out, f, &q);
        }
        'x' | 'X' => {
            let bytes = s.as_bytes();
            let bytes = &bytes[..f.prec.unwrap_or(bytes.len()).min(bytes.len())];
            let mut hex = String::new();
            for (n, b) in bytes.iter().enumerate() {
                if f.space && n > 0 {
                    hex.push(' ');
                }
                if f.sharp && (f.space || n == 0) {
                    hex.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    hex.push_str(&format!("{b:02x}"));
                } else {
                    hex.push_str(&format!("{b:02X}"));
                }
            }
            pad(out, f, &hex);
        }
        _ => bad_verb(out, f, verb, v),
    }
}

/// Go's `unicode.IsPrint`, near enough: what `strconv.Quote` keeps as is.
fn printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{e000}'..='\u{f8ff}' | '\u{fff9}'..='\u{fffb}'))
}

/// `strconv.Quote` (`"`) and `strconv.QuoteRune` (`'`); `ascii` escapes
/// everything beyond ASCII, as `%+q` does.
pub(super) fn quote(s: &str, q: char, ascii: bool) -> String {
    let mut out = String::new();
    out.push(q);
    for c in s.chars() {
        match c {
            c if c == q || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if ascii && !c.is_ascii() || !printable(c) => {
                let n = u32::from(c);
                if n < 0x20 || n == 0x7f {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

fn fmt_int(out: &mut String, f: &Spec, neg: bool, mag: u64, verb: char, v: &Value) {
    let (base, upper) = match verb {
        'v' | 'd' => (10, false),
        'b' => (2, false),
        'o' | 'O' => (8, false),
        'x' => (16, false),
        'X' => (16, true),
        'c' | 'q' | 'U' => {
            let ch = if neg {
                None
            } else {
                u32::try_from(mag).ok().and_then(char::from_u32)
            };
            let ch = ch.unwrap_or('\u{fffd}');
            let text = match verb {
                'c' => ch.to_string(),
                'q' => quote(&ch.to_string(), '\'', f.plus),
                _ => {
                    let mut t = if neg {
                        format!("U+-{mag:04X}")
                    } else {
                        format!("U+{mag:04X}")
                    };
                    if f.sharp && !neg && printable(ch) {
                        t.push_str(&format!(" '{ch}'"));
                    }
                    t
                }
            };
            let plain = Spec { zero: false, ..*f };
            pad(out, &plain, &text);
            return;
        }
        _ => return bad_verb(out, f, verb, v),
    };
    let mut prec = 0;
    if let Some(p) = f.prec {
        prec = p;
        if p == 0 && mag == 0 {
            let plain = Spec { zero: false, ..*f };
            pad(out, &plain, "");
            return;
        }
    } else if f.zero
        && !f.minus
        && let Some(w) = f.wid
    {
        prec = w;
        if neg || f.plus || f.space {
            prec = prec.saturating_sub(1);
        }
    }
    let mut digits = match base {
        2 => format!("{mag:b}"),
        8 => format!("{mag:o}"),
        16 if upper => format!("{mag:X}"),
        16 => format!("{mag:x}"),
        _ => mag.to_string(),
    };
    if digits.len() < prec {
        digits = format!("{}{digits}", "0".repeat(prec - digits.len()));
    }
    let mut prefix = String::new();
    if f.sharp {
        match base {
            2 => prefix.push_str("0b"),
            8 if !digits.starts_with('0') => prefix.push('0'),
            16 => prefix.push_str(if upper { "0X" } else { "0x" }),
            _ => {}
        }
    }
    if verb == 'O' {
        prefix.push_str("0o");
    }
    let sign = if neg {
        "-"
    } else if f.plus {
        "+"
    } else if f.space {
        " "
    } else {
        ""
    };
    let plain = Spec { zero: false, ..*f };
    pad(out, &plain, &format!("{sign}{prefix}{digits}"));
}

/// Decimal digits (no leading zeros) and decimal-point position of `x`
/// (> 0), rounded to `sig` significant digits or shortest round-trip.
fn decimal(x: f64, sig: Option<usize>) -> (String, i32) {
    let text = match sig {
        Some(p) => format!("{:.*e}", p.saturating_sub(1), x),
        None => format!("{x:e}"),
    };
    let (mant, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    if digits.is_empty() {
        return (String::new(), 0);
    }
    (digits.to_string(), exp + 1)
}

/// Go's `%e` body from digits: `d.ddde±XX` with `prec` fraction digits.
fn fmt_e(digits: &str, dp: i32, prec: usize, e: char) -> String {
    let mut s = String::new();
    let d = digits.as_bytes();
    s.push(d.first().map_or('0', |b| char::from(*b)));
    if prec > 0 {
        s.push('.');
        for k in 1..=prec {
            s.push(d.get(k).map_or('0', |b| char::from(*b)));
        }
    }
    let exp = if digits.is_empty() { 0 } else { dp - 1 };
    s.push(e);
    s.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        s.push('0');
    }
    s.push_str(&a.to_string());
    s
}

/// Go's `%f` body from digits with `prec` fraction digits.
fn fmt_f(digits: &str, dp: i32, prec: usize) -> String {
    let d = digits.as_bytes();
    let digit = |k: i32| -> char {
        usize::try_from(k)
            .ok()
            .and_then(|k| d.get(k))
            .map_or('0', |b| char::from(*b))
    };
    let mut s = String::new();
    if dp > 0 {
        for k in 0..dp {
            s.push(digit(k));
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for k in 0..prec as i32 {
            s.push(digit(dp + k));
        }
    }
    s
}

/// `strconv.FormatFloat(x, 'g', prec)` for x >= 0.
fn fmt_g(x: f64, prec: Option<usize>, e: char) -> String {
    let shortest = prec.is_none();
    let p = prec.map(|p| p.max(1));
    let (digits, dp) = decimal(x, p);
    let nd = digits.len() as i32;
    let mut eprec = p.map_or(nd, |p| p as i32);
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        let mut pr = p.map_or(nd, |p| p as i32);
        if pr > nd {
            pr = nd;
        }
        return fmt_e(&digits, dp, (pr - 1).max(0) as usize, e);
    }
    // Shortest: all the digits (`pr` is already `nd`).
    let mut pr = p.map_or(nd, |p| p as i32);
    if pr > dp {
        pr = nd;
    }
    fmt_f(&digits, dp, (pr - dp).max(0) as usize)
}

/// `strconv.FormatFloat(x, 'x', -1)`: `0x1.8p+00`.
fn fmt_hex_float(x: f64, upper: bool) -> String {
    let bits = x.to_bits();
    let mut exp = ((bits >> 52) & 0x7ff) as i32;
    let mut mant = bits & ((1 << 52) - 1);
    if exp == 0 {
        exp += 1;
    } else {
        mant |= 1 << 52;
    }
    exp -= 1023;
    if mant == 0 {
        exp = 0;
    }
    mant <<= 60 - 52;
    while mant != 0 && mant & (1 << 60) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    let digits = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut s = String::from(if upper { "0X" } else { "0x" });
    s.push(char::from(b'0' + ((mant >> 60) & 1) as u8));
    mant <<= 4;
    if mant != 0 {
        s.push('.');
        while mant != 0 {
            s.push(char::from(digits[((mant >> 60) & 15) as usize]));
            mant <<= 4;
        }
    }
    s.push(if upper { 'P' } else { 'p' });
    s.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        s.push('0');
    }
    s.push_str(&a.to_string());
    s
}

fn fmt_float(out: &mut String, f: &Spec, x: f64, verb: char, v: &Value) {
    let neg = x.is_sign_negative();
    let a = x.abs();
    let body = match verb {
        'v' | 'g' => fmt_g(a, f.prec, 'e'),
        'G' => fmt_g(a, f.prec, 'E'),
        'f' | 'F' => format!("{:.*}", f.prec.unwrap_or(6), a),
        'e' | 'E' => {
            let prec = f.prec.unwrap_or(6);
            let (digits, dp) = decimal(a, Some(prec + 1));
            fmt_e(&digits, dp, prec, verb)
        }
        'x' | 'X' => fmt_hex_float(a, verb == 'X'),
        _ => return bad_verb(out, f, verb, v),
    };
    let sign = if neg {
        "-"
    } else if f.plus {
        "+"
    } else if f.space {
        " "
    } else {
        ""
    };
    if !sign.is_empty() && f.zero && !f.minus {
        // The sign goes before the zeros.
        out.push_str(sign);
        let rest = Spec {
            wid: f.wid.map(|w| w.saturating_sub(1)),
            ..*f
        };
        pad(out, &rest, &body);
    } else {
        pad(out, f, &format!("{sign}{body}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(format: &str, args: Value) -> String {
        sprintf(format, args.as_array().unwrap(), None)
    }

    #[test]
    fn verbs_flags_and_in_band_errors_follow_go() {
        // Expected strings are Go's own output (checked through Helm).
        assert_eq!(
            p("%05s|%-5d|%05d", json!(["ab", 3, "x"])),
            "000ab|3    |%!d(string=0000x)"
        );
        assert_eq!(p("%5d", json!(["x"])), "%!d(string=    x)");
        assert_eq!(
            p("%x %x %x", json!([2.0, 1.5, "ab"])),
            "0x1p+01 0x1.8p+00 6162"
        );
        assert_eq!(
            p("%d %s", json!([["x", null, 1.0], {"k": "v"}])),
            "[%!d(string=x) <nil> %!d(float64=1)] map[k:v]"
        );
        assert_eq!(p("%q %q", json!([0, -1])), "'\\x00' '\u{fffd}'");
        assert_eq!(p("%d", json!([])), "%!d(MISSING)");
        assert_eq!(
            p("%d", json!([1, 2, "x", null])),
            "1%!(EXTRA int=2, string=x, <nil>)"
        );
        assert_eq!(
            p(
                "%.3g|%g|%e|%.1f|%08.3f|%+d|% d",
                json!([1234.5678, 1e6, 1.5, 0.25, -1.5, 3, 4])
            ),
            "1.23e+03|1e+06|1.500000e+00|0.2|-001.500|+3| 4"
        );
        assert_eq!(p("%s", json!([null])), "%!s(<nil>)");
        assert_eq!(p("%!", json!([])), "%!!(MISSING)");
        assert_eq!(p("%", json!([])), "%!(NOVERB)");
        assert_eq!(p("%[2]s-%[1]s", json!(["a", "b"])), "b-a");
        assert_eq!(p("%*d|%.*f", json!([4, 7, 1, 2.25])), "   7|2.2");
        let values = json!({"a": 1.0});
        assert_eq!(
            sprintf(
                "%T %T%v",
                &[values.clone(), json!({"b": 1.0}), json!(2)],
                Some(&values)
            ),
            "common.Values map[string]interface {}2"
        );
        assert_eq!(
            sprintf("", std::slice::from_ref(&values), Some(&values)),
            "%!(EXTRA common.Values=map[a:1])"
        );
    }
}
