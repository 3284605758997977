//! paywatch audits social-assistance payments (低保, 特困供养, 临时救助)
//! against the roster and death records, as they happen or from exports.
//!
//! One payment travels a straight line, and the modules are its stations:
//!
//! ```text
//! source (files | kafka) → decode (validate, dead-letter) → engine (state,
//! watermark, detect/* rules) → store (one atomic commit: state + input
//! position + alerts) → sink (alerts, dead letters)
//! ```
//!
//! - [`model`]: the contract's records and alert as types.
//! - [`decode`]: lines and rows to records; the closed set of reject reasons.
//! - [`source`]: where records come from, in event-time order.
//! - [`engine`]: applies records to state and runs [`detect`]'s rules.
//! - [`store`]: RocksDB, the only code that touches it.
//! - [`sink`]: where alerts and dead letters go.
//! - [`exchange`]: the repartition records between instances, from a
//!   task's outbox to the group's topics and back through a reader.
//! - [`audit`]: the file audit that wires them; [`run`]: the streaming
//!   service that wires the same engine to Kafka, with [`http`] and
//!   [`metrics`]; [`produce`]: loads exports into a topic; [`generate`]: a
//!   synthetic district ledger with its truth.

pub mod audit;
pub mod changelog;
pub mod clock;
pub mod config;
pub mod decode;
pub mod detect;
pub mod engine;
pub mod exchange;
pub mod generate;
pub mod http;
pub mod metrics;
pub mod model;
pub mod partition;
pub mod produce;
pub mod report;
pub mod run;
pub mod sink;
pub mod source;
pub mod store;
