//! `aicr skill`: a Markdown "skill" that teaches a coding agent to use this
//! CLI, generated from the live clap command tree so it never drifts, and
//! its installation into the agent's configuration directory (with the
//! overwrite prompt). Nothing here knows individual commands' flags.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use aicr::error::{Error, ErrorKind, Result};
use aicr::model::criteria::Field;
use clap::builder::ArgAction;
use clap::{Arg, Args, Command};

#[derive(Debug, Args)]
pub struct SkillArgs {
    /// Agent to generate the skill for: claude-code or codex
    #[arg(long, required = true, value_parser = aicr::flags::offered(aicr::flags::text, &["claude-code", "codex"]), hide_possible_values = true)]
    pub agent: String,
    /// Print the skill to stdout instead of installing it
    #[arg(long)]
    pub stdout: bool,
    /// Overwrite an existing skill file without asking
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agent {
    ClaudeCode,
    Codex,
}

impl Agent {
    fn parse(s: &str) -> Result<Agent> {
        match s {
            "claude-code" => Ok(Agent::ClaudeCode),
            "codex" => Ok(Agent::Codex),
            other => Err(Error::invalid(format!(
                "unsupported agent type {other:?}: must be one of [claude-code codex]"
            ))),
        }
    }

    /// Path below the home directory.
    fn location(self) -> &'static str {
        match self {
            Agent::ClaudeCode => ".claude/skills/aicr/SKILL.md",
            Agent::Codex => ".codex/skills/aicr/SKILL.md",
        }
    }
}

/// Commands that make no sense inside a skill.
const SKIPPED: [&str; 3] = ["skill", "help", "completion"];

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn type_label(a: &Arg) -> Option<&'static str> {
    use std::any::TypeId;
    match a.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => return Some("bool"),
        ArgAction::Count => return Some("count"),
        _ => {}
    }
    let id = a.get_value_parser().type_id();
    let int = [
        TypeId::of::<i64>(),
        TypeId::of::<u64>(),
        TypeId::of::<i32>(),
        TypeId::of::<u32>(),
        TypeId::of::<usize>(),
    ]
    .iter()
    .any(|t| id == *t);
    let many = matches!(a.get_action(), ArgAction::Append);
    match (int, many) {
        (true, true) => Some("ints"),
        (true, false) => Some("int"),
        (false, true) => Some("strings"),
        (false, false) => None,
    }
}

fn flag_line(a: &Arg) -> Option<String> {
    let long = a.get_long()?;
    if a.is_hide_set() || long == "help" || long == "version" {
        return None;
    }
    let mut line = format!("- `--{long}`");
    let mut aliases: Vec<String> = a.get_short().map(|s| format!("-{s}")).into_iter().collect();
    aliases.extend(
        a.get_visible_aliases()
            .unwrap_or_default()
            .into_iter()
            .map(|al| format!("--{al}")),
    );
    if !aliases.is_empty() {
        line.push_str(&format!(" ({})", aliases.join(", ")));
    }
    if let Some(t) = type_label(a) {
        line.push_str(&format!(" [{t}]"));
    }
    if let Some(help) = a.get_help() {
        line.push_str(&format!(" — {}", collapse(&help.to_string())));
    }
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && type_label(a) != Some("bool") {
        line.push_str(&format!(" (default: `{}`)", defaults.join(",")));
    }
    if let Some(env) = a.get_env() {
        line.push_str(&format!(" (env: `{}`)", env.to_string_lossy()));
    }
    if a.is_required_set() {
        line.push_str(" **required**");
    }
    if type_label(a) == Some("bool") {
        return Some(line);
    }
    let values: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() {
        line.push_str(&format!(" Values: {}", values.join(", ")));
    }
    Some(line)
}

fn command_section(cmd: &Command, path: &str, out: &mut String) {
    if cmd.is_hide_set() || SKIPPED.contains(&cmd.get_name()) {
        return;
    }
    let full = format!("{path} {}", cmd.get_name());
    let mut usage = full.clone();
    for p in cmd.get_positionals() {
        let name = p
            .get_value_names()
            .and_then(|v| v.first().map(|s| s.to_string()))
            .unwrap_or_else(|| p.get_id().to_string().to_uppercase());
        if p.is_required_set() {
            usage.push_str(&format!(" <{name}>"));
        } else {
            usage.push_str(&format!(" [{name}]"));
        }
    }
    let flags: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_global_set())
        .filter_map(flag_line)
        .collect();
    let subs: Vec<&Command> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && !SKIPPED.contains(&c.get_name()))
        .collect();
    if !flags.is_empty() {
        usage.push_str(" [flags]");
    }
    if !subs.is_empty() {
        usage.push_str(" <command>");
    }
    out.push_str(&format!("\n### `{usage}`\n\n"));
    if let Some(about) = cmd.get_about() {
        out.push_str(&format!("{}\n\n", collapse(&about.to_string())));
    }
    out.push_str(&format!("Usage: `{usage}`\n"));
    if !flags.is_empty() {
        out.push('\n');
        for f in flags {
            out.push_str(&f);
            out.push('\n');
        }
    }
    for s in subs {
        command_section(s, &full, out);
    }
}

/// The whole skill document for `agent`, from the command tree `root`.
fn render(agent: Agent, root: &Command) -> String {
    let mut s = String::from("---\nname: aicr\ndescription: |\n");
    s.push_str(
        "  AICR CLI skill. Use it to generate GPU-optimized Kubernetes recipes, snapshot a\n  cluster's GPU, OS and Kubernetes state, bundle Helm values and deployment scripts,\n  validate a recipe against a cluster, query hydrated configuration values, and\n  verify bundle provenance.\n",
    );
    if agent == Agent::ClaudeCode {
        s.push_str("user_invocable: true\n");
    }
    s.push_str("---\n\n");
    s.push_str(&format!("# AICR CLI ({})\n\n", aicr::VERSION));
    s.push_str(
        "`aicr` (AI Cluster Runtime) captures the state of GPU Kubernetes clusters, knows\nknown-good component combinations (recipes), validates clusters against them and\nrenders recipes into Helm or Argo CD bundles.\n\n",
    );
    s.push_str("## Prerequisites\n\nCheck that the CLI is installed and which version it is:\n\n```sh\naicr --version\n```\n\n");
    s.push_str("## Command Reference\n\n### Global flags\n\n");
    for a in root.get_arguments().filter(|a| !a.is_positional()) {
        if let Some(line) = flag_line(a) {
            s.push_str(&line);
            s.push('\n');
        }
    }
    for c in root.get_subcommands() {
        command_section(c, "aicr", &mut s);
    }
    s.push_str("\n## Criteria Values\n\n");
    for f in Field::ALL {
        s.push_str(&format!("- `{}`: {}\n", f.name(), f.values().join(", ")));
    }
    s.push_str(
        "\nA criterion left out (or `any`) matches every value. `--nodes` takes a GPU node count.\n",
    );
    s.push_str(
        "\n## Output Format\n\nDocuments go to stdout (or `-o FILE` / `-o cm://namespace/name`), logs to stderr.\nPrefer machine-readable output and filter it with `jq`:\n\n```sh\naicr recipe --service eks --accelerator h100 --intent training --format json | jq '.componentRefs[].name'\naicr verify ./bundle --format json | jq -r .trustLevel\n```\n",
    );
    s.push_str(
        "\n## Workflow Examples\n\n```sh\n# 1. Capture the cluster, 2. derive a recipe, 3. validate, 4. bundle\naicr snapshot -o snapshot.yaml\naicr recipe --snapshot snapshot.yaml --intent training -o recipe.yaml\naicr validate --recipe recipe.yaml --snapshot snapshot.yaml\naicr bundle --recipe recipe.yaml -o ./bundle\n\n# Query one hydrated value\naicr query --service eks --accelerator h100 --intent training \\\n  --selector components.gpu-operator.values.driver.version\n\n# Bundle with overrides and scheduling\naicr bundle -r recipe.yaml -o ./bundle \\\n  --set gpuoperator:driver.version=580.105.08 \\\n  --accelerated-node-selector nodeGroup=gpu-worker \\\n  --accelerated-node-toleration dedicated=worker-workload:NoSchedule\n\n# Argo CD instead of Helm scripts\naicr bundle -r recipe.yaml -o ./gitops --deployer argocd --repo https://github.com/org/gitops.git\n\n# Check a bundle before deploying it\naicr verify ./bundle\n```\n",
    );
    s.push_str(
        "\n## Error Handling\n\nExit codes: 0 success; 1 usage error (unknown flag, missing required flag); 2 invalid\ninput; 3 not found; 4 unauthorized (also: bundle verification failed); 5 timeout;\n6 unavailable; 7 rate limited; 8 internal. The last stderr line explains the\nfailure; fix the named input rather than retrying blindly. Exit 6 and 7 are worth\na retry.\n",
    );
    s.push_str(
        "\n## Best Practices\n\n- Write recipes and snapshots to files and pass them along instead of re-deriving them.\n- Use `--format json` when parsing output; never scrape log lines.\n- Run `aicr verify` on a bundle before deploying it, and regenerate bundles instead\n  of editing them (checksums would no longer match).\n- Use `--set` for static changes and `--dynamic` for values that differ per cluster.\n- `--set` converts values: `true`/`false` become booleans and numbers numbers, so\n  `1.10` becomes `1.1`; versions with two dots stay strings.\n",
    );
    s
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| Error::internal("cannot determine the home directory: HOME is not set"))
}

/// Ask on a terminal; only `y`/`yes` proceed.
fn confirm(path: &Path) -> Result<bool> {
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "skill file already exists: {}\noverwrite? [y/N]: ",
        path.display()
    );
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::internal(format!("failed to read the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn install(path: &Path, content: &str) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorKind::Internal,
            format!("failed to {what} {}: {e}", path.display()),
        )
    };
    let dir = path
        .parent()
        .ok_or_else(|| Error::internal("skill path has no parent directory"))?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o755);
    }
    builder
        .create(dir)
        .map_err(|e| fail("create the directory of", e))?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::invalid(format!(
            "refusing to write the skill file through a symlink: {}",
            path.display()
        )));
    }
    aicr::sink::write_file_atomic(path, content.as_bytes())
}

pub fn run(a: &SkillArgs, root: &Command) -> Result<()> {
    let agent = Agent::parse(&a.agent)?;
    let content = render(agent, root);
    if a.stdout {
        return aicr::sink::write_local("-", content.as_bytes());
    }
    let path = home()?.join(agent.location());
    if path.exists() && !a.force {
        if !std::io::stdin().is_terminal() {
            return Err(Error::invalid(format!(
                "skill file already exists: {} (use --force to overwrite, or remove it first)",
                path.display()
            )));
        }
        if !confirm(&path)? {
            eprintln!("aborted: {} was not changed", path.display());
            return Ok(());
        }
    }
    install(&path, &content)?;
    aicr::sink::write_local("-", format!("{}\n", path.display()).as_bytes())
}
