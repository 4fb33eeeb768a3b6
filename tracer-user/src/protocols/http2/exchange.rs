//! Turning a finished stream into an [`Exchange`]: plain HTTP/2 or gRPC.

use crate::protocols::{
    AttrValue, Attributes, Exchange, Fault, ParserOptions, Protocol, Side, SpareAttributes,
};

use super::fields::{RequestFields, ResponseFields};
use super::grpc;

/// Methods OpenTelemetry knows by name (as in HTTP/1.x); others are
/// reported as `_OTHER`.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// Span name when the request's method could not be decoded.
pub(super) const UNKNOWN_HTTP_NAME: &str = "HTTP/2 (headers unknown)";
/// Span name of a gRPC call whose `:path` could not be decoded.
pub(super) const UNKNOWN_GRPC_NAME: &str = "grpc (method unknown)";

/// One request stream and what came back on it.
#[derive(Debug)]
pub(super) struct Stream {
    pub request: RequestFields,
    /// When the first byte of the request's HEADERS frame moved.
    pub start_ns: u64,
    pub request_body: u64,
    /// The final response head, trailers merged in.
    pub response: Option<ResponseFields>,
    pub response_body: u64,
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// The server ended its side of the stream.
    Complete,
    /// `RST_STREAM` from `by`, with its error code when captured.
    Reset { by: Side, code: Option<u32> },
    /// The connection closed first.
    Closed,
}

impl Stream {
    pub fn is_grpc(&self) -> bool {
        self.request.grpc || self.response.as_ref().is_some_and(|r| r.grpc)
    }
}

pub(super) fn build(
    stream: Stream,
    end_ns: u64,
    ending: Ending,
    options: ParserOptions,
    spare: &mut SpareAttributes,
) -> Exchange {
    // Its own attributes and an `error.type`.
    let attributes = spare.take(10);
    let incomplete = match ending {
        Ending::Complete => false,
        Ending::Reset { .. } => stream.response.is_none(),
        Ending::Closed => true,
    };
    let (protocol, name, mut attributes, fault) = if stream.is_grpc() {
        grpc_parts(&stream, attributes)
    } else {
        http_parts(&stream, options, attributes)
    };
    let fault = match (fault, ending) {
        (Fault::None, Ending::Reset { by, code }) => reset_fault(by, code),
        (fault, _) => fault,
    };
    if let Ending::Reset { code, .. } = ending {
        attributes.push(("error.type", AttrValue::from(error_code_name(code))));
    }
    Exchange {
        protocol,
        name: name.into(),
        start_ns: stream.start_ns,
        end_ns: end_ns.max(stream.start_ns),
        fault,
        incomplete,
        attributes,
        trace_context: stream.request.trace_context,
    }
}

fn grpc_parts(
    stream: &Stream,
    mut attributes: Attributes,
) -> (Protocol, String, Attributes, Fault) {
    attributes.push(("rpc.system", AttrValue::from("grpc")));
    let method = stream.request.path.as_deref().and_then(grpc::split_path);
    let name = match method {
        Some((service, method)) => {
            attributes.push(("rpc.service", AttrValue::from(service)));
            attributes.push(("rpc.method", AttrValue::from(method)));
            format!("{service}/{method}")
        }
        None => UNKNOWN_GRPC_NAME.to_owned(),
    };
    let response = stream.response.as_ref();
    let code = response.and_then(|r| r.grpc_status);
    if let Some(code) = code {
        attributes.push(("rpc.grpc.status_code", AttrValue::Int(code)));
    }
    push_protocol(&mut attributes);
    let fault = match code {
        Some(code) => grpc::fault(code),
        // No status (a proxy's error page, a reset): the HTTP status is
        // all there is.
        None => http_fault(response.and_then(|r| r.status)),
    };
    (Protocol::Grpc, name, attributes, fault)
}

fn http_parts(
    stream: &Stream,
    options: ParserOptions,
    mut attributes: Attributes,
) -> (Protocol, String, Attributes, Fault) {
    let request = &stream.request;
    let (path, query) = match request.path.as_deref() {
        Some(target) => {
            let without_fragment = target.split_once('#').map_or(target, |(before, _)| before);
            match without_fragment.split_once('?') {
                Some((path, query)) => (Some(path), Some(query).filter(|q| !q.is_empty())),
                None => (Some(without_fragment), None),
            }
        }
        None => (None, None),
    };
    let standard = request
        .method
        .as_deref()
        .filter(|m| STANDARD_METHODS.contains(m));
    let name = match (request.method.as_deref(), path) {
        (Some(_), Some(path)) => format!("{} {path}", standard.unwrap_or("HTTP")),
        (Some(_), None) => standard.unwrap_or("HTTP").to_owned(),
        (None, _) => UNKNOWN_HTTP_NAME.to_owned(),
    };
    match (standard, request.method.as_deref()) {
        (Some(method), _) => attributes.push(("http.request.method", AttrValue::from(method))),
        (None, original) => {
            attributes.push(("http.request.method", AttrValue::from("_OTHER")));
            if let Some(original) = original {
                attributes.push(("http.request.method_original", AttrValue::from(original)));
            }
        }
    }
    if let Some(path) = path {
        attributes.push(("url.path", AttrValue::from(path)));
    }
    if let Some(query) = query.filter(|_| options.include_query) {
        attributes.push(("url.query", AttrValue::from(query)));
    }
    push_protocol(&mut attributes);
    let response = stream.response.as_ref();
    let status = response.and_then(|r| r.status);
    if let Some(status) = status {
        attributes.push(("http.response.status_code", AttrValue::from(status)));
    }
    attributes.push((
        "http.request.body.size",
        AttrValue::from(stream.request_body),
    ));
    if response.is_some() {
        attributes.push((
            "http.response.body.size",
            AttrValue::from(stream.response_body),
        ));
    }
    (Protocol::Http2, name, attributes, http_fault(status))
}

fn push_protocol(attributes: &mut Attributes) {
    attributes.push(("network.protocol.name", AttrValue::from("http")));
    attributes.push(("network.protocol.version", AttrValue::from("2")));
}

fn http_fault(status: Option<u16>) -> Fault {
    match status {
        Some(500..=599) => Fault::Server,
        Some(400..=499) => Fault::Client,
        _ => Fault::None,
    }
}

/// A reset by the server is its failure, unless it says nothing went
/// wrong; a reset by the client is the client giving up (cancelling).
fn reset_fault(by: Side, code: Option<u32>) -> Fault {
    match (by, code) {
        (_, Some(0)) => Fault::None,
        (Side::Server, _) => Fault::Server,
        (Side::Client, _) => Fault::Client,
    }
}

/// RFC 9113 section 7 error code names.
fn error_code_name(code: Option<u32>) -> &'static str {
    match code {
        Some(0x0) => "NO_ERROR",
        Some(0x1) => "PROTOCOL_ERROR",
        Some(0x2) => "INTERNAL_ERROR",
        Some(0x3) => "FLOW_CONTROL_ERROR",
        Some(0x4) => "SETTINGS_TIMEOUT",
        Some(0x5) => "STREAM_CLOSED",
        Some(0x6) => "FRAME_SIZE_ERROR",
        Some(0x7) => "REFUSED_STREAM",
        Some(0x8) => "CANCEL",
        Some(0x9) => "COMPRESSION_ERROR",
        Some(0xa) => "CONNECT_ERROR",
        Some(0xb) => "ENHANCE_YOUR_CALM",
        Some(0xc) => "INADEQUATE_SECURITY",
        Some(0xd) => "HTTP_1_1_REQUIRED",
        Some(_) | None => "RST_STREAM",
    }
}
