//! Plain text lifted out of a Tera template before Tera parses it. Tera's
//! parser (pest) spends about a thousand instructions on each character of
//! text between tags, trying every tag opener at each one; a bundle's
//! templates are mostly such text, and parsing them was 40% of `aicr
//! bundle`'s instructions. Each long run of text becomes `{{ N | lifted }}`,
//! and the `lifted` filter gives back text `N`, so the output is the same
//! byte for byte. Owns only that rewrite: what the templates say is
//! `render`'s.

/// Runs shorter than this stay: the tag that would replace them costs
/// about as much to parse.
const MIN_LIFT: usize = 32;

/// The filter that gives lifted text back.
pub(crate) const FILTER: &str = "lifted";

/// `src` with its long runs of text replaced by `{{ N | lifted }}`, each
/// text appended to `texts` at `N` as Tera would output it: trimmed where a
/// neighbouring tag's `-` asks for it. Tags are copied as they are (string
/// literals in them may hold `}}`), and so are `raw` blocks, whose content
/// is text that must not be rewritten. Text beside a comment with
/// whitespace control stays too: Tera does not trim after `-#}` the way it
/// does after `-}}` and `-%}`, and keeping the text keeps its behaviour
/// whatever it is. An unterminated tag ends the rewrite: the rest is
/// copied for Tera to report.
pub(crate) fn lift(src: &str, texts: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(src.len() / 2);
    let mut rest = src;
    // Whether the tag before `rest` ends with `-` (trims the text after
    // it), and whether it is a comment that does.
    let (mut trim_start, mut after_comment) = (false, false);
    loop {
        let at = opener(rest).unwrap_or(rest.len());
        let (text, tail) = rest.split_at(at);
        let trim_end = tail.as_bytes().get(2) == Some(&b'-');
        let keep = after_comment || (trim_end && tail.as_bytes()[1] == b'#');
        push_text(&mut out, text, (trim_start, trim_end), keep, texts);
        if tail.is_empty() {
            return out;
        }
        let Some(end) = tag_end(tail) else {
            out.push_str(tail);
            return out;
        };
        let mut copied = end;
        if inner(&tail[..end]) == "raw" {
            match raw_end(&tail[end..]) {
                Some(e) => copied = end + e,
                None => {
                    out.push_str(tail);
                    return out;
                }
            }
        }
        let tag = &tail[..copied];
        out.push_str(tag);
        trim_start = tag[..tag.len() - 2].ends_with('-');
        after_comment = trim_start && tag.ends_with("#}");
        rest = &tail[copied..];
    }
}

fn push_text(
    out: &mut String,
    text: &str,
    (trim_start, trim_end): (bool, bool),
    keep: bool,
    texts: &mut Vec<String>,
) {
    let mut t = text;
    if trim_start {
        t = t.trim_start();
    }
    if trim_end {
        t = t.trim_end();
    }
    if keep || t.len() < MIN_LIFT {
        // As written: Tera applies the trims itself.
        out.push_str(text);
        return;
    }
    out.push_str(&format!("{{{{ {} | {FILTER} }}}}", texts.len()));
    texts.push(t.to_string());
}

/// Where the next `{{`, `{%` or `{#` starts.
fn opener(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find('{') {
        let i = from + i;
        if matches!(b.get(i + 1), Some(b'{' | b'%' | b'#')) {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// The length of the tag `s` starts with, through its closer; quoted
/// strings inside are skipped.
fn tag_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let close = match b[1] {
        b'{' => b'}',
        b'%' => b'%',
        _ => b'#',
    };
    let mut i = 2;
    while i + 1 < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') if close != b'#' => {
                i += 1 + s[i + 1..].find(q as char)?;
            }
            c if c == close && b[i + 1] == b'}' => return Some(i + 2),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A tag's words without its delimiters and whitespace control.
fn inner(tag: &str) -> &str {
    tag[2..tag.len() - 2].trim_matches(|c: char| c == '-' || c.is_whitespace())
}

/// The length through the `endraw` tag that closes a raw block.
fn raw_end(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("{%") {
        let start = from + i;
        let end = start + tag_end(&s[start..])?;
        if inner(&s[start..end]) == "endraw" {
            return Some(end);
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tera::{Context, Tera};

    fn render(src: &str, lifted: bool) -> String {
        let mut texts = Vec::new();
        let src = if lifted {
            lift(src, &mut texts)
        } else {
            src.to_string()
        };
        let mut t = Tera::default();
        t.autoescape_on(vec![]);
        t.register_filter(
            FILTER,
            move |v: &tera::Value, _: &std::collections::HashMap<String, tera::Value>| {
                let i = v.as_u64().unwrap() as usize;
                Ok(tera::Value::String(texts[i].clone()))
            },
        );
        t.add_raw_template("t", &src).unwrap();
        let mut c = Context::new();
        c.insert("xs", &["a", "b"]);
        c.insert("flag", &true);
        t.render("t", &c).unwrap()
    }

    const LONG: &str = "  a line of plain text long enough to be lifted  \n";

    #[test]
    fn output_is_unchanged_whatever_the_whitespace_control() {
        let cases = [
            format!("{LONG}{{{{ xs.0 }}}}{LONG}"),
            format!("{LONG}{{{{- xs.0 -}}}}{LONG}"),
            format!("{{% for x in xs -%}}{LONG}{{{{ x }}}}{LONG}{{%- endfor %}}{LONG}"),
            format!("{{# a comment -#}}{LONG}{{#- another #}}{LONG}"),
            format!("{LONG}{{# a comment -#}}{LONG}{{# plain #}}{LONG}"),
            format!("{{% if flag %}}{LONG}{{% else %}}{LONG}{{% endif -%}}\n\n  short\n"),
            format!("{{{{ \"}}}}\" }}}}{LONG}{{{{ '%}}' }}}}{LONG}"),
            format!("{{% raw -%}}\n{{{{ not a tag }}}}{LONG}{{%- endraw %}}{LONG}"),
            format!("{LONG}{{% raw %}}{LONG}{{% endraw -%}}   {LONG}"),
            "short {{ xs.1 }} text".to_string(),
        ];
        for src in &cases {
            assert_eq!(render(src, true), render(src, false), "{src:?}");
        }
    }

    #[test]
    fn long_text_goes_short_text_and_raw_blocks_stay() {
        let mut texts = Vec::new();
        let src = format!("{LONG}{{{{ x }}}}ab{{% raw %}}{LONG}{{% endraw %}}");
        let out = lift(&src, &mut texts);
        assert_eq!(
            out,
            format!("{{{{ 0 | lifted }}}}{{{{ x }}}}ab{{% raw %}}{LONG}{{% endraw %}}")
        );
        assert_eq!(texts, [LONG]);
        // An unterminated tag is left for Tera to report.
        assert_eq!(lift("x {{ y", &mut texts), "x {{ y");
    }
}
