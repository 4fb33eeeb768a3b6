//! One trace as a clickable waterfall: a `<details>` per trace (opens
//! without script), a row per span indented under its parent with a bar
//! on the trace's time axis, and the span's details under it on a click.

use std::fmt::Write as _;

use super::escape;
use crate::{
    report::{traces::Trace, waterfall::PARENT_MISSING},
    sinks::latency_table::format_duration,
};

pub fn waterfall(trace: &Trace<'_>) -> String {
    let total = trace.duration_ns().max(1) as f64;
    let errors = trace.errors();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<details class=\"trace\" id=\"trace-{id}\"><summary><span class=\"id\">{id}</span> <span class=\"dur\">{}</span> {} spans, {} processes{}{}</summary>",
        format_duration(trace.duration_ns()),
        trace.rows.len(),
        trace.processes(),
        if errors > 0 {
            format!(", <span class=\"errtext\">{errors} errors</span>")
        } else {
            String::new()
        },
        trace
            .rows
            .first()
            .map(|r| format!(" — {}", escape(&r.span.name)))
            .unwrap_or_default(),
        id = escape(trace.id),
    );
    out.push_str("<div class=\"waterfall\">\n");
    for row in &trace.rows {
        let span = row.span;
        let left = (span.start_ns.saturating_sub(trace.start_ns)) as f64 / total * 100.0;
        let width = (span.duration_ns() as f64 / total * 100.0).max(0.3);
        let class = if span.error { "span err" } else { "span" };
        let missing = if row.parent_missing {
            format!(" <span class=\"missing\">{PARENT_MISSING}</span>")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<div class=\"{class}\" tabindex=\"0\"><div class=\"label\" style=\"padding-left:{}em\"><b>{}</b> <i>{}</i> {}{missing}</div><div class=\"status\">{}</div><div class=\"dur\">{}</div><div class=\"track\"><div class=\"bar\" style=\"left:{left:.2}%;width:{width:.2}%\"></div></div></div>",
            row.depth as f64 * 1.2,
            escape(&span.service),
            span.kind.as_str(),
            escape(&span.name),
            if span.error { "error" } else { "ok" },
            format_duration(span.duration_ns()),
        );
        let mut details = format!(
            "span {} · parent {} · pid {} · protocol {}",
            span.span_id,
            span.parent_span_id.as_deref().unwrap_or("none"),
            span.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            span.protocol.as_deref().unwrap_or("?"),
        );
        if let Some(server) = &span.server_endpoint {
            let _ = write!(details, " · server {server}");
        }
        if let Some(client) = &span.client_address {
            let _ = write!(details, " · client {client}");
        }
        if let Some(status) = &span.status_detail {
            let _ = write!(details, " · {status}");
        }
        let _ = writeln!(
            out,
            "<div class=\"span-detail\" hidden>{}</div>",
            escape(&details)
        );
    }
    out.push_str("</div></details>\n");
    out
}
