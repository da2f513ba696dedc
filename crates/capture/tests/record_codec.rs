//! Property tests of the log record body codec (`tito_format::record`).

use proptest::prelude::*;
use tito_format::record::{LogRecord, Mutation, decode_body, encode_body};

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..8),
        1 => proptest::collection::vec(any::<u8>(), 0..400),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (bytes(), bytes()).prop_map(|(key, value)| Mutation::Put { key, value }),
        bytes().prop_map(|key| Mutation::Delete { key }),
        (bytes(), proptest::option::of(bytes()))
            .prop_map(|(start, end)| Mutation::DeleteRange { start, end }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn body_round_trips(ms in proptest::collection::vec(mutation(), 0..20), lsn: u64, time_ms: u64) {
        let body = encode_body(&ms);
        prop_assert_eq!(decode_body(&body).unwrap(), ms.clone());
        let rec = LogRecord { lsn, time_ms, mutations: ms };
        prop_assert_eq!(LogRecord::from_stamped(lsn, &rec.encode_stamped_value()).unwrap(), rec);
        // No strict prefix of a body decodes.
        for n in 0..body.len() {
            prop_assert!(decode_body(&body[..n]).is_err());
        }
    }

    #[test]
    fn random_bytes_never_panic(mut raw in proptest::collection::vec(any::<u8>(), 0..200), valid_version: bool) {
        if valid_version && !raw.is_empty() {
            raw[0] = 1;
        }
        if let Ok(ms) = decode_body(&raw) {
            // The encoding is canonical: whatever decodes re-encodes to the same bytes.
            prop_assert_eq!(encode_body(&ms), raw);
        }
    }
}
