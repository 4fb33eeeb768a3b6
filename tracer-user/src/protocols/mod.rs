//! Protocol parsers: pure functions over the bytes of one connection.
//!
//! A connection's bytes arrive as two ordered streams, one per [`Side`]. A
//! [`Parser`] turns them into [`Exchange`]s: one request paired with its
//! response. Parsers never see the kernel, sockets or clocks; they get bytes,
//! timestamps and gaps (bytes that moved but were not captured).

mod byte_cursor;
pub mod dns;
pub mod http1;
pub mod http2;
pub mod memcached;
pub mod mysql;
pub mod postgresql;
pub mod redis;
mod registry;
mod shared_str;
mod spare_attributes;
pub mod sql;
#[cfg(test)]
pub(crate) mod test_support;

pub use registry::{default_enabled, detect, new_parser, Transport};
pub use shared_str::SharedStr;
pub use spare_attributes::SpareAttributes;

use std::fmt;

/// Which end of the conversation sent some bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The end that sends requests.
    Client,
    /// The end that answers them.
    Server,
}

impl Side {
    #[must_use]
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// The protocols the tracer recognises; `protocol` in the span contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Redis,
    Postgresql,
    Mysql,
    Memcached,
    Dns,
}

impl Protocol {
    pub const ALL: [Protocol; 8] = [
        Protocol::Http,
        Protocol::Http2,
        Protocol::Grpc,
        Protocol::Redis,
        Protocol::Postgresql,
        Protocol::Mysql,
        Protocol::Memcached,
        Protocol::Dns,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Redis => "redis",
            Protocol::Postgresql => "postgresql",
            Protocol::Mysql => "mysql",
            Protocol::Memcached => "memcached",
            Protocol::Dns => "dns",
        }
    }

    pub fn parse(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A span attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(SharedStr),
    Int(i64),
    Bool(bool),
}

impl AttrValue {
    /// A fixed word, shared rather than copied into every span.
    pub const fn fixed(v: &'static str) -> Self {
        AttrValue::Str(SharedStr::Static(v))
    }
}

impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(SharedStr::Owned(v))
    }
}
impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::Str(SharedStr::Owned(v.to_owned()))
    }
}
impl From<SharedStr> for AttrValue {
    fn from(v: SharedStr) -> Self {
        AttrValue::Str(v)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}
impl From<u16> for AttrValue {
    fn from(v: u16) -> Self {
        AttrValue::Int(i64::from(v))
    }
}
impl From<u64> for AttrValue {
    fn from(v: u64) -> Self {
        AttrValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<usize> for AttrValue {
    fn from(v: usize) -> Self {
        AttrValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}

/// Span attributes, keyed by OpenTelemetry semantic-convention names.
pub type Attributes = Vec<(&'static str, AttrValue)>;

/// Room for the attributes the span stage adds to a parser's (addresses,
/// ports, TLS, a missing response): a parser that sizes its vector for its
/// own attributes plus these spares the span stage a reallocation.
pub const SPAN_ATTRIBUTES: usize = 7;

/// Who was at fault when an exchange failed; the span stage maps it to a
/// status by span kind (e.g. HTTP 4xx is an error on a client span only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// The request was bad (HTTP 4xx).
    Client,
    /// The server failed (HTTP 5xx, a database or cache error reply).
    Server,
}

/// W3C trace context carried by a request (`traceparent`, `tracestate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub parent_span_id: [u8; 8],
    pub flags: u8,
    pub tracestate: Option<String>,
}

/// One request paired with its response.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub protocol: Protocol,
    /// Span name, e.g. `GET /index.html` or `SELECT`.
    pub name: SharedStr,
    /// When the first byte of the request moved (`CLOCK_MONOTONIC` ns).
    pub start_ns: u64,
    /// When the last byte of the response moved; `start_ns` if none came.
    pub end_ns: u64,
    pub fault: Fault,
    /// True when the response never came (connection closed first).
    pub incomplete: bool,
    pub attributes: Attributes,
    pub trace_context: Option<TraceContext>,
}

/// What a parser may reveal, chosen on the command line. Everything that can
/// carry secrets is off by default.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParserOptions {
    /// Emit `url.query` (HTTP query strings).
    pub include_query: bool,
    /// Emit database statements with their literals instead of `?`.
    pub raw_statements: bool,
}

/// What a parser produced from some input.
#[derive(Debug, Default)]
pub struct ParseOutput {
    pub exchanges: Vec<Exchange>,
    /// Times the parser lost its place in a stream and had to resynchronise
    /// (dropping what it held).
    pub desyncs: u64,
    /// Where each exchange's attribute vector comes from.
    pub spare: SpareAttributes,
}

/// Per-connection state of one protocol.
pub trait Parser: Send {
    /// `data` was sent by `side`, in stream order, at `ts_ns`.
    fn on_data(&mut self, side: Side, ts_ns: u64, data: &[u8], out: &mut ParseOutput);
    /// `len` bytes sent by `side` at `ts_ns` were not captured.
    fn on_gap(&mut self, side: Side, ts_ns: u64, len: usize, out: &mut ParseOutput);
    /// The connection closed at `ts_ns`: complete what a close completes
    /// (a response delimited by close) and report requests left unanswered.
    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput);
}
