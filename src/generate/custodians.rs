//! Planted custodian cases (contract §9) and their controls: one person
//! registered (with an `id_no`) as custodian for too many households, and a
//! custodian who died and was still paid through; three households under one
//! custodian, and a custodian who died on the day of the last payment
//! through them.

use super::district::{Bene, Builder, Change};
use super::plant::{key, month_range, other_name, Role};
use crate::model::time::MS_PER_DAY;
use crate::model::{Custodian, PersonId, Period, Program, Rule, Timestamp};

fn registration(name: &str, account: &str, id_no: &str, from: crate::model::time::Date) -> Custodian {
    Custodian {
        name: name.to_owned(),
        account_no: account.to_owned(),
        registered_at: from,
        revoked_at: None,
        id_no: Some(PersonId::parse(id_no).expect("generated ids are valid")),
    }
}

/// Builds the households of one custodian role; `b` and `m` are the
/// planting's first beneficiary and month. `CustodianOverload` and
/// `CustodianThree` build the one; any other role, a custodian's death.
pub(super) fn plant(bd: &mut Builder, role: Role, mut b: Bene, m: Period) {
    let to = bd.to;
    let x_id = bd.people.id();
    let x_name = other_name(bd, &b.name);
    let account = bd.people.account();
    match role {
        Role::CustodianOverload | Role::CustodianThree => {
            // Registered one after the other on the first days of month m;
            // paid through the custodian from the month after.
            let n = if role == Role::CustodianOverload { 4 } else { 3 };
            let mut benes = vec![b];
            for _ in 1..n {
                let town = benes[0].township;
                benes.push(bd.bene(town, Program::RuralDibao, None));
            }
            let mut last = None;
            for (i, bi) in benes.iter().enumerate() {
                let day = Builder::day(m, 1 + i as u32);
                let at = bd.at(day, 10, 0);
                let c = registration(&x_name, &account, &x_id, day);
                bd.roster_history(bi, &[(at, Change::Custodians(vec![c]))]);
                for p in month_range(bi.start, to) {
                    let mut x = bd.regular(bi, p);
                    if p > m {
                        x.account_no = account.as_str().into();
                        x.account_name = x_name.as_str().into();
                    }
                    bd.push(x);
                }
                last = Some((bi.id.clone(), at));
            }
            if role == Role::CustodianOverload {
                let (bid, at) = last.expect("four households");
                let k = format!("CUSTODIAN_OVERLOAD:{x_id}:{bid}@{}", bd.tz.format(at));
                bd.expect(Rule::CustodianOverload, k, "one custodian registered for four households");
            } else {
                bd.control("one custodian registered for three households", &x_id);
            }
        }
        _ => {
            // Paid through custodian X from enrolment; X dies in month m
            // and is replaced by Y, who is alive.
            b.custodians = vec![registration(&x_name, &account, &x_id, b.enrolled_at)];
            let y_id = bd.people.id();
            let y_name = other_name(bd, &b.name);
            let y_account = bd.people.account();
            let (died, last_via_x, reported, replaced) = if role == Role::CustodianDeceased {
                // Died on the 3rd (before every pay day); reported after the
                // payments of m and m+1, before that of m+2; replaced after it.
                let d = Builder::day(m, 3);
                (d, Period(m.0 + 2), bd.at(Builder::day(m.next(), 25), 11, 0), bd.at(Builder::day(Period(m.0 + 2), 27), 10, 0))
            } else {
                // Died on m's pay day; replaced the next day.
                let d = Builder::day(m, b.pay_day);
                (d, m, bd.at(Builder::day(m.next(), 2), 11, 0), Timestamp(bd.at(d, 10, 0).0 + MS_PER_DAY))
            };
            let y = registration(&y_name, &y_account, &y_id, Period(last_via_x.0 + 1).first_day());
            bd.roster_history(&b, &[(replaced, Change::Custodians(vec![y]))]);
            bd.death_of(&x_id, &x_name, died, reported);
            for p in month_range(b.start, to) {
                let mut x = bd.regular(&b, p);
                let via_x = p <= last_via_x;
                (x.account_no, x.account_name) =
                    if via_x { (account.as_str().into(), x_name.as_str().into()) } else { (y_account.as_str().into(), y_name.as_str().into()) };
                let after_death = bd.tz.date(x.paid_at) > died;
                let id = bd.push(x);
                if via_x && after_death {
                    bd.expect(Rule::CustodianDeceased, key(Rule::CustodianDeceased, &id), "paid through a custodian after the custodian's death");
                }
            }
            if role == Role::CustodianDeathDay {
                bd.control("custodian died on the day of the last payment through them", &x_id);
            }
        }
    }
}
