//! `paywatch offsets show|reset`: the stored input positions of a state
//! directory, with the service stopped (RocksDB admits one process).
//!
//! `reset` is what an operator runs when `paywatch run` stopped an input
//! topic because its log no longer matches the stored offsets (hardening
//! item 8): it forgets the topic's positions and the stop, so the topic is
//! read again from its first offset. Records applied before are recognised
//! by their ids and counted as redelivered; nothing is raised twice.

use super::{RunError, StreamMeta};
use crate::config::Config;
use crate::source::kafka::input_topics;
use crate::source::offsets::{source_of, OffsetBook};
use crate::store::{keys, Cf, Store};

/// One partition's stored position, as `show` prints it.
#[derive(Debug, serde::Serialize)]
pub struct PositionLine {
    /// The configured topic the position belongs to.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// The offset after the last record read.
    pub resume: i64,
    /// Where a restart reads from (the oldest pending offset, else `resume`).
    pub seek_to: i64,
    /// Offsets read and not applied at the last commit.
    pub pending: usize,
    /// Why the topic is stopped, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

fn meta(store: &Store) -> Result<StreamMeta, RunError> {
    store.get::<StreamMeta>(Cf::Meta, keys::META_STREAM)?.ok_or_else(|| RunError::WrongState {
        dir: store.path().display().to_string(),
        reason: "holds no stream offsets (it was never used by `paywatch run`)".into(),
    })
}

fn book(store: &Store, m: &StreamMeta) -> Result<OffsetBook, RunError> {
    OffsetBook::from_stored(&m.offsets).map_err(|reason| RunError::WrongState { dir: store.path().display().to_string(), reason })
}

/// Every stored partition position.
pub fn show(store: &Store, cfg: &Config) -> Result<Vec<PositionLine>, RunError> {
    let m = meta(store)?;
    let book = book(store, &m)?;
    let names = input_topics(&cfg.kafka.topics);
    let mut out = Vec::new();
    for (part, o) in &m.offsets {
        let topic = names.iter().find(|(k, _)| source_of(*k) == part.source).map_or("?", |(_, n)| n).to_owned();
        out.push(PositionLine {
            partition: part.partition,
            resume: o.resume,
            seek_to: book.seek_to(*part).unwrap_or(0),
            pending: book.pending_in(*part),
            stopped: m.stopped.get(&topic).map(|x| x.describe(&topic)),
            topic,
        });
    }
    Ok(out)
}

/// What `reset` did.
#[derive(Debug, PartialEq, Eq)]
pub struct Reset {
    /// Stored partitions forgotten.
    pub partitions: usize,
    /// The topic was stopped and no longer is.
    pub was_stopped: bool,
}

/// Forgets the stored positions of `topic` (one of the configured input
/// topics) and its stop: the next `paywatch run` reads it from its first
/// offset.
pub fn reset(store: &Store, cfg: &Config, topic: &str) -> Result<Reset, RunError> {
    let names = input_topics(&cfg.kafka.topics);
    let Some((kind, _)) = names.iter().find(|(_, n)| *n == topic) else {
        let known: Vec<&str> = names.iter().map(|(_, n)| *n).collect();
        return Err(RunError::WrongState {
            dir: store.path().display().to_string(),
            reason: format!("{topic:?} is not an input topic of this config (they are {})", known.join(", ")),
        });
    };
    let mut m = meta(store)?;
    let mut book = book(store, &m)?;
    let partitions = book.forget_source(source_of(*kind));
    m.offsets = book.to_stored();
    let was_stopped = m.stopped.remove(topic).is_some();
    let mut b = store.batch();
    b.put(Cf::Meta, keys::META_STREAM, &m)?;
    store.commit(b)?;
    Ok(Reset { partitions, was_stopped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Kind;
    use crate::source::offsets::Part;
    use crate::source::positions::{Gap, Mismatch};
    use crate::store::StoreOptions;

    #[test]
    fn reset_forgets_one_topic_and_its_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let cfg = Config::default();
        let deaths = cfg.kafka.topics.deaths.clone();
        let mut book = OffsetBook::default();
        for (kind, n) in [(Kind::Death, 5), (Kind::Payment, 9)] {
            for o in 0..n {
                book.admit(Part::new(kind, 0), o);
            }
            for o in 0..n - 1 {
                book.done(Part::new(kind, 0), o);
            }
        }
        let mismatch = Mismatch { source: 1, partition: 0, gap: Gap::EndBefore, stored: 5, found: 2 };
        let m = StreamMeta {
            topics: vec![],
            offsets: book.to_stored(),
            outbox_seq: 3,
            stopped: [(deaths.clone(), mismatch)].into_iter().collect(),
        };
        let mut b = store.batch();
        b.put(Cf::Meta, keys::META_STREAM, &m).unwrap();
        store.commit(b).unwrap();

        let lines = show(&store, &cfg).unwrap();
        assert_eq!(lines.len(), 2);
        let d = lines.iter().find(|l| l.topic == deaths).unwrap();
        assert_eq!((d.resume, d.seek_to, d.pending), (5, 4, 1));
        assert!(d.stopped.as_deref().is_some_and(|s| s.contains("recreated")), "{d:?}");

        assert!(reset(&store, &cfg, "no.such.topic").unwrap_err().to_string().contains("not an input topic"));
        assert_eq!(reset(&store, &cfg, &deaths).unwrap(), Reset { partitions: 1, was_stopped: true });
        let after: StreamMeta = store.get(Cf::Meta, keys::META_STREAM).unwrap().unwrap();
        assert!(after.stopped.is_empty());
        assert_eq!(after.outbox_seq, 3);
        let lines = show(&store, &cfg).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].topic, cfg.kafka.topics.payments);
        assert_eq!(reset(&store, &cfg, &deaths).unwrap(), Reset { partitions: 0, was_stopped: false });
    }
}
