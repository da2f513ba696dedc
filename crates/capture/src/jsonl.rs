//! The `dump` format, one piece of code for writing (`tito dump`) and reading (`tito load`).
//!
//! One JSON object per line. A key or value that is valid UTF-8 is a JSON string under
//! `key` / `value`; any other is standard base64 (with padding) under `key_b64` /
//! `value_b64`:
//!
//! ```text
//! {"key":"user:1","value":"alice"}
//! {"key_b64":"/3RpdG8AcS8A...","value_b64":"AQAAAA..."}
//! ```
//!
//! Reading is strict: exactly one of `key` / `key_b64` and one of `value` / `value_b64`,
//! no other field, no field twice, base64 with padding. What [`encode_line`] writes,
//! [`decode_line`] reads back to the same bytes.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tito_engine::KeyValue;

/// Why a line is not a valid dump line (the caller adds the line number).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    /// Not a JSON object of the expected shape (the JSON parser's message).
    #[error("not a dump line: {0}")]
    Json(String),
    /// Neither `NAME` nor `NAME_b64` is present.
    #[error("missing \"{0}\" (or \"{0}_b64\")")]
    Missing(&'static str),
    /// Both `NAME` and `NAME_b64` are present.
    #[error("both \"{0}\" and \"{0}_b64\" are present")]
    Both(&'static str),
    /// `NAME_b64` is not standard base64 with padding.
    #[error("\"{field}_b64\" is not standard base64: {problem}")]
    Base64 {
        /// `key` or `value`.
        field: &'static str,
        /// The decoder's message.
        problem: String,
    },
}

/// One JSON line (without the newline) for a pair.
pub fn encode_line(key: &[u8], value: &[u8]) -> String {
    let mut out = String::with_capacity(key.len() + value.len() + 24);
    out.push('{');
    field(&mut out, "key", key);
    out.push(',');
    field(&mut out, "value", value);
    out.push('}');
    out
}

fn field(out: &mut String, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            // A &str always serializes.
            out.push_str(&serde_json::to_string(s).unwrap_or_default());
        }
        Err(_) => {
            out.push('"');
            out.push_str(name);
            out.push_str("_b64\":\"");
            STANDARD.encode_string(bytes, out);
            out.push('"');
        }
    }
}

/// The fields of a line; strings borrow from the line when they hold no escapes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key_b64: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value_b64: Option<Cow<'a, str>>,
}

fn bytes_of(
    name: &'static str,
    text: Option<Cow<'_, str>>,
    b64: Option<Cow<'_, str>>,
) -> Result<Vec<u8>, LineError> {
    match (text, b64) {
        (Some(s), None) => Ok(s.into_owned().into_bytes()),
        (None, Some(b)) => STANDARD
            .decode(b.as_bytes())
            .map_err(|e| LineError::Base64 {
                field: name,
                problem: e.to_string(),
            }),
        (None, None) => Err(LineError::Missing(name)),
        (Some(_), Some(_)) => Err(LineError::Both(name)),
    }
}

/// Decode one dump line (without its newline) back into a pair.
pub fn decode_line(line: &str) -> Result<KeyValue, LineError> {
    let (mut key, mut value) = (Vec::new(), Vec::with_capacity(line.len()));
    if fast::decode(line.as_bytes(), &mut key, &mut value) {
        return Ok((key, value));
    }
    decode_general(line)
}

/// Decode one dump line into `key` and `value` (their old contents are replaced): the
/// same answer as [`decode_line`], without allocating for a line of the shape
/// [`encode_line`] writes, so a caller that only checks lines can reuse two buffers.
pub fn decode_line_into(
    line: &str,
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> Result<(), LineError> {
    if fast::decode(line.as_bytes(), key, value) {
        return Ok(());
    }
    let (k, v) = decode_general(line)?;
    (*key, *value) = (k, v);
    Ok(())
}

/// The reference decoder: serde, for any layout of the object (whitespace, field order,
/// every escape), and for every error message.
fn decode_general(line: &str) -> Result<KeyValue, LineError> {
    // serde would also take the fields as a JSON array.
    if !line.trim_start().starts_with('{') {
        return Err(LineError::Json("expected a JSON object".into()));
    }
    let l: Line<'_> = serde_json::from_str(line).map_err(|e| LineError::Json(e.to_string()))?;
    let key = bytes_of("key", l.key, l.key_b64)?;
    let value = bytes_of("value", l.value, l.value_b64)?;
    Ok((key, value))
}

/// The shape [`encode_line`] writes, `{"key":"…","value":"…"}` (either field may be its
/// `_b64` form), decoded without serde. Anything else, even valid JSON (whitespace, another
/// field order, a surrogate pair, an error), is left to [`decode_general`]: this only
/// answers when serde would give the same bytes (property-tested against it).
mod fast {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    /// True if `line` has the shape and `key`, `value` now hold its pair.
    pub(super) fn decode(line: &[u8], key: &mut Vec<u8>, value: &mut Vec<u8>) -> bool {
        decode_opt(line, key, value).is_some()
    }

    fn decode_opt(line: &[u8], key: &mut Vec<u8>, value: &mut Vec<u8>) -> Option<()> {
        let rest = line.strip_prefix(b"{\"key")?;
        let (b64, rest) = name_end(rest)?;
        let rest = string(rest, key, b64)?;
        let rest = rest.strip_prefix(b",\"value")?;
        let (b64, rest) = name_end(rest)?;
        let rest = string(rest, value, b64)?;
        (rest == b"}").then_some(())
    }

    /// The end of a field name (`":` or `_b64":`): whether it is the base64 form.
    fn name_end(rest: &[u8]) -> Option<(bool, &[u8])> {
        match rest.strip_prefix(b"\":") {
            Some(r) => Some((false, r)),
            None => rest.strip_prefix(b"_b64\":").map(|r| (true, r)),
        }
    }

    /// The JSON string at the start of `rest` into `out` (base64-decoded if `b64`), and
    /// what follows it.
    fn string<'a>(rest: &'a [u8], out: &mut Vec<u8>, b64: bool) -> Option<&'a [u8]> {
        let mut rest = rest.strip_prefix(b"\"")?;
        out.clear();
        if b64 {
            // What encode_line writes has no escape in base64.
            let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
            if rest[end] != b'"' {
                return None;
            }
            STANDARD.decode_vec(&rest[..end], out).ok()?;
            return Some(&rest[end + 1..]);
        }
        loop {
            // Escapes are dense in JSON values (every quote): a plain byte scan, with no
            // per-call setup, between them.
            let at = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            out.extend_from_slice(&rest[..at]);
            match rest[at] {
                b'"' => return Some(&rest[at + 1..]),
                b'\\' => rest = escape(&rest[at + 1..], out)?,
                // JSON forbids raw control characters in strings.
                _ => return None,
            }
        }
    }

    /// The escape after a backslash into `out`, and what follows it.
    fn escape<'a>(rest: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
        let (&c, rest) = rest.split_first()?;
        let byte = match c {
            b'"' | b'\\' | b'/' => c,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (hex, rest) = rest.split_first_chunk::<4>()?;
                let mut v = 0u32;
                for &h in hex {
                    v = v * 16 + char::from(h).to_digit(16)?;
                }
                // A surrogate (half of a pair, or a lone one): serde decides.
                let ch = char::from_u32(v)?;
                let mut utf8 = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                return Some(rest);
            }
            _ => return None,
        };
        out.push(byte);
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utf8_and_binary_lines() {
        assert_eq!(encode_line(b"a", b"x\"y"), r#"{"key":"a","value":"x\"y"}"#);
        let line = encode_line(b"\xff\x00k", b"v");
        assert_eq!(line, r#"{"key_b64":"/wBr","value":"v"}"#);
        assert_eq!(
            decode_line(&line),
            Ok((b"\xff\x00k".to_vec(), b"v".to_vec()))
        );
        let line = encode_line("ключ".as_bytes(), b"\x80");
        assert_eq!(
            decode_line(&line),
            Ok(("ключ".as_bytes().to_vec(), b"\x80".to_vec()))
        );
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert_eq!(
            decode_line(r#"{"value":"v"}"#),
            Err(LineError::Missing("key"))
        );
        assert_eq!(
            decode_line(r#"{"key":"k"}"#),
            Err(LineError::Missing("value"))
        );
        assert_eq!(
            decode_line(r#"{"key":"k","key_b64":"aw==","value":""}"#),
            Err(LineError::Both("key"))
        );
        assert!(matches!(
            decode_line(r#"{"key_b64":"a!","value":""}"#),
            Err(LineError::Base64 { field: "key", .. })
        ));
        assert!(matches!(
            decode_line(r#"{"key_b64":"aw","value":""}"#),
            Err(LineError::Base64 { .. })
        ));
        for bad in [
            "",
            "{",
            "[]",
            r#"["k",null,"v",null]"#,
            r#"{"key":"k","value":"v","extra":1}"#,
            r#"{"key":"k","key":"k","value":"v"}"#,
            r#"{"key":1,"value":"v"}"#,
            r#"{"key":"k","value":"v"} x"#,
        ] {
            assert!(
                matches!(decode_line(bad), Err(LineError::Json(_))),
                "{bad:?}"
            );
        }
    }

    /// Both decoders on one line: the fast one (if it answers) and serde.
    fn both(line: &str) -> (Option<KeyValue>, Result<KeyValue, LineError>) {
        let (mut k, mut v) = (b"old".to_vec(), b"old".to_vec());
        let fast = fast::decode(line.as_bytes(), &mut k, &mut v).then_some((k, v));
        (fast, decode_general(line))
    }

    #[test]
    fn the_fast_path_decodes_every_escape_as_serde_does() {
        for line in [
            r#"{"key":"a\"b\\c\/d","value":"\b\f\n\r\t"}"#,
            r#"{"key":"\u00e9\u0000\u001f\u20AC","value":""}"#,
            r#"{"key":"","value_b64":""}"#,
            r#"{"key_b64":"/wBr","value_b64":"AQID"}"#,
            "{\"key\":\"ключ ✓\",\"value\":\"\u{7f}\"}",
        ] {
            let (fast, general) = both(line);
            assert!(fast.is_some(), "{line}: the fast path declined");
            assert_eq!(Ok(fast.unwrap()), general, "{line}");
        }
        let (fast, general) = both(r#"{"key":"a\"b","value":"\b\f\n\r\t"}"#);
        assert_eq!(
            fast.unwrap(),
            (b"a\"b".to_vec(), b"\x08\x0c\n\r\t".to_vec())
        );
        assert!(general.is_ok());
    }

    #[test]
    fn the_fast_path_leaves_other_shapes_and_errors_to_serde() {
        for line in [
            // Valid, but not the written shape: serde decodes them.
            r#"{ "key":"k","value":"v"}"#,
            r#"{"value":"v","key":"k"}"#,
            r#"{"key":"k","value":"v"} "#,
            r#"{"key":"\ud83d\ude00","value":""}"#,
            r#"{"key":"k","value":null,"value_b64":"AA=="}"#,
            r#"{"key_b64":"a\/8=","value":""}"#,
            // Errors: serde names them.
            "{\"key\":\"a\u{1}\",\"value\":\"\"}",
            r#"{"key":"\x","value":""}"#,
            r#"{"key":"\u12","value":""}"#,
            r#"{"key":"\ud800","value":""}"#,
            r#"{"key_b64":"aw","value":""}"#,
            r#"{"key":"k","value":"v"}x"#,
            r#"{"key":"k","value":"v""#,
            r#"{"key":"k","value":1}"#,
        ] {
            let (fast, general) = both(line);
            assert_eq!(fast, None, "{line}: the fast path answered");
            assert_eq!(decode_line(line), general, "{line}");
        }
    }

    /// Characters that make edited dump lines interesting for a JSON parser.
    const EDITS: &[char] = &[
        '{', '}', '"', '\\', ':', ',', ' ', 'u', 'b', 'f', 'n', 'r', 't', '/', '0', '9', 'a', 'D',
        'd', '8', 'e', 'k', 'y', 'v', 'l', '_', '6', '4', '=', '+', '\u{1}', 'é', '😀',
    ];

    proptest! {
        #[test]
        fn written_lines_take_the_fast_path(
            key in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::collection::vec(any::<u8>(), 0..80),
            text in "\\PC{0,20}",
        ) {
            for (k, v) in [(key.clone(), value.clone()), (text.clone().into_bytes(), key.clone())] {
                let line = encode_line(&k, &v);
                let (fast, general) = both(&line);
                prop_assert_eq!(fast, Some((k.clone(), v.clone())));
                prop_assert_eq!(general, Ok((k, v)));
            }
        }

        /// Whatever a line holds, decode_line answers as serde does; the fast path, when it
        /// answers, with the same pair.
        #[test]
        fn edited_lines_decode_as_serde_decodes_them(
            key in "\\PC{0,12}",
            value in proptest::collection::vec(any::<u8>(), 0..24),
            edits in proptest::collection::vec(
                (any::<proptest::sample::Index>(), 0..3u8, proptest::sample::select(EDITS)),
                1..4,
            ),
        ) {
            let mut chars: Vec<char> = encode_line(key.as_bytes(), &value).chars().collect();
            for (at, op, c) in edits {
                let i = at.index(chars.len() + 1);
                match op {
                    0 => chars.insert(i, c),
                    1 if i < chars.len() => { chars.remove(i); }
                    _ if i < chars.len() => chars[i] = c,
                    _ => chars.push(c),
                }
            }
            let line: String = chars.into_iter().collect();
            let (fast, general) = both(&line);
            if let Some(pair) = fast {
                prop_assert_eq!(Ok(pair), general.clone(), "{}", line);
            }
            prop_assert_eq!(decode_line(&line), general.clone(), "{}", line);
            let (mut k, mut v) = (Vec::new(), Vec::new());
            let into = decode_line_into(&line, &mut k, &mut v).map(|()| (k, v));
            prop_assert_eq!(into, general, "{}", line);
        }

        #[test]
        fn any_pair_round_trips(
            key in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::collection::vec(any::<u8>(), 0..80),
            text in "\\PC{0,20}",
        ) {
            for (k, v) in [(key.clone(), value.clone()), (text.clone().into_bytes(), key.clone())] {
                let line = encode_line(&k, &v);
                prop_assert!(!line.contains('\n'));
                prop_assert_eq!(decode_line(&line), Ok((k, v)));
            }
        }
    }
}
