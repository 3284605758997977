//! The three input record kinds (feed-v1 §1–3), validated.

use super::time::{Date, Period, Timestamp};
use super::{Money, PersonId};
use super::Text;
use serde::{Deserialize, Serialize};

/// Benefit programmes. The first three are paid monthly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    RuralDibao,
    UrbanDibao,
    Tekun,
    TemporaryRelief,
}

impl Program {
    pub const ALL: [Program; 4] =
        [Program::RuralDibao, Program::UrbanDibao, Program::Tekun, Program::TemporaryRelief];

    pub fn code(self) -> &'static str {
        match self {
            Program::RuralDibao => "rural_dibao",
            Program::UrbanDibao => "urban_dibao",
            Program::Tekun => "tekun",
            Program::TemporaryRelief => "temporary_relief",
        }
    }

    pub fn from_code(s: &str) -> Option<Program> {
        Program::ALL.into_iter().find(|p| p.code() == s)
    }

    /// Monthly programmes are the ones `MISSED_PAYMENT` expects every month.
    pub fn is_monthly(self) -> bool {
        !matches!(self, Program::TemporaryRelief)
    }

    /// The programme's name on a supervisor's form.
    pub fn chinese(self) -> &'static str {
        match self {
            Program::RuralDibao => "农村低保",
            Program::UrbanDibao => "城市低保",
            Program::Tekun => "特困供养",
            Program::TemporaryRelief => "临时救助",
        }
    }

    /// The money's name: 低保金, 特困供养金, 临时救助金.
    pub fn money_chinese(self) -> &'static str {
        match self {
            Program::RuralDibao | Program::UrbanDibao => "低保金",
            Program::Tekun => "特困供养金",
            Program::TemporaryRelief => "临时救助金",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    Payment,
    Reversal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentType {
    Regular,
    BackPay,
    OneOff,
}

impl PaymentType {
    pub fn from_code(s: &str) -> Option<PaymentType> {
        match s {
            "regular" => Some(PaymentType::Regular),
            "back_pay" => Some(PaymentType::BackPay),
            "one_off" => Some(PaymentType::OneOff),
            _ => None,
        }
    }

    pub fn chinese(self) -> &'static str {
        match self {
            PaymentType::Regular => "常规发放",
            PaymentType::BackPay => "补发",
            PaymentType::OneOff => "一次性发放",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Suspended,
    Cancelled,
}

impl Status {
    pub fn from_code(s: &str) -> Option<Status> {
        match s {
            "active" => Some(Status::Active),
            "suspended" => Some(Status::Suspended),
            "cancelled" => Some(Status::Cancelled),
            _ => None,
        }
    }

    pub fn chinese(self) -> &'static str {
        match self {
            Status::Active => "在保",
            Status::Suspended => "暂停",
            Status::Cancelled => "注销",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeathSource {
    FuneralHome,
    Hospital,
    Police,
    Village,
}

impl DeathSource {
    pub fn from_code(s: &str) -> Option<DeathSource> {
        match s {
            "funeral_home" => Some(DeathSource::FuneralHome),
            "hospital" => Some(DeathSource::Hospital),
            "police" => Some(DeathSource::Police),
            "village" => Some(DeathSource::Village),
            _ => None,
        }
    }
}

/// One disbursement (or its reversal), feed-v1 §1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// Identifies the disbursement: a second delivery of it is a redelivery.
    pub event_id: Text,
    /// A reversal is money the bank returned; it cancels `reverses`.
    pub kind: PaymentKind,
    /// `event_id` of the payment a reversal cancels; `None` for payments.
    pub reverses: Option<Text>,
    /// Whose benefit this is: the key of all beneficiary state.
    pub beneficiary_id: PersonId,
    /// Compared with `account_name` for `NAME_MISMATCH`.
    pub beneficiary_name: Text,
    /// Benefits are granted per household: `SHARED_ACCOUNT` counts these.
    pub household_id: Text,
    /// Routes the alert to the township's supervisor.
    pub township: Text,
    /// `DUPLICATE_PERIOD` is per programme; the alert names it.
    pub program: Program,
    /// The benefit month this money is for.
    pub period: Period,
    /// CNY, never a float.
    pub amount: Money,
    /// Regular, back pay (补发) or one-off: each has its own limits.
    pub payment_type: PaymentType,
    /// The receiving card or passbook: the key of account state.
    pub account_no: Text,
    /// The holder as the bank has it.
    pub account_name: Text,
    /// Optional in the contract; kept for the supervisor.
    pub bank: Option<Text>,
    /// The approved day: `DISBURSEMENT_DELAY` measures from it.
    pub scheduled_at: Date,
    /// When the bank executed it: the event time.
    pub paid_at: Timestamp,
}

/// A registered card/passbook custodian (卡折委托代管).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Custodian {
    /// Must match the receiving account's holder (normalised).
    pub name: String,
    /// Must match the receiving account.
    pub account_no: String,
    /// First day the registration holds.
    pub registered_at: Date,
    /// The registration no longer holds on and after this day.
    pub revoked_at: Option<Date>,
    /// v1.1: the custodian's own identity number, when registered with
    /// one: `CUSTODIAN_OVERLOAD` counts by it, `CUSTODIAN_DECEASED` looks
    /// for its death. Last, because state v3 stored custodians without it.
    pub id_no: Option<PersonId>,
}

impl Custodian {
    /// Valid on `day`: registered on or before it and not yet revoked.
    pub fn valid_on(&self, day: Date) -> bool {
        self.registered_at <= day && self.revoked_at.is_none_or(|r| day < r)
    }
}

/// One roster version, feed-v1 §2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RosterRecord {
    /// Whose entry this is.
    pub beneficiary_id: PersonId,
    /// Named in `MISSED_PAYMENT` and review alerts.
    pub name: String,
    /// Routes `MISSED_PAYMENT` alerts with the household.
    pub household_id: String,
    /// Routes `MISSED_PAYMENT` alerts to the township.
    pub township: String,
    /// Only monthly programmes are expected every month.
    pub program: Program,
    /// Suspended or cancelled cases must not be paid from `status_since`.
    pub status: Status,
    /// Payments are expected from this month on.
    pub enrolled_at: Date,
    /// The day the status took effect.
    pub status_since: Date,
    /// The approved benefit: `LARGE_AMOUNT` multiplies it.
    pub monthly_amount: Money,
    /// 备案: a relative of cadres or staff, reviewed once a year.
    pub filed_relative: bool,
    /// Registered card custodians (卡折委托代管), who are not flagged.
    pub custodians: Vec<Custodian>,
    /// When this version was written: the event time, and which version
    /// applies to a payment.
    pub updated_at: Timestamp,
}

/// A death notification, feed-v1 §3.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeathRecord {
    /// Identifies the notification: quoted in evidence, and a second
    /// delivery of it is ignored.
    pub record_id: String,
    /// Matched against `beneficiary_id`.
    pub person_id: PersonId,
    /// As the funeral home or hospital wrote it.
    pub name: String,
    /// Payments for later months are improper.
    pub date_of_death: Date,
    /// Who reported it (funeral home, hospital, police, village).
    pub source: DeathSource,
    /// When it was reported (often months late): the event time.
    pub reported_at: Timestamp,
}

/// Any input record, in the order the engine applies equal event times:
/// roster first (a roster record updated at `paid_at` applies to that
/// payment, §6), then deaths, then payments, then reversals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Roster(RosterRecord),
    Death(DeathRecord),
    Payment(Payment),
    /// A decision on a case (§8 v1.1).
    Decision(super::decision::Decision),
    /// A vulnerable person flagged by another department (§10 v1.1).
    Vulnerable(super::vulnerable::VulnerableRecord),
}

impl Record {
    /// The Kafka key the contract gives this record: `beneficiary_id` for
    /// payments and roster records, `person_id` for deaths and vulnerable
    /// persons, `case_id` for decisions. Records keyed otherwise may put one
    /// person on several partitions, which a partitioned engine cannot
    /// allow.
    /// Returned with the field's name, for messages.
    pub fn contract_key(&self) -> (&'static str, &str) {
        match self {
            Record::Roster(r) => ("beneficiary_id", r.beneficiary_id.as_str()),
            Record::Death(d) => ("person_id", d.person_id.as_str()),
            Record::Payment(p) => ("beneficiary_id", p.beneficiary_id.as_str()),
            Record::Decision(d) => ("case_id", &d.case_id),
            Record::Vulnerable(v) => ("person_id", v.person_id.as_str()),
        }
    }

    pub fn event_time(&self) -> Timestamp {
        match self {
            Record::Roster(r) => r.updated_at,
            Record::Death(d) => d.reported_at,
            Record::Payment(p) => p.paid_at,
            Record::Decision(d) => d.decided_at,
            Record::Vulnerable(v) => v.updated_at,
        }
    }

    /// Tie-break rank among records with the same event time (§6): roster,
    /// deaths, vulnerable persons, decisions, payments (reversals after
    /// payments).
    pub fn rank(&self) -> u8 {
        match self {
            Record::Roster(_) => 0,
            Record::Death(_) => 1,
            Record::Vulnerable(_) => RANK_VULNERABLE,
            Record::Decision(_) => RANK_DECISION,
            Record::Payment(p) if p.kind == PaymentKind::Payment => RANK_PAYMENT,
            Record::Payment(_) => RANK_PAYMENT + 1,
        }
    }
}

/// The rank of a vulnerable-persons record: after deaths, before decisions.
pub const RANK_VULNERABLE: u8 = 2;
/// The rank of a decision: after deaths and vulnerable persons (2).
pub const RANK_DECISION: u8 = 3;
/// The rank of a payment (a reversal's is one more). State layout v2 had
/// 2; its positions are moved on upgrade (`store::migrate`).
pub const RANK_PAYMENT: u8 = 4;

/// A record's place in the merged input (§6): event time, then the kind's
/// rank, then the source file and the line in it. Total and deterministic,
/// so a replay applies records in exactly the same order every time, and
/// "the last key applied" is a resumable input position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SortKey {
    /// Event time: the first order.
    pub time: Timestamp,
    /// Kind at equal times (`Record::rank`).
    pub rank: u8,
    /// Which input file (roster 0, deaths 1, payments 2).
    pub source: u8,
    /// Line in that file: the last tie-break, and what dead letters quote.
    pub line: u64,
}
