//! Links the GCC unwinder into `aicr` statically instead of loading
//! `libgcc_s.so.1`.
//!
//! Rust's standard library asks for `-lgcc_s` on glibc targets, only for
//! the `_Unwind_*` functions. Loading that shared library also runs its
//! constructor, `__cpu_indicator_init`, which issues a dozen CPUID
//! instructions; under a hypervisor each is a VM exit (17 µs each on the
//! development VM), so every `aicr` invocation paid about 0.2 ms, close to
//! a tenth of `aicr recipe`. The same unwinder ships as the static
//! `libgcc_eh.a`, which has no constructor. A linker script named
//! `libgcc_s.so`, found before the compiler's own, sends `-lgcc_s` there.
//! Panics unwind as before (the integration tests exercise them); the
//! binary no longer needs `libgcc_s.so.1` at run time.
//!
//! Only the CLI does this: its start-up is on the user's critical path,
//! while the agent and the aggregator start once and run for days.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    // A static C runtime already links libgcc_eh; other targets never ask
    // for libgcc_s.
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" || static_crt {
        return;
    }
    let dir = PathBuf::from(var("OUT_DIR")).join("static-unwinder");
    std::fs::create_dir_all(&dir).expect("OUT_DIR is writable");
    std::fs::write(dir.join("libgcc_s.so"), "INPUT(-lgcc_eh)\n").expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search=native={}", dir.display());
}
