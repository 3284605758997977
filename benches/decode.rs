//! Decoding throughput: one payment, roster and death record from JSON, and
//! name normalisation.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use paywatch::decode::{decode_json_str, Kind, Limits};
use paywatch::model::name::normalize;

const PAYMENT: &str = r#"{"account_name":"周芳","account_no":"6215015216000000185","amount":"585.00","bank":"宣城农商银行","beneficiary_id":"11010519491231002X","beneficiary_name":"周芳","event_id":"PAY00006886","household_id":"HH0000159","kind":"payment","paid_at":"2018-01-17T12:11:00+08:00","payment_type":"regular","period":"2018-01","program":"rural_dibao","scheduled_at":"2018-01-17","township":"水阳镇"}"#;
const ROSTER: &str = r#"{"beneficiary_id":"11010519491231002X","custodians":[{"account_no":"6217000000000000001","name":"水阳镇敬老院","registered_at":"2016-05-01"}],"enrolled_at":"2016-05-01","household_id":"HH0000159","monthly_amount":"900.00","name":"周芳","program":"tekun","status":"active","status_since":"2016-05-01","township":"水阳镇","updated_at":"2017-12-17T08:00:00+08:00"}"#;
const DEATH: &str = r#"{"date_of_death":"2019-11-02","name":"周芳","person_id":"11010519491231002X","record_id":"DTH0000001","reported_at":"2020-03-01T15:00:00+08:00","source":"funeral_home"}"#;

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    let limits = Limits::default();
    g.bench_function("payment", |b| b.iter(|| decode_json_str(Kind::Payment, black_box(PAYMENT), limits).unwrap()));
    g.bench_function("roster", |b| b.iter(|| decode_json_str(Kind::Roster, black_box(ROSTER), limits).unwrap()));
    g.bench_function("death", |b| b.iter(|| decode_json_str(Kind::Death, black_box(DEATH), limits).unwrap()));
    g.bench_function("bad_payment", |b| {
        b.iter(|| decode_json_str(Kind::Payment, black_box(r#"{"event_id":"E1","amount":"1.001"}"#), limits).unwrap_err())
    });
    g.bench_function("normalize_name", |b| b.iter(|| normalize(black_box("阿依古丽 • 买买提"))));
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
