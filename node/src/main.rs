//! `gatemesh`: parse the command line, run it, print errors as one clear line.
//!
//! The binary holds what the device library does not: the command line, the demo, and the
//! driver of node processes the demo shares with the test harness (`tests/procs.rs`).

mod cli;
mod demo;
// Shared with the test harness, which uses all of it.
#[allow(dead_code)]
#[path = "../../tests/procs.rs"]
mod procs;

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEMESH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
