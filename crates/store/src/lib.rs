//! Tito: store (under construction).
