//! How big a batch grows (`Engine::batch_full`): from `batch_records` on,
//! until it holds `RECORDS_PER_REWRITE` records per cached entry it
//! changed, and never past `batch_records_max`.

use super::*;
use crate::engine::RECORDS_PER_REWRITE;

/// A payment of the enrolled beneficiary for the `i`th month from
/// 2019-01, paid on its 5th, into an account of its own when `account` is
/// `i`.
fn monthly(i: usize, account: usize) -> Record {
    let (y, m) = (2019 + i / 12, i % 12 + 1);
    let mut p = payment(&format!("E{i}"), &format!("{y}-{m:02}"), "585.00", &format!("{y}-{m:02}-05T10:00:00+08:00"));
    p.account_no = format!("62170000000{account:05}").into();
    Record::Payment(p)
}

#[test]
fn a_batch_grows_while_it_changes_an_entry_for_nearly_every_record() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    assert_eq!(h.engine.changed_entries().unwrap(), 0, "a commit leaves nothing changed");
    // 40 months, each into an account of its own: the beneficiary and 40
    // accounts changed (the accounts on the account stage).
    for i in 0..40 {
        h.engine.apply(&monthly(i, i)).unwrap();
    }
    assert!(!h.engine.batch_full(40, 10, 1000).unwrap(), "40 records for 41 changed entries: not yet");
    assert_eq!(h.engine.changed_entries().unwrap(), 41);
    assert!(h.engine.batch_full(40, 10, 40).unwrap(), "batch_records_max ends it whatever it changed");
    assert!(!h.engine.batch_full(9, 1, 1000).unwrap());
    // 124 more into the same accounts: no entry more to rewrite.
    for i in 40..164 {
        h.engine.apply(&monthly(i, i % 40)).unwrap();
    }
    assert!(!h.engine.batch_full(RECORDS_PER_REWRITE * 41 - 1, 10, 1000).unwrap());
    assert!(h.engine.batch_full(RECORDS_PER_REWRITE * 41, 10, 1000).unwrap());
    assert!(!h.engine.batch_full(RECORDS_PER_REWRITE * 41, 200, 1000).unwrap(), "never before batch_records");
    assert_eq!(h.engine.changed_entries().unwrap(), 41);
    h.alerts.extend(h.engine.commit(None).unwrap().alerts);
    assert!(h.alerts.is_empty(), "a clean ledger: {:?}", h.rules());
    assert_eq!(h.engine.changed_entries().unwrap(), 0);
    assert!(h.engine.batch_full(10, 10, 1000).unwrap(), "nothing changed: batch_records ends it");
}

/// The account stage reports its count as it answers: whatever it has
/// answered when the engine asks, the decision is the exact one.
#[test]
fn the_decision_waits_for_the_account_stage_only_when_it_could_end_the_batch() {
    for answered_first in [false, true] {
        let mut h = Harness::new();
        h.apply(Record::Roster(enrolled()));
        for i in 0..600 {
            h.engine.apply(&monthly(i, i)).unwrap();
        }
        if answered_first {
            h.engine.changed_entries().unwrap();
        }
        // 601 entries changed: a batch of 2403 records is not full, 2404 is.
        assert!(!h.engine.batch_full(RECORDS_PER_REWRITE * 601 - 1, 10, 10_000).unwrap(), "{answered_first}");
        assert!(h.engine.batch_full(RECORDS_PER_REWRITE * 601, 10, 10_000).unwrap(), "{answered_first}");
    }
}
