//! The one place that knows the rules: a const table of plain descriptors.
//!
//! Everything that lists rules reads this table: [`Rule::ALL`], a rule's
//! code and Chinese name, which config section holds its settings and
//! whether it is on, the engine's payment-level dispatch, the audit summary,
//! the metrics, `GET /api/v1/rules` (and so the review page), and the rules
//! table in the README and `docs/contract.md` ([`markdown_table`], held equal
//! by a test). Adding a payment-level rule is its file in `detect/`, its
//! variant in [`Rule`], one line here, and its `[rules.<section>]` defaults.

use super::{
    custodian_deceased, disbursement_delay, frequent_payments, shared_account, duplicate_period, filed_relative_review, inactive_beneficiary, large_amount, name_mismatch,
    paid_after_death, program_overlap, Finding, PaymentView, RulesConfig,
};
use crate::model::{Alert, Rule};
use serde::Serialize;

/// What a rule's alerts are about: the subject its cases group by (contract
/// §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// `beneficiary_id`.
    Beneficiary,
    /// `account_no`.
    Account,
    /// The custodian's `id_no`.
    Custodian,
    /// A vulnerable person's `person_id` (not, or not yet, a beneficiary).
    Person,
    /// The case that relapsed: its alerts belong to that case.
    Case,
}

/// When the engine asks a rule.
#[derive(Clone, Copy)]
pub enum Hook {
    /// For every payment, with the state that applies at its event time
    /// ([`PaymentView`]); one finding per offending payment at most.
    /// A rule adds its findings to the list it is handed.
    Payment(fn(&RulesConfig, &PaymentView<'_>, &mut Vec<Finding>)),
    /// When a payment enters or a reversal leaves the receiving account's
    /// window (`detect::episode`), with the rule's window functions.
    AccountWindow(super::episode::WindowRule),
    /// When the event-time watermark passes a deadline (the engine's timers).
    Watermark,
    /// When another alert is filed under its case (`engine::cases`).
    CaseAlert,
    /// When a roster record is applied, for the custodians it or the
    /// record it replaces lists (`engine::custodians`).
    Roster,
}

impl Hook {
    /// How the hook is named in `GET /api/v1/rules`.
    pub fn code(self) -> &'static str {
        match self {
            Hook::Payment(_) => "payment",
            Hook::AccountWindow(_) => "account_window",
            Hook::Watermark => "watermark",
            Hook::CaseAlert => "case_alert",
            Hook::Roster => "roster",
        }
    }
}

/// One rule, as plain data.
#[derive(Clone, Copy)]
pub struct RuleInfo {
    /// The enum value alerts carry; [`Rule`] indexes this table by it.
    pub rule: Rule,
    /// The contract's code (§5), also the serde name of [`Rule`].
    pub code: &'static str,
    /// What a supervisor calls the problem (the page, the ledger, summaries).
    pub chinese: &'static str,
    /// What its cases group by (§8).
    pub subject: Subject,
    /// The `[rules.<section>]` of the config file.
    pub section: &'static str,
    /// When the engine asks it.
    pub hook: Hook,
    /// Whether the running config has it on.
    pub enabled: fn(&RulesConfig) -> bool,
    /// Checks its config section; the error names the key, without the
    /// `rules.<section>.` prefix, which [`RulesConfig::validate`] adds.
    pub validate: fn(&RulesConfig) -> Result<(), String>,
    /// When it fires, in a line (the docs table).
    pub fires_when: &'static str,
    /// Its defaults, in a line (the docs table); the values themselves are
    /// its config section's `Default`.
    pub defaults: &'static str,
}

fn valid(_: &RulesConfig) -> Result<(), String> {
    Ok(())
}

/// Every rule, in the contract's order (§5); `RULES[rule as usize].rule ==
/// rule` (tested).
pub const RULES: [RuleInfo; 15] = [
    RuleInfo {
        rule: Rule::NameMismatch,
        code: "NAME_MISMATCH",
        chinese: "户名不符",
        subject: Subject::Beneficiary,
        section: "name_mismatch",
        hook: Hook::Payment(|r, v, out| out.extend(name_mismatch::check(&r.name_mismatch, v))),
        enabled: |r| r.name_mismatch.enabled,
        validate: valid,
        fires_when: "account holder ≠ beneficiary (normalised names) and not a registered, valid custodian",
        defaults: "high",
    },
    RuleInfo {
        rule: Rule::SharedAccount,
        code: "SHARED_ACCOUNT",
        chinese: "一卡多户",
        subject: Subject::Account,
        section: "shared_account",
        hook: Hook::AccountWindow(shared_account::WINDOW),
        enabled: |r| r.shared_account.enabled,
        validate: |r| r.shared_account.validate(),
        fires_when: "one account, ≥ N households within W days (custodian receipts not counted)",
        defaults: "N=2, W=365, high",
    },
    RuleInfo {
        rule: Rule::FrequentPayments,
        code: "FREQUENT_PAYMENTS",
        chinese: "频繁入账",
        subject: Subject::Account,
        section: "frequent_payments",
        hook: Hook::AccountWindow(frequent_payments::WINDOW),
        enabled: |r| r.frequent_payments.enabled,
        validate: |r| r.frequent_payments.validate(),
        fires_when: "one account, > K × n unreversed payments within W days",
        defaults: "K=3, W=30, medium",
    },
    RuleInfo {
        rule: Rule::LargeAmount,
        code: "LARGE_AMOUNT",
        chinese: "大额发放",
        subject: Subject::Beneficiary,
        section: "large_amount",
        hook: Hook::Payment(|r, v, out| out.extend(large_amount::check(&r.large_amount, v))),
        enabled: |r| r.large_amount.enabled,
        validate: |r| r.large_amount.validate(),
        fires_when: "regular > M × monthly amount, back pay > B ×, any > cap",
        defaults: "M=3, B=12, cap=20000.00, medium / high",
    },
    RuleInfo {
        rule: Rule::DuplicatePeriod,
        code: "DUPLICATE_PERIOD",
        chinese: "重复发放",
        subject: Subject::Beneficiary,
        section: "duplicate_period",
        hook: Hook::Payment(|r, v, out| out.extend(duplicate_period::check(&r.duplicate_period, v))),
        enabled: |r| r.duplicate_period.enabled,
        validate: valid,
        fires_when: "two unreversed regular payments, same beneficiary, month, programme",
        defaults: "high",
    },
    RuleInfo {
        rule: Rule::DisbursementDelay,
        code: "DISBURSEMENT_DELAY",
        chinese: "发放滞后",
        subject: Subject::Beneficiary,
        section: "disbursement_delay",
        hook: Hook::Payment(|r, v, out| out.extend(disbursement_delay::check(&r.disbursement_delay, v))),
        enabled: |r| r.disbursement_delay.enabled,
        validate: |r| r.disbursement_delay.validate(),
        fires_when: "paid > D days after scheduled",
        defaults: "D=15, low / medium beyond 2D",
    },
    RuleInfo {
        rule: Rule::MissedPayment,
        code: "MISSED_PAYMENT",
        chinese: "应发未发",
        subject: Subject::Beneficiary,
        section: "missed_payment",
        hook: Hook::Watermark,
        enabled: |r| r.missed_payment.enabled,
        validate: |r| r.missed_payment.validate(),
        fires_when: "a due month unpaid when the watermark passes month end + G days",
        defaults: "G=20, medium",
    },
    RuleInfo {
        rule: Rule::PaidAfterDeath,
        code: "PAID_AFTER_DEATH",
        chinese: "死亡后发放",
        subject: Subject::Beneficiary,
        section: "paid_after_death",
        hook: Hook::Payment(|r, v, out| out.extend(paid_after_death::check(&r.paid_after_death, v))),
        enabled: |r| r.paid_after_death.enabled,
        validate: valid,
        fires_when: "paid for a month after the month of death (either arrival order)",
        defaults: "high",
    },
    RuleInfo {
        rule: Rule::InactiveBeneficiary,
        code: "INACTIVE_BENEFICIARY",
        chinese: "停保/注销后发放",
        subject: Subject::Beneficiary,
        section: "inactive_beneficiary",
        hook: Hook::Payment(|r, v, out| out.extend(inactive_beneficiary::check(&r.inactive_beneficiary, v))),
        enabled: |r| r.inactive_beneficiary.enabled,
        validate: valid,
        fires_when: "paid for a month from a suspension/cancellation on, or not on the roster",
        defaults: "high",
    },
    RuleInfo {
        rule: Rule::FiledRelativeReview,
        code: "FILED_RELATIVE_REVIEW",
        chinese: "干部亲属备案复核",
        subject: Subject::Beneficiary,
        section: "filed_relative_review",
        hook: Hook::Payment(|r, v, out| out.extend(filed_relative_review::check(&r.filed_relative_review, v))),
        enabled: |r| r.filed_relative_review.enabled,
        validate: valid,
        fires_when: "first payment each year to a filed relative",
        defaults: "low",
    },
    RuleInfo {
        rule: Rule::ProgramOverlap,
        code: "PROGRAM_OVERLAP",
        chinese: "重复享受",
        subject: Subject::Beneficiary,
        section: "program_overlap",
        hook: Hook::Payment(|r, v, out| program_overlap::check(&r.program_overlap, v, out)),
        enabled: |r| r.program_overlap.enabled,
        validate: valid,
        fires_when: "one person paid for the same month under two of rural dibao, urban dibao, tekun",
        defaults: "high",
    },
    RuleInfo {
        rule: Rule::RectificationRelapse,
        code: "RECTIFICATION_RELAPSE",
        chinese: "整改后反弹",
        subject: Subject::Case,
        section: "rectification_relapse",
        hook: Hook::CaseAlert,
        enabled: |r| r.rectification_relapse.enabled,
        validate: valid,
        fires_when: "a case closed as rectified gets a new alert after that decision",
        defaults: "high",
    },
    RuleInfo {
        rule: Rule::CustodianOverload,
        code: "CUSTODIAN_OVERLOAD",
        chinese: "代管过多",
        subject: Subject::Custodian,
        section: "custodian_overload",
        hook: Hook::Roster,
        enabled: |r| r.custodian_overload.enabled,
        validate: |r| r.custodian_overload.validate(),
        fires_when: "one custodian (by `id_no`) registered and valid for more than N active households, unless through an institution's account",
        defaults: "N = 3; medium",
    },
    RuleInfo {
        rule: Rule::CustodianDeceased,
        code: "CUSTODIAN_DECEASED",
        chinese: "代管人已死亡",
        subject: Subject::Custodian,
        section: "custodian_deceased",
        hook: Hook::Payment(|r, v, out| out.extend(custodian_deceased::check(&r.custodian_deceased, v))),
        enabled: |r| r.custodian_deceased.enabled,
        validate: valid,
        fires_when: "a payment to a registered custodian whose `id_no` died before the day it was paid, whichever arrives first",
        defaults: "high",
    },
    RuleInfo {
        rule: Rule::CoverageGap,
        code: "COVERAGE_GAP",
        chinese: "疑似漏保",
        subject: Subject::Person,
        section: "coverage_gap",
        hook: Hook::Watermark,
        enabled: |r| r.coverage_gap.enabled,
        validate: |r| r.coverage_gap.validate(),
        fires_when: "a person another department flagged in a qualifying category is still not covered `grace_days` after being flagged (a referral for a home visit)",
        defaults: "grace_days = 90; low",
    },
];

impl Rule {
    /// Every rule, in the table's order.
    pub const ALL: [Rule; RULES.len()] = {
        let mut all = [Rule::NameMismatch; RULES.len()];
        let mut i = 0;
        while i < RULES.len() {
            all[i] = RULES[i].rule;
            i += 1;
        }
        all
    };

    /// This rule's descriptor.
    pub fn info(self) -> &'static RuleInfo {
        &RULES[self as usize]
    }

    pub fn code(self) -> &'static str {
        self.info().code
    }

    pub fn from_code(s: &str) -> Option<Rule> {
        RULES.iter().find(|r| r.code == s).map(|r| r.rule)
    }

    /// What the rule is called on a supervisor's form.
    pub fn chinese(self) -> &'static str {
        self.info().chinese
    }
}

impl Subject {
    /// The subject of `a`'s case (§8), for a rule whose subject kind this is;
    /// `None` for [`Subject::Case`] (the relapsed case is known otherwise)
    /// or when the alert lacks the field.
    pub fn of(self, a: &Alert) -> Option<&str> {
        match self {
            Subject::Beneficiary | Subject::Person => a.beneficiary_id.as_deref(),
            Subject::Account => a.account_no.as_deref(),
            Subject::Custodian => a.evidence.figures.get("custodian_id_no").map(String::as_str),
            Subject::Case => None,
        }
    }
}

/// The account-level rules' window functions, in the table's order.
pub fn window_rules() -> impl Iterator<Item = super::episode::WindowRule> {
    RULES.iter().filter_map(|r| match r.hook {
        Hook::AccountWindow(w) => Some(w),
        _ => None,
    })
}

/// The rules table of the README and `docs/contract.md`.
pub fn markdown_table() -> String {
    let mut t = String::from("| rule | 规则 | fires when | defaults (config) |\n|---|---|---|---|\n");
    for r in &RULES {
        t.push_str(&format!("| `{}` | {} | {} | {} |\n", r.code, r.chinese, r.fires_when, r.defaults));
    }
    t
}

/// The rules as `GET /api/v1/rules` lists them, with whether `cfg` has each on.
pub fn describe(cfg: &RulesConfig) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = RULES
        .iter()
        .map(|r| {
            serde_json::json!({
                "code": r.code,
                "chinese": r.chinese,
                "subject": r.subject,
                "section": r.section,
                "hook": r.hook.code(),
                "enabled": (r.enabled)(cfg),
                "fires_when": r.fires_when,
                "defaults": r.defaults,
            })
        })
        .collect();
    serde_json::Value::Array(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_indexed_by_the_enum_and_codes_are_serde_names() {
        for (i, r) in RULES.iter().enumerate() {
            assert_eq!(r.rule as usize, i, "{} is out of place", r.code);
            assert_eq!(Rule::from_code(r.code), Some(r.rule));
            assert_eq!(serde_json::to_string(&r.rule).unwrap(), format!("\"{}\"", r.code));
            assert_eq!(r.section.to_ascii_uppercase(), r.code, "the section is the code in lower case");
        }
        assert_eq!(Rule::ALL.len(), RULES.len());
    }

    /// Turning a rule off in its section is what `enabled` reads, and the
    /// config's sections are exactly the table's.
    #[test]
    fn each_descriptor_reads_its_own_section() {
        let sections: Vec<String> = match toml::Value::try_from(RulesConfig::default()).unwrap() {
            toml::Value::Table(t) => t.keys().cloned().collect(),
            _ => panic!(),
        };
        let mut want: Vec<String> = RULES.iter().map(|r| r.section.to_owned()).collect();
        let mut got = sections;
        want.sort();
        got.sort();
        assert_eq!(got, want);
        for r in &RULES {
            let text = format!("[{}]\nenabled = false\n", r.section);
            let cfg: RulesConfig = toml::from_str(&text).unwrap();
            for other in &RULES {
                assert_eq!((other.enabled)(&cfg), other.rule != r.rule, "{} off: {}", r.code, other.code);
            }
        }
    }

    /// The README shows the table this module makes (`docs/contract.md`
    /// words each rule in full, from the contract).
    #[test]
    fn the_readme_table_is_the_registry() {
        let table = markdown_table();
        assert!(
            include_str!("../../README.md").contains(&table),
            "the README's rules table differs from detect::registry::markdown_table():\n{table}"
        );
    }
}
