//! Test support shared by the workspace's integration tests.
//!
//! Everything here is a named fake for tests; nothing in it is linked into a
//! production binary.

/// Absolute path of the repository's `shared/` reference directory, which CI
/// and developers keep beside the checkout.
pub fn shared_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}
