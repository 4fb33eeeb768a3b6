//! Connections caught mid-stream, gaps, garbage: degrade, never lie.

use super::*;
use crate::protocols::test_support::*;

const UNKNOWN_GRPC: &str = "grpc (method unknown)";
const UNKNOWN_HTTP: &str = "HTTP/2 (headers unknown)";

/// Replays `records` with the bytes `from..to` of record `index` replaced
/// by a gap.
fn replay_with_gap(records: &[Record], index: usize, from: usize, to: usize) -> ParseOutput {
    let mut parser = parser();
    let mut out = ParseOutput::default();
    for (i, record) in records.iter().enumerate() {
        if i == index {
            parser.on_data(record.side, record.ts_ns, &record.data[..from], &mut out);
            parser.on_gap(record.side, record.ts_ns, to - from, &mut out);
            parser.on_data(record.side, record.ts_ns, &record.data[to..], &mut out);
        } else {
            parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
        }
    }
    parser.on_close(close_ts(records), &mut out);
    out
}

#[test]
fn mid_stream_grpc_is_named_unknown_never_wrong() {
    // Twenty calls into the connection, every request is a run of dynamic
    // table indexes we never saw being added.
    let records = capture("grpc_many");
    let late = &records[20..];
    assert_eq!(detect(&late[0].data), Some(Side::Client));
    assert_eq!(detect(&records[21].data), Some(Side::Server));
    let out = replay_whole(&mut parser(), late);
    let expected: Vec<Summary> = (0..17)
        .map(|i| grpc(UNKNOWN_GRPC, None, Fault::None, 20 + 2 * i, 21 + 2 * i))
        .collect();
    assert_eq!(summary(&out), expected);
    assert_eq!(out.desyncs, 0, "both sides start at frame boundaries");
    for exchange in &out.exchanges {
        assert_eq!(attr(exchange, "rpc.service"), None);
        assert_eq!(attr(exchange, "rpc.method"), None);
        assert!(!exchange.incomplete);
    }
    // The traceparent is a literal: still read.
    let contexts = out
        .exchanges
        .iter()
        .filter(|e| e.trace_context.is_some())
        .count();
    assert_eq!(contexts, 14, "all but the four Fail calls");
    // Starting with the server's side changes nothing but the first call.
    let out = replay_whole(&mut parser(), &records[21..]);
    assert_eq!(summary(&out), expected[1..]);
    // Any cut of the late capture agrees.
    for seed in 0..4 {
        assert_eq!(
            replay_random(&mut parser(), late, seed).exchanges,
            replay_whole(&mut parser(), late).exchanges
        );
    }
    assert_eq!(
        replay_bytewise(&mut parser(), late).exchanges,
        replay_whole(&mut parser(), late).exchanges
    );
}

#[test]
fn mid_stream_entries_added_after_we_started_resolve() {
    // Caught after three calls: SayHello's path was indexed before we
    // looked (unknown), Fail's is indexed while we look, so the second
    // Fail call, a bare index, is named; so are the statuses sent as
    // literals.
    let records = capture("grpc_unary");
    let out = replay_whole(&mut parser(), &records[6..]);
    assert_eq!(
        summary(&out),
        [
            grpc(UNKNOWN_GRPC, None, Fault::None, 6, 8),
            grpc(UNKNOWN_GRPC, None, Fault::None, 9, 10),
            grpc(FAIL, Some(5), Fault::Client, 11, 12),
            grpc(FAIL, Some(13), Fault::Server, 13, 14),
            grpc(UNKNOWN_GRPC, None, Fault::None, 15, 16),
            grpc(UNKNOWN_GRPC, None, Fault::None, 17, 18),
        ]
    );
    assert_eq!(out.desyncs, 0);
}

#[test]
fn mid_stream_inside_a_frame_skips_to_the_next_boundary() {
    let records = capture("grpc_many");
    let mut late = records[20..].to_vec();
    // The first request's HEADERS frame is cut: it is lost, and counted.
    late[0].data.drain(..5);
    // The server's first read starts inside its trailers.
    late[1].data.drain(..40);
    let out = replay_whole(&mut parser(), &late);
    let expected: Vec<Summary> = (1..17)
        .map(|i| grpc(UNKNOWN_GRPC, None, Fault::None, 20 + 2 * i, 21 + 2 * i))
        .collect();
    assert_eq!(summary(&out), expected);
    assert_eq!(out.desyncs, 2, "one per side that started inside a frame");
    for seed in 0..4 {
        assert_eq!(
            replay_random(&mut parser(), &late, seed).exchanges,
            out.exchanges
        );
    }
}

#[test]
fn gaps_inside_data_count_as_body_and_keep_sync() {
    // nginx's 50 KB file: the first 8 KiB DATA frame loses 7980 bytes.
    let records = capture("nghttp_nginx_multi");
    let whole = replay_whole(&mut parser(), &records);
    let out = replay_with_gap(&records, 6, 20, 8000);
    assert_eq!(out.exchanges, whole.exchanges);
    assert_eq!(out.desyncs, 0);
    // gRPC's 40 KB request and response, each one DATA frame.
    let records = capture("grpc_unary");
    let whole = replay_whole(&mut parser(), &records);
    for index in [15, 16] {
        let out = replay_with_gap(&records, index, 100, 30_000);
        assert_eq!(out.exchanges, whole.exchanges, "record {index}");
        assert_eq!(out.desyncs, 0);
    }
    // Padding: nghttpd pads every frame; a gap inside its big response.
    let records = capture("nghttpd_padding_push");
    let whole = replay_whole(&mut parser(), &records);
    let out = replay_with_gap(&records, 3, 1000, 1200);
    assert_eq!(out.exchanges, whole.exchanges);
}

#[test]
fn gap_inside_a_header_block_names_headers_unknown() {
    // The first of nghttp's requests (stream 13) loses 10 bytes of its
    // header block: its name is unknown, and the client's HPACK context is
    // gone, but later requests send their paths as literals.
    let records = capture("nghttp_nginx_multi");
    let out = replay_with_gap(&records, 0, 130, 140);
    assert_eq!(
        summary(&out),
        [
            http(UNKNOWN_HTTP, 200, Fault::None, 0, 2),
            http("GET /index.html", 200, Fault::None, 0, 2),
            http("GET /missing", 404, Fault::Client, 0, 3),
            http("GET /fail", 503, Fault::Server, 0, 4),
            http("GET /teapot", 418, Fault::Client, 0, 4),
            http("GET /big.bin", 200, Fault::None, 0, 6),
        ]
    );
    let unknown = &out.exchanges[0];
    assert_eq!(attr_str(unknown, "http.request.method"), Some("_OTHER"));
    assert_eq!(attr(unknown, "url.path"), None);
    assert_eq!(int_attr(unknown, "http.response.body.size"), Some(6));
    assert_eq!(out.desyncs, 1);
}

#[test]
fn gap_over_frame_headers_resynchronises() {
    // One of the server's writes (a whole response) is lost: its stream
    // is reported at the close, incomplete; the server's HPACK context is
    // gone, so later statuses that refer to entries added before the gap
    // are unknown, while names (from the client's intact context) are
    // still right.
    let records = capture("grpc_many");
    let lost = 13;
    assert_eq!(records[lost].side, Side::Server);
    let len = records[lost].data.len();
    let out = replay_with_gap(&records, lost, 0, len);
    let mut expected: Vec<Summary> = Vec::new();
    for i in 0..24u64 {
        let (start, end) = if i == 0 {
            (2, 5)
        } else {
            (2 * i + 6, 2 * i + 7)
        };
        let name = if i % 6 == 5 { FAIL } else { SAY_HELLO };
        match end.cmp(&(lost as u64)) {
            std::cmp::Ordering::Less => {
                let (status, fault) = if i % 6 == 5 {
                    (3, Fault::Client)
                } else {
                    (0, Fault::None)
                };
                expected.push(grpc(name, Some(status), fault, start, end));
            }
            std::cmp::Ordering::Equal => {}
            // INVALID_ARGUMENT is first sent after the gap, as a literal
            // that is added to the table: later references to it resolve.
            std::cmp::Ordering::Greater if i % 6 == 5 => {
                expected.push(grpc(name, Some(3), Fault::Client, start, end));
            }
            std::cmp::Ordering::Greater => expected.push(grpc(name, None, Fault::None, start, end)),
        }
    }
    let close = close_ts(&records) / 1000 - 1;
    expected.push(grpc(SAY_HELLO, None, Fault::None, 12, close));
    assert_eq!(summary(&out), expected);
    assert!(out.exchanges.last().unwrap().incomplete);
    assert_eq!(out.desyncs, 1);
}

#[test]
fn garbage_never_panics_and_never_yields_exchanges() {
    let mut rng = fastrand::Rng::with_seed(42);
    // Bytes that get past the first checks: small lengths, known types.
    let alphabet = [
        0x00, 0x01, 0x04, 0x05, 0x08, 0x09, 0x25, 0x80, 0x82, 0x83, 0x88, 0xbe, 0x40, 0x3f,
    ];
    for round in 0..400 {
        let mut parser = parser();
        let mut out = ParseOutput::default();
        if round % 2 == 0 {
            parser.on_data(Side::Client, 1, &client_opening(), &mut out);
        }
        for step in 0..20u64 {
            let side = if rng.bool() {
                Side::Client
            } else {
                Side::Server
            };
            let len = rng.usize(0..300);
            let data = garbage(&mut rng, len, &alphabet);
            parser.on_data(side, step, &data, &mut out);
            if rng.u8(..) < 20 {
                parser.on_gap(side, step, rng.usize(0..100_000), &mut out);
            }
        }
        parser.on_close(100, &mut out);
        assert!(
            out.exchanges.is_empty(),
            "round {round}: {:?}",
            out.exchanges
        );
    }
}

#[test]
fn mangled_captures_never_panic() {
    let mut rng = fastrand::Rng::with_seed(9);
    for (name, bytes) in CAPTURES {
        let records = records(bytes);
        for _ in 0..20 {
            let mut mangled = records.clone();
            for record in &mut mangled {
                if rng.u8(..) < 40 && !record.data.is_empty() {
                    let at = rng.usize(..record.data.len());
                    record.data[at] = rng.u8(..);
                }
                if rng.u8(..) < 10 {
                    let keep = rng.usize(..=record.data.len());
                    record.data.truncate(keep);
                }
            }
            let out = replay_random(&mut parser(), &mangled, rng.u64(..));
            assert!(out.exchanges.len() <= 64, "{name}");
            for exchange in &out.exchanges {
                assert!(exchange.end_ns >= exchange.start_ns);
            }
        }
    }
}

#[test]
fn close_reports_calls_left_unanswered() {
    let records = capture("grpc_unary");
    // Cut after the request of the first Fail call.
    let cut = &records[..12];
    let out = replay_whole(&mut parser(), cut);
    let close = close_ts(cut) / 1000 - 1;
    assert_eq!(
        summary(&out),
        [
            grpc(SAY_HELLO, Some(0), Fault::None, 2, 5),
            grpc(SAY_HELLO, Some(0), Fault::None, 6, 8),
            grpc(SAY_HELLO, Some(0), Fault::None, 9, 10),
            grpc(FAIL, None, Fault::None, 11, close),
        ]
    );
    assert!(out.exchanges[3].incomplete);
    assert!(!out.exchanges[2].incomplete);
}
