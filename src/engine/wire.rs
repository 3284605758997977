//! The repartition records inside one process (#16 step 2,
//! `[engine] repartition_records`): every fact that crosses from a person
//! to an account, a custodian or a household, and every answer coming
//! back, travels as the record another instance would read
//! (`repartition.rs`) instead of as a call.
//!
//! Each lane is a person task and writes through its own [`Writer`]; the
//! key stage's answers are written by the custodian or household task of
//! the partition they were read on. The records go to in-memory partition
//! logs, one per partition of each of the four topics, a writer's records
//! at a time and the last writer's first (so not in the engine's order),
//! where a [`Reader`] per partition reads them back: checked (routing,
//! writer, order), and released in the single-process order by the
//! ordered merge once every writer has marked past them. Only the transport is left for several
//! instances: the logs become the group's topics.
//!
//! The engine syncs (marks every writer at the record in hand, reads every
//! log, applies what is released, answers included) wherever it already
//! drains the account stage or applies held returning facts: before a
//! commit, a decision, a referral, and when the logs hold
//! [`SYNC_AT`] records. What a lane sent reaches its key later than a call
//! would, exactly as between instances; the alerts are the same
//! (`tests::arrival::repartition_records_give_the_same_alerts`, and the
//! file audit's `lanes_give_the_same_alerts_and_cases_as_one`).
//!
//! A record's position is its place in the engine's order (the records
//! applied so far): that is the single-process order the merge restores,
//! and it only grows. Between instances it is the record's `SortKey`.
//! Decisions are applied by the engine after a full drain and do not
//! travel here; the decisions task only marks, as it would with no
//! decision to route. (With the accounts sent away, `away.rs`, decisions
//! on accounts' cases do travel, to the account tasks elsewhere.)
//!
//! What it costs is counted per topic ([`TopicVolume`]): the volume the
//! repartition topics would carry, for sizing them before running several
//! instances.

use super::facts::{KeyFact, PersonFact};
use super::repartition::{Fact, Layout, Outgoing, Reader, Task, Topic, Upstream, WireError, Writer, WriterState};
use crate::model::decision::Decision;
use serde::{Deserialize, Serialize};
use super::{Engine, EngineError};
use crate::model::{Record, SortKey, Timestamp};
use std::collections::VecDeque;

/// Records waiting in the logs at which the engine syncs without waiting
/// for a commit: bounds the memory they hold (about 100 B each).
pub(super) const SYNC_AT: usize = 1 << 16;

/// What one repartition topic carried, for the summary and capacity
/// planning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicVolume {
    /// The topic's suffix: `by-account`, `by-custodian`, `by-household`,
    /// `by-person`.
    pub topic: &'static str,
    /// Facts written to it.
    pub facts: u64,
    /// Marks written to it (one per partition per writer per sync).
    pub marks: u64,
    /// Bytes of both, as produced (envelope values; keys aside).
    pub bytes: u64,
    /// Records read a second time and skipped by their reader: a
    /// publisher sending again what it had sent (after a crash between
    /// sending and recording it). Never doubled into a fact.
    pub repeats: u64,
}

pub(super) struct Wire {
    /// One partition per lane on every topic; one decisions task.
    layout: Layout,
    /// One writer per lane: lane `i` is person task `i`.
    persons: Vec<Writer>,
    /// The decisions task: only marks (see the module's doc).
    decisions: Writer,
    /// The custodian tasks, then the household tasks, one per partition:
    /// they write the key stage's answers, each record numbered in its
    /// stream.
    answers: Vec<Writer>,
    /// Per ordered writer (the lanes, then the decisions task): records
    /// written and not yet in the logs. They reach the logs a writer's
    /// batch at a time, the last writer's first, so the logs do not hold
    /// them in the engine's order and the merge must restore it, as with
    /// producers on several machines.
    producing: Vec<Vec<Outgoing>>,
    /// Per topic (`Topic::ALL` order), per partition: records written and
    /// not read yet, as a broker would hold them.
    logs: Vec<Vec<VecDeque<Vec<u8>>>>,
    /// Per topic and partition: the task reading it.
    readers: Vec<Vec<Reader>>,
    /// Records applied so far: the position of the one in hand.
    applied: u64,
    /// The lane of the record in hand: whose writer its facts go through.
    lane: u32,
    /// Records written and not read: past [`SYNC_AT`] the engine syncs.
    pending: usize,
    /// Per topic: what was written.
    volume: Vec<TopicVolume>,
    /// A test seam: every batch reaches the logs, then its second half
    /// again, as from a publisher that lost its record of what it sent.
    republish: bool,
    /// `by-account` is read by account tasks elsewhere (`away.rs`): its
    /// records leave with the commit instead of reaching a log here.
    accounts_away: bool,
    /// The `by-account` records written since the last commit, in the
    /// order written (each writer's in its stream's order), for the commit
    /// to stage in the exchange's outbox.
    pub(super) leaving: Vec<Outgoing>,
}

/// What a commit records of the writers when `by-account` is away
/// (`keys::META_ACCOUNTS_AWAY`): with it a restarted engine writes what it
/// writes again under the same numbers, at the same positions.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AwayState {
    /// Records applied through the commit: the next one's position.
    applied: u64,
    /// Each lane's writer (person task `i`).
    persons: Vec<WriterState>,
    /// The decisions task's writer.
    decisions: WriterState,
}

/// A fact released by a reader: the topic and partition it was read on,
/// the position of the record that produced it, the fact.
pub(super) struct Released {
    pub(super) topic: Topic,
    pub(super) partition: u32,
    pub(super) at: SortKey,
    pub(super) fact: Fact,
}

/// The position of the `n`th record the engine applies.
fn position(n: u64) -> SortKey {
    SortKey { time: Timestamp(0), rank: 0, source: 0, line: n }
}

impl Wire {
    pub(super) fn new(lanes: u32) -> Wire {
        Wire::with_accounts(lanes, lanes)
    }

    /// One partition per lane on every topic but `by-account`, which has
    /// `accounts`.
    pub(super) fn with_accounts(lanes: u32, accounts: u32) -> Wire {
        let layout = Layout::accounts_away(lanes, accounts);
        let persons = (0..lanes).map(|p| Writer::new(Upstream { task: Task::Person, partition: p }, layout)).collect();
        let decisions = Writer::new(Upstream { task: Task::Decisions, partition: 0 }, layout);
        let answers = [Task::Custodian, Task::Household]
            .into_iter()
            .flat_map(|task| (0..lanes).map(move |partition| Writer::new(Upstream { task, partition }, layout)))
            .collect();
        let logs = Topic::ALL.iter().map(|t| (0..layout.partitions(*t)).map(|_| VecDeque::new()).collect()).collect();
        let readers = Topic::ALL.iter().map(|t| (0..layout.partitions(*t)).map(|p| Reader::new(*t, p, layout)).collect()).collect();
        let volume = Topic::ALL.iter().map(|t| TopicVolume { topic: t.suffix(), ..TopicVolume::default() }).collect();
        let producing = (0..=lanes).map(|_| Vec::new()).collect();
        Wire {
            layout,
            persons,
            decisions,
            answers,
            producing,
            logs,
            readers,
            applied: 0,
            lane: 0,
            pending: 0,
            volume,
            republish: false,
            accounts_away: false,
            leaving: Vec::new(),
        }
    }

    /// The next record is applied, in `lane`: its facts are written by that
    /// lane's task, at its position.
    pub(super) fn begin(&mut self, lane: u32) {
        self.applied += 1;
        self.lane = lane;
    }

    /// Records waiting in the logs.
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    /// The record in hand sends `fact` (a step, a registration, a key fact).
    pub(super) fn write(&mut self, fact: Fact) -> Result<(), WireError> {
        let o = self.persons[self.lane as usize].fact(position(self.applied), fact)?;
        self.put(o, true, Some(self.lane as usize));
        Ok(())
    }

    /// The key read on `topic`'s `partition` at `at` answers a person.
    pub(super) fn answer(&mut self, topic: Topic, partition: u32, at: SortKey, f: PersonFact) -> Result<(), WireError> {
        let first = match topic {
            Topic::ByCustodian => 0,
            _ => self.layout.custodians,
        };
        let o = self.answers[(first + partition) as usize].fact(at, Fact::Person(f))?;
        self.put(o, true, None);
        Ok(())
    }

    /// Every person task and the decisions task have applied everything up
    /// to the record in hand: a mark from each to every partition it writes.
    pub(super) fn mark_all(&mut self) -> Result<(), WireError> {
        let at = position(self.applied);
        let decisions = self.persons.len();
        for o in self.decisions.marks(at)? {
            self.put(o, false, Some(decisions));
        }
        for lane in 0..self.persons.len() {
            for o in self.persons[lane].marks(at)? {
                self.put(o, false, Some(lane));
            }
        }
        Ok(())
    }

    /// From now on `by-account` records leave with each commit
    /// (`away.rs`). `resumed`: what the last commit recorded, so the
    /// records written again after a restart carry the numbers and
    /// positions they had, and the account tasks skip them as repeats.
    /// Only `by-account`'s numbers are resumed: the other topics' readers
    /// are in this process and start over with it.
    pub(super) fn send_accounts_away(&mut self, resumed: Option<AwayState>) -> Result<(), WireError> {
        self.accounts_away = true;
        let Some(s) = resumed else { return Ok(()) };
        let only_accounts = |mut st: WriterState| {
            for (i, t) in Topic::ALL.iter().enumerate() {
                if *t != Topic::ByAccount {
                    st.next.get_mut(i).into_iter().flatten().for_each(|n| *n = 0);
                }
            }
            st
        };
        if s.persons.len() != self.persons.len() {
            return Err(WireError::LayoutChanged { topic: Topic::ByAccount, partition: 0, had: s.persons.len(), has: self.persons.len() });
        }
        for (p, st) in s.persons.into_iter().enumerate() {
            self.persons[p] = Writer::resume(Upstream { task: Task::Person, partition: p as u32 }, self.layout, only_accounts(st))?;
        }
        self.decisions = Writer::resume(Upstream { task: Task::Decisions, partition: 0 }, self.layout, only_accounts(s.decisions))?;
        self.applied = s.applied;
        Ok(())
    }

    /// What a commit records when `by-account` is away; `None` otherwise.
    pub(super) fn away_state(&self) -> Option<AwayState> {
        self.accounts_away.then(|| AwayState {
            applied: self.applied,
            persons: self.persons.iter().map(Writer::checkpoint).collect(),
            decisions: self.decisions.checkpoint(),
        })
    }

    /// Whether `by-account` is read elsewhere.
    pub(super) fn accounts_away(&self) -> bool {
        self.accounts_away
    }

    /// The partition counts, for the tasks reading what leaves.
    pub(super) fn layout(&self) -> Layout {
        self.layout
    }

    /// The decision in hand, on an account's case, goes to its account
    /// task: written by the decisions task at the decision's position.
    pub(super) fn write_decision(&mut self, d: Decision) -> Result<(), WireError> {
        let o = self.decisions.fact(position(self.applied), Fact::Decision(d))?;
        let decisions = self.persons.len();
        self.put(o, true, Some(decisions));
        Ok(())
    }

    /// Counts a record and queues it: behind its ordered writer's earlier
    /// ones, or (an answer, order-free) straight into its log.
    fn put(&mut self, o: Outgoing, fact: bool, writer: Option<usize>) {
        let v = &mut self.volume[o.topic as usize];
        match fact {
            true => v.facts += 1,
            false => v.marks += 1,
        }
        v.bytes += o.value.len() as u64;
        if self.accounts_away && o.topic == Topic::ByAccount {
            self.leaving.push(o);
            return;
        }
        self.pending += 1;
        match writer {
            Some(w) => self.producing[w].push(o),
            None => {
                if self.republish {
                    self.pending += 1;
                    self.logs[o.topic as usize][o.partition as usize].push_back(o.value.clone());
                }
                self.logs[o.topic as usize][o.partition as usize].push_back(o.value);
            }
        }
    }

    /// Reads every log into its reader, then gives the next fact a reader
    /// releases (topics in `Topic::ALL` order); `None` once the logs are
    /// empty and nothing more is released.
    pub(super) fn next(&mut self) -> Result<Option<Released>, WireError> {
        for batch in self.producing.iter_mut().rev() {
            let again: Vec<Outgoing> = match self.republish {
                true => batch[batch.len() / 2..].to_vec(),
                false => Vec::new(),
            };
            self.pending += again.len();
            for o in batch.drain(..).chain(again) {
                self.logs[o.topic as usize][o.partition as usize].push_back(o.value);
            }
        }
        for (logs, readers) in self.logs.iter_mut().zip(&mut self.readers) {
            for (log, reader) in logs.iter_mut().zip(readers.iter_mut()) {
                while let Some(bytes) = log.pop_front() {
                    self.pending -= 1;
                    reader.receive(&bytes)?;
                }
            }
        }
        for (topic, readers) in Topic::ALL.iter().zip(&mut self.readers) {
            for (partition, reader) in readers.iter_mut().enumerate() {
                if let Some((at, fact)) = reader.pop() {
                    return Ok(Some(Released { topic: *topic, partition: partition as u32, at, fact }));
                }
            }
        }
        Ok(None)
    }

    /// Facts read but not released: none once a sync has ended, since every
    /// writer marked past everything it wrote.
    pub(super) fn held(&self) -> usize {
        self.readers.iter().flatten().map(Reader::held).sum()
    }

    /// What each topic carried so far.
    pub(super) fn volume(&self) -> Vec<TopicVolume> {
        let mut v = self.volume.clone();
        for (t, readers) in v.iter_mut().zip(&self.readers) {
            t.repeats = readers.iter().map(Reader::repeats).sum();
        }
        v
    }
}

/// A refused repartition record, as the engine's error.
pub(super) fn wire_error(e: WireError) -> EngineError {
    EngineError::Repartition(e.to_string())
}

impl Engine {
    /// From now on the facts between persons and other keys travel as
    /// repartition records (see the module's doc). Set before the first
    /// record, on an engine with nothing staged.
    pub fn route_through_repartition_records(&mut self) {
        let lanes = self.lanes.len() as u32;
        self.wire.get_or_insert_with(|| Wire::new(lanes));
    }

    /// A test seam: every batch of repartition records is read twice in
    /// part, as a publisher recovering from a crash would send it; the
    /// readers must skip the repeats.
    #[cfg(test)]
    pub(crate) fn republish_repartition_records(&mut self) {
        if let Some(w) = &mut self.wire {
            w.republish = true;
        }
    }

    /// What each repartition topic carried, when the facts travel as
    /// repartition records.
    pub fn repartition_volume(&self) -> Option<Vec<TopicVolume>> {
        self.wire.as_ref().map(Wire::volume)
    }

    /// `rec` is the next record applied: its facts are its person's lane's
    /// to write. Syncs first when the logs hold [`SYNC_AT`] records.
    pub(super) fn wire_begin(&mut self, rec: &Record) -> Result<(), EngineError> {
        // Off (the default): nothing to do, not even the lane's hash.
        let Some(w) = &self.wire else { return Ok(()) };
        if w.pending() >= SYNC_AT {
            self.sync_wire()?;
        }
        let lane = self.lane(rec.contract_key().1) as u32;
        if let Some(w) = &mut self.wire {
            w.begin(lane);
        }
        Ok(())
    }

    /// Sends a fact to a custodian's or a household's entry: as a record,
    /// or applied now.
    pub(super) fn send(&mut self, f: KeyFact) -> Result<(), EngineError> {
        match &mut self.wire {
            Some(w) => w.write(Fact::Key(f)).map_err(wire_error),
            None => {
                let sent = self.keys.apply(&self.store, &self.rules, self.tz, f)?;
                for f in sent.facts {
                    self.return_to_person(f)?;
                }
                self.emit(sent.findings)
            }
        }
    }

    /// Every task marks the record in hand; every record written is read
    /// and what is released applied, answers included, until the logs are
    /// empty. Then nothing is held: every writer marked past all it wrote.
    pub(super) fn sync_wire(&mut self) -> Result<(), EngineError> {
        let Some(w) = &mut self.wire else { return Ok(()) };
        w.mark_all().map_err(wire_error)?;
        loop {
            let Some(w) = &mut self.wire else { return Ok(()) };
            let Some(r) = w.next().map_err(wire_error)? else { break };
            match r.fact {
                f @ (Fact::Step(_) | Fact::Registered(_)) => self.to_accounts(f)?,
                Fact::Key(k) => {
                    let sent = self.keys.apply(&self.store, &self.rules, self.tz, k)?;
                    if let Some(w) = &mut self.wire {
                        for f in sent.facts {
                            w.answer(r.topic, r.partition, r.at, f).map_err(wire_error)?;
                        }
                    }
                    self.emit(sent.findings)?;
                }
                Fact::Person(f) => self.return_to_person(f)?,
                Fact::Decision(d) => {
                    return Err(EngineError::Repartition(format!("decision {} read back, but decisions are applied by the engine", d.decision_id)));
                }
            }
        }
        let held = self.wire.as_ref().map_or(0, Wire::held);
        if held > 0 {
            return Err(EngineError::Repartition(format!("{held} facts held back after every task marked past them")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::facts::KeyFact;
    use crate::model::PersonId;

    const A: &str = "341802195001010015";
    const B: &str = "341802196002020025";

    fn death(person: &str) -> crate::model::DeathRecord {
        crate::model::DeathRecord {
            record_id: format!("D-{person}"),
            person_id: PersonId::parse(person).unwrap(),
            name: "王五".into(),
            date_of_death: crate::model::time::Date::from_ymd(2020, 1, 1),
            source: crate::model::DeathSource::Hospital,
            reported_at: Timestamp(1),
        }
    }

    fn died(person: &str) -> Fact {
        Fact::Key(KeyFact::PersonDied { person: PersonId::parse(person).unwrap(), death: death(person) })
    }

    /// Facts written by two lanes in the engine's order come back in that
    /// order, only once both lanes marked past them, each on the partition
    /// of its key; the volume counts facts, marks and bytes.
    #[test]
    fn facts_come_back_in_the_engines_order_once_every_lane_marked() {
        let mut w = Wire::new(2);
        let (la, lb) = (crate::partition::of(A.as_bytes(), 2), crate::partition::of(B.as_bytes(), 2));
        w.begin(la);
        w.write(died(A)).unwrap();
        w.begin(lb);
        w.write(died(B)).unwrap();
        w.begin(la);
        w.write(died(B)).unwrap();
        assert_eq!(w.pending(), 3);
        assert_ne!(la, lb, "A and B must fall in different lanes");
        // No marks yet. On A's partition only lane A has written: lane B
        // could still send something earlier, so nothing is released. On
        // B's, both lanes have written (at 2 and 3): the fact at 2 is
        // released, the one at 3 waits for lane B to pass it.
        let mut got = Vec::new();
        while let Some(r) = w.next().unwrap() {
            got.push(r);
        }
        assert_eq!(got.iter().map(|r| (r.partition, r.at.line)).collect::<Vec<_>>(), [(lb, 2)]);
        assert_eq!(w.pending(), 0);
        w.mark_all().unwrap();
        while let Some(r) = w.next().unwrap() {
            got.push(r);
        }
        // Each fact on its key's partition, and each partition's in the
        // engine's order.
        for (key, want) in [(A, vec![1]), (B, vec![2, 3])] {
            let p = crate::partition::of(key.as_bytes(), 2);
            let of_p: Vec<u64> = got.iter().filter(|r| r.partition == p).map(|r| r.at.line).collect();
            assert_eq!(of_p, want, "{key}");
        }
        assert!(got.iter().all(|r| r.topic == Topic::ByCustodian));
        assert_eq!(w.held(), 0);
        let v = w.volume();
        let custodians = v.iter().find(|t| t.topic == "by-custodian").unwrap();
        assert_eq!(custodians.facts, 3);
        // Two lanes mark each of its two partitions; so does nobody else.
        assert_eq!(custodians.marks, 4);
        assert!(custodians.bytes > 3 * 40, "{custodians:?}");
        // Every topic a person task or the decisions task writes got marks.
        for t in &v {
            assert!(t.marks > 0 || t.topic == "by-person", "{t:?}");
        }
    }

    /// An answer goes back on `by-person` to its person's partition and
    /// is handed on at once: no mark is waited for.
    #[test]
    fn answers_return_to_the_person_at_once() {
        let mut w = Wire::new(2);
        let f = PersonFact::CustodianDied { beneficiary: B.into(), death: death(A) };
        let p = crate::partition::of(A.as_bytes(), 2);
        w.answer(Topic::ByCustodian, p, position(7), f.clone()).unwrap();
        let r = w.next().unwrap().expect("released at once");
        assert_eq!(r.topic, Topic::ByPerson);
        assert_eq!(r.partition, crate::partition::of(B.as_bytes(), 2));
        assert_eq!(r.fact, Fact::Person(f));
        assert!(w.next().unwrap().is_none());
    }
}
