//! Where alerts and dead letters go. A sink only writes what the store has
//! committed; it never decides anything.
//!
//! - `jsonl`: the file audit's output files.
//! - `outbox` + `kafka`: `paywatch run`'s messages, committed with the state
//!   and deleted once the broker acknowledged them.
//! - `webhook` + `dispatch`: deliveries to supervisors' receivers, from
//!   the same outbox, one worker per route.

pub mod case_events;
pub mod dispatch;
pub mod jsonl;
pub mod kafka;
pub mod outbox;
pub mod webhook;

pub use jsonl::JsonlSink;
