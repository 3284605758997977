//! Where alerts and dead letters go. A sink only writes what the store has
//! committed; it never decides anything.

pub mod jsonl;

pub use jsonl::JsonlSink;
