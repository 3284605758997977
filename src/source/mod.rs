//! Where records come from, delivered in event-time order.
//!
//! `files`: exported JSON Lines / CSV files, decoded, sorted on disk in
//! bounded memory and merged (§6). Sources never touch state.

pub mod files;
mod runs;

pub use files::{stage, Format, Inputs, RawLookup, SourceError, Staged};
pub use runs::{Merge, Runs};
