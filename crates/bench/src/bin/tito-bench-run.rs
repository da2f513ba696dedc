//! Run the benchmark without the CLI: `cargo run --release -p tito-bench --bin
//! tito-bench-run -- [OPTIONS]` prints the table; `--json FILE` also writes the report,
//! `--markdown MACHINE` prints the BENCHMARKS.md section.

use clap::Parser;
use tito_bench::BenchOptions;

/// Command line of the runner.
#[derive(Parser, Debug)]
#[command(name = "tito-bench-run", about = "Tito side-by-side benchmark")]
struct Cli {
    #[command(flatten)]
    bench: BenchOptions,
    /// Engine URL of the source database (memory://, redb:///abs/file; must not exist).
    #[arg(long)]
    engine: Option<String>,
    /// Store URL under which the run writes its repositories (file:///dir, s3://..., memory://).
    #[arg(long)]
    store: Option<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Also print the BENCHMARKS.md section, describing the machine with this text.
    #[arg(long)]
    markdown: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let opts = BenchOptions {
        engine: cli.engine.clone(),
        store: cli.store.clone(),
        ..cli.bench.clone()
    };
    match tito_bench::run(opts).await {
        Ok(report) => {
            print!("{}", report.render_table());
            if let Some(machine) = &cli.markdown {
                println!("\n{}", report.render_markdown(machine));
            }
            if let Some(path) = &cli.json {
                let json = serde_json::to_string_pretty(&report).unwrap_or_default();
                if let Err(e) = std::fs::write(path, json) {
                    eprintln!("error: writing {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
