//! The `tracer` binary: parse arguments, run, print the summary.

use std::process::ExitCode;

use clap::Parser as _;
use tracer::{app, cli::Args};

fn main() -> ExitCode {
    let args = Args::parse();
    let level = match args.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("TRACER_LOG")
        .format_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tracer: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(args)) {
        Ok(summary) => {
            eprintln!("{}", summary.line());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tracer: {err:#}");
            ExitCode::FAILURE
        }
    }
}
