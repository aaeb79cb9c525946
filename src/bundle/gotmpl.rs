//! A Go `text/template` evaluator for the Helm-compatible subset that
//! catalog manifests use, rendered at bundle time, and for user templates
//! (`aicr snapshot --template`): actions with trim markers and comments,
//! variables (`$x := …`, `$x = …`), field chains, pipelines, parenthesised
//! sub-pipelines, `if`/`else if`/`with`/`range`, the built-ins (`and`,
//! `or` short-circuit, `not`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `len`,
//! `index`, `print`, `printf`), the Helm helpers `toYaml`, `toJson`,
//! `toString`, `nindent`, `indent`, `default`, `empty`, `quote`,
//! `required`, Sprig's conversions `int`, `int64` and `float64`, and the
//! Sprig functions listed in `sprig` (`dict`, `list`, `has`, `keys`,
//! `sortAlpha`, `join`, `splitList`, `replace`, `contains`, `hasPrefix`,
//! `hasSuffix`, `trim`, `trimPrefix`, `trimSuffix`, `upper`, `lower`,
//! `title`, `now`, `date`).
//!
//! Data is a `serde_json::Value`. By default it is read the way Helm reads
//! values (`DataTypes::Helm`): Helm decodes values through JSON, so every
//! number in the data is a Go `float64`, while number literals in the
//! template are `int` (`3`) or `float64` (`3.0`). Go refuses to compare the
//! two kinds, so `gt .Values.replicas 1` fails here as it fails in Helm,
//! and `gt (int .Values.replicas) 1` works in both. A missing map key
//! yields nil (printed as nothing), while a field of nil is an error. Helm's
//! engine is the judge of all of this: the test suite renders the
//! catalog's manifests and a generated corpus through both and requires the
//! same output.
//!
//! `DataTypes::Typed` reads data as typed Go structs instead (what
//! `aicr snapshot --template` gives upstream's Go templates): integers in
//! the data stay `int`, nil prints as Go prints it (`<no value>`), and a
//! string answers `.String` with itself (upstream's named string types,
//! such as a measurement's `Type`, have that method). Two Go values that
//! JSON has no form for are carried as one-entry objects under a reserved
//! key (see `reading` and `now`): a snapshot reading, which prints as
//! its text, answers `.String` and `.Any`, and is always true; and a
//! `time.Time`.
//!
//! Known gaps: `int64` yields an `int`, and the lists `splitList`, `keys`
//! and `sortAlpha` make are `[]string` in Go but plain lists here; only
//! printf's type names (`%T`, `%!s(int64=1)`) and `has` (Go's
//! `reflect.DeepEqual`) can tell. Go's order for `keys` is random, ours
//! sorted. A nil bound by `range` is accepted where Go refuses a nil
//! interface for a map parameter (`keys`). Not supported: `define`,
//! `template`, `block`, `break`, `continue`.
//!
//! It owns template syntax only; what data a manifest sees is `manifests`'
//! business.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::yaml;

mod gotime;
mod printf;
mod sprig;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone)]
struct Pipeline {
    line: usize,
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Vec<Operand>>,
}

#[derive(Debug, Clone)]
enum Operand {
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Lit(Value),
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Lit(Value),
    Open,
    Close,
    Pipe,
    Comma,
    Declare,
    Assign,
}

/// One `{{ … }}` after segmenting: its body and the line it starts on.
enum Segment {
    Text(String),
    Action(String, usize),
}

fn err(name: &str, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::internal(format!("template: {name}:{line}: {msg}"))
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Split source into text and actions, applying `{{-` / `-}}` trimming
/// and dropping comments.
fn segment(name: &str, src: &str) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    while let Some(rel) = src[pos..].find("{{") {
        let start = pos + rel;
        line += src[pos..start].matches('\n').count();
        let mut text = &src[pos..start];
        let mut body_start = start + 2;
        let rest = &src[body_start..];
        // A comment starts right after `{{` or after `{{-` and one space.
        let mut comment_at = body_start;
        if rest.starts_with('-') && rest[1..].starts_with(is_space) {
            text = text.trim_end_matches(is_space);
            body_start += 1;
            comment_at = body_start + rest[1..].chars().next().map_or(0, char::len_utf8);
        }
        out.push(Segment::Text(text.to_string()));
        let comment = comment_close(&src[comment_at..]);
        let close = match comment {
            Some(found) => comment_at + found.map_err(|m| err(name, line, m))?,
            None => find_close(&src[body_start..])
                .map(|i| body_start + i)
                .ok_or_else(|| err(name, line, "unclosed action"))?,
        };
        let action_line = line;
        line += src[start..close].matches('\n').count();
        let mut body = &src[body_start..close];
        let trim_right = body.ends_with('-') && body[..body.len() - 1].ends_with(is_space);
        if trim_right {
            body = &body[..body.len() - 1];
        }
        if comment.is_none() {
            out.push(Segment::Action(body.to_string(), action_line));
        }
        pos = close + 2;
        if trim_right {
            let skipped = src[pos..].len() - src[pos..].trim_start_matches(is_space).len();
            line += src[pos..pos + skipped].matches('\n').count();
            pos += skipped;
        }
    }
    out.push(Segment::Text(src[pos..].to_string()));
    Ok(out)
}

/// For an action that is a comment, the index of its closing `}}`: Go
/// reads a comment verbatim (quotes mean nothing) up to the first `*/`,
/// which must be followed by `}}` or ` -}}`. `None` if not a comment.
fn comment_close(s: &str) -> Option<std::result::Result<usize, &'static str>> {
    if !s.starts_with("/*") {
        return None;
    }
    let Some(end) = s[2..].find("*/").map(|i| 2 + i + 2) else {
        return Some(Err("unclosed comment"));
    };
    let after = &s[end..];
    if after.starts_with("}}") {
        Some(Ok(end))
    } else if after.starts_with(is_space) && after[1..].starts_with("-}}") {
        Some(Ok(end + 2))
    } else {
        Some(Err("comment ends before closing delimiter"))
    }
}

/// Index of the `}}` closing an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'`' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Tokens of one action body, each with whether whitespace preceded it
/// (so `(x).y` chains but `(x) .y` is two operands).
fn lex(name: &str, line: usize, body: &str) -> Result<Vec<(Tok, bool)>> {
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let fields = |i: &mut usize| {
        let mut f = Vec::new();
        while *i < chars.len()
            && chars[*i] == '.'
            && chars.get(*i + 1).is_some_and(|c| ident_char(*c))
        {
            *i += 1;
            let s = *i;
            while *i < chars.len() && ident_char(chars[*i]) {
                *i += 1;
            }
            f.push(chars[s..*i].iter().collect::<String>());
        }
        f
    };
    while i < chars.len() {
        let spaced = i == 0 || is_space(chars[i - 1]);
        let c = chars[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::Open
            }
            ')' => {
                i += 1;
                Tok::Close
            }
            '|' => {
                i += 1;
                Tok::Pipe
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Tok::Declare
            }
            '=' => {
                i += 1;
                Tok::Assign
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return Err(err(name, line, "unterminated quoted string"));
                    };
                    i += 1;
                    match ch {
                        '"' => break,
                        '\\' => {
                            let esc = chars.get(i).copied().unwrap_or('\\');
                            i += 1;
                            s.push(match esc {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => other,
                            });
                        }
                        other => s.push(other),
                    }
                }
                Tok::Lit(Value::String(s))
            }
            '`' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|c| *c == '`')
                    .ok_or_else(|| err(name, line, "unterminated raw quoted string"))?;
                let s: String = chars[i + 1..i + 1 + end].iter().collect();
                i += end + 2;
                Tok::Lit(Value::String(s))
            }
            '$' => {
                let s = i;
                i += 1;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let var: String = chars[s..i].iter().collect();
                Tok::Var(var, fields(&mut i))
            }
            '.' => {
                let f = fields(&mut i);
                if f.is_empty() {
                    i += 1;
                }
                Tok::Field(f)
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let s = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[s..i].iter().collect();
                let v = text
                    .parse::<i64>()
                    .map(Value::from)
                    .ok()
                    .or_else(|| {
                        text.parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map(Value::Number)
                    })
                    .ok_or_else(|| err(name, line, format!("bad number syntax: {text:?}")))?;
                Tok::Lit(v)
            }
            c if ident_char(c) => {
                let s = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[s..i].iter().collect();
                match word.as_str() {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "nil" => Tok::Lit(Value::Null),
                    _ => Tok::Ident(word),
                }
            }
            other => return Err(err(name, line, format!("unexpected {other:?} in action"))),
        };
        out.push((tok, spaced));
    }
    Ok(out)
}

/// How deep parentheses and blocks may nest. Templates come from `--data`
/// too, and the parser recurses: without a bound, hostile nesting would
/// overflow the stack instead of failing. Real charts nest a handful deep.
const MAX_DEPTH: usize = 100;

fn too_deep(name: &str, line: usize) -> Error {
    err(
        name,
        line,
        format!("nesting deeper than {MAX_DEPTH} levels"),
    )
}

struct PipeParser<'a> {
    name: &'a str,
    line: usize,
    toks: Vec<(Tok, bool)>,
    pos: usize,
    /// Open parentheses around the current position.
    depth: usize,
}

impl PipeParser<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        err(self.name, self.line, msg)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn pipeline(&mut self, allow_two_vars: bool) -> Result<Pipeline> {
        let mut decl = Vec::new();
        let mut assign = false;
        let save = self.pos;
        let mut vars = Vec::new();
        while let Some(Tok::Var(v, f)) = self.peek() {
            if !f.is_empty() {
                break;
            }
            vars.push(v.clone());
            self.pos += 1;
            if self.peek() == Some(&Tok::Comma) && allow_two_vars && vars.len() == 1 {
                self.pos += 1;
                continue;
            }
            break;
        }
        match self.peek() {
            Some(Tok::Declare) if !vars.is_empty() => {
                self.pos += 1;
                decl = vars;
            }
            Some(Tok::Assign) if vars.len() == 1 => {
                self.pos += 1;
                decl = vars;
                assign = true;
            }
            _ => self.pos = save,
        }
        let mut cmds = Vec::new();
        loop {
            let mut cmd = Vec::new();
            while let Some(t) = self.peek() {
                if matches!(t, Tok::Pipe | Tok::Close) {
                    break;
                }
                cmd.push(self.operand()?);
            }
            if cmd.is_empty() {
                return Err(self.err("missing command in pipeline"));
            }
            cmds.push(cmd);
            if self.peek() == Some(&Tok::Pipe) {
                self.pos += 1;
                continue;
            }
            break;
        }
        Ok(Pipeline {
            line: self.line,
            decl,
            assign,
            cmds,
        })
    }

    fn operand(&mut self) -> Result<Operand> {
        let (tok, _) = self.toks[self.pos].clone();
        self.pos += 1;
        Ok(match tok {
            Tok::Field(f) if f.is_empty() => Operand::Dot,
            Tok::Field(f) => Operand::Field(f),
            Tok::Var(v, f) => Operand::Var(v, f),
            Tok::Lit(v) => Operand::Lit(v),
            Tok::Ident(name) => {
                if matches!(
                    name.as_str(),
                    "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block"
                ) {
                    return Err(self.err(format!("unexpected keyword {name:?} in pipeline")));
                }
                Operand::Func(name)
            }
            Tok::Open => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(too_deep(self.name, self.line));
                }
                let inner = self.pipeline(false)?;
                self.depth -= 1;
                if self.peek() != Some(&Tok::Close) {
                    return Err(self.err("unclosed left paren"));
                }
                self.pos += 1;
                let mut chain = Vec::new();
                if let Some((Tok::Field(f), false)) = self.toks.get(self.pos)
                    && !f.is_empty()
                {
                    chain = f.clone();
                    self.pos += 1;
                }
                Operand::Sub(Box::new(inner), chain)
            }
            other => return Err(self.err(format!("unexpected {other:?} in operand"))),
        })
    }

    /// The pipeline starting at token `skip`, which must use every token.
    fn whole(&mut self, skip: usize, two_vars: bool) -> Result<Pipeline> {
        self.pos = skip;
        let p = self.pipeline(two_vars)?;
        if self.pos != self.toks.len() {
            return Err(self.err("unexpected tokens after pipeline"));
        }
        Ok(p)
    }
}

/// What an action is, for building the tree.
enum Act {
    Pipe(Pipeline),
    If(Pipeline),
    ElseIf(Pipeline),
    ElseWith(Pipeline),
    Else,
    End,
    With(Pipeline),
    Range(Pipeline),
}

fn classify(name: &str, body: &str, line: usize) -> Result<Act> {
    let toks = lex(name, line, body)?;
    let keyword = match toks.first() {
        Some((Tok::Ident(w), _)) => w.clone(),
        None => return Err(err(name, line, "missing value for command")),
        _ => String::new(),
    };
    let mut p = PipeParser {
        name,
        line,
        toks,
        pos: 0,
        depth: 0,
    };
    Ok(match keyword.as_str() {
        "if" => Act::If(p.whole(1, false)?),
        "with" => Act::With(p.whole(1, false)?),
        "range" => Act::Range(p.whole(1, true)?),
        "end" if p.toks.len() == 1 => Act::End,
        "else" => match p.toks.get(1) {
            None => Act::Else,
            Some((Tok::Ident(w), _)) if w == "if" => Act::ElseIf(p.whole(2, false)?),
            Some((Tok::Ident(w), _)) if w == "with" => Act::ElseWith(p.whole(2, false)?),
            _ => return Err(err(name, line, "unexpected tokens after else")),
        },
        "define" | "template" | "block" | "break" | "continue" => {
            return Err(err(
                name,
                line,
                format!("{keyword:?} is not supported by aicr's Go template engine"),
            ));
        }
        _ => Act::Pipe(p.whole(0, false)?),
    })
}

struct TreeBuilder<'a> {
    name: &'a str,
    segs: std::vec::IntoIter<Segment>,
    /// Blocks (`if`, `with`, `range`, `else with`) open around the list
    /// being built.
    depth: usize,
}

/// How a list of nodes ended.
enum Stop {
    Eof,
    End,
    Else,
    ElseIf(Pipeline),
    ElseWith(Pipeline),
}

impl TreeBuilder<'_> {
    fn list(&mut self) -> Result<(Vec<Node>, Stop, usize)> {
        self.depth += 1;
        let listed = self.list_inner();
        self.depth -= 1;
        listed
    }

    fn list_inner(&mut self) -> Result<(Vec<Node>, Stop, usize)> {
        let mut nodes = Vec::new();
        while let Some(seg) = self.segs.next() {
            let (body, line) = match seg {
                Segment::Text(t) => {
                    if !t.is_empty() {
                        nodes.push(Node::Text(t));
                    }
                    continue;
                }
                Segment::Action(b, l) => (b, l),
            };
            if self.depth > MAX_DEPTH {
                return Err(too_deep(self.name, line));
            }
            match classify(self.name, &body, line)? {
                Act::Pipe(p) => nodes.push(Node::Action(p)),
                Act::End => return Ok((nodes, Stop::End, line)),
                Act::Else => return Ok((nodes, Stop::Else, line)),
                Act::ElseIf(p) => return Ok((nodes, Stop::ElseIf(p), line)),
                Act::ElseWith(p) => return Ok((nodes, Stop::ElseWith(p), line)),
                Act::If(p) => nodes.push(self.if_chain(p, line)?),
                Act::With(p) => {
                    let (body, otherwise) = self.body_else(line, "with")?;
                    nodes.push(Node::With {
                        pipe: p,
                        body,
                        otherwise,
                    });
                }
                Act::Range(p) => {
                    let (body, otherwise) = self.body_else(line, "range")?;
                    nodes.push(Node::Range {
                        pipe: p,
                        body,
                        otherwise,
                    });
                }
            }
        }
        Ok((nodes, Stop::Eof, 0))
    }

    fn if_chain(&mut self, first: Pipeline, line: usize) -> Result<Node> {
        let mut branches = Vec::new();
        let mut cond = first;
        loop {
            let (body, stop, at) = self.list()?;
            branches.push((cond, body));
            match stop {
                Stop::End => {
                    return Ok(Node::If {
                        branches,
                        otherwise: Vec::new(),
                    });
                }
                Stop::Else => {
                    let (otherwise, stop, _) = self.list()?;
                    if !matches!(stop, Stop::End) {
                        return Err(err(self.name, at, "expected end after else"));
                    }
                    return Ok(Node::If {
                        branches,
                        otherwise,
                    });
                }
                Stop::ElseIf(p) => cond = p,
                Stop::ElseWith(_) => return Err(err(self.name, at, "else with inside if")),
                Stop::Eof => return Err(err(self.name, line, "unexpected EOF: if without end")),
            }
        }
    }

    fn body_else(&mut self, line: usize, what: &str) -> Result<(Vec<Node>, Vec<Node>)> {
        let (body, stop, at) = self.list()?;
        match stop {
            Stop::End => Ok((body, Vec::new())),
            Stop::Else => {
                let (otherwise, stop, _) = self.list()?;
                match stop {
                    Stop::End => Ok((body, otherwise)),
                    _ => Err(err(self.name, at, "expected end after else")),
                }
            }
            Stop::ElseWith(p) if what == "with" => {
                let (inner, otherwise) = self.body_else(at, what)?;
                Ok((
                    body,
                    vec![Node::With {
                        pipe: p,
                        body: inner,
                        otherwise,
                    }],
                ))
            }
            Stop::Eof => Err(err(
                self.name,
                line,
                format!("unexpected EOF: {what} without end"),
            )),
            _ => Err(err(self.name, at, format!("unexpected else in {what}"))),
        }
    }
}

impl Template {
    pub fn parse(name: &str, src: &str) -> Result<Template> {
        let mut b = TreeBuilder {
            name,
            segs: segment(name, src)?.into_iter(),
            depth: 0,
        };
        let (nodes, stop, line) = b.list()?;
        if !matches!(stop, Stop::Eof) {
            return Err(err(name, line, "unexpected end or else"));
        }
        Ok(Template {
            name: name.to_string(),
            nodes,
        })
    }

    /// Execute against `data` (the template's `.` and `$`), read as Helm
    /// reads values.
    pub fn render(&self, data: &Value) -> Result<String> {
        self.render_with(data, DataTypes::Helm)
    }

    /// Execute against `data`, typed as `types` says.
    pub(crate) fn render_with(&self, data: &Value, types: DataTypes) -> Result<String> {
        let typed = types == DataTypes::Typed;
        let data = if typed {
            data.clone()
        } else {
            as_helm_reads(data)
        };
        let mut ex = Exec {
            name: &self.name,
            vars: vec![("$".to_string(), data.clone())],
            out: String::new(),
            typed,
        };
        ex.walk(&data, &self.nodes)?;
        if typed {
            return Ok(ex.out);
        }
        Ok(delete_no_value(ex.out.into()).into_owned())
    }
}

/// What Helm's engine outputs for a template without actions: the text,
/// less every `<no value>` (as `delete_no_value` removes it). The same as parsing
/// and rendering it, without copying the text through the tree walker
/// (large CRD manifests are plain text), nor at all when there is nothing
/// to delete.
pub fn render_plain_text(src: &str) -> Option<Cow<'_, str>> {
    (!src.contains("{{")).then(|| delete_no_value(src.into()))
}

/// Helm prints a missing value as "<no value>" and then deletes that text
/// wherever it appears, template text included. `contains` is a vectorised
/// scan; `replace` walks the text byte by byte and copies it even when
/// there is nothing to delete, so it runs only when there is.
fn delete_no_value(out: Cow<'_, str>) -> Cow<'_, str> {
    if out.contains("<no value>") {
        out.replace("<no value>", "").into()
    } else {
        out
    }
}

/// How a template reads the numbers (and nils) in its data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum DataTypes {
    /// Helm values: every number a `float64`, `<no value>` deleted from
    /// the output. What bundle manifests and charts see.
    #[default]
    Helm,
    /// Typed Go structs: integers `int`, floats `float64`, nil printed as
    /// `<no value>` (plain `text/template`), strings answer `.String`.
    /// What snapshot templates see.
    Typed,
}

/// Reserved keys of the one-entry objects that carry Go values JSON has no
/// form for. NUL cannot appear in a YAML or JSON key a user writes by
/// accident.
const READING_KEY: &str = "\u{0}aicr.reading";
const TIME_KEY: &str = "\u{0}time.Time";

/// A Go value with methods, recognised by its reserved key.
enum Special<'a> {
    /// A snapshot reading: `Any` the raw value, `String` its text.
    Reading { any: &'a Value, text: &'a str },
    /// A `time.Time`, as Unix nanoseconds.
    Time(i128),
}

fn special(v: &Value) -> Option<Special<'_>> {
    let Value::Object(m) = v else { return None };
    if m.len() != 1 {
        return None;
    }
    match m.iter().next()? {
        (k, Value::Array(a)) if k == READING_KEY && a.len() == 2 => Some(Special::Reading {
            any: &a[0],
            text: a[1].as_str()?,
        }),
        (k, Value::String(n)) if k == TIME_KEY => n.parse().ok().map(Special::Time),
        _ => None,
    }
}

/// A snapshot reading for [`DataTypes::Typed`] data: prints as `text`,
/// `.String` gives `text`, `.Any` gives `any`, and it is true in `if`
/// whatever its value (a present reading is a non-nil Go interface).
pub(crate) fn reading(any: Value, text: impl Into<String>) -> Value {
    object([(
        READING_KEY,
        Value::Array(vec![any, Value::String(text.into())]),
    )])
}

/// A `time.Time` at `nanos` Unix nanoseconds.
fn time_value(nanos: i128) -> Value {
    object([(TIME_KEY, Value::String(nanos.to_string()))])
}

/// `v` with readings replaced by their raw values and times by their JSON
/// text: what `encoding/json` and YAML see of them.
fn plain(v: &Value) -> Value {
    match (special(v), v) {
        (Some(Special::Reading { any, .. }), _) => plain(any),
        (Some(Special::Time(n)), _) => {
            Value::String(gotime::format(gotime::JSON_LAYOUT, n).unwrap_or_default())
        }
        (None, Value::Array(a)) => Value::Array(a.iter().map(plain).collect()),
        (None, Value::Object(m)) => {
            Value::Object(m.iter().map(|(k, x)| (k.clone(), plain(x))).collect())
        }
        (None, other) => other.clone(),
    }
}

struct Exec<'a> {
    name: &'a str,
    vars: Vec<(String, Value)>,
    out: String,
    /// [`DataTypes::Typed`].
    typed: bool,
}

/// `v` with every number replaced by `f(number)`.
fn map_numbers(v: &Value, f: &impl Fn(&serde_json::Number) -> Value) -> Value {
    match v {
        Value::Number(n) => f(n),
        Value::Array(a) => Value::Array(a.iter().map(|x| map_numbers(x, f)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), map_numbers(x, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `data` as Helm's engine sees it: every number a `float64`.
fn as_helm_reads(data: &Value) -> Value {
    map_numbers(data, &|n| {
        n.as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number)
    })
}

/// Go's kinds of number: a template literal without a point (and `len`,
/// `int`) is an `int`; data and literals with a point are `float64`.
fn is_int(n: &serde_json::Number) -> bool {
    !n.is_f64()
}

/// A value as Go's `encoding/json` writes it inside `toJson`: integral
/// floats below 1e21 are written without a fraction.
fn go_json_numbers(v: &Value) -> Value {
    map_numbers(v, &|n| {
        let f = n.as_f64().unwrap_or_default();
        if n.is_f64() && f.fract() == 0.0 && f.abs() <= i64::MAX as f64 {
            Value::from(f as i64)
        } else {
            Value::Number(n.clone())
        }
    })
}

/// Go's notion of "empty": false, 0, nil, "" and empty collections.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// Go's `%v` for template output (Helm prints nil as nothing).
fn print_value(v: &Value, nil: &str) -> String {
    match special(v) {
        Some(Special::Reading { text, .. }) => return text.to_string(),
        Some(Special::Time(n)) => {
            return gotime::format(gotime::STRING_LAYOUT, n).unwrap_or_default();
        }
        None => {}
    }
    match v {
        Value::Null => nil.to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => yaml::go_float(n.as_f64().unwrap_or_default()),
        },
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| print_value(x, "<nil>")).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{k}:{}", print_value(x, "<nil>")))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match special(v) {
        Some(Special::Reading { .. }) => return "measurement.Reading",
        Some(Special::Time(_)) => return "time.Time",
        None => {}
    }
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(n) if is_int(n) => "int",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

impl Exec<'_> {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        err(self.name, line, msg)
    }

    fn walk(&mut self, dot: &Value, nodes: &[Node]) -> Result<()> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(dot, p)?;
                    if p.decl.is_empty() {
                        let nil = if self.typed { "<no value>" } else { "" };
                        self.out.push_str(&print_value(&v, nil));
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let mut chosen = None;
                    for (cond, body) in branches {
                        if truthy(&self.pipeline(dot, cond)?) {
                            chosen = Some(body);
                            break;
                        }
                    }
                    self.walk(dot, chosen.unwrap_or(otherwise))?;
                    self.vars.truncate(mark);
                }
                Node::With {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let v = self.pipeline(dot, pipe)?;
                    if truthy(&v) {
                        self.walk(&v, body)?;
                    } else {
                        self.walk(dot, otherwise)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => self.range(dot, pipe, body, otherwise)?,
            }
        }
        Ok(())
    }

    fn range(
        &mut self,
        dot: &Value,
        pipe: &Pipeline,
        body: &[Node],
        otherwise: &[Node],
    ) -> Result<()> {
        let mark = self.vars.len();
        let mut plain = pipe.clone();
        plain.decl.clear();
        let v = self.pipeline(dot, &plain)?;
        let items: Vec<(Value, Value)> = match &v {
            _ if special(&v).is_some() => {
                return Err(self.err(
                    pipe.line,
                    format!("range can't iterate over {}", print_value(&v, "<nil>")),
                ));
            }
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| (Value::from(i), x.clone()))
                .collect(),
            Value::Object(m) => m
                .iter()
                .map(|(k, x)| (Value::String(k.clone()), x.clone()))
                .collect(),
            Value::Null => Vec::new(),
            // Go 1.22 ranges over an int n as 0..n, one variable only.
            Value::Number(n) if is_int(n) && pipe.decl.len() < 2 => (0..n.as_i64().unwrap_or(0))
                .map(|i| (Value::from(i), Value::from(i)))
                .collect(),
            other => {
                return Err(self.err(
                    pipe.line,
                    format!("range can't iterate over {}", print_value(other, "<nil>")),
                ));
            }
        };
        if items.is_empty() {
            self.walk(dot, otherwise)?;
        }
        for (k, x) in items {
            let inner = self.vars.len();
            match pipe.decl.as_slice() {
                [one] => self.vars.push((one.clone(), x.clone())),
                [a, b] => {
                    self.vars.push((a.clone(), k));
                    self.vars.push((b.clone(), x.clone()));
                }
                _ => {}
            }
            self.walk(&x, body)?;
            self.vars.truncate(inner);
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn pipeline(&mut self, dot: &Value, p: &Pipeline) -> Result<Value> {
        let mut piped: Option<Value> = None;
        for cmd in &p.cmds {
            piped = Some(self.command(dot, cmd, piped, p.line)?);
        }
        let v = piped.unwrap_or(Value::Null);
        if let Some(name) = p.decl.first() {
            if p.assign {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| err(self.name, p.line, format!("undefined variable: {name}")))?;
                slot.1 = v.clone();
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn var(&self, name: &str, line: usize) -> Result<&Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| self.err(line, format!("undefined variable: {name}")))
    }

    /// Walk a field chain by reference, cloning only what it ends on.
    fn chain(&self, mut v: &Value, fields: &[String], line: usize) -> Result<Value> {
        static NIL: Value = Value::Null;
        for (i, f) in fields.iter().enumerate() {
            // Methods: a reading's `String` and `Any`; in typed data, a
            // string's `String`.
            let method = match (special(v), v) {
                (Some(Special::Reading { any, text }), _) => match f.as_str() {
                    "String" => Value::String(text.to_string()),
                    "Any" => any.clone(),
                    _ => {
                        return Err(self.err(
                            line,
                            format!("can't evaluate field {f} in type measurement.Reading"),
                        ));
                    }
                },
                (Some(Special::Time(_)), _) => {
                    return Err(
                        self.err(line, format!("can't evaluate field {f} in type time.Time"))
                    );
                }
                (None, Value::String(s)) if self.typed && f == "String" => Value::String(s.clone()),
                // Plain text/template: a field of a missing value is missing.
                (None, Value::Null) if self.typed => return Ok(Value::Null),
                _ => {
                    v = match v {
                        Value::Object(m) => m.get(f).unwrap_or(&NIL),
                        Value::Null => {
                            return Err(self
                                .err(line, format!("nil pointer evaluating interface {{}}.{f}")));
                        }
                        other => {
                            return Err(self.err(
                                line,
                                format!("can't evaluate field {f} in type {}", type_name(other)),
                            ));
                        }
                    };
                    continue;
                }
            };
            return self.chain(&method, &fields[i + 1..], line);
        }
        Ok(v.clone())
    }

    fn operand(&mut self, dot: &Value, op: &Operand, line: usize) -> Result<Value> {
        match op {
            Operand::Dot => Ok(dot.clone()),
            Operand::Field(f) => self.chain(dot, f, line),
            Operand::Var(name, f) => self.chain(self.var(name, line)?, f, line),
            Operand::Lit(v) => Ok(v.clone()),
            Operand::Sub(p, f) => {
                let v = self.pipeline(dot, p)?;
                self.chain(&v, f, line)
            }
            Operand::Func(name) => self.call(dot, name, &[], None, line),
        }
    }

    fn command(
        &mut self,
        dot: &Value,
        cmd: &[Operand],
        piped: Option<Value>,
        line: usize,
    ) -> Result<Value> {
        match &cmd[0] {
            Operand::Func(name) => self.call(dot, name, &cmd[1..], piped, line),
            Operand::Lit(Value::Null) => Err(self.err(line, "nil is not a command")),
            first => {
                if cmd.len() > 1 || piped.is_some() {
                    return Err(self.err(line, "can't give argument to non-function"));
                }
                self.operand(dot, first, line)
            }
        }
    }

    fn call(
        &mut self,
        dot: &Value,
        name: &str,
        args: &[Operand],
        piped: Option<Value>,
        line: usize,
    ) -> Result<Value> {
        if name == "and" || name == "or" {
            let want = name == "or";
            let total = args.len() + usize::from(piped.is_some());
            if total == 0 {
                return Err(self.err(line, format!("wrong number of args for {name}")));
            }
            let mut last = Value::Null;
            for a in args {
                last = self.operand(dot, a, line)?;
                if truthy(&last) == want {
                    return Ok(last);
                }
            }
            return Ok(piped.unwrap_or(last));
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            let v = self.operand(dot, a, line)?;
            // Helm reads a missing or nil field as a nil `interface{}`,
            // which Go will not pass for a map parameter (a literal nil or
            // a pipeline's nil it will).
            let field_read = matches!(a, Operand::Field(_))
                || matches!(a, Operand::Var(_, f) | Operand::Sub(_, f) if !f.is_empty());
            if name == "keys" && v.is_null() && field_read && !self.typed {
                return Err(self.err(
                    line,
                    "wrong type for value; expected map[string]interface {}; got interface {}",
                ));
            }
            vals.push(v);
        }
        vals.extend(piped);
        if name == "printf" {
            // Helm's `.Values` has a Go type of its own, which printf shows.
            let helm_values = match self.vars.first() {
                Some((_, root)) if !self.typed => root.get("Values"),
                _ => None,
            };
            return match vals.split_first() {
                Some((format, args)) => {
                    str_arg(format).map(|f| Value::String(printf::sprintf(f, args, helm_values)))
                }
                None => Err("wrong number of args: want at least 1 got 0".into()),
            }
            .map_err(|m| self.err(line, format!("error calling {name}: {m}")));
        }
        builtin(name, &vals).map_err(|m| self.err(line, format!("error calling {name}: {m}")))
    }
}

fn arity(args: &[Value], n: usize) -> std::result::Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("wrong number of args: want {n} got {}", args.len()))
    }
}

/// Go's ordering: numbers of one kind or strings; anything else is
/// refused, as `text/template` refuses it.
fn compare(a: &Value, b: &Value) -> std::result::Result<std::cmp::Ordering, String> {
    let incompatible = || {
        format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )
    };
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if is_int(x) != is_int(y) => Err(incompatible()),
        (Value::Number(x), Value::Number(y)) if is_int(x) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Ok(x.cmp(&y)),
            _ => Ok(x.as_u64().cmp(&y.as_u64())),
        },
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .ok_or_else(|| "incomparable numbers".to_string()),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(_), Value::Bool(_)) | (Value::Null, Value::Null) => {
            Err("invalid type for comparison".into())
        }
        _ => Err(incompatible()),
    }
}

fn equal(a: &Value, b: &Value) -> std::result::Result<bool, String> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => Ok(a == b),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            Err("non-comparable type".into())
        }
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        _ => compare(a, b).map(|o| o.is_eq()),
    }
}

/// An argument Go passes to an `int` parameter: only an `int` will do.
fn int_arg(v: &Value) -> std::result::Result<i64, String> {
    match v {
        Value::Number(n) if is_int(n) => n.as_i64().ok_or_else(|| "integer overflow".into()),
        Value::Null => Err("invalid value; expected int".into()),
        other => Err(format!(
            "wrong type for value; expected int; got {}",
            type_name(other)
        )),
    }
}

/// An argument Go passes to a `string` parameter.
fn str_arg(v: &Value) -> std::result::Result<&str, String> {
    match v {
        Value::String(s) => Ok(s),
        Value::Null => Err("invalid value; expected string".into()),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            type_name(other)
        )),
    }
}

/// Sprig's `int`/`int64` (spf13/cast): numbers truncate, booleans are 0 or
/// 1, strings parse as Go integer literals, anything else is 0.
fn to_int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().unwrap_or_default() as i64),
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => go_parse_int(trim_zero_decimal(s)).unwrap_or(0),
        _ => 0,
    }
}

/// cast's `trimZeroDecimal`: `3.00` → `3` (but `3.` stays `3.`).
fn trim_zero_decimal(s: &str) -> &str {
    let mut zero = false;
    for (i, b) in s.bytes().enumerate().rev() {
        match b {
            b'.' if zero => return &s[..i],
            b'0' => zero = true,
            _ => return s,
        }
    }
    s
}

/// Go's `underscoreOK`: underscores only between digits (a base prefix
/// counts as a digit).
fn underscore_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &b[i..] {
        if c.is_ascii_digit() || hex && c.is_ascii_hexdigit() {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// `strconv.ParseInt(s, 0, 64)`: sign, `0x`/`0o`/`0b`/leading-`0` bases,
/// underscores between digits; `None` on a syntax or range error.
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.contains('_') && !underscore_ok(s) {
        return None;
    }
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let mag = u64::from_str_radix(&digits, radix).ok()?;
    if neg {
        0i64.checked_sub_unsigned(mag)
    } else {
        i64::try_from(mag).ok()
    }
}

/// Sprig's `float64`: strings parse as `strconv.ParseFloat` does
/// (underscores between digits; out of range is an error, hence 0).
fn to_float(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or_default(),
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => {
            if s.contains('_') && !underscore_ok(s) {
                return 0.0;
            }
            let plain = s.replace('_', "");
            match plain.parse::<f64>() {
                Ok(f) if f.is_infinite() && !plain.to_ascii_lowercase().contains("inf") => 0.0,
                Ok(f) => f,
                Err(_) => 0.0,
            }
        }
        _ => 0.0,
    }
}

fn indent_text(n: i64, s: &str) -> String {
    let pad = " ".repeat(usize::try_from(n).unwrap_or(0));
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn builtin(name: &str, a: &[Value]) -> std::result::Result<Value, String> {
    let s = |v: String| Ok(Value::String(v));
    match name {
        "not" => {
            arity(a, 1)?;
            Ok(Value::Bool(!truthy(&a[0])))
        }
        "eq" => {
            if a.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            for b in &a[1..] {
                if equal(&a[0], b)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            arity(a, 2)?;
            Ok(Value::Bool(!equal(&a[0], &a[1])?))
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(a, 2)?;
            let o = compare(&a[0], &a[1])?;
            Ok(Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            }))
        }
        "len" => {
            arity(a, 1)?;
            if special(&a[0]).is_some() {
                return Err(format!("len of type {}", type_name(&a[0])));
            }
            match &a[0] {
                Value::String(x) => Ok(Value::from(x.len())),
                Value::Array(x) => Ok(Value::from(x.len())),
                Value::Object(x) => Ok(Value::from(x.len())),
                other => Err(format!("len of type {}", type_name(other))),
            }
        }
        "index" => {
            let Some((first, keys)) = a.split_first() else {
                return Err("wrong number of args: want at least 1 got 0".into());
            };
            let mut cur = first.clone();
            for k in keys {
                if special(&cur).is_some() {
                    return Err(format!("can't index item of type {}", type_name(&cur)));
                }
                cur = match (cur, k) {
                    (Value::Object(mut m), Value::String(key)) => {
                        m.remove(key).unwrap_or(Value::Null)
                    }
                    (Value::Array(mut l), idx) => {
                        let i = int_arg(idx).map_err(|_| {
                            format!("cannot index slice/array with type {}", type_name(idx))
                        })?;
                        let i = usize::try_from(i)
                            .ok()
                            .filter(|i| *i < l.len())
                            .ok_or_else(|| format!("index out of range: {i}"))?;
                        l.swap_remove(i)
                    }
                    (Value::String(text), idx) => {
                        // Go indexes a string's bytes.
                        let i = int_arg(idx)?;
                        let byte = usize::try_from(i)
                            .ok()
                            .and_then(|i| text.as_bytes().get(i))
                            .ok_or_else(|| format!("index out of range: {i}"))?;
                        Value::from(*byte)
                    }
                    (Value::Null, _) => return Err("index of untyped nil".into()),
                    (other, _) => {
                        return Err(format!("can't index item of type {}", type_name(&other)));
                    }
                };
            }
            Ok(cur)
        }
        "print" => {
            let mut out = String::new();
            for (i, v) in a.iter().enumerate() {
                if i > 0 && !v.is_string() && !a[i - 1].is_string() {
                    out.push(' ');
                }
                out.push_str(&print_value(v, "<nil>"));
            }
            s(out)
        }
        "toString" => {
            arity(a, 1)?;
            s(print_value(&a[0], "<nil>"))
        }
        "toYaml" => {
            arity(a, 1)?;
            let text = super::goyaml::to_yaml(&plain(&a[0]))?;
            s(text.strip_suffix('\n').unwrap_or(&text).to_string())
        }
        "toJson" => {
            arity(a, 1)?;
            yaml::to_json_compact(&go_json_numbers(&plain(&a[0])))
                .map(Value::String)
                .map_err(|e| e.to_string())
        }
        "int" | "int64" => {
            arity(a, 1)?;
            Ok(Value::from(to_int(&a[0])))
        }
        "float64" => {
            arity(a, 1)?;
            let f = to_float(&a[0]);
            Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
        }
        "indent" | "nindent" => {
            arity(a, 2)?;
            let n = int_arg(&a[0])?;
            let text = str_arg(&a[1])?;
            let body = indent_text(n, text);
            s(if name == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "default" => match a {
            [d] => Ok(d.clone()),
            [d, v] => Ok(if truthy(v) { v.clone() } else { d.clone() }),
            _ => Err(format!("wrong number of args: want 1 or 2 got {}", a.len())),
        },
        "empty" => {
            arity(a, 1)?;
            Ok(Value::Bool(!truthy(&a[0])))
        }
        "quote" => {
            let parts: Vec<String> = a
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| serde_json::to_string(&print_value(v, "")).unwrap_or_default())
                .collect();
            s(parts.join(" "))
        }
        "required" => {
            arity(a, 2)?;
            let warn = str_arg(&a[0])?;
            match &a[1] {
                Value::Null => Err(warn.to_string()),
                Value::String(x) if x.is_empty() => Err(warn.to_string()),
                v => Ok(v.clone()),
            }
        }
        other => {
            sprig::call(other, a).unwrap_or_else(|| Err(format!("function {other:?} not defined")))
        }
    }
}

/// Convenience for callers that build the data map by hand.
pub(crate) fn object(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<String, Value>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, data: Value) -> Result<String> {
        Template::parse("t", src)?.render(&data)
    }

    #[test]
    fn plain_text_renders_as_the_engine_does() {
        for src in ["", "kind: A\n", "a: <no value>b\n<no value>", "x: { y }\n"] {
            assert_eq!(
                render_plain_text(src).as_deref(),
                Some(render(src, json!({})).unwrap().as_str()),
                "{src:?}"
            );
        }
        assert_eq!(render_plain_text("a {{ .x }}"), None);
    }

    #[test]
    fn trim_markers_and_comments() {
        let out = render(
            "a  {{- /* c */ -}}  b\n{{- if true }}\nx{{ end -}}\n  y",
            json!({}),
        )
        .unwrap();
        assert_eq!(out, "ab\nxy");
        // Quotes in a comment are text; the comment ends at the first `*/`.
        let out = render("a{{- /* it's \"}} */ -}} b{{/* x */}}c", json!({})).unwrap();
        assert_eq!(out, "abc");
        assert!(Template::parse("t", "{{/* a */ x }}").is_err());
        assert!(Template::parse("t", "{{/* a }}").is_err());
        // Go: a space before `/*` makes it an action, and `/` no operand.
        assert!(Template::parse("t", "{{ /* a */}}").is_err());
        assert!(Template::parse("t", "{{-  /* a */}}").is_err());
    }

    #[test]
    fn fields_variables_and_missing_keys() {
        let d =
            json!({"Values": {"c": {"n": "x", "list": [1, 2]}}, "Release": {"Namespace": "ns"}});
        let src = "{{- $c := index .Values \"c\" }}{{ $c.n }}/{{ $c.missing }}/{{ .Release.Namespace }}/{{ len $c.list }}";
        assert_eq!(render(src, d.clone()).unwrap(), "x//ns/2");
        let e = render("{{ .Values.nope.deeper }}", d).unwrap_err();
        assert!(
            e.to_string()
                .contains("nil pointer evaluating interface {}.deeper"),
            "{e}"
        );
    }

    #[test]
    fn and_short_circuits_like_go() {
        let src = "{{ if and .a .a.b .a.b.c }}yes{{ else }}no{{ end }}";
        assert_eq!(render(src, json!({})).unwrap(), "no");
        assert_eq!(render(src, json!({"a": {"b": {"c": 1}}})).unwrap(), "yes");
        assert_eq!(render("{{ or 0 \"\" \"z\" }}", json!({})).unwrap(), "z");
    }

    #[test]
    fn pipelines_and_helm_helpers() {
        let d = json!({"t": [{"key": "a", "operator": "Exists"}], "n": null});
        let src = "x:{{- toYaml .t | nindent 2 }}\ny: {{ .n | default \"dflt\" }}\nz: {{ ne (toString (index . \"n\")) \"false\" }}\nq: {{ quote \"a\\\"b\" }}";
        assert_eq!(
            render(src, d).unwrap(),
            "x:\n  - key: a\n    operator: Exists\ny: dflt\nz: true\nq: \"a\\\"b\""
        );
        assert_eq!(render("{{ toString nil }}", json!({})).unwrap(), "<nil>");
        assert_eq!(render("{{ 1.5 }} {{ 3 }}", json!({})).unwrap(), "1.5 3");
    }

    #[test]
    fn else_if_with_and_range() {
        let src = "{{ if eq .k \"a\" }}A{{ else if eq .k \"b\" \"c\" }}BC{{ else }}Z{{ end }}";
        assert_eq!(render(src, json!({"k": "c"})).unwrap(), "BC");
        assert_eq!(render(src, json!({"k": "q"})).unwrap(), "Z");
        let src = "{{ with .m }}{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}{{ else }}none{{ end }}";
        assert_eq!(
            render(src, json!({"m": {"b": 2, "a": 1}})).unwrap(),
            "a=1;b=2;"
        );
        assert_eq!(render(src, json!({"m": {}})).unwrap(), "none");
        let src = "{{ range .l }}[{{ . }}]{{ else }}empty{{ end }}";
        assert_eq!(render(src, json!({"l": ["x", "y"]})).unwrap(), "[x][y]");
        assert_eq!(render(src, json!({})).unwrap(), "empty");
        let src = "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}";
        assert_eq!(render(src, json!({})).unwrap(), "2");
    }

    #[test]
    fn errors_name_the_line() {
        let e = Template::parse("m.yaml", "a\n{{ if .x }}").unwrap_err();
        assert!(e.to_string().starts_with("template: m.yaml:2:"), "{e}");
        let e = render("\n\n{{ nope 1 }}", json!({})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template: t:3: error calling nope: function \"nope\" not defined"
        );
        assert!(Template::parse("t", "{{ .a ").is_err());
        assert!(Template::parse("t", "{{ end }}").is_err());
        assert!(
            render("{{ required \"need x\" .x }}", json!({}))
                .unwrap_err()
                .to_string()
                .contains("need x")
        );
    }

    #[test]
    fn numbers_are_typed_as_helm_types_them() {
        let d = json!({"Values": {"replicas": 2, "big": 1234567, "s": "3"}});
        let e = render("{{ gt .Values.replicas 1 }}", d.clone()).unwrap_err();
        assert!(
            e.to_string()
                .contains("incompatible types for comparison: float64 and int"),
            "{e}"
        );
        assert_eq!(
            render(
                "{{ gt (int .Values.replicas) 1 }} {{ gt .Values.replicas 1.0 }}",
                d.clone()
            )
            .unwrap(),
            "true true"
        );
        assert_eq!(
            render(
                "{{ .Values.big }} {{ int .Values.s }} {{ toJson .Values.replicas }}",
                d
            )
            .unwrap(),
            "1.234567e+06 3 2"
        );
        assert_eq!(
            render("{{ range 3 }}{{ . }}{{ end }}", json!({})).unwrap(),
            "012"
        );
        assert_eq!(render("{{ index \"ab\" 1 }}", json!({})).unwrap(), "98");
        assert!(render("{{ nindent 2 1.5 }}", json!({})).is_err());
        assert!(render("{{ nil }}", json!({})).is_err());
        assert_eq!(
            render("{{ if false }}{{ nil }}{{ end }}", json!({})).unwrap(),
            ""
        );
    }

    #[test]
    fn int_and_float64_parse_strings_as_go_does() {
        // Expected values are Helm's (spf13/cast over strconv).
        let src = r#"{{ int "1_000" }} {{ int "0x1F" }} {{ int "010" }} {{ int "09" }} {{ int "3." }} {{ int "3.00" }} {{ int "-0b101" }} {{ int "+7" }} {{ int "1__0" }} {{ int "_1" }} {{ int "0x_1F" }} {{ int ".0" }} {{ int "99999999999999999999" }} {{ int " 3" }}"#;
        assert_eq!(
            render(src, json!({})).unwrap(),
            "1000 31 8 0 0 3 -5 7 0 0 31 0 0 0"
        );
        let src = r#"{{ float64 "1_000.5" }} {{ float64 "0x1F" }} {{ float64 "1__0" }} {{ float64 "1e400" }} {{ float64 "3." }} {{ float64 ".5" }} {{ float64 "1_e3" }}"#;
        assert_eq!(render(src, json!({})).unwrap(), "1000.5 0 0 0 3 0.5 0");
    }

    #[test]
    fn to_yaml_is_go_yaml() {
        let d = json!({"v": {"tolerations": [{"key": "a", "operator": "Exists"}], "on": "yes"}});
        assert_eq!(
            render("{{ toYaml .v }}", d).unwrap(),
            "\"on\": \"yes\"\ntolerations:\n- key: a\n  operator: Exists"
        );
    }

    #[test]
    fn paren_chains_and_strings_with_braces() {
        let d = json!({"m": {"k": {"v": "deep"}}});
        assert_eq!(render("{{ (index .m \"k\").v }}", d).unwrap(), "deep");
        assert_eq!(render("{{ \"}}\" }}", json!({})).unwrap(), "}}");
        assert_eq!(render("{{ `raw\\n` }}", json!({})).unwrap(), "raw\\n");
    }

    #[test]
    fn sprig_functions_take_sprigs_argument_order() {
        let d = json!({"l": ["b", "a", null], "m": {"z": 1, "a": 2}, "s": "gpu-operator.service"});
        let src = concat!(
            r#"{{ replace ".service" "" .s }}|{{ .s | replace "-" "_" | upper }}|"#,
            r#"{{ join "," .l }}|{{ splitList "-" "a-b" }}|{{ has "a" .l }}|"#,
            r#"{{ has 1 (list 1 2) }}|{{ has 1 .l }}|{{ keys .m | sortAlpha }}|"#,
            r#"{{ dict "k" 1 "odd" }}|{{ trimSuffix ".service" .s }}|{{ trimPrefix "gpu-" .s }}|"#,
            r#"{{ trim "  x " }}|{{ title "hello wORLD" }}|{{ lower "ABC" }}|"#,
            r#"{{ contains "op" .s }}|{{ hasPrefix "gpu" .s }}|{{ hasSuffix "x" .s }}|"#,
            r#"{{ printf "%s=%d %5.1f" "n" 3 2.25 }}|{{ sortAlpha .l }}|{{ upper "ß" }}"#,
        );
        assert_eq!(
            render(src, d.clone()).unwrap(),
            "gpu-operator|GPU_OPERATOR.SERVICE|b,a|[a b]|true|true|false|[a z]|map[k:1 odd:]|\
             gpu-operator|operator.service|x|Hello WORLD|abc|true|true|false|n=3   2.2|[a b]|ß"
        );
        // Go's typing: a string parameter takes only a string; `has` needs a list.
        for bad in [
            "{{ upper 1 }}",
            "{{ join 1 .l }}",
            "{{ has 1 \"abc\" }}",
            "{{ keys .missing }}",
            "{{ replace \"a\" \"b\" }}",
            "{{ printf 1 }}",
        ] {
            assert!(render(bad, d.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            render("{{ keys nil }} {{ keys (index . \"missing\") }}", d).unwrap(),
            "[] []"
        );
    }

    #[test]
    fn typed_data_keeps_integers_and_reading_methods() {
        let d = json!({
            "Type": "GPU",
            "n": 8,
            "Data": {
                "gpu-count": reading(json!(8), "8"),
                "empty": reading(json!(""), ""),
                "gpu.model": reading(json!("H100"), "H100"),
            },
        });
        let t = Template::parse(
            "t",
            concat!(
                r#"{{ .Type.String }} {{ index .Data "gpu.model" }} {{ gt (index .Data "gpu-count").Any 0 }} "#,
                r#"{{ gt .n 7 }} {{ if index .Data "empty" }}present{{ end }} "#,
                r#"{{ (index .Data "gpu.model").String | lower }} [{{ .Data.nope }}] {{ toJson .Data }} "#,
                r#"{{ printf "%v/%s/%d" (index .Data "gpu-count") (index .Data "gpu.model") (index .Data "gpu-count") }}"#,
            ),
        )
        .unwrap();
        assert_eq!(
            t.render_with(&d, DataTypes::Typed).unwrap(),
            r#"GPU H100 true true present h100 [<no value>] {"empty":"","gpu-count":8,"gpu.model":"H100"} 8/H100/8"#
        );
        // Helm's reading of the same data: numbers are float64, strings
        // have no methods.
        let e = render("{{ gt .n 7 }}", d.clone()).unwrap_err();
        assert!(e.to_string().contains("float64 and int"), "{e}");
        assert!(render("{{ .Type.String }}", d.clone()).is_err());
        // Go refuses to compare a reading; `.String` / `.Any` compare.
        let t = Template::parse("t", r#"{{ eq (index .Data "gpu.model") "H100" }}"#).unwrap();
        assert!(t.render_with(&d, DataTypes::Typed).is_err());
        let t = Template::parse(
            "t",
            r#"{{ range .Data.nope.deeper }}x{{ end }}{{ len .Data }}"#,
        )
        .unwrap();
        assert_eq!(t.render_with(&d, DataTypes::Typed).unwrap(), "3");
    }

    #[test]
    fn now_and_date_use_go_layouts() {
        let year = jiff::Zoned::now().year();
        let out = render(
            r#"{{ now | date "2006" }}|{{ date "2006-01" 1750000000 }}|{{ date "2006" "not a time" }}|{{ now }}|{{ toJson now }}"#,
            json!({}),
        )
        .unwrap();
        let parts: Vec<&str> = out.split('|').collect();
        let this_year = |s: &str| s == year.to_string() || s == (year + 1).to_string();
        assert!(this_year(parts[0]), "{out}");
        assert_eq!(parts[1], "2025-06", "{out}");
        assert!(this_year(parts[2]), "anything but a time means now: {out}");
        assert!(this_year(&parts[3][..4]) && parts[3].len() > 25, "{out}");
        assert!(parts[4].starts_with('"') && parts[4].contains('T'), "{out}");
        assert!(render("{{ date 1 2 }}", json!({})).is_err());
        assert!(render("{{ now.Year }}", json!({})).is_err());
    }
}
