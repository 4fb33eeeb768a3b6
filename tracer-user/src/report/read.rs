//! Reading OTLP-JSON lines (what `--output-file` writes, or the
//! OpenTelemetry Collector's file exporter) into [`SpanRecord`]s: the one
//! reader behind every `tracer report` output. Bad lines and spans are
//! counted and skipped, never fatal to the rest.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
    path::PathBuf,
};

use serde_json::Value;

use super::{
    model::{Kind, SpanRecord},
    ReportError,
};

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

/// Reads every file into spans, with a line on `notes` per file that could
/// not be read; an error when no span at all could be read.
pub fn read_files(
    files: &[PathBuf],
    notes: &mut impl Write,
) -> Result<(Vec<SpanRecord>, ReadStats), ReportError> {
    let mut spans = Vec::new();
    let mut stats = ReadStats::default();
    for path in files {
        match File::open(path) {
            Ok(file) => {
                stats.files += 1;
                if let Err(err) = read(BufReader::new(file), &mut spans, &mut stats) {
                    writeln!(notes, "tracer: reading {}: {err}", path.display())?;
                }
            }
            Err(err) => {
                stats.unreadable_files += 1;
                writeln!(notes, "tracer: cannot read {}: {err}", path.display())?;
            }
        }
    }
    if spans.is_empty() {
        if stats.malformed_lines > 0 {
            writeln!(
                notes,
                "tracer: {} malformed lines skipped",
                stats.malformed_lines
            )?;
        }
        let names = files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ReportError::NothingRead(names));
    }
    Ok((spans, stats))
}

/// Appends every span of one OTLP-JSON lines stream to `spans`.
pub fn read(
    mut input: impl BufRead,
    spans: &mut Vec<SpanRecord>,
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
                add_request(&request, spans, stats);
            }
            _ => stats.malformed_lines += 1,
        }
    }
}

fn add_request(request: &Value, spans: &mut Vec<SpanRecord>, stats: &mut ReadStats) {
    for resource_spans in request["resourceSpans"].as_array().into_iter().flatten() {
        let resource = &resource_spans["resource"]["attributes"];
        let service = attribute(resource, "service.name")
            .and_then(text)
            .unwrap_or_else(|| "unknown_service".to_owned());
        let pid = attribute(resource, "process.pid").and_then(int);
        for scope_spans in resource_spans["scopeSpans"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for span in scope_spans["spans"].as_array().into_iter().flatten() {
                match parse_span(span, &service, pid) {
                    Some(record) => {
                        stats.spans += 1;
                        spans.push(record);
                    }
                    None => stats.malformed_spans += 1,
                }
            }
        }
    }
}

fn parse_span(span: &Value, service: &str, pid: Option<i64>) -> Option<SpanRecord> {
    let name = span["name"].as_str()?;
    let start_ns = nanos(&span["startTimeUnixNano"])?;
    let end_ns = nanos(&span["endTimeUnixNano"])?;
    let trace_id = hex_id(&span["traceId"], 32)?;
    let span_id = hex_id(&span["spanId"], 16)?;
    // Absent, empty or all zeros: no parent.
    let parent_span_id = match &span["parentSpanId"] {
        Value::Null => None,
        Value::String(s) if s.is_empty() || s.bytes().all(|b| b == b'0') => None,
        other => Some(hex_id(other, 16)?),
    };
    // Enums may be written as numbers (OTLP/JSON) or names (protojson).
    let kind = match &span["kind"] {
        Value::Number(n) => Kind::from_otlp(n.as_u64().unwrap_or(0)),
        Value::String(s) => match s.as_str() {
            "SPAN_KIND_INTERNAL" => Kind::Internal,
            "SPAN_KIND_SERVER" => Kind::Server,
            "SPAN_KIND_CLIENT" => Kind::Client,
            "SPAN_KIND_PRODUCER" => Kind::Producer,
            "SPAN_KIND_CONSUMER" => Kind::Consumer,
            _ => Kind::Unspecified,
        },
        _ => Kind::Unspecified,
    };
    let error = match &span["status"]["code"] {
        Value::Number(n) => n.as_u64() == Some(2),
        Value::String(s) => s == "STATUS_CODE_ERROR",
        _ => false,
    };
    let attrs = &span["attributes"];
    let text = |key: &str| attribute(attrs, key).and_then(text);
    let server_endpoint = match (text("server.address"), text("server.port")) {
        (Some(address), Some(port)) => Some(format!("{address}:{port}")),
        (Some(address), None) => Some(address),
        (None, _) if kind == Kind::Client => {
            match (text("network.peer.address"), text("network.peer.port")) {
                (Some(address), Some(port)) => Some(format!("{address}:{port}")),
                (address, _) => address,
            }
        }
        _ => None,
    };
    let client_address = text("client.address").or_else(|| {
        (kind == Kind::Server)
            .then(|| text("network.peer.address"))
            .flatten()
    });
    let status_detail = [
        "http.response.status_code",
        "rpc.grpc.status_code",
        "db.response.status_code",
        "error.type",
    ]
    .into_iter()
    .find_map(|key| text(key).map(|value| format!("{key}={value}")));
    Some(SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        name: name.to_owned(),
        kind,
        error,
        start_ns,
        end_ns,
        service: service.to_owned(),
        pid,
        protocol: protocol(attrs),
        server_endpoint,
        client_address,
        status_detail,
    })
}

/// The application protocol, in the tracer's own names, from what the
/// semantic conventions put on a span.
fn protocol(attrs: &Value) -> Option<String> {
    let text = |key: &str| attribute(attrs, key).and_then(text);
    if let Some(rpc) = text("rpc.system") {
        return Some(rpc);
    }
    if let Some(db) = text("db.system.name").or_else(|| text("db.system")) {
        return Some(db);
    }
    if attribute(attrs, "dns.question.name").is_some() {
        return Some("dns".into());
    }
    match text("network.protocol.name").as_deref() {
        Some("http") => match text("network.protocol.version").as_deref() {
            Some("2" | "2.0") => Some("http2".into()),
            _ => Some("http".into()),
        },
        Some(other) => Some(other.to_owned()),
        None => attribute(attrs, "http.request.method").map(|_| "http".into()),
    }
}

/// The value of `key` in an OTLP `KeyValue` list.
fn attribute<'a>(list: &'a Value, key: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// An `AnyValue` as text (strings, integers, booleans, doubles).
fn text(value: &Value) -> Option<String> {
    if let Some(s) = value["stringValue"].as_str() {
        return Some(s.to_owned());
    }
    if let Some(i) = int(value) {
        return Some(i.to_string());
    }
    if let Some(b) = value["boolValue"].as_bool() {
        return Some(b.to_string());
    }
    value["doubleValue"].as_f64().map(|d| d.to_string())
}

/// An `AnyValue`'s `intValue`: a decimal string in OTLP/JSON, or a number.
fn int(value: &Value) -> Option<i64> {
    match &value["intValue"] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A fixed64 as OTLP/JSON writes it (a decimal string) or as a number.
fn nanos(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A trace or span id of `digits` hex digits, lower-cased.
fn hex_id(value: &Value, digits: usize) -> Option<String> {
    let s = value.as_str()?;
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}
