//! `gatemesh`: parse the command line, run it, print errors as one clear line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = gatemesh_node::cli::Cli::parse();
    match gatemesh_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
