//! The background district: households, roster histories with yearly
//! raises, and a regular payment every month — built to raise no alert, so
//! that every alert on a generated ledger is one that was planted.

use super::people::{People, TOWNSHIPS};
use super::truth::{Control, Expected, Truth};
use crate::model::time::{Date, Tz, MS_PER_DAY};
use crate::model::{
    Custodian, DeathRecord, DeathSource, Money, Payment, PaymentKind, PaymentType, PersonId, Period, Program,
    RosterRecord, Rule, Status, Timestamp,
};
use crate::model::decision::{case_id, Action, Decision, Outcome};
use rand::Rng;

/// One beneficiary and how they are paid.
#[derive(Clone, Debug)]
pub struct Bene {
    pub id: String,
    pub name: String,
    pub household: String,
    pub township: &'static str,
    pub program: Program,
    /// Monthly amount in the first year, in fen.
    pub base_fen: i64,
    /// Raise every January, in fen.
    pub raise_fen: i64,
    pub enrolled_at: Date,
    /// When the first roster record was written.
    pub enrolled_update: Timestamp,
    /// First month paid.
    pub start: Period,
    pub account: String,
    pub account_name: String,
    pub bank: &'static str,
    /// Day of the month payments are made (5–20).
    pub pay_day: u32,
    pub filed: bool,
    pub custodians: Vec<Custodian>,
}

impl Bene {
    pub fn amount(&self, p: Period, from: Period) -> Money {
        Money::from_fen(self.base_fen + self.raise_fen * i64::from((p.year() - from.year()).max(0)))
    }
}

/// A change to a beneficiary's roster entry, written as a new record.
#[derive(Clone, Debug)]
pub enum Change {
    Status(Status, Date),
    Custodians(Vec<Custodian>),
}

/// Everything generated so far.
pub struct Builder {
    pub people: People,
    pub tz: Tz,
    pub from: Period,
    pub to: Period,
    pub roster: Vec<RosterRecord>,
    pub deaths: Vec<DeathRecord>,
    pub payments: Vec<Payment>,
    /// Supervisors' decisions on planted cases (the rectification ledger).
    pub decisions: Vec<Decision>,
    /// Vulnerable persons of other departments (§10).
    pub vulnerable: Vec<crate::model::VulnerableRecord>,
    /// Payments written twice (redelivery controls), by event id.
    pub redeliver: Vec<String>,
    pub truth: Truth,
    seq: u64,
    households: u64,
}

impl Builder {
    pub fn new(people: People, from: Period, to: Period) -> Builder {
        Builder {
            people,
            tz: Tz::default(),
            from,
            to,
            roster: Vec::new(),
            deaths: Vec::new(),
            payments: Vec::new(),
            decisions: Vec::new(),
            vulnerable: Vec::new(),
            redeliver: Vec::new(),
            truth: Truth::default(),
            seq: 0,
            households: 0,
        }
    }

    pub fn rng(&mut self) -> &mut rand_chacha::ChaCha8Rng {
        &mut self.people.rng
    }

    pub fn household(&mut self) -> String {
        self.households += 1;
        format!("HH{:07}", self.households)
    }

    pub fn at(&self, d: Date, hour: i64, minute: i64) -> Timestamp {
        Timestamp(self.tz.day_start(d).0 + (hour * 60 + minute) * 60_000)
    }

    pub fn day(p: Period, d: u32) -> Date {
        Date::from_ymd(p.year(), p.month(), d)
    }

    /// A beneficiary enrolled before the ledger starts (or in `enroll`).
    pub fn bene(&mut self, township: &'static str, program: Program, enroll: Option<Period>) -> Bene {
        let id = self.people.id();
        let minority = self.rng().gen_ratio(1, 25);
        let name = if minority { self.people.minority_name() } else { self.people.name() };
        let household = self.household();
        let (base_fen, raise_fen) = match program {
            Program::RuralDibao => (58_500, 3_000),
            Program::UrbanDibao => (75_500, 4_000),
            Program::Tekun => (90_000, 5_000),
            Program::TemporaryRelief => (30_000, 0),
        };
        let (enrolled_at, enrolled_update, start) = match enroll {
            Some(e) => {
                let d = Builder::day(e, self.rng().gen_range(1..=4));
                (d, self.at(d, 8, 0), e)
            }
            None => {
                let last_year = self.from.year();
                let y = self.rng().gen_range(last_year - 6..last_year);
                let d = Date::from_ymd(y, self.rng().gen_range(1..=12), self.rng().gen_range(1..=28));
                let written = self.from.first_day().plus_days(-self.rng().gen_range(5..20));
                (d, self.at(written, 8, 0), self.from)
            }
        };
        let account = self.people.account();
        let bank = self.people.bank();
        let pay_day = self.rng().gen_range(5..=20);
        Bene {
            id,
            account_name: name.clone(),
            name,
            household,
            township,
            program,
            base_fen,
            raise_fen,
            enrolled_at,
            enrolled_update,
            start,
            account,
            bank,
            pay_day,
            filed: false,
            custodians: Vec::new(),
        }
    }

    pub fn township(&mut self) -> &'static str {
        TOWNSHIPS[self.rng().gen_range(0..TOWNSHIPS.len())]
    }

    /// Writes the roster history: enrolment, a raise record every December
    /// for the new year, and the given changes, each record carrying the
    /// whole entry as it then stands.
    pub fn roster_history(&mut self, b: &Bene, changes: &[(Timestamp, Change)]) {
        let mut events: Vec<(Timestamp, Option<Change>)> = changes.iter().map(|(t, c)| (*t, Some(c.clone()))).collect();
        let mut y = b.start.year() + 1;
        while y <= self.to.year() {
            let dec28 = Date::from_ymd(y - 1, 12, 28);
            events.push((self.at(dec28, 10, 0), None));
            y += 1;
        }
        events.sort_by_key(|(t, _)| *t);
        let mut status = (Status::Active, b.enrolled_at);
        let mut custodians = b.custodians.clone();
        let record = |at: Timestamp, status: (Status, Date), amount: Money, custodians: &Vec<Custodian>| RosterRecord {
            beneficiary_id: PersonId::parse(&b.id).expect("generated ids are valid"),
            name: b.name.clone(),
            household_id: b.household.clone(),
            township: b.township.to_owned(),
            program: b.program,
            status: status.0,
            enrolled_at: b.enrolled_at,
            status_since: status.1,
            monthly_amount: amount,
            filed_relative: b.filed,
            custodians: custodians.clone(),
            updated_at: at,
        };
        let first = record(b.enrolled_update, status, b.amount(b.start, self.from), &custodians);
        self.roster.push(first);
        for (at, change) in events {
            if at <= b.enrolled_update {
                continue;
            }
            let month = Period::of(self.tz.date(at));
            match change {
                None if status.0 == Status::Cancelled => continue,
                None => {
                    let jan = Period::new(month.year() + 1, 1);
                    if status.0 == Status::Active {
                        status = (Status::Active, jan.first_day());
                    }
                    let r = record(at, status, b.amount(jan, self.from), &custodians);
                    self.roster.push(r);
                }
                Some(Change::Status(s, since)) => {
                    status = (s, since);
                    let r = record(at, status, b.amount(Period::of(since).max(b.start), self.from), &custodians);
                    self.roster.push(r);
                }
                Some(Change::Custodians(c)) => {
                    custodians = c;
                    let r = record(at, status, b.amount(month.max(b.start), self.from), &custodians);
                    self.roster.push(r);
                }
            }
        }
    }

    fn next_event(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}{:08}", self.seq)
    }

    /// The regular payment of month `p`, to the beneficiary's own account,
    /// not yet recorded.
    pub fn regular(&mut self, b: &Bene, p: Period) -> Payment {
        let paid_on = Builder::day(p, b.pay_day);
        let minute = self.rng().gen_range(0..480);
        let lead = self.rng().gen_range(0..=3);
        Payment {
            event_id: self.next_event("PAY").into(),
            kind: PaymentKind::Payment,
            reverses: None,
            beneficiary_id: PersonId::parse(&b.id).expect("generated ids are valid"),
            beneficiary_name: b.name.as_str().into(),
            household_id: b.household.as_str().into(),
            township: b.township.into(),
            program: b.program,
            period: p,
            amount: b.amount(p, self.from),
            payment_type: PaymentType::Regular,
            account_no: b.account.as_str().into(),
            account_name: b.account_name.as_str().into(),
            bank: Some(b.bank.into()),
            scheduled_at: paid_on.plus_days(-lead),
            paid_at: self.at(paid_on, 9, minute),
        }
    }

    /// Records a payment; returns its event id.
    pub fn push(&mut self, p: Payment) -> String {
        let id = p.event_id.to_string();
        self.payments.push(p);
        id
    }

    /// An extra payment of another type, `days` after the month's pay day.
    pub fn extra(&mut self, b: &Bene, p: Period, days: i64, ty: PaymentType, program: Program, amount: Money) -> Payment {
        let mut x = self.regular(b, p);
        x.payment_type = ty;
        x.program = program;
        x.amount = amount;
        x.paid_at = Timestamp(x.paid_at.0 + days * MS_PER_DAY);
        x.scheduled_at = self.tz.date(x.paid_at);
        x
    }

    /// A reversal of `of`, `days` after it was paid.
    pub fn reversal(&mut self, of: &Payment, days: i64) -> Payment {
        let mut r = of.clone();
        r.event_id = self.next_event("REV").into();
        r.kind = PaymentKind::Reversal;
        r.reverses = Some(of.event_id.clone());
        r.paid_at = Timestamp(of.paid_at.0 + days * MS_PER_DAY);
        r.scheduled_at = self.tz.date(r.paid_at);
        r
    }

    /// Regular payments for every month from `b.start` to `last`, except
    /// `skip`; returns their event ids.
    pub fn pay_months(&mut self, b: &Bene, last: Period, skip: &[Period]) -> Vec<String> {
        let mut ids = Vec::new();
        let mut p = b.start;
        while p <= last {
            if !skip.contains(&p) {
                let x = self.regular(b, p);
                ids.push(self.push(x));
            }
            p = p.next();
        }
        ids
    }

    pub fn death(&mut self, b: &Bene, died: Date, reported: Timestamp) -> String {
        self.death_of(&b.id.clone(), &b.name.clone(), died, reported)
    }

    /// The death record of anyone (a custodian, say).
    pub fn death_of(&mut self, id: &str, name: &str, died: Date, reported: Timestamp) -> String {
        let record_id = format!("DTH{:07}", self.deaths.len() + 1);
        let source = [DeathSource::FuneralHome, DeathSource::Hospital, DeathSource::Village][self.deaths.len() % 3];
        self.deaths.push(DeathRecord {
            record_id: record_id.clone(),
            person_id: PersonId::parse(id).expect("generated ids are valid"),
            name: name.to_owned(),
            date_of_death: died,
            source,
            reported_at: reported,
        });
        record_id
    }

    /// Records a supervisor's decision on the case of `rule` on `subject`;
    /// returns its id.
    pub fn decide(&mut self, rule: Rule, subject: &str, outcome: Outcome, action: Option<Action>, at: Timestamp) -> String {
        let n = self.decisions.len() + 1;
        let decision_id = format!("DEC{n:07}");
        let rectified = outcome == Outcome::Rectified;
        self.decisions.push(Decision {
            decision_id: decision_id.clone(),
            case_id: case_id(rule, subject),
            rule,
            subject: subject.to_owned(),
            outcome,
            action,
            amount_recovered: (action == Some(Action::Recovered)).then(|| Money::from_fen(58_500)),
            document_no: rectified.then(|| format!("民整〔{}〕{n}号", self.tz.date(at).year())),
            clue_no: None,
            note: Some(format!("{}：{}", outcome.chinese(), action.map_or("复核", |a| a.chinese()))),
            decided_by: "乡镇民政办".into(),
            decided_at: at,
        });
        decision_id
    }

    pub fn expect(&mut self, rule: Rule, key: String, case: &str) {
        self.truth.expected.push(Expected { rule, key, case: case.to_owned() });
    }

    pub fn control(&mut self, case: &str, subject: &str) {
        self.truth.controls.push(Control { case: case.to_owned(), subject: subject.to_owned() });
    }

    /// A month for a planted case, well inside the ledger.
    pub fn some_month(&mut self) -> Period {
        let span = self.to.0 - self.from.0;
        Period(self.from.0 + self.rng().gen_range(3..span - 4))
    }
}
