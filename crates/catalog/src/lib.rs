//! Tito: catalog (under construction).
