//! The `tracer` binary: parse arguments, run, print the summary.

use std::{io::Write as _, process::ExitCode};

use clap::Parser as _;
use tracer::{
    app,
    cli::{Args, Command},
    report,
};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Report(report_args)) = &args.command {
        let result = report::run(
            &report_args.files,
            &report_args.view(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        );
        return match result {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("tracer: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let level = match args.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let mut logger = env_logger::Builder::new();
    logger.filter_level(level);
    if args.verbose == 0 {
        // aya warns when it cannot raise RLIMIT_MEMLOCK, harmless on 5.11+;
        // where it matters, the load error says so with what to do.
        logger.filter_module("aya::sys::bpf", log::LevelFilter::Error);
    }
    logger.parse_env("TRACER_LOG").format_target(false).init();
    let summary_format = args.export.summary_format;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tracer: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(args)) {
        Ok(summary) => {
            let text = summary.render(summary_format) + "\n";
            // One write, so that no other stderr line lands inside it.
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tracer: {err:#}");
            ExitCode::FAILURE
        }
    }
}
