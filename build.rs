//! Compiles `proto/` into the core library with protox, so no system `protoc`
//! is needed on build machines.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // The catalog is embedded with include_dir; rebuild when it changes.
    println!("cargo:rerun-if-changed=recipes");
    let descriptors = protox::compile(["proto/aicr.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
