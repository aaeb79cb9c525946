//! Process signals. The binary owns them: the library's long runs take a
//! cancellation future instead of catching signals themselves, so a caller
//! that is not a terminal (a test, a server) can stop them its own way.

/// Resolves on SIGINT or SIGTERM, naming it. Handlers are installed on the
/// first poll, so until the library starts waiting on it the default
/// handling (exit at once) applies, as before anything was created.
pub async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}
