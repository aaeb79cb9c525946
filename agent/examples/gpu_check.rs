//! Prints this node's GPU measurement as YAML, exactly as a snapshot would
//! carry it; warnings go to stderr. Used by `scripts/gpu-check.sh`.

use aicr_agent::collect::gpu::{self, GpuOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let measurement = gpu::collect(&GpuOptions::default()).await;
    print!("{}", aicr::yaml::to_yaml(&measurement)?);
    Ok(())
}
