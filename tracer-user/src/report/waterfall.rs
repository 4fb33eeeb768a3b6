//! `--traces`: traces as terminal waterfalls. One line per span, indented
//! by depth: process, kind, name, status, duration and a bar placed on the
//! trace's time axis.

use std::fmt::Write as _;

use super::traces::Trace;
use crate::sinks::latency_table::format_duration;

/// Cells of the time axis.
const BAR_WIDTH: usize = 40;
/// Longest span name shown; longer ones end in `…`.
const MAX_NAME: usize = 48;
/// Shown after a root whose parent span is not in the files.
pub const PARENT_MISSING: &str = "(parent not in files)";

/// The waterfalls of `traces`, a blank line between them.
pub fn render(traces: &[&Trace<'_>]) -> String {
    let mut out = String::new();
    for (i, trace) in traces.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_one(trace, &mut out);
    }
    out
}

fn render_one(trace: &Trace<'_>, out: &mut String) {
    let spans = trace.rows.len();
    let processes = trace.processes();
    let _ = write!(
        out,
        "trace {}  {}  {spans} span{}, {processes} process{}",
        trace.id,
        format_duration(trace.duration_ns()),
        if spans == 1 { "" } else { "s" },
        if processes == 1 { "" } else { "es" },
    );
    let errors = trace.errors();
    if errors > 0 {
        let _ = write!(
            out,
            ", {errors} error{}",
            if errors == 1 { "" } else { "s" }
        );
    }
    out.push('\n');
    let labels: Vec<String> = trace
        .rows
        .iter()
        .map(|row| {
            let mut label = format!(
                "{:indent$}{} {} {}",
                "",
                row.span.service,
                row.span.kind.as_str(),
                truncate(&row.span.name, MAX_NAME),
                indent = row.depth * 2
            );
            if row.parent_missing {
                label.push(' ');
                label.push_str(PARENT_MISSING);
            }
            label
        })
        .collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    for (row, label) in trace.rows.iter().zip(&labels) {
        let pad = width - label.chars().count();
        let status = if row.span.error { "error" } else { "ok" };
        let _ = writeln!(
            out,
            "  {label}{:pad$}  {status:<5}  {:>9}  │{}│",
            "",
            format_duration(row.span.duration_ns()),
            bar(
                trace.start_ns,
                trace.end_ns,
                row.span.start_ns,
                row.span.end_ns
            ),
        );
    }
}

/// The span's place on the trace's time axis, at least one cell wide.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "cells between 0 and BAR_WIDTH (a span may end past its trace only in bad input; `as` saturates and the clamp bounds it)"
)]
pub fn bar(trace_start: u64, trace_end: u64, start: u64, end: u64) -> String {
    let total = trace_end.saturating_sub(trace_start).max(1) as f64;
    let cell = |t: u64| t.saturating_sub(trace_start) as f64 / total * BAR_WIDTH as f64;
    let first = (cell(start).floor() as usize).min(BAR_WIDTH - 1);
    let last = (cell(end).ceil() as usize).clamp(first + 1, BAR_WIDTH);
    (0..BAR_WIDTH)
        .map(|i| {
            if (first..last).contains(&i) {
                '█'
            } else {
                ' '
            }
        })
        .collect()
}

/// `s` on one line (control characters as spaces), at most `max` chars.
pub fn truncate(s: &str, max: usize) -> String {
    let one_line = s.chars().map(|c| if c.is_control() { ' ' } else { c });
    if s.chars().count() <= max {
        one_line.collect()
    } else {
        let mut t: String = one_line.take(max - 1).collect();
        t.push('…');
        t
    }
}
