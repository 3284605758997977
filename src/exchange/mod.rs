//! The transport of the repartition records between instances (#16 step 2,
//! docs/partitioning.md "Exactly once without transactions"): what
//! `engine::repartition` encodes and checks, carried by the group's
//! internal topics `paywatch.<group>.by-account`, `by-custodian`,
//! `by-household` and `by-person`.
//!
//! One straight line, as for alerts:
//!
//! ```text
//! Writer (a task's facts and marks) → outbox::stage (in the batch of the
//! state that wrote them) → publish::Sender (in order, acknowledged, then
//! deleted) → topic partition → inbox::Inbox (a Reader per partition,
//! resumed from the checkpoint and offset committed with the reader's state)
//! ```
//!
//! - Nothing uncommitted leaves: records are staged in the commit that
//!   produced them and sent after it.
//! - Sent twice after a crash, a record is skipped by its reader (its number
//!   in its stream is behind); lost, it is refused (a gap), never read past.
//! - A reader's offset is state: committed with what it released, so a
//!   reader that crashes reads again exactly what its state has not seen.
//!   Kafka's committed offsets are never used.
//!
//! `ensure_topics` creates the group's topics with the layout's partition
//! counts and refuses, naming it, one that exists with another count: two
//! instances that disagree would send a key's facts to two tasks. `tasks`
//! says which tasks there are, what each reads, and which of them the
//! partitions Kafka assigned an instance make it the owner of; `task_dir`
//! keeps each task's state in a directory of its own, published to the
//! task's changelog partition and restored from it when the task moves.

pub mod account_task;
pub mod account_worker;
pub mod inbox;
pub mod member;
pub mod outbox;
pub mod publish;
pub mod task_dir;
pub mod tasks;

use crate::config::KafkaConfig;
use crate::engine::repartition::{Layout, Topic, WireError};
use crate::source::kafka::client_config;
use crate::store::StoreError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("repartition topic {topic} has {has} partitions, the group's layout needs {wants}: every instance of a group must agree (delete the topic, or set the partition counts it was made with)")]
    PartitionCount { topic: String, has: usize, wants: u32 },
    #[error("changelog topic {topic} has {has} partitions, the group's tasks need {wants} (one each): delete it or make one with more, or set [kafka.changelog] topic")]
    ChangelogPartitions { topic: String, has: usize, wants: u32 },
    #[error("cannot create repartition topic {topic}: {reason}")]
    Create { topic: String, reason: String },
    #[error("repartition record at {topic} partition {partition} offset {offset} refused: {source}")]
    Refused { topic: String, partition: u32, offset: i64, source: WireError },
    #[error("repartition topic {topic} partition {partition} holds offsets {low} to {high}, its reader's checkpoint is at {offset}: records were lost to retention, or the topic was made again (restore the task's state, or start the group again)")]
    OffsetLost { topic: String, partition: u32, offset: i64, low: i64, high: i64 },
    #[error("a repartition partition no longer holds the offset its reader's checkpoint names (records lost to retention, or the topic made again): {0}")]
    OffsetReset(KafkaError),
    #[error("the broker did not acknowledge a repartition record for {topic} partition {partition}: {reason}")]
    Delivery { topic: String, partition: u32, reason: String },
    #[error("repartition record or checkpoint: {0}")]
    Wire(#[from] WireError),
    #[error("partition.assignment.strategy {asked:?} in [kafka.consumer] would split tasks between instances: the group's tasks need \"range\" (remove the setting)")]
    Assignor { asked: String },
    #[error("task {task}: its directory could not be opened: {why}")]
    Restore { task: String, why: String },
    #[error("an account task's engine: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("an account task's alerts: {0}")]
    Publish(#[from] crate::sink::kafka::PublishError),
    #[error("a task's state directory: {0}")]
    Changelog(#[from] crate::changelog::ChangelogError),
}

/// How long metadata and topic creation may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the group's repartition topics that do not exist yet, with
/// `layout`'s partition counts, and checks those that do. Returns the
/// topics it created.
pub async fn ensure_topics(cfg: &KafkaConfig, group: &str, layout: Layout, replication: i32) -> Result<Vec<String>, ExchangeError> {
    let wanted: Vec<(String, u32)> = Topic::ALL.iter().map(|t| (t.name(group), layout.partitions(*t))).collect();
    let existing = partition_counts(cfg, &wanted)?;
    let mut missing = Vec::new();
    for ((name, wants), has) in wanted.iter().zip(&existing) {
        match has {
            Some(has) if *has as u32 != *wants => {
                return Err(ExchangeError::PartitionCount { topic: name.clone(), has: *has, wants: *wants });
            }
            Some(_) => {}
            None => missing.push((name.clone(), *wants)),
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let news: Vec<NewTopic<'_>> =
        missing.iter().map(|(n, p)| NewTopic::new(n, *p as i32, TopicReplication::Fixed(replication))).collect();
    let results = admin.create_topics(&news, &AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT))).await?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            // Another instance created it meanwhile: checked below.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(ExchangeError::Create { topic, reason: code.to_string() }),
        }
    }
    // What another instance may have created meanwhile must agree too.
    for ((name, wants), has) in missing.iter().zip(partition_counts(cfg, &missing)?) {
        if let Some(has) = has {
            if has as u32 != *wants {
                return Err(ExchangeError::PartitionCount { topic: name.clone(), has, wants: *wants });
            }
        }
    }
    Ok(created)
}

/// Creates the changelog topic with a partition for each task of
/// `layout` (`TaskId::changelog_partition`) when it does not exist, and
/// refuses, naming it, one with fewer: two tasks would share a partition.
pub async fn ensure_changelog(cfg: &KafkaConfig, layout: Layout, replication: i32) -> Result<(), ExchangeError> {
    let name = cfg.changelog_topic();
    let wants = tasks::TaskId::all(layout).len() as u32;
    let too_few = |has: usize| ExchangeError::ChangelogPartitions { topic: name.clone(), has, wants };
    let wanted = [(name.clone(), wants)];
    match partition_counts(cfg, &wanted)?[0] {
        Some(has) if (has as u32) < wants => return Err(too_few(has)),
        Some(_) => return Ok(()),
        None => {}
    }
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let new = NewTopic::new(&name, wants as i32, TopicReplication::Fixed(replication));
    for r in admin.create_topics([&new], &AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT))).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(ExchangeError::Create { topic, reason: code.to_string() }),
        }
    }
    match partition_counts(cfg, &wanted)?[0] {
        Some(has) if (has as u32) < wants => Err(too_few(has)),
        _ => Ok(()),
    }
}

/// Each topic's partition count, `None` for one that does not exist.
fn partition_counts(cfg: &KafkaConfig, topics: &[(String, u32)]) -> Result<Vec<Option<usize>>, ExchangeError> {
    let consumer: BaseConsumer = client_config(cfg).create()?;
    let md = consumer.fetch_metadata(None, ADMIN_TIMEOUT)?;
    Ok(topics
        .iter()
        .map(|(name, _)| {
            md.topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions().len())
        })
        .collect())
}
