//! How long `tracer --pid` takes to attach, and where the time goes: the
//! JSON exit summary's `attach` object of a few short runs.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{anyhow, Context as _, Result};
use serde_json::Value;

use super::{children_of, exit_summary, mean, start_nginx};
use crate::tracer_binary;

const RUNS: usize = 5;
/// Programs listed by name: the slowest ones.
const SHOWN_PROGRAMS: usize = 6;

pub(super) fn bench(scratch: &Path, report: &mut String) -> Result<()> {
    let (nginx, _port) = start_nginx(scratch)?;
    let pids = children_of(nginx.0.id());
    let pid_list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut totals = Vec::new();
    let mut offsets = Vec::new();
    let mut objects = Vec::new();
    let mut programs_sum = Vec::new();
    let mut programs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..RUNS {
        let out = Command::new(tracer_binary())
            .args(["--pid", &pid_list, "--duration", "0.2"])
            .args(["--output", "none", "--summary-format", "json"])
            .stdout(Stdio::null())
            .output()
            .context("running the tracer")?;
        let lines: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(str::to_owned)
            .collect();
        let summary = exit_summary(&lines).ok_or_else(|| anyhow!("no exit summary: {lines:?}"))?;
        let attach = &summary["attach"];
        let ms = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        totals.push(ms(&attach["total_ms"]));
        offsets.push(ms(&attach["offsets_ms"]));
        objects.push(ms(&attach["object_ms"]));
        let mut sum = 0.0;
        for (name, took) in attach["programs_ms"].as_object().into_iter().flatten() {
            programs.entry(name.clone()).or_default().push(ms(took));
            sum += ms(took);
        }
        programs_sum.push(sum);
    }
    drop(nginx);
    let _ = writeln!(report, "## Attach time\n");
    let _ = writeln!(
        report,
        "`tracer --pid MASTER,WORKER --duration 0.2 --output none --summary-format json` on an idle nginx, {RUNS} runs; \
         the exit summary's `attach` object: start to the \"attached\" line, reading the kernel's BTF for struct \
         offsets, parsing our object and the kernel's BTF for aya and creating the maps, and loading (verifying) \
         and attaching each program. Programs load on as many threads as there are CPUs (at most 4), so their times \
         add up to more than the wall time they took.\n"
    );
    let _ = writeln!(report, "| | mean ms | min ms | max ms |");
    let _ = writeln!(report, "|---|---|---|---|");
    let row = |report: &mut String, what: &str, values: &[f64]| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            report,
            "| {what} | {:.1} | {min:.1} | {max:.1} |",
            mean(values)
        );
    };
    row(report, "**total (start to attached)**", &totals);
    row(report, "kernel BTF for offsets", &offsets);
    row(report, "object, aya's BTF, maps", &objects);
    row(report, "programs, summed over threads", &programs_sum);
    let mut slowest: Vec<(&String, f64)> = programs.iter().map(|(n, v)| (n, mean(v))).collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, _) in slowest.iter().take(SHOWN_PROGRAMS) {
        if let Some(values) = programs.get(*name) {
            row(report, &format!("`{name}`"), values);
        }
    }
    let _ = writeln!(report);
    Ok(())
}
