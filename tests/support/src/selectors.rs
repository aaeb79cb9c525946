//! `labelSelector` and `fieldSelector` query parameters: parsing with the
//! apiserver's grammar and matching against stored objects.

use serde_json::Value;

/// A parsed `labelSelector`; all requirements must hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Comma,
    Open,
    Close,
    Equals,
    NotEquals,
    Bang,
    Greater,
    Less,
}

fn tokenize(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            ',' | '(' | ')' | '<' | '>' => {
                chars.next();
                tokens.push(match c {
                    ',' => Token::Comma,
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '<' => Token::Less,
                    _ => Token::Greater,
                });
            }
            '=' => {
                chars.next();
                chars.next_if_eq(&'=');
                tokens.push(Token::Equals);
            }
            '!' => {
                chars.next();
                tokens.push(if chars.next_if_eq(&'=').is_some() {
                    Token::NotEquals
                } else {
                    Token::Bang
                });
            }
            _ => {
                let mut word = String::new();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace() && !",()=!<>".contains(*c))
                {
                    word.push(c);
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    tokens
}

struct Parser {
    tokens: std::vec::IntoIter<Token>,
    peeked: Option<Token>,
}

impl Parser {
    fn peek(&mut self) -> Option<&Token> {
        if self.peeked.is_none() {
            self.peeked = self.tokens.next();
        }
        self.peeked.as_ref()
    }

    fn next(&mut self) -> Option<Token> {
        self.peeked.take().or_else(|| self.tokens.next())
    }

    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            other => Err(format!("found {other:?}, expected: {what}")),
        }
    }

    /// A value may be empty (`key=` selects an empty label value).
    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            None | Some(Token::Comma) | Some(Token::Close) => Ok(String::new()),
            _ => self.word("value"),
        }
    }

    fn values(&mut self) -> Result<Vec<String>, String> {
        if self.next() != Some(Token::Open) {
            return Err("expected: '('".into());
        }
        let mut values = vec![self.value()?];
        loop {
            match self.next() {
                Some(Token::Comma) => values.push(self.value()?),
                Some(Token::Close) => return Ok(values),
                other => return Err(format!("found {other:?}, expected: ',' or ')'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Token::Bang) {
            self.next();
            return Ok(Requirement::NotExists(self.word("identifier")?));
        }
        let key = self.word("identifier")?;
        let requirement = match self.peek() {
            None | Some(Token::Comma) => Requirement::Exists(key),
            Some(Token::Equals) => {
                self.next();
                Requirement::In(key, vec![self.value()?])
            }
            Some(Token::NotEquals) => {
                self.next();
                Requirement::NotIn(key, vec![self.value()?])
            }
            Some(Token::Word(w)) if w == "in" => {
                self.next();
                Requirement::In(key, self.values()?)
            }
            Some(Token::Word(w)) if w == "notin" => {
                self.next();
                Requirement::NotIn(key, self.values()?)
            }
            Some(Token::Greater | Token::Less) => {
                let greater = self.next() == Some(Token::Greater);
                let bound = self.word("integer")?;
                let bound = bound.parse().map_err(|_| {
                    format!("for 'Gt', 'Lt' operators, the value must be an integer: {bound}")
                })?;
                if greater {
                    Requirement::GreaterThan(key, bound)
                } else {
                    Requirement::LessThan(key, bound)
                }
            }
            Some(other) => return Err(format!("found {other:?}, expected an operator")),
        };
        Ok(requirement)
    }
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut parser = Parser {
            tokens: tokenize(input).into_iter(),
            peeked: None,
        };
        let mut requirements = Vec::new();
        if parser.peek().is_none() {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(
                parser
                    .requirement()
                    .map_err(|e| format!("unable to parse requirement: {e}"))?,
            );
            match parser.next() {
                None => return Ok(LabelSelector { requirements }),
                Some(Token::Comma) => continue,
                Some(other) => {
                    return Err(format!(
                        "unable to parse requirement: found {other:?}, expected: ','"
                    ));
                }
            }
        }
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::In(k, values) => label(k).is_some_and(|v| values.iter().any(|x| x == v)),
            Requirement::NotIn(k, values) => label(k).is_none_or(|v| values.iter().all(|x| x != v)),
            Requirement::GreaterThan(k, bound) => label(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *bound),
            Requirement::LessThan(k, bound) => label(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *bound),
        })
    }
}

/// A parsed `fieldSelector`: `path=value`, `path==value` or `path!=value`
/// terms, all of which must hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses and checks each field against those the resource supports
    /// (`metadata.name`, `metadata.namespace` and `extra`).
    pub fn parse(input: &str, extra: &[&str]) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in split_unescaped(input, ',') {
            if term.is_empty() {
                continue;
            }
            let (key, equal, value) = if let Some((k, v)) = split_once_unescaped(&term, "!=") {
                (k, false, v)
            } else if let Some((k, v)) = split_once_unescaped(&term, "==") {
                (k, true, v)
            } else if let Some((k, v)) = split_once_unescaped(&term, "=") {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                ));
            };
            let key = key.trim().to_string();
            if !["metadata.name", "metadata.namespace"].contains(&key.as_str())
                && !extra.contains(&key.as_str())
            {
                return Err(format!("field label not supported: {key}"));
            }
            terms.push((key, equal, unescape(&value)));
        }
        Ok(FieldSelector { terms })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms
            .iter()
            .all(|(path, equal, value)| (field_text(object, path) == *value) == *equal)
    }
}

/// A field as selectors compare it: absent is empty, scalars as text.
fn field_text(object: &Value, path: &str) -> String {
    // Events select on `source` meaning the reporting component.
    let path = if path == "source" {
        "source.component"
    } else {
        path
    };
    let value = path.split('.').fold(object, |v, key| &v[key]);
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn split_unescaped(input: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let last = parts.last_mut().expect("parts starts non-empty");
                last.push(c);
                if let Some(escaped) = chars.next() {
                    last.push(escaped);
                }
            }
            c if c == separator => parts.push(String::new()),
            c => parts.last_mut().expect("parts starts non-empty").push(c),
        }
    }
    parts
}

fn split_once_unescaped(term: &str, operator: &str) -> Option<(String, String)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if term[i..].starts_with(operator) {
            return Some((
                term[..i].to_string(),
                term[i + operator.len()..].to_string(),
            ));
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"name": "n", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_selector_operators() {
        let obj = labelled(json!({"app": "aicr", "tier": "gpu", "count": "3"}));
        let cases = [
            ("", true),
            ("app=aicr", true),
            ("app==aicr", true),
            ("app!=aicr", false),
            ("missing!=x", true),
            ("app in (aicr, other)", true),
            ("app notin (aicr)", false),
            ("missing notin (x)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=aicr,tier=cpu", false),
            ("app in (a,aicr),tier", true),
            ("count>2,count<4", true),
            ("count>3", false),
        ];
        for (selector, expected) in cases {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(parsed.matches(&obj), expected, "{selector}");
        }
    }

    #[test]
    fn label_selector_rejects_garbage() {
        for bad in ["app in aicr", "=x", "app=(", "a b", "count>x"] {
            let err = LabelSelector::parse(bad).unwrap_err();
            assert!(
                err.starts_with("unable to parse requirement"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn field_selector_matches_supported_fields_only() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"},
                         "spec": {"nodeName": "gpu-1", "hostNetwork": true}});
        let extra = ["spec.nodeName", "spec.hostNetwork"];
        let select = |s| FieldSelector::parse(s, &extra).unwrap().matches(&pod);
        assert!(select("metadata.name=p,metadata.namespace==ns"));
        assert!(select("spec.nodeName!=gpu-2"));
        assert!(select("spec.hostNetwork=true"));
        assert!(!select("metadata.name=q"));
        assert_eq!(
            FieldSelector::parse("spec.foo=x", &extra).unwrap_err(),
            "field label not supported: spec.foo"
        );
    }

    #[test]
    fn field_selector_honours_escapes() {
        let obj = json!({"metadata": {"name": "a,b=c"}});
        let selector = FieldSelector::parse(r"metadata.name=a\,b\=c", &[]).unwrap();
        assert!(selector.matches(&obj));
    }
}
