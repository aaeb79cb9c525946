//! `aicr trust update`: refresh the Sigstore trusted root that `verify` and
//! `bundle --attest` check against. The TUF work lives in
//! `aicr::attest::tuf`; this module only words the result.

use std::io::Write;
use std::path::PathBuf;

use aicr::attest::tuf;

use crate::args::sigstore::TufArgs;
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
    /// --tuf-mirror and --tuf-root select another TUF repository and the
    /// root.json to start from.
    Update(UpdateArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    tuf: TufArgs,
    /// TUF root.json to start trust from, for a private Sigstore [default: the one embedded in this binary]
    #[arg(long, env = tuf::ROOT_ENV, value_name = "FILE")]
    tuf_root: Option<PathBuf>,
}

pub fn run(cmd: &TrustCommand) -> Result<()> {
    match cmd {
        TrustCommand::Update(a) => update(a),
    }
}

fn update(a: &UpdateArgs) -> Result<()> {
    let repo = a.tuf.repository(a.tuf_root.clone());
    let updated = crate::runtime::block_on(tuf::update(&repo))??;
    tracing::info!(cache = %updated.cache.display(), "trusted root refreshed");
    let text = format!(
        "  ✓ Trusted root updated\n  CAs: {} certificate authorities\n  Logs: {} transparency logs\n",
        updated.certificate_authorities, updated.transparency_logs
    );
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Error::internal(format!("failed to write output: {e}")))
}
