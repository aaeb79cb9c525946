//! Flag groups and flag value types several commands share, defined once
//! so a flag is spelled, documented and parsed the same way everywhere.

pub mod format;
