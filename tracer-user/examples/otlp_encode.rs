//! What OTLP export costs the tracer per span.
//!
//! The spans are what the tracer makes of a curl request to nginx (the
//! records of `pipeline_throughput`, through the HTTP/1 parser and the span
//! builder, as server spans of one process on 64 connections), in batches
//! of 512 as the OTLP sink sends them.
//!
//! `otlp_encode [SPANS] [both|old|new|none]`: encodes SPANS spans (default
//! 1,000,000) into `ExportTraceServiceRequest` bytes, the old way (the
//! opentelemetry-proto structs of `encode::request`, then prost into a
//! reused buffer, as tonic's codec did) and/or the new way
//! (`wire::WireEncoder`), and prints ns and allocations per span. Under
//! callgrind, a run's instructions minus those of a `none` run (which only
//! makes the spans) are the encoding's.
//!
//! `otlp_encode SPANS send ENDPOINT [grpc|http]`: the whole OTLP sink
//! (encoding, tonic or reqwest, retries, counting) exporting SPANS spans
//! to ENDPOINT (e.g. the `otlp_receiver` example); prints the CPU time the
//! process spent per span while exporting.
#![expect(
    clippy::expect_used,
    reason = "a benchmark harness: input it cannot use stops it loudly, as in the tests"
)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use prost::Message as _;
use tracer::protocols::{new_parser, ParseOutput, ParserOptions, Protocol, Side, Transport};
use tracer::sinks::otlp::{self, encode, wire::WireEncoder, OtlpConfig, OtlpProtocol, Timing};
use tracer::sinks::{resource::ResourceConfig, Batch, Sinks};
use tracer::spans::{Span, SpanBuilder, SpanContext, SpanKind};

const REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 29 Nov 2026 15:19:18 GMT\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n";
const BATCH: usize = 512;
const CONNECTIONS: u16 = 64;

/// Counts every allocation, to report allocations per span.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One batch of spans as the tracer makes them from curl-to-nginx traffic.
fn batch() -> Vec<Span> {
    let mut builder = SpanBuilder::new(1_764_000_000_000_000_000);
    let local: SocketAddr = "127.0.0.1:8080".parse().expect("address");
    (0..BATCH)
        .map(|i| {
            let mut parser =
                new_parser(Protocol::Http, Transport::Tcp, ParserOptions::default()).expect("HTTP");
            let mut out = ParseOutput::default();
            let ts = 1_000_000 * i as u64;
            parser.on_data(Side::Client, ts, REQUEST, &mut out);
            parser.on_data(Side::Server, ts + 57_800, RESPONSE, &mut out);
            let exchange = out.exchanges.pop().expect("one exchange");
            let port = 40_000 + u16::try_from(i).expect("512") % CONNECTIONS;
            let ctx = SpanContext {
                pid: 8217,
                tid: 8217,
                process: Arc::from("nginx"),
                kind: SpanKind::Server,
                local: Some(local),
                remote: Some(SocketAddr::from(([127, 0, 0, 1], port))),
                tls: None,
            };
            builder.build(exchange, &ctx).0
        })
        .collect()
}

/// Encodes `rounds` batches with `encode`; returns ns and allocations per
/// span, and the bytes of one request.
fn measure(
    spans: &[Span],
    rounds: usize,
    mut encode: impl FnMut(&[Span]) -> usize,
) -> (f64, f64, usize) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes = encode(spans);
    }
    let elapsed = started.elapsed().as_nanos() as f64;
    let allocations = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64;
    let n = (rounds * spans.len()) as f64;
    (elapsed / n, allocations / n, bytes)
}

/// The process's user and system CPU time.
fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// The OTLP sink exporting `rounds` batches to `endpoint`.
fn send(spans: Vec<Span>, rounds: usize, endpoint: &str, protocol: OtlpProtocol) {
    let config = OtlpConfig {
        protocol,
        endpoint: endpoint.to_owned(),
        headers: Vec::new(),
        timeout: Duration::from_secs(10),
        compression: otlp::Compression::None,
        tls: otlp::TlsFiles::default(),
    };
    let capacity = 64;
    let mut sinks = Sinks::default();
    sinks.add(
        otlp::spawn(
            &config,
            Arc::new(ResourceConfig::default()),
            capacity,
            Timing::default(),
        )
        .expect("OTLP sink"),
    );
    let counters = sinks.counters()[0].1.clone();
    let batch = Batch::new(spans);
    let cpu = cpu_time();
    let started = Instant::now();
    for _ in 0..rounds {
        // As fast as the sink takes them, none lost to a full queue; when
        // it is nearly full, wait until half of it is done (few wake-ups).
        if counters.queued.load(Ordering::Relaxed) + 2 >= capacity as u64 {
            while counters.queued.load(Ordering::Relaxed) > capacity as u64 / 2 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        sinks.send(batch.clone());
    }
    let reports = sinks.finish();
    let (user, sys) = cpu_time();
    let user = user.saturating_sub(cpu.0).as_nanos() as f64;
    let sys = sys.saturating_sub(cpu.1).as_nanos() as f64;
    let elapsed = started.elapsed().as_secs_f64();
    let r = &reports[0];
    let n = (rounds * batch.len()) as f64;
    println!(
        "| spans | exported | failed | queue full | seconds | spans/s | CPU ns/span (user + sys) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {n:.0} | {} | {} | {} | {elapsed:.2} | {:.0} | {:.0} ({:.0} + {:.0}) |",
        r.written,
        r.failed,
        r.queue_full,
        n / elapsed,
        (user + sys) / n,
        user / n,
        sys / n
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mode = args.get(2).map_or("both", String::as_str);
    let rounds = total.div_ceil(BATCH);
    let spans = batch();
    let resource = ResourceConfig::default();
    if mode == "send" {
        let endpoint = args
            .get(3)
            .expect("otlp_encode SPANS send ENDPOINT [grpc|http]");
        let protocol = match args.get(4).map(String::as_str) {
            Some("http") => OtlpProtocol::HttpProtobuf,
            _ => OtlpProtocol::Grpc,
        };
        send(spans, rounds, endpoint, protocol);
        return;
    }
    println!("| encoding | spans | ns/span | allocations/span | bytes/span |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, (ns, allocs, bytes): (f64, f64, usize)| {
        println!(
            "| {name} | {} | {ns:.0} | {allocs:.2} | {:.0} |",
            rounds * BATCH,
            bytes as f64 / BATCH as f64
        );
    };
    let mut old_bytes = Vec::new();
    if mode == "old" || mode == "both" {
        // As tonic's prost codec did: the structs, encoded into its buffer.
        let mut buf = Vec::with_capacity(256 * 1024);
        row(
            "structs + prost",
            measure(&spans, rounds, |spans| {
                buf.clear();
                encode::request(spans, &resource)
                    .encode(&mut buf)
                    .expect("a Vec grows");
                buf.len()
            }),
        );
        old_bytes = buf;
    }
    if mode == "new" || mode == "both" {
        let mut encoder = WireEncoder::new();
        row(
            "wire (direct)",
            measure(&spans, rounds, |spans| {
                encoder.encode(spans, &resource).len()
            }),
        );
        if mode == "both" {
            let new_bytes = encoder.encode(&spans, &resource);
            assert_eq!(old_bytes, new_bytes, "both encodings give the same bytes");
        }
    }
}
