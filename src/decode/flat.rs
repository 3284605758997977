//! A fast path for the usual JSON Lines record: one flat object whose
//! values are all plain strings (no escapes, no control characters), as
//! every exporter writes payments. Such a line is split into borrowed
//! key/value pairs without serde_json's general machinery, which was most
//! of the cost of staging a ledger.
//!
//! Anything else — a number, `null`, a nested value, an escape, a key given
//! twice, text after the object — is left to serde_json, so every answer,
//! and every rejection, is exactly the one serde_json gives.

use smallvec::SmallVec;

/// Key/value pairs of a flat object, in line order.
pub type Pairs<'a> = SmallVec<[(&'a str, &'a str); 20]>;

/// The pairs of `text` when it is a flat object of plain strings; `None`
/// when it is anything else (then serde_json decides).
pub fn plain_object(text: &str) -> Option<Pairs<'_>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut out = Pairs::new();
    loop {
        let (key, next) = plain_string(text, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let (value, next) = plain_string(text, skip_ws(b, i + 1))?;
        out.push((key, value));
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    (skip_ws(b, i + 1) == b.len()).then_some(out)
}

/// JSON white space from `i` on.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The string starting with the quote at `i`, and the index after its
/// closing quote; `None` unless it is a plain string.
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let len = b[start..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    let end = start + len;
    // Both ends are ASCII quotes, so the slice is on character boundaries.
    (b[end] == b'"').then(|| (&text[start..end], end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flat_objects_of_plain_strings_only() {
        let pairs = plain_object(" {\"a\" : \"1\",\t\"b\":\"张三\"}\r\n").unwrap();
        assert_eq!(pairs.as_slice(), [("a", "1"), ("b", "张三")]);
        for other in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"a":null}"#,
            r#"{"a":"x\"y"}"#,
            r#"{"a\u0062":"x"}"#,
            "{\"a\":\"x\ty\"}",
            r#"{"a":"x",}"#,
            r#"{"a":"x"} x"#,
            r#"{"a":"x"}}"#,
            r#"{"a":{"b":"c"}}"#,
            r#"["a","b"]"#,
            r#"{"a":"x""#,
            r#"{"a" "x"}"#,
            "",
        ] {
            assert!(plain_object(other).is_none(), "{other}");
        }
    }

    proptest! {
        /// Whatever the fast path accepts, serde_json reads as the same
        /// strings in the same order.
        #[test]
        fn agrees_with_serde_json(text in r#"[ {}":,ab\\\tx张"]{0,40}"#) {
            if let Some(pairs) = plain_object(&text) {
                let v: serde_json::Value = serde_json::from_str(&text).expect("serde_json reads what the fast path reads");
                let serde_json::Value::Object(map) = v else { panic!("not an object: {text}") };
                let mut seen = std::collections::HashSet::new();
                for (k, val) in &pairs {
                    if seen.insert(*k) {
                        prop_assert_eq!(map.get(*k).and_then(|x| x.as_str()), Some(*val));
                    }
                }
            }
        }
    }
}
