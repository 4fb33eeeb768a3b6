//! Rate, errors and duration per service and operation, computed from
//! spans, named after the OpenTelemetry semantic-convention metrics in
//! their Prometheus form (`http.server.request.duration` in seconds →
//! `http_server_request_duration_seconds`).

use std::collections::BTreeMap;

use super::exposition::{float, Exposition};
use crate::{
    protocols::{AttrValue, Protocol},
    sinks::resource::ResourceConfig,
    spans::{Span, SpanKind, SpanStatus},
};

/// Distinct label sets per metric; past it, new sets collapse to `_other_`
/// (all labels but the service), so a scan of random URLs cannot blow up
/// memory or the Prometheus server.
pub const MAX_SERIES: usize = 1000;
pub const OTHER: &str = "_other_";
/// Label values are cut to this many bytes.
const MAX_LABEL_LEN: usize = 128;

/// The OpenTelemetry recommended buckets, with sub-millisecond ones added:
/// local requests traced here are often faster than 5 ms.
pub(super) const BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0,
];

/// One kind of operation: a duration histogram, a request counter with the
/// protocol's status label, and an error counter.
struct Family {
    duration: &'static str,
    requests: &'static str,
    errors: &'static str,
    what: &'static str,
    labels: &'static [&'static str],
    status_label: &'static str,
    series: BTreeMap<Vec<String>, Series>,
}

#[derive(Default)]
struct Series {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
    errors: u64,
    /// Requests by status value.
    by_status: BTreeMap<String, u64>,
}

impl Family {
    const fn new(
        duration: &'static str,
        requests: &'static str,
        errors: &'static str,
        what: &'static str,
        labels: &'static [&'static str],
        status_label: &'static str,
    ) -> Self {
        Family {
            duration,
            requests,
            errors,
            what,
            labels,
            status_label,
            series: BTreeMap::new(),
        }
    }

    fn observe(&mut self, mut labels: Vec<String>, status: String, seconds: f64, error: bool) {
        if !self.series.contains_key(&labels) && self.series.len() >= MAX_SERIES {
            for value in labels.iter_mut().skip(1) {
                OTHER.clone_into(value);
            }
        }
        let series = self.series.entry(labels).or_default();
        if let Some(i) = BUCKETS.iter().position(|&le| seconds <= le) {
            series.buckets[i] += 1;
        }
        series.sum += seconds;
        series.count += 1;
        series.errors += u64::from(error);
        *series.by_status.entry(status).or_default() += 1;
    }

    fn write(&self, out: &mut Exposition) {
        let pairs = |values: &[String]| -> Vec<(&str, String)> {
            self.labels
                .iter()
                .copied()
                .zip(values.iter().cloned())
                .collect()
        };

        out.family(
            self.duration,
            &format!("Duration of {}, in seconds.", self.what),
            "histogram",
        );
        let bucket = format!("{}_bucket", self.duration);
        let sum = format!("{}_sum", self.duration);
        let count = format!("{}_count", self.duration);
        for (values, series) in &self.series {
            let labels = pairs(values);
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(series.buckets) {
                cumulative += n;
                let le = float(*le);
                out.sample(&bucket, &with(&labels, ("le", &le)), cumulative as f64);
            }
            out.sample(&bucket, &with(&labels, ("le", "+Inf")), series.count as f64);
            out.sample(&sum, &borrow(&labels), series.sum);
            out.sample(&count, &borrow(&labels), series.count as f64);
        }
        out.family(
            self.requests,
            &format!("Number of {}.", self.what),
            "counter",
        );
        for (values, series) in &self.series {
            let labels = pairs(values);
            for (status, n) in &series.by_status {
                out.sample(
                    self.requests,
                    &with(&labels, (self.status_label, status)),
                    *n as f64,
                );
            }
        }
        out.family(
            self.errors,
            &format!("Number of {} that failed (span status error).", self.what),
            "counter",
        );
        for (values, series) in &self.series {
            out.sample(self.errors, &borrow(&pairs(values)), series.errors as f64);
        }
    }
}

fn borrow<'a>(labels: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn with<'a>(labels: &'a [(&'a str, String)], extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    let mut all = borrow(labels);
    all.push(extra);
    all
}

/// Every RED family, fed span by span.
pub struct Red {
    http_server: Family,
    http_client: Family,
    rpc_server: Family,
    rpc_client: Family,
    db_client: Family,
    dns: Family,
    other: Family,
}

impl Default for Red {
    fn default() -> Self {
        const HTTP_SERVER: &[&str] = &["service_name", "http_request_method", "http_route"];
        const HTTP_CLIENT: &[&str] = &["service_name", "http_request_method", "server_address"];
        const RPC: &[&str] = &["service_name", "rpc_system", "rpc_service", "rpc_method"];
        const DB: &[&str] = &["service_name", "db_system_name", "db_operation_name"];
        const DNS: &[&str] = &["service_name", "dns_question_type"];
        const OTHER_LABELS: &[&str] = &["service_name", "protocol", "span_kind", "operation"];
        Red {
            http_server: Family::new(
                "http_server_request_duration_seconds",
                "http_server_requests_total",
                "http_server_request_errors_total",
                "HTTP requests served",
                HTTP_SERVER,
                "http_response_status_code",
            ),
            http_client: Family::new(
                "http_client_request_duration_seconds",
                "http_client_requests_total",
                "http_client_request_errors_total",
                "HTTP requests made",
                HTTP_CLIENT,
                "http_response_status_code",
            ),
            rpc_server: Family::new(
                "rpc_server_duration_seconds",
                "rpc_server_requests_total",
                "rpc_server_request_errors_total",
                "RPCs served",
                RPC,
                "rpc_grpc_status_code",
            ),
            rpc_client: Family::new(
                "rpc_client_duration_seconds",
                "rpc_client_requests_total",
                "rpc_client_request_errors_total",
                "RPCs made",
                RPC,
                "rpc_grpc_status_code",
            ),
            db_client: Family::new(
                "db_client_operation_duration_seconds",
                "db_client_operations_total",
                "db_client_operation_errors_total",
                "database and cache operations made",
                DB,
                "db_response_status_code",
            ),
            dns: Family::new(
                "dns_lookup_duration_seconds",
                "dns_lookups_total",
                "dns_lookup_errors_total",
                "DNS lookups",
                DNS,
                "dns_response_code",
            ),
            other: Family::new(
                "tracer_operation_duration_seconds",
                "tracer_operations_total",
                "tracer_operation_errors_total",
                "other traced operations (no semantic-convention metric covers them, e.g. a database's server side)",
                OTHER_LABELS,
                "status",
            ),
        }
    }
}

impl Red {
    pub fn observe(&mut self, span: &Span, resource: &ResourceConfig) {
        let service = resource.service_name(&span.process).to_string();
        let seconds = span.duration_ns() as f64 / 1e9;
        let error = span.status == SpanStatus::Error;
        let attr = |key: &str| label(span.attribute(key));
        let status = |key: &str| attr(key);
        match (span.protocol, span.kind) {
            (Protocol::Http | Protocol::Http2, kind) => {
                let method = attr("http.request.method");
                let (family, target) = match kind {
                    SpanKind::Server => (&mut self.http_server, route(span)),
                    SpanKind::Client => (&mut self.http_client, attr("server.address")),
                };
                family.observe(
                    vec![service, method, target],
                    status("http.response.status_code"),
                    seconds,
                    error,
                );
            }
            (Protocol::Grpc, kind) => {
                let (rpc_service, rpc_method) = rpc_names(span);
                let family = match kind {
                    SpanKind::Server => &mut self.rpc_server,
                    SpanKind::Client => &mut self.rpc_client,
                };
                family.observe(
                    vec![service, "grpc".into(), rpc_service, rpc_method],
                    status("rpc.grpc.status_code"),
                    seconds,
                    error,
                );
            }
            (Protocol::Dns, SpanKind::Client) => {
                self.dns.observe(
                    vec![service, attr("dns.question.type")],
                    status("dns.response.code"),
                    seconds,
                    error,
                );
            }
            (
                Protocol::Redis | Protocol::Postgresql | Protocol::Mysql | Protocol::Memcached,
                SpanKind::Client,
            ) => {
                let system = match span.attribute("db.system.name") {
                    Some(_) => attr("db.system.name"),
                    None => span.protocol.as_str().to_owned(),
                };
                let operation = match span.attribute("db.operation.name") {
                    Some(_) => attr("db.operation.name"),
                    None => truncate(span.name.to_string()),
                };
                self.db_client.observe(
                    vec![service, system, operation],
                    status("db.response.status_code"),
                    seconds,
                    error,
                );
            }
            (protocol, kind) => {
                self.other.observe(
                    vec![
                        service,
                        protocol.as_str().into(),
                        kind.as_str().into(),
                        truncate(span.name.to_string()),
                    ],
                    span.status.as_str().into(),
                    seconds,
                    error,
                );
            }
        }
    }

    pub fn write(&self, out: &mut Exposition) {
        for family in [
            &self.http_server,
            &self.http_client,
            &self.rpc_server,
            &self.rpc_client,
            &self.db_client,
            &self.dns,
            &self.other,
        ] {
            family.write(out);
        }
    }
}

/// The server route: the path without query (`url.path`), or what follows
/// the method in the span name. Not a templated route: raw paths, bounded
/// by [`MAX_SERIES`].
fn route(span: &Span) -> String {
    match span.attribute("url.path") {
        Some(AttrValue::Str(path)) => truncate(path.to_string()),
        _ => truncate(
            span.name
                .split_once(' ')
                .map_or(span.name.as_str(), |(_, path)| path)
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
    }
}

/// `rpc.service` / `rpc.method`, or the two halves of `pkg.Service/Method`.
fn rpc_names(span: &Span) -> (String, String) {
    if let (Some(s), Some(m)) = (span.attribute("rpc.service"), span.attribute("rpc.method")) {
        (label(Some(s)), label(Some(m)))
    } else {
        let name = span.name.trim_start_matches('/');
        match name.rsplit_once('/') {
            Some((s, m)) => (truncate(s.to_owned()), truncate(m.to_owned())),
            None => (String::new(), truncate(name.to_owned())),
        }
    }
}

fn label(value: Option<&AttrValue>) -> String {
    value.map(label_text).unwrap_or_default()
}

/// An attribute value as a label value (cut to a bounded length).
pub(super) fn label_text(value: &AttrValue) -> String {
    match value {
        AttrValue::Str(s) => truncate(s.to_string()),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Bool(b) => b.to_string(),
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_LABEL_LEN {
        let mut end = MAX_LABEL_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sinks::json::tests::sample_span;

    fn render(red: &Red) -> String {
        let mut out = Exposition::default();
        red.write(&mut out);
        out.finish()
    }

    #[test]
    fn http_server_histogram_and_counters() {
        let mut red = Red::default();
        let resource = ResourceConfig::default();
        let span = sample_span(); // 1.23 ms, GET /index.html, 200
        red.observe(&span, &resource);
        red.observe(&span, &resource);
        let mut failed = sample_span();
        failed.status = SpanStatus::Error;
        failed.attributes[2].1 = AttrValue::Int(503);
        red.observe(&failed, &resource);
        let text = render(&red);
        let labels = r#"service_name="nginx",http_request_method="GET",http_route="/index.html""#;
        for line in [
            "# TYPE http_server_request_duration_seconds histogram".to_owned(),
            format!("http_server_request_duration_seconds_bucket{{{labels},le=\"0.001\"}} 0"),
            format!("http_server_request_duration_seconds_bucket{{{labels},le=\"0.0025\"}} 3"),
            format!("http_server_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3"),
            format!("http_server_request_duration_seconds_count{{{labels}}} 3"),
            format!("http_server_requests_total{{{labels},http_response_status_code=\"200\"}} 2"),
            format!("http_server_requests_total{{{labels},http_response_status_code=\"503\"}} 1"),
            format!("http_server_request_errors_total{{{labels}}} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        let sum_line = text
            .lines()
            .find(|l| l.starts_with("http_server_request_duration_seconds_sum"))
            .unwrap();
        let sum: f64 = sum_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((sum - 3.0 * 0.00123).abs() < 1e-9, "{sum_line}");
    }

    #[test]
    fn label_sets_are_capped() {
        let mut red = Red::default();
        let resource = ResourceConfig::default();
        for i in 0..MAX_SERIES + 10 {
            let mut span = sample_span();
            span.attributes[1].1 = AttrValue::from(format!("/item/{i}"));
            red.observe(&span, &resource);
        }
        assert_eq!(red.http_server.series.len(), MAX_SERIES + 1);
        let other =
            &red.http_server.series[&vec!["nginx".to_owned(), OTHER.to_owned(), OTHER.to_owned()]];
        assert_eq!(other.count, 10);
    }

    #[test]
    fn protocols_go_to_their_families() {
        let mut red = Red::default();
        let resource = ResourceConfig {
            service_name: Some("svc".into()),
            ..Default::default()
        };
        let mut db = sample_span();
        db.protocol = Protocol::Redis;
        db.kind = SpanKind::Client;
        db.name = "SET".into();
        db.attributes = vec![
            ("db.system.name", "redis".into()),
            ("db.operation.name", "SET".into()),
        ];
        red.observe(&db, &resource);
        let mut server_side = db.clone();
        server_side.kind = SpanKind::Server;
        server_side.process = Arc::from("redis-server");
        red.observe(&server_side, &resource);
        let mut rpc = sample_span();
        rpc.protocol = Protocol::Grpc;
        rpc.name = "helloworld.Greeter/SayHello".into();
        rpc.attributes = vec![("rpc.grpc.status_code", AttrValue::Int(0))];
        red.observe(&rpc, &resource);
        let text = render(&red);
        assert!(text.contains(
            r#"db_client_operations_total{service_name="svc",db_system_name="redis",db_operation_name="SET",db_response_status_code=""} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"tracer_operations_total{service_name="svc",protocol="redis",span_kind="server",operation="SET",status="ok"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"rpc_server_requests_total{service_name="svc",rpc_system="grpc",rpc_service="helloworld.Greeter",rpc_method="SayHello",rpc_grpc_status_code="0"} 1"#
        ), "{text}");
    }
}
