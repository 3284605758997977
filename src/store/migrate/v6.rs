//! v5 → v6: who names an account for a custodian moves out of the account.

use super::{keys, rewrite_chunks, Cf, Store, StoreError, V5, V6};

/// Where an interrupted v5 → v6 upgrade resumes.
const V6_AFTER: &[u8] = b"upgrade_v6_after/accounts";

/// v5 → v6: an account held its window and, last, the beneficiaries whose
/// roster named it for a custodian; v6 keeps those apart, in
/// `account_custodians` (written by the person side), so that the account
/// stage owns `accounts` alone. Every account is rewritten without them,
/// in resumable chunks; the schema marker moves last.
pub(super) fn v5_to_v6(store: &Store) -> Result<(), StoreError> {
    use crate::detect::episode::AccountWindow;
    use std::collections::BTreeSet;
    let mut named = 0u64;
    rewrite_chunks(store, Cf::Accounts, V6_AFTER, |batch, k, v| {
        let bad = |source| StoreError::Decode { cf: Cf::Accounts.name(), key: keys::shown(k), source };
        let (_, rest) = postcard::take_from_bytes::<AccountWindow>(v).map_err(bad)?;
        let custodian_of: BTreeSet<String> = postcard::from_bytes(rest).map_err(bad)?;
        batch.put_raw(Cf::Accounts, k, &v[..v.len() - rest.len()]);
        if !custodian_of.is_empty() {
            batch.put(Cf::AccountCustodians, k, &custodian_of)?;
            named += 1;
        }
        Ok(())
    })?;
    let mut batch = store.batch();
    batch.delete(Cf::Meta, V6_AFTER);
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, V6.as_bytes());
    store.commit(batch)?;
    tracing::info!(from = V5, to = V6, accounts_named_for_custodians = named, "state directory upgraded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::Account;
    use crate::model::Timestamp;
    use crate::store::{StoreOptions, SCHEMA};
    use std::collections::BTreeSet;

    /// v5 → v6: the beneficiaries naming an account for a custodian move
    /// out of the account into `account_custodians`; an upgrade
    /// interrupted after a chunk resumes after it (a converted account is
    /// never read as v5 again).
    #[test]
    fn a_v5_account_is_split_resumably() {
        use crate::detect::episode::AccountWindow;
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
        let window = AccountWindow { last_eval: Some(Timestamp(3_000)), ..AccountWindow::default() };
        let named: BTreeSet<String> = ["11010519491231002X".to_owned()].into();
        let v5 = |named: &BTreeSet<String>| postcard::to_stdvec(&(&window, named)).unwrap();
        // The named person's roster registers the account (v6 → v7 reads it).
        let mut r = crate::detect::testkit::roster(crate::model::Status::Active, "2018-01-01", "2019-01-01T08:00:00+08:00");
        r.beneficiary_id = crate::model::PersonId::parse("11010519491231002X").unwrap();
        r.custodians = vec![crate::model::Custodian {
            name: "王五".into(),
            account_no: "6217000000000002".into(),
            registered_at: crate::model::time::Date::parse("2018-06-01").unwrap(),
            revoked_at: None,
            id_no: None,
        }];
        let ben = crate::engine::state::Beneficiary { roster: vec![r.clone()], ..Default::default() };
        {
            let store = Store::open(dir.path(), opts).unwrap();
            let mut b = store.batch();
            b.put(Cf::Beneficiaries, b"11010519491231002X", &ben).unwrap();
            // Converted before the interruption: the window alone.
            b.put_raw(Cf::Accounts, b"6217000000000001", &postcard::to_stdvec(&window).unwrap());
            b.put_raw(Cf::Meta, V6_AFTER, b"6217000000000001");
            b.put_raw(Cf::Accounts, b"6217000000000002", &v5(&named));
            b.put_raw(Cf::Accounts, b"6217000000000003", &v5(&BTreeSet::new()));
            b.put_raw(Cf::Meta, keys::META_SCHEMA, V5.as_bytes());
            store.commit(b).unwrap();
        }
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(SCHEMA.as_bytes()));
        for k in [b"6217000000000001", b"6217000000000002", b"6217000000000003"] {
            let a: Account = store.get(Cf::Accounts, k).unwrap().unwrap();
            assert_eq!(a.window, window);
        }
        assert!(store.get_raw(Cf::Meta, V6_AFTER).unwrap().is_none());
        let regs: crate::engine::registrations::Registrations = store.get(Cf::AccountCustodians, b"6217000000000002").unwrap().unwrap();
        assert_eq!(regs.persons().cloned().collect::<BTreeSet<_>>(), named, "moved out of the account, then to its registrations");
        assert_eq!(regs.count(r.updated_at, crate::model::time::Date::parse("2019-01-02").unwrap()), 1);
        assert_eq!(store.keys_between(Cf::AccountCustodians, &[], &[0xff; 32]).unwrap().len(), 1, "an empty set is not written");
    }
}
