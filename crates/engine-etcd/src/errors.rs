//! Classifying etcd client errors and mapping them onto [`EngineError`] kinds.

use etcd_client::Error;
use tito_engine::EngineError;
use tonic::Code;

/// What an etcd error means for the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The requested revision was compacted away.
    Compacted,
    /// Connection lost, member down, leader change, timeout: the request may be retried
    /// if it is idempotent; a commit's outcome is unknown.
    Transient,
    /// The connection to the endpoint could not be established: the request was
    /// never sent, so nothing applied.
    NotSent,
    /// The request exceeded a server or client size/operation limit; nothing applied.
    TooLarge,
    /// The server rejected the request as invalid; nothing applied.
    Rejected,
}

pub(crate) fn classify(err: &Error) -> Kind {
    match err {
        Error::GRpcStatus(status) => {
            let msg = status.message();
            if msg.contains("compacted") {
                Kind::Compacted
            } else if msg.contains("connect error") {
                Kind::NotSent
            } else if msg.contains("too large")
                || msg.contains("too many operations")
                || status.code() == Code::ResourceExhausted
            {
                Kind::TooLarge
            } else {
                match status.code() {
                    Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::OutOfRange
                    | Code::Unimplemented => Kind::Rejected,
                    _ => Kind::Transient,
                }
            }
        }
        Error::InvalidArgs(_) | Error::InvalidUri(_) | Error::Utf8Error(_) => Kind::Rejected,
        Error::TransportError(e) if format!("{e:?}").contains("ConnectError") => Kind::NotSent,
        _ => Kind::Transient,
    }
}

/// An error of a read (or any request that applied nothing) about `what`.
pub(crate) fn read_error(what: &str, err: Error) -> EngineError {
    match classify(&err) {
        Kind::TooLarge => EngineError::TooLarge(format!("{what}: {err}")),
        _ => EngineError::Backend(format!("etcd {what}: {err}")),
    }
}

/// An error of the commit request itself (the etcd txn was sent): unless the server
/// certainly rejected it, the outcome is unknown.
pub(crate) fn commit_error(what: &str, err: Error) -> EngineError {
    match classify(&err) {
        Kind::TooLarge => EngineError::TooLarge(format!("{what} rejected by etcd: {err}")),
        Kind::Rejected | Kind::Compacted => {
            EngineError::Backend(format!("{what} rejected by etcd: {err}"))
        }
        Kind::NotSent => EngineError::Backend(format!(
            "{what} not sent, nothing was written (etcd endpoint unreachable): {err}"
        )),
        Kind::Transient => EngineError::CommitUnknown(format!("{what}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    fn status(code: Code, msg: &str) -> Error {
        Error::GRpcStatus(Status::new(code, msg))
    }

    #[test]
    fn commit_errors_map_to_engine_kinds() {
        let too_many = status(
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        );
        assert!(matches!(
            commit_error("c", too_many),
            EngineError::TooLarge(_)
        ));
        let too_big = status(Code::InvalidArgument, "etcdserver: request is too large");
        assert!(matches!(
            commit_error("c", too_big),
            EngineError::TooLarge(_)
        ));
        let timeout = status(Code::Unavailable, "etcdserver: request timed out");
        assert!(matches!(
            commit_error("c", timeout),
            EngineError::CommitUnknown(_)
        ));
        let lost = status(Code::Unknown, "transport is closing");
        assert!(matches!(
            commit_error("c", lost),
            EngineError::CommitUnknown(_)
        ));
        let refused = status(Code::Unavailable, "tcp connect error");
        assert!(matches!(
            commit_error("c", refused),
            EngineError::Backend(_)
        ));
        let dup = status(
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        );
        assert!(matches!(commit_error("c", dup), EngineError::Backend(_)));
        let compacted = status(
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        assert_eq!(classify(&compacted), Kind::Compacted);
    }
}
