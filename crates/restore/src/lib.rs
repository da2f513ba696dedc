//! Tito: restore (under construction).
