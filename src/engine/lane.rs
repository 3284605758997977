//! One lane of the person side (#16): the state of the persons whose key
//! Kafka's default partitioner puts in this lane's partition.
//!
//! The person side is split into `[engine] lanes` lanes by
//! [`crate::partition::of`] on the person's id, the same split the input
//! topics' partitions make: lane `i` of `n` holds exactly the persons of
//! partition `i` of `n`. Each lane has its own caches, its own deadline
//! buckets (keys that start with the lane) and its own book of the cases
//! whose subject falls in it, and nothing of one lane is read through
//! another: a check reads its person's lane only, and what crosses persons
//! arrives as a fact (`facts.rs`). That is what lets a lane run on a core
//! of its own, and a partition's state move to another instance.

use super::accounts::Step;
use super::archive::Archive;
use super::casebook::CaseBook;
use super::facts::KeyFact;
use super::months::Months;
use super::registrations::{Registration, Versions};
use super::state::Beneficiary;
use super::timers::Timers;
use super::EngineError;
use crate::detect::{Finding, PaymentView, RulesConfig};
use crate::model::{DeathRecord, RosterRecord, Timestamp, Tz};
use crate::store::{Batch, Cf, Store, Table};
use std::collections::BTreeMap;

/// What a lane reads besides its own state while it applies a record:
/// shared, read-only, the same for every lane.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub(super) rules: &'a RulesConfig,
    pub(super) tz: Tz,
    pub(super) store: &'a Store,
    /// The payment-level rules that are on.
    pub(super) payment_checks: &'a [fn(&RulesConfig, &PaymentView<'_>, &mut Vec<Finding>)],
    /// Whether any account-level rule is on (else no step is sent).
    pub(super) account_rules: bool,
    /// The event-time watermark as it stands once the record moved it.
    pub(super) watermark: Option<Timestamp>,
}

/// What applying a record in a lane hands on, in the order one thread
/// would have done it: the engine files the findings, sends the facts to
/// the key stage and the steps to the account stage.
pub(super) enum Out {
    Findings(Vec<Finding>),
    Key(KeyFact),
    Step(Step),
    Registered(Registration),
}

pub(super) struct Lane {
    /// Per-beneficiary state, cached.
    pub(super) bens: Table<Beneficiary>,
    /// Per-beneficiary-and-month payments.
    pub(super) months: Months,
    /// beneficiary_id → custodian id_no → the deaths of that custodian
    /// sent to it, in the order they came, each dated earlier than the one
    /// before (reading 38: a payment cites the first that precedes it),
    /// cached.
    pub(super) custodian_deaths: Table<BTreeMap<String, Vec<DeathRecord>>>,
    /// person_id → household_id → the household's entry as sent to the
    /// person: the referral reads this, not the household, cached.
    pub(super) watched_households: Table<BTreeMap<String, Versions<bool>>>,
    /// beneficiary_id → roster versions moved out of the beneficiary
    /// ([`Beneficiary::prune_roster`]), for questions about an earlier
    /// instant; cached.
    pub(super) roster_archive: Archive,
    /// The cases whose subject (a beneficiary, a person, a custodian) is
    /// in this lane.
    pub(super) cases: CaseBook,
    /// `MISSED_PAYMENT` buckets of this lane's beneficiaries.
    pub(super) timers: Timers,
    /// `COVERAGE_GAP` referral buckets of this lane's persons.
    pub(super) referrals: Timers,
}

impl Lane {
    /// Lane `index`, with caches of `cache_entries` entries each.
    pub(super) fn new(index: u32, cache_entries: usize) -> Lane {
        Lane {
            bens: Table::new(Cf::Beneficiaries, cache_entries),
            months: Months::default(),
            custodian_deaths: Table::new(Cf::CustodianDeaths, cache_entries),
            watched_households: Table::new(Cf::WatchedHouseholds, cache_entries),
            roster_archive: Archive::default(),
            cases: CaseBook::new(cache_entries),
            timers: Timers::new(Cf::Timers, index),
            referrals: Timers::new(Cf::Referrals, index),
        }
    }

    /// Cached entries changed since the last commit.
    pub(super) fn changed(&self) -> usize {
        self.bens.changed() + self.custodian_deaths.changed() + self.watched_households.changed() + self.cases.changed()
    }

    /// Puts every change of this lane, months aside, into `batch`; with
    /// `in_flight`, keeps what it wrote readable until [`Lane::landed`].
    pub(super) fn flush(&mut self, store: &Store, batch: &mut Batch<'_>, in_flight: bool) -> Result<(), EngineError> {
        self.bens.flush(batch, in_flight)?;
        self.custodian_deaths.flush(batch, in_flight)?;
        self.watched_households.flush(batch, in_flight)?;
        self.roster_archive.flush(batch, in_flight)?;
        self.referrals.flush(store, batch, in_flight)?;
        self.cases.flush(store, in_flight, |(cf, k, v)| match v {
            Some(v) => batch.put_raw(cf, &k, &v),
            None => batch.delete(cf, &k),
        })?;
        self.timers.flush(store, batch, in_flight)?;
        Ok(())
    }

    /// The commit written in the background is in the store.
    pub(super) fn landed(&mut self) {
        self.months.landed();
        self.timers.landed();
        self.bens.landed();
        self.custodian_deaths.landed();
        self.watched_households.landed();
        self.roster_archive.landed();
        self.referrals.landed();
        self.cases.landed();
    }

    /// A foreground commit is durable: cold entries go.
    pub(super) fn trim(&mut self) {
        self.bens.trim();
        self.custodian_deaths.trim();
        self.watched_households.trim();
        self.cases.trim();
    }

    /// The roster version applying to `bid` at `t` (the newest whose
    /// `updated_at` is not after `t`), from the archive when `t` is before
    /// every version the beneficiary keeps.
    pub(super) fn roster_version(&mut self, store: &Store, bid: &str, t: Timestamp) -> Result<Option<RosterRecord>, EngineError> {
        let Some(ben) = self.bens.get(store, bid.as_bytes())? else { return Ok(None) };
        if let Some(r) = ben.roster_at(t) {
            return Ok(Some(r.clone()));
        }
        if ben.roster.is_empty() {
            return Ok(None);
        }
        self.roster_archive.at(store, bid, t)
    }
}
