//! `aicr trust update`: refresh the Sigstore trusted root that `verify` and
//! `bundle --attest` check against. The TUF work lives in
//! `aicr::attest::tuf`; this module only words the result.

use std::io::Write;

use aicr::attest::tuf;
use aicr::error::{Error, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Fetch the latest Sigstore trusted root through TUF into ~/.sigstore/root/
    ///
    /// Walks the root chain from the TUF root embedded in this binary, checks
    /// timestamp, snapshot and targets metadata, and stores trusted_root.json
    /// where cosign and sigstore-go look for it. Run it after installing and
    /// whenever `aicr verify` reports a stale trusted root.
    /// AICR_TUF_MIRROR and AICR_TUF_ROOT select another TUF repository and
    /// the root.json to start from.
    Update,
}

pub fn run(cmd: &TrustCommand) -> Result<()> {
    match cmd {
        TrustCommand::Update => update(),
    }
}

fn update() -> Result<()> {
    let updated = tuf::update()?;
    tracing::info!(cache = %updated.cache.display(), "trusted root refreshed");
    let text = format!(
        "  ✓ Trusted root updated\n  CAs: {} certificate authorities\n  Logs: {} transparency logs\n",
        updated.certificate_authorities, updated.transparency_logs
    );
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Error::internal(format!("failed to write output: {e}")))
}
