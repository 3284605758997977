//! `[kafka.standby]`: several instances of one consumer group, one of them
//! active, the others standing by to take over (docs/changelog.md,
//! "Standby instances").
//!
//! Until the partitioned engine (#16) lets instances share a group's work,
//! a second member of the input group would split the state, so it holds
//! back. With standby on, instances first elect one active among them: the
//! member of consumer group `<group_id>.active` that holds partition 0 of
//! the changelog topic. It never reads that partition (paused at once); the
//! group only says who is alive and who holds it. The others serve their
//! health, metrics and `/status` (role `standby`), answer everything else
//! with 503, and do not join the input group at all.
//!
//! While it stands by, a standby keeps its state directory a warm copy of
//! the active instance's (`follow`, on by default): it follows the
//! changelog as it is published (`changelog::follow`). A directory holding
//! a state of its own is kept while its frames are the changelog's last,
//! and set aside once another instance has published after it.
//!
//! When the active instance is gone, the broker hands the partition to a
//! standby (tansu only at a member's next join, hence `rejoin_after`;
//! cooperative-sticky assignment keeps it with a live holder). The new
//! active one reads its copy to the changelog's end and opens it. Without
//! a consistent copy it sets its state directory aside when the
//! changelog's last frames are another's (it was active before and has
//! been overtaken) and restores it from the changelog
//! (`restore_if_empty`). Either way it goes on from the state's offsets,
//! as after any crash. An active instance that loses the partition (it was
//! frozen past its session) halts its changelog publisher at once, stops,
//! and exits with code 3: its supervisor starts it again, as a standby.

use super::RunError;
use crate::changelog::follow::{self, Follower, Following};
use crate::changelog::restore::{set_aside, superseded};
use crate::config::{Config, KafkaConfig};
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::store::StoreOptions;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Where this instance stands in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// Another instance is active (or none yet: the election is on).
    Standby,
    /// This instance holds the election partition.
    Active,
    /// It held it and lost it: another instance is active now.
    Lost,
}

/// The election: a thread keeping this instance's membership in
/// `<group_id>.active`, and what it says.
pub(super) struct Election {
    /// The thread's verdicts.
    standing: watch::Receiver<Standing>,
    /// Ends the thread, which leaves the group so a standby takes over at
    /// once rather than after the session.
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The election group's name, for the log and `/readyz`.
    group: String,
    /// How many new lines the standby's copy has seen start (another
    /// instance elected): the rejoin waits `rejoin_after` after each.
    lines: Arc<AtomicU64>,
}

/// What the active instance's service watches: the loss of its role.
pub(super) struct Fence {
    standing: watch::Receiver<Standing>,
}

impl Fence {
    /// Completes when the role is lost (never, if the thread is gone
    /// without losing it).
    pub(super) async fn lost(&mut self) {
        if self.standing.wait_for(|s| *s == Standing::Lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub(super) fn is_lost(&self) -> bool {
        *self.standing.borrow() == Standing::Lost
    }
}

impl Election {
    pub(super) fn start(kafka: &KafkaConfig) -> Result<Election, RunError> {
        let group = format!("{}.active", kafka.group_id);
        let topic = kafka.changelog_topic();
        let consumer = consumer(kafka, &group).map_err(|e| RunError::Election(format!("cannot create the consumer of {group:?}: {e}")))?;
        consumer.subscribe(&[&topic]).map_err(|e| RunError::Election(format!("cannot join {group:?} on {topic:?}: {e}")))?;
        let (tx, standing) = watch::channel(Standing::Standby);
        let stop = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(AtomicU64::new(0));
        let rejoin_after = kafka.standby.rejoin_after;
        let thread = {
            let (stop, lines) = (Arc::clone(&stop), Arc::clone(&lines));
            std::thread::Builder::new()
                .name("election".into())
                .spawn(move || elect(&consumer, &topic, rejoin_after, &tx, &stop, &lines))
                .map_err(|e| RunError::Election(format!("cannot start the election thread: {e}")))?
        };
        Ok(Election { standing, stop, thread: Some(thread), group, lines })
    }

    /// Completes once this instance is elected.
    async fn elected(&self) {
        let mut s = self.standing.clone();
        if s.wait_for(|s| *s == Standing::Active).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub(super) fn fence(&self) -> Fence {
        Fence { standing: self.standing.clone() }
    }

    /// Leaves the election group.
    pub(super) fn leave(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The election group's consumer: never reads (its partition is paused as
/// soon as it is held, and it starts at the end), only belongs.
fn consumer(kafka: &KafkaConfig, group: &str) -> rdkafka::error::KafkaResult<BaseConsumer> {
    let mut c = crate::source::kafka::client_config(kafka);
    for (k, v) in &kafka.consumer {
        // One static member id for two groups would fence one of them.
        if k != "group.instance.id" {
            c.set(k, v);
        }
    }
    c.set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("enable.partition.eof", "false")
        .set("queued.max.messages.kbytes", "1024")
        .create()
}

/// The election thread: polls the membership, says when the partition
/// comes and goes, and rejoins while left without it, but not within
/// `rejoin_after` of a new line starting in the changelog (`lines`, when
/// the standby copies it).
///
/// Why the wait: on tansu a join shortly after another standby was
/// elected can hand the partition to the joiner while the elected one
/// still holds it (seen in `it::standby`: both active for seconds, never
/// applying at the same moment since each needs every input partition,
/// then one fenced).
/// A new line is the sign of such an election.
fn elect(consumer: &BaseConsumer, topic: &str, rejoin_after: Duration, tx: &watch::Sender<Standing>, stop: &AtomicBool, lines: &AtomicU64) {
    let mut left_out = Instant::now();
    let mut seen = 0;
    let mut logged: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            if logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                tracing::warn!(error = %e, "the standby election's consumer reports an error");
                logged = Some(Instant::now());
            }
        }
        let started = lines.load(Ordering::Relaxed);
        if started > seen {
            seen = started;
            left_out = Instant::now();
        }
        let assigned = consumer.assignment().unwrap_or_default();
        let held = assigned.elements_for_topic(topic).iter().any(|e| e.partition() == 0);
        let now = *tx.borrow();
        match (held, now) {
            (true, Standing::Standby | Standing::Active) => {
                // Paused every time: a rejoin may hand it back unpaused.
                let _ = consumer.pause(&assigned);
                if now == Standing::Standby {
                    tracing::info!(topic, "elected: this instance becomes the group's active one");
                    tx.send_replace(Standing::Active);
                }
            }
            (false, Standing::Active) => {
                tracing::error!(topic, "lost the active role: another instance of the group holds it now; stopping at once (exit code 3)");
                tx.send_replace(Standing::Lost);
            }
            (false, Standing::Standby) if left_out.elapsed() >= rejoin_after => {
                consumer.unsubscribe();
                if let Err(e) = consumer.subscribe(&[topic]) {
                    tracing::error!(error = %e, "cannot join the standby election again");
                }
                left_out = Instant::now();
            }
            _ => {}
        }
    }
    consumer.unsubscribe();
}

/// What standing by ended with.
pub(super) enum StoodBy {
    /// The service was told to stop.
    Stopped,
    /// This instance is elected; with the warm copy of the state when it
    /// kept one (`[kafka.standby] follow`).
    Elected(Option<Follower>),
}

/// Serves the standby port, and keeps the state directory warm, until
/// this instance is elected or the service is told to stop.
pub(super) async fn stand_by<F: Future<Output = ()>>(cfg: &Config, election: &Election, shutdown: &mut Pin<&mut F>) -> Result<StoodBy, RunError> {
    let metrics = Arc::new(Metrics::new());
    metrics.active.set(0);
    metrics.standby_behind.set(-1);
    let health = Arc::new(Health::default());
    let why = format!(
        "another instance of consumer group {:?} is active (election group {:?}); this one takes over from the changelog when it is gone",
        cfg.kafka.group_id, election.group
    );
    *health.standby.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    health.status.lock().unwrap_or_else(|e| e.into_inner()).role = "standby";
    let (listener, tls) = super::listen(cfg).await?;
    let stop = Arc::new(Notify::new());
    let server = {
        let stop = Arc::clone(&stop);
        let app = http::standby_router(Arc::clone(&metrics), Arc::clone(&health), Arc::new(cfg.api.tokens.clone()));
        tokio::spawn(http::serve_router(listener, app, tls, async move { stop.notified().await }))
    };
    // Cleared once standing by ends: the copy's thread then returns it.
    let warm = Arc::new(AtomicBool::new(true));
    let keeper = match (cfg.kafka.standby.follow, cfg.state.dir.clone()) {
        (true, Some(dir)) => {
            let (kafka, opts, warm, health, metrics) = (cfg.kafka.clone(), cfg.store_options(false), Arc::clone(&warm), Arc::clone(&health), Arc::clone(&metrics));
            let lines = Arc::clone(&election.lines);
            Some(tokio::task::spawn_blocking(move || keep_warm(&kafka, &dir, opts, &Keeping { go_on: &warm, health: &health, metrics: &metrics, lines: &lines })))
        }
        _ => None,
    };
    tracing::info!(group = %election.group, http = %cfg.http.listen, warm_copy = keeper.is_some(), "standing by");
    let elected = tokio::select! {
        _ = shutdown.as_mut() => false,
        _ = election.elected() => true,
    };
    // The copy's thread ends within one read (half a second).
    warm.store(false, Ordering::Relaxed);
    let follower = match keeper {
        Some(k) => k.await.map_err(|e| RunError::Thread(e.to_string()))?,
        None => None,
    };
    stop.notify_one();
    let _ = server.await;
    Ok(if elected { StoodBy::Elected(follower) } else { StoodBy::Stopped })
}

/// What the copy's thread shares with the rest of the standby.
struct Keeping<'a> {
    /// Cleared when standing by ends.
    go_on: &'a AtomicBool,
    /// `/status` shows the copy.
    health: &'a Health,
    metrics: &'a Metrics,
    /// New lines the copy has seen start (`Election::lines`).
    lines: &'a AtomicU64,
}

/// While standing by (until `go_on` is cleared): keeps `dir` a warm copy
/// of the active instance's state, following the changelog
/// (`changelog::follow`). A directory that holds a state of its own is
/// left as it is while its frames are the changelog's last (it was the
/// active instance last: there is nothing newer to copy), and set aside
/// once another instance has published after it. A failed copy is
/// deleted and started again after a pause.
fn keep_warm(kafka: &KafkaConfig, dir: &Path, opts: StoreOptions, k: &Keeping) -> Option<Follower> {
    let mut follower: Option<Follower> = None;
    let mut pause_until: Option<Instant> = None;
    // The current follower's restarts already told to the election.
    let mut told = 0;
    let show = |f: Option<Following>| {
        k.metrics.standby_behind.set(f.as_ref().filter(|f| f.origin.is_some()).map_or(-1, Following::behind));
        k.health.status.lock().unwrap_or_else(|e| e.into_inner()).following = f;
    };
    while k.go_on.load(Ordering::Relaxed) {
        if pause_until.is_some_and(|t| Instant::now() < t) {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        pause_until = None;
        let Some(f) = follower.as_mut() else {
            match copy_into(kafka, dir) {
                Ok(true) => match Follower::new(kafka, dir, opts) {
                    Ok(f) => {
                        follower = Some(f);
                        told = 0;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the standby cannot copy the changelog; trying again in 30 s");
                        pause_until = Some(Instant::now() + Duration::from_secs(30));
                    }
                },
                // Its own state is the newest: asked again in 5 s.
                Ok(false) => pause_until = Some(Instant::now() + Duration::from_secs(5)),
                Err(e) => {
                    tracing::warn!(error = %e, "the standby cannot compare its state directory with the changelog; trying again in 30 s");
                    pause_until = Some(Instant::now() + Duration::from_secs(30));
                }
            }
            continue;
        };
        match f.step(Duration::from_millis(500)) {
            Ok(()) => {
                let now = f.following();
                if now.restarts > told {
                    k.lines.fetch_add(now.restarts - told, Ordering::Relaxed);
                    told = now.restarts;
                }
                show(Some(now));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the standby's copy of the changelog failed; it is deleted and made again in 30 s");
                if let Some(f) = follower.take() {
                    if let Err(e) = f.discard() {
                        tracing::warn!(error = %e, "cannot delete the standby's copy");
                    }
                }
                show(None);
                pause_until = Some(Instant::now() + Duration::from_secs(30));
            }
        }
    }
    follower
}

/// Whether the standby should fill `dir` with a copy: it is an unfinished
/// copy, or empty (its own state, overtaken, is set aside first).
/// `false`: its state is at least as new as the changelog.
fn copy_into(kafka: &KafkaConfig, dir: &Path) -> Result<bool, RunError> {
    Ok(follow::is_copy(dir) || set_aside_if_superseded(kafka, dir)?)
}


/// Once elected, before the state directory is opened: the warm copy is
/// read to the changelog's end and becomes the state; without one (or
/// when it is not consistent), an overtaken directory is set aside so that
/// the restore fills an empty one.
pub(super) fn take_over(kafka: &KafkaConfig, dir: &Path, copy: Option<Follower>) -> Result<(), RunError> {
    if let Some(copy) = copy {
        let started = Instant::now();
        match copy.finish(Duration::from_secs(120)) {
            Ok(Some(r)) => {
                tracing::info!(
                    origin = r.origin,
                    commits = r.commits,
                    caught_up_ms = started.elapsed().as_millis() as u64,
                    "the standby's warm copy is read to the changelog's end and is the state now"
                );
                return Ok(());
            }
            Ok(None) => tracing::warn!("the standby's copy is not a whole state (no complete snapshot, or its commits never came): deleted, the state is restored instead"),
            Err(e) => tracing::warn!(error = %e, "the standby's copy could not be finished: deleted, the state is restored instead"),
        }
    }
    if follow::is_copy(dir) {
        // A copy its standby could not go on with: not a state to keep.
        follow::discard_copy(dir)?;
    }
    set_aside_if_superseded(kafka, dir).map(|_| ())
}

/// Before the elected instance opens its state directory: a directory the
/// changelog has overtaken is moved to `<dir>.superseded` (one kept, for
/// an operator to look at), so that the restore fills an empty one.
/// `true` when the directory is empty now.
fn set_aside_if_superseded(kafka: &KafkaConfig, dir: &Path) -> Result<bool, RunError> {
    if crate::changelog::restore::is_empty_dir(dir) {
        return Ok(true);
    }
    let mine = crate::changelog::publish::published_origin(dir);
    let last = crate::changelog::restore::last_origin(kafka, &crate::changelog::Place::of(kafka))?;
    if !superseded(mine, last) {
        return Ok(false);
    }
    let aside = set_aside(dir).map_err(|e| RunError::WrongState { dir: dir.display().to_string(), reason: format!("cannot be set aside: {e}") })?;
    tracing::warn!(
        state = %dir.display(),
        aside = %aside.display(),
        "another instance published to the changelog after this state directory: it is set aside, and the state comes from the changelog"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_superseded_only_when_another_published_last() {
        assert!(!superseded(Some(7), Some(7)), "its own frames are last: it is at least as new");
        assert!(!superseded(Some(7), None), "nothing published: nothing overtook it");
        assert!(!superseded(None, None));
        assert!(superseded(Some(7), Some(9)), "another went on after it");
        assert!(superseded(None, Some(9)), "never published, and another has");
    }

    #[test]
    fn a_superseded_directory_is_moved_aside_in_place_of_an_older_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        for round in ["first", "second"] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("CURRENT"), round).unwrap();
            let aside = set_aside(&dir).unwrap();
            assert_eq!(aside, tmp.path().join("state.superseded"));
            assert!(!dir.exists(), "the restore gets an empty place");
            assert_eq!(std::fs::read_to_string(aside.join("CURRENT")).unwrap(), round, "one kept: the newest");
        }
        // An empty or missing directory asks nothing (no broker here).
        let kafka = KafkaConfig { brokers: "127.0.0.1:1".into(), ..KafkaConfig::default() };
        set_aside_if_superseded(&kafka, &dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        set_aside_if_superseded(&kafka, &dir).unwrap();
        assert!(dir.exists());
    }
}
