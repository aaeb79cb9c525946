//! One module per verb (`recipe` also holds `query`, its read-only twin;
//! `fleet` holds the aggregator verbs `nodes`, `drift` and `watch`;
//! `baseline` pins pools for peer comparison). A verb
//! module owns its flags, turns them into library calls and prints the
//! result; shared flag groups live in `crate::args`.

pub mod baseline;
pub mod bundle;
pub mod diff;
pub mod fleet;
pub mod recipe;
pub mod skill;
pub mod snapshot;
pub mod trust;
pub mod validate;
pub mod verify;
