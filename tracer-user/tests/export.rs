//! Export and analysis end to end: the real tracer and kernel programs
//! against nginx and curl, exporting to a real OTLP receiver (gRPC,
//! HTTP/protobuf and HTTP/JSON, the official protobuf types; gzip; TLS with
//! a test CA and client certificates), serving Prometheus metrics, storing
//! OTLP-JSON files and reading them back with `tracer report`.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

#[path = "export/collector.rs"]
mod collector;
mod common;
#[path = "export/pki.rs"]
mod pki;

use std::{
    collections::{HashMap, HashSet},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use collector::{attr, hex, Attr, Collector, Inbox, ServerTls, Transport};
use common::{free_port, run_ok, servers, tracer_binary, TempDir, Tracer, TracerRun};
use serde_json::Value;

fn curl(url: &str) -> String {
    run_ok(Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", url]))
}

/// A fixed mix of requests: 3 × 200, 1 × 418, 1 × 503.
fn request_mix(nginx: &servers::Service) {
    for _ in 0..3 {
        assert_eq!(curl(&nginx.url("/hello")), "200");
    }
    assert_eq!(curl(&nginx.url("/teapot")), "418");
    assert_eq!(curl(&nginx.url("/fail")), "503");
}

/// (delivered, failed, dropped on full queue) of the sink named `sink`,
/// from the exit summary.
fn sink_counts(run: &TracerRun, sink: &str) -> (u64, u64, u64) {
    let stats = run.stats();
    let s = stats.sink(sink);
    (s.written, s.failed, s.queue_full)
}

fn by_span_id(spans: &[Value]) -> HashMap<String, &Value> {
    spans
        .iter()
        .map(|s| (s["span_id"].as_str().expect("span_id").to_owned(), s))
        .collect()
}

/// Every stdout span arrived over OTLP with the same ids, times, names,
/// kinds, statuses and typed attributes, under its process's resource.
fn assert_same_spans(run: &TracerRun, inbox: &Inbox, nginx_pids: &[u32]) {
    let stdout = by_span_id(&run.spans);
    let received = inbox.spans();
    assert_eq!(
        received.len(),
        stdout.len(),
        "one OTLP span per stdout span"
    );
    for (resource, span) in &received {
        let id = hex(&span.span_id);
        let json = stdout
            .get(&id)
            .unwrap_or_else(|| panic!("span {id} not on stdout"));
        assert_eq!(hex(&span.trace_id), json["trace_id"]);
        assert_eq!(span.name, json["name"]);
        assert_eq!(
            Some(span.start_time_unix_nano),
            json["start_time_unix_nano"].as_u64()
        );
        assert_eq!(
            Some(span.end_time_unix_nano),
            json["end_time_unix_nano"].as_u64()
        );
        assert_eq!(span.kind, if json["kind"] == "server" { 2 } else { 3 });
        let code = span.status.as_ref().map_or(0, |s| s.code);
        assert_eq!(
            code,
            if json["status"] == "error" { 2 } else { 0 },
            "{}",
            span.name
        );
        assert!(span.parent_span_id.is_empty() == json["parent_span_id"].is_null());
        for (key, value) in json["attributes"].as_object().expect("attributes") {
            let got = attr(&span.attributes, key).unwrap_or_else(|| panic!("{key} missing"));
            let want = match value {
                Value::String(s) => Attr::Str(s.clone()),
                Value::Number(n) => Attr::Int(n.as_i64().expect("int")),
                Value::Bool(b) => Attr::Bool(*b),
                other => panic!("unexpected attribute {other}"),
            };
            assert_eq!(got, want, "{key}");
        }
        assert_eq!(
            attr(&span.attributes, "thread.id"),
            Some(Attr::Int(json["tid"].as_i64().unwrap()))
        );
        // The resource: the process the span came from.
        let pid = json["pid"].as_i64().expect("pid");
        assert!(
            nginx_pids.contains(&u32::try_from(pid).unwrap()),
            "pid {pid} is not nginx's"
        );
        assert_eq!(attr(resource, "process.pid"), Some(Attr::Int(pid)));
        assert_eq!(
            attr(resource, "service.name"),
            Some(Attr::Str("nginx".into()))
        );
        assert_eq!(
            attr(resource, "process.executable.name"),
            Some(Attr::Str("nginx".into()))
        );
        assert_eq!(
            attr(resource, "telemetry.sdk.name"),
            Some(Attr::Str("tracer".into()))
        );
        assert_eq!(
            attr(resource, "telemetry.sdk.language"),
            Some(Attr::Str("rust".into()))
        );
        assert!(matches!(attr(resource, "host.name"), Some(Attr::Str(h)) if !h.is_empty()));
    }
}

#[test]
fn otlp_grpc_delivers_the_stdout_spans_intact() {
    let nginx = servers::nginx(1);
    let collector = Collector::start(Transport::Grpc, free_port(), Inbox::default());
    let endpoint = collector.endpoint();
    let tracer = Tracer::start_with_env(
        &[
            "--pid",
            &nginx.pid().to_string(),
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            "grpc",
            "--otlp-header",
            "X-Tenant=flag-wins",
        ],
        &[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-tenant=from-env,x-other=a%20b",
            ),
            // A wrong protocol in the environment: the flag wins.
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    );
    request_mix(&nginx);
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(run.spans.len(), 5, "{:#?}", run.spans);
    assert_same_spans(&run, &collector.inbox, &servers::with_children(nginx.pid()));
    let received = collector.inbox.all();
    assert!(!received.is_empty());
    for r in &received {
        assert_eq!(
            r.headers.get("x-tenant").map(String::as_str),
            Some("flag-wins")
        );
        assert_eq!(r.headers.get("x-other").map(String::as_str), Some("a b"));
    }
    assert_eq!(sink_counts(&run, "otlp"), (5, 0, 0), "{}", run.summary());
    assert_eq!(run.stats().spans_dropped, 0);
}

#[test]
fn otlp_http_protobuf_configured_by_environment() {
    let nginx = servers::nginx(1);
    let collector = Collector::start(Transport::Http, free_port(), Inbox::default());
    let endpoint = collector.endpoint();
    let tracer = Tracer::start_with_env(
        &["--pid", &nginx.pid().to_string()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=ci%2Ctest,team=edge",
            ),
        ],
    );
    request_mix(&nginx);
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(run.spans.len(), 5);
    assert_same_spans(&run, &collector.inbox, &servers::with_children(nginx.pid()));
    for r in collector.inbox.all() {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf")
        );
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some("Bearer t0ken")
        );
        for rs in &r.request.resource_spans {
            let attrs = &rs.resource.as_ref().expect("resource").attributes;
            assert_eq!(
                attr(attrs, "deployment.environment.name"),
                Some(Attr::Str("ci,test".into()))
            );
            assert_eq!(attr(attrs, "team"), Some(Attr::Str("edge".into())));
        }
    }
    assert_eq!(sink_counts(&run, "otlp"), (5, 0, 0), "{}", run.summary());
}

#[test]
fn service_name_override_and_traces_endpoint_used_as_is() {
    let nginx = servers::nginx(1);
    let collector = Collector::start(Transport::Http, free_port(), Inbox::default());
    // The traces-specific variable is a full URL: no /v1/traces appended.
    let url = format!("{}/custom/traces", collector.endpoint());
    let tracer = Tracer::start_with_env(
        &[
            "--pid",
            &nginx.pid().to_string(),
            "--service-name",
            "frontend",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url),
            ("OTEL_SERVICE_NAME", "loses-to-the-flag"),
        ],
    );
    assert_eq!(curl(&nginx.url("/hello")), "200");
    let run = tracer.stop();
    let received = collector.inbox.all();
    assert!(!received.is_empty(), "{:?}", run.stderr);
    assert!(received.iter().all(|r| r.path == "/custom/traces"));
    let spans = collector.inbox.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        attr(&spans[0].0, "service.name"),
        Some(Attr::Str("frontend".into()))
    );
    assert_eq!(
        attr(&spans[0].0, "process.executable.name"),
        Some(Attr::Str("nginx".into()))
    );
}

#[test]
fn otlp_gzip_bodies_arrive_compressed_and_decode_over_both_transports() {
    let nginx = servers::nginx(1);
    let pids = servers::with_children(nginx.pid());
    for transport in [Transport::Grpc, Transport::Http] {
        let collector = Collector::start(transport, free_port(), Inbox::default());
        let endpoint = collector.endpoint();
        let pid = nginx.pid().to_string();
        // gRPC asks by the flag (winning over the variable), HTTP by the
        // traces variable (winning over the general one).
        let tracer = match transport {
            Transport::Grpc => Tracer::start_with_env(
                &[
                    "--pid",
                    &pid,
                    "--otlp-endpoint",
                    &endpoint,
                    "--otlp-protocol",
                    "grpc",
                    "--otlp-compression",
                    "gzip",
                ],
                &[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")],
            ),
            Transport::Http => Tracer::start_with_env(
                &["--pid", &pid],
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                    ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
                    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
                ],
            ),
        };
        request_mix(&nginx);
        let run = tracer.stop();
        assert!(run.exit_ok, "{:?}", run.stderr);
        assert_eq!(run.spans.len(), 5, "{:#?}", run.spans);
        assert_same_spans(&run, &collector.inbox, &pids);
        let received = collector.inbox.all();
        assert!(!received.is_empty());
        for r in &received {
            match transport {
                // tonic's server undid the compression (it accepts gzip).
                Transport::Grpc => assert_eq!(
                    r.headers.get("grpc-encoding").map(String::as_str),
                    Some("gzip"),
                    "{:?}",
                    r.headers
                ),
                Transport::Http => {
                    assert_eq!(
                        r.headers.get("content-encoding").map(String::as_str),
                        Some("gzip")
                    );
                    assert_eq!(r.raw_body[..2], [0x1f, 0x8b], "gzip magic");
                    assert!(
                        r.raw_body.len() < r.body.len(),
                        "{} compressed bytes for {}",
                        r.raw_body.len(),
                        r.body.len()
                    );
                    eprintln!(
                        "gzip over HTTP: {} bytes for a {}-byte protobuf body",
                        r.raw_body.len(),
                        r.body.len()
                    );
                }
            }
        }
        assert_eq!(
            sink_counts(&run, "otlp"),
            (5, 0, 0),
            "{transport:?}: {}",
            run.summary()
        );
    }
}

/// Lower-case hex of `len` bytes.
fn is_hex_id(value: &Value, len: usize) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 2 * len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[test]
fn otlp_http_json_bodies_are_otlp_json_the_receiver_reads() {
    let nginx = servers::nginx(1);
    let collector = Collector::start(Transport::Http, free_port(), Inbox::default());
    let endpoint = collector.endpoint();
    let tracer = Tracer::start_with_env(
        &["--pid", &nginx.pid().to_string()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ],
    );
    request_mix(&nginx);
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(run.spans.len(), 5);
    // The receiver read the bodies with opentelemetry-proto's serde
    // mapping of OTLP/JSON; the spans are the stdout ones.
    assert_same_spans(&run, &collector.inbox, &servers::with_children(nginx.pid()));
    let received = collector.inbox.all();
    assert!(!received.is_empty());
    let mut spans_seen = 0;
    for r in &received {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(r.headers.get("content-encoding"), None);
        // The encoding rules of the OTLP spec, on the body as sent.
        let body: Value = serde_json::from_slice(&r.body).expect("a JSON body");
        for rs in body["resourceSpans"].as_array().expect("resourceSpans") {
            let pid = rs["resource"]["attributes"]
                .as_array()
                .expect("resource attributes")
                .iter()
                .find(|kv| kv["key"] == "process.pid")
                .expect("process.pid");
            assert!(
                pid["value"]["intValue"].as_str().is_some(),
                "int64 as a string: {pid}"
            );
            for span in rs["scopeSpans"][0]["spans"].as_array().expect("spans") {
                spans_seen += 1;
                assert!(is_hex_id(&span["traceId"], 16), "{span}");
                assert!(is_hex_id(&span["spanId"], 8), "{span}");
                assert!(span["kind"].is_u64(), "enum as an integer: {span}");
                for time in ["startTimeUnixNano", "endTimeUnixNano"] {
                    assert!(
                        span[time]
                            .as_str()
                            .is_some_and(|t| t.parse::<u64>().is_ok()),
                        "{time} as a decimal string: {span}"
                    );
                }
            }
        }
    }
    assert_eq!(spans_seen, 5);
    assert_eq!(sink_counts(&run, "otlp"), (5, 0, 0), "{}", run.summary());
}

/// The OTLP environment of a tracer exporting to `endpoint` with the test
/// CA, and the client certificate when `client` is set.
fn tls_env<'a>(
    transport: Transport,
    endpoint: &'a str,
    pki: &'a pki::Pki,
    client: bool,
) -> Vec<(&'a str, &'a str)> {
    let path = |p: &'a std::path::Path| p.to_str().expect("UTF-8 path");
    let protocol = match transport {
        Transport::Grpc => "grpc",
        Transport::Http => "http/protobuf",
    };
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca)),
    ];
    if client {
        env.push((
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            path(&pki.client_cert),
        ));
        env.push(("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.client_key)));
    }
    env
}

#[test]
fn otlp_over_tls_with_a_test_ca_and_client_certificates_on_both_transports() {
    let dir = TempDir::new("otlp-pki");
    let pki = pki::make(dir.path());
    let nginx = servers::nginx(1);
    let pid = nginx.pid().to_string();
    let pids = servers::with_children(nginx.pid());
    for transport in [Transport::Grpc, Transport::Http] {
        let collector = Collector::start_with_tls(
            transport,
            free_port(),
            Inbox::default(),
            Some(ServerTls {
                cert: pki.server_cert.clone(),
                key: pki.server_key.clone(),
                client_ca: Some(pki.ca.clone()),
            }),
        );
        let endpoint = collector.endpoint();
        assert!(endpoint.starts_with("https://"));

        // The test CA trusted and the client certificate shown: delivered.
        let tracer =
            Tracer::start_with_env(&["--pid", &pid], &tls_env(transport, &endpoint, &pki, true));
        request_mix(&nginx);
        let run = tracer.stop();
        assert!(run.exit_ok, "{:?}", run.stderr);
        assert_same_spans(&run, &collector.inbox, &pids);
        assert_eq!(
            sink_counts(&run, "otlp"),
            (5, 0, 0),
            "{transport:?} with a client certificate: {}",
            run.summary()
        );

        // Without the client certificate the receiver refuses every
        // export: nothing arrives, the failure is reported and counted.
        let before = collector.inbox.all().len();
        let tracer = Tracer::start_with_env(
            &["--pid", &pid],
            &tls_env(transport, &endpoint, &pki, false),
        );
        request_mix(&nginx);
        let run = tracer.stop();
        assert!(run.exit_ok, "{:?}", run.stderr);
        assert_eq!(run.spans.len(), 5, "stdout unaffected");
        assert_eq!(collector.inbox.all().len(), before, "refused, yet received");
        assert_eq!(
            sink_counts(&run, "otlp"),
            (0, 5, 0),
            "{transport:?} without a client certificate: {}",
            run.summary()
        );
        assert_eq!(run.stats().spans_dropped, 5);
        let failure = run
            .stderr
            .iter()
            .find(|l| l.contains("otlp: export failed"))
            .unwrap_or_else(|| panic!("the refusal was not reported: {:?}", run.stderr));
        eprintln!("{transport:?} without a client certificate: {failure}");
        // With TLS 1.3 the client's handshake ends before the server has
        // checked its certificate: the server's `certificate_required`
        // alert is read only if it arrives before the connection closes.
        assert!(
            failure.contains("CertificateRequired") || failure.contains("connection closed"),
            "the reason is given: {failure}"
        );
    }
}

#[test]
fn otlp_tls_without_the_test_ca_is_refused() {
    let dir = TempDir::new("otlp-pki-untrusted");
    let pki = pki::make(dir.path());
    let nginx = servers::nginx(1);
    let collector = Collector::start_with_tls(
        Transport::Http,
        free_port(),
        Inbox::default(),
        Some(ServerTls {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: None,
        }),
    );
    let endpoint = collector.endpoint();
    // The built-in roots do not know the test CA: the server is not
    // trusted, nothing is sent.
    let tracer = Tracer::start_with_env(
        &["--pid", &nginx.pid().to_string()],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    request_mix(&nginx);
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert!(collector.inbox.all().is_empty());
    assert_eq!(sink_counts(&run, "otlp"), (0, 5, 0), "{}", run.summary());
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("otlp: export failed") && l.contains("UnknownIssuer")),
        "{:?}",
        run.stderr
    );
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: load through a collector outage, then its accounting"
)]
fn collector_outage_never_stalls_capture_and_nothing_is_lost_silently() {
    let nginx = servers::nginx(1);
    let mut collector = Collector::start(Transport::Grpc, free_port(), Inbox::default());
    let endpoint = collector.endpoint();
    let mut tracer = Tracer::start(&[
        "--pid",
        &nginx.pid().to_string(),
        "--otlp-endpoint",
        &endpoint,
        "--otlp-protocol",
        "grpc",
    ]);

    // A steady trickle of requests for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let url = nginx.url("/hello");
    let load = {
        let (stop, made) = (stop.clone(), made.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(curl(&url), "200");
                made.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    thread::sleep(Duration::from_secs(3));
    let before_outage = collector.inbox.spans().len();
    assert!(before_outage > 0, "nothing exported before the outage");

    collector.stop();
    let outage_start = Instant::now();
    let spans_at_stop = tracer.spans_so_far().len();
    let made_at_stop = made.load(Ordering::Relaxed);
    // Capture keeps going: spans keep appearing on stdout, second by second.
    let mut per_second = Vec::new();
    let mut last = spans_at_stop;
    while outage_start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_secs(1));
        let now = tracer.spans_so_far().len();
        per_second.push(now - last);
        last = now;
    }
    let made_during = made.load(Ordering::Relaxed) - made_at_stop;
    let seen_during = (last - spans_at_stop) as u64;
    eprintln!("outage: {made_during} requests made, {seen_during} spans on stdout, per second {per_second:?}");
    assert!(made_during > 50, "too little load to judge: {made_during}");
    assert!(
        seen_during + 5 >= made_during,
        "capture stalled during the outage: {seen_during} spans for {made_during} requests"
    );
    assert!(
        per_second.iter().skip(1).all(|&n| n > 0),
        "a second without spans: {per_second:?}"
    );
    let during_outage_ns = {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        u64::try_from(now_ns - outage_start.elapsed().as_nanos()).unwrap()
    };

    collector.restart();
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);

    for line in run.stderr.iter().filter(|l| l.contains("otlp")) {
        eprintln!("tracer said: {line}");
    }
    let emitted = run.stats().spans;
    assert_eq!(emitted, run.spans.len() as u64, "stdout has every span");
    let (exported, dropped, queue_full) = sink_counts(&run, "otlp");
    let received = collector.inbox.spans();
    let unique: HashSet<Vec<u8>> = received.iter().map(|(_, s)| s.span_id.clone()).collect();
    eprintln!(
        "outage test: {emitted} spans emitted, {exported} exported, {dropped} dropped after retries, \
         {queue_full} dropped on full queue; collector received {} ({} unique)",
        received.len(),
        unique.len()
    );
    assert_eq!(
        exported + dropped + queue_full,
        emitted,
        "every span accounted for: {}",
        run.summary()
    );
    assert_eq!(unique.len() as u64, exported, "exported means received");
    let stdout_ids: HashSet<String> = run
        .spans
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        unique.iter().all(|id| stdout_ids.contains(&hex(id))),
        "only real spans arrive"
    );
    // Spans captured while the collector was down were retried and arrived.
    let from_outage = received
        .iter()
        .filter(|(_, s)| s.start_time_unix_nano > during_outage_ns)
        .count();
    assert!(
        from_outage > 0 || dropped > 0,
        "outage spans neither delivered nor counted"
    );
    assert!(
        run.stderr.iter().any(|l| l.contains("otlp: export failed")),
        "the outage was reported: {:?}",
        run.stderr
    );
}

#[test]
fn collector_down_for_the_whole_run_spans_are_counted_as_dropped_on_exit() {
    let nginx = servers::nginx(1);
    // Nothing listens there.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let tracer = Tracer::start(&[
        "--pid",
        &nginx.pid().to_string(),
        "--otlp-endpoint",
        &endpoint,
    ]);
    request_mix(&nginx);
    let stopping = Instant::now();
    let run = tracer.stop();
    let took = stopping.elapsed();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(run.spans.len(), 5, "stdout unaffected");
    assert_eq!(sink_counts(&run, "otlp"), (0, 5, 0), "{}", run.summary());
    assert_eq!(run.stats().spans_dropped, 5);
    // The exit flush has a 5 s deadline (plus the harness's own waits).
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("not exported before the exit deadline")),
        "{:?}",
        run.stderr
    );
}

/// Reads `/metrics` with curl and parses it with a real Prometheus text
/// parser; every line must be understood.
fn scrape(addr: &str) -> (String, prometheus_parse::Scrape) {
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", &format!("http://{addr}/metrics")])
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for line in body.lines() {
        assert!(
            !matches!(
                prometheus_parse::LineInfo::parse(line),
                prometheus_parse::LineInfo::Ignored
            ),
            "unparsable exposition line {line:?}"
        );
    }
    let scrape =
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parse");
    (body.to_owned(), scrape)
}

fn metric(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<prometheus_parse::Value> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| s.value.clone())
        .collect()
}

fn counter_sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(scrape, name, labels)
        .into_iter()
        .map(|v| match v {
            prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Gauge(n) => n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

#[test]
#[expect(
    clippy::float_cmp,
    reason = "the counts and bucket bounds compared are whole numbers, exact in f64"
)]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: every sink checked against the same run"
)]
fn every_sink_at_once_metrics_file_and_otlp_agree_with_stdout() {
    let nginx = servers::nginx(1);
    let collector = Collector::start(Transport::Http, free_port(), Inbox::default());
    let dir = TempDir::new("export-all");
    let file = dir.path().join("spans.jsonl");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let endpoint = collector.endpoint();
    let tracer = Tracer::start(&[
        "--pid",
        &nginx.pid().to_string(),
        "--otlp-endpoint",
        &endpoint,
        "--output-file",
        file.to_str().unwrap(),
        "--metrics-addr",
        &metrics_addr,
    ]);
    for _ in 0..4 {
        assert_eq!(curl(&nginx.url("/hello")), "200");
    }
    for _ in 0..2 {
        assert_eq!(curl(&nginx.url("/teapot")), "418");
    }
    assert_eq!(curl(&nginx.url("/fail")), "503");
    assert_eq!(curl(&nginx.url("/index.html")), "200");
    // Spans reach the sinks within the poll interval; health numbers are
    // published once a second.
    thread::sleep(Duration::from_millis(2500));
    let (body, scrape) = scrape(&metrics_addr);
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(run.spans.len(), 8, "{:#?}", run.spans);

    // RED metrics, from the same spans.
    let nginx_labels = [("service_name", "nginx"), ("http_request_method", "GET")];
    let requests = |route: &str, code: &str| {
        let mut labels = nginx_labels.to_vec();
        labels.extend([("http_route", route), ("http_response_status_code", code)]);
        counter_sum(&scrape, "http_server_requests_total", &labels)
    };
    assert_eq!(requests("/hello", "200"), 4.0, "{body}");
    assert_eq!(requests("/teapot", "418"), 2.0, "{body}");
    assert_eq!(requests("/fail", "503"), 1.0, "{body}");
    assert_eq!(requests("/index.html", "200"), 1.0, "{body}");
    assert_eq!(
        counter_sum(&scrape, "http_server_requests_total", &[]),
        run.spans.len() as f64
    );
    assert_eq!(
        counter_sum(
            &scrape,
            "http_server_request_errors_total",
            &[("http_route", "/fail")]
        ),
        1.0
    );
    assert_eq!(
        counter_sum(&scrape, "http_server_request_errors_total", &[]),
        1.0,
        "4xx is not a server error"
    );
    let hello = metric(
        &scrape,
        "http_server_request_duration_seconds",
        &[("http_route", "/hello")],
    );
    match hello.as_slice() {
        [prometheus_parse::Value::Histogram(buckets)] => {
            let inf = buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .expect("+Inf bucket");
            assert_eq!(inf.count, 4.0);
            assert!(
                buckets.windows(2).all(|w| w[0].count <= w[1].count),
                "cumulative: {buckets:?}"
            );
            let within_1s = buckets.iter().find(|b| b.less_than == 1.0).expect("le=1");
            assert_eq!(
                within_1s.count, 4.0,
                "loopback requests take well under 1 s"
            );
        }
        other => panic!("hello histogram: {other:?}\n{body}"),
    }
    // The tracer's own health.
    assert_eq!(
        counter_sum(&scrape, "tracer_spans_emitted_total", &[]),
        8.0,
        "{body}"
    );
    assert!(counter_sum(&scrape, "tracer_events_read_total", &[]) > 0.0);
    assert_eq!(counter_sum(&scrape, "tracer_events_lost_total", &[]), 0.0);
    assert_eq!(
        counter_sum(&scrape, "tracer_parser_desyncs_total", &[]),
        0.0
    );
    for sink in ["stdout-json", "otlp", "file", "metrics", "summary"] {
        assert_eq!(
            metric(&scrape, "tracer_sink_queue_depth", &[("sink", sink)]).len(),
            1,
            "{sink}\n{body}"
        );
        assert_eq!(
            counter_sum(&scrape, "tracer_export_failures_total", &[("sink", sink)]),
            0.0
        );
    }
    assert_eq!(
        counter_sum(
            &scrape,
            "tracer_sink_spans_written_total",
            &[("sink", "otlp")]
        ),
        8.0,
        "{body}"
    );

    // OTLP got them all.
    assert_same_spans(&run, &collector.inbox, &servers::with_children(nginx.pid()));
    assert_eq!(sink_counts(&run, "otlp"), (8, 0, 0));
    assert_eq!(sink_counts(&run, "file"), (8, 0, 0));

    // The file holds the same spans as OTLP-JSON lines...
    let stored = std::fs::read_to_string(&file).expect("read the span file");
    let mut stored_ids = HashSet::new();
    for line in stored.lines() {
        let request: Value = serde_json::from_str(line).expect("one JSON request per line");
        for rs in request["resourceSpans"].as_array().expect("resourceSpans") {
            for span in rs["scopeSpans"][0]["spans"].as_array().expect("spans") {
                assert!(span["startTimeUnixNano"].is_string(), "fixed64 as a string");
                stored_ids.insert(span["spanId"].as_str().expect("spanId").to_owned());
            }
        }
    }
    let stdout_ids: HashSet<String> = run
        .spans
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored_ids, stdout_ids);

    // ...which `tracer report` reads back into the same counts.
    let report = report_table(&[file.to_str().unwrap()]);
    assert_eq!(report_row(&report, "GET /hello"), (4, 0));
    assert_eq!(report_row(&report, "GET /teapot"), (2, 0));
    assert_eq!(report_row(&report, "GET /fail"), (1, 1));
    // The exit summary has the same table.
    let stats = run.stats();
    for operation in ["GET /hello", "GET /teapot", "GET /fail"] {
        let row = stats
            .latency
            .iter()
            .find(|r| r.service == "nginx" && r.kind == "server" && r.operation == operation)
            .unwrap_or_else(|| panic!("no row for {operation}: {}", run.summary()));
        assert_eq!((row.count, row.errors), report_row(&report, operation));
        assert!(row.p50_ns > 0 && row.p50_ns <= row.p99_ns, "{row:?}");
    }
}

/// Runs `tracer report` and returns its stdout (the table).
fn report_table(files: &[&str]) -> String {
    let out = Command::new(tracer_binary())
        .arg("report")
        .args(files)
        .output()
        .expect("run tracer report");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tracer report failed: {stderr}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// (count, errors) of the nginx server row named `operation`.
fn report_row(table: &str, operation: &str) -> (u64, u64) {
    let line = table
        .lines()
        .find(|l| l.starts_with("nginx") && l.contains(&format!(" {operation} ")))
        .unwrap_or_else(|| panic!("no row for {operation}:\n{table}"));
    let after = &line[line.find(operation).unwrap() + operation.len()..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    (
        fields[0].parse().expect("count"),
        fields[1].parse().expect("errors"),
    )
}

#[test]
fn report_reads_rotated_files_and_counts_bad_input() {
    let nginx = servers::nginx(1);
    let dir = TempDir::new("report");
    let file = dir.path().join("spans.jsonl");
    let tracer = Tracer::start(&[
        "--pid",
        &nginx.pid().to_string(),
        "--output-file",
        file.to_str().unwrap(),
    ]);
    for _ in 0..3 {
        assert_eq!(curl(&nginx.url("/hello")), "200");
    }
    assert_eq!(curl(&nginx.url("/fail")), "503");
    let run = tracer.stop();
    assert_eq!(run.spans.len(), 4);
    // A "rotated" file and some garbage beside the real one.
    let rotated = dir.path().join("spans.jsonl.1");
    std::fs::copy(&file, &rotated).expect("copy");
    let mut text = std::fs::read_to_string(&rotated).unwrap();
    text.push_str("this is not json\n{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"x\"}]}]}]}\n");
    std::fs::write(&rotated, text).unwrap();

    let both = Command::new(tracer_binary())
        .args(["report", file.to_str().unwrap(), rotated.to_str().unwrap()])
        .output()
        .expect("run tracer report");
    assert!(both.status.success());
    let table = String::from_utf8(both.stdout).unwrap();
    assert_eq!(report_row(&table, "GET /hello"), (6, 0));
    assert_eq!(report_row(&table, "GET /fail"), (2, 2));
    assert!(table.lines().next().unwrap().contains("P99"));
    let notes = String::from_utf8(both.stderr).unwrap();
    assert!(
        notes.contains("8 spans from 2 file(s); 1 malformed lines and 1 malformed spans skipped"),
        "{notes}"
    );

    // Missing files and files with nothing readable: one line each, exit 1.
    let missing = dir.path().join("nope.jsonl");
    let out = Command::new(tracer_binary())
        .args(["report", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read") && stderr.contains("nope.jsonl"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, b"\x00\xff garbage\n{}\n").unwrap();
    let out = Command::new(tracer_binary())
        .args(["report", junk.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 malformed lines skipped") && stderr.contains("no spans could be read"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_export_settings_are_one_clear_error_before_attaching() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new("bad-export");
    let unwritable = dir.path().join("no/such/dir/spans.jsonl");
    let missing_pem = dir.path().join("missing.pem").display().to_string();
    let missing_pem_message =
        format!("OTEL_EXPORTER_OTLP_CERTIFICATE={missing_pem}: No such file or directory");
    let not_pem = dir.path().join("notes.txt").display().to_string();
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let not_pem_message =
        format!("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE={not_pem}: no PEM CERTIFICATE block");
    for (args, env, expect) in [
        (
            vec!["--otlp-endpoint", "collector:4317"],
            vec![],
            "not an http:// or https:// URL",
        ),
        (
            vec![],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL: unknown value \"http/xml\" (accepted: grpc, http/protobuf, http/json)",
        ),
        (
            vec![],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd"),
            ],
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: unknown value \"zstd\" (accepted: gzip, none)",
        ),
        (
            vec![],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", missing_pem.as_str()),
            ],
            missing_pem_message.as_str(),
        ),
        (
            vec![],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", not_pem.as_str()),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", not_pem.as_str()),
            ],
            not_pem_message.as_str(),
        ),
        (
            vec![],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", not_pem.as_str()),
            ],
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY is set without OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE",
        ),
        (
            vec![
                "--otlp-endpoint",
                "http://c:4318",
                "--otlp-header",
                "novalue",
            ],
            vec![],
            "OTLP header",
        ),
        (
            vec![],
            vec![("OTEL_RESOURCE_ATTRIBUTES", "oops")],
            "OTEL_RESOURCE_ATTRIBUTES",
        ),
        (
            vec!["--metrics-addr", taken_addr.as_str()],
            vec![],
            "--metrics-addr",
        ),
        (
            vec!["--output-file", unwritable.to_str().unwrap()],
            vec![],
            "--output-file",
        ),
    ] {
        let out = Command::new(tracer_binary())
            .args(["--pid", &std::process::id().to_string()])
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .expect("run tracer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} accepted");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("attached"), "{stderr}");
    }
}
