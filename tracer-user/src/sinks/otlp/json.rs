//! OTLP/JSON, as the OpenTelemetry Collector's file exporter writes it and
//! its otlpjson receiver reads it: the protobuf JSON mapping with OTLP's
//! exceptions (ids as lower-case hex, enums as integers), camelCase names,
//! 64-bit integers as decimal strings, default values left out.

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{any_value, AnyValue, KeyValue},
    trace::v1::Span,
};
use serde_json::{json, Map, Value};

use crate::spans::hex_lower;

/// Appends `request` as one JSON line to `out`.
pub fn write_line(out: &mut Vec<u8>, request: &ExportTraceServiceRequest) {
    // Serialising a Value into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &to_value(request)).is_ok() {
        out.push(b'\n');
    }
}

pub fn to_value(request: &ExportTraceServiceRequest) -> Value {
    let resource_spans: Vec<Value> = request
        .resource_spans
        .iter()
        .map(|rs| {
            let mut obj = Map::new();
            if let Some(resource) = &rs.resource {
                obj.insert(
                    "resource".into(),
                    json!({ "attributes": key_values(&resource.attributes) }),
                );
            }
            let scope_spans: Vec<Value> = rs
                .scope_spans
                .iter()
                .map(|ss| {
                    let mut obj = Map::new();
                    if let Some(scope) = &ss.scope {
                        let mut s = Map::new();
                        insert_str(&mut s, "name", &scope.name);
                        insert_str(&mut s, "version", &scope.version);
                        obj.insert("scope".into(), Value::Object(s));
                    }
                    obj.insert("spans".into(), ss.spans.iter().map(span).collect());
                    insert_str(&mut obj, "schemaUrl", &ss.schema_url);
                    Value::Object(obj)
                })
                .collect();
            obj.insert("scopeSpans".into(), Value::Array(scope_spans));
            insert_str(&mut obj, "schemaUrl", &rs.schema_url);
            Value::Object(obj)
        })
        .collect();
    json!({ "resourceSpans": resource_spans })
}

fn span(span: &Span) -> Value {
    let mut obj = Map::new();
    obj.insert("traceId".into(), Value::String(hex_lower(&span.trace_id)));
    obj.insert("spanId".into(), Value::String(hex_lower(&span.span_id)));
    insert_str(&mut obj, "traceState", &span.trace_state);
    if !span.parent_span_id.is_empty() {
        obj.insert(
            "parentSpanId".into(),
            Value::String(hex_lower(&span.parent_span_id)),
        );
    }
    if span.flags != 0 {
        obj.insert("flags".into(), Value::from(span.flags));
    }
    obj.insert("name".into(), Value::String(span.name.clone()));
    obj.insert("kind".into(), Value::from(span.kind));
    obj.insert(
        "startTimeUnixNano".into(),
        Value::String(span.start_time_unix_nano.to_string()),
    );
    obj.insert(
        "endTimeUnixNano".into(),
        Value::String(span.end_time_unix_nano.to_string()),
    );
    if !span.attributes.is_empty() {
        obj.insert("attributes".into(), key_values(&span.attributes));
    }
    let mut status = Map::new();
    if let Some(s) = &span.status {
        insert_str(&mut status, "message", &s.message);
        if s.code != 0 {
            status.insert("code".into(), Value::from(s.code));
        }
    }
    obj.insert("status".into(), Value::Object(status));
    Value::Object(obj)
}

fn key_values(kvs: &[KeyValue]) -> Value {
    kvs.iter()
        .map(|kv| {
            json!({
                "key": kv.key,
                "value": kv.value.as_ref().map_or_else(|| json!({}), any_value),
            })
        })
        .collect()
}

fn any_value(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => json!({ "stringValue": s }),
        // int64 is a string in the protobuf JSON mapping.
        Some(any_value::Value::IntValue(i)) => json!({ "intValue": i.to_string() }),
        Some(any_value::Value::BoolValue(b)) => json!({ "boolValue": b }),
        Some(any_value::Value::DoubleValue(d)) => json!({ "doubleValue": d }),
        Some(any_value::Value::ArrayValue(a)) => {
            json!({ "arrayValue": { "values": a.values.iter().map(any_value).collect::<Vec<_>>() } })
        }
        Some(any_value::Value::KvlistValue(l)) => {
            json!({ "kvlistValue": { "values": key_values(&l.values) } })
        }
        Some(any_value::Value::BytesValue(b)) => json!({ "bytesValue": base64(b) }),
        None => json!({}),
    }
}

fn insert_str(obj: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        obj.insert(key.into(), Value::String(value.to_owned()));
    }
}

/// Standard base64 with padding, as the protobuf JSON mapping writes bytes.
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        sinks::{json::tests::sample_span, otlp::encode, resource::ResourceConfig},
        spans::{SpanId, SpanStatus},
    };

    #[test]
    fn the_collector_file_format() {
        let mut span = sample_span();
        span.parent_span_id = Some(SpanId([0xfe; 8]));
        span.status = SpanStatus::Error;
        let resource = ResourceConfig {
            service_name: Some("web".into()),
            ..Default::default()
        };
        let mut out = Vec::new();
        write_line(&mut out, &encode::request([&span], &resource));
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(
            memchr::memchr_iter(b'\n', &out).count(),
            1,
            "one line per request"
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        let rs = &v["resourceSpans"][0];
        let resource_attrs = rs["resource"]["attributes"].as_array().unwrap();
        assert!(resource_attrs
            .contains(&json!({"key": "service.name", "value": {"stringValue": "web"}})));
        assert!(
            resource_attrs.contains(&json!({"key": "process.pid", "value": {"intValue": "1234"}}))
        );
        assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "tracer");
        let s = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "abababababababababababababababab");
        assert_eq!(s["spanId"], "0102030405060708");
        assert_eq!(s["parentSpanId"], "fefefefefefefefe");
        assert_eq!(s["name"], "GET /index.html");
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "1000002000");
        assert_eq!(s["endTimeUnixNano"], "1001232000");
        assert_eq!(s["status"], json!({"code": 2}));
        assert_eq!(s["flags"], 0x301);
        let attrs = s["attributes"].as_array().unwrap();
        assert!(attrs
            .contains(&json!({"key": "http.response.status_code", "value": {"intValue": "200"}})));
        assert!(
            attrs.contains(&json!({"key": "url.path", "value": {"stringValue": "/index.html"}}))
        );
        assert!(s.get("traceState").is_none(), "defaults are left out");
    }

    #[test]
    fn ok_status_is_an_empty_object() {
        let mut out = Vec::new();
        write_line(
            &mut out,
            &encode::request([&sample_span()], &ResourceConfig::default()),
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"],
            json!({})
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
