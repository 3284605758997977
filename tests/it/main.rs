//! Integration tests: the real `paywatch` binary on generated and crafted
//! ledgers, with real RocksDB state in temp dirs.

mod audit_truth;
mod bad_input;
mod cli;
mod common;
mod resume;
