//! `aicr`: the AI Cluster Runtime CLI. Parses arguments, wires the core
//! library together and prints; every exit code comes from
//! `aicr::ErrorKind::exit_code` (or 1 for usage errors, as upstream).

mod args;
mod cmd;
mod kubernetes;
mod logging;
mod remote;
mod runtime;
mod signal;

use std::io::Write;
use std::process::ExitCode;

use cmd::{baseline, bundle, diff, fleet, recipe, skill, snapshot, trust, validate, verify};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use aicr::error::{Error, Result};

#[derive(Debug, Parser)]
#[command(
    name = "aicr",
    about = "AI Cluster Runtime: capture, recipe, validate and bundle GPU Kubernetes clusters",
    version = aicr::VERSION,
    disable_version_flag = true
)]
struct Cli {
    /// Debug logging: key=value lines with time, level and source
    #[arg(long, global = true, env = "AICR_DEBUG", value_parser = aicr::flags::EnvBool)]
    debug: bool,
    /// Structured JSON logs for automation
    #[arg(long, global = true, env = "AICR_LOG_JSON", value_parser = aicr::flags::EnvBool)]
    log_json: bool,
    /// Bound on each Kubernetes API request
    #[arg(long, global = true, env = "AICR_KUBE_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = aicr::flags::duration)]
    kube_timeout: std::time::Duration,
    /// Print the version and exit
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture node and cluster state (locally or with an in-cluster agent Job)
    Snapshot(snapshot::SnapshotArgs),
    /// Generate a recipe from criteria, a snapshot or a config file
    Recipe(recipe::RecipeArgs),
    /// Print one value of the fully hydrated recipe
    Query(recipe::QueryArgs),
    /// Validate a cluster against a recipe: readiness, deployment, performance, conformance
    Validate(validate::ValidateArgs),
    /// Render a recipe into a Helm or Argo CD deployment bundle
    Bundle(bundle::BundleArgs),
    /// Compare two snapshots reading by reading; exit 1 when they differ
    Diff(diff::DiffArgs),
    /// Verify a bundle's checksums and trust level
    Verify(verify::VerifyArgs),
    /// Manage the Sigstore trusted root used to verify attestations
    Trust {
        #[command(subcommand)]
        command: trust::TrustCommand,
    },
    /// Install an agent skill file that teaches a coding agent to use aicr
    Skill(skill::SkillArgs),
    /// List the nodes the aggregator knows: agent version, last seen, violations
    Nodes(fleet::NodesArgs),
    /// Show drift the aggregator has open now, or its history
    Drift(fleet::DriftArgs),
    /// Follow drift events live as the aggregator records them
    Watch(fleet::WatchArgs),
    /// Pin a pool of nodes to the readings it should have (peer comparison)
    Baseline {
        #[command(subcommand)]
        command: baseline::BaselineCommand,
    },
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
    Pwsh,
}

/// Run the command; `Ok(false)` asks for exit 1 without an error, which
/// only `diff` does (the snapshots differ).
fn run(cli: Cli) -> Result<bool> {
    let done = match cli.command {
        Command::Snapshot(a) => snapshot::run(&a),
        Command::Recipe(a) => recipe::run_recipe(&a),
        Command::Query(a) => recipe::run_query(&a),
        Command::Validate(a) => validate::run(&a),
        Command::Bundle(a) => bundle::run(&a),
        Command::Verify(a) => verify::run(&a),
        Command::Diff(a) => return diff::run(&a),
        Command::Trust { command } => trust::run(&command),
        Command::Skill(a) => skill::run(&a, &Cli::command()),
        Command::Nodes(a) => fleet::run_nodes(&a),
        Command::Drift(a) => fleet::run_drift(&a),
        Command::Watch(a) => fleet::run_watch(&a),
        Command::Baseline { command } => baseline::run(&command),
        Command::Completion { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
                Shell::Pwsh => clap_complete::Shell::PowerShell,
            };
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "aicr", &mut buf);
            std::io::stdout()
                .write_all(&buf)
                .map_err(|e| Error::internal(format!("failed to write completion script: {e}")))
        }
    };
    done.map(|()| true)
}

/// Usage errors exit 1, as upstream's flag parser does; a single-value flag
/// given twice is invalid input (2). A missing command is a usage error
/// too: the help goes to stderr and the exit is 1.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use std::error::Error as _;
    // A value the core's own parser refused (`aicr::flags::typed`) keeps
    // the core's message and exit code, as when the value comes from a file.
    if let Some(core) = e.source().and_then(|s| s.downcast_ref::<Error>()) {
        logging::report_error(logging::Mode::Cli, core.message(), core.kind().exit_code());
        return ExitCode::from(core.kind().exit_code() as u8);
    }
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::ArgumentConflict => {
            let arg = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(s)) => {
                    s.split_whitespace().next().unwrap_or(s).to_string()
                }
                _ => String::new(),
            };
            let prior = e.get(ContextKind::PriorArg);
            let same = matches!(prior, Some(ContextValue::String(p)) if p.split_whitespace().next() == Some(arg.as_str()))
                || prior.is_none();
            if same && !arg.is_empty() {
                logging::report_error(
                    logging::Mode::Cli,
                    &format!("flag {arg} can only be specified once"),
                    2,
                );
                ExitCode::from(2)
            } else {
                let _ = e.print();
                ExitCode::from(1)
            }
        }
        _ => {
            let _ = e.print();
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let mode = if cli.log_json {
        logging::Mode::Json
    } else if cli.debug {
        logging::Mode::Text
    } else {
        logging::Mode::Cli
    };
    logging::init(mode, cli.debug);
    kubernetes::set_request_timeout(cli.kube_timeout);
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            let code = e.kind().exit_code();
            logging::report_error(mode, e.message(), code);
            ExitCode::from(code as u8)
        }
    }
}
