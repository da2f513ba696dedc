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
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
    // serde would also take the fields as a JSON array.
    if !line.trim_start().starts_with('{') {
        return Err(LineError::Json("expected a JSON object".into()));
    }
    let l: Line<'_> = serde_json::from_str(line).map_err(|e| LineError::Json(e.to_string()))?;
    let key = bytes_of("key", l.key, l.key_b64)?;
    let value = bytes_of("value", l.value, l.value_b64)?;
    Ok((key, value))
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

    proptest! {
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
