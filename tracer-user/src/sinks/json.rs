//! One JSON object per span per line: the contract later sinks and tests
//! build on.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::{protocols::AttrValue, spans::Span};

/// Appends `span` as one JSON line to `out`.
pub fn write_json_line(out: &mut Vec<u8>, span: &Span) {
    // Serialising plain strings and numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &JsonSpan(span)).is_ok() {
        out.push(b'\n');
    }
}

struct JsonSpan<'a>(&'a Span);
struct JsonAttributes<'a>(&'a Span);

impl Serialize for JsonSpan<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let span = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("trace_id", &span.trace_id.to_string())?;
        map.serialize_entry("span_id", &span.span_id.to_string())?;
        map.serialize_entry("parent_span_id", &span.parent_span_id.map(|id| id.to_string()))?;
        if let Some(state) = &span.tracestate {
            map.serialize_entry("tracestate", state)?;
        }
        map.serialize_entry("name", &span.name)?;
        map.serialize_entry("kind", span.kind.as_str())?;
        map.serialize_entry("status", span.status.as_str())?;
        map.serialize_entry("start_time_unix_nano", &span.start_time_unix_nano)?;
        map.serialize_entry("end_time_unix_nano", &span.end_time_unix_nano)?;
        map.serialize_entry("duration_ns", &span.duration_ns())?;
        map.serialize_entry("pid", &span.pid)?;
        map.serialize_entry("tid", &span.tid)?;
        map.serialize_entry("process", &*span.process)?;
        map.serialize_entry("protocol", span.protocol.as_str())?;
        map.serialize_entry("attributes", &JsonAttributes(span))?;
        map.end()
    }
}

impl Serialize for JsonAttributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.attributes.len()))?;
        for (key, value) in &self.0.attributes {
            match value {
                AttrValue::Str(v) => map.serialize_entry(key, v.as_str())?,
                AttrValue::Int(v) => map.serialize_entry(key, v)?,
                AttrValue::Bool(v) => map.serialize_entry(key, v)?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        protocols::Protocol,
        spans::{LinkKeys, SpanId, SpanKind, SpanStatus, TraceId},
    };

    pub(crate) fn sample_span() -> Span {
        Span {
            trace_id: TraceId([0xab; 16]),
            span_id: SpanId([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]),
            parent_span_id: None,
            tracestate: None,
            name: "GET /index.html".into(),
            kind: SpanKind::Server,
            status: SpanStatus::Ok,
            start_time_unix_nano: 1_000_002_000,
            end_time_unix_nano: 1_001_232_000,
            pid: 1234,
            tid: 1235,
            process: Arc::from("nginx"),
            protocol: Protocol::Http,
            attributes: vec![
                ("http.request.method", AttrValue::Str("GET".into())),
                ("url.path", AttrValue::Str("/index.html".into())),
                ("http.response.status_code", AttrValue::Int(200)),
                ("server.address", AttrValue::Str("127.0.0.1".into())),
                ("server.port", AttrValue::Int(8080)),
                ("client.address", AttrValue::Str("127.0.0.1".into())),
                ("client.port", AttrValue::Int(54321)),
            ],
            link: LinkKeys::default(),
        }
    }

    #[test]
    fn matches_the_contract() {
        let mut out = Vec::new();
        write_json_line(&mut out, &sample_span());
        assert_eq!(out.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["trace_id"], "abababababababababababababababab");
        assert_eq!(value["span_id"], "0102030405060708");
        assert!(value["parent_span_id"].is_null());
        assert_eq!(value["name"], "GET /index.html");
        assert_eq!(value["kind"], "server");
        assert_eq!(value["status"], "ok");
        assert_eq!(value["duration_ns"], 1_230_000);
        assert_eq!(value["pid"], 1234);
        assert_eq!(value["tid"], 1235);
        assert_eq!(value["process"], "nginx");
        assert_eq!(value["protocol"], "http");
        assert_eq!(value["attributes"]["http.response.status_code"], 200);
        assert_eq!(value["attributes"]["server.port"], 8080);
    }
}
