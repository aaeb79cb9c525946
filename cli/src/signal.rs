//! Process signals. The binary owns them: the library's long runs take a
//! cancellation future instead of catching signals themselves, so a caller
//! that is not a terminal (a test, a server) can stop them its own way.
//! Only turns signals into futures; what a command does on one is the
//! command's (and the library's cleanup).

/// Resolves on SIGINT or SIGTERM, naming it. Handlers are installed on the
/// first poll: until the library starts waiting on it (once connected,
/// before it creates anything) a signal ends the process at once, as it
/// always did.
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
