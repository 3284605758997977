//! A fast path for the usual JSON Lines record: one flat object whose
//! values are all plain strings (no escapes, no control characters), as
//! every exporter writes payments. Such a line is split into borrowed
//! key/value pairs without serde_json's general machinery, which was most
//! of the cost of staging a ledger.
//!
//! Anything else — a number, `null`, a nested value, an escape, a key given
//! twice, text after the object — is left to serde_json, so every answer,
//! and every rejection, is exactly the one serde_json gives.

/// Calls `pair` with each key and value, in line order, when `text` is a
/// flat object of plain strings, and returns `Some(())`; `None` when it is
/// anything else (then serde_json decides), or as soon as `pair` answers
/// `None`. Pairs already passed to `pair` are then to be forgotten.
pub fn plain_object<'a>(text: &'a str, mut pair: impl FnMut(&'a str, &'a str) -> Option<()>) -> Option<()> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    loop {
        let (key, next) = plain_string(text, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let (value, next) = plain_string(text, skip_ws(b, i + 1))?;
        pair(key, value)?;
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    (skip_ws(b, i + 1) == b.len()).then_some(())
}

/// Bytes that end a plain string's fast scan: the quote, an escape, and
/// the control characters JSON forbids inside strings.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

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
    let len = b[start..].iter().position(|&c| STOP[usize::from(c)])?;
    let end = start + len;
    // Both ends are ASCII quotes, so the slice is on character boundaries.
    (b[end] == b'"').then(|| (&text[start..end], end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The pairs of a flat object, or `None`.
    fn pairs(text: &str) -> Option<Vec<(&str, &str)>> {
        let mut out = Vec::new();
        plain_object(text, |k, v| {
            out.push((k, v));
            Some(())
        })?;
        Some(out)
    }

    #[test]
    fn flat_objects_of_plain_strings_only() {
        assert_eq!(pairs(" {\"a\" : \"1\",\t\"b\":\"张三\"}\r\n").unwrap(), [("a", "1"), ("b", "张三")]);
        assert!(plain_object(r#"{"a":"1","b":"2"}"#, |k, _| (k == "a").then_some(())).is_none(), "stopped by the caller");
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
            assert!(pairs(other).is_none(), "{other}");
        }
    }

    proptest! {
        /// Whatever the fast path accepts, serde_json reads as the same
        /// strings in the same order.
        #[test]
        fn agrees_with_serde_json(text in r#"[ {}":,ab\\\tx张"]{0,40}"#) {
            if let Some(pairs) = pairs(&text) {
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
