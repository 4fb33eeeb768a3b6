//! Service-graph metrics in the convention of Tempo's metrics-generator
//! and Beyla (`traces_service_graph_request_total`, `…_failed_total`,
//! `…_server_seconds`, `…_client_seconds`; labels `client`, `server`,
//! `connection_type`), so Grafana's service-graph view draws them.
//!
//! A request is counted when the tracer sees both of its ends: a client
//! span and the server span linked under it (both processes traced), with
//! `client`/`server` the two services. A lone end is held for
//! [`PAIR_WAIT`], then counted as a call to or from a "virtual node" that
//! is not traced, named by its address, with `connection_type` =
//! `virtual_node`, as Tempo does:
//!
//! - a client span without a server span: `server` is its peer,
//!   `server.address:server.port` (Tempo takes `peer.service` or
//!   `db.system`; the tracer knows the address, not a name);
//! - a server span without a client span (a root, or a caller outside the
//!   traced processes): `client` is its peer's `client.address` (Tempo
//!   names it after a peer attribute, else `user`); without one, `user`.
//!
//! Paired calls to Redis, PostgreSQL, MySQL and memcached get
//! `connection_type="database"`, other paired calls an empty one.
//! Durations use the tracer's RED buckets (from 100 µs), not Tempo's
//! default (from 100 ms), which would put local calls in one bucket.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, Instant},
};

use super::{
    exposition::{float, Exposition},
    red::{label_text, BUCKETS, MAX_SERIES, OTHER},
};
use crate::{
    protocols::Protocol,
    sinks::resource::ResourceConfig,
    spans::{Span, SpanId, SpanKind, SpanStatus},
};

/// How long one end of a request waits for the other. The linking stage
/// emits a client span and the server span under it together (the child
/// waits for its parent), so this only has to cover batching.
pub const PAIR_WAIT: Duration = Duration::from_secs(5);
/// Ends held at once; past it the oldest is counted unpaired at once.
const MAX_PENDING: usize = 65_536;
/// The client of a server span whose caller has no address.
pub const USER: &str = "user";

const REQUESTS: &str = "traces_service_graph_request_total";
const FAILED: &str = "traces_service_graph_request_failed_total";
const SERVER_SECONDS: &str = "traces_service_graph_request_server_seconds";
const CLIENT_SECONDS: &str = "traces_service_graph_request_client_seconds";

/// One end of a request, waiting for the other.
struct End {
    service: String,
    /// The other end's address, for when it never comes.
    peer: Option<String>,
    database: bool,
    failed: bool,
    seconds: f64,
    since: Instant,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Default)]
struct Series {
    requests: u64,
    failed: u64,
    server: Histogram,
    client: Histogram,
}

/// Labels of a series: client, server, connection type.
type Key = (String, String, &'static str);

#[derive(Default)]
pub struct ServiceGraph {
    /// Client spans by their span id, waiting for the server span under them.
    clients: HashMap<SpanId, End>,
    /// Server spans by their parent's span id, waiting for that client span.
    servers: HashMap<SpanId, End>,
    /// Arrival order of the ends above, for expiry (paired ones are
    /// skipped when reached).
    order: VecDeque<(Instant, SpanId, SpanKind)>,
    series: BTreeMap<Key, Series>,
}

impl ServiceGraph {
    pub fn observe(&mut self, span: &Span, resource: &ResourceConfig, now: Instant) {
        let end = End {
            service: resource.service_name_str(&span.process).to_owned(),
            peer: None,
            database: is_database(span.protocol),
            failed: span.status == SpanStatus::Error,
            seconds: span.duration_ns() as f64 / 1e9,
            since: now,
        };
        match span.kind {
            SpanKind::Client => {
                let end = End {
                    peer: endpoint(span),
                    ..end
                };
                if let Some(server) = self.servers.remove(&span.span_id) {
                    self.paired(&end, &server);
                } else {
                    self.hold(span.span_id, SpanKind::Client, end);
                }
            }
            SpanKind::Server => {
                let end = End {
                    peer: span.attribute("client.address").map(label_text),
                    ..end
                };
                match span.parent_span_id {
                    Some(parent) => match self.clients.remove(&parent) {
                        Some(client) => self.paired(&client, &end),
                        None => self.hold(parent, SpanKind::Server, end),
                    },
                    None => self.unpaired_server(&end),
                }
            }
        }
        self.expire(now);
    }

    fn hold(&mut self, id: SpanId, side: SpanKind, end: End) {
        if self.order.len() >= MAX_PENDING {
            self.expire_oldest();
        }
        self.order.push_back((end.since, id, side));
        match side {
            SpanKind::Client => self.clients.insert(id, end),
            SpanKind::Server => self.servers.insert(id, end),
        };
    }

    /// Counts the ends that waited [`PAIR_WAIT`] as unpaired.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(since, _, _)) = self.order.front() {
            if now.duration_since(since) < PAIR_WAIT {
                break;
            }
            self.expire_oldest();
        }
    }

    fn expire_oldest(&mut self) {
        let Some((_, id, side)) = self.order.pop_front() else {
            return;
        };
        match side {
            SpanKind::Client => {
                if let Some(client) = self.clients.remove(&id) {
                    let server = client.peer.clone().unwrap_or_else(|| "unknown".into());
                    self.record(
                        (client.service, server, "virtual_node"),
                        client.failed,
                        Some(client.seconds),
                        None,
                    );
                }
            }
            SpanKind::Server => {
                if let Some(server) = self.servers.remove(&id) {
                    self.unpaired_server(&server);
                }
            }
        }
    }

    fn paired(&mut self, client: &End, server: &End) {
        let connection_type = if client.database || server.database {
            "database"
        } else {
            ""
        };
        self.record(
            (
                client.service.clone(),
                server.service.clone(),
                connection_type,
            ),
            client.failed || server.failed,
            Some(client.seconds),
            Some(server.seconds),
        );
    }

    fn unpaired_server(&mut self, server: &End) {
        let client = server.peer.clone().unwrap_or_else(|| USER.into());
        self.record(
            (client, server.service.clone(), "virtual_node"),
            server.failed,
            None,
            Some(server.seconds),
        );
    }

    fn record(&mut self, mut key: Key, failed: bool, client: Option<f64>, server: Option<f64>) {
        if !self.series.contains_key(&key) && self.series.len() >= MAX_SERIES {
            OTHER.clone_into(&mut key.0);
            OTHER.clone_into(&mut key.1);
        }
        let series = self.series.entry(key).or_default();
        series.requests += 1;
        series.failed += u64::from(failed);
        if let Some(seconds) = client {
            series.client.observe(seconds);
        }
        if let Some(seconds) = server {
            series.server.observe(seconds);
        }
    }

    pub fn write(&self, out: &mut Exposition) {
        if self.series.is_empty() {
            return;
        }
        let labels = |(client, server, connection_type): &Key| {
            vec![
                ("client", client.clone()),
                ("server", server.clone()),
                ("connection_type", (*connection_type).to_owned()),
            ]
        };
        out.family(
            REQUESTS,
            "Requests between two nodes of the service graph.",
            "counter",
        );
        for (key, series) in &self.series {
            sample(out, REQUESTS, &labels(key), None, series.requests as f64);
        }
        out.family(
            FAILED,
            "Failed requests between two nodes of the service graph (an error status on either side).",
            "counter",
        );
        for (key, series) in &self.series {
            sample(out, FAILED, &labels(key), None, series.failed as f64);
        }
        for (name, help, side) in [
            (
                SERVER_SECONDS,
                "Duration of requests between two nodes as seen from the server, in seconds.",
                true,
            ),
            (
                CLIENT_SECONDS,
                "Duration of requests between two nodes as seen from the client, in seconds.",
                false,
            ),
        ] {
            out.family(name, help, "histogram");
            let bucket = format!("{name}_bucket");
            let sum = format!("{name}_sum");
            let count = format!("{name}_count");
            for (key, series) in &self.series {
                let histogram = if side { &series.server } else { &series.client };
                if histogram.count == 0 {
                    continue;
                }
                let labels = labels(key);
                let mut cumulative = 0;
                for (le, n) in BUCKETS.iter().zip(histogram.buckets) {
                    cumulative += n;
                    sample(out, &bucket, &labels, Some(&float(*le)), cumulative as f64);
                }
                sample(out, &bucket, &labels, Some("+Inf"), histogram.count as f64);
                sample(out, &sum, &labels, None, histogram.sum);
                sample(out, &count, &labels, None, histogram.count as f64);
            }
        }
    }
}

fn sample(
    out: &mut Exposition,
    name: &str,
    labels: &[(&'static str, String)],
    le: Option<&str>,
    value: f64,
) {
    let mut all: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Some(le) = le {
        all.push(("le", le));
    }
    out.sample(name, &all, value);
}

fn is_database(protocol: Protocol) -> bool {
    matches!(
        protocol,
        Protocol::Redis | Protocol::Postgresql | Protocol::Mysql | Protocol::Memcached
    )
}

/// `server.address:server.port` of a client span.
fn endpoint(span: &Span) -> Option<String> {
    let address = label_text(span.attribute("server.address")?);
    Some(match span.attribute("server.port") {
        Some(port) => format!("{address}:{}", label_text(port)),
        None => address,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{protocols::AttrValue, sinks::json::tests::sample_span};

    fn render(graph: &ServiceGraph) -> String {
        let mut out = Exposition::default();
        graph.write(&mut out);
        out.finish()
    }

    /// A client span of `process` (to 127.0.0.1:8080, 3 ms).
    fn client_span(process: &str) -> Span {
        let mut client = sample_span();
        client.kind = SpanKind::Client;
        client.process = Arc::from(process);
        client.span_id = SpanId([7; 8]);
        client.end_time_unix_nano = client.start_time_unix_nano + 3_000_000;
        client
    }

    #[test]
    fn linked_ends_pair_in_either_order() {
        let resource = ResourceConfig::default();
        let now = Instant::now();
        let mut server = sample_span();
        server.process = Arc::from("redis-server");
        server.protocol = Protocol::Redis;
        let client = client_span("python3");
        server.parent_span_id = Some(client.span_id);
        for order in [[&client, &server], [&server, &client]] {
            let mut graph = ServiceGraph::default();
            for span in order {
                graph.observe(span, &resource, now);
            }
            let text = render(&graph);
            let labels = "client=\"python3\",server=\"redis-server\",connection_type=\"database\"";
            assert!(
                text.contains(&format!(
                    "traces_service_graph_request_total{{{labels}}} 1\n"
                )),
                "{text}"
            );
            assert!(text.contains(&format!(
                "traces_service_graph_request_failed_total{{{labels}}} 0\n"
            )));
            assert!(text.contains(&format!(
                "traces_service_graph_request_client_seconds_bucket{{{labels},le=\"0.005\"}} 1\n"
            )));
            assert!(text.contains(&format!(
                "traces_service_graph_request_server_seconds_count{{{labels}}} 1\n"
            )));
            assert!(graph.clients.is_empty() && graph.servers.is_empty());
        }
    }

    #[test]
    fn lone_ends_become_virtual_nodes_after_the_wait() {
        let resource = ResourceConfig::default();
        let now = Instant::now();
        let mut graph = ServiceGraph::default();
        // A root server span: its caller is counted at once, by address.
        let root = sample_span();
        graph.observe(&root, &resource, now);
        // A server span whose parent (a traceparent from outside) never comes.
        let mut child = sample_span();
        child.parent_span_id = Some(SpanId([9; 8]));
        child.attributes.retain(|(k, _)| *k != "client.address");
        child.status = SpanStatus::Error;
        graph.observe(&child, &resource, now);
        // A client span to an untraced server.
        let mut client = client_span("nginx");
        client.attributes = vec![
            ("server.address", AttrValue::from("10.0.0.9")),
            ("server.port", AttrValue::Int(8080)),
        ];
        graph.observe(&client, &resource, now);
        let text = render(&graph);
        assert!(
            text.contains("traces_service_graph_request_total{client=\"127.0.0.1\",server=\"nginx\",connection_type=\"virtual_node\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("10.0.0.9") && !text.contains("user"),
            "{text}"
        );
        graph.expire(now + PAIR_WAIT);
        let text = render(&graph);
        assert!(
            text.contains("traces_service_graph_request_total{client=\"nginx\",server=\"10.0.0.9:8080\",connection_type=\"virtual_node\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("traces_service_graph_request_failed_total{client=\"user\",server=\"nginx\",connection_type=\"virtual_node\"} 1\n"),
            "{text}"
        );
        // A client-only edge has no server-side histogram.
        assert!(!text.contains(
            "traces_service_graph_request_server_seconds_count{client=\"nginx\",server=\"10.0.0.9:8080\""
        ));
    }

    #[test]
    fn pending_ends_are_bounded() {
        let resource = ResourceConfig::default();
        let now = Instant::now();
        let mut graph = ServiceGraph::default();
        let mut client = client_span("nginx");
        for i in 0..=MAX_PENDING as u64 {
            client.span_id = SpanId(i.to_le_bytes());
            graph.observe(&client, &resource, now);
        }
        assert_eq!(graph.clients.len(), MAX_PENDING);
        let text = render(&graph);
        assert!(text.contains("traces_service_graph_request_total{client=\"nginx\",server=\"127.0.0.1:8080\",connection_type=\"virtual_node\"} 1\n"), "{text}");
    }
}
