//! Flag groups that several commands share, each defined once so that
//! their names, defaults, variables and help cannot drift apart between
//! commands. A group owns its conversion into the library's options; the
//! commands own what they do with them.

pub mod agent_job;
