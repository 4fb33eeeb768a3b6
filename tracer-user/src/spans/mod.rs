//! Spans: an [`Exchange`](crate::protocols::Exchange) placed on a process, a
//! connection and a trace. This is the contract every sink builds on.

use std::sync::Arc;

use crate::protocols::{AttrValue, Attributes, Protocol, SharedStr};

mod addr_text;
mod build;
mod ids;
mod link;

pub use crate::span_kind::SpanKind;
pub use build::{SpanBuilder, SpanContext};
pub use ids::{hex_lower, SpanId, TraceId};
pub use link::LinkKeys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanStatus {
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }
}

/// One traced request, as every sink sees it.
#[derive(Clone, Debug)]
#[expect(
    clippy::struct_field_names,
    reason = "OpenTelemetry's names (span_id beside trace_id and parent_span_id)"
)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    /// W3C `tracestate` received with the request, passed on untouched.
    pub tracestate: Option<String>,
    pub name: SharedStr,
    pub kind: SpanKind,
    pub status: SpanStatus,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub pid: u32,
    pub tid: u32,
    /// Executable name of the traced process.
    pub process: Arc<str>,
    pub protocol: Protocol,
    pub attributes: Attributes,
}

impl Span {
    pub fn duration_ns(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }

    pub fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}
