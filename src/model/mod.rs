//! Document shapes with serde, exactly as the specs name and order fields.
//! Pure data: no I/O, no resolution logic.

pub mod config;
pub mod criteria;
pub mod recipe;
pub mod registry;
pub mod snapshot;

pub use criteria::{ANY, Criteria, Field, OverlayCriteria};
pub use recipe::{Constraint, RecipeMetadata, RecipeResult};
pub use registry::ComponentRegistry;
pub use snapshot::{Measurement, Reading, Snapshot, Subtype};
