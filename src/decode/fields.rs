//! A JSON value reduced to what validation needs, and the field checks that
//! the three record kinds share (JSON Lines and CSV both end up here).

use super::{Limits, Reason, Rejection};
use crate::model::time::{Date, Period, Timestamp};
use crate::model::{Money, PersonId};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// A field's value before validation. Strings borrow from the input line
/// where JSON allows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Str(Cow<'a, str>),
    Bool(bool),
    Number(String),
    /// An array or object where a scalar was expected.
    Nested,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Number(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Number(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Number(v.to_string()))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Scalar<'a>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalar<'a>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl Scalar<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Str(_) => "a string",
            Scalar::Bool(_) => "a boolean",
            Scalar::Number(_) => "a number",
            Scalar::Nested => "an array or object",
        }
    }
}

/// Field checks, carrying the limits.
#[derive(Clone, Copy)]
pub struct Check {
    pub limits: Limits,
}

impl Check {
    /// A required, non-empty string no longer than the field limit.
    pub fn req<'s>(&self, name: &str, v: &'s Option<Scalar<'_>>) -> Result<&'s str, Rejection> {
        match self.opt(name, v)? {
            Some(s) => Ok(s),
            None => Err(Rejection::new(Reason::MissingField, format!("{name} is required"))),
        }
    }

    /// An optional string: absent, null and empty all mean "not given".
    pub fn opt<'s>(&self, name: &str, v: &'s Option<Scalar<'_>>) -> Result<Option<&'s str>, Rejection> {
        match v {
            None | Some(Scalar::Null) => Ok(None),
            // All white space (stops at the first other character).
            Some(Scalar::Str(s)) if s.chars().all(char::is_whitespace) => Ok(None),
            Some(Scalar::Str(s)) => {
                // A string has no more characters than bytes: only a long one
                // needs counting.
                if s.len() > self.limits.max_field_chars && s.chars().count() > self.limits.max_field_chars {
                    Err(Rejection::new(
                        Reason::BadField,
                        format!("{name} is longer than {} characters", self.limits.max_field_chars),
                    ))
                } else {
                    Ok(Some(s.as_ref()))
                }
            }
            Some(other) => Err(Rejection::new(
                Reason::BadField,
                format!("{name} must be a string, got {}", other.type_name()),
            )),
        }
    }

    pub fn person_id(&self, name: &str, v: &Option<Scalar<'_>>) -> Result<PersonId, Rejection> {
        person_id(name, self.req(name, v)?)
    }

    pub fn money(&self, name: &str, v: &Option<Scalar<'_>>, positive: bool) -> Result<Money, Rejection> {
        let s = match v {
            Some(Scalar::Number(n)) => {
                return Err(Rejection::new(
                    Reason::BadAmount,
                    format!("{name} must be a decimal string such as \"585.00\", got the number {n}"),
                ))
            }
            _ => self.req(name, v)?,
        };
        let m = Money::parse(s)
            .map_err(|e| Rejection::new(Reason::BadAmount, format!("{name} {s:?}: {e}")))?;
        if positive && !m.is_positive() {
            return Err(Rejection::new(Reason::BadAmount, format!("{name} {s:?} must be greater than 0")));
        }
        Ok(m)
    }

    pub fn period(&self, name: &str, v: &Option<Scalar<'_>>) -> Result<Period, Rejection> {
        let s = self.req(name, v)?;
        Period::parse(s)
            .ok_or_else(|| Rejection::new(Reason::BadPeriod, format!("{name} {s:?} is not a month YYYY-MM")))
    }

    pub fn date(&self, name: &str, v: &Option<Scalar<'_>>) -> Result<Date, Rejection> {
        let s = self.req(name, v)?;
        parse_date(name, s)
    }

    pub fn timestamp(&self, name: &str, v: &Option<Scalar<'_>>) -> Result<Timestamp, Rejection> {
        let s = self.req(name, v)?;
        Timestamp::parse_rfc3339(s).ok_or_else(|| {
            Rejection::new(
                Reason::BadDate,
                format!("{name} {s:?} is not an RFC 3339 timestamp with offset, e.g. 2019-03-12T09:30:00+08:00"),
            )
        })
    }

    /// A record's event time: a timestamp no later than the limits'
    /// latest accepted event time (contract §7 v1.1, `future_time`).
    pub fn event_time(&self, name: &str, v: &Option<Scalar<'_>>) -> Result<Timestamp, Rejection> {
        let t = self.timestamp(name, v)?;
        if t > self.limits.latest_event_time {
            let s = self.req(name, v)?;
            let latest = crate::model::Tz::default().format(self.limits.latest_event_time);
            return Err(Rejection::new(
                Reason::FutureTime,
                format!("{name} {s:?} is later than {latest}, the wall clock when it was read plus input.max_future; a mistyped year?"),
            ));
        }
        Ok(t)
    }

    pub fn account_no<'s>(&self, name: &str, v: &'s Option<Scalar<'_>>) -> Result<&'s str, Rejection> {
        let s = self.req(name, v)?;
        check_account_no(name, s)?;
        Ok(s)
    }

    /// An enumerated string, mapped by `parse`.
    pub fn enumerated<T>(
        &self,
        name: &str,
        v: &Option<Scalar<'_>>,
        allowed: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, Rejection> {
        let s = match v {
            None | Some(Scalar::Null) => return Ok(None),
            Some(Scalar::Str(s)) if s.is_empty() => return Ok(None),
            Some(Scalar::Str(s)) => s,
            Some(other) => {
                return Err(Rejection::new(
                    Reason::UnknownEnum,
                    format!("{name} must be one of {allowed}, got {}", other.type_name()),
                ))
            }
        };
        parse(s).map(Some).ok_or_else(|| {
            let shown: String = s.chars().take(40).collect();
            Rejection::new(Reason::UnknownEnum, format!("{name} {shown:?} is not one of {allowed}"))
        })
    }

    pub fn boolean(&self, name: &str, v: &Option<Scalar<'_>>) -> Result<bool, Rejection> {
        match v {
            None | Some(Scalar::Null) => Ok(false),
            Some(Scalar::Bool(b)) => Ok(*b),
            Some(Scalar::Str(s)) if s.is_empty() => Ok(false),
            Some(Scalar::Str(s)) if s.as_ref() == "true" => Ok(true),
            Some(Scalar::Str(s)) if s.as_ref() == "false" => Ok(false),
            Some(other) => Err(Rejection::new(
                Reason::BadField,
                format!("{name} must be true or false, got {}", other.type_name()),
            )),
        }
    }
}

/// An identity number (`bad_id`, `bad_id_check_digit`), the field named
/// `name` in the rejection.
pub fn person_id(name: &str, s: &str) -> Result<PersonId, Rejection> {
    PersonId::parse(s).map_err(|e| {
        let reason = match e {
            crate::model::id::IdError::Format => Reason::BadId,
            crate::model::id::IdError::CheckDigit { .. } => Reason::BadIdCheckDigit,
        };
        Rejection::new(reason, format!("{name}: {e}"))
    })
}

pub fn parse_date(name: &str, s: &str) -> Result<Date, Rejection> {
    Date::parse(s)
        .ok_or_else(|| Rejection::new(Reason::BadDate, format!("{name} {s:?} is not a real date YYYY-MM-DD")))
}

pub fn check_account_no(name: &str, s: &str) -> Result<(), Rejection> {
    if (12..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Rejection::new(Reason::BadAccountNo, format!("{name} must be 12-19 digits")))
    }
}
