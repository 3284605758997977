//! The fuzzers' corpus and every input they ever crashed on
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`), replayed
//! through the same checks the fuzz targets run
//! (`paywatch::decode::fuzz`): no panic, bounded, deterministic, accepted
//! records round-trip.

use paywatch::decode::{fuzz, Kind};
use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    let all = inputs(target);
    assert!(all.len() >= 10, "fuzz/corpus/{target} holds only {} inputs", all.len());
    for (name, data) in &all {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(data))).is_err() {
            panic!("{name} fails the {target} checks");
        }
    }
}

#[test]
fn payment_decoder_corpus() {
    replay("payment", |d| fuzz::one_record(Kind::Payment, d));
}

#[test]
fn roster_decoder_corpus() {
    replay("roster", |d| fuzz::one_record(Kind::Roster, d));
}

#[test]
fn death_decoder_corpus() {
    replay("death", |d| fuzz::one_record(Kind::Death, d));
}

#[test]
fn csv_reader_corpus() {
    replay("csv", fuzz::csv_file);
}
