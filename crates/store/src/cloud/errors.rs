//! Maps `object_store` errors to [`StoreError`], deciding what is worth retrying.

use crate::error::StoreError;

/// Classifies an `object_store` error for object `key`.
///
/// Transient: 5xx, 408, 429, timeouts, connection failures (anything without an HTTP
/// status). Permanent: other 4xx, permission and configuration problems.
pub(super) fn map_err(key: &str, e: object_store::Error) -> StoreError {
    use object_store::Error as E;
    let key_s = key.to_string();
    match e {
        E::NotFound { .. } => StoreError::NotFound { key: key_s },
        E::AlreadyExists { .. } | E::Precondition { .. } => {
            StoreError::AlreadyExists { key: key_s }
        }
        E::InvalidPath { source } => StoreError::InvalidKey {
            key: key_s,
            reason: source.to_string(),
        },
        E::Generic { .. } => {
            let msg = e.to_string();
            if is_transient_message(&msg) {
                StoreError::Transient {
                    key: key_s,
                    source: Box::new(e),
                }
            } else {
                StoreError::Permanent {
                    key: key_s,
                    source: Box::new(e),
                }
            }
        }
        other => StoreError::Permanent {
            key: key_s,
            source: Box::new(other),
        },
    }
}

/// object_store does not expose its retry error type, so read the status from the text
/// ("Server returned non-2xx status code: 503 ...").
fn is_transient_message(msg: &str) -> bool {
    const MARK: &str = "status code: ";
    match msg.find(MARK) {
        Some(i) => {
            let code: String = msg[i + MARK.len()..].chars().take(3).collect();
            matches!(code.as_bytes().first(), Some(b'5')) || code == "408" || code == "429"
        }
        // No HTTP status: connection refused/reset, timeout, body read error.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::is_transient_message;

    #[test]
    fn classifies_status_codes() {
        assert!(is_transient_message(
            "Server returned non-2xx status code: 503 Service Unavailable"
        ));
        assert!(is_transient_message(
            "Server returned non-2xx status code: 429 Too Many"
        ));
        assert!(!is_transient_message(
            "Server returned non-2xx status code: 403 Forbidden"
        ));
        assert!(!is_transient_message(
            "Server returned non-2xx status code: 400 Bad Request"
        ));
        assert!(is_transient_message(
            "error sending request: connection refused"
        ));
    }
}
