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
    assert_eq!(h.engine.changed_entries(), 0, "a commit leaves nothing changed");
    // 40 months, each into an account of its own: the beneficiary and 40
    // accounts changed.
    for i in 0..40 {
        h.engine.apply(&monthly(i, i)).unwrap();
    }
    assert_eq!(h.engine.changed_entries(), 41);
    assert!(!h.engine.batch_full(40, 10, 1000), "40 records for 41 changed entries: not yet");
    assert!(h.engine.batch_full(40, 10, 40), "batch_records_max ends it whatever it changed");
    assert!(!h.engine.batch_full(9, 1, 1000));
    // 124 more into the same accounts: no entry more to rewrite.
    for i in 40..164 {
        h.engine.apply(&monthly(i, i % 40)).unwrap();
    }
    assert_eq!(h.engine.changed_entries(), 41);
    assert!(!h.engine.batch_full(RECORDS_PER_REWRITE * 41 - 1, 10, 1000));
    assert!(h.engine.batch_full(RECORDS_PER_REWRITE * 41, 10, 1000));
    assert!(!h.engine.batch_full(RECORDS_PER_REWRITE * 41, 200, 1000), "never before batch_records");
    h.alerts.extend(h.engine.commit(None).unwrap().alerts);
    assert!(h.alerts.is_empty(), "a clean ledger: {:?}", h.rules());
    assert_eq!(h.engine.changed_entries(), 0);
    assert!(h.engine.batch_full(10, 10, 1000), "nothing changed: batch_records ends it");
}
