//! Name normalisation (feed-v1 §1): NFKC, white space and the separators
//! `·` `•` `・` `.` removed, Latin letters case-folded.

use unicode_normalization::UnicodeNormalization;

/// The separators the contract removes (after NFKC, so full-width forms such
/// as `．` and half-width `･` are covered too).
const SEPARATORS: [char; 4] = ['·', '•', '・', '.'];

/// Normalises a name for comparison.
///
/// Removing a space that NFKC produced (`´` becomes space + combining acute)
/// can leave characters that compose further, so the steps repeat until
/// nothing changes: the result is stable under normalisation.
pub fn normalize(name: &str) -> String {
    let mut s = once(name);
    for _ in 0..4 {
        let next = once(&s);
        if next == s {
            break;
        }
        s = next;
    }
    s
}

fn once(name: &str) -> String {
    if name.is_ascii() {
        return name
            .chars()
            .filter(|c| !c.is_ascii_whitespace() && *c != '.')
            .map(|c| c.to_ascii_lowercase())
            .collect();
    }
    let mut out = String::with_capacity(name.len());
    for c in name.nfkc() {
        if c.is_whitespace() || SEPARATORS.contains(&c) {
            continue;
        }
        if c.is_ascii_uppercase() {
            out.push(c.to_ascii_lowercase());
        } else if c.is_alphabetic() && !c.is_ascii() && c.is_uppercase() && is_latin(c) {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out.nfc().collect()
}

fn is_latin(c: char) -> bool {
    matches!(c as u32, 0x00C0..=0x024F | 0x1E00..=0x1EFF)
}

/// A township's name as paywatch compares, routes and labels it (contract
/// §7 v1.1): the name normalisation of §1, so `"水阳镇 "` is `水阳镇`.
/// Townships are few, so each thread remembers the ones it has seen.
pub fn township(raw: &str) -> super::Text {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static SEEN: RefCell<HashMap<String, super::Text>> = RefCell::new(HashMap::new());
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(t) = seen.get(raw) {
            return t.clone();
        }
        let t = super::Text::from(normalize(raw));
        if seen.len() >= 4096 {
            seen.clear();
        }
        seen.insert(raw.to_owned(), t.clone());
        t
    })
}

/// True when two names are the same person's name after normalisation.
pub fn same(a: &str, b: &str) -> bool {
    a == b || normalize(a) == normalize(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contract_examples() {
        assert!(same("张三", "张 三"));
        assert!(same("张三", "张\u{3000}三"));
        assert!(same("阿依古丽·买买提", "阿依古丽•买买提"));
        assert!(same("阿依古丽·买买提", "阿依古丽・买买提"));
        assert!(same("阿依古丽·买买提", "阿依古丽.买买提"));
        assert!(same("阿依古丽·买买提", "阿依古丽买买提"));
        assert!(same("Mary Wang", "ＭＡＲＹ　ＷＡＮＧ"));
        assert!(same("ÉLODIE", "élodie"));
        assert!(!same("张三", "李四"));
        assert!(!same("张三", "张三丰"));
    }

    proptest! {
        #[test]
        fn idempotent(s in "\\PC{0,20}") {
            let once = normalize(&s);
            prop_assert_eq!(normalize(&once), once.clone());
        }

        #[test]
        fn separators_and_spaces_never_matter(s in "[\\u4e00-\\u9fa5a-zA-Z]{1,8}", sep in "[ \\u3000·•・.]{0,3}", at in 0usize..8) {
            let chars: Vec<char> = s.chars().collect();
            let cut = at.min(chars.len());
            let with: String = chars[..cut].iter().collect::<String>() + &sep + &chars[cut..].iter().collect::<String>();
            prop_assert!(same(&s, &with));
        }

        #[test]
        fn full_width_latin_equals_ascii(s in "[a-zA-Z]{1,10}") {
            let wide: String = s.chars().map(|c| char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap()).collect();
            prop_assert!(same(&s, &wide));
        }
    }
}
