//! PRC resident identity numbers (GB 11643-1999).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A validated 18-character resident identity number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PersonId(super::Text);

/// Why an identity number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be 18 characters: 17 digits then a digit or X")]
    Format,
    #[error("check digit is {found}, GB 11643 requires {expected}")]
    CheckDigit { found: char, expected: char },
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";

/// The ISO 7064 MOD 11-2 check character for the first 17 digits.
pub fn check_char(first17: &[u8]) -> char {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize] as char
}

impl PersonId {
    pub fn parse(s: &str) -> Result<PersonId, IdError> {
        let b = s.as_bytes();
        if b.len() != 18
            || !b[..17].iter().all(u8::is_ascii_digit)
            || !(b[17].is_ascii_digit() || b[17] == b'X')
        {
            return Err(IdError::Format);
        }
        let expected = check_char(&b[..17]);
        if b[17] as char != expected {
            return Err(IdError::CheckDigit { found: b[17] as char, expected });
        }
        Ok(PersonId(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// First 6 and last 4 characters, the rest as `*`: the only form that
    /// may appear in logs.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks an identity or account number for logs: first 6, last 4.
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 10 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..6].iter().collect();
    out.extend(std::iter::repeat_n('*', chars.len() - 10));
    out.extend(&chars[chars.len() - 4..]);
    out
}

impl fmt::Display for PersonId {
    /// Display masks: an identity number never reaches a log by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_numbers() {
        // The GB 11643 worked example.
        assert!(PersonId::parse("11010519491231002X").is_ok());
        assert_eq!(
            PersonId::parse("110105194912310021"),
            Err(IdError::CheckDigit { found: '1', expected: 'X' })
        );
        assert_eq!(PersonId::parse("11010519491231002x"), Err(IdError::Format));
        assert_eq!(PersonId::parse("1101051949123100"), Err(IdError::Format));
    }

    #[test]
    fn masks_first6_last4() {
        let id = PersonId::parse("11010519491231002X").unwrap();
        assert_eq!(id.masked(), "110105********002X");
        assert_eq!(format!("{id}"), "110105********002X");
        assert_eq!(mask("6217001234567890123"), "621700*********0123");
    }

    proptest! {
        #[test]
        fn computed_check_digit_always_validates(d in proptest::collection::vec(0u8..10, 17)) {
            let body: String = d.iter().map(|x| (b'0' + x) as char).collect();
            let id = format!("{body}{}", check_char(body.as_bytes()));
            prop_assert!(PersonId::parse(&id).is_ok());
            // Any other last character fails.
            for c in "0123456789X".chars().filter(|c| *c != check_char(body.as_bytes())) {
                let wrong = format!("{body}{c}");
                let refused = matches!(PersonId::parse(&wrong), Err(IdError::CheckDigit { .. }));
                prop_assert!(refused);
            }
        }

        #[test]
        fn never_panics(s in ".{0,30}") {
            let _ = PersonId::parse(&s);
        }
    }
}
