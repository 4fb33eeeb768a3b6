//! Project tasks: `cargo xtask setup | build | run | test | fuzz | bench | vm`.
//!
//! Every task first makes sure the machine can build and load eBPF
//! programs (see [`setup`]), so a fresh machine needs nothing but these
//! commands.

mod bench;
mod setup;
mod test_report;
mod vm;

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Build, run, test and benchmark the tracer")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building needs (nightly rust-src, LLVM 22, bpf-linker);
    /// with --test-deps also the servers and clients the tests run.
    Setup {
        #[arg(long)]
        test_deps: bool,
    },
    /// Build the tracer (release) with its eBPF programs.
    Build,
    /// Build, then run the tracer with the given arguments (as root).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Unit and integration tests, loading the real eBPF programs (as root);
    /// without arguments also the integration tests again with the socket
    /// path of kernels before 6.3 forced, the fuzz targets, and the kernel
    /// matrix (5.10, 6.1, 6.12 under qemu, and this machine's kernel).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Runs every fuzz target (cargo fuzz, nightly) for a bounded time.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
    },
    /// Overhead and capacity benchmarks; writes BENCHMARKS.md.
    Bench {
        /// Seconds per load run.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Interleaved rounds of each configuration.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Only these sections (comma-separated: nginx, fixed-rate, redis,
        /// attach, kernel, pipeline, rss); the report goes to stdout and
        /// BENCHMARKS.md is left alone.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Kernel matrix: the smoke suite on Debian kernels under qemu (TCG)
    /// and on the host kernel, as a table; fails when any check does.
    Vm {
        /// Comma-separated: 5.10 (bullseye), 6.1 (bookworm), 6.12
        /// (bookworm-backports), trixie (6.12), host (this machine). Images
        /// are cached in target/vm-cache/kernels/ (delete to refresh).
        #[arg(long, value_delimiter = ',', default_value = "5.10,6.1,6.12,host")]
        kernels: Vec<String>,
        /// Tracer binary to test; without it, `cargo xtask build` runs and
        /// its binary is tested.
        #[arg(long, value_name = "PATH")]
        tracer: Option<PathBuf>,
        /// Keep the initramfs tree and the host run's scratch directory
        /// (under target/vm-cache/) for a look inside.
        #[arg(long)]
        keep: bool,
        /// Seconds one kernel's run may take before it is killed and all
        /// its checks fail (attaching alone takes ~20 s under TCG).
        #[arg(long, default_value_t = VM_TIMEOUT_SECS)]
        timeout: u64,
    },
}

/// Seconds one kernel of the matrix may take.
const VM_TIMEOUT_SECS: u64 = 360;

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup { test_deps } => setup::run(test_deps),
        Task::Build => {
            setup::run(false)?;
            build()
        }
        Task::Run { args } => {
            setup::run(false)?;
            build()?;
            let status = Command::new(tracer_binary())
                .args(&args)
                .status()
                .context("starting target/release/tracer")?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test { args } => {
            setup::run(true)?;
            if !args.is_empty() {
                let (failures, result) = test(&args, &[]);
                test_report::print("cargo test", &failures);
                return result;
            }
            setup::vm()?;
            test_everything()
        }
        Task::Fuzz { seconds } => {
            setup::run(true)?;
            fuzz(seconds, None)
        }
        Task::Bench {
            seconds,
            rounds,
            only,
        } => {
            setup::run(true)?;
            build()?;
            bench::run(seconds, rounds, &only)
        }
        Task::Vm {
            kernels,
            tracer,
            keep,
            timeout,
        } => {
            let tracer = if let Some(path) = tracer {
                path
            } else {
                setup::run(false)?;
                build()?;
                tracer_binary()
            };
            setup::vm()?;
            let passed = vm::run(&vm::Options {
                kernels,
                tracer,
                keep,
                timeout: Duration::from_secs(timeout),
            })?;
            // The table said what failed; an error would only repeat it.
            if !passed {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), std::path::Path::to_path_buf)
}

/// The release binary `build` makes, in `CARGO_TARGET_DIR` when that is
/// set (relative to the workspace, as cargo takes it here).
fn tracer_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace_root().join("target"),
        |dir| workspace_root().join(dir),
    );
    target.join("release/tracer")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Per fuzz target, when `cargo xtask test` runs them: at most this long,
/// and this many inputs from seed 1.
const FUZZ_SECONDS_IN_TEST: u32 = 60;
const FUZZ_RUNS_IN_TEST: u32 = 200_000;
const FUZZ_TARGETS: &[&str] = &["parsers", "decode", "pipeline"];

fn fuzz(seconds: u32, deterministic_runs: Option<u32>) -> Result<()> {
    for target in FUZZ_TARGETS {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let mut libfuzzer_args = vec![
            format!("-max_total_time={seconds}"),
            "-rss_limit_mb=4096".to_owned(),
        ];
        if let Some(runs) = deterministic_runs {
            libfuzzer_args.extend([format!("-runs={runs}"), "-seed=1".to_owned()]);
        }
        run_checked(
            Command::new("rustup")
                .current_dir(workspace_root().join("fuzz"))
                // Parsers need no kernel object; skip its build.
                .env("AYA_BUILD_SKIP", "1")
                .args(["run", "nightly", "cargo", "fuzz", "run", "-O", target, "--"])
                .args(&libfuzzer_args),
        )?;
    }
    Ok(())
}

fn build() -> Result<()> {
    run_checked(cargo().args(["build", "--release", "-p", "tracer-user"]))
}

fn test(extra: &[String], env: &[(&str, &str)]) -> (Vec<test_report::Failure>, Result<()>) {
    // Integration tests start real servers on fixed loopback ports and load
    // kernel programs: one test at a time keeps them from disturbing each
    // other's measurements.
    test_report::run_tests(
        cargo()
            .args([
                "test",
                "--release",
                "--no-fail-fast",
                "-p",
                "tracer-common",
                "-p",
                "tracer-user",
            ])
            .envs(env.iter().copied())
            .args(extra)
            .args(["--", "--test-threads=1"]),
    )
}

/// Integration tests whose spans depend on how the kernel side finds
/// sockets; they run a second time with the file-table path forced, so
/// both paths are tested on every run (export and CLI tests check user-side
/// behaviour only).
const KERNEL_PATH_TESTS: &[&str] = &[
    "http",
    "kv",
    "sql",
    "tls",
    "tls_event_loops",
    "go_tls",
    "go_linking",
    "grpc",
    "linking",
    "reliability",
    "socket_hooks",
    "cgroup",
];

/// Kernels of the matrix `cargo xtask test` runs.
const TEST_KERNELS: &[&str] = &["5.10", "6.1", "6.12", "host"];

const UNIT_AND_INTEGRATION: &str = "unit and integration tests";
const FD_TABLE_INTEGRATION: &str =
    "integration tests with --socket-hooks fd-table (TRACER_SOCKET_HOOKS)";

/// Every stage, each run even when an earlier one failed, so one run shows
/// every failure; fails at the end if any stage did.
fn test_everything() -> Result<()> {
    let fallback_tests: Vec<String> = KERNEL_PATH_TESTS
        .iter()
        .flat_map(|name| ["--test".to_owned(), (*name).to_owned()])
        .collect();
    let failed_tests = std::cell::RefCell::new(Vec::new());
    let tests = |stage: &'static str, extra: &[String], env: &[(&str, &str)]| {
        let (failures, result) = test(extra, env);
        failed_tests.borrow_mut().push((stage, failures));
        result
    };
    let stages: [(&str, &dyn Fn() -> Result<()>); 4] = [
        (UNIT_AND_INTEGRATION, &|| {
            tests(UNIT_AND_INTEGRATION, &[], &[])
        }),
        (FD_TABLE_INTEGRATION, &|| {
            tests(
                FD_TABLE_INTEGRATION,
                &fallback_tests,
                &[("TRACER_SOCKET_HOOKS", "fd-table")],
            )
        }),
        // A bounded fuzz run: parsers meet inputs no capture has. Fixed seed
        // and run count, so CI repeats what passed here; `cargo xtask fuzz`
        // explores with fresh seeds.
        ("fuzz targets", &|| {
            fuzz(FUZZ_SECONDS_IN_TEST, Some(FUZZ_RUNS_IN_TEST))
        }),
        ("kernel matrix", &|| {
            let passed = vm::run(&vm::Options {
                kernels: TEST_KERNELS.iter().map(|k| (*k).to_owned()).collect(),
                tracer: tracer_binary(),
                keep: false,
                timeout: Duration::from_secs(VM_TIMEOUT_SECS),
            })?;
            if passed {
                Ok(())
            } else {
                bail!("a check of the kernel matrix failed (table above)")
            }
        }),
    ];
    let mut failed = Vec::new();
    for (name, stage) in stages {
        eprintln!("xtask: == {name}");
        if let Err(err) = stage() {
            eprintln!("xtask: {name} failed: {err:#}");
            failed.push(name);
        }
    }
    // Last, so a log's tail names what failed.
    for (stage, failures) in failed_tests.borrow().iter() {
        test_report::print(stage, failures);
    }
    if failed.is_empty() {
        eprintln!("xtask: every stage passed");
        Ok(())
    } else {
        bail!("failed: {}", failed.join("; "))
    }
}
