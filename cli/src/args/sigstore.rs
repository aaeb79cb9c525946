//! Where Sigstore trust and signing come from: the TUF repository whose
//! cached trusted root verification reads (`trust update`, `verify`,
//! `bundle --attest`), and the services and identity `--attest` signs with.
//! Cosign's flag names, with the variables this project documented before
//! as fallbacks.

use std::path::PathBuf;

use aicr::attest::{fulcio, oidc, rekor, tuf};

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
