//! The human-readable line:
//! `15:04:05.123456 nginx[1234] HTTP server GET /index.html -> 200 1.23ms 127.0.0.1:54321 -> 127.0.0.1:8080`
//!
//! Written byte by byte into the caller's buffer, as the JSON line is:
//! `core::fmt` and the per-line strings it needed showed in profiles. Only
//! the fractional durations still go through `fmt` (its float rounding).

use std::io::Write;

use super::json::{push_hex, push_int};
use crate::{
    protocols::AttrValue,
    spans::{Span, SpanStatus},
};

/// Appends one line for `span` to `out` (a Vec never fails to write).
pub fn write_text_line(out: &mut Vec<u8>, span: &Span) {
    let secs = span.start_time_unix_nano / 1_000_000_000;
    let micros = (span.start_time_unix_nano % 1_000_000_000) / 1_000;
    let day = secs % 86_400;
    push_padded(out, day / 3600, 2);
    out.push(b':');
    push_padded(out, (day / 60) % 60, 2);
    out.push(b':');
    push_padded(out, day % 60, 2);
    out.push(b'.');
    push_padded(out, micros, 6);
    out.push(b' ');
    out.extend_from_slice(span.process.as_bytes());
    out.push(b'[');
    push_int(out, span.pid);
    out.extend_from_slice(b"] ");
    // Protocol names are ASCII: upper-cased in place, as `to_uppercase` did.
    let start = out.len();
    out.extend_from_slice(span.protocol.as_str().as_bytes());
    if let Some(name) = out.get_mut(start..) {
        name.make_ascii_uppercase();
    }
    out.push(b' ');
    out.extend_from_slice(span.kind.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(span.name.as_bytes());
    out.extend_from_slice(b" -> ");
    push_outcome(out, span);
    out.push(b' ');
    push_duration(out, span.duration_ns());
    let client = span.attribute("client.address").is_some_and(is_str);
    let server = span.attribute("server.address").is_some_and(is_str);
    if client || server {
        out.push(b' ');
        push_endpoint(out, span, "client.address", "client.port");
        out.extend_from_slice(b" -> ");
        push_endpoint(out, span, "server.address", "server.port");
    }
    if let Some(parent) = span.parent_span_id {
        out.extend_from_slice(b" trace=");
        push_hex(out, &span.trace_id.0);
        out.extend_from_slice(b" parent=");
        push_hex(out, &parent.0);
    }
    out.push(b'\n');
}

/// `value` in decimal, zero-padded to at least `width` digits (as `{:0width$}`).
fn push_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value).as_bytes();
    for _ in digits.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(digits);
}

fn is_str(value: &AttrValue) -> bool {
    matches!(value, AttrValue::Str(_))
}

/// The attributes that carry a protocol's status code, in the order tried.
const OUTCOME_KEYS: [&str; 4] = [
    "http.response.status_code",
    "rpc.grpc.status_code",
    "db.response.status_code",
    "dns.response.code",
];

/// The most telling result: a status code if the protocol has one.
fn push_outcome(out: &mut Vec<u8>, span: &Span) {
    if span.attribute("tracer.response.missing").is_some() {
        out.extend_from_slice(b"no response");
        return;
    }
    for key in OUTCOME_KEYS {
        match span.attribute(key) {
            Some(AttrValue::Int(code)) => return push_int(out, *code),
            Some(AttrValue::Str(code)) => return out.extend_from_slice(code.as_str().as_bytes()),
            _ => {}
        }
    }
    out.extend_from_slice(match span.status {
        SpanStatus::Ok => b"ok",
        SpanStatus::Error => b"error",
    });
}

/// `address:port` (`[address]:port` for IPv6), the address alone without
/// a port, `?` without an address.
fn push_endpoint(out: &mut Vec<u8>, span: &Span, address: &str, port: &str) {
    let Some(AttrValue::Str(address)) = span.attribute(address) else {
        out.push(b'?');
        return;
    };
    let address = address.as_str();
    let Some(AttrValue::Int(port)) = span.attribute(port) else {
        out.extend_from_slice(address.as_bytes());
        return;
    };
    if address.contains(':') {
        out.push(b'[');
        out.extend_from_slice(address.as_bytes());
        out.push(b']');
    } else {
        out.extend_from_slice(address.as_bytes());
    }
    out.push(b':');
    push_int(out, *port);
}

fn push_duration(out: &mut Vec<u8>, ns: u64) {
    if ns < 1_000 {
        push_int(out, ns);
        out.extend_from_slice(b"ns");
    } else {
        // A Vec never fails to write.
        let _ = write!(out, "{}", Duration(ns));
    }
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
    use std::sync::Arc;

    use super::*;
    use crate::{protocols::Protocol, sinks::json::tests::sample_span, spans::SpanId};

    // The implementation before the hand-written one, kept to compare
    // against byte for byte.
    fn old_write_line(out: &mut Vec<u8>, span: &Span) -> std::io::Result<()> {
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
        old_write_outcome(out, span)?;
        write!(out, " {}", Duration(span.duration_ns()))?;
        let client = old_endpoint(span, "client.address", "client.port");
        let server = old_endpoint(span, "server.address", "server.port");
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
    fn old_write_outcome(out: &mut Vec<u8>, span: &Span) -> std::io::Result<()> {
        if span.attribute("tracer.response.missing").is_some() {
            return write!(out, "no response");
        }
        for key in OUTCOME_KEYS {
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

    fn old_endpoint(span: &Span, address: &str, port: &str) -> Option<String> {
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

    fn old_line(span: &Span) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = old_write_line(&mut out, span);
        out
    }

    #[test]
    fn same_bytes_as_the_fmt_implementation() {
        let mut spans = Vec::new();
        let base = sample_span();
        spans.push(base.clone());
        for ns in [
            0,
            1,
            999,
            1_000,
            1_049,
            1_050,
            1_150,
            999_949,
            999_950,
            1_000_000,
            1_234_567,
            5_555_000,
            999_999_999,
            1_000_000_000,
            3_600_000_000_000,
        ] {
            let mut s = base.clone();
            s.end_time_unix_nano = s.start_time_unix_nano + ns;
            spans.push(s);
        }
        for start in [
            0,
            59_999_999_999,
            86_399_999_999_999,
            1_764_431_958_123_456_789,
            u64::MAX,
        ] {
            let mut s = base.clone();
            s.start_time_unix_nano = start;
            s.end_time_unix_nano = start.saturating_add(2_000);
            spans.push(s);
        }
        let mut s = base.clone();
        s.parent_span_id = Some(SpanId([1, 2, 3, 4, 0xab, 0xcd, 0xef, 0xff]));
        spans.push(s);
        let mut s = base.clone();
        s.process = Arc::from("redis-server");
        s.protocol = Protocol::Redis;
        s.status = SpanStatus::Error;
        s.attributes.retain(|(k, _)| !k.contains("status_code"));
        spans.push(s.clone());
        s.status = SpanStatus::Ok;
        s.attributes
            .push(("db.response.status_code", AttrValue::Str("ERR".into())));
        spans.push(s);
        // Addresses: IPv6, without port, only one side, none.
        let mut s = base.clone();
        for (k, v) in &mut s.attributes {
            if *k == "client.address" {
                *v = AttrValue::Str("::1".into());
            }
        }
        spans.push(s.clone());
        s.attributes.retain(|(k, _)| *k != "server.port");
        spans.push(s.clone());
        s.attributes.retain(|(k, _)| *k != "client.address");
        spans.push(s.clone());
        s.attributes.retain(|(k, _)| *k != "server.address");
        spans.push(s);
        let mut s = base.clone();
        s.attributes
            .push(("tracer.response.missing", AttrValue::Bool(true)));
        spans.push(s);
        for protocol in Protocol::ALL {
            let mut s = base.clone();
            s.protocol = protocol;
            spans.push(s);
        }
        for span in &spans {
            let mut out = Vec::new();
            write_text_line(&mut out, span);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&old_line(span))
            );
        }
    }
}
