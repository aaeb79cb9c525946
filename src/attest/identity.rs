//! Who may sign what. Bundle attestations accept any OIDC identity (they
//! only prove a real identity signed); binary attestations are pinned to
//! this project's release workflow on GitHub Actions. The repository and
//! workflow are build-time constants so forks can pin their own releases.

use regex::Regex;

use crate::error::{Error, ErrorKind, Result};

/// The issuer of GitHub Actions workload identity tokens.
pub(crate) const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// `owner/repo` of this project's releases.
pub const RELEASE_REPOSITORY: &str = match option_env!("AICR_RELEASE_REPOSITORY") {
    Some(r) => r,
    None => "aicr-rs/aicr",
};
/// The release workflow file under `.github/workflows/`.
pub const RELEASE_WORKFLOW: &str = match option_env!("AICR_RELEASE_WORKFLOW") {
    Some(w) => w,
    None => "release.yaml",
};

/// Repositories an identity override may name.
pub(crate) fn allowed_repositories() -> Vec<&'static str> {
    vec![RELEASE_REPOSITORY]
}

/// The default binary-attestation SAN pattern.
pub(crate) fn default_pattern() -> String {
    format!(
        "^https://github\\.com/{}/\\.github/workflows/{}@refs/tags/.*",
        regex::escape(RELEASE_REPOSITORY),
        regex::escape(RELEASE_WORKFLOW)
    )
}

/// What a signature's certificate must show.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Exact OIDC issuer, or any.
    pub issuer: Option<String>,
    /// SAN pattern, or any.
    pub san: Option<Regex>,
    /// The SAN must also start with one of these; empty means any. Keeps
    /// an override such as `://github.com/o/r/|.*` from matching others.
    pub san_prefixes: Vec<String>,
}

impl Policy {
    pub(crate) fn any() -> Policy {
        Policy {
            issuer: None,
            san: None,
            san_prefixes: Vec::new(),
        }
    }

    /// The release pin, with an optional `--certificate-identity-regexp`.
    pub fn release(override_pattern: Option<&str>) -> Result<Policy> {
        let pattern = match override_pattern {
            None => default_pattern(),
            Some(p) => {
                validate_override(p)?;
                tracing::warn!("using custom binary attestation identity pattern: {p}");
                p.to_string()
            }
        };
        let re = Regex::new(&pattern).map_err(|e| {
            Error::invalid(format!(
                "invalid --certificate-identity-regexp {pattern:?}: {e}"
            ))
        })?;
        Ok(Policy {
            issuer: Some(GITHUB_ACTIONS_ISSUER.into()),
            san: Some(re),
            san_prefixes: allowed_repositories()
                .iter()
                .map(|r| format!("https://github.com/{r}/"))
                .collect(),
        })
    }

    pub(crate) fn check(&self, issuer: &str, san: &str) -> Result<()> {
        if let Some(want) = &self.issuer
            && want != issuer
        {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                format!("certificate issuer {issuer:?} is not {want:?}"),
            ));
        }
        let prefixed =
            self.san_prefixes.is_empty() || self.san_prefixes.iter().any(|p| san.starts_with(p));
        if let Some(re) = &self.san
            && (!re.is_match(san) || !prefixed)
        {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "certificate identity {san:?} does not match {:?}",
                    re.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// An override must still name an allowed repository, so a flag cannot
/// turn the pin into "any GitHub workflow".
pub(crate) fn validate_override(p: &str) -> Result<()> {
    if p.trim().is_empty() {
        return Err(Error::invalid(
            "--certificate-identity-regexp must not be empty",
        ));
    }
    // Literal and regex-escaped spellings are the same once escapes go.
    let unescaped = p.replace('\\', "");
    let ok = allowed_repositories()
        .iter()
        .any(|repo| unescaped.contains(&format!("://github.com/{repo}/")));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid --certificate-identity-regexp {p:?}: must contain {}",
            allowed_repositories().join(" or ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pin_matches_release_tags_only() {
        let p = Policy::release(None).unwrap();
        let good = format!(
            "https://github.com/{RELEASE_REPOSITORY}/.github/workflows/{RELEASE_WORKFLOW}@refs/tags/v1.0.0"
        );
        assert!(p.check(GITHUB_ACTIONS_ISSUER, &good).is_ok());
        assert!(p.check("https://accounts.google.com", &good).is_err());
        let branch = good.replace("refs/tags/v1.0.0", "refs/heads/main");
        assert!(p.check(GITHUB_ACTIONS_ISSUER, &branch).is_err());
    }

    #[test]
    fn overrides_must_name_an_allowed_repository() {
        let ok = format!("^https://github\\.com/{RELEASE_REPOSITORY}/.*");
        assert!(Policy::release(Some(&ok)).is_ok());
        assert!(validate_override("^https://github\\.com/evil/repo/.*").is_err());
        assert!(validate_override("").is_err());
        let sneaky = format!("://github.com/{RELEASE_REPOSITORY}/|.*");
        let p = Policy::release(Some(&sneaky)).unwrap();
        assert!(
            p.check(
                GITHUB_ACTIONS_ISSUER,
                "https://github.com/evil/x/.github/workflows/r.yaml@refs/tags/v1"
            )
            .is_err()
        );
        assert!(Policy::any().check("x", "y").is_ok());
    }
}
