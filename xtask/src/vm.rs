//! `cargo xtask vm`: the smoke suite (`xtask/vm/smoke.sh`) on other
//! kernels under qemu, and natively on the host, as one table.
//!
//! The tracer must work on the kernels users run, not only on this
//! machine's: Debian's cloud kernels of bullseye (5.10), bookworm (6.1),
//! bookworm-backports and trixie (6.12) are fetched from the host's own
//! Debian mirror, booted under qemu TCG (KVM does not work on the build
//! machines) with a busybox initramfs holding the tracer and real peers, and
//! each guest reports `SMOKE <check> PASS|FAIL <detail>` lines on its serial
//! console. Everything lands in `target/vm-cache/` under the workspace:
//! kernels (kept between runs), the initramfs (rebuilt every run, the tracer
//! changes) and one console log per kernel in `logs/`.

mod guest;
mod initramfs;
mod kernels;
mod report;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::workspace_root;
use kernels::DebianKernel;
use report::KernelResult;

/// What `cargo xtask vm` was asked to do.
pub struct Options {
    /// Kernel labels: those of [`kernels::DEBIAN_KERNELS`] and `host`.
    pub kernels: Vec<String>,
    pub tracer: PathBuf,
    /// Keep the initramfs tree and the host run's scratch directory.
    pub keep: bool,
    /// How long one kernel may take before its run is killed.
    pub timeout: Duration,
}

/// The label of the native run on this machine's kernel.
const HOST: &str = "host";

/// One column of the table.
enum Target {
    Guest(&'static DebianKernel),
    Host,
}

impl Target {
    fn parse(label: &str) -> Result<Target> {
        if label == HOST {
            return Ok(Target::Host);
        }
        match kernels::DEBIAN_KERNELS.iter().find(|k| k.label == label) {
            Some(kernel) => Ok(Target::Guest(kernel)),
            None => bail!(
                "unknown kernel {label:?}; known: {}, {HOST}",
                kernels::DEBIAN_KERNELS
                    .iter()
                    .map(|k| k.label)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Target::Guest(kernel) => kernel.label,
            Target::Host => HOST,
        }
    }
}

/// Runs the matrix and prints its table; whether every check passed
/// everywhere. Errors are for what keeps the matrix from running at all.
pub fn run(options: &Options) -> Result<bool> {
    let targets = options
        .kernels
        .iter()
        .map(|label| Target::parse(label.trim()))
        .collect::<Result<Vec<_>>>()?;
    if !options.tracer.is_file() {
        bail!(
            "no tracer binary at {}; build it with `cargo xtask build` or pass --tracer PATH",
            options.tracer.display()
        );
    }
    // Absolute: the host run starts it from another directory.
    let tracer = &fs::canonicalize(&options.tracer)
        .with_context(|| format!("resolving {}", options.tracer.display()))?;
    let cache = cache_dir();
    let logs = cache.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    // Downloads first: a network problem shows before minutes of guests.
    let mut fetcher = kernels::Fetcher::new(&cache);
    let images: Vec<Option<Result<PathBuf>>> = targets
        .iter()
        .map(|target| match target {
            Target::Guest(kernel) => Some(fetcher.vmlinuz(kernel)),
            Target::Host => None,
        })
        .collect();
    let initramfs = if images.iter().any(|image| matches!(image, Some(Ok(_)))) {
        Some(initramfs::build(tracer, &cache, options.keep)?)
    } else {
        None
    };

    let mut results = Vec::new();
    for (target, image) in targets.iter().zip(images) {
        let label = target.label();
        let log = logs.join(format!("{label}.log"));
        let run = match (image, &initramfs) {
            (None, _) => guest::run_on_host(tracer, &cache, &log, options),
            (Some(Ok(vmlinuz)), Some(initrd)) => {
                guest::boot(&vmlinuz, initrd, &log, options.timeout)
            }
            (Some(Ok(_)), None) => Err(anyhow!("no initramfs")),
            (Some(Err(e)), _) => Err(e.context("fetching the kernel")),
        };
        let result = match run {
            Ok(run) => KernelResult::from_run(label, &run)?,
            Err(e) => KernelResult::broken(label, format!("{e:#}")),
        };
        eprintln!("xtask: {}", result.one_line());
        results.push(result);
    }

    print!("{}", report::table(&results));
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.all_passed())
        .map(|r| r.label.as_str())
        .collect();
    if !failed.is_empty() {
        eprintln!(
            "xtask: smoke checks failed or missing on: {}; console logs in {}",
            failed.join(", "),
            shown(&logs)
        );
    }
    Ok(failed.is_empty())
}

/// Downloads, the initramfs and console logs: `target/vm-cache/`.
fn cache_dir() -> PathBuf {
    workspace_root().join("target/vm-cache")
}

/// Runs `commands` as a shell pipeline (each one's stdout into the next
/// one's stdin; the last one's stdout as set by the caller) and fails when
/// any of them does.
fn pipeline(commands: &mut [&mut Command]) -> Result<()> {
    let mut children: Vec<(String, Child)> = Vec::new();
    let last = commands.len().saturating_sub(1);
    for (i, cmd) in commands.iter_mut().enumerate() {
        if let Some((_, previous)) = children.last_mut() {
            let stdout = previous
                .stdout
                .take()
                .context("pipeline: no stdout to read from")?;
            cmd.stdin(Stdio::from(stdout));
        }
        if i < last {
            cmd.stdout(Stdio::piped());
        }
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        children.push((format!("{cmd:?}"), child));
    }
    for (name, mut child) in children {
        let status = child
            .wait()
            .with_context(|| format!("waiting for {name}"))?;
        if !status.success() {
            bail!("{name} failed with {status}");
        }
    }
    Ok(())
}

/// `path` relative to the workspace when it is inside it, for messages.
fn shown(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}
