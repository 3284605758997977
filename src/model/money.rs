//! Money: CNY amounts as `rust_decimal`, never floats.

use rust_decimal::Decimal;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An amount of CNY with exactly two decimals.
///
/// Serialised as a decimal string (`"585.00"`) in JSON and as integer fen
/// (i64) in the binary state encoding, so the store stays compact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal string like \"585.00\"")]
    Syntax,
    #[error("more than 2 decimals")]
    Precision,
    #[error("too many digits")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Parses the contract's decimal string: digits, optionally `.` and one or
    /// two digits. No sign, exponent, white space or thousands separators.
    pub fn parse(s: &str) -> Result<Money, MoneyError> {
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Syntax);
        }
        if let Some(f) = frac {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MoneyError::Syntax);
            }
            if f.len() > 2 {
                return Err(MoneyError::Precision);
            }
        }
        if int.trim_start_matches('0').len() > 15 {
            return Err(MoneyError::TooLarge);
        }
        let d = Decimal::from_str(s).map_err(|_| MoneyError::Syntax)?;
        Ok(Money::from_decimal(d))
    }

    pub fn from_decimal(d: Decimal) -> Money {
        let mut d = d.round_dp(2);
        d.rescale(2);
        Money(d)
    }

    pub fn from_fen(fen: i64) -> Money {
        Money(Decimal::new(fen, 2))
    }

    pub fn fen(&self) -> i64 {
        // Always scale 2 and at most 15 integer digits: fits in i64.
        let mut d = self.0;
        d.rescale(2);
        d.mantissa() as i64
    }

    pub fn decimal(&self) -> Decimal {
        self.0
    }

    pub fn is_positive(&self) -> bool {
        self.0 > Decimal::ZERO
    }

    /// `self * factor`, rounded to fen. Saturates instead of overflowing.
    pub fn times(&self, factor: Decimal) -> Money {
        Money::from_decimal(self.0.checked_mul(factor).unwrap_or(Decimal::MAX))
    }

    pub fn plus(&self, other: Money) -> Money {
        Money::from_decimal(self.0.checked_add(other.0).unwrap_or(Decimal::MAX))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.fen())
        }
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        if d.is_human_readable() {
            let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
            Money::parse(&s).map_err(de::Error::custom)
        } else {
            Ok(Money::from_fen(i64::deserialize(d)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_contract_forms() {
        assert_eq!(Money::parse("585.00").unwrap().to_string(), "585.00");
        assert_eq!(Money::parse("585").unwrap().to_string(), "585.00");
        assert_eq!(Money::parse("585.5").unwrap().to_string(), "585.50");
        assert_eq!(Money::parse("0.01").unwrap().fen(), 1);
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", "-1", "+1", "1e3", " 1", "1 ", "1,000.00", ".5", "5.", "NaN", "１２"] {
            assert_eq!(Money::parse(bad), Err(MoneyError::Syntax), "{bad:?}");
        }
        assert_eq!(Money::parse("1.001"), Err(MoneyError::Precision));
        assert_eq!(Money::parse("1234567890123456"), Err(MoneyError::TooLarge));
    }

    #[test]
    fn times_rounds_to_fen() {
        let m = Money::parse("585.00").unwrap();
        assert_eq!(m.times(Decimal::new(3, 0)).to_string(), "1755.00");
        assert_eq!(Money::parse("0.05").unwrap().times(Decimal::new(15, 1)).to_string(), "0.08");
    }

    proptest! {
        #[test]
        fn string_round_trip(fen in 0i64..1_000_000_000_000) {
            let m = Money::from_fen(fen);
            let s = m.to_string();
            prop_assert_eq!(Money::parse(&s).unwrap(), m);
            prop_assert_eq!(Money::parse(&s).unwrap().fen(), fen);
        }

        #[test]
        fn binary_and_json_round_trip(fen in 0i64..1_000_000_000_000) {
            let m = Money::from_fen(fen);
            let bin = postcard::to_stdvec(&m).unwrap();
            prop_assert_eq!(postcard::from_bytes::<Money>(&bin).unwrap(), m);
            let js = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<Money>(&js).unwrap(), m);
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = Money::parse(&s);
        }
    }
}
