//! Turning a protocol [`Exchange`] into a [`Span`].

use std::net::SocketAddr;
use std::sync::Arc;

use super::{addr_text::AddrText, LinkKeys, Span, SpanId, SpanKind, SpanStatus, TraceId};
use crate::protocols::{AttrValue, Exchange, Fault};

/// Where an exchange happened: what the connection layer knows about it.
#[derive(Clone, Debug)]
pub struct SpanContext {
    pub pid: u32,
    pub tid: u32,
    pub process: Arc<str>,
    pub kind: SpanKind,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// Plaintext read at this TLS library.
    pub tls: Option<&'static str>,
}

/// Makes spans: ids, wall-clock times, status and network attributes.
pub struct SpanBuilder {
    rng: fastrand::Rng,
    /// `CLOCK_REALTIME` - `CLOCK_MONOTONIC`, read once at start.
    wall_offset_ns: i128,
    addresses: AddrText,
}

impl SpanBuilder {
    pub fn new(wall_offset_ns: i128) -> Self {
        SpanBuilder {
            rng: fastrand::Rng::new(),
            wall_offset_ns,
            addresses: AddrText::default(),
        }
    }

    pub fn wall_clock(&self, monotonic_ns: u64) -> u64 {
        u64::try_from(i128::from(monotonic_ns) + self.wall_offset_ns).unwrap_or(0)
    }

    /// The span every sink sees, and what only the linking stage needs.
    pub fn build(&mut self, exchange: Exchange, ctx: &SpanContext) -> (Span, LinkKeys) {
        let status = match (exchange.fault, ctx.kind) {
            (Fault::Server, _) | (Fault::Client, SpanKind::Client) => SpanStatus::Error,
            _ => SpanStatus::Ok,
        };
        let (trace_id, parent_span_id, tracestate) = match exchange.trace_context {
            // Only a server span continues the caller's trace from the request
            // it received; a client span's header was written by this process
            // and the linking stage ties it to its server span.
            Some(tc) if ctx.kind == SpanKind::Server => (
                TraceId(tc.trace_id),
                Some(SpanId(tc.parent_span_id)),
                tc.tracestate,
            ),
            _ => (TraceId::random(&mut self.rng), None, None),
        };
        let mut attributes = exchange.attributes;
        let (server, client) = match ctx.kind {
            SpanKind::Server => (ctx.local, ctx.remote),
            SpanKind::Client => (ctx.remote, ctx.local),
        };
        if let Some(addr) = server {
            attributes.push((
                "server.address",
                AttrValue::Str(self.addresses.get(addr.ip())),
            ));
            attributes.push(("server.port", AttrValue::Int(i64::from(addr.port()))));
        }
        if let Some(addr) = client {
            attributes.push((
                "client.address",
                AttrValue::Str(self.addresses.get(addr.ip())),
            ));
            attributes.push(("client.port", AttrValue::Int(i64::from(addr.port()))));
        }
        if let Some(library) = ctx.tls {
            attributes.push(("tls.protocol.name", AttrValue::fixed("tls")));
            if !library.is_empty() {
                attributes.push(("tracer.tls.library", AttrValue::fixed(library)));
            }
        }
        if exchange.incomplete {
            attributes.push(("tracer.response.missing", AttrValue::Bool(true)));
        }
        let span = Span {
            trace_id,
            span_id: SpanId::random(&mut self.rng),
            parent_span_id,
            tracestate,
            name: exchange.name,
            kind: ctx.kind,
            status,
            start_time_unix_nano: self.wall_clock(exchange.start_ns),
            end_time_unix_nano: self.wall_clock(exchange.end_ns.max(exchange.start_ns)),
            pid: ctx.pid,
            tid: ctx.tid,
            process: ctx.process.clone(),
            protocol: exchange.protocol,
            attributes,
        };
        let keys = LinkKeys {
            start_ns: exchange.start_ns,
            end_ns: exchange.end_ns.max(exchange.start_ns),
            local: ctx.local,
            remote: ctx.remote,
            ..LinkKeys::default()
        };
        (span, keys)
    }
}
