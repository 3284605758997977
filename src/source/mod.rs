//! Where records come from, delivered in event-time order.
//!
//! - `files`: exported JSON Lines / CSV files, decoded, sorted on disk in
//!   bounded memory and merged (§6).
//! - `kafka`: the input topics (`copartition` checks the person-keyed ones
//!   agree on their partition count); `offsets` keeps their positions as
//!   state; `positions` checks the logs still match them; `reorder`
//!   releases what was read in event-time order; `log_end` finds where a
//!   partition really ends (tansu's watermark stops inside a batch).
//!
//! Sources never touch state.

pub mod files;
pub mod kafka;
pub mod log_end;
pub mod copartition;
pub mod offsets;
pub mod positions;
pub mod reorder;
mod runs;

pub use files::{stage, Format, Inputs, RawLookup, SourceError, Staged};
pub use runs::{Merge, Runs};
