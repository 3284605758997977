//! The account stage: every receiving account's window (`SHARED_ACCOUNT`,
//! `FREQUENT_PAYMENTS`) on a thread of its own, beside the person side
//! that applies records (#16: the engine on every core).
//!
//! The person side judges each payment against its beneficiary and hands
//! the account's change here as a [`Step`]; it goes on with the next record
//! while this thread moves the window. n of `FREQUENT_PAYMENTS` (the
//! custodian registrations naming the account) is counted here, from the
//! registrations the person side sends as roster versions arrive
//! (`registrations.rs`), in order with the steps. Steps travel
//! in chunks and come back, in order, as the alerts of each step, filed
//! here under the accounts' own cases (`casebook.rs`; decisions on them
//! are sent here too): the engine stages them in exactly the order one
//! thread would have (see `Engine::pump`), so the alerts, their cases and
//! their order do not depend on how far this stage lags.
//!
//! This stage owns `Cf::Accounts` and `Cf::AccountCustodians` alone, and
//! the entries of `Cf::Cases` of the accounts' cases: it reads entries
//! through its own caches, and at a commit hands back every entry it
//! changed, encoded, for the person side to put into the one atomic
//! write. Besides those it reads only `Cf::Alerts`, for the ids of alerts
//! it raised before, and it never writes to the store. Nothing it does
//! reads a person's state: what it needs of persons arrives as facts, as
//! it would from a `by-account` topic.

use super::casebook::Filed;
use super::registrations::Registration;
use super::Outcome;
use crate::clock::Clock;
use crate::detect::episode::{Change, WindowRules};
use crate::detect::RulesConfig;
use crate::model::decision::Decision;
use crate::model::time::Date;
use crate::model::{Text, Timestamp, Tz};
use crate::store::{Cf, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

mod serve;
use serve::{serve, Settings};

/// Steps sent in one message: few enough that the stage starts early,
/// enough that a message's cost (a wake-up, an allocation) is spread.
const CHUNK: usize = 256;
/// Chunks sent and not answered, at most: bounds the memory the lag costs
/// (and the findings held back) to a few thousand payments.
const CHUNKS_AHEAD: usize = 32;
/// Changed entries per message at a commit: the batch of a large district
/// changes hundreds of thousands of accounts, which would otherwise be
/// held twice (here and in the batch) at the commit's peak.
const FLUSH_PIECE: usize = 4096;

/// A changed entry, encoded: its column family, key and value (`None`:
/// deleted).
pub(super) type Changed = (Cf, Vec<u8>, Option<Vec<u8>>);

/// One change to one account's window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The account whose window changes.
    pub account_no: Text,
    /// The payment's township (for the alert).
    pub township: Text,
    /// The event time of the change.
    pub at: Timestamp,
    /// Its date: n counts the registrations valid on it.
    pub day: Date,
    /// A payment added, or one reversed.
    pub change: Change,
}

/// What the stage is sent, in the order the person side applies records.
enum Item {
    /// A change to a window; its findings come back.
    Step(Step),
    /// A roster version's registrations of an account; nothing comes back.
    Registered(Registration),
}

enum Request {
    Items(Vec<Item>),
    /// A decision on an account's case, after every item sent before it;
    /// `repeated` when its id was filed under this case before.
    Decide { decision: Decision, repeated: bool },
    /// Hand back every entry changed since the last flush; with
    /// `in_flight`, keep clean entries until `Landed` (see `Table::flush`).
    Flush { in_flight: bool },
    /// The commit written in the background is durable.
    Landed,
    /// A foreground commit is durable: drop cold entries.
    Trim,
}

enum Reply {
    /// The alerts of each step of one chunk, in order, and how many
    /// entries the next commit will rewrite.
    Filed { filed: Vec<Vec<Filed>>, changed: usize },
    /// What became of a decision.
    Decided(Outcome),
    /// Changed entries, a piece at a time; `last` ends the flush.
    Flushed { entries: Vec<Changed>, last: bool },
}

/// The person side's handle on the account stage.
pub(super) struct AccountStage {
    /// To the stage, in order; `None` once dropped, which ends the thread.
    requests: Option<Sender<Request>>,
    /// From the stage, in the order of the requests answered; an error
    /// ends the stage.
    replies: Receiver<Result<Reply, StoreError>>,
    /// Joined on drop, so the thread never outlives the engine.
    thread: Option<JoinHandle<()>>,
    /// Steps and registrations gathered for the next chunk.
    gathering: Vec<Item>,
    /// Chunks sent whose alerts have not come back.
    ahead: usize,
    /// Alerts come back but not yet staged, oldest first.
    returned: std::collections::VecDeque<Vec<Filed>>,
    /// Entries the next commit rewrites, as of the last chunk answered.
    changed: usize,
}

impl AccountStage {
    /// Starts the stage's thread on `store`'s accounts.
    pub(super) fn start(store: Store, rules: RulesConfig, on: WindowRules, tz: Tz, clock: Arc<dyn Clock>, cache_entries: usize) -> Result<AccountStage, StoreError> {
        let (requests, inbox) = channel();
        let (outbox, replies) = channel();
        let thread = std::thread::Builder::new()
            .name("paywatch-accounts".into())
            .spawn(move || serve(&store, &Settings { rules, on, tz, clock }, cache_entries, inbox, outbox))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start a thread for the account stage");
                StoreError::Stage("cannot be started: the operating system refused a thread")
            })?;
        Ok(AccountStage {
            requests: Some(requests),
            replies,
            thread: Some(thread),
            gathering: Vec::with_capacity(CHUNK),
            ahead: 0,
            returned: Default::default(),
            changed: 0,
        })
    }

    /// Queues one step; its alerts come back through [`Self::take`] in
    /// the order steps were queued.
    pub(super) fn step(&mut self, s: Step) -> Result<(), StoreError> {
        self.gather(Item::Step(s))
    }

    /// Queues a roster version's registrations of an account: steps queued
    /// after it count them.
    pub(super) fn register(&mut self, r: Registration) -> Result<(), StoreError> {
        self.gather(Item::Registered(r))
    }

    fn gather(&mut self, item: Item) -> Result<(), StoreError> {
        self.gathering.push(item);
        if self.gathering.len() >= CHUNK {
            self.send_gathered()?;
            while self.ahead >= CHUNKS_AHEAD {
                self.receive(true)?;
            }
        }
        Ok(())
    }

    /// The alerts of the oldest step not yet taken; with `wait`, waits
    /// for them (sending the steps gathered so far), else `None` when they
    /// have not come back yet.
    pub(super) fn take(&mut self, wait: bool) -> Result<Option<Vec<Filed>>, StoreError> {
        loop {
            if let Some(f) = self.returned.pop_front() {
                return Ok(Some(f));
            }
            if !wait && self.ahead == 0 {
                return Ok(None);
            }
            if self.ahead == 0 {
                self.send_gathered()?;
            }
            if self.ahead == 0 || !self.receive(wait)? {
                return Ok(None);
            }
        }
    }

    /// Sends what is gathered and waits for every chunk to come back. Once
    /// the engine has taken every step's alerts, what is still out are
    /// registrations, which a commit must hold.
    pub(super) fn settle(&mut self) -> Result<(), StoreError> {
        self.send_gathered()?;
        while self.ahead > 0 {
            self.receive(true)?;
        }
        debug_assert!(self.returned.is_empty(), "settled with alerts not taken");
        Ok(())
    }

    /// Applies a decision on an account's case, after everything sent
    /// before it (the engine settles first), and says what became of it.
    pub(super) fn decide(&mut self, decision: Decision, repeated: bool) -> Result<Outcome, StoreError> {
        self.settle()?;
        self.send(Request::Decide { decision, repeated })?;
        match self.replies.recv().map_err(|_| stopped())?? {
            Reply::Decided(outcome) => Ok(outcome),
            _ => Err(stopped()),
        }
    }

    /// Entries the next commit will rewrite. Exact only once everything
    /// sent has come back (the engine drains first).
    pub(super) fn changed(&self) -> usize {
        self.changed
    }

    /// Hands every entry changed since the last flush, encoded, to `put`,
    /// a piece at a time, for the commit. Every step must have come back
    /// first.
    pub(super) fn flush(&mut self, in_flight: bool, mut put: impl FnMut(Changed)) -> Result<(), StoreError> {
        debug_assert!(self.ahead == 0 && self.gathering.is_empty(), "flushed with steps outstanding");
        self.send(Request::Flush { in_flight })?;
        loop {
            match self.replies.recv().map_err(|_| stopped())?? {
                Reply::Flushed { entries, last } => {
                    entries.into_iter().for_each(&mut put);
                    if last {
                        self.changed = 0;
                        return Ok(());
                    }
                }
                _ => return Err(stopped()),
            }
        }
    }

    pub(super) fn landed(&mut self) -> Result<(), StoreError> {
        self.send(Request::Landed)
    }

    pub(super) fn trim(&mut self) -> Result<(), StoreError> {
        self.send(Request::Trim)
    }

    fn send_gathered(&mut self) -> Result<(), StoreError> {
        if self.gathering.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.gathering, Vec::with_capacity(CHUNK));
        self.send(Request::Items(chunk))?;
        self.ahead += 1;
        Ok(())
    }

    fn send(&mut self, r: Request) -> Result<(), StoreError> {
        self.requests.as_ref().ok_or_else(stopped)?.send(r).map_err(|_| stopped())
    }

    /// Takes one chunk's findings; false when `wait` is off and none has
    /// come back.
    fn receive(&mut self, wait: bool) -> Result<bool, StoreError> {
        let reply = if wait {
            self.replies.recv().map_err(|_| stopped())?
        } else {
            match self.replies.try_recv() {
                Ok(r) => r,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(false),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Err(stopped()),
            }
        };
        match reply? {
            Reply::Filed { filed, changed } => {
                self.ahead -= 1;
                self.changed = changed;
                self.returned.extend(filed);
                Ok(true)
            }
            _ => Err(stopped()),
        }
    }
}

impl Drop for AccountStage {
    /// Closes the stage's inbox and waits for its thread, so no thread
    /// outlives the engine that fed it.
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The error of a stage that is gone (its thread ended after an error
/// already returned, or panicked).
fn stopped() -> StoreError {
    StoreError::Stage("has stopped (after the error it returned first)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::episode::WindowEntry;
    use crate::model::{Money, Rule};
    use crate::store::StoreOptions;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(dir, StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap()
    }

    fn stage(store: &Store) -> AccountStage {
        let rules = RulesConfig::default();
        let on = WindowRules::of(&rules);
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::FixedClock::new(Timestamp(1_700_000_000_000)));
        AccountStage::start(store.clone(), rules, on, Tz::default(), clock, 16).unwrap()
    }

    /// The `i`th payment into account `a`, for household `h`.
    fn add(a: usize, h: usize, i: usize) -> Step {
        Step {
            account_no: format!("62170000000{a:05}").into(),
            township: "城关镇".into(),
            at: Timestamp(1_546_300_800_000 + i as i64 * 60_000),
            day: Date::parse("2019-01-01").unwrap(),
            change: Change::Add(WindowEntry {
                event_id: format!("E{i}").into(),
                paid_at: Timestamp(1_546_300_800_000 + i as i64 * 60_000),
                household_id: format!("H{h}").into(),
                amount: Money::parse("585.00").unwrap(),
                exempt: false,
                reversed: false,
            }),
        }
    }

    #[test]
    fn alerts_come_back_one_list_per_step_in_the_order_sent_filed_under_their_cases() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut s = stage(&store);
        // 5,000 accounts (more than the cache holds, many chunks ahead, and
        // flushed in two pieces): each gets a first household, then every
        // 7th a second, which makes it shared (N = 2).
        let mut expected = Vec::new();
        for a in 0..5000 {
            s.step(add(a, 1, 2 * a)).unwrap();
            expected.push(false);
        }
        for a in (0..5000).step_by(7) {
            s.step(add(a, 2, 2 * a + 1)).unwrap();
            expected.push(true);
        }
        let mut got = Vec::new();
        while let Some(f) = s.take(true).unwrap() {
            assert!(f.iter().all(|f| f.alert.rule == Rule::SharedAccount));
            for f in &f {
                let account = f.alert.account_no.as_deref().unwrap();
                assert_eq!(f.alert.case_id, crate::model::decision::case_id(Rule::SharedAccount, account));
            }
            got.push(!f.is_empty());
        }
        assert_eq!(got, expected);
        let shared = 5000usize.div_ceil(7);
        assert_eq!(s.changed(), 5000 + shared, "every account changed, evicted ones too, and a case per shared one");
        let mut flushed = Vec::new();
        s.flush(false, |c| flushed.push(c)).unwrap();
        let accounts: Vec<_> = flushed.iter().filter(|(cf, k, _)| *cf == Cf::Accounts && k.len() == 16).collect();
        assert_eq!(accounts.len(), 5000);
        let keys: std::collections::BTreeSet<&Vec<u8>> = accounts.iter().map(|(_, k, _)| k).collect();
        assert_eq!(keys.len(), 5000, "each once");
        assert!(flushed.iter().all(|(_, _, v)| v.is_some()));
        // The cases, and two index entries each (all, and the township).
        let cases = flushed.iter().filter(|(cf, _, _)| *cf == Cf::Cases).count();
        assert_eq!((cases, flushed.len()), (3 * shared, 5000 + 3 * shared));
        assert_eq!(s.changed(), 0);
    }

    #[test]
    fn what_a_flush_hands_back_is_read_again_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut s = stage(&store);
        s.step(add(1, 1, 0)).unwrap();
        assert!(s.take(true).unwrap().is_some_and(|f| f.is_empty()));
        let mut b = store.batch();
        s.flush(false, |(cf, k, v)| b.put_raw(cf, &k, &v.unwrap())).unwrap();
        store.commit(b).unwrap();
        s.trim().unwrap();
        drop(s);
        // A new stage (a restart) reads the committed window: the second
        // household makes the account shared.
        let mut s = stage(&store);
        s.step(add(1, 2, 1)).unwrap();
        let f = s.take(true).unwrap().unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].alert.rule, Rule::SharedAccount);
        assert!(!f[0].quiet && f[0].reopened.is_none());
    }

    #[test]
    fn a_damaged_stored_account_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut b = store.batch();
        b.put_raw(Cf::Accounts, b"6217000000000001", &[0xff, 0xff, 0xff]);
        store.commit(b).unwrap();
        let mut s = stage(&store);
        s.step(add(1, 1, 0)).unwrap();
        let err = s.take(true).unwrap_err();
        assert!(err.to_string().contains("accounts"), "{err}");
        // The stage is gone: every later request says so.
        let later = s.step(add(2, 1, 1)).and_then(|_| s.take(true)).unwrap_err();
        assert_eq!(later.to_string(), "the account stage has stopped (after the error it returned first)");
    }
}
