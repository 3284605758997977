//! Each rule's cost on one payment (payment-level rules), one account step
//! (account-level rules) and one month decision (`MISSED_PAYMENT`).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use paywatch::decode::{decode_json_str, Kind, Limits};
use paywatch::detect::episode::{AccountWindow, Change, WindowEntry};
use paywatch::detect::registry::{Hook, RULES};
use paywatch::detect::{self, PaymentView, RulesConfig, NO_YEARS};
use paywatch::engine::state::StoredPayment;
use paywatch::model::time::MS_PER_DAY;
use paywatch::model::{DeathRecord, Money, Payment, Period, Record, RosterRecord, Timestamp, Tz};

const PAYMENT: &str = r#"{"account_name":"李四","account_no":"6215015216000000185","amount":"5850.00","beneficiary_id":"11010519491231002X","beneficiary_name":"周芳","event_id":"PAY00006886","household_id":"HH0000159","paid_at":"2020-03-17T12:11:00+08:00","period":"2020-03","program":"rural_dibao","scheduled_at":"2020-02-01","township":"水阳镇"}"#;
const ROSTER: &str = r#"{"beneficiary_id":"11010519491231002X","enrolled_at":"2016-05-01","household_id":"HH0000159","monthly_amount":"585.00","name":"周芳","program":"rural_dibao","status":"cancelled","status_since":"2020-01-01","filed_relative":true,"township":"水阳镇","updated_at":"2019-12-17T08:00:00+08:00"}"#;
const DEATH: &str = r#"{"date_of_death":"2019-11-02","name":"周芳","person_id":"11010519491231002X","record_id":"DTH0000001","reported_at":"2020-03-01T15:00:00+08:00","source":"funeral_home"}"#;

fn fixtures() -> (Payment, RosterRecord, DeathRecord) {
    let l = Limits::default();
    let Ok(Record::Payment(p)) = decode_json_str(Kind::Payment, PAYMENT, l) else { panic!() };
    let Ok(Record::Roster(r)) = decode_json_str(Kind::Roster, ROSTER, l) else { panic!() };
    let Ok(Record::Death(d)) = decode_json_str(Kind::Death, DEATH, l) else { panic!() };
    (p, r, d)
}

fn payment_rules(c: &mut Criterion) {
    let (p, r, d) = fixtures();
    let tz = Tz::default();
    // One earlier payment in the same month, so DUPLICATE_PERIOD fires.
    let mut first = p.clone();
    first.event_id = "PAY1".into();
    let month = [StoredPayment { payment: first, reversed_by: None }];
    let v = PaymentView {
        payment: &p,
        roster: Some(&r),
        death: Some(&d),
        custodian: None,
        custodian_death: None,
        paid_on: tz.date(p.paid_at),
        tz,
        month: &month,
        reviewed_years: &NO_YEARS,
    };
    let cfg = RulesConfig::default();
    let mut g = c.benchmark_group("rule");
    // Every payment-level rule of the registry, as the engine calls it.
    for rule in &RULES {
        if let Hook::Payment(check) = rule.hook {
            g.bench_function(rule.code, |b| {
                b.iter(|| {
                    let mut out = Vec::new();
                    check(&cfg, black_box(&v), &mut out);
                    out
                })
            });
        }
    }
    let roster = [r.clone()];
    let deaths = [d.clone()];
    let as_of = Timestamp(p.paid_at.0 + 90 * MS_PER_DAY);
    g.bench_function("MISSED_PAYMENT", |b| {
        b.iter(|| detect::missed_payment::due(&cfg.missed_payment, black_box(Period::new(2019, 10)), &roster, &deaths, as_of))
    });
    g.finish();
}

fn account_rules(c: &mut Criterion) {
    let cfg = RulesConfig::default();
    let entry = |i: i64, household: &str| WindowEntry {
        event_id: format!("E{i}").into(),
        paid_at: Timestamp(i * 30 * MS_PER_DAY),
        household_id: household.into(),
        amount: Money::parse("585.00").unwrap(),
        exempt: false,
        reversed: false,
    };
    // A year of monthly payments into one card, then one more: the common case.
    let on = paywatch::detect::episode::WindowRules::of(&cfg);
    let mut w = AccountWindow::default();
    for i in 0..12 {
        w.step(&cfg, &on, "6215015216000000185", "水阳镇", Timestamp(i * 30 * MS_PER_DAY), 0, Change::Add(entry(i, "H1")));
    }
    let mut g = c.benchmark_group("rule");
    g.bench_function("SHARED_ACCOUNT+FREQUENT_PAYMENTS step", |b| {
        b.iter_batched(
            || (w.clone(), entry(12, "H2")),
            |(mut w, e)| w.step(&cfg, &on, "6215015216000000185", "水阳镇", e.paid_at, 0, Change::Add(e)),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, payment_rules, account_rules);
criterion_main!(benches);
