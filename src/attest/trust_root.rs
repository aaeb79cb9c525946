//! Which Sigstore trusted root (`trusted_root.json`: Fulcio CAs, Rekor and
//! CT log keys) verification uses: the copy `aicr trust update` cached
//! through TUF when there is one, else the one embedded in the binary.
//! Nothing here touches the network, so verification stays offline.

use sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT;
pub use sigstore_trust_root::TrustedRoot;

use crate::error::{Error, Result};

/// Parse a `trusted_root.json` document.
pub fn parse(bytes: &[u8]) -> Result<TrustedRoot> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::invalid(format!("malformed trusted root JSON: {e}")))?;
    TrustedRoot::from_json(text)
        .map_err(|e| Error::invalid(format!("malformed trusted root JSON: {e}")))
}

/// The root cached at `path` (by `aicr trust update`) if present, else the
/// embedded production root.
pub(crate) fn load(path: &std::path::Path) -> Result<TrustedRoot> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&bytes).map_err(|e| e.context(path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            parse(SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes())
        }
        Err(e) => Err(Error::internal(format!(
            "cannot read Sigstore trusted root {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_root_parses_and_lists_ct_logs() {
        let r = parse(SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes()).unwrap();
        assert!(!r.certificate_authorities.is_empty());
        assert!(!r.tlogs.is_empty());
        assert!(!r.ctlogs.is_empty());
    }

    #[test]
    fn malformed_roots_are_invalid_input() {
        let e = parse(b"[").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
        assert!(e.message().starts_with("malformed trusted root JSON"));
    }
}
