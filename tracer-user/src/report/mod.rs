//! `tracer report FILE...`: the latency table from stored OTLP-JSON lines
//! (what `--output-file` writes, or the OpenTelemetry Collector's file
//! exporter). Bad input is counted and reported, never fatal to the rest.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use serde_json::Value;
use thiserror::Error;

pub use crate::sinks::latency_table::LatencyTable;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("no spans could be read from {0}")]
    NothingRead(String),
    #[error("writing the report: {0}")]
    Output(#[from] io::Error),
}

/// What reading the files found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub files: u64,
    pub unreadable_files: u64,
    pub lines: u64,
    pub malformed_lines: u64,
    pub spans: u64,
    pub malformed_spans: u64,
}

/// Reads `files`, prints the table on `out` and a one-line account on
/// `notes` (with a line per unreadable file).
pub fn run(
    files: &[PathBuf],
    out: &mut impl Write,
    notes: &mut impl Write,
) -> Result<ReadStats, ReportError> {
    let mut table = LatencyTable::default();
    let mut stats = ReadStats::default();
    for path in files {
        match File::open(path) {
            Ok(file) => {
                stats.files += 1;
                if let Err(err) = read(BufReader::new(file), &mut table, &mut stats) {
                    writeln!(notes, "tracer: reading {}: {err}", path.display())?;
                }
            }
            Err(err) => {
                stats.unreadable_files += 1;
                writeln!(notes, "tracer: cannot read {}: {err}", path.display())?;
            }
        }
    }
    let names = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if stats.spans == 0 {
        if stats.malformed_lines > 0 {
            writeln!(
                notes,
                "tracer: {} malformed lines skipped",
                stats.malformed_lines
            )?;
        }
        return Err(ReportError::NothingRead(names));
    }
    out.write_all(table.render(usize::MAX).as_bytes())?;
    // The table first, then the account, even when both go to a terminal.
    out.flush()?;
    writeln!(
        notes,
        "tracer: {} spans from {} file(s); {} malformed lines and {} malformed spans skipped",
        stats.spans, stats.files, stats.malformed_lines, stats.malformed_spans
    )?;
    Ok(stats)
}

/// Adds every span of one OTLP-JSON lines stream to `table`.
pub fn read(
    mut input: impl BufRead,
    table: &mut LatencyTable,
    stats: &mut ReadStats,
) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        stats.lines += 1;
        match serde_json::from_slice::<Value>(&line) {
            Ok(request) if request.get("resourceSpans").is_some_and(Value::is_array) => {
                add_request(&request, table, stats);
            }
            _ => stats.malformed_lines += 1,
        }
    }
}

fn add_request(request: &Value, table: &mut LatencyTable, stats: &mut ReadStats) {
    for resource_spans in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource_spans["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|kv| kv["key"] == "service.name")
            .and_then(|kv| kv["value"]["stringValue"].as_str())
            .unwrap_or("unknown_service");
        for scope_spans in resource_spans["scopeSpans"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for span in scope_spans["spans"].as_array().into_iter().flatten() {
                match parse_span(span) {
                    Some(s) => {
                        stats.spans += 1;
                        table.record(service, s.kind, s.name, s.duration_ns, s.error);
                    }
                    None => stats.malformed_spans += 1,
                }
            }
        }
    }
}

struct StoredSpan<'a> {
    name: &'a str,
    kind: &'static str,
    duration_ns: u64,
    error: bool,
}

fn parse_span(span: &Value) -> Option<StoredSpan<'_>> {
    let name = span["name"].as_str()?;
    let start = nanos(&span["startTimeUnixNano"])?;
    let end = nanos(&span["endTimeUnixNano"])?;
    // Enums may be written as numbers (OTLP/JSON) or names (protojson).
    let kind = match &span["kind"] {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => match s.as_str() {
            "SPAN_KIND_INTERNAL" => 1,
            "SPAN_KIND_SERVER" => 2,
            "SPAN_KIND_CLIENT" => 3,
            "SPAN_KIND_PRODUCER" => 4,
            "SPAN_KIND_CONSUMER" => 5,
            _ => 0,
        },
        _ => 0,
    };
    let kind = match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    };
    let error = match &span["status"]["code"] {
        Value::Number(n) => n.as_u64() == Some(2),
        Value::String(s) => s == "STATUS_CODE_ERROR",
        _ => false,
    };
    Some(StoredSpan {
        name,
        kind,
        duration_ns: end.saturating_sub(start),
        error,
    })
}

/// A fixed64 as OTLP/JSON writes it (a decimal string) or as a number.
fn nanos(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The table for one path, for tests and callers that want numbers.
pub fn table_of(path: &Path) -> io::Result<(LatencyTable, ReadStats)> {
    let mut table = LatencyTable::default();
    let mut stats = ReadStats::default();
    read(BufReader::new(File::open(path)?), &mut table, &mut stats)?;
    Ok((table, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn reads_back_what_the_file_sink_writes() {
        let mut table = LatencyTable::default();
        let mut stats = ReadStats::default();
        read(stored_lines().as_slice(), &mut table, &mut stats).unwrap();
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
        input.extend(b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"x\"}, {\"name\":\"y\",\"kind\":\"SPAN_KIND_CLIENT\",\"startTimeUnixNano\":5,\"endTimeUnixNano\":\"9\",\"status\":{\"code\":\"STATUS_CODE_ERROR\"}}]}]}]}\n");
        input.extend(b"{\"resourceSpans\":[");
        let mut table = LatencyTable::default();
        let mut stats = ReadStats::default();
        read(input.as_slice(), &mut table, &mut stats).unwrap();
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
        let err = run(&[missing, junk.clone()], &mut out, &mut notes).unwrap_err();
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
        let stats = run(&[good, junk], &mut out, &mut notes).unwrap();
        assert_eq!((stats.spans, stats.malformed_lines), (3, 1));
        assert!(String::from_utf8(out).unwrap().contains("GET /index.html"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
