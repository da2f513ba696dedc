//! `tito`: the command-line tool of Tito (continuous backup and point-in-time recovery).
//!
//! Parses the command line ([`args`]), resolves settings ([`config`]), runs one command
//! ([`commands`]) on a tokio runtime, and turns any failure into one line on stderr and a
//! documented exit code ([`exit`]).
#![warn(missing_docs)]

mod args;
mod commands;
mod config;
mod exit;
mod fmt;
mod held;
mod logging;
mod open;
mod progress;

use std::io::Write;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    logging::init(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tito: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILURE);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Background tasks (metrics server, shippers) end with the runtime.
    drop(runtime);
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => std::process::exit(exit::OK),
        Err(e) if e.is_quiet() => std::process::exit(exit::OK),
        Err(e) => {
            eprintln!("tito: {}", e.message);
            std::process::exit(e.code);
        }
    }
}
