//! Parsing restore targets as people write them: `latest`, an RFC 3339 time, epoch
//! milliseconds, `lsn:N` (or `rev:N`, the same: a watched etcd cluster's LSNs are its
//! revisions), `label:NAME`.

use tito_catalog::Target;

use crate::error::RestoreError;

/// Parse a restore target. Errors say what forms are accepted.
pub fn parse_target(s: &str) -> Result<Target, RestoreError> {
    let bad = |reason: &str| RestoreError::BadTarget {
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.eq_ignore_ascii_case("latest") {
        return Ok(Target::Latest);
    }
    for form in ["lsn:", "rev:"] {
        if let Some(n) = s.strip_prefix(form) {
            return n
                .parse::<u64>()
                .map(Target::Lsn)
                .map_err(|_| bad(&format!("{form} must be followed by a whole number")));
        }
    }
    if let Some(name) = s.strip_prefix("label:") {
        tito_format::repo::validate_restore_point_name(name).map_err(|e| bad(&e.to_string()))?;
        return Ok(Target::Label(name.to_string()));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let ms = s
            .parse::<u64>()
            .map_err(|_| bad("the number is too large"))?;
        // Seconds are a classic mistake (the original module mixed both): refuse them.
        if ms < 100_000_000_000 {
            return Err(bad(
                "epoch times must be in milliseconds (13 digits for current dates)",
            ));
        }
        return Ok(Target::Time(ms));
    }
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) if t.timestamp_millis() >= 0 => Ok(Target::Time(t.timestamp_millis() as u64)),
        Ok(_) => Err(bad("times before 1970 are not supported")),
        Err(e) => Err(bad(&format!(
            "not latest, lsn:N, rev:N, label:NAME, epoch milliseconds, or an RFC 3339 time like 2026-11-28T15:04:05Z ({e})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_target("latest").unwrap(), Target::Latest);
        assert_eq!(parse_target("lsn:42").unwrap(), Target::Lsn(42));
        assert_eq!(parse_target("rev:42").unwrap(), Target::Lsn(42));
        assert_eq!(
            parse_target("label:before-deploy").unwrap(),
            Target::Label("before-deploy".into())
        );
        assert_eq!(
            parse_target("1764342245123").unwrap(),
            Target::Time(1_764_342_245_123)
        );
        assert_eq!(
            parse_target("2025-11-28T15:04:05.123Z").unwrap(),
            Target::Time(1_764_342_245_123)
        );
        assert_eq!(
            parse_target("2025-11-28T16:04:05.123+01:00").unwrap(),
            Target::Time(1_764_342_245_123)
        );
    }

    #[test]
    fn bad_inputs_say_why() {
        for bad in [
            "",
            "lsn:",
            "lsn:x",
            "rev:",
            "rev:-1",
            "label:",
            "label:a/b",
            "1764342245",
            "yesterday",
            "2025-13-01T00:00:00Z",
        ] {
            let err = parse_target(bad).unwrap_err().to_string();
            assert!(err.contains("restore target"), "{bad}: {err}");
        }
    }
}
