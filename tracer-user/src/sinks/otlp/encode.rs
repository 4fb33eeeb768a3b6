//! Spans to the official OTLP protobuf messages: one `ResourceSpans` per
//! traced process, our own ids and timestamps kept as they are.
//!
//! The OTLP-JSON file form (`--output-file`, [`json`](super::json)) is
//! rendered from these structs. Export does not build them: it writes the
//! same request's protobuf bytes straight from the spans
//! ([`wire`](super::wire)), and its tests hold those bytes to prost's
//! encoding of what [`request`] builds.

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
    resource::v1::Resource,
    trace::v1::{span, status, ResourceSpans, ScopeSpans, Span as OtlpSpan, SpanFlags, Status},
};

use crate::{
    protocols::AttrValue,
    sinks::resource::{ResourceConfig, ResourceValue},
    spans::{Span, SpanKind, SpanStatus},
};

/// The instrumentation scope every span is reported under.
pub const SCOPE_NAME: &str = "tracer";

/// Builds one export request from `spans`, grouped by process in order of
/// first appearance.
pub fn request<'a>(
    spans: impl IntoIterator<Item = &'a Span>,
    resource: &ResourceConfig,
) -> ExportTraceServiceRequest {
    let mut groups: Vec<(u32, &'a str, Vec<OtlpSpan>)> = Vec::new();
    for span in spans {
        let otlp = span_to_otlp(span);
        // Few processes per batch: a linear scan beats hashing here.
        match groups
            .iter_mut()
            .find(|(pid, process, _)| *pid == span.pid && *process == &*span.process)
        {
            Some((_, _, spans)) => spans.push(otlp),
            None => groups.push((span.pid, &span.process, vec![otlp])),
        }
    }
    let resource_spans = groups
        .into_iter()
        .map(|(pid, process, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: resource
                    .attributes(pid, process)
                    .into_iter()
                    .map(|(key, value)| KeyValue {
                        key,
                        value: Some(AnyValue {
                            value: Some(match value {
                                ResourceValue::Str(s) => any_value::Value::StringValue(s),
                                ResourceValue::Int(i) => any_value::Value::IntValue(i),
                            }),
                        }),
                    })
                    .collect(),
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn span_to_otlp(span: &Span) -> OtlpSpan {
    let kind = match span.kind {
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
    };
    // OpenTelemetry leaves a successful span's status UNSET; only
    // instrumentation that knows better says OK.
    let status = match span.status {
        SpanStatus::Ok => Status::default(),
        SpanStatus::Error => Status {
            message: String::new(),
            code: status::StatusCode::Error as i32,
        },
    };
    // The trace was sampled (we report it); whether the parent is remote is
    // known: a parent always came over the wire in `traceparent`.
    let mut flags = 0x01 | SpanFlags::ContextHasIsRemoteMask as u32;
    if span.parent_span_id.is_some() {
        flags |= SpanFlags::ContextIsRemoteMask as u32;
    }
    let mut attributes: Vec<KeyValue> = span
        .attributes
        .iter()
        .map(|(key, value)| KeyValue {
            key: (*key).to_owned(),
            value: Some(any_value(value)),
        })
        .collect();
    attributes.push(KeyValue {
        key: "thread.id".into(),
        value: Some(any_value(&AttrValue::Int(i64::from(span.tid)))),
    });
    OtlpSpan {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        trace_state: span.tracestate.clone().unwrap_or_default(),
        parent_span_id: span
            .parent_span_id
            .map(|id| id.0.to_vec())
            .unwrap_or_default(),
        flags,
        name: span.name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        attributes,
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(status),
    }
}

fn any_value(value: &AttrValue) -> AnyValue {
    AnyValue {
        value: Some(match value {
            AttrValue::Str(s) => any_value::Value::StringValue(s.to_string()),
            AttrValue::Int(i) => any_value::Value::IntValue(*i),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{sinks::json::tests::sample_span, spans::SpanId};

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()
    }

    #[test]
    fn one_resource_per_process_with_our_ids() {
        let a = sample_span();
        let mut b = sample_span();
        b.pid = 99;
        b.process = Arc::from("redis-server");
        b.status = SpanStatus::Error;
        b.kind = SpanKind::Client;
        b.parent_span_id = Some(SpanId([9; 8]));
        b.tracestate = Some("vendor=1".into());
        let c = sample_span();
        let resource = ResourceConfig::default();
        let req = request([&a, &b, &c], &resource);
        assert_eq!(req.resource_spans.len(), 2);
        let nginx = &req.resource_spans[0];
        let attrs = &nginx.resource.as_ref().unwrap().attributes;
        assert_eq!(
            attr(attrs, "service.name"),
            Some(&any_value::Value::StringValue("nginx".into()))
        );
        assert_eq!(
            attr(attrs, "process.pid"),
            Some(&any_value::Value::IntValue(1234))
        );
        let spans = &nginx.scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].trace_id, a.trace_id.0);
        assert_eq!(spans[0].span_id, a.span_id.0);
        assert!(spans[0].parent_span_id.is_empty());
        assert_eq!(spans[0].kind, span::SpanKind::Server as i32);
        assert_eq!(
            spans[0].status.as_ref().unwrap().code,
            status::StatusCode::Unset as i32
        );
        assert_eq!(spans[0].start_time_unix_nano, a.start_time_unix_nano);
        assert_eq!(spans[0].end_time_unix_nano, a.end_time_unix_nano);
        assert_eq!(
            attr(&spans[0].attributes, "http.response.status_code"),
            Some(&any_value::Value::IntValue(200))
        );
        assert_eq!(
            attr(&spans[0].attributes, "thread.id"),
            Some(&any_value::Value::IntValue(1235))
        );
        assert_eq!(
            nginx.scope_spans[0].scope.as_ref().unwrap().name,
            SCOPE_NAME
        );

        let redis = &req.resource_spans[1].scope_spans[0].spans[0];
        assert_eq!(redis.kind, span::SpanKind::Client as i32);
        assert_eq!(
            redis.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_eq!(redis.parent_span_id, [9; 8]);
        assert_eq!(redis.trace_state, "vendor=1");
        assert_eq!(redis.flags, 0x301);
    }
}
