//! The human-readable line:
//! `15:04:05.123456 nginx[1234] HTTP server GET /index.html -> 200 1.23ms 127.0.0.1:54321 -> 127.0.0.1:8080`

use std::io::Write;

use crate::{
    protocols::AttrValue,
    spans::{Span, SpanStatus},
};

/// Appends one line for `span` to `out` (a Vec never fails to write).
pub fn write_text_line(out: &mut Vec<u8>, span: &Span) {
    let _ = write_line(out, span);
}

fn write_line(out: &mut Vec<u8>, span: &Span) -> std::io::Result<()> {
    let secs = span.start_time_unix_nano / 1_000_000_000;
    let micros = (span.start_time_unix_nano % 1_000_000_000) / 1_000;
    let day = secs % 86_400;
    write!(
        out,
        "{:02}:{:02}:{:02}.{:06} {}[{}] {} {} {} -> ",
        day / 3600,
        (day / 60) % 60,
        day % 60,
        micros,
        span.process,
        span.pid,
        span.protocol.as_str().to_uppercase(),
        span.kind.as_str(),
        span.name,
    )?;
    write_outcome(out, span)?;
    write!(out, " {}", Duration(span.duration_ns()))?;
    let client = endpoint(span, "client.address", "client.port");
    let server = endpoint(span, "server.address", "server.port");
    if client.is_some() || server.is_some() {
        write!(
            out,
            " {} -> {}",
            client.as_deref().unwrap_or("?"),
            server.as_deref().unwrap_or("?")
        )?;
    }
    if let Some(parent) = span.parent_span_id {
        write!(out, " trace={} parent={}", span.trace_id, parent)?;
    }
    out.push(b'\n');
    Ok(())
}

/// The most telling result: a status code if the protocol has one.
fn write_outcome(out: &mut Vec<u8>, span: &Span) -> std::io::Result<()> {
    if span.attribute("tracer.response.missing").is_some() {
        return write!(out, "no response");
    }
    for key in [
        "http.response.status_code",
        "rpc.grpc.status_code",
        "db.response.status_code",
        "dns.response.code",
    ] {
        match span.attribute(key) {
            Some(AttrValue::Int(code)) => return write!(out, "{code}"),
            Some(AttrValue::Str(code)) => return write!(out, "{code}"),
            _ => {}
        }
    }
    match span.status {
        SpanStatus::Ok => write!(out, "ok"),
        SpanStatus::Error => write!(out, "error"),
    }
}

fn endpoint(span: &Span, address: &str, port: &str) -> Option<String> {
    let Some(AttrValue::Str(address)) = span.attribute(address) else {
        return None;
    };
    let port = match span.attribute(port) {
        Some(AttrValue::Int(port)) => *port,
        _ => return Some(address.to_string()),
    };
    Some(if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    })
}

struct Duration(u64);

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self.0;
        if ns < 1_000 {
            write!(f, "{ns}ns")
        } else if ns < 1_000_000 {
            write!(f, "{:.1}µs", ns as f64 / 1e3)
        } else if ns < 1_000_000_000 {
            write!(f, "{:.2}ms", ns as f64 / 1e6)
        } else {
            write!(f, "{:.3}s", ns as f64 / 1e9)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::json::tests::sample_span;

    #[test]
    fn one_readable_line() {
        let mut out = Vec::new();
        write_text_line(&mut out, &sample_span());
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "00:00:01.000002 nginx[1234] HTTP server GET /index.html -> 200 1.23ms 127.0.0.1:54321 -> 127.0.0.1:8080\n"
        );
    }
}
