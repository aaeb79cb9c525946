//! The text templates of a bundle (scripts, READMEs, charts, Argo CD
//! Applications), embedded from `templates/` and rendered with Tera, their
//! long runs of text lifted out before parsing (`lift`). Owns the template
//! set and its filters; what goes into each context is the deployers'
//! business.

use std::collections::HashMap;
use std::sync::OnceLock;

use tera::{Context, Tera};

use crate::error::{Error, Result};

const TEMPLATES: &[(&str, &str)] = &[
    ("deploy.sh", include_str!("templates/deploy.sh.tera")),
    ("undeploy.sh", include_str!("templates/undeploy.sh.tera")),
    (
        "install-upstream.sh",
        include_str!("templates/install-upstream.sh.tera"),
    ),
    (
        "install-local.sh",
        include_str!("templates/install-local.sh.tera"),
    ),
    (
        "Chart-local.yaml",
        include_str!("templates/Chart-local.yaml.tera"),
    ),
    (
        "Chart-bundle.yaml",
        include_str!("templates/Chart-bundle.yaml.tera"),
    ),
    (
        "README-helm.md",
        include_str!("templates/README-helm.md.tera"),
    ),
    (
        "README-argocd.md",
        include_str!("templates/README-argocd.md.tera"),
    ),
    (
        "README-argocd-helm.md",
        include_str!("templates/README-argocd-helm.md.tera"),
    ),
    (
        "application-upstream.yaml",
        include_str!("templates/application-upstream.yaml.tera"),
    ),
    (
        "application-local.yaml",
        include_str!("templates/application-local.yaml.tera"),
    ),
    (
        "app-of-apps.yaml",
        include_str!("templates/app-of-apps.yaml.tera"),
    ),
    (
        "child-upstream.yaml",
        include_str!("templates/child-upstream.yaml.tera"),
    ),
    (
        "child-local.yaml",
        include_str!("templates/child-local.yaml.tera"),
    ),
    (
        "aicr-stack.yaml",
        include_str!("templates/aicr-stack.yaml.tera"),
    ),
];

/// Single-quote for POSIX shells: `it's` → `'it'\''s'`.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn text_arg(v: &tera::Value) -> String {
    match v {
        tera::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn sh_filter(v: &tera::Value, _: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    Ok(tera::Value::String(shell_quote(&text_arg(v))))
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q_filter(v: &tera::Value, _: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    Ok(tera::Value::String(
        serde_json::to_string(&text_arg(v)).map_err(|e| tera::Error::msg(e.to_string()))?,
    ))
}

/// Verbatim shell sections of the two bundle scripts. They hold no
/// template syntax, so they are inserted as values instead of being parsed
/// (Tera's parser dominated the run time of a whole bundle).
const SCRIPT_PARTS: &[(&str, &str)] = &[
    (
        "deploy_setup",
        include_str!("templates/static/deploy-setup.sh"),
    ),
    (
        "deploy_preflight",
        include_str!("templates/static/deploy-preflight.sh"),
    ),
    (
        "deploy_nodewright",
        include_str!("templates/static/deploy-nodewright.sh"),
    ),
    (
        "deploy_install",
        include_str!("templates/static/deploy-install.sh"),
    ),
    (
        "undeploy_main",
        include_str!("templates/static/undeploy-main.sh"),
    ),
    (
        "undeploy_cleanup",
        include_str!("templates/static/undeploy-cleanup.sh"),
    ),
];

/// Add the verbatim script sections (`parts.<name>`) to a context.
pub(crate) fn insert_script_parts(ctx: &mut Context) {
    let parts: HashMap<&str, &str> = SCRIPT_PARTS.iter().copied().collect();
    ctx.insert("parts", &parts);
}

/// A parsed template, alone in its engine with the filters, the text
/// [`lift`](super::lift) took out of it kept by the `lifted` filter.
/// Templates include nothing from one another, so each can be parsed on
/// its own, on any thread.
fn parse(name: &str, src: &str) -> std::result::Result<Tera, String> {
    let mut texts = Vec::new();
    let lifted = super::lift::lift(src, &mut texts);
    let mut t = Tera::default();
    t.autoescape_on(vec![]);
    t.register_filter("sh", sh_filter);
    t.register_filter("q", q_filter);
    t.register_filter(
        super::lift::FILTER,
        move |v: &tera::Value, _: &HashMap<String, tera::Value>| {
            v.as_u64()
                .and_then(|i| texts.get(usize::try_from(i).ok()?))
                .map(|t| tera::Value::String(t.clone()))
                .ok_or_else(|| tera::Error::msg(format!("no lifted text {v}")))
        },
    );
    t.add_raw_template(name, &lifted)
        .map_err(|e| crate::error::chain(&e))?;
    Ok(t)
}

/// Each template's engine, parsed on first use: a bundle needs only its
/// deployer's templates.
static ENGINES: [OnceLock<std::result::Result<Tera, String>>; TEMPLATES.len()] =
    [const { OnceLock::new() }; TEMPLATES.len()];

fn engine(name: &str) -> Result<&'static Tera> {
    let i = TEMPLATES
        .iter()
        .position(|(n, _)| *n == name)
        .ok_or_else(|| Error::internal(format!("no bundle template named {name}")))?;
    ENGINES[i]
        .get_or_init(|| parse(name, TEMPLATES[i].1))
        .as_ref()
        .map_err(|e| Error::internal(format!("failed to render {name}: {e}")))
}

fn tera_error(what: &str, e: &tera::Error) -> Error {
    Error::internal(format!(
        "failed to render {what}: {}",
        crate::error::chain(e)
    ))
}

/// Render template `name` (one of the embedded files, without `.tera`).
pub(crate) fn render(name: &str, ctx: &Context) -> Result<String> {
    engine(name)?
        .render(name, ctx)
        .map_err(|e| tera_error(name, &e))
}

/// A context with the values every template uses.
pub(crate) fn context() -> Context {
    let mut c = Context::new();
    c.insert("version", crate::VERSION);
    c.insert("lb", "{{");
    c.insert("rb", "}}");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_quotes() {
        for (name, _) in TEMPLATES {
            engine(name).unwrap();
        }
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let mut c = context();
        c.insert("name", "a\"b");
        c.insert("description", "d");
        c.insert("what", "w");
        c.insert("chart_version", "1.0.0");
        let out = render("Chart-local.yaml", &c).unwrap();
        assert!(out.contains("name: \"a\\\"b\""), "{out}");
    }
}
