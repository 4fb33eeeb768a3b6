//! Latency per operation: count, errors, p50/p90/p99 and the distribution
//! as a small histogram on one logarithmic axis shared by every row, so
//! rows compare at a glance.

use std::{collections::BTreeMap, fmt::Write as _};

use super::escape;
use crate::{
    report::{model::SpanRecord, service_map::percentile},
    sinks::latency_table::format_duration,
};

/// Operations shown, the busiest first.
const MAX_ROWS: usize = 200;
/// Buckets per factor of ten.
const PER_DECADE: f64 = 4.0;
const CHART_W: f64 = 260.0;
const CHART_H: f64 = 36.0;

/// Bucket of a duration: quarter decades from 1 µs (durations under it
/// share the first bucket).
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a positive logarithm of a u64, at most 80"
)]
fn bucket(ns: u64) -> usize {
    let decades = ((ns.max(1_000)) as f64 / 1_000.0).log10();
    (decades * PER_DECADE).floor() as usize
}

/// The lower edge of a bucket, in nanoseconds.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "positive and far below u64::MAX for the buckets of u64 durations; `as` saturates"
)]
fn bucket_floor(bucket: usize) -> u64 {
    (1_000.0 * 10f64.powf(bucket as f64 / PER_DECADE)) as u64
}

pub fn section(spans: &[SpanRecord]) -> String {
    let mut ops: BTreeMap<(&str, &str, &str), (Vec<u64>, u64)> = BTreeMap::new();
    for span in spans {
        let op = ops
            .entry((&span.service, span.kind.as_str(), &span.name))
            .or_default();
        op.0.push(span.duration_ns());
        op.1 += u64::from(span.error);
    }
    let mut rows: Vec<_> = ops.into_iter().collect();
    for (_, (durations, _)) in &mut rows {
        durations.sort_unstable();
    }
    rows.sort_by(|a, b| b.1 .0.len().cmp(&a.1 .0.len()).then_with(|| a.0.cmp(&b.0)));
    let hidden = rows.len().saturating_sub(MAX_ROWS);
    rows.truncate(MAX_ROWS);
    let lowest = rows
        .iter()
        .filter_map(|(_, (d, _))| d.first())
        .map(|&ns| bucket(ns))
        .min()
        .unwrap_or(0);
    let highest = rows
        .iter()
        .filter_map(|(_, (d, _))| d.last())
        .map(|&ns| bucket(ns))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<p class=\"hint\">Histograms share one logarithmic axis, {} to {}; the line marks p99.</p>",
        format_duration(bucket_floor(lowest)),
        format_duration(bucket_floor(highest + 1))
    );
    out.push_str(
        "<table class=\"latency\"><thead><tr><th>Service</th><th>Kind</th><th>Operation</th>\
         <th>Count</th><th>Errors</th><th>p50</th><th>p90</th><th>p99</th><th>Distribution</th>\
         </tr></thead><tbody>\n",
    );
    for ((service, kind, name), (durations, errors)) in &rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{kind}</td><td class=\"op\">{}</td><td class=\"num\">{}</td><td class=\"num\">{errors}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(service),
            escape(name),
            durations.len(),
            format_duration(percentile(durations, 50.0)),
            format_duration(percentile(durations, 90.0)),
            format_duration(percentile(durations, 99.0)),
            histogram(durations, lowest, highest),
        );
    }
    out.push_str("</tbody></table>\n");
    if hidden > 0 {
        let _ = writeln!(
            out,
            "<p class=\"hint\">{hidden} less frequent operations not shown.</p>"
        );
    }
    out
}

/// Sorted `durations` as bars over buckets `lowest..=highest`.
fn histogram(durations: &[u64], lowest: usize, highest: usize) -> String {
    let buckets = highest - lowest + 1;
    let mut counts = vec![0u64; buckets];
    for &ns in durations {
        counts[bucket(ns).clamp(lowest, highest) - lowest] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(1).max(1);
    let bar_w = CHART_W / buckets as f64;
    let mut out = format!(
        "<svg class=\"hist\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_W}\" height=\"{CHART_H}\" viewBox=\"0 0 {CHART_W} {CHART_H}\">"
    );
    for (i, &n) in counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let h = (CHART_H - 2.0) * n as f64 / most as f64;
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{} – {}: {n}</title></rect>",
            i as f64 * bar_w,
            CHART_H - h,
            (bar_w - 1.0).max(1.0),
            format_duration(bucket_floor(lowest + i)),
            format_duration(bucket_floor(lowest + i + 1)),
        );
    }
    let p99 = percentile(durations, 99.0).max(1_000) as f64 / 1_000.0;
    let x =
        ((p99.log10() * PER_DECADE - lowest as f64) / buckets as f64 * CHART_W).clamp(0.0, CHART_W);
    let _ = write!(
        out,
        "<line class=\"p99\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{CHART_H}\"/></svg>"
    );
    out
}
