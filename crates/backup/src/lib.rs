//! Tito: backup (under construction).
