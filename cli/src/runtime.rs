//! The CLI's async runtime. Commands are synchronous and reach the network
//! (the API server, registries, TUF mirrors, the aggregator) only now and
//! then, so each such step runs on a small current-thread runtime started
//! here. The library never starts one: its I/O functions are `async`, and
//! whoever owns the process decides how to drive them.

use aicr::error::{Error, Result};

/// Run `fut` to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("failed to start async runtime: {e}")))?;
    Ok(rt.block_on(fut))
}
