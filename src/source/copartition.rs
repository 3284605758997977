//! The input topics keyed by person must be co-partitioned.
//!
//! Payments and roster records are keyed by `beneficiary_id`, death and
//! vulnerable-persons records by `person_id` (contract §1–§3, §10). A
//! partitioned engine keeps a person's state with the partition number its
//! records land on, which is the same number in every topic only when the
//! topics have the same partition count (and the producers key every record
//! by its person, with one partitioner). Decisions are keyed by `case_id`
//! and routed to their case by `rule` and `subject` (§8), so the decisions
//! topic may have any count.
//!
//! This module only compares counts read from the broker's metadata; it
//! never talks to Kafka itself.

use crate::decode::Kind;
use crate::source::offsets::Part;
use std::collections::BTreeMap;

/// The feeds whose records are keyed by the person they concern.
pub const PERSON_KEYED: [Kind; 4] = [Kind::Roster, Kind::Death, Kind::Payment, Kind::Vulnerable];

/// Person-keyed input topics with different partition counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the input topics keyed by person must have the same number of partitions, so that one \
     instance reads all of a person's payments, roster records, deaths and referrals: {}. \
     Create them with one partition count before producing to them (each record keyed by its \
     person's id); a topic whose count changed must be recreated with the others' count and \
     its records produced again, then `paywatch offsets reset --topic <topic>` run for it",
    describe(.counts)
)]
pub struct NotCoPartitioned {
    /// Topic name → partition count, for every person-keyed topic that
    /// exists (a missing topic is not counted: it is checked once it
    /// appears, at the rebalance its creation causes).
    pub counts: BTreeMap<String, usize>,
}

fn describe(counts: &BTreeMap<String, usize>) -> String {
    counts.iter().map(|(t, n)| format!("{t} has {n}")).collect::<Vec<_>>().join(", ")
}

/// Checks the partitions the broker reported for the input topics
/// (`topics`: feed → topic name, as [`crate::source::kafka::input_topics`]).
/// Topics the broker did not report (not created yet, or the metadata
/// request failed) are left out; the others must agree.
pub fn check(topics: &[(Kind, &str)], parts: &[Part]) -> Result<(), NotCoPartitioned> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, name) in topics.iter().filter(|(k, _)| PERSON_KEYED.contains(k)) {
        let n = parts.iter().filter(|p| p.kind() == *kind).count();
        if n > 0 {
            counts.insert((*name).to_owned(), n);
        }
    }
    if counts.values().min() == counts.values().max() {
        Ok(())
    } else {
        Err(NotCoPartitioned { counts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPICS: [(Kind, &str); 5] = [
        (Kind::Roster, "dibao.roster.v1"),
        (Kind::Death, "civil.deaths.v1"),
        (Kind::Payment, "dibao.payments.v1"),
        (Kind::Decision, "dibao.decisions.v1"),
        (Kind::Vulnerable, "civil.vulnerable.v1"),
    ];

    fn parts(counts: &[(Kind, i32)]) -> Vec<Part> {
        counts.iter().flat_map(|(k, n)| (0..*n).map(move |p| Part::new(*k, p))).collect()
    }

    #[test]
    fn equal_counts_pass_whatever_the_decisions_topic_has() {
        let p = parts(&[(Kind::Roster, 6), (Kind::Death, 6), (Kind::Payment, 6), (Kind::Vulnerable, 6), (Kind::Decision, 1)]);
        assert_eq!(check(&TOPICS, &p), Ok(()));
        assert_eq!(check(&TOPICS, &[]), Ok(()));
    }

    #[test]
    fn a_topic_not_created_yet_is_left_out() {
        let p = parts(&[(Kind::Roster, 3), (Kind::Payment, 3), (Kind::Decision, 2)]);
        assert_eq!(check(&TOPICS, &p), Ok(()));
    }

    #[test]
    fn different_counts_are_refused_naming_every_topic_and_count() {
        let p = parts(&[(Kind::Roster, 2), (Kind::Death, 1), (Kind::Payment, 3), (Kind::Vulnerable, 3), (Kind::Decision, 1)]);
        let e = check(&TOPICS, &p).unwrap_err();
        assert_eq!(e.counts.len(), 4);
        let msg = e.to_string();
        for part in ["dibao.payments.v1 has 3", "dibao.roster.v1 has 2", "civil.deaths.v1 has 1", "civil.vulnerable.v1 has 3"] {
            assert!(msg.contains(part), "{msg}");
        }
        assert!(!msg.contains("decisions"), "{msg}");
        assert!(msg.contains("paywatch offsets reset"), "{msg}");
    }
}
