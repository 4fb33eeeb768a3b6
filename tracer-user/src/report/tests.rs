use super::{
    model::{Kind, SpanRecord},
    *,
};
use crate::{
    sinks::{
        json::tests::sample_span,
        otlp::{encode, json},
        resource::ResourceConfig,
    },
    spans::SpanStatus,
};

fn stored_lines() -> Vec<u8> {
    let mut ok = sample_span();
    ok.end_time_unix_nano = ok.start_time_unix_nano + 2_000_000;
    let mut failed = sample_span();
    failed.status = SpanStatus::Error;
    let mut out = Vec::new();
    json::write_line(
        &mut out,
        &encode::request([&ok, &ok], &ResourceConfig::default()),
    );
    json::write_line(
        &mut out,
        &encode::request([&failed], &ResourceConfig::default()),
    );
    out
}

/// The latency table of `spans`, as `tracer report` prints it.
fn table(spans: &[SpanRecord]) -> LatencyTable {
    let mut table = LatencyTable::default();
    for s in spans {
        table.record(
            &s.service,
            s.kind.as_str(),
            &s.name,
            s.duration_ns(),
            s.error,
        );
    }
    table
}

#[test]
fn reads_back_what_the_file_sink_writes() {
    let mut spans = Vec::new();
    let mut stats = ReadStats::default();
    read(stored_lines().as_slice(), &mut spans, &mut stats).unwrap();
    let table = table(&spans);
    assert_eq!((stats.lines, stats.spans, stats.malformed_lines), (2, 3, 0));
    let rows = table.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].service.as_str(), rows[0].kind.as_str()),
        ("nginx", "server")
    );
    assert_eq!((rows[0].count, rows[0].errors), (3, 1));
}

#[test]
fn malformed_input_is_counted_not_fatal() {
    let mut input = b"not json\n{\"resourceSpans\": 3}\n\n\xff\xfe\n".to_vec();
    input.extend(stored_lines());
    input.extend(b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"x\"}, {\"name\":\"y\",\"traceId\":\"0123456789ABCDEF0123456789abcdef\",\"spanId\":\"0123456789abcdef\",\"kind\":\"SPAN_KIND_CLIENT\",\"startTimeUnixNano\":5,\"endTimeUnixNano\":\"9\",\"status\":{\"code\":\"STATUS_CODE_ERROR\"}}]}]}]}\n");
    input.extend(b"{\"resourceSpans\":[");
    let mut spans = Vec::new();
    let mut stats = ReadStats::default();
    read(input.as_slice(), &mut spans, &mut stats).unwrap();
    let table = table(&spans);
    assert_eq!(stats.malformed_lines, 4, "{stats:?}");
    assert_eq!(stats.malformed_spans, 1);
    assert_eq!(stats.spans, 4);
    let y = table
        .rows()
        .into_iter()
        .find(|r| r.operation == "y")
        .unwrap();
    assert_eq!(
        (y.service.as_str(), y.kind.as_str(), y.errors),
        ("unknown_service", "client", 1)
    );
}

#[test]
fn nothing_readable_is_an_error() {
    let dir = std::env::temp_dir().join(format!("tracer-unit-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.jsonl");
    std::fs::write(&junk, "garbage\n").unwrap();
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    let missing = dir.join("missing.jsonl");
    let err = run(
        &[missing, junk.clone()],
        &View::LatencyTable,
        &mut out,
        &mut notes,
    )
    .unwrap_err();
    assert!(matches!(err, ReportError::NothingRead(_)));
    let notes = String::from_utf8(notes).unwrap();
    assert!(
        notes.contains("cannot read") && notes.contains("missing.jsonl"),
        "{notes}"
    );
    assert!(notes.contains("1 malformed lines skipped"), "{notes}");

    let good = dir.join("good.jsonl");
    std::fs::write(&good, stored_lines()).unwrap();
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    let stats = run(&[good, junk], &View::LatencyTable, &mut out, &mut notes).unwrap();
    assert_eq!((stats.spans, stats.malformed_lines), (3, 1));
    assert!(String::from_utf8(out).unwrap().contains("GET /index.html"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Spans the tracer recorded from the proxy chain (testdata/README.md).
fn chain() -> Vec<SpanRecord> {
    recorded(include_bytes!("testdata/chain.jsonl"))
}

/// Spans the tracer recorded from one nginx (testdata/README.md).
fn single_nginx() -> Vec<SpanRecord> {
    recorded(include_bytes!("testdata/nginx.jsonl"))
}

fn recorded(bytes: &[u8]) -> Vec<SpanRecord> {
    let mut spans = Vec::new();
    let mut stats = ReadStats::default();
    read(bytes, &mut spans, &mut stats).unwrap();
    assert_eq!((stats.malformed_lines, stats.malformed_spans), (0, 0));
    spans
}

/// Requests the chain recording holds: `GET /chain/1` to `/chain/6`, the
/// even ones sent with a `traceparent` (trace `7ace000N`).
const CHAIN_REQUESTS: usize = 6;

/// Every row's parent is the nearest row above it one level up, and is
/// the span its `parent_span_id` names; roots name no span of the trace.
fn assert_tree(trace: &traces::Trace<'_>) {
    for (i, row) in trace.rows.iter().enumerate() {
        if row.depth == 0 {
            let parent = row.span.parent_span_id.as_deref();
            assert_eq!(row.parent_missing, parent.is_some(), "{row:?}");
            assert!(parent.is_none_or(|p| trace.rows.iter().all(|r| r.span.span_id != p)));
            continue;
        }
        let above = trace.rows[..i]
            .iter()
            .rev()
            .find(|r| r.depth + 1 == row.depth)
            .expect("a parent above");
        assert_eq!(
            row.span.parent_span_id.as_deref(),
            Some(above.span.span_id.as_str())
        );
        assert!(!row.parent_missing);
    }
}

#[test]
fn chain_traces_are_whole_trees_parent_before_child() {
    let spans = chain();
    assert_eq!(spans.len(), CHAIN_REQUESTS * 9);
    let all = traces::traces(&spans);
    assert_eq!(all.len(), CHAIN_REQUESTS);
    for trace in &all {
        assert_eq!(trace.rows.len(), 9, "{trace:?}");
        assert_tree(trace);
        let depths: Vec<usize> = trace.rows.iter().map(|r| r.depth).collect();
        // nginx server, nginx client, app server, then the app's three
        // calls, each with its server span under it.
        assert_eq!(depths, [0, 1, 2, 3, 4, 3, 4, 3, 4], "{trace:?}");
        let root = &trace.rows[0];
        assert_eq!(
            (root.span.service.as_str(), root.span.kind),
            ("nginx", Kind::Server)
        );
        // The roots of requests sent with a traceparent name curl's span.
        let sent_with_traceparent =
            trace.id.starts_with(&"0".repeat(24)) && trace.id[24..].starts_with("7ace");
        assert_eq!(root.parent_missing, sent_with_traceparent);
    }
    assert!(all
        .windows(2)
        .all(|w| w[0].duration_ns() >= w[1].duration_ns()));
}

#[test]
fn a_trace_split_over_files_is_read_back_whole() {
    let text = std::str::from_utf8(include_bytes!("testdata/chain.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut spans = Vec::new();
    let mut stats = ReadStats::default();
    // Every other line in one "file", the rest in another, the second first.
    for parity in [1, 0] {
        let part: String = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .flat_map(|(_, l)| [*l, "\n"])
            .collect();
        read(part.as_bytes(), &mut spans, &mut stats).unwrap();
    }
    assert!(lines.len() > 1);
    let all = traces::traces(&spans);
    assert_eq!(all.len(), CHAIN_REQUESTS);
    for trace in &all {
        assert_eq!(trace.rows.len(), 9);
        assert_tree(trace);
    }
}

#[test]
fn spans_whose_parent_is_missing_are_marked_roots_never_misplaced() {
    // Without the app's server spans, its client calls lose their parent.
    let spans: Vec<SpanRecord> = chain()
        .into_iter()
        .filter(|s| !(s.service == "python3" && s.kind == Kind::Server))
        .collect();
    let all = traces::traces(&spans);
    assert_eq!(all.len(), CHAIN_REQUESTS);
    for trace in &all {
        assert_eq!(trace.rows.len(), 8);
        assert_tree(trace);
        let orphans: Vec<_> = trace
            .rows
            .iter()
            .filter(|r| r.parent_missing && r.span.service == "python3")
            .collect();
        assert_eq!(orphans.len(), 3, "{trace:?}");
        assert!(orphans
            .iter()
            .all(|r| r.depth == 0 && r.span.kind == Kind::Client));
    }
    let text = waterfall::render(&all.iter().collect::<Vec<_>>());
    assert_eq!(
        text.matches(waterfall::PARENT_MISSING).count(),
        3 * CHAIN_REQUESTS + CHAIN_REQUESTS / 2,
        "{text}"
    );
}

#[test]
fn parents_in_a_cycle_are_shown_once_each() {
    let mut spans = single_nginx();
    spans.truncate(2);
    let (a, b) = (spans[0].span_id.clone(), spans[1].span_id.clone());
    let trace = spans[0].trace_id.clone();
    spans[1].trace_id = trace;
    spans[0].parent_span_id = Some(b);
    spans[1].parent_span_id = Some(a);
    let all = traces::traces(&spans);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].rows.len(), 2);
    assert!(all[0].rows[0].parent_missing);
}

#[test]
fn waterfall_lines_and_bars() {
    let spans = chain();
    let all = traces::traces(&spans);
    let text = waterfall::render(&[&all[0]]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10, "{text}");
    assert!(
        lines[0].starts_with(&format!("trace {}  ", all[0].id)),
        "{text}"
    );
    assert!(lines[0].contains("9 spans, 4 processes"), "{text}");
    assert!(lines[1].starts_with("  nginx server GET /chain/"), "{text}");
    assert!(lines[2].starts_with("    nginx client "), "{text}");
    assert!(lines[3].starts_with("      python3 server "), "{text}");
    // The root spans the whole axis.
    assert!(
        lines[1].ends_with(&format!("│{}│", "█".repeat(40))),
        "{text}"
    );
    for line in &lines[1..] {
        assert_eq!(line.matches('│').count(), 2, "{line}");
        assert!(line.contains(" ok "), "{line}");
    }
    assert_eq!(waterfall::bar(0, 100, 0, 100), "█".repeat(40));
    assert_eq!(
        waterfall::bar(0, 100, 50, 50),
        format!("{}█{}", " ".repeat(20), " ".repeat(19))
    );
    assert_eq!(
        waterfall::bar(0, 100, 100, 100),
        format!("{}█", " ".repeat(39))
    );
    assert_eq!(
        waterfall::bar(5, 5, 5, 5)
            .chars()
            .filter(|&c| c == '█')
            .count(),
        1
    );
}

#[test]
fn chain_service_map_counts_the_requests_sent() {
    use service_map::Seen::{ClientUntraced, Linked};
    let edges = service_map::edges(&chain());
    let got: Vec<(&str, &str, &str, u64, service_map::Seen)> = edges
        .iter()
        .map(|e| {
            (
                e.key.client.as_str(),
                e.key.server.as_str(),
                e.key.protocol.as_str(),
                e.requests,
                e.seen,
            )
        })
        .collect();
    let n = CHAIN_REQUESTS as u64;
    assert_eq!(
        got,
        [
            ("127.0.0.1", "nginx", "http", n, ClientUntraced),
            ("nginx", "python3", "http", n, Linked),
            ("python3", "postgres", "postgresql", n, Linked),
            ("python3", "redis-server", "redis", 2 * n, Linked),
        ]
    );
    assert!(edges.iter().all(|e| e.errors == 0));
    for edge in &edges {
        assert!(edge.percentile_ns(50.0) <= edge.percentile_ns(99.0));
        assert!(edge.percentile_ns(50.0) > 0);
    }
    let text = service_map::render(&edges);
    assert!(text.starts_with("CLIENT"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
}

#[test]
fn untraced_callees_are_named_by_address() {
    // Without redis' and postgres' spans, the app's calls go to addresses.
    let spans: Vec<SpanRecord> = chain()
        .into_iter()
        .filter(|s| s.service != "redis-server" && s.service != "postgres")
        .collect();
    let edges = service_map::edges(&spans);
    let to_peers: Vec<_> = edges
        .iter()
        .filter(|e| e.seen == service_map::Seen::ServerUntraced)
        .collect();
    assert_eq!(to_peers.len(), 2, "{edges:?}");
    for edge in to_peers {
        assert_eq!(edge.key.client, "python3");
        assert!(edge.key.server.starts_with("127.0.0.1:"), "{edge:?}");
        let expected = if edge.key.protocol == "redis" { 12 } else { 6 };
        assert_eq!(edge.requests, expected, "{edge:?}");
    }
}

#[test]
fn single_process_run() {
    let spans = single_nginx();
    assert_eq!(spans.len(), 4);
    let all = traces::traces(&spans);
    assert_eq!(all.len(), 4);
    assert!(all
        .iter()
        .all(|t| t.rows.len() == 1 && !t.rows[0].parent_missing));
    let edges = service_map::edges(&spans);
    assert_eq!(edges.len(), 1);
    assert_eq!((edges[0].requests, edges[0].errors), (4, 1));
    assert_eq!(format!("{:.1}", edges[0].error_percent()), "25.0");
    let failed = spans.iter().find(|s| s.error).unwrap();
    assert_eq!(failed.name, "GET /fail");
    assert_eq!(
        failed.status_detail.as_deref(),
        Some("http.response.status_code=503")
    );
}

#[test]
fn html_page_holds_map_latency_errors_and_traces() {
    let spans = chain();
    let page = html::render(&spans, "chain.jsonl");
    assert!(page.starts_with("<!DOCTYPE html>"));
    for service in ["nginx", "python3", "redis-server", "postgres", "127.0.0.1"] {
        assert!(page.contains(&format!(">{service}</text>")), "{service}");
    }
    for trace in traces::traces(&spans) {
        assert!(page.contains(&format!("id=\"trace-{}\"", trace.id)));
    }
    assert_eq!(page.matches("<svg class=\"map\"").count(), 1);
    assert!(page.contains("No span has an error status."));
    // Nothing fetched: no external script, style, image or font.
    for needle in ["src=", "href=\"http", "@import", "url(http"] {
        assert!(!page.contains(needle), "{needle}");
    }

    let mut spans = single_nginx();
    spans[0].name = "<script>alert(1)</script>".into();
    spans[0].service = "a&b".into();
    let page = html::render(&spans, "x");
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("a&amp;b"));
    assert_eq!(page.matches("<script>").count(), 1);
    let failed = spans.iter().find(|s| s.error).unwrap();
    assert!(page.contains(&format!("<a href=\"#trace-{0}\">{0}</a>", failed.trace_id)));
}

#[test]
fn repeated_files_count_each_span_once() {
    let dir = std::env::temp_dir().join(format!("tracer-unit-report-dup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("chain.jsonl");
    std::fs::write(&file, include_bytes!("testdata/chain.jsonl")).unwrap();
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    run(
        &[file.clone(), file.clone()],
        &View::ServiceMap,
        &mut out,
        &mut notes,
    )
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    let notes = String::from_utf8(notes).unwrap();
    assert!(notes.contains("54 repeated spans counted once"), "{notes}");
    assert!(
        out.lines().any(|l| l.split_whitespace().take(4).eq([
            "python3",
            "redis-server",
            "redis",
            "12"
        ])),
        "{out}"
    );

    let (mut out, mut notes) = (Vec::new(), Vec::new());
    let err = run(
        std::slice::from_ref(&file),
        &View::Traces {
            limit: 1,
            trace_id: Some("nope".into()),
        },
        &mut out,
        &mut notes,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"nope\" is not a trace id (32 hex digits)"
    );
    let err = run(
        std::slice::from_ref(&file),
        &View::Traces {
            limit: 1,
            trace_id: Some("F".repeat(32)),
        },
        &mut out,
        &mut notes,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("trace {} is not in ", "f".repeat(32))),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
