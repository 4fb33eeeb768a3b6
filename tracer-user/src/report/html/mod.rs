//! `--html OUT.html`: one self-contained page (styles and script inline,
//! nothing fetched) with the service map drawn as a graph, the slowest
//! traces as waterfalls that open on a click, the errors, and the latency
//! distribution per operation. Everything is drawn here, as HTML and
//! SVG; the small script only opens traces and span details.

mod escape;
mod latency;
mod map;
mod trace_view;

use std::fmt::Write as _;

use escape::escape;

use super::{model::SpanRecord, service_map, traces};

/// Slowest traces drawn, besides those with errors.
const SLOWEST_TRACES: usize = 20;
/// Traces with errors drawn, besides the slowest.
const ERROR_TRACES: usize = 20;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("script.js");

/// The page for `spans` (each span once), read from `source` (file names).
pub fn render(spans: &[SpanRecord], source: &str) -> String {
    let all_traces = traces::traces(spans);
    let edges = service_map::edges(spans);
    let services: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s.service.as_str()).collect();
    let mut page = String::with_capacity(64 * 1024);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(page, "<title>tracer report: {}</title>", escape(source));
    let _ = writeln!(page, "<style>\n{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(
        page,
        "<header><h1>tracer report</h1><p class=\"meta\">{} spans, {} traces, {} services from {}</p></header>",
        spans.len(),
        all_traces.len(),
        services.len(),
        escape(source)
    );

    page.push_str("<section id=\"service-map\"><h2>Service map</h2>\n");
    page.push_str(
        "<p class=\"hint\">One arrow per caller, callee and protocol: requests, error rate and \
         p99 (the client's view where a client span exists). Dashed boxes are peers that were \
         not traced, named by address.</p>\n",
    );
    page.push_str(&map::svg(&edges));
    page.push_str(&map::table(&edges));
    page.push_str("</section>\n");

    let errors: Vec<&SpanRecord> = spans.iter().filter(|s| s.error).collect();
    let shown = shown_traces(&all_traces);
    page.push_str("<section id=\"traces\"><h2>Slowest traces</h2>\n");
    page.push_str(
        "<p class=\"hint\">Click a trace to open its waterfall, a span for its details.</p>\n",
    );
    for trace in &shown {
        page.push_str(&trace_view::waterfall(trace));
    }
    page.push_str("</section>\n");
    page.push_str("<section id=\"errors\"><h2>Errors</h2>\n");
    page.push_str(&errors_table(&errors, &shown));
    page.push_str("</section>\n");

    page.push_str("<section id=\"latency\"><h2>Latency by operation</h2>\n");
    page.push_str(&latency::section(spans));
    page.push_str("</section>\n");

    let _ = writeln!(page, "<script>\n{SCRIPT}</script>\n</body>\n</html>");
    page
}

/// The slowest traces, then the slowest of those with errors not already
/// among them.
fn shown_traces<'t, 'a>(all: &'t [traces::Trace<'a>]) -> Vec<&'t traces::Trace<'a>> {
    let mut shown: Vec<&traces::Trace<'a>> = all.iter().take(SLOWEST_TRACES).collect();
    shown.extend(
        all.iter()
            .skip(SLOWEST_TRACES)
            .filter(|t| t.errors() > 0)
            .take(ERROR_TRACES),
    );
    shown
}

/// Errors grouped by service, kind, operation and status, each with the
/// trace of its first occurrence (a link when that trace is drawn).
fn errors_table(errors: &[&SpanRecord], shown: &[&traces::Trace<'_>]) -> String {
    if errors.is_empty() {
        return "<p class=\"ok\">No span has an error status.</p>\n".into();
    }
    let mut groups: std::collections::BTreeMap<(&str, &str, &str, &str), (u64, &str)> =
        std::collections::BTreeMap::new();
    for span in errors {
        let key = (
            span.service.as_str(),
            span.kind.as_str(),
            span.name.as_str(),
            span.status_detail.as_deref().unwrap_or(""),
        );
        groups.entry(key).or_insert((0, &span.trace_id)).0 += 1;
    }
    let mut out = String::from(
        "<table class=\"errors\"><thead><tr><th>Service</th><th>Kind</th><th>Operation</th>\
         <th>Status</th><th>Count</th><th>First trace</th></tr></thead><tbody>\n",
    );
    for ((service, kind, name, detail), (count, trace)) in groups {
        let link = if shown.iter().any(|t| t.id == trace) {
            format!("<a href=\"#trace-{0}\">{0}</a>", escape(trace))
        } else {
            escape(trace)
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{count}</td><td class=\"id\">{link}</td></tr>",
            escape(service),
            kind,
            escape(name),
            escape(detail),
        );
    }
    out.push_str("</tbody></table>\n");
    out
}
