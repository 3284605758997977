//! The tasks of a consumer group (#16, docs/partitioning.md): what each
//! task reads, and which tasks an instance owns once Kafka has assigned it
//! partitions.
//!
//! A task is the unit that moves between instances, with its state:
//!
//! - person task `p`: partition `p` of the four input topics keyed by
//!   person (payments, roster, deaths, vulnerable persons) and of
//!   `by-person`;
//! - decisions task `d`: partition `d` of the decisions topic;
//! - account, custodian and household task `i`: partition `i` of
//!   `by-account`, `by-custodian`, `by-household`.
//!
//! An instance owns a task when it was assigned every partition the task
//! reads. Kafka's range assignor (librdkafka's default) gives one member
//! the same partition numbers of topics with the same partition count, so
//! a person task's five partitions arrive together. An assignor that
//! spreads them (round robin) leaves a task *incomplete*: no instance may
//! run it, and `owned` names what is missing where.

use crate::config::TopicsConfig;
use crate::engine::repartition::{Layout, Task, Topic, Upstream};
use serde::Serialize;
use std::collections::BTreeSet;

/// One task of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "partition", rename_all = "snake_case")]
pub enum TaskId {
    /// The persons of input partition `p`: their records and what returns
    /// to them on `by-person`.
    Person(u32),
    /// A decisions-topic partition: routes each decision to its case.
    Decisions(u32),
    /// The accounts of `by-account` partition `i`: their windows.
    Account(u32),
    /// The custodians of `by-custodian` partition `i`.
    Custodian(u32),
    /// The households of `by-household` partition `i`.
    Household(u32),
}

/// A topic partition by name, as Kafka assigns it.
pub type TopicPartition = (String, u32);

impl TaskId {
    /// Every task of a group with `layout`'s partition counts.
    pub fn all(layout: Layout) -> Vec<TaskId> {
        let kinds: [(fn(u32) -> TaskId, u32); 5] = [
            (TaskId::Person, layout.persons),
            (TaskId::Decisions, layout.decisions),
            (TaskId::Account, layout.accounts),
            (TaskId::Custodian, layout.custodians),
            (TaskId::Household, layout.households),
        ];
        kinds.iter().flat_map(|&(make, n)| (0..n).map(make)).collect()
    }

    /// The topic partitions the task reads.
    pub fn reads(self, topics: &TopicsConfig, group: &str) -> Vec<TopicPartition> {
        match self {
            TaskId::Person(p) => [&topics.payments, &topics.roster, &topics.deaths, &topics.vulnerable]
                .into_iter()
                .cloned()
                .chain([Topic::ByPerson.name(group)])
                .map(|t| (t, p))
                .collect(),
            TaskId::Decisions(d) => vec![(topics.decisions.clone(), d)],
            TaskId::Account(i) => vec![(Topic::ByAccount.name(group), i)],
            TaskId::Custodian(i) => vec![(Topic::ByCustodian.name(group), i)],
            TaskId::Household(i) => vec![(Topic::ByHousehold.name(group), i)],
        }
    }

    /// Who the task writes repartition records as; an account task writes
    /// none (its alerts go to the alerts topic).
    pub fn writes_as(self) -> Option<Upstream> {
        let (task, partition) = match self {
            TaskId::Person(p) => (Task::Person, p),
            TaskId::Decisions(p) => (Task::Decisions, p),
            TaskId::Custodian(p) => (Task::Custodian, p),
            TaskId::Household(p) => (Task::Household, p),
            TaskId::Account(_) => return None,
        };
        Some(Upstream { task, partition })
    }
}

/// `person-3`, `decisions-0`, `account-1`, `custodian-0`, `household-2`:
/// the name of the task's state directory and what logs call it.
impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, n) = match self {
            TaskId::Person(n) => ("person", n),
            TaskId::Decisions(n) => ("decisions", n),
            TaskId::Account(n) => ("account", n),
            TaskId::Custodian(n) => ("custodian", n),
            TaskId::Household(n) => ("household", n),
        };
        write!(f, "{kind}-{n}")
    }
}

impl TaskId {
    /// The task's partition of the changelog topic (`changelog::Place`):
    /// its place in `all`, so the topic needs one partition per task. A
    /// new layout renumbers them; it also moves every key, so the state
    /// is rebuilt then anyway.
    pub fn changelog_partition(self, layout: Layout) -> i32 {
        let (before, i) = match self {
            TaskId::Person(p) => (0, p),
            TaskId::Decisions(d) => (layout.persons, d),
            TaskId::Account(i) => (layout.persons + layout.decisions, i),
            TaskId::Custodian(i) => (layout.persons + layout.decisions + layout.accounts, i),
            TaskId::Household(i) => (layout.persons + layout.decisions + layout.accounts + layout.custodians, i),
        };
        i32::try_from(before + i).unwrap_or(i32::MAX)
    }
}

/// What an instance owns of its assignment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Owned {
    /// The tasks it may run: every partition they read is assigned here.
    pub tasks: Vec<TaskId>,
    /// Tasks it holds some partitions of but not all: with the partitions
    /// it lacks. It must not run them, and should say so.
    pub incomplete: Vec<(TaskId, Vec<TopicPartition>)>,
    /// Assigned partitions no task of this layout reads (a topic with more
    /// partitions than the layout says): refused at start by the
    /// co-partition check, listed here so nothing is hidden.
    pub stray: Vec<TopicPartition>,
}

/// The tasks `assigned` makes this instance the owner of.
pub fn owned(assigned: &[TopicPartition], layout: Layout, topics: &TopicsConfig, group: &str) -> Owned {
    let have: BTreeSet<&TopicPartition> = assigned.iter().collect();
    let mut out = Owned::default();
    let mut read = BTreeSet::new();
    for task in TaskId::all(layout) {
        let needs = task.reads(topics, group);
        let (held, missing): (Vec<_>, Vec<_>) = needs.into_iter().partition(|tp| have.contains(tp));
        if held.is_empty() {
            continue;
        }
        read.extend(held.iter().cloned());
        if missing.is_empty() {
            out.tasks.push(task);
        } else {
            out.incomplete.push((task, missing));
        }
    }
    out.stray = assigned.iter().filter(|tp| !read.contains(*tp)).cloned().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout { persons: 6, decisions: 2, accounts: 4, custodians: 2, households: 3 };

    /// Kafka's range assignor: per topic, member `m` of `n` gets a run of
    /// partitions, the first members one more when they do not divide.
    fn range(topics: &[(String, u32)], m: u32, n: u32) -> Vec<TopicPartition> {
        let mut out = Vec::new();
        for (t, count) in topics {
            let (per, extra) = (count / n, count % n);
            let start = m * per + m.min(extra);
            let len = per + u32::from(m < extra);
            out.extend((start..start + len).map(|p| (t.clone(), p)));
        }
        out
    }

    fn topics_of(layout: Layout, topics: &TopicsConfig) -> Vec<(String, u32)> {
        let mut all: Vec<(String, u32)> = [&topics.payments, &topics.roster, &topics.deaths, &topics.vulnerable]
            .into_iter()
            .map(|t| (t.clone(), layout.persons))
            .collect();
        all.push((topics.decisions.clone(), layout.decisions));
        all.extend(Topic::ALL.iter().map(|t| (t.name("g"), layout.partitions(*t))));
        all
    }

    /// Three members under the range assignor: every task is owned by
    /// exactly one of them, none is incomplete.
    #[test]
    fn the_range_assignor_gives_every_task_to_exactly_one_member() {
        let topics = TopicsConfig::default();
        let all = topics_of(LAYOUT, &topics);
        let mut seen = Vec::new();
        for m in 0..3 {
            let o = owned(&range(&all, m, 3), LAYOUT, &topics, "g");
            assert!(o.incomplete.is_empty() && o.stray.is_empty(), "{o:?}");
            seen.extend(o.tasks);
        }
        seen.sort();
        assert_eq!(seen, {
            let mut want = TaskId::all(LAYOUT);
            want.sort();
            want
        });
        assert_eq!(TaskId::all(LAYOUT).len(), 17);
    }

    /// A person task split between members (round robin across topics) is
    /// incomplete on both, named with what each lacks; a partition no task
    /// reads is stray.
    #[test]
    fn a_split_person_task_is_incomplete_and_names_what_is_missing() {
        let topics = TopicsConfig::default();
        let mut assigned = TaskId::Person(2).reads(&topics, "g");
        let roster = assigned.remove(1);
        assigned.push((topics.payments.clone(), 9));
        assigned.push((Topic::ByAccount.name("g"), 3));
        let o = owned(&assigned, LAYOUT, &topics, "g");
        assert_eq!(o.tasks, vec![TaskId::Account(3)]);
        assert_eq!(o.incomplete, vec![(TaskId::Person(2), vec![roster.clone()])]);
        assert_eq!(o.stray, vec![(topics.payments.clone(), 9)]);
        let other = owned(&[roster.clone()], LAYOUT, &topics, "g");
        assert_eq!(other.incomplete[0].1.len(), 4, "{other:?}");
        assert!(other.tasks.is_empty());
    }

    #[test]
    fn each_task_has_a_changelog_partition_of_its_own() {
        let all = TaskId::all(LAYOUT);
        for (i, t) in all.iter().enumerate() {
            assert_eq!(t.changelog_partition(LAYOUT), i as i32, "{t:?}");
        }
        assert_eq!(TaskId::Household(2).changelog_partition(LAYOUT), 16);
        assert_eq!(TaskId::Decisions(0).changelog_partition(LAYOUT), 6);
        let names: BTreeSet<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(names.len(), all.len(), "a directory name each");
        assert_eq!(TaskId::Account(1).to_string(), "account-1");
    }

    #[test]
    fn each_task_reads_its_own_partitions_and_writes_as_its_kind() {
        let topics = TopicsConfig::default();
        assert_eq!(
            TaskId::Person(4).reads(&topics, "g"),
            vec![
                ("dibao.payments.v1".to_string(), 4),
                ("dibao.roster.v1".to_string(), 4),
                ("civil.deaths.v1".to_string(), 4),
                ("civil.vulnerable.v1".to_string(), 4),
                ("paywatch.g.by-person".to_string(), 4),
            ]
        );
        assert_eq!(TaskId::Decisions(1).reads(&topics, "g"), vec![("dibao.decisions.v1".to_string(), 1)]);
        assert_eq!(TaskId::Household(2).reads(&topics, "g"), vec![("paywatch.g.by-household".to_string(), 2)]);
        assert_eq!(TaskId::Custodian(1).writes_as(), Some(Upstream { task: Task::Custodian, partition: 1 }));
        assert_eq!(TaskId::Account(0).writes_as(), None);
        assert_eq!(serde_json::to_value(TaskId::Person(3)).unwrap(), serde_json::json!({"kind": "person", "partition": 3}));
    }
}
