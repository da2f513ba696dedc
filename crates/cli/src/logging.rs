//! Logging through tracing to stderr: warnings by default, `-v` debug for Tito's crates,
//! `-vv` trace for everything. `RUST_LOG` wins when set.

use tracing_subscriber::EnvFilter;

/// The filter for a verbosity level.
pub fn filter_for(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn",
        1 => {
            "info,tito=debug,tito_engine=debug,tito_capture=debug,tito_queue=debug,tito_store=debug,tito_format=debug,tito_catalog=debug,tito_backup=debug,tito_restore=debug"
        }
        _ => "trace",
    }
}

/// Install the global subscriber (once; later calls do nothing).
pub fn init(verbose: u8) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(filter_for(verbose)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose > 0)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse() {
        for v in 0..3 {
            EnvFilter::try_new(filter_for(v)).expect("valid filter");
        }
    }
}
