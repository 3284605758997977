//! Integration tests: the real `paywatch` binary on generated and crafted
//! ledgers, with real RocksDB state in temp dirs, and `paywatch run`
//! against a real Kafka-protocol broker (tansu) on 127.0.0.1.

mod api;
mod audit_truth;
mod away;
mod away_worker;
mod bad_input;
mod cases;
mod changelog;
mod cli;
mod common;
mod exchange;
mod follow;
mod fuzz_corpus;
mod inputs;
mod moves;
mod prometheus;
mod resume;
mod run_accounts;
mod security;
mod standby;
mod stream;
mod tasks;
mod ui;
mod webhooks;
