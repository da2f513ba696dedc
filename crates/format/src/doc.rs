//! The envelope of every JSON document (manifest, repository config, timeline history,
//! restore point): the pretty-printed JSON, then one checksum line naming the kind and version.
//!
//! ```text
//! <JSON bytes>\n
//! <kind> v<version> blake3:<64 hex digits of blake3(JSON bytes)>\n
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{FormatError, Result};

/// Encode `value` as a checksummed document of `kind`, version `version`.
pub(crate) fn encode<T: Serialize>(
    object: &str,
    kind: &'static str,
    version: u32,
    value: &T,
) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(value).map_err(|source| FormatError::Json {
        object: object.to_string(),
        kind,
        source,
    })?;
    let hash = blake3::hash(&out).to_hex();
    out.extend_from_slice(format!("\n{kind} v{version} blake3:{hash}\n").as_bytes());
    Ok(out)
}

/// Decode a document of `kind`: checks the checksum line, the version and the JSON.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    object: &str,
    kind: &'static str,
    version: u32,
) -> Result<T> {
    let invalid = |problem: String| FormatError::Invalid {
        object: object.to_string(),
        kind,
        problem,
    };
    let body = bytes
        .strip_suffix(b"\n")
        .ok_or_else(|| FormatError::Truncated {
            object: object.to_string(),
            what: "the checksum line".into(),
        })?;
    let split = body
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or_else(|| FormatError::Truncated {
            object: object.to_string(),
            what: "the checksum line".into(),
        })?;
    let (json, line) = (&body[..split], &body[split + 1..]);
    let line =
        std::str::from_utf8(line).map_err(|_| invalid("checksum line is not UTF-8".into()))?;
    let mut parts = line.split(' ');
    let (Some(found_kind), Some(found_version), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("malformed checksum line {line:?}")));
    };
    if found_kind != kind {
        return Err(invalid(format!(
            "document kind is {found_kind:?}, expected {kind:?}"
        )));
    }
    let found_version: u32 = found_version
        .strip_prefix('v')
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid(format!("malformed version {found_version:?}")))?;
    if found_version != version {
        return Err(FormatError::UnsupportedVersion {
            object: object.to_string(),
            kind,
            version: found_version,
            supported: version,
        });
    }
    let hash = hash
        .strip_prefix("blake3:")
        .ok_or_else(|| invalid(format!("malformed checksum {hash:?}")))?;
    if hash != blake3::hash(json).to_hex().as_str() {
        return Err(FormatError::Checksum {
            object: object.to_string(),
            part: format!("{kind} JSON"),
        });
    }
    serde_json::from_slice(json).map_err(|source| FormatError::Json {
        object: object.to_string(),
        kind,
        source,
    })
}

/// True if `s` is 64 lowercase hex digits (a blake3 digest).
pub(crate) fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A random id of `bytes` random bytes, as lowercase hex.
pub(crate) fn random_id(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    crate::error::hex(&raw)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
