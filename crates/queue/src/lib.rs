//! Tito: queue (under construction).
