//! `aicr trust update`: refresh the Sigstore trusted root that `verify` and
//! `bundle --attest` check against. The TUF work lives in
//! `aicr::attest::tuf`; this module only words the result.

use std::io::Write;
use std::path::PathBuf;

use aicr::attest::{fulcio, oidc, rekor, tuf};
use aicr::error::{Error, Result};
use clap::Subcommand;

/// Which TUF repository's cached trusted root verification reads.
#[derive(Debug, Clone, clap::Args)]
pub struct TufArgs {
    /// TUF repository the Sigstore trusted root comes from [default: the public-good one]
    #[arg(long, env = tuf::MIRROR_ENV, value_name = "URL")]
    pub tuf_mirror: Option<String>,
}

impl TufArgs {
    /// The repository, its cache under `$HOME/.sigstore/root`.
    pub fn repository(&self, root: Option<PathBuf>) -> tuf::Repository {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        tuf::Repository::new(self.tuf_mirror.as_deref(), root, home.as_deref())
    }

    /// The cached `trusted_root.json` verification reads.
    pub fn cached_root(&self) -> PathBuf {
        self.repository(None).trusted_root_cache_path()
    }
}

/// Where `--attest` signs: the Sigstore services and the OIDC issuer.
#[derive(Debug, Clone, clap::Args)]
pub struct SigningArgs {
    /// Fulcio certificate authority for --attest
    #[arg(long, env = "AICR_FULCIO_URL", value_name = "URL", default_value = fulcio::PUBLIC_GOOD)]
    pub fulcio_url: String,
    /// Rekor transparency log for --attest
    #[arg(long, env = "AICR_REKOR_URL", value_name = "URL", default_value = rekor::PUBLIC_GOOD)]
    pub rekor_url: String,
    /// OIDC issuer for the interactive --attest sign-in flows
    #[arg(long, env = "AICR_OIDC_ISSUER", value_name = "URL", default_value = oidc::SIGSTORE_ISSUER)]
    pub oidc_issuer: String,
}

/// GitHub Actions' OIDC token endpoint, when the job may request one. The
/// runner sets these variables; they are an ambient credential, not a
/// setting, so they are read here at the edge rather than as flags.
pub fn github_actions_token_endpoint() -> Option<(String, oidc::IdentityToken)> {
    let url = std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL").ok()?;
    let bearer = std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN").ok()?;
    (!url.is_empty() && !bearer.is_empty()).then_some((url, oidc::IdentityToken(bearer)))
}

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
