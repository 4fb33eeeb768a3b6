//! `--service-map`: who calls whom. One edge per (caller, callee,
//! protocol), from the spans:
//!
//! - a client span whose child is a server span: both processes are
//!   traced, the edge joins their services;
//! - a client span without one: the callee is not traced (or its span is
//!   not in the files), named by its address (`server.address:port`);
//! - a server span whose parent is not a client span in the files: the
//!   caller is not traced, named by its address (`client.address`).
//!
//! Requests, errors and latency are the client's view where there is a
//! client span, else the server's.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use super::model::{Kind, SpanRecord};
use crate::sinks::latency_table::format_duration;

/// How an edge's ends were learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seen {
    /// Both spans are in the files.
    Linked,
    /// Only the client span: the server is named by its address.
    ServerUntraced,
    /// Only the server span: the client is named by its address.
    ClientUntraced,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeKey {
    pub client: String,
    pub server: String,
    pub protocol: String,
}

#[derive(Clone, Debug)]
pub struct Edge {
    pub key: EdgeKey,
    pub seen: Seen,
    pub requests: u64,
    pub errors: u64,
    /// Sorted.
    pub durations_ns: Vec<u64>,
}

/// What an unnamed end is called.
pub const UNKNOWN: &str = "unknown";

impl Edge {
    pub fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            100.0 * self.errors as f64 / self.requests as f64
        }
    }

    /// Nearest-rank percentile of the request durations.
    pub fn percentile_ns(&self, q: f64) -> u64 {
        percentile(&self.durations_ns, q)
    }
}

/// Nearest-rank percentile of sorted `values` (0 when empty).
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a rank between 0 and the length, clamped below"
)]
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One request between two ends, as [`edges`] and the live metrics see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub key: EdgeKey,
    pub seen: Seen,
    pub failed: bool,
    pub client_ns: Option<u64>,
    pub server_ns: Option<u64>,
    /// The callee is a database (`db.system.name` on either span).
    pub database: bool,
}

/// Every request `spans` show, each once. `spans` must hold each span once.
pub fn requests(spans: &[SpanRecord]) -> Vec<Request> {
    let by_id: HashMap<(&str, &str), &SpanRecord> = spans
        .iter()
        .map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), s))
        .collect();
    // The first server child of each span.
    let mut server_child: HashMap<(&str, &str), &SpanRecord> = HashMap::new();
    for span in spans.iter().filter(|s| s.kind == Kind::Server) {
        if let Some(parent) = span.parent_span_id.as_deref() {
            server_child
                .entry((span.trace_id.as_str(), parent))
                .or_insert(span);
        }
    }
    let mut out = Vec::new();
    for span in spans {
        match span.kind {
            Kind::Client => {
                let key = (span.trace_id.as_str(), span.span_id.as_str());
                let server = server_child.get(&key).copied();
                let protocol = span
                    .protocol
                    .clone()
                    .or_else(|| server.and_then(|s| s.protocol.clone()))
                    .unwrap_or_else(|| UNKNOWN.to_owned());
                let database = is_database(&protocol);
                out.push(match server {
                    Some(server) => Request {
                        key: EdgeKey {
                            client: span.service.clone(),
                            server: server.service.clone(),
                            protocol,
                        },
                        seen: Seen::Linked,
                        failed: span.error || server.error,
                        client_ns: Some(span.duration_ns()),
                        server_ns: Some(server.duration_ns()),
                        database,
                    },
                    None => Request {
                        key: EdgeKey {
                            client: span.service.clone(),
                            server: span
                                .server_endpoint
                                .clone()
                                .unwrap_or_else(|| UNKNOWN.to_owned()),
                            protocol,
                        },
                        seen: Seen::ServerUntraced,
                        failed: span.error,
                        client_ns: Some(span.duration_ns()),
                        server_ns: None,
                        database,
                    },
                });
            }
            Kind::Server => {
                let called_by_client = span.parent_span_id.as_deref().is_some_and(|parent| {
                    by_id
                        .get(&(span.trace_id.as_str(), parent))
                        .is_some_and(|p| p.kind == Kind::Client)
                });
                if called_by_client {
                    continue;
                }
                let protocol = span.protocol.clone().unwrap_or_else(|| UNKNOWN.to_owned());
                out.push(Request {
                    database: is_database(&protocol),
                    key: EdgeKey {
                        client: span
                            .client_address
                            .clone()
                            .unwrap_or_else(|| UNKNOWN.to_owned()),
                        server: span.service.clone(),
                        protocol,
                    },
                    seen: Seen::ClientUntraced,
                    failed: span.error,
                    client_ns: None,
                    server_ns: Some(span.duration_ns()),
                });
            }
            _ => {}
        }
    }
    out
}

fn is_database(protocol: &str) -> bool {
    matches!(protocol, "redis" | "postgresql" | "mysql" | "memcached")
}

/// The edges of `spans`, sorted by client, server and protocol.
pub fn edges(spans: &[SpanRecord]) -> Vec<Edge> {
    let mut edges: BTreeMap<EdgeKey, Edge> = BTreeMap::new();
    for request in requests(spans) {
        let edge = edges.entry(request.key.clone()).or_insert_with(|| Edge {
            key: request.key.clone(),
            seen: request.seen,
            requests: 0,
            errors: 0,
            durations_ns: Vec::new(),
        });
        // One edge may be seen both ways (some requests linked, some not):
        // say the most certain.
        edge.seen = edge.seen.min(request.seen);
        edge.requests += 1;
        edge.errors += u64::from(request.failed);
        if let Some(ns) = request.client_ns.or(request.server_ns) {
            edge.durations_ns.push(ns);
        }
    }
    let mut edges: Vec<Edge> = edges.into_values().collect();
    for edge in &mut edges {
        edge.durations_ns.sort_unstable();
    }
    edges
}

/// The map as a table.
pub fn render(edges: &[Edge]) -> String {
    let header = [
        "CLIENT", "SERVER", "PROTOCOL", "REQUESTS", "ERRORS", "P50", "P99",
    ];
    let rows: Vec<[String; 7]> = edges
        .iter()
        .map(|e| {
            [
                e.key.client.clone(),
                e.key.server.clone(),
                e.key.protocol.clone(),
                e.requests.to_string(),
                format!("{:.1}%", e.error_percent()),
                format_duration(e.percentile_ns(50.0)),
                format_duration(e.percentile_ns(99.0)),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if i < 3 {
                let _ = write!(text, "{cell:<w$}  ");
            } else {
                let _ = write!(text, "{cell:>w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}
