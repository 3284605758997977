//! Case events for supervisors' webhooks (contract §8; `[cases]`): a case
//! not closed `warn_days` after its opening is due soon (临期), after
//! `deadline_days` overdue (超期); a case closed as `rectified` and
//! reopened by a new alert has relapsed (反弹). Routes receive them when
//! their `events` list them, as `X-Paywatch-Event: case.due_soon` (…), with
//! the same signing, outbox and retries as alerts.
//!
//! Each event is queued once per case and deadline: `case.relapsed` once
//! per reopening (its id names the rectified decision that relapsed; the
//! engine's commit queues it with the alert that reopened the case), the
//! deadline events once per opening (their id names `opened_at`; the
//! watcher here queues them, with a marker in the same write, when the wall
//! clock passes the deadline). Deadlines run on the wall clock, never on
//! replayed event time.
//!
//! The watcher also counts the cases into the metrics.

use super::webhook::{self, Origin};
use crate::clock::Clock;
use crate::config::{CasesConfig, Event, RouteConfig};
use crate::metrics::Metrics;
use crate::model::{Timestamp, Tz};
use crate::store::cases::{self, Case, Deadline, Status};
use crate::store::{Batch, Cf, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A case event's id (its `Idempotency-Key`) and JSON body.
pub fn body(event: Event, c: &Case, cfg: &CasesConfig, tz: Tz) -> (String, Vec<u8>) {
    let due = tz.format(c.due_at(cfg));
    let date = |t: Timestamp| tz.format(t).chars().take(10).collect::<String>();
    let what = format!("{}{}问题（{}，对象 {}）", c.township, c.rule.chinese(), c.case_id, c.subject);
    let (id, message) = match event {
        Event::CaseDueSoon => (
            format!("case.due_soon-{}-{}", c.case_id, c.opened_at.0),
            format!("【临期】{what}于 {} 立案，尚未销号，整改期限 {}。", date(c.opened_at), date(c.due_at(cfg))),
        ),
        Event::CaseOverdue => (
            format!("case.overdue-{}-{}", c.case_id, c.opened_at.0),
            format!("【超期】{what}于 {} 立案，已超过 {} 天未销号，请督办。", date(c.opened_at), cfg.deadline_days),
        ),
        Event::CaseRelapsed | Event::Alert => {
            let r = c.rectified.as_ref();
            (
                format!("case.relapsed-{}-{}", c.case_id, r.map_or("", |r| r.decision_id.as_str())),
                format!(
                    "【反弹】{what}已于 {} 整改销号，{} 再次出现，已重新立案，请于 {} 前复核整改。",
                    r.map(|r| date(r.decided_at)).unwrap_or_default(),
                    date(c.newest_event),
                    date(c.due_at(cfg))
                ),
            )
        }
    };
    let v = serde_json::json!({
        "event": event.name(),
        "event_id": id,
        "message": message,
        "deadline": due,
        "rectified_decision_id": c.rectified.as_ref().map(|r| &r.decision_id),
        "case": crate::report::case_json(c, tz),
    });
    (id, serde_json::to_vec(&v).unwrap_or_default())
}

/// The routes that take `event` for case `c`.
pub fn routes_for<'a>(routes: &'a [RouteConfig], event: Event, c: &Case) -> Vec<&'a RouteConfig> {
    routes.iter().filter(|r| r.wants_case_event(event, &c.township, c.rule)).collect()
}

/// Queues `case.relapsed` for the cases the engine's commit reopened (in
/// that commit).
pub fn stage_relapsed(
    batch: &mut Batch<'_>,
    seq: &mut u64,
    routes: &[RouteConfig],
    reopened: &[Case],
    cfg: &CasesConfig,
    tz: Tz,
    now_ms: i64,
) -> Result<(), StoreError> {
    for c in reopened {
        let to = routes_for(routes, Event::CaseRelapsed, c);
        if !to.is_empty() {
            let (id, b) = body(Event::CaseRelapsed, c, cfg, tz);
            webhook::stage_event(batch, (Origin::Engine, seq), &to, Event::CaseRelapsed, &id, &b, now_ms)?;
        }
    }
    Ok(())
}

/// The deadline watcher and case counter of `paywatch run`.
pub struct Deadlines {
    pub store: Store,
    pub routes: Vec<RouteConfig>,
    pub cfg: CasesConfig,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub tz: Tz,
    /// Wakes the webhook dispatcher after queueing.
    pub wake: Arc<Notify>,
    /// This process's sequence of the deliveries it queues.
    pub seq: u64,
}

/// What one pass found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub by_status: [i64; 5],
    pub overdue: i64,
    pub relapsed: i64,
    /// Deliveries queued.
    pub queued: usize,
}

impl Deadlines {
    /// Every `every`: one pass, until the process ends. A pass that cannot
    /// read or write the state is logged and tried again at the next.
    pub async fn run(mut self, every: Duration) {
        loop {
            match self.pass() {
                Ok(p) => {
                    if p.queued > 0 {
                        self.wake.notify_waiters();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the cases could not be checked against their deadlines; trying again"),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Counts the cases and queues the deadline events now due.
    pub fn pass(&mut self) -> Result<Pass, StoreError> {
        let now = self.clock.now();
        let wanted = |e: Event| self.routes.iter().any(|r| r.events.contains(&e));
        let (due_soon, overdue) = (wanted(Event::CaseDueSoon), wanted(Event::CaseOverdue));
        let mut p = Pass::default();
        let mut batch = self.store.batch();
        let mut in_batch = 0;
        // The case index's summaries decide the counts and the deadlines;
        // a case is read whole only when an event is due for it.
        let mut due = Vec::new();
        cases::walk_index::<StoreError>(&self.store, None, |id, s| {
            let c = s.as_case(id);
            p.by_status[Status::ALL.iter().position(|x| *x == c.status).unwrap_or(0)] += 1;
            let state = c.deadline(&self.cfg, now);
            p.overdue += i64::from(state == Deadline::Overdue);
            p.relapsed += i64::from(!c.closed() && c.relapsed);
            // A case past both deadlines (the service was down) is only
            // overdue: "due soon" would be stale.
            match state {
                Deadline::Overdue if overdue => due.push((id.to_owned(), Event::CaseOverdue, c.opened_at)),
                Deadline::DueSoon if due_soon => due.push((id.to_owned(), Event::CaseDueSoon, c.opened_at)),
                _ => {}
            }
            Ok(())
        })?;
        for (id, event, opened_at) in due {
            let marker = cases::announced_key(&id, event.name(), opened_at);
            if cases::announced(&self.store, &marker)? {
                continue;
            }
            let Some(c) = cases::get(&self.store, &id)? else { continue };
            // A decision posted and not yet applied may have closed it.
            let c = cases::with_pending(&self.store, c)?;
            if c.closed() {
                continue;
            }
            let to = routes_for(&self.routes, event, &c);
            if !to.is_empty() {
                let (id, b) = body(event, &c, &self.cfg, self.tz);
                p.queued += webhook::stage_event(&mut batch, (Origin::Deadlines, &mut self.seq), &to, event, &id, &b, now.0)?;
            }
            batch.put_raw(Cf::Cases, &marker, &[]);
            in_batch += 1;
            if in_batch >= 1000 {
                self.store.commit(std::mem::replace(&mut batch, self.store.batch()))?;
                in_batch = 0;
            }
        }
        self.store.commit(batch)?;
        for (s, n) in Status::ALL.iter().zip(p.by_status) {
            self.metrics.cases.with_label_values(&[s.code()]).set(n);
        }
        self.metrics.cases_overdue.set(p.overdue);
        self.metrics.cases_relapsed.set(p.relapsed);
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::model::alert::Alert;
    use crate::model::decision::{Action, Decision, Outcome};
    use crate::model::Rule;
    use crate::store::{keys, StoreOptions};

    const DAY: i64 = crate::model::time::MS_PER_DAY;

    fn route(name: &str, events: &[Event], townships: &[&str]) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            url: "http://127.0.0.1:9/x".into(),
            secrets: vec!["0123456789abcdef".into()],
            townships: townships.iter().map(|t| (*t).to_owned()).collect(),
            rules: vec![],
            min_severity: crate::model::Severity::Low,
            allow_insecure_http: false,
            events: events.to_vec(),
        }
    }

    fn case(id: &str, township: &str, opened: i64) -> Case {
        let mut c = Case::new(id.repeat(32), Rule::NameMismatch, "341802193806232054".into(), Timestamp(opened), Timestamp(0));
        let mut a: Alert = serde_json::from_value(serde_json::json!({
            "alert_id": "x", "rule": "NAME_MISMATCH", "severity": "high", "township": township,
            "event_time": "2021-01-01T00:00:00+08:00", "detected_at": "2021-01-01T00:00:00+08:00", "reason": "r",
            "evidence": {"event_ids": [], "record_ids": [], "figures": {}}
        }))
        .unwrap();
        a.amount = None;
        c.add_alert("x", &a, Timestamp(0), true);
        c
    }

    fn queued(store: &Store) -> Vec<(String, webhook::Delivery)> {
        store
            .entries_between(Cf::Outbox, &[keys::DELIVERY], &[keys::DELIVERY + 1], usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let d = webhook::decode(&k, &v).unwrap();
                (d.route.clone(), d)
            })
            .collect()
    }

    #[test]
    fn deadline_events_are_queued_once_per_case_and_opening_to_the_routes_that_list_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let start = 1_700_000_000_000;
        let mut b = store.batch();
        for c in [case("a", "水阳镇", start), case("b", "狸桥镇", start), case("c", "水阳镇", start + 10 * DAY)] {
            b.put(Cf::Cases, &cases::key(&c.case_id), &c).unwrap();
            cases::stage_index(&mut b, &c.case_id, None, &cases::Summary::of(&c)).unwrap();
        }
        store.commit(b).unwrap();
        let clock = Arc::new(FixedClock::new(Timestamp(start)));
        let mut w = Deadlines {
            store: store.clone(),
            routes: vec![
                route("alerts", &[Event::Alert], &[]),
                route("district", &[Event::CaseDueSoon, Event::CaseOverdue], &[]),
                route("shuiyang", &[Event::CaseOverdue], &["水阳镇"]),
            ],
            cfg: CasesConfig::default(),
            clock: clock.clone(),
            metrics: Arc::new(Metrics::new()),
            tz: Tz::default(),
            wake: Arc::new(Notify::new()),
            seq: 0,
        };
        // Day 0 and day 24 (23:59:59.999 after): nothing due.
        assert_eq!(w.pass().unwrap().queued, 0);
        clock.set(Timestamp(start + 25 * DAY - 1));
        assert_eq!(w.pass().unwrap().queued, 0);
        // Day 25 exactly: a and b due soon, to the district only.
        clock.set(Timestamp(start + 25 * DAY));
        let p = w.pass().unwrap();
        assert_eq!((p.queued, p.overdue), (2, 0));
        let q = queued(&store);
        assert!(q.iter().all(|(r, d)| r == "district" && d.event == Event::CaseDueSoon), "{q:?}");
        assert!(q.iter().any(|(_, d)| d.id == format!("case.due_soon-{}-{start}", "a".repeat(32))));
        // Again at the same instant, and a day later: nothing new.
        assert_eq!(w.pass().unwrap().queued, 0);
        clock.set(Timestamp(start + 26 * DAY));
        assert_eq!(w.pass().unwrap().queued, 0);
        // Day 30: a and b overdue (district both, 水阳镇 only a); c (opened
        // ten days later) now due soon.
        clock.set(Timestamp(start + 35 * DAY));
        let p = w.pass().unwrap();
        assert_eq!((p.queued, p.overdue), (4, 2), "{p:?}");
        let q = queued(&store);
        let overdue: Vec<&str> = q.iter().filter(|(_, d)| d.event == Event::CaseOverdue).map(|(r, _)| r.as_str()).collect();
        assert_eq!(overdue.iter().filter(|r| **r == "district").count(), 2);
        assert_eq!(overdue.iter().filter(|r| **r == "shuiyang").count(), 1);
        let body: serde_json::Value = serde_json::from_slice(&q.iter().find(|(r, _)| r == "shuiyang").unwrap().1.body).unwrap();
        assert_eq!(body["event"], "case.overdue");
        assert_eq!(body["case"]["case_id"], "a".repeat(32));
        assert!(body["message"].as_str().unwrap().starts_with("【超期】水阳镇户名不符问题"), "{body}");
        assert_eq!(w.metrics.cases_overdue.get(), 2);

        // a is rectified by a posted decision not yet applied: no more
        // events. b reopens (a relapse moves opened_at): its deadlines run
        // again, and a service that was down past both sends only overdue.
        let d = Decision {
            decision_id: "d1".into(),
            case_id: "a".repeat(32),
            rule: Rule::NameMismatch,
            subject: "341802193806232054".into(),
            outcome: Outcome::Rectified,
            action: Some(Action::Corrected),
            amount_recovered: None,
            document_no: None,
            clue_no: None,
            note: None,
            decided_by: "t".into(),
            decided_at: Timestamp(start),
        };
        cases::put_pending(&store, &d).unwrap();
        let mut b = store.batch();
        let mut reopened = cases::get(&store, &"b".repeat(32)).unwrap().unwrap();
        let before = cases::Summary::of(&reopened);
        reopened.opened_at = Timestamp(start + 40 * DAY);
        b.put(Cf::Cases, &cases::key(&reopened.case_id), &reopened).unwrap();
        cases::stage_index(&mut b, &reopened.case_id, Some(&before), &cases::Summary::of(&reopened)).unwrap();
        store.commit(b).unwrap();
        clock.set(Timestamp(start + 80 * DAY));
        let before = queued(&store).len();
        let p = w.pass().unwrap();
        let q = queued(&store);
        let new: Vec<&webhook::Delivery> = q.iter().map(|(_, d)| d).filter(|d| d.queued_ms == start + 80 * DAY).collect();
        assert_eq!(q.len() - before, p.queued);
        assert!(new.iter().all(|d| d.event == Event::CaseOverdue && !d.id.contains(&"a".repeat(32))), "{new:?}");
        assert!(new.iter().any(|d| d.id == format!("case.overdue-{}-{}", "b".repeat(32), start + 40 * DAY)));
        assert!(new.iter().any(|d| d.id.contains(&"c".repeat(32))));
    }

    #[test]
    fn a_relapse_event_names_the_decision_it_relapsed() {
        let mut c = case("d", "水阳镇", 1_700_000_000_000);
        c.rectified = Some(cases::Rectified { decision_id: "dec-7".into(), decided_at: Timestamp(1_600_000_000_000), action: Some(Action::Stopped), relapsed: true });
        c.relapsed = true;
        let (id, b) = body(Event::CaseRelapsed, &c, &CasesConfig::default(), Tz::default());
        assert_eq!(id, format!("case.relapsed-{}-dec-7", "d".repeat(32)));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["rectified_decision_id"], "dec-7");
        assert!(v["message"].as_str().unwrap().contains("【反弹】") && v["message"].as_str().unwrap().contains("2020-09-13"), "{v}");
        assert_eq!(v["case"]["relapsed"], true);
    }
}
