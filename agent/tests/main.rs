//! The node agent's integration tests: collectors on fixture roots, the
//! D-Bus systemd peer, GPU fixtures, watching and streaming. One test
//! binary; filter by module, e.g. `cargo test -p aicr-agent --test integration systemd::`.

mod collect_node;
mod common;
mod env_and_logs;
mod gpu;
mod os;
mod stream;
mod systemd;
mod watch;
