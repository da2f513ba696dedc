//! The log record: one committed transaction's mutations (codec to be written).
