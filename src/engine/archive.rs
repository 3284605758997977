//! Roster versions moved out of their beneficiary (`roster_archive`).
//!
//! A beneficiary keeps only the roster versions that questions asked at the
//! watermark or later can reach ([`super::state::Beneficiary::prune_roster`]),
//! so its state stays a few versions long however many years the ledger
//! covers. The versions moved out are written here, one entry each, without
//! reading anything, and read back only by the checks that ask about an
//! earlier instant: a custodian's death reported late (`CUSTODIAN_DECEASED`
//! for every earlier payment), a vulnerable-persons version decided after
//! its deadline (`COVERAGE_GAP` at that deadline), a record older than the
//! versions kept (out of order in a stream). Versions archived since the
//! last commit, and those of a commit still being written, are held here
//! until the store has them.
//!
//! Every archived version is older than every version kept: a version that
//! arrives late, older than one already archived, is dominated by the same
//! kept version that moved that one out, so the prune right after it is
//! applied moves it out too. A lookup therefore asks the kept versions
//! first and the archive only for an instant before all of them.

use super::EngineError;
use crate::model::{RosterRecord, Timestamp};
use crate::store::{keys, Batch, Cf, Store, StoreError};
use rustc_hash::FxHashMap;

#[derive(Default)]
pub struct Archive {
    /// beneficiary_id → versions archived since the last commit.
    pending: FxHashMap<String, Vec<RosterRecord>>,
    /// The versions of a commit still being written in the background.
    in_flight: FxHashMap<String, Vec<RosterRecord>>,
}

impl Archive {
    /// Archives versions of `bid` (to be written by the next commit).
    pub fn add(&mut self, bid: &str, versions: Vec<RosterRecord>) {
        if !versions.is_empty() {
            self.pending.entry(bid.to_owned()).or_default().extend(versions);
        }
    }

    /// Every archived version of `bid`, in update order.
    fn versions(&self, store: &Store, bid: &str) -> Result<Vec<RosterRecord>, EngineError> {
        let mut out = Vec::new();
        store.scan_prefix(Cf::RosterArchive, &keys::archived_roster_prefix(bid), |k, v| {
            let r = postcard::from_bytes(v).map_err(|source| StoreError::Decode { cf: Cf::RosterArchive.name(), key: keys::shown(k), source })?;
            out.push(r);
            Ok(())
        })?;
        for held in [&self.in_flight, &self.pending] {
            out.extend(held.get(bid).into_iter().flatten().cloned());
        }
        out.sort_by_key(|r| r.updated_at);
        Ok(out)
    }

    /// The newest archived version of `bid` whose `updated_at` is not after `t`.
    pub fn at(&self, store: &Store, bid: &str, t: Timestamp) -> Result<Option<RosterRecord>, EngineError> {
        Ok(self.versions(store, bid)?.into_iter().rev().find(|r| r.updated_at <= t))
    }

    /// Whether this very version was archived (a redelivery of it).
    pub fn contains(&self, store: &Store, r: &RosterRecord) -> Result<bool, EngineError> {
        Ok(self.versions(store, r.beneficiary_id.as_str())?.contains(r))
    }

    /// Puts the versions archived since the last commit into `batch`; with
    /// `in_flight`, keeps them readable until [`Archive::landed`].
    pub fn flush(&mut self, batch: &mut Batch<'_>, in_flight: bool) -> Result<(), EngineError> {
        for (bid, versions) in &self.pending {
            for r in versions {
                let bytes = postcard::to_stdvec(r).map_err(StoreError::Encode)?;
                batch.put_raw(Cf::RosterArchive, &keys::archived_roster(bid, r.updated_at, &bytes), &bytes);
            }
        }
        let written = std::mem::take(&mut self.pending);
        if in_flight {
            self.in_flight = written;
        }
        Ok(())
    }

    /// The background commit holding the in-flight versions has landed.
    pub fn landed(&mut self) {
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;
    use crate::store::StoreOptions;

    fn version(updated_at: &str, status: Status) -> RosterRecord {
        crate::detect::testkit::roster(status, "2018-01-01", updated_at)
    }

    #[test]
    fn versions_are_found_by_time_before_and_after_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let (a, b, c) = (
            version("2018-01-01T08:00:00+08:00", Status::Active),
            version("2019-01-01T08:00:00+08:00", Status::Suspended),
            version("2020-01-01T08:00:00+08:00", Status::Active),
        );
        let bid = a.beneficiary_id.as_str().to_owned();
        let bid = bid.as_str();
        let mut ar = Archive::default();
        ar.add(bid, vec![a.clone(), b.clone()]);
        let t = crate::detect::testkit::ts;
        assert_eq!(ar.at(&store, bid, t("2018-06-01T00:00:00+08:00")).unwrap(), Some(a.clone()), "pending");
        let mut batch = store.batch();
        ar.flush(&mut batch, true).unwrap();
        assert_eq!(ar.at(&store, bid, t("2019-06-01T00:00:00+08:00")).unwrap(), Some(b.clone()), "in flight");
        store.commit(batch).unwrap();
        ar.landed();
        ar.add(bid, vec![c.clone()]);
        assert_eq!(ar.at(&store, bid, t("2017-06-01T00:00:00+08:00")).unwrap(), None);
        assert_eq!(ar.at(&store, bid, t("2018-12-31T23:59:59+08:00")).unwrap(), Some(a.clone()), "stored");
        assert_eq!(ar.at(&store, bid, t("2019-01-01T08:00:00+08:00")).unwrap(), Some(b.clone()), "updated_at equal to t applies");
        assert_eq!(ar.at(&store, bid, t("2030-01-01T00:00:00+08:00")).unwrap(), Some(c.clone()));
        assert!(ar.contains(&store, &b).unwrap() && ar.contains(&store, &c).unwrap());
        assert_ne!(bid, "341802193912146643");
        assert_eq!(ar.at(&store, "341802193912146643", t("2030-01-01T00:00:00+08:00")).unwrap(), None, "another beneficiary's range");
    }
}
