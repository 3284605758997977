//! `PROGRAM_OVERLAP` (重复享受): one person paid for the same month under
//! two programmes that exclude each other — rural dibao, urban dibao and
//! tekun (特困供养) — by distinct, unreversed regular payments. Temporary
//! relief combines with any. One alert per beneficiary, month and pair of
//! programmes (§6), its id from the rule, the beneficiary, the month and
//! the two programmes in sorted order (§11.12); both payments in the
//! evidence, the later first.

use super::{Finding, PaymentView};
use crate::model::{PaymentType, Program, Rule, Severity};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Contract default: high.
    pub severity: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, severity: Severity::High }
    }
}

/// Programmes that exclude each other: the monthly ones.
fn exclusive(p: Program) -> bool {
    p.is_monthly()
}

/// Adds one finding per other exclusive programme this month already paid.
pub fn check(cfg: &Config, v: &PaymentView<'_>, out: &mut Vec<Finding>) {
    let p = v.payment;
    if p.payment_type != PaymentType::Regular || !exclusive(p.program) {
        return;
    }
    for other in Program::ALL.into_iter().filter(|q| *q != p.program && exclusive(*q)) {
        // The newest unreversed regular payment of that programme.
        let Some(earlier) = v
            .month
            .iter()
            .rev()
            .find(|sp| sp.reversed_by.is_none() && sp.payment.program == other && sp.payment.payment_type == PaymentType::Regular)
        else {
            continue;
        };
        let e = &earlier.payment;
        let reason = format!(
            "同一对象\"{}\"的{}同时以{}（{}元，{}）和{}（{}元，{}）发放，两项待遇不得重复享受",
            p.beneficiary_name,
            p.period.chinese(),
            e.program.chinese(),
            e.amount,
            e.event_id,
            p.program.chinese(),
            p.amount,
            p.event_id,
        );
        let mut f = v.finding(Rule::ProgramOverlap, cfg.severity, reason);
        f.evidence.event_ids.push(e.event_id.to_string());
        let mut programs = [p.program.code(), other.code()];
        programs.sort_unstable();
        f.evidence.figures.insert("programs".into(), programs.join(","));
        f.evidence.figures.insert("total".into(), p.amount.plus(e.amount).to_string());
        f.identity = vec![p.beneficiary_id.as_str().to_owned(), p.period.to_string(), programs[0].to_owned(), programs[1].to_owned()];
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::engine::state::StoredPayment;
    use crate::model::Payment;

    fn paid(id: &str, program: Program) -> StoredPayment {
        let mut p = payment(id, "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        p.program = program;
        StoredPayment { payment: p, reversed_by: None }
    }

    fn run(p: &Payment, month: &[StoredPayment]) -> Vec<Finding> {
        let mut out = Vec::new();
        check(&Config::default(), &PaymentView { month, ..view(p, None) }, &mut out);
        out
    }

    #[test]
    fn two_exclusive_programmes_in_one_month_fire_once_per_pair() {
        let mut p = payment("E2", "2020-03", "700.00", "2020-03-20T10:00:00+08:00");
        p.program = Program::UrbanDibao;
        assert!(run(&p, &[]).is_empty());
        let f = run(&p, &[paid("E1", Program::RuralDibao)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, Rule::ProgramOverlap);
        assert_eq!(f[0].severity, Severity::High);
        assert_eq!(f[0].evidence.event_ids, ["E2", "E1"], "the later first");
        assert_eq!(f[0].evidence.figures["programs"], "rural_dibao,urban_dibao");
        assert_eq!(f[0].evidence.figures["total"], "1285.00");
        assert_eq!(f[0].identity[2..], ["rural_dibao", "urban_dibao"], "sorted, so the id does not depend on arrival");
        assert!(f[0].reason.contains("农村低保") && f[0].reason.contains("城市低保"), "{}", f[0].reason);
        // Paid under all three: one finding per pair.
        p.program = Program::Tekun;
        assert_eq!(run(&p, &[paid("E1", Program::RuralDibao), paid("E3", Program::UrbanDibao)]).len(), 2);
    }

    #[test]
    fn temporary_relief_reversed_and_non_regular_payments_do_not_count() {
        let mut p = payment("E2", "2020-03", "585.00", "2020-03-20T10:00:00+08:00");
        p.program = Program::UrbanDibao;
        let mut reversed = paid("E1", Program::RuralDibao);
        reversed.reversed_by = Some("R1".into());
        let mut back = paid("E3", Program::RuralDibao);
        back.payment.payment_type = PaymentType::BackPay;
        assert!(run(&p, &[reversed, back, paid("E4", Program::TemporaryRelief), paid("E5", Program::UrbanDibao)]).is_empty());
        p.program = Program::TemporaryRelief;
        assert!(run(&p, &[paid("E1", Program::RuralDibao)]).is_empty(), "temporary relief combines with any");
        p.program = Program::UrbanDibao;
        p.payment_type = PaymentType::OneOff;
        assert!(run(&p, &[paid("E1", Program::RuralDibao)]).is_empty());
    }
}
