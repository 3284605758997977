//! Planted cases (each must raise exactly the alerts listed in the truth)
//! and controls (each looks suspicious and must raise nothing).

use super::district::{Builder, Change};
use super::people::variant;
use crate::model::time::{Date, MS_PER_DAY};
use crate::model::decision::{case_id, Action, Outcome};
use crate::model::{Custodian, Money, PaymentType, Period, Program, Rule, Status, Timestamp};
use rand::Rng;

/// A role a household plays in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    NameMismatch,
    CustodianRevoked,
    SharedAccount,
    Frequent,
    LargeRegular,
    LargeBackPay,
    LargeCap,
    Duplicate,
    DelayLow,
    DelayMedium,
    Missed,
    DeathLate,
    DeathKnown,
    CancelledPaid,
    SuspendedPaid,
    NotOnRoster,
    Filed,
    /// A name mismatch rectified on paper: it goes on after the decision.
    Relapse,
    /// Rural dibao and urban dibao for the same month (重复享受).
    ProgramOverlap,
    /// One custodian (with an id_no) registered for four households.
    CustodianOverload,
    /// A custodian who died and was still paid through.
    CustodianDeceased,
    /// A person flagged (grade 1 disability) and never covered (漏保).
    CoverageGap,
    // controls
    Custodian,
    CustodianLater,
    NameVariant,
    BackPay,
    Reversal,
    Redelivered,
    DeathMonth,
    Cancelled,
    Suspended,
    OneOff,
    /// A name mismatch rectified that stays clean.
    RectifiedClean,
    /// A name mismatch decided `false_positive`, with alerts after it.
    FalsePositiveLater,
    /// A name mismatch decided `confirmed`, with alerts after it.
    ConfirmedLater,
    /// A month paid under the wrong programme, returned by the bank, then
    /// paid under the right one: not an overlap.
    ProgramCorrected,
    /// One custodian registered for three households: not above N.
    CustodianThree,
    /// A custodian who died on the day of the last payment through them,
    /// replaced before the next.
    CustodianDeathDay,
    /// Flagged, then enrolled within the grace period.
    VulnerableEnrolled,
    /// Flagged, the household already covered.
    VulnerableHousehold,
    /// Flagged, cleared within the grace period.
    VulnerableCleared,
    /// Not qualifying, or flagged too recently.
    VulnerableOther,
}

impl Role {
    pub const PLANTED: [Role; 22] = [
        Role::NameMismatch,
        Role::CustodianRevoked,
        Role::SharedAccount,
        Role::Frequent,
        Role::LargeRegular,
        Role::LargeBackPay,
        Role::LargeCap,
        Role::Duplicate,
        Role::DelayLow,
        Role::DelayMedium,
        Role::Missed,
        Role::DeathLate,
        Role::DeathKnown,
        Role::CancelledPaid,
        Role::SuspendedPaid,
        Role::NotOnRoster,
        Role::Filed,
        Role::Relapse,
        Role::ProgramOverlap,
        Role::CustodianOverload,
        Role::CustodianDeceased,
        Role::CoverageGap,
    ];
    pub const CONTROLS: [Role; 20] = [
        Role::Custodian,
        Role::CustodianLater,
        Role::NameVariant,
        Role::BackPay,
        Role::Reversal,
        Role::Redelivered,
        Role::DeathMonth,
        Role::Cancelled,
        Role::Suspended,
        Role::OneOff,
        Role::RectifiedClean,
        Role::FalsePositiveLater,
        Role::ConfirmedLater,
        Role::ProgramCorrected,
        Role::CustodianThree,
        Role::CustodianDeathDay,
        Role::VulnerableEnrolled,
        Role::VulnerableHousehold,
        Role::VulnerableCleared,
        Role::VulnerableOther,
    ];
}

pub(super) fn key(rule: Rule, event: &str) -> String {
    format!("{}:{event}", rule.code())
}

/// A name that is not `than`, even after normalisation.
pub(super) fn other_name(bd: &mut Builder, than: &str) -> String {
    loop {
        let n = bd.people.name();
        if !crate::model::name::same(&n, than) {
            return n;
        }
    }
}

fn custodian(bd: &mut Builder, registered_at: Date) -> Custodian {
    let name = bd.people.name();
    Custodian { name, account_no: bd.people.account(), registered_at, revoked_at: None, id_no: None }
}

/// Builds one household playing `role`.
pub fn plant(bd: &mut Builder, role: Role) {
    let town = bd.township();
    let to = bd.to;
    let mut b = bd.bene(town, Program::RuralDibao, None);
    let m = bd.some_month();
    let t = |bd: &Builder, p: Period, day: u32, h: i64| bd.at(Builder::day(p, day), h, 0);
    match role {
        Role::CustodianOverload | Role::CustodianThree | Role::CustodianDeceased | Role::CustodianDeathDay => {
            super::custodians::plant(bd, role, b, m)
        }
        Role::CoverageGap | Role::VulnerableEnrolled | Role::VulnerableHousehold | Role::VulnerableCleared | Role::VulnerableOther => {
            super::vulnerable::plant(bd, role, b, m)
        }
        Role::NameMismatch => {
            let cadre_account = bd.people.account();
            let cadre = other_name(bd, &b.name);
            bd.roster_history(&b, &[]);
            for p in month_range(b.start, to) {
                let mut x = bd.regular(&b, p);
                if p == m || p == m.next() {
                    x.account_no = cadre_account.as_str().into();
                    x.account_name = cadre.as_str().into();
                    let id = bd.push(x);
                    bd.expect(Rule::NameMismatch, key(Rule::NameMismatch, &id), "paid into a non-custodian's account");
                } else {
                    bd.push(x);
                }
            }
        }
        Role::Relapse | Role::RectifiedClean | Role::FalsePositiveLater | Role::ConfirmedLater => {
            // A name mismatch that the township decides on between alerts.
            let account = bd.people.account();
            let holder = other_name(bd, &b.name);
            bd.roster_history(&b, &[]);
            let bad = if role == Role::RectifiedClean { vec![m] } else { vec![m, m.next(), Period(m.0 + 2)] };
            let mut first = None;
            for p in month_range(b.start, to) {
                let mut x = bd.regular(&b, p);
                if bad.contains(&p) {
                    x.account_no = account.as_str().into();
                    x.account_name = holder.as_str().into();
                    first.get_or_insert(x.paid_at);
                    let id = bd.push(x);
                    bd.expect(Rule::NameMismatch, key(Rule::NameMismatch, &id), "paid into a non-custodian's account");
                } else {
                    bd.push(x);
                }
            }
            // Five days after the first mismatched payment, a month before
            // the next one.
            let decided = Timestamp(first.expect("a mismatched month").0 + 5 * MS_PER_DAY);
            let rule = Rule::NameMismatch;
            match role {
                Role::Relapse => {
                    bd.decide(rule, &b.id, Outcome::InProgress, None, Timestamp(decided.0 - 2 * MS_PER_DAY));
                    let d = bd.decide(rule, &b.id, Outcome::Rectified, Some(Action::Corrected), decided);
                    let key = format!("RECTIFICATION_RELAPSE:{}:{d}", case_id(rule, &b.id));
                    bd.expect(Rule::RectificationRelapse, key, "still paid into the same account after it was rectified");
                }
                Role::RectifiedClean => {
                    bd.decide(rule, &b.id, Outcome::Rectified, Some(Action::Recovered), decided);
                    bd.control("rectified and clean since", &b.id);
                }
                Role::FalsePositiveLater => {
                    bd.decide(rule, &b.id, Outcome::FalsePositive, None, decided);
                    bd.control("decided a false positive, alerts after it", &b.id);
                }
                _ => {
                    bd.decide(rule, &b.id, Outcome::Confirmed, None, decided);
                    bd.control("confirmed, alerts after it", &b.id);
                }
            }
        }
        Role::CustodianRevoked => {
            let mut c = custodian(bd, b.enrolled_at);
            c.name = other_name(bd, &b.name);
            b.custodians = vec![c.clone()];
            c.revoked_at = Some(m.first_day());
            let changes = [(t(bd, Period(m.0 - 1), 25, 10), Change::Custodians(vec![c.clone()]))];
            bd.roster_history(&b, &changes);
            for p in month_range(b.start, to) {
                let mut x = bd.regular(&b, p);
                if p <= m.next() {
                    x.account_no = c.account_no.as_str().into();
                    x.account_name = c.name.as_str().into();
                }
                let id = bd.push(x);
                if p == m || p == m.next() {
                    bd.expect(Rule::NameMismatch, key(Rule::NameMismatch, &id), "custodian paid after revocation");
                }
            }
        }
        Role::SharedAccount => {
            let mut host = bd.bene(town, Program::RuralDibao, None);
            host.name = other_name(bd, &b.name);
            host.account_name = host.name.clone();
            bd.roster_history(&host, &[]);
            bd.pay_months(&host, to, &[]);
            bd.roster_history(&b, &[]);
            for p in month_range(b.start, to) {
                let mut x = bd.regular(&b, p);
                if p == m {
                    x.account_no = host.account.as_str().into();
                    x.account_name = host.name.as_str().into();
                    let id = bd.push(x);
                    bd.expect(Rule::NameMismatch, key(Rule::NameMismatch, &id), "paid into another household's card");
                    bd.expect(
                        Rule::SharedAccount,
                        format!("SHARED_ACCOUNT:{}:{id}", host.account),
                        "one card receives two households' money",
                    );
                } else {
                    bd.push(x);
                }
            }
        }
        Role::Frequent => {
            bd.roster_history(&b, &[]);
            let ids = bd.pay_months(&b, to, &[]);
            let relief = Money::parse("500.00").expect("literal");
            for d in 1..=3 {
                let x = bd.extra(&b, m, d, PaymentType::OneOff, Program::TemporaryRelief, relief);
                bd.push(x);
            }
            let _ = ids;
            let crossing = first_crossing(bd, &b.account, 30, 3);
            bd.expect(
                Rule::FrequentPayments,
                format!("FREQUENT_PAYMENTS:{}:{crossing}", b.account),
                "four payments within 30 days into one card",
            );
        }
        Role::LargeRegular | Role::LargeBackPay | Role::LargeCap => {
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[]);
            let monthly = b.amount(m, bd.from);
            let x = match role {
                Role::LargeRegular => {
                    let i = bd.payments.iter().rposition(|x| x.beneficiary_id.as_str() == b.id && x.period == m);
                    let i = i.expect("the month was paid");
                    bd.payments[i].amount = monthly.times(4.into());
                    let id = bd.payments[i].event_id.clone();
                    bd.expect(Rule::LargeAmount, key(Rule::LargeAmount, &id), "regular payment of four months");
                    return;
                }
                Role::LargeBackPay => bd.extra(&b, m, 2, PaymentType::BackPay, b.program, monthly.times(14.into())),
                _ => bd.extra(&b, m, 2, PaymentType::OneOff, Program::TemporaryRelief, Money::parse("25000.00").expect("literal")),
            };
            let id = bd.push(x);
            bd.expect(Rule::LargeAmount, key(Rule::LargeAmount, &id), "amount beyond the limits");
        }
        Role::Duplicate => {
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[]);
            let mut x = bd.regular(&b, m);
            x.paid_at = Timestamp(x.paid_at.0 + 6 * MS_PER_DAY);
            x.scheduled_at = bd.tz.date(x.paid_at);
            let id = bd.push(x);
            bd.expect(Rule::DuplicatePeriod, key(Rule::DuplicatePeriod, &id), "same month paid twice");
        }
        Role::DelayLow | Role::DelayMedium => {
            bd.roster_history(&b, &[]);
            let late = if role == Role::DelayLow { 20 } else { 40 };
            for p in month_range(b.start, to) {
                let mut x = bd.regular(&b, p);
                if p == m {
                    x.scheduled_at = bd.tz.date(x.paid_at).plus_days(-late);
                    let id = bd.push(x);
                    bd.expect(Rule::DisbursementDelay, key(Rule::DisbursementDelay, &id), "paid weeks after schedule");
                } else {
                    bd.push(x);
                }
            }
        }
        Role::Missed => {
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[m]);
            // Months before the feed began are never expected
            // (`rules.missed_payment.feed_start`, 2018-01 by default): a
            // ledger reaching further back leaves the month unpaid only.
            if m >= crate::detect::missed_payment::Config::default().feed_start {
                bd.expect(Rule::MissedPayment, format!("MISSED_PAYMENT:{}:{m}", b.id), "a month never paid");
            }
        }
        Role::DeathLate => {
            let died = Builder::day(m, 3);
            let reported = t(bd, Period(m.0 + 3), 25, 11);
            bd.death(&b, died, reported);
            let cancel = [(Timestamp(reported.0 + 3 * 3_600_000), Change::Status(Status::Cancelled, died.plus_days(1)))];
            bd.roster_history(&b, &cancel);
            let ids = bd.pay_months(&b, Period(m.0 + 3), &[]);
            for id in &ids[ids.len() - 3..] {
                bd.expect(Rule::PaidAfterDeath, key(Rule::PaidAfterDeath, id), "paid for three months after death, reported late");
            }
        }
        Role::DeathKnown => {
            let died = Builder::day(m, 2);
            let reported = t(bd, m.next(), 3, 9);
            bd.death(&b, died, reported);
            let cancel = [(t(bd, m.next(), 25, 10), Change::Status(Status::Cancelled, died.plus_days(1)))];
            bd.roster_history(&b, &cancel);
            let ids = bd.pay_months(&b, m.next(), &[]);
            let id = ids.last().expect("paid").clone();
            bd.expect(Rule::PaidAfterDeath, key(Rule::PaidAfterDeath, &id), "paid after a death already reported");
        }
        Role::CancelledPaid => {
            let changes = [(t(bd, Period(m.0 - 1), 25, 10), Change::Status(Status::Cancelled, m.first_day()))];
            bd.roster_history(&b, &changes);
            let ids = bd.pay_months(&b, m.next(), &[]);
            for id in &ids[ids.len() - 2..] {
                bd.expect(Rule::InactiveBeneficiary, key(Rule::InactiveBeneficiary, id), "paid after cancellation");
            }
        }
        Role::SuspendedPaid => {
            let changes = [
                (t(bd, Period(m.0 - 1), 25, 10), Change::Status(Status::Suspended, m.first_day())),
                (t(bd, m.next(), 25, 10), Change::Status(Status::Active, Period(m.0 + 2).first_day())),
            ];
            bd.roster_history(&b, &changes);
            let ids = bd.pay_months(&b, to, &[m.next()]);
            let i = (m.0 - b.start.0) as usize;
            bd.expect(Rule::InactiveBeneficiary, key(Rule::InactiveBeneficiary, &ids[i]), "paid while suspended");
        }
        Role::NotOnRoster => {
            for p in [m, m.next()] {
                let x = bd.regular(&b, p);
                let id = bd.push(x);
                bd.expect(Rule::InactiveBeneficiary, key(Rule::InactiveBeneficiary, &id), "paid to someone not on the roster");
            }
        }
        Role::Filed => {
            b.filed = true;
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[]);
            let mut years: Vec<i32> = bd
                .payments
                .iter()
                .filter(|x| x.beneficiary_id.as_str() == b.id)
                .map(|x| bd.tz.date(x.paid_at).year())
                .collect();
            years.dedup();
            for y in years {
                bd.expect(Rule::FiledRelativeReview, format!("FILED_RELATIVE_REVIEW:{}:{y}", b.id), "filed relative of a cadre");
            }
        }
        Role::Custodian => {
            let c = custodian(bd, b.enrolled_at);
            b.account = c.account_no.clone();
            b.account_name = c.name.clone();
            b.custodians = vec![c];
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[]);
            bd.control("registered custodian receives the money", &b.id);
        }
        Role::CustodianLater => {
            let written = t(bd, Period(m.0 - 1), 25, 10);
            let c = custodian(bd, bd.tz.date(written));
            bd.roster_history(&b, &[(written, Change::Custodians(vec![c.clone()]))]);
            for p in month_range(b.start, to) {
                let mut x = bd.regular(&b, p);
                if p >= m {
                    x.account_no = c.account_no.as_str().into();
                    x.account_name = variant(&c.name, p.0 as usize).into();
                }
                bd.push(x);
            }
            bd.control("custodian registered mid-ledger, name written with spaces", &b.id);
        }
        Role::NameVariant => {
            b.name = if bd.rng().gen_ratio(1, 3) {
                super::people::latin_name(bd.rng())
            } else {
                bd.people.minority_name()
            };
            b.account_name = variant(&b.name, bd.rng().gen_range(0..4));
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[]);
            bd.control("account name differs only in spacing, separators or full-width letters", &b.id);
        }
        Role::BackPay => {
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[]);
            let x = bd.extra(&b, m, 3, PaymentType::BackPay, b.program, b.amount(m, bd.from).times(3.into()));
            bd.push(x);
            bd.control("back pay of three months, within the limit", &b.id);
        }
        Role::Reversal => {
            bd.roster_history(&b, &[]);
            for p in month_range(b.start, to) {
                let x = bd.regular(&b, p);
                if p == m {
                    let r = bd.reversal(&x, 2);
                    let mut again = bd.regular(&b, p);
                    again.paid_at = Timestamp(x.paid_at.0 + 5 * MS_PER_DAY);
                    again.scheduled_at = bd.tz.date(again.paid_at);
                    bd.push(x);
                    bd.push(r);
                    bd.push(again);
                } else {
                    bd.push(x);
                }
            }
            bd.control("payment reversed by the bank, then paid again", &b.id);
        }
        Role::Redelivered => {
            bd.roster_history(&b, &[]);
            let ids = bd.pay_months(&b, to, &[]);
            bd.redeliver.push(ids[(m.0 - b.start.0) as usize].clone());
            bd.redeliver.push(ids[(m.0 - b.start.0 + 1) as usize].clone());
            bd.control("the same payment event delivered twice", &b.id);
        }
        Role::DeathMonth => {
            let died = Builder::day(m, b.pay_day - 2);
            let after = bd.people.rng.gen_range(1..10);
            let reported = bd.at(died.plus_days(after), 15, 0);
            bd.death(&b, died, reported);
            bd.roster_history(&b, &[(Timestamp(reported.0 + 3_600_000), Change::Status(Status::Cancelled, died.plus_days(1)))]);
            bd.pay_months(&b, m, &[]);
            bd.control("paid for the month of death, after the death, then stopped", &b.id);
        }
        Role::Cancelled => {
            bd.roster_history(&b, &[(t(bd, Period(m.0 - 1), 25, 10), Change::Status(Status::Cancelled, m.first_day()))]);
            bd.pay_months(&b, Period(m.0 - 1), &[]);
            bd.control("cancelled, payments stopped", &b.id);
        }
        Role::Suspended => {
            let changes = [
                (t(bd, Period(m.0 - 1), 25, 10), Change::Status(Status::Suspended, m.first_day())),
                (t(bd, m.next(), 25, 10), Change::Status(Status::Active, Period(m.0 + 2).first_day())),
            ];
            bd.roster_history(&b, &changes);
            bd.pay_months(&b, to, &[m, m.next()]);
            bd.control("suspended for two months and reactivated", &b.id);
        }
        Role::ProgramOverlap => {
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[]);
            let x = bd.extra(&b, m, 6, PaymentType::Regular, Program::UrbanDibao, b.amount(m, bd.from));
            let id = bd.push(x);
            bd.expect(Rule::ProgramOverlap, key(Rule::ProgramOverlap, &id), "paid as rural and as urban dibao for one month");
        }
        Role::ProgramCorrected => {
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[m]);
            let mut wrong = bd.regular(&b, m);
            wrong.program = Program::UrbanDibao;
            let back = bd.reversal(&wrong, 3);
            let right = bd.extra(&b, m, 5, PaymentType::Regular, Program::RuralDibao, b.amount(m, bd.from));
            bd.push(wrong);
            bd.push(back);
            bd.push(right);
            bd.control("paid under the wrong programme, returned, paid again", &b.id);
        }
        Role::OneOff => {
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, to, &[]);
            let x = bd.extra(&b, m, 4, PaymentType::OneOff, Program::TemporaryRelief, Money::parse("1200.00").expect("literal"));
            bd.push(x);
            bd.control("temporary relief within the cap", &b.id);
        }
    }
}

/// The nursing home (敬老院) of a township holding the cards of several
/// 特困 residents, each its own household, all registered custodians.
pub fn nursing_home(bd: &mut Builder, town: &'static str, residents: usize) {
    let account = bd.people.account();
    let name = format!("{town}敬老院");
    for _ in 0..residents {
        let mut b = bd.bene(town, Program::Tekun, None);
        b.custodians = vec![Custodian {
            name: name.clone(),
            account_no: account.clone(),
            registered_at: b.enrolled_at,
            revoked_at: None,
            id_no: None,
        }];
        b.account = account.clone();
        b.account_name = name.clone();
        b.pay_day = 8;
        bd.roster_history(&b, &[]);
        bd.pay_months(&b, bd.to, &[]);
    }
    bd.control("nursing home holds several residents' cards", &account);
}

/// An ordinary household: one or two beneficiaries, some enrolled during
/// the ledger, each paid every month.
pub fn ordinary(bd: &mut Builder) {
    let town = bd.township();
    let program = match bd.rng().gen_range(0..100) {
        0..=64 => Program::RuralDibao,
        65..=84 => Program::UrbanDibao,
        _ => Program::Tekun,
    };
    let span = bd.to.0 - bd.from.0;
    let enroll = bd.rng().gen_ratio(15, 100).then(|| Period(bd.from.0 + bd.rng().gen_range(1..span)));
    let b = bd.bene(town, program, enroll);
    bd.roster_history(&b, &[]);
    bd.pay_months(&b, bd.to, &[]);
    if bd.rng().gen_ratio(1, 10) {
        let mut spouse = bd.bene(town, program, enroll);
        spouse.household = b.household.clone();
        bd.roster_history(&spouse, &[]);
        bd.pay_months(&spouse, bd.to, &[]);
    }
}

pub(super) fn month_range(from: Period, to: Period) -> impl Iterator<Item = Period> {
    (from.0..=to.0).map(Period)
}

/// The payment that first takes `account` above `limit` payments within
/// `days` days.
fn first_crossing(bd: &Builder, account: &str, days: i64, limit: usize) -> String {
    let mut ps: Vec<(Timestamp, &str)> =
        bd.payments.iter().filter(|p| p.account_no == account).map(|p| (p.paid_at, p.event_id.as_str())).collect();
    ps.sort();
    for (i, (t, id)) in ps.iter().enumerate() {
        let n = ps[..=i].iter().filter(|(u, _)| u.0 > t.0 - days * MS_PER_DAY).count();
        if n > limit {
            return (*id).to_owned();
        }
    }
    String::new()
}
