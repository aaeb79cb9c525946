//! Flag groups and flag value types that several commands share, each
//! defined once so that names, defaults, variables, help and parsing cannot
//! drift apart between commands. A group owns its conversion into the
//! library's options; the commands own what they do with them.

pub mod agent_job;
pub mod format;
pub mod sigstore;
