//! `gatemesh`: parse the command line, run it, print errors as one clear line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEMESH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = gatemesh_node::cli::Cli::parse();
    match gatemesh_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
