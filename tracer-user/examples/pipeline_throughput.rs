//! How many ring-buffer records per second the user-side pipeline handles
//! on one core: decode → connections → HTTP/1 parser → spans (no sinks).
//!
//! The records are built exactly as the kernel writes them, carrying a curl
//! request and an nginx response as they crossed the wire, on 64 keep-alive
//! connections in turn.
//!
//! With `redis` as the third argument, the records instead carry the
//! `redis-benchmark -P 16` captures of the parser tests (16 pipelined `SET`s
//! per write and their 16 `+OK`s per read, then `GET`s and their bulk
//! replies), one span per command.
//!
//! `pipeline_throughput [ROUNDS] [json|text|summary|none] [http|redis]`: with `json` (`text`),
//! every span is also encoded as the stdout JSON (text) sink encodes it
//! (into a reused buffer, not written anywhere); with `summary`, every span
//! is also added to the exit latency table as the summary sink adds it. A
//! sink's cost is the difference between a run with and one without it
//! (e.g. in instructions under callgrind).
#![expect(
    clippy::expect_used,
    reason = "a benchmark harness: input it cannot use stops it loudly, as in the tests"
)]

use std::time::Instant;

use tracer::linking::LinkConfig;
use tracer::pipeline::{Pipeline, PipelineConfig};
use tracer::protocols::{ParserOptions, Protocol};
use tracer::report::LatencyTable;
use tracer::sinks::{resource::ResourceConfig, summary, write_json_line, write_text_line};
use tracer_common::{
    ConnEvent, DataEvent, Direction, EventKind, Role, Syscall, AF_INET, IPPROTO_TCP,
};

const REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 29 Nov 2026 15:19:18 GMT\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n";
const CONNECTIONS: u32 = 64;
/// Real `redis-benchmark -P 16` traffic, as the recording proxy saw it.
const REDIS_CAPTURES: [&[u8]; 2] = [
    include_bytes!("../src/protocols/testdata/redis/benchmark_set_p16.cap"),
    include_bytes!("../src/protocols/testdata/redis/benchmark_get_p16.cap"),
];

/// The records of a capture (see testdata/README.md): client to server or
/// not, and the bytes.
fn capture_records(capture: &[u8]) -> Vec<(bool, &[u8])> {
    let mut records = Vec::new();
    let mut rest = capture;
    while let [side, l0, l1, l2, l3, tail @ ..] = rest {
        let len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
        let (bytes, after) = tail.split_at(len);
        records.push((*side == b'C', bytes));
        rest = after;
    }
    records
}

/// Commands in a client write of array commands: every line starting `*`
/// (the benchmark's arguments hold none).
fn commands_in(bytes: &[u8]) -> u64 {
    let starts = bytes.windows(3).filter(|w| w == b"\r\n*").count();
    (starts + usize::from(bytes.first() == Some(&b'*'))) as u64
}

fn as_bytes<T: Copy>(value: &T) -> Vec<u8> {
    let mut out = vec![0u8; size_of::<T>()];
    // SAFETY: T is a plain repr(C) event struct; the buffer is exactly its size.
    unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast::<T>(), *value) };
    out
}

fn data_record(
    fd: u32,
    ts: u64,
    direction: Direction,
    syscall: Syscall,
    payload: &[u8],
) -> Vec<u8> {
    let header = DataEvent {
        kind: EventKind::Data as u8,
        direction: direction as u8,
        syscall: syscall as u8,
        flags: 0,
        pid: 4242,
        tid: 4242,
        fd,
        timestamp_ns: ts,
        sock: 0xffff_8880_0000_0000 + u64::from(fd),
        goroutine: 0,
        total_len: u32::try_from(payload.len()).expect("captured payloads are small"),
        captured_len: u32::try_from(payload.len()).expect("captured payloads are small"),
    };
    let mut record = as_bytes(&header);
    record.extend_from_slice(payload);
    record
}

/// Opens every connection (server side, as the kernel reports an accept).
fn open_connections(pipeline: &mut Pipeline, redis: bool) {
    for fd in 0..CONNECTIONS {
        let mut local_addr = [0u8; 16];
        local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let open = ConnEvent {
            kind: EventKind::ConnOpen as u8,
            role: Role::Server as u8,
            family: AF_INET,
            pid: 4242,
            tid: 4242,
            fd: 100 + fd,
            timestamp_ns: 1,
            sock: 0xffff_8880_0000_0000 + u64::from(100 + fd),
            local_addr,
            remote_addr: local_addr,
            local_port: if redis { 6379 } else { 8080 },
            remote_port: 40000 + u16::try_from(fd).expect("64 connections"),
            protocol: IPPROTO_TCP,
            _pad: 0,
        };
        pipeline.handle_record(&as_bytes(&open));
    }
}

/// One round: a request and a response on every connection (HTTP), or
/// both benchmark captures on every connection (Redis); and its span count.
fn one_round(redis: bool) -> (Vec<Vec<u8>>, u64) {
    if redis {
        let records: Vec<(bool, &[u8])> = REDIS_CAPTURES
            .iter()
            .flat_map(|c| capture_records(c))
            .collect();
        let commands: u64 = records
            .iter()
            .filter(|(client, _)| *client)
            .map(|(_, b)| commands_in(b))
            .sum();
        let round = (0..CONNECTIONS)
            .flat_map(|c| {
                records
                    .iter()
                    .enumerate()
                    .map(move |(i, &(client, bytes))| {
                        // As redis-server reads and writes.
                        let (direction, syscall) = if client {
                            (Direction::Ingress, Syscall::Read)
                        } else {
                            (Direction::Egress, Syscall::Write)
                        };
                        data_record(100 + c, 10 * (i as u64 + 1), direction, syscall, bytes)
                    })
            })
            .collect();
        (round, commands * u64::from(CONNECTIONS))
    } else {
        let round = (0..CONNECTIONS)
            .flat_map(|c| {
                [
                    data_record(100 + c, 10, Direction::Ingress, Syscall::Recvfrom, REQUEST),
                    data_record(100 + c, 20, Direction::Egress, Syscall::Writev, RESPONSE),
                ]
            })
            .collect();
        (round, u64::from(CONNECTIONS))
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let mode = std::env::args().nth(2).unwrap_or_default();
    let redis = std::env::args().nth(3).is_some_and(|w| w == "redis");
    let mut pipeline = Pipeline::new(PipelineConfig {
        enabled: vec![Protocol::Http, Protocol::Redis, Protocol::Postgresql],
        options: ParserOptions::default(),
        max_connections: 65536,
        wall_offset_ns: 0,
        // The tracer's defaults: a 2 s window, 65536 spans.
        link: LinkConfig {
            window_ns: 2_000_000_000,
            max_spans: 65536,
        },
    });
    open_connections(&mut pipeline, redis);
    let (round, spans_per_round) = one_round(redis);
    let (json, text) = (mode == "json", mode == "text");
    let mut table = (mode == "summary").then(LatencyTable::default);
    let resource = ResourceConfig::default();
    // As the stdout sink does: one buffer reused for every line.
    let mut line = Vec::with_capacity(512);
    let mut json_bytes = 0u64;
    let started = Instant::now();
    let mut spans = 0u64;
    for _ in 0..rounds {
        for record in &round {
            pipeline.handle_record(record);
        }
        if let Some(batch) = pipeline.take_batch() {
            spans += batch.len() as u64;
            if json {
                for span in batch.iter() {
                    line.clear();
                    write_json_line(&mut line, span);
                    json_bytes += line.len() as u64;
                }
            }
            if text {
                for span in batch.iter() {
                    line.clear();
                    write_text_line(&mut line, span);
                    json_bytes += line.len() as u64;
                }
            }
            if let Some(table) = &mut table {
                summary::add(table, &batch, &resource);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let records = (rounds * round.len()) as f64;
    println!("| records | spans | seconds | records/s | spans/s |");
    println!("|---|---|---|---|---|");
    println!(
        "| {records:.0} | {spans} | {elapsed:.2} | {:.0} | {:.0} |",
        records / elapsed,
        spans as f64 / elapsed
    );
    if json || text {
        println!(
            "\n{mode}: {json_bytes} bytes, {:.0} bytes/span",
            json_bytes as f64 / spans.max(1) as f64
        );
    }
    if let Some(table) = &table {
        println!("\nsummary: {} spans in the table", table.spans());
    }
    assert_eq!(
        spans,
        spans_per_round * rounds as u64,
        "every request became a span"
    );
}
