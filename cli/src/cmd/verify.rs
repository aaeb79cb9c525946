//! `aicr verify`: flag wiring and exit codes around `aicr::bundle::verify`.
//! The report goes to stdout; a policy failure exits 2, any other
//! verification problem 4.

use aicr::attest::identity;
use aicr::attest::verifier::Cached;

use crate::args::format::TextOrJson;
use aicr::bundle::verify::{self, Checks, Policy, Requirements, VersionConstraint};
use aicr::error::{Error, ErrorKind, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Bundle directory to verify
    pub bundle_dir: Option<String>,
    /// Required trust level: max, verified, attested, unverified, unknown
    #[arg(long, default_value = "max")]
    pub min_trust_level: String,
    /// Required bundle signer identity (exact match)
    #[arg(long)]
    pub require_creator: Option<String>,
    /// Constraint on the signing aicr version, e.g. ">= v0.12.0" (bare version means >=)
    #[arg(long)]
    pub cli_version_constraint: Option<String>,
    /// Override the binary attestation identity pattern (must name this project's repository)
    #[arg(long)]
    pub certificate_identity_regexp: Option<String>,
    /// Report format: text or json
    #[arg(long, default_value = "text", value_parser = aicr::flags::offered(aicr::flags::typed::<TextOrJson>, TextOrJson::NAMES), hide_possible_values = true)]
    pub format: TextOrJson,
    #[command(flatten)]
    pub tuf: crate::args::sigstore::TufArgs,
}

pub fn run(a: &VerifyArgs) -> Result<()> {
    let dir = a
        .bundle_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::invalid("bundle directory is required: aicr verify <bundle-dir>"))?;
    let req = Requirements {
        min: Policy::parse(&a.min_trust_level)?,
        creator: a.require_creator.clone().filter(|c| !c.is_empty()),
        version: a
            .cli_version_constraint
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .map(VersionConstraint::parse)
            .transpose()?,
    };
    let json = a.format == TextOrJson::Json;
    let checks = Checks {
        verifier: &Cached(a.tuf.cached_root()),
        binary_identity: identity::Policy::release(a.certificate_identity_regexp.as_deref())?,
    };
    let abs = std::path::absolute(dir)
        .map_err(|e| Error::invalid(format!("invalid bundle directory {dir:?}: {e}")))?;
    let outcome = verify::inspect(&abs, &checks)?;
    let failure = outcome.policy_failure(&req);
    let report = if json {
        outcome.json()?
    } else {
        outcome.text(failure.as_deref())
    };
    aicr::sink::write_local("-", report.as_bytes())?;
    if let Some(f) = failure {
        return Err(Error::invalid(f));
    }
    if let Some(first) = outcome.errors.first() {
        return Err(Error::new(
            ErrorKind::Unauthorized,
            format!("bundle verification failed: {first}"),
        ));
    }
    Ok(())
}
