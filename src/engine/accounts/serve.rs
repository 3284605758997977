//! The account stage's thread: the accounts' windows, registrations and
//! cases it holds, and how it answers the person side's requests, in the
//! order sent (see the parent module).

use super::{Changed, Item, Reply, Request, FLUSH_PIECE};
use crate::clock::Clock;
use crate::detect::episode::WindowRules;
use crate::detect::RulesConfig;
use crate::engine::casebook::{id_of, CaseBook, Filing};
use crate::engine::registrations::Registrations;
use crate::engine::state::Account;
use crate::model::Tz;
use crate::store::{Cf, Store, StoreError, Table};
use rustc_hash::FxHashSet;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

/// What the stage's thread is started with.
pub(super) struct Settings {
    /// Thresholds, and the relapse check of the accounts' cases.
    pub(super) rules: RulesConfig,
    /// The account-level rules that are on.
    pub(super) on: WindowRules,
    /// The offset calendar alerts are written in.
    pub(super) tz: Tz,
    /// Wall time, for `detected_at` and a case's opening.
    pub(super) clock: Arc<dyn Clock>,
}

/// The stage's thread: answers requests in the order sent until the
/// engine drops its handle.
pub(super) fn serve(store: &Store, set: &Settings, cache_entries: usize, inbox: Receiver<Request>, outbox: Sender<Result<Reply, StoreError>>) {
    let mut s = match State::open(store, cache_entries) {
        Ok(s) => s,
        Err(e) => {
            let _ = outbox.send(Err(e));
            return;
        }
    };
    for request in inbox {
        let reply = match request {
            Request::Items(items) => s.apply(store, set, items),
            Request::Decide { decision, repeated } => match repeated {
                true => s.book.repeated(store, &decision),
                false => s.book.apply(store, &decision, set.tz),
            }
            .map(Reply::Decided),
            Request::Flush { in_flight } => {
                let mut out = Pieces { piece: Vec::with_capacity(FLUSH_PIECE), outbox: &outbox, gone: false };
                let flushed = out
                    .table(Cf::Accounts, &mut s.accounts, in_flight)
                    .and_then(|()| out.table(Cf::AccountCustodians, &mut s.registered, in_flight))
                    .and_then(|()| s.book.flush(store, in_flight, |c| out.push(c)));
                if out.gone {
                    return;
                }
                // The alerts raised so far are in this write: until it
                // lands, they are not in the store yet.
                let raised = std::mem::take(&mut s.raised);
                if in_flight {
                    s.in_flight = raised;
                }
                flushed.map(|()| Reply::Flushed { entries: out.piece, last: true })
            }
            Request::Landed => {
                s.accounts.landed();
                s.registered.landed();
                s.book.landed();
                s.in_flight.clear();
                continue;
            }
            Request::Trim => {
                s.accounts.trim();
                s.registered.trim();
                s.book.trim();
                continue;
            }
        };
        let failed = reply.is_err();
        if outbox.send(reply).is_err() || failed {
            return;
        }
    }
}

/// What the stage's thread holds.
struct State {
    /// account_no → its window and episodes.
    accounts: Table<Account>,
    /// account_no → who registers it for a custodian, version by version.
    registered: Table<Registrations>,
    /// Hashes of the accounts in `registered` (loaded at start, a few
    /// bytes each): a step into any other account, nearly all of them,
    /// counts n = 0 without a lookup.
    named: FxHashSet<u64>,
    /// The accounts' cases.
    book: CaseBook,
    /// Ids of the alerts raised since the last flush: an alert is raised
    /// once per id ever.
    raised: FxHashSet<String>,
    /// Ids of the alerts in the commit written in the background.
    in_flight: FxHashSet<String>,
}

impl State {
    fn open(store: &Store, cache_entries: usize) -> Result<State, StoreError> {
        let named = store.keys_between(Cf::AccountCustodians, &[], &[0xff; 32])?.iter().map(|k| account_hash(k)).collect();
        Ok(State {
            accounts: Table::new(Cf::Accounts, cache_entries),
            registered: Table::new(Cf::AccountCustodians, cache_entries),
            named,
            book: CaseBook::new(cache_entries),
            raised: FxHashSet::default(),
            in_flight: FxHashSet::default(),
        })
    }

    fn apply(&mut self, store: &Store, set: &Settings, items: Vec<Item>) -> Result<Reply, StoreError> {
        let mut filed = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Item::Step(s) => {
                    let n = match self.named.contains(&account_hash(s.account_no.as_bytes())) {
                        true => self.registered.get(store, s.account_no.as_bytes())?.map_or(0, |r| r.count(s.at, s.day)),
                        false => 0,
                    };
                    let acct = self.accounts.get_or_default(store, s.account_no.as_bytes())?;
                    let findings = acct.window.step(&set.rules, &set.on, &s.account_no, &s.township, s.at, n, s.change);
                    let mut out = Vec::new();
                    for f in findings {
                        let id = id_of(&f);
                        if self.raised.contains(&id) || self.in_flight.contains(&id) || store.get_raw(Cf::Alerts, id.as_bytes())?.is_some() {
                            continue;
                        }
                        self.raised.insert(id.clone());
                        let how = Filing { relapse: &set.rules.rectification_relapse, tz: set.tz, now: set.clock.now() };
                        self.book.file(store, &how, f, id, &mut out)?;
                    }
                    filed.push(out);
                }
                Item::Registered(r) => {
                    self.named.insert(account_hash(r.account_no.as_bytes()));
                    self.registered.get_or_default(store, r.account_no.as_bytes())?.record(&r.person, r.updated_at, r.valid);
                }
            }
        }
        Ok(Reply::Filed { filed, changed: self.accounts.changed() + self.registered.changed() + self.book.changed() })
    }
}

/// A flush's changed entries, sent to the engine a piece at a time.
struct Pieces<'a> {
    /// The piece being filled.
    piece: Vec<Changed>,
    /// To the engine.
    outbox: &'a Sender<Result<Reply, StoreError>>,
    /// The engine is gone: the stage ends.
    gone: bool,
}

impl Pieces<'_> {
    /// Adds every entry of `table` changed since the last flush.
    fn table<V: serde::Serialize + serde::de::DeserializeOwned>(&mut self, cf: Cf, table: &mut Table<V>, in_flight: bool) -> Result<(), StoreError> {
        table.flush_with(in_flight, |k, v| self.push((cf, k.to_vec(), v.map(<[u8]>::to_vec))))
    }

    /// Adds one changed entry, sending the piece when it is full.
    fn push(&mut self, c: Changed) {
        self.piece.push(c);
        if self.piece.len() == FLUSH_PIECE {
            let entries = std::mem::replace(&mut self.piece, Vec::with_capacity(FLUSH_PIECE));
            self.gone |= self.outbox.send(Ok(Reply::Flushed { entries, last: false })).is_err();
        }
    }
}

/// The hash `named` keeps of an account number.
fn account_hash(account_no: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(account_no)
}
