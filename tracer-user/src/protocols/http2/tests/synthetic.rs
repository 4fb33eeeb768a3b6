//! Hand-built frames for what the recordings do not show: resets,
//! interim responses, CONTINUATION, oversized blocks, many streams.

use super::*;
use crate::protocols::test_support::*;

fn grpc_request(stream: u32, method: &str) -> Vec<u8> {
    let path = format!("/demo.v1.Greeter/{method}");
    frame(
        HEADERS,
        END_HEADERS,
        stream,
        &block(&[
            (":method", "POST"),
            (":path", &path),
            ("content-type", "application/grpc"),
        ]),
    )
}

fn get(stream: u32, path: &str) -> Vec<u8> {
    frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        stream,
        &block(&[(":method", "GET"), (":scheme", "http"), (":path", path)]),
    )
}

fn status(stream: u32, code: &str, flags: u8) -> Vec<u8> {
    frame(
        HEADERS,
        END_HEADERS | flags,
        stream,
        &block(&[(":status", code)]),
    )
}

/// A connection: the client's opening at ts 1, then step `i` at `ts(i)`
/// (so summaries count in steps), then the close at `ts(steps.len())`.
fn converse(steps: &[(Side, Vec<u8>)]) -> ParseOutput {
    let mut parser = parser();
    let mut out = ParseOutput::default();
    feed(&mut parser, Side::Client, 1, &client_opening(), &mut out);
    feed(
        &mut parser,
        Side::Server,
        1,
        &frame(SETTINGS, 0, 0, &[]),
        &mut out,
    );
    for (i, (side, data)) in steps.iter().enumerate() {
        feed(&mut parser, *side, ts(i), data, &mut out);
    }
    parser.on_close(ts(steps.len()), &mut out);
    out
}

#[test]
fn resets_end_exchanges_with_a_fault() {
    let out = converse(&[
        (Side::Client, grpc_request(1, "Watch")),
        (Side::Server, status(1, "200", 0)),
        (Side::Client, frame(RST_STREAM, 0, 1, &8u32.to_be_bytes())),
        (Side::Client, get(3, "/x")),
        (Side::Server, frame(RST_STREAM, 0, 3, &2u32.to_be_bytes())),
    ]);
    assert_eq!(out.exchanges.len(), 2);
    let cancelled = &out.exchanges[0];
    assert_eq!(cancelled.name, "demo.v1.Greeter/Watch");
    assert_eq!((cancelled.start_ns, cancelled.end_ns), (ts(0), ts(2)));
    assert_eq!(cancelled.fault, Fault::Client, "the client gave up");
    assert_eq!(attr_str(cancelled, "error.type"), Some("CANCEL"));
    assert!(!cancelled.incomplete, "the response head came");
    assert_eq!(attr(cancelled, "rpc.grpc.status_code"), None);
    let failed = &out.exchanges[1];
    assert_eq!(failed.name, "GET /x");
    assert_eq!(failed.fault, Fault::Server);
    assert_eq!(attr_str(failed, "error.type"), Some("INTERNAL_ERROR"));
    assert!(failed.incomplete);
    assert_eq!(attr(failed, "http.response.status_code"), None);
}

#[test]
fn interim_responses_are_skipped() {
    let out = converse(&[
        (
            Side::Client,
            frame(
                HEADERS,
                END_HEADERS,
                1,
                &block(&[(":method", "PUT"), (":path", "/up")]),
            ),
        ),
        (Side::Server, status(1, "100", 0)),
        (Side::Client, frame(DATA, END_STREAM, 1, b"payload")),
        (Side::Server, status(1, "201", 0)),
        (Side::Server, frame(DATA, END_STREAM, 1, b"ok")),
    ]);
    assert_eq!(summary(&out), [http("PUT /up", 201, Fault::None, 0, 4)]);
    assert_eq!(body_sizes(&out), [(Some(7), Some(2))]);
}

#[test]
fn continuation_frames_complete_a_block() {
    let whole = block(&[
        (":method", "GET"),
        (":path", "/split"),
        ("x-long", &"v".repeat(300)),
    ]);
    let (a, rest) = whole.split_at(10);
    let (b, c) = rest.split_at(100);
    let mut request = frame(HEADERS, END_STREAM, 5, a);
    request.extend(frame(CONTINUATION, 0, 5, b));
    request.extend(frame(CONTINUATION, END_HEADERS, 5, c));
    let out = converse(&[
        (Side::Client, request),
        (Side::Server, status(5, "204", END_STREAM)),
    ]);
    assert_eq!(summary(&out), [http("GET /split", 204, Fault::None, 0, 1)]);
    assert_eq!(out.desyncs, 0);
}

#[test]
fn oversized_header_block_is_lost_not_buffered() {
    let huge = "h".repeat(70_000);
    let whole = block(&[
        (":method", "GET"),
        (":path", "/big-headers"),
        ("x-huge", &huge),
    ]);
    let (a, b) = whole.split_at(40_000);
    let mut request = frame(HEADERS, END_STREAM, 1, a);
    request.extend(frame(CONTINUATION, END_HEADERS, 1, b));
    let out = converse(&[
        (Side::Client, request),
        (Side::Server, status(1, "431", END_STREAM)),
        (Side::Client, get(3, "/after")),
        (Side::Server, status(3, "200", END_STREAM)),
    ]);
    assert_eq!(
        summary(&out),
        [
            http("HTTP/2 (headers unknown)", 431, Fault::Client, 0, 1),
            http("GET /after", 200, Fault::None, 2, 3),
        ]
    );
    assert_eq!(
        attr_str(&out.exchanges[0], "http.request.method"),
        Some("_OTHER")
    );
    assert_eq!(
        attr(&out.exchanges[0], "http.request.method_original"),
        None
    );
    assert_eq!(out.desyncs, 1, "the lost block drops the HPACK context");
}

#[test]
fn non_standard_methods_and_connect() {
    let out = converse(&[
        (
            Side::Client,
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &block(&[(":method", "PURGE"), (":path", "/cache?k=1")]),
            ),
        ),
        (Side::Server, status(1, "200", END_STREAM)),
        (
            Side::Client,
            frame(
                HEADERS,
                END_HEADERS,
                3,
                &block(&[(":method", "CONNECT"), (":authority", "example.org:443")]),
            ),
        ),
        (Side::Server, status(3, "200", 0)),
    ]);
    assert_eq!(out.exchanges.len(), 2);
    let purge = &out.exchanges[0];
    assert_eq!(purge.name, "HTTP /cache");
    assert_eq!(attr_str(purge, "http.request.method"), Some("_OTHER"));
    assert_eq!(
        attr_str(purge, "http.request.method_original"),
        Some("PURGE")
    );
    let connect = &out.exchanges[1];
    assert_eq!(connect.name, "CONNECT");
    assert_eq!(attr(connect, "url.path"), None);
    assert!(connect.incomplete, "tunnel still open at the close");
    assert_eq!(
        (
            connect.end_ns,
            int_attr(connect, "http.response.status_code")
        ),
        (ts(4), Some(200))
    );
}

#[test]
fn trailers_and_old_stream_ids_are_not_new_requests() {
    let out = converse(&[
        (
            Side::Client,
            frame(
                HEADERS,
                END_HEADERS,
                1,
                &block(&[(":method", "POST"), (":path", "/a")]),
            ),
        ),
        (Side::Client, frame(DATA, 0, 1, b"12345")),
        (
            Side::Client,
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &block(&[("x-checksum", "1")]),
            ),
        ),
        (Side::Server, status(1, "200", END_STREAM)),
        // Stream 1 is over; a late frame on it starts nothing.
        (Side::Client, get(1, "/again")),
        (Side::Server, status(1, "200", END_STREAM)),
        // A server response on a stream nobody opened.
        (Side::Server, status(7, "200", END_STREAM)),
    ]);
    assert_eq!(summary(&out), [http("POST /a", 200, Fault::None, 0, 3)]);
    assert_eq!(body_sizes(&out), [(Some(5), Some(0))]);
}

#[test]
fn tracked_streams_are_bounded() {
    let mut parser = parser();
    let mut out = ParseOutput::default();
    feed(&mut parser, Side::Client, 1, &client_opening(), &mut out);
    let extra = 5;
    for i in 0..u32::try_from(conversation::MAX_STREAMS + extra).unwrap() {
        feed(
            &mut parser,
            Side::Client,
            2,
            &get(2 * i + 1, "/pending"),
            &mut out,
        );
    }
    assert_eq!(out.desyncs, extra as u64);
    parser.on_close(3, &mut out);
    assert_eq!(out.exchanges.len(), conversation::MAX_STREAMS);
    assert!(out
        .exchanges
        .iter()
        .all(|e| e.incomplete && e.name == "GET /pending"));
}

#[test]
fn desync_on_client_side_resynchronises_on_frames() {
    let mut garbage_then_request = b"\x00\x00\x07\x06\x00\x00\x00\x00\x00garbage!".to_vec();
    garbage_then_request.extend(get(5, "/later"));
    garbage_then_request.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
    let out = converse(&[
        (Side::Client, get(1, "/first")),
        (Side::Server, status(1, "200", END_STREAM)),
        (Side::Client, garbage_then_request),
        (Side::Server, status(5, "200", END_STREAM)),
    ]);
    assert_eq!(
        summary(&out),
        [
            http("GET /first", 200, Fault::None, 0, 1),
            http("GET /later", 200, Fault::None, 2, 3)
        ]
    );
    assert_eq!(out.desyncs, 1);
}
