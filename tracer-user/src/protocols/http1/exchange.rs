//! Turning a paired request and response into an [`Exchange`].

use crate::protocols::{AttrValue, Exchange, Fault, Protocol, SharedStr, SpareAttributes};

use super::body::BodyKind;
use super::head::RequestHead;

/// Methods OpenTelemetry knows by name; others are reported as `_OTHER`.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// `method` as one of [`STANDARD_METHODS`], if it is one.
pub(super) fn standard_method(method: &str) -> Option<&'static str> {
    STANDARD_METHODS.iter().copied().find(|m| *m == method)
}

/// A request waiting for (or getting) its response.
#[derive(Debug)]
pub(super) struct Request {
    /// Tells requests apart while their body is still arriving.
    pub seq: u64,
    pub head: RequestHead,
    pub start_ns: u64,
    /// Payload bytes of the body seen so far (gaps included).
    pub body_size: u64,
    /// The body was seen to its end (or there is none).
    pub body_ended: bool,
}

impl Request {
    /// `http.request.body.size`, when it is known: the declared length, or
    /// the payload of a body seen to its end. `closed`: the exchange ends
    /// with the connection (its body, if unfinished, was cut short).
    fn body_size(&self, closed: bool) -> Option<u64> {
        match self.head.body {
            None => Some(0),
            Some(_) if self.body_ended => Some(self.body_size),
            // Answered before the client finished sending: the rest of the
            // declared length follows (the client stream skips it).
            Some(BodyKind::Length(len)) if !closed => Some(len),
            // A chunked body not seen to its end has no known size, and a
            // body cut short by the close has none: neither the bytes
            // declared nor those seen were the body.
            Some(_) => None,
        }
    }
}

/// The response part of an exchange, as far as it is known.
#[derive(Clone, Copy, Debug)]
pub(super) struct ResponseSummary {
    pub status: u16,
    /// `None`: the body was cut short by the close, its size is unknown.
    pub body_size: Option<u64>,
}

pub(super) fn build_exchange(
    request: Request,
    response: Option<ResponseSummary>,
    end_ns: u64,
    incomplete: bool,
    spare: &mut SpareAttributes,
) -> Exchange {
    let request_body_size = request.body_size(incomplete);
    let RequestHead {
        method,
        path,
        query,
        version,
        trace_context,
        body: _,
    } = request.head;
    let name = match &path {
        Some(path) => SharedStr::joined(&[&method, " ", path]),
        None => method.clone(),
    };
    let mut attributes = spare.take(9);
    if STANDARD_METHODS.contains(&method.as_str()) {
        attributes.push(("http.request.method", AttrValue::Str(method)));
    } else {
        attributes.push(("http.request.method", AttrValue::fixed("_OTHER")));
        attributes.push(("http.request.method_original", AttrValue::Str(method)));
    }
    if let Some(path) = path {
        attributes.push(("url.path", AttrValue::Str(path)));
    }
    if let Some(query) = query {
        attributes.push(("url.query", AttrValue::from(query)));
    }
    attributes.push(("network.protocol.name", AttrValue::fixed("http")));
    let version = if version == 0 { "1.0" } else { "1.1" };
    attributes.push(("network.protocol.version", AttrValue::fixed(version)));
    if let Some(response) = response {
        attributes.push((
            "http.response.status_code",
            AttrValue::from(response.status),
        ));
    }
    if let Some(size) = request_body_size {
        attributes.push(("http.request.body.size", AttrValue::from(size)));
    }
    if let Some(size) = response.and_then(|r| r.body_size) {
        attributes.push(("http.response.body.size", AttrValue::from(size)));
    }
    Exchange {
        protocol: Protocol::Http,
        name,
        start_ns: request.start_ns,
        end_ns: end_ns.max(request.start_ns),
        fault: response.map_or(Fault::None, |r| fault(r.status)),
        incomplete,
        attributes,
        trace_context,
    }
}

fn fault(status: u16) -> Fault {
    match status {
        500..=599 => Fault::Server,
        400..=499 => Fault::Client,
        _ => Fault::None,
    }
}
