//! The repartition topics' records (#16 step 2, docs/partitioning.md):
//! what one task writes for another, where it goes, and how the task that
//! reads it puts it back in the single-process order.
//!
//! Between instances every fact of `facts.rs`, every account step and
//! registration, and every decision travels on one of four internal topics
//! of the consumer group, `paywatch.<group>.by-account`, `by-custodian`,
//! `by-household` and `by-person`, to the partition Kafka's default
//! partitioner gives its key (an account number, a custodian's or a
//! person's id, a household), so a key's facts always reach the one task
//! that holds its state.
//!
//! A record is an [`Envelope`]: the task that wrote it (its kind and
//! partition), the position (`SortKey`) of the record that produced it,
//! and either a fact or a *mark* ("I have applied everything up to here").
//! A writer ([`Writer`]) sends its facts in the order of its records and a
//! mark to every partition it may write to at each commit; a reader
//! ([`Reader`]) puts the facts whose order matters through the ordered
//! merge (`merge.rs`) and hands on the order-free ones at once
//! (docs/partitioning.md, "The one cycle"). Both check what they can: a
//! fact written by a task that may not send it, or read on a partition its
//! key does not hash to, is refused with an error naming both; it is never
//! applied to the wrong key's state.
//!
//! Every record is numbered in its stream (one writer to one topic
//! partition), and readers and writers have checkpoints to commit with
//! their tasks' state: a reader skips what it has read and refuses a gap,
//! so a crash on either side neither loses nor doubles a fact, with no
//! broker transactions (docs/partitioning.md, "Exactly once").
//!
//! Plain data in, plain bytes out: whatever carries the bytes only moves
//! them, so the routing, the encoding and the order are tested here
//! exactly, without a broker. In one process, `wire.rs` carries them
//! (`[engine] repartition_records`); between instances the group's topics
//! will.

use super::accounts::Step;
use super::casebook::Owner;
use super::facts::{KeyFact, PersonFact};
use super::merge::{Merge, MergeState, OutOfOrder};
use super::registrations::Registration;
use crate::model::decision::Decision;
use crate::model::SortKey;
use crate::partition;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The first byte of every record: a reader refuses another version rather
/// than misread it (a rolling upgrade runs old and new writers at once).
/// Version 2 added the stream sequence number (`Envelope::seq`).
const VERSION: u8 = 2;

/// One of the group's repartition topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    /// To accounts: payment steps, registrations, decisions on accounts'
    /// cases (`SHARED_ACCOUNT`, `FREQUENT_PAYMENTS`).
    ByAccount,
    /// To custodians' entries: their persons' versions, counts, deaths.
    ByCustodian,
    /// To households: members' versions and "I watch you".
    ByHousehold,
    /// Back to persons: a custodian's death, a household's entry, and the
    /// decisions on persons' cases.
    ByPerson,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::ByAccount, Topic::ByCustodian, Topic::ByHousehold, Topic::ByPerson];

    pub fn suffix(self) -> &'static str {
        match self {
            Topic::ByAccount => "by-account",
            Topic::ByCustodian => "by-custodian",
            Topic::ByHousehold => "by-household",
            Topic::ByPerson => "by-person",
        }
    }

    /// The topic's name for consumer group `group`: internal to the group,
    /// as Kafka Streams names its own.
    // In one process (`wire.rs`) the topics are in-memory logs with no
    // name; between instances `crate::exchange` carries them.
    pub fn name(self, group: &str) -> String {
        format!("paywatch.{group}.{}", self.suffix())
    }

    /// The tasks that write to this topic, and whether its reader must
    /// apply their facts in merged order (`true`) or may apply them as they
    /// come (facts returning to a person, docs/partitioning.md "The one
    /// cycle"). The order of the list is the order of the merge's
    /// upstreams.
    fn writers(self) -> &'static [(Task, bool)] {
        match self {
            Topic::ByAccount => &[(Task::Person, true), (Task::Decisions, true)],
            Topic::ByCustodian | Topic::ByHousehold => &[(Task::Person, true)],
            // Household marks still matter here: a referral waits for them
            // (`Reader::through`).
            Topic::ByPerson => &[(Task::Decisions, true), (Task::Custodian, false), (Task::Household, false)],
        }
    }
}

/// The kind of task that writes a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Task {
    /// A person partition: the input topics' partition of its persons.
    Person,
    /// A partition of the decisions topic (keyed by case): it routes each
    /// decision to its case's owner.
    Decisions,
    /// A `by-custodian` partition's task.
    Custodian,
    /// A `by-household` partition's task.
    Household,
}

/// Who wrote a record: the task's kind and its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Upstream {
    /// Its kind: which topics it may write to, and whether its order
    /// matters to their readers.
    pub task: Task,
    /// Its partition: one merge upstream per partition, since each
    /// partition's records advance on their own.
    pub partition: u32,
}

/// How many partitions each topic has: every instance of a group must
/// agree, or a key's facts would reach two tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The input topics' partitions (payments, roster, deaths, vulnerable
    /// persons), which `by-person` must have too: a person task reads its
    /// input partition and its `by-person` partition.
    pub persons: u32,
    /// The decisions topic's partitions.
    pub decisions: u32,
    /// `by-account`'s partitions.
    pub accounts: u32,
    /// `by-custodian`'s partitions.
    pub custodians: u32,
    /// `by-household`'s partitions.
    pub households: u32,
}

impl Layout {
    /// The layout of a person side in `lanes` lanes that sends its
    /// accounts to `accounts` partitions (`Engine::send_accounts_away`):
    /// what its account tasks, on any instance, must read.
    pub fn accounts_away(lanes: u32, accounts: u32) -> Layout {
        Layout { persons: lanes, decisions: 1, accounts, custodians: lanes, households: lanes }
    }

    /// How many partitions `topic` has.
    pub fn partitions(&self, topic: Topic) -> u32 {
        match topic {
            Topic::ByAccount => self.accounts,
            Topic::ByCustodian => self.custodians,
            Topic::ByHousehold => self.households,
            Topic::ByPerson => self.persons,
        }
    }

    /// How many tasks of `task`'s kind there are.
    fn tasks(&self, task: Task) -> u32 {
        match task {
            Task::Person => self.persons,
            Task::Decisions => self.decisions,
            Task::Custodian => self.custodians,
            Task::Household => self.households,
        }
    }
}

/// What travels between tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Fact {
    /// A payment's change to its account's window.
    Step(Step),
    /// A roster version's registrations of an account (fact 1).
    Registered(Registration),
    /// To a custodian's or a household's entry.
    Key(KeyFact),
    /// Back to a person.
    Person(PersonFact),
    /// A decision, to the owner of its case (§8).
    Decision(Decision),
}

impl Fact {
    /// Where the fact goes: the topic, and the key whose partition owns it.
    fn route(&self) -> (Topic, &str) {
        match self {
            Fact::Step(s) => (Topic::ByAccount, &s.account_no),
            Fact::Registered(r) => (Topic::ByAccount, &r.account_no),
            Fact::Key(KeyFact::CustodianVersion { custodian, .. } | KeyFact::OverloadCount { custodian, .. }) => {
                (Topic::ByCustodian, custodian.as_str())
            }
            Fact::Key(KeyFact::PersonDied { person, .. }) => (Topic::ByCustodian, person.as_str()),
            Fact::Key(KeyFact::MemberVersion { household, .. } | KeyFact::Watch { household, .. }) => (Topic::ByHousehold, household),
            Fact::Person(PersonFact::CustodianDied { beneficiary, .. }) => (Topic::ByPerson, beneficiary),
            Fact::Person(PersonFact::HouseholdEntry { person, .. } | PersonFact::HouseholdVersion { person, .. }) => {
                (Topic::ByPerson, person)
            }
            Fact::Decision(d) => match Owner::of(d.rule) {
                Owner::Account => (Topic::ByAccount, &d.subject),
                Owner::Person => (Topic::ByPerson, &d.subject),
            },
        }
    }
}

/// One record of a repartition topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The task that wrote it.
    pub from: Upstream,
    /// For a fact, the position of the record that produced it; for a
    /// mark, the position its writer has applied everything up to.
    pub at: SortKey,
    /// The record's place in its stream (this writer to this topic
    /// partition), from 0: a reader skips one it has had (a publisher
    /// sending its outbox again after a crash) and refuses a gap (a record
    /// lost), so every record is applied exactly once without the broker's
    /// transactions (docs/partitioning.md, "Exactly once").
    pub seq: u64,
    /// The fact; `None`: a mark.
    pub fact: Option<Fact>,
}

/// A record to produce: the partition is set, not left to the producer's
/// partitioner, and the key is the fact's (a mark has none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Which of the group's repartition topics.
    pub topic: Topic,
    /// Computed here with Kafka's partitioner, so the record lands where
    /// its reader checks for it whatever the producer is set to.
    pub partition: u32,
    /// The fact's key (for compaction tools and people reading the
    /// topic); `None` for a mark, which goes to every partition.
    pub key: Option<Vec<u8>>,
    /// The encoded envelope.
    pub value: Vec<u8>,
}

/// Why a record could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("repartition record could not be encoded: {0}")]
    Encode(postcard::Error),
    #[error("repartition record is version {found}, this build reads version {VERSION}")]
    Version { found: u8 },
    #[error("repartition record is empty")]
    Empty,
    #[error("repartition record could not be decoded: {0}")]
    Decode(postcard::Error),
    #[error("{task:?} tasks do not write to {topic:?}")]
    NotAWriter { task: Task, topic: Topic },
    #[error("{task:?} partition {partition} does not exist: the group has {tasks} (every instance must agree on the partition counts)")]
    NoSuchUpstream { task: Task, partition: u32, tasks: u32 },
    #[error("a fact for {topic:?} partition {expected} was read on partition {partition}: the writer routed it elsewhere, or the partition counts differ between instances")]
    Misrouted { topic: Topic, partition: u32, expected: u32 },
    #[error("a fact for {wanted:?} was read on {topic:?}")]
    WrongTopic { topic: Topic, wanted: Topic },
    #[error(transparent)]
    OutOfOrder(#[from] OutOfOrder),
    #[error("{task:?} partition {partition}'s record {expected} on {topic:?} partition {on} is missing (record {found} came next): a record was lost, or two writers claim that task")]
    Lost { task: Task, partition: u32, topic: Topic, on: u32, expected: u64, found: u64 },
    #[error("a checkpoint of {topic:?} partition {partition} was taken with {had} upstream streams, the layout now has {has}: the partition counts changed")]
    LayoutChanged { topic: Topic, partition: u32, had: usize, has: usize },
}

fn encode(e: &Envelope) -> Result<Vec<u8>, WireError> {
    postcard::to_extend(e, vec![VERSION]).map_err(WireError::Encode)
}

fn decode(bytes: &[u8]) -> Result<Envelope, WireError> {
    match bytes.split_first() {
        None => Err(WireError::Empty),
        Some((&VERSION, rest)) => postcard::from_bytes(rest).map_err(WireError::Decode),
        Some((&found, _)) => Err(WireError::Version { found }),
    }
}

/// What one task writes.
pub struct Writer {
    /// The writing task: every envelope names it.
    from: Upstream,
    /// Where its facts and marks go.
    layout: Layout,
    /// Per topic (`Topic::ALL` order), per partition: the next record's
    /// sequence number in that stream. Committed with the task's state
    /// (and its outbox), so the records of a commit keep their numbers
    /// however often they are published.
    next: Vec<Vec<u64>>,
    /// The last position written (fact or mark). A person's or the
    /// decisions' task never writes behind it: a record later than
    /// `kafka.max_out_of_order` takes this position, after what was
    /// written there, as one service applies it when it comes
    /// (docs/partitioning.md, "The position's Kafka form").
    last: Option<SortKey>,
    /// Records placed at `last` because they came late.
    late: u64,
}

/// A writer's sequence numbers, as committed with its task's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterState {
    /// `Writer::next`.
    pub next: Vec<Vec<u64>>,
    /// `Writer::last`: a resumed writer places late records where the
    /// original would have.
    pub last: Option<SortKey>,
}

impl Writer {
    pub fn new(from: Upstream, layout: Layout) -> Writer {
        let next = Topic::ALL.iter().map(|t| vec![0; layout.partitions(*t) as usize]).collect();
        Writer { from, layout, next, last: None, late: 0 }
    }

    /// The writer a checkpoint was taken of, on the same layout.
    pub fn resume(from: Upstream, layout: Layout, state: WriterState) -> Result<Writer, WireError> {
        let w = Writer::new(from, layout);
        for (i, topic) in Topic::ALL.iter().enumerate() {
            let (had, has) = (state.next.get(i).map_or(0, Vec::len), w.next[i].len());
            if had != has {
                return Err(WireError::LayoutChanged { topic: *topic, partition: from.partition, had, has });
            }
        }
        Ok(Writer { next: state.next, last: state.last, ..w })
    }

    /// The sequence numbers, for the task's commit.
    pub fn checkpoint(&self) -> WriterState {
        WriterState { next: self.next.clone(), last: self.last }
    }

    /// Records of a person's or the decisions' task that came late and
    /// were written at the task's last position.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Where a record at `at` is written: there, or, for a task reading an
    /// input topic whose record comes behind one it has written, at its
    /// last position. Other tasks write in the order facts reach them,
    /// and one going back is refused by its readers.
    fn place(&mut self, at: SortKey) -> (SortKey, bool) {
        let placed = match self.last {
            Some(last) if at < last && matches!(self.from.task, Task::Person | Task::Decisions) => (last, true),
            _ => (at, false),
        };
        self.last = Some(self.last.map_or(placed.0, |l| l.max(placed.0)));
        placed
    }

    /// The next record on `topic`'s `partition`, encoded, numbered in its
    /// stream: the number is used up only once the record exists.
    fn encode(&mut self, topic: Topic, partition: u32, at: SortKey, fact: Option<Fact>) -> Result<Vec<u8>, WireError> {
        let next = &mut self.next[topic as usize][partition as usize];
        let value = encode(&Envelope { from: self.from, at, seq: *next, fact })?;
        *next += 1;
        Ok(value)
    }

    /// The record carrying `fact`, produced by the writer's record at `at`.
    /// Facts must be written in the order of their records.
    pub fn fact(&mut self, at: SortKey, fact: Fact) -> Result<Outgoing, WireError> {
        let (topic, key) = fact.route();
        if !topic.writers().iter().any(|(t, _)| *t == self.from.task) {
            return Err(WireError::NotAWriter { task: self.from.task, topic });
        }
        let key = key.as_bytes().to_vec();
        let partition = partition::of(&key, self.layout.partitions(topic));
        let (at, late) = self.place(at);
        self.late += u64::from(late);
        let value = self.encode(topic, partition, at, Some(fact))?;
        Ok(Outgoing { topic, partition, key: Some(key), value })
    }

    /// The marks "applied through `through`", one to every partition of
    /// every topic this task writes to, at each commit: a reader waiting
    /// on this task can then release what comes before.
    pub fn marks(&mut self, through: SortKey) -> Result<Vec<Outgoing>, WireError> {
        let (through, _) = self.place(through);
        let mut out = Vec::new();
        for topic in Topic::ALL {
            if topic.writers().iter().any(|(t, _)| *t == self.from.task) {
                for partition in 0..self.layout.partitions(topic) {
                    let value = self.encode(topic, partition, through, None)?;
                    out.push(Outgoing { topic, partition, key: None, value });
                }
            }
        }
        Ok(out)
    }
}

/// What one task reads from one partition of one repartition topic.
pub struct Reader {
    /// The topic read: which writers may appear, and which facts belong.
    topic: Topic,
    /// The partition read: a fact whose key hashes elsewhere is refused.
    partition: u32,
    /// The partition counts every instance agrees on.
    layout: Layout,
    /// The facts whose order matters, from every writer whose order
    /// matters (upstream index: the writers in `Topic::writers` order,
    /// each kind's partitions in turn).
    merge: Merge<Fact>,
    /// Per upstream (same index): how far it has written, for
    /// [`Reader::through`].
    seen: Vec<Option<SortKey>>,
    /// Order-free facts, to apply as they came.
    free: VecDeque<(SortKey, Fact)>,
    /// Per upstream (same index): the sequence number of the record it
    /// sends next on this partition (`Envelope::seq`).
    next: Vec<u64>,
    /// Records skipped as already read: a publisher sent them again.
    repeats: u64,
}

/// What a reader holds, as committed with the reading task's state
/// together with the offset after the last record it read: resumed there,
/// it reads on as if it had never stopped (docs/partitioning.md, "Exactly
/// once").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReaderState {
    /// `Reader::merge`: held facts and how far each upstream went.
    merge: MergeState<Fact>,
    /// `Reader::seen`.
    seen: Vec<Option<SortKey>>,
    /// `Reader::free`: order-free facts read and not yet applied.
    free: Vec<(SortKey, Fact)>,
    /// `Reader::next`.
    next: Vec<u64>,
}

impl Reader {
    pub fn new(topic: Topic, partition: u32, layout: Layout) -> Reader {
        let upstreams = topic.writers().iter().map(|(t, _)| layout.tasks(*t) as usize).sum();
        let mut merge = Merge::new(upstreams);
        // An order-free writer's facts never wait, so it never holds the
        // merge back either: its upstreams are past everything from the
        // start.
        for (_, ordered, range) in ranges(topic, layout) {
            if !ordered {
                for i in range {
                    merge.mark(i, super::merge::END).expect("a new merge has marked nothing");
                }
            }
        }
        Reader { topic, partition, layout, merge, seen: vec![None; upstreams], free: VecDeque::new(), next: vec![0; upstreams], repeats: 0 }
    }

    /// What to commit with the reading task's state.
    pub fn checkpoint(&self) -> ReaderState {
        ReaderState { merge: self.merge.checkpoint(), seen: self.seen.clone(), free: self.free.iter().cloned().collect(), next: self.next.clone() }
    }

    /// The reader a checkpoint was taken of, for the same partition and
    /// layout; refused when the layout's upstreams differ from the
    /// checkpoint's.
    pub fn resume(topic: Topic, partition: u32, layout: Layout, state: ReaderState) -> Result<Reader, WireError> {
        let fresh = Reader::new(topic, partition, layout);
        let has = fresh.next.len();
        for had in [state.next.len(), state.seen.len(), state.merge.through.len()] {
            if had != has {
                return Err(WireError::LayoutChanged { topic, partition, had, has });
            }
        }
        Ok(Reader {
            merge: Merge::resume(state.merge),
            seen: state.seen,
            free: state.free.into(),
            next: state.next,
            ..fresh
        })
    }

    /// Records skipped as already read since this reader was made.
    pub fn repeats(&self) -> u64 {
        self.repeats
    }

    /// The merge's index of `from`, and whether its order matters.
    fn upstream(&self, from: Upstream) -> Result<(usize, bool), WireError> {
        let (_, ordered, range) = ranges(self.topic, self.layout)
            .find(|(task, _, _)| *task == from.task)
            .ok_or(WireError::NotAWriter { task: from.task, topic: self.topic })?;
        if from.partition as usize >= range.len() {
            return Err(WireError::NoSuchUpstream { task: from.task, partition: from.partition, tasks: range.len() as u32 });
        }
        Ok((range.start + from.partition as usize, ordered))
    }

    /// Reads one record of this reader's partition. Nothing of a refused
    /// record is kept. A record its writer's stream has already brought
    /// (a publisher sending again what it sent before a crash) is skipped
    /// and counted; one after a gap in the stream is refused as lost.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let e = decode(bytes)?;
        let (index, ordered) = self.upstream(e.from)?;
        match e.seq.cmp(&self.next[index]) {
            std::cmp::Ordering::Less => {
                self.repeats += 1;
                return Ok(());
            }
            std::cmp::Ordering::Greater => {
                let (task, partition, expected) = (e.from.task, e.from.partition, self.next[index]);
                return Err(WireError::Lost { task, partition, topic: self.topic, on: self.partition, expected, found: e.seq });
            }
            std::cmp::Ordering::Equal => {}
        }
        if let Some(fact) = &e.fact {
            let (topic, key) = fact.route();
            if topic != self.topic {
                return Err(WireError::WrongTopic { topic: self.topic, wanted: topic });
            }
            let expected = partition::of(key.as_bytes(), self.layout.partitions(topic));
            if expected != self.partition {
                return Err(WireError::Misrouted { topic, partition: self.partition, expected });
            }
        }
        if self.seen[index].is_some_and(|s| e.at < s) {
            let from = self.seen[index].unwrap_or(e.at);
            return Err(OutOfOrder { upstream: index, from, to: e.at }.into());
        }
        self.seen[index] = Some(e.at);
        match (e.fact, ordered) {
            (Some(fact), true) => self.merge.push(index, e.at, fact)?,
            (None, true) => self.merge.mark(index, e.at)?,
            (Some(fact), false) => self.free.push_back((e.at, fact)),
            (None, false) => {}
        }
        self.next[index] += 1;
        Ok(())
    }

    /// The next fact to apply: an order-free one as it came, or the next
    /// in merged order once no writer can still send one before it.
    pub fn pop(&mut self) -> Option<(SortKey, Fact)> {
        self.free.pop_front().or_else(|| self.merge.pop())
    }

    /// How far every task of `task`'s kind has written (marks and facts):
    /// what a person task's referral waits on for its households. `None`
    /// while one of them has written nothing.
    // Between instances only: in one process a referral's sync has every
    // household task marked past it already (`wire.rs`).
    pub fn through(&self, task: Task) -> Option<SortKey> {
        let (_, _, range) = ranges(self.topic, self.layout).find(|(t, _, _)| *t == task)?;
        self.seen[range].iter().copied().min().flatten()
    }

    /// Facts held back by the merge.
    pub fn held(&self) -> usize {
        self.merge.held()
    }
}

/// The writers of `topic`: each kind, whether its order matters, and the
/// merge's indexes of its partitions (the kinds in `Topic::writers` order).
fn ranges(topic: Topic, layout: Layout) -> impl Iterator<Item = (Task, bool, std::ops::Range<usize>)> {
    topic.writers().iter().scan(0usize, move |base, &(task, ordered)| {
        let start = *base;
        *base += layout.tasks(task) as usize;
        Some((task, ordered, start..*base))
    })
}

#[cfg(test)]
#[path = "repartition_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "repartition_late_tests.rs"]
mod late_tests;
