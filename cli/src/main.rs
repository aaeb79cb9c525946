//! `aicr`: the AI Cluster Runtime CLI. Parses arguments, wires the core
//! library together and prints; every exit code comes from
//! `aicr::ErrorKind::exit_code` (or 1 for usage errors, as upstream).

// Flag doc comments are `--help` text, where a URL must read as typed.
#![allow(rustdoc::bare_urls)]

mod args;
mod cmd;
mod kubernetes;
mod logging;
mod remote;
mod runtime;
mod signal;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use cmd::{baseline, bundle, diff, fleet, recipe, skill, snapshot, trust, validate, verify};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use aicr::error::{Error, Result};

#[derive(Debug, Parser)]
#[command(
    name = "aicr",
    about = "AI Cluster Runtime: capture, recipe, validate and bundle GPU Kubernetes clusters",
    version = aicr::VERSION,
    disable_version_flag = true
)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// The top-level flags.
#[derive(Debug, Args)]
struct Globals {
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

/// Parse the command line. Building the whole command tree (every
/// subcommand and its flags) is a tenth of a short run, so for the usual
/// subcommands only the one named is built. Anything but a successful
/// parse (an error, --help, --version) is parsed again with the whole
/// tree, so messages, help and exit codes come from it as before.
fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    match parse_one(&args) {
        Some(cli) => Ok(cli),
        None => Cli::try_parse_from(args),
    }
}

/// Parse against a tree with only the subcommand `args` names: the first
/// argument that is not a flag. `--kube-timeout` is the one top-level flag
/// with a value; given as a separate argument before the subcommand, its
/// value is what this finds, which names no subcommand (or fails to parse
/// as a duration), so the whole tree parses it. `None` for any outcome
/// but success, and for the rarely used subcommands.
fn parse_one(args: &[OsString]) -> Option<Cli> {
    let name = args
        .iter()
        .skip(1)
        .find(|a| !a.as_encoded_bytes().starts_with(b"-"))?
        .to_str()?;
    let (name, augment): (&'static str, fn(clap::Command) -> clap::Command) = match name {
        "snapshot" => ("snapshot", snapshot::SnapshotArgs::augment_args),
        "recipe" => ("recipe", recipe::RecipeArgs::augment_args),
        "query" => ("query", recipe::QueryArgs::augment_args),
        "validate" => ("validate", validate::ValidateArgs::augment_args),
        "bundle" => ("bundle", bundle::BundleArgs::augment_args),
        "verify" => ("verify", verify::VerifyArgs::augment_args),
        "nodes" => ("nodes", fleet::NodesArgs::augment_args),
        "drift" => ("drift", fleet::DriftArgs::augment_args),
        "watch" => ("watch", fleet::WatchArgs::augment_args),
        _ => return None,
    };
    let sub = augment(clap::Command::new(name));
    let top = clap::Command::new("aicr")
        .version(aicr::VERSION)
        .disable_version_flag(true)
        .subcommand_required(true);
    let matches = Globals::augment_args(top)
        .subcommand(sub)
        .try_get_matches_from(args)
        .ok()?;
    Cli::from_arg_matches(&matches).ok()
}

fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let Globals {
        debug,
        log_json,
        kube_timeout,
        ..
    } = cli.globals;
    let mode = if log_json {
        logging::Mode::Json
    } else if debug {
        logging::Mode::Text
    } else {
        logging::Mode::Cli
    };
    logging::init(mode, debug);
    kubernetes::set_request_timeout(kube_timeout);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    /// Every value offered to `--help` or shell completion is one the flag
    /// accepts: given alone, it never fails as a bad value.
    #[test]
    fn offered_values_parse() {
        use clap::error::ErrorKind;
        fn walk(root: &clap::Command, cmd: &clap::Command, path: &[String], seen: &mut usize) {
            for arg in cmd.get_arguments() {
                for pv in arg.get_possible_values() {
                    let mut argv: Vec<String> = vec!["aicr".into()];
                    argv.extend(path.iter().cloned());
                    if let Some(long) = arg.get_long() {
                        argv.push(format!("--{long}"));
                    }
                    argv.push(pv.get_name().to_string());
                    if let Err(e) = root.clone().try_get_matches_from(&argv) {
                        assert!(
                            !matches!(
                                e.kind(),
                                ErrorKind::InvalidValue | ErrorKind::ValueValidation
                            ),
                            "{argv:?}: {e}"
                        );
                    }
                    *seen += 1;
                }
            }
            for sub in cmd.get_subcommands() {
                let mut p = path.to_vec();
                p.push(sub.get_name().to_string());
                walk(root, sub, &p, seen);
            }
        }
        let root = Cli::command();
        let mut seen = 0;
        walk(&root, &root, &[], &mut seen);
        assert!(seen > 30, "only {seen} offered values");
    }

    /// The one-subcommand parse gives what the whole tree gives, and
    /// leaves everything else (errors, help, other subcommands) to it.
    #[test]
    fn one_subcommand_parses_as_the_whole_tree() {
        Cli::command().debug_assert();
        let fast = [
            "aicr recipe --service eks --accelerator h100 --intent training --os ubuntu -o r.yaml",
            "aicr --debug recipe --gpu h100 --nodes 2 --nodes -1 --data d --data-only -t json",
            "aicr recipe --log-json -s snap.yaml -c crit.yaml --config cfg.yaml -k a -k b",
            "aicr query --service eks --selector components.gpu-operator.values.driver.version",
            "aicr snapshot --local --root /host -o s.yaml",
            "aicr validate --no-cluster -r r.yaml -s s.yaml -o report.json",
            "aicr bundle -r r.yaml -o out --deployer argocd --set gpuoperator:driver.version=1 --dynamic x:y",
            "aicr bundle -r r.yaml --accelerated-node-selector a=b --accelerated-node-toleration k=v:NoSchedule",
            "aicr bundle",
            "aicr verify ./bundle --format json",
            "aicr nodes --aggregator https://a:50051 --token t -t json",
            "aicr drift --aggregator https://a:50051 --history --limit 5",
            "aicr watch --aggregator https://a:50051 --client-cert c --client-key k",
            "aicr --kube-timeout=5s validate --no-cluster -r r.yaml",
            "aicr snapshot --kube-timeout 1m -o s.yaml",
        ];
        let full_only = [
            "aicr",
            "aicr --help",
            "aicr -v",
            "aicr recipe --help",
            "aicr recipe --no-such-flag",
            "aicr recipe --service eks --service gke",
            "aicr query",
            "aicr nodes --client-cert c --aggregator https://a:50051",
            "aicr trust update",
            "aicr completion bash",
            "aicr help recipe",
            "aicr -- recipe",
            "aicr recipes",
            "aicr --kube-timeout 5s recipe --service eks",
            "aicr --kube-timeout recipe recipe --service eks",
        ];
        for line in fast {
            let args = argv(line);
            let one = parse_one(&args).unwrap_or_else(|| panic!("{line}: not parsed"));
            let full = Cli::try_parse_from(&args).unwrap();
            assert_eq!(format!("{one:?}"), format!("{full:?}"), "{line}");
        }
        for line in full_only {
            assert!(parse_one(&argv(line)).is_none(), "{line}");
        }
    }
}
