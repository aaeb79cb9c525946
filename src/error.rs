//! The library's one error type and the mapping from error kind to process
//! exit code.
//!
//! Every fallible operation in the core returns [`Error`]. Callers add context
//! with [`Error::context`]; the kind of the outermost coded error decides the
//! exit code, as the CLI reference's exit-code table prescribes. Binaries must
//! not invent exit codes of their own: they call [`ErrorKind::exit_code`].

use std::fmt;

/// What went wrong, in the terms of the CLI's exit-code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Bad user input: flags, criteria, config files, selectors' syntax (exit 2).
    InvalidRequest,
    /// Something named by the user does not exist (exit 3).
    NotFound,
    /// Authentication or RBAC denied the request (exit 4).
    Unauthorized,
    /// An operation ran past its deadline (exit 5).
    Timeout,
    /// A remote endpoint could not be reached (exit 6).
    Unavailable,
    /// A remote endpoint throttled us (exit 7).
    RateLimit,
    /// Everything else, including unreadable data files (exit 8).
    Internal,
}

impl ErrorKind {
    /// The process exit code for this kind; the single source of truth.
    pub const fn exit_code(self) -> i32 {
        match self {
            ErrorKind::InvalidRequest => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Unauthorized => 4,
            ErrorKind::Timeout => 5,
            ErrorKind::Unavailable => 6,
            ErrorKind::RateLimit => 7,
            ErrorKind::Internal => 8,
        }
    }
}

/// An error with a kind (which decides the exit code) and a message that
/// reads outermost context first: `failed to load snapshot from "x": ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefix the message with what we were doing; keeps the kind.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }

    /// Prefix the message and re-classify, for wrappers whose kind the
    /// exit-code table fixes regardless of the cause (e.g. every `--data`
    /// problem is INTERNAL).
    /// Something the user handed us could not be used: theirs to fix
    /// (exit 2), except that a missing file stays not found (3) and a
    /// source that denied, timed out, throttled or could not be reached
    /// keeps its own code. The one rule every loader of user input follows.
    pub fn input(self, what: impl fmt::Display) -> Self {
        match self.kind {
            ErrorKind::NotFound
            | ErrorKind::Unauthorized
            | ErrorKind::Timeout
            | ErrorKind::Unavailable
            | ErrorKind::RateLimit => self.context(what),
            ErrorKind::InvalidRequest | ErrorKind::Internal => {
                self.wrap(ErrorKind::InvalidRequest, what)
            }
        }
    }

    pub fn wrap(self, kind: ErrorKind, what: impl fmt::Display) -> Self {
        Error {
            kind,
            message: format!("{what}: {}", self.message),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds [`Error::context`] to `Result`s.
pub trait ResultExt<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
    fn wrap(self, kind: ErrorKind, what: impl fmt::Display) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(what))
    }

    fn wrap(self, kind: ErrorKind, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.wrap(kind, what))
    }
}

/// A foreign error and its causes on one line, `outer: inner: ...`. Many
/// libraries' top-level text ("transport error", "error sending request")
/// hides the cause that tells the user what to fix; a cause whose text the
/// line already holds is not repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_cli_table() {
        let table = [
            (ErrorKind::InvalidRequest, 2),
            (ErrorKind::NotFound, 3),
            (ErrorKind::Unauthorized, 4),
            (ErrorKind::Timeout, 5),
            (ErrorKind::Unavailable, 6),
            (ErrorKind::RateLimit, 7),
            (ErrorKind::Internal, 8),
        ];
        for (kind, code) in table {
            assert_eq!(kind.exit_code(), code, "{kind:?}");
        }
    }

    #[test]
    fn context_keeps_kind_and_wrap_replaces_it() {
        let e = Error::not_found("missing").context("loading x");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "loading x: missing");
        let e = e.wrap(ErrorKind::Internal, "outer");
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert_eq!(e.to_string(), "outer: loading x: missing");
    }

    #[test]
    fn chains_name_every_new_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "transport error",
            Some(Box::new(E(
                "connection refused",
                Some(Box::new(E("refused", None))),
            ))),
        );
        assert_eq!(chain(&e), "transport error: connection refused");
    }
}
