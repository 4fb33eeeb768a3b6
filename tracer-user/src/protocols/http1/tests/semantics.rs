//! Rules the captures do not exercise: upgrades, tunnels, close handling,
//! limits, odd targets and methods. Inputs are written out by hand here.

use crate::protocols::{Exchange, Fault, ParseOutput, Parser, ParserOptions, Side};

use super::super::conversation::MAX_PENDING;
use super::super::head::MAX_HEAD_BYTES;
use super::*;

/// Feeds (side, ts, bytes) calls; closes at `close_ns` if given.
fn run(calls: &[(Side, u64, &[u8])], close_ns: Option<u64>) -> ParseOutput {
    let mut parser = Http1Parser::new(ParserOptions::default());
    let mut out = ParseOutput::default();
    for (side, ts, bytes) in calls {
        parser.on_data(*side, *ts, bytes, &mut out);
    }
    if let Some(ts) = close_ns {
        parser.on_close(ts, &mut out);
    }
    out
}

fn names(exchanges: &[Exchange]) -> Vec<&str> {
    exchanges.iter().map(|e| e.name.as_str()).collect()
}

const C: Side = Side::Client;
const S: Side = Side::Server;

#[test]
fn upgrade_ends_http_parsing() {
    let out = run(
        &[
            (C, 1, b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            (S, 2, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
            (C, 3, b"\x81\x85\x00\x00\x00\x00hello"),
            (S, 4, b"\x88\x00 not http at all"),
        ],
        Some(5),
    );
    assert_eq!(out.desyncs, 0);
    assert_eq!(names(&out.exchanges), ["GET /chat"]);
    let exchange = &out.exchanges[0];
    assert_eq!(
        (exchange.start_ns, exchange.end_ns, exchange.incomplete),
        (1, 2, false)
    );
    assert_eq!(int_attr(exchange, "http.response.status_code"), Some(101));
}

#[test]
fn connect_tunnel_is_one_exchange() {
    let out = run(
        &[
            (
                C,
                1,
                b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n",
            ),
            (S, 2, b"HTTP/1.1 200 Connection Established\r\n\r\n"),
            (C, 3, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            (S, 4, b"\x16\x03\x03\x00\x7a\x02"),
        ],
        Some(5),
    );
    assert_eq!(out.desyncs, 0);
    assert_eq!(names(&out.exchanges), ["CONNECT"]);
    assert_eq!(
        str_attr(&out.exchanges[0], "url.path"),
        None,
        "the target names a server"
    );
}

#[test]
fn refused_connect_keeps_parsing() {
    let out = run(
        &[
            (C, 1, b"CONNECT example.org:443 HTTP/1.1\r\n\r\n"),
            (
                S,
                2,
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
            ),
            (C, 3, b"GET /next HTTP/1.1\r\n\r\n"),
            (S, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ],
        None,
    );
    assert_eq!(names(&out.exchanges), ["CONNECT", "GET /next"]);
    assert_eq!(out.exchanges[0].fault, Fault::Client);
}

#[test]
fn interim_responses_are_skipped() {
    let out = run(
        &[
            (C, 1, b"GET /hints HTTP/1.1\r\n\r\n"),
            (
                S,
                2,
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
            ),
            (
                S,
                3,
                b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            ),
            (S, 4, b"abc"),
        ],
        None,
    );
    assert_eq!(out.desyncs, 0);
    let [exchange] = out.exchanges.as_slice() else {
        panic!()
    };
    assert_eq!(int_attr(exchange, "http.response.status_code"), Some(200));
    assert_eq!((exchange.start_ns, exchange.end_ns), (1, 4));
}

#[test]
fn close_reports_unanswered_and_cut_short() {
    let out = run(
        &[
            (C, 10, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
            (
                S,
                20,
                b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\npartial",
            ),
        ],
        Some(30),
    );
    assert_eq!(names(&out.exchanges), ["GET /a", "GET /b"]);
    let (cut, unanswered) = (&out.exchanges[0], &out.exchanges[1]);
    assert!(cut.incomplete && unanswered.incomplete);
    assert_eq!((cut.start_ns, cut.end_ns), (10, 30));
    assert_eq!(int_attr(cut, "http.response.status_code"), Some(500));
    // Neither the 100 bytes declared nor the 7 that came: the body was cut.
    assert_eq!(int_attr(cut, "http.response.body.size"), None);
    assert_eq!(cut.fault, Fault::Server);
    assert_eq!((unanswered.start_ns, unanswered.end_ns), (10, 30));
    assert_eq!(int_attr(unanswered, "http.response.status_code"), None);
    assert_eq!(int_attr(unanswered, "http.response.body.size"), None);
    assert_eq!(unanswered.fault, Fault::None);
}

#[test]
fn chunked_response_cut_short_has_no_body_size() {
    let out = run(
        &[
            (C, 10, b"GET /a HTTP/1.1\r\n\r\n"),
            (
                S,
                20,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            ),
        ],
        Some(30),
    );
    let [cut] = out.exchanges.as_slice() else {
        panic!("{:?}", out.exchanges)
    };
    assert!(cut.incomplete);
    assert_eq!(int_attr(cut, "http.response.status_code"), Some(200));
    assert_eq!(int_attr(cut, "http.response.body.size"), None);
    assert_eq!(int_attr(cut, "http.request.body.size"), Some(0));
}

#[test]
fn parser_serves_a_new_connection_after_close() {
    let mut parser = Http1Parser::new(ParserOptions::default());
    let mut out = ParseOutput::default();
    parser.on_data(C, 1, b"GET /a HTTP/1.1\r\n\r\n", &mut out);
    parser.on_data(S, 2, b"HTTP/1.1 200 OK\r\n\r\nclose-delimited", &mut out);
    parser.on_close(3, &mut out);
    parser.on_data(C, 4, b"GET /b HTTP/1.1\r\n\r\n", &mut out);
    parser.on_data(S, 5, b"HTTP/1.1 204 No Content\r\n\r\n", &mut out);
    assert_eq!(names(&out.exchanges), ["GET /a", "GET /b"]);
    assert_eq!(
        int_attr(&out.exchanges[0], "http.response.body.size"),
        Some(15)
    );
    assert_eq!((out.exchanges[1].start_ns, out.exchanges[1].end_ns), (4, 5));
    assert_eq!(out.desyncs, 0);
}

#[test]
fn response_without_request_is_ignored() {
    let out = run(
        &[
            (S, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            (C, 2, b"GET /x HTTP/1.1\r\n\r\n"),
            (S, 3, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        ],
        Some(4),
    );
    assert_eq!(out.desyncs, 0);
    assert_eq!(names(&out.exchanges), ["GET /x"]);
    assert_eq!(
        int_attr(&out.exchanges[0], "http.response.status_code"),
        Some(404)
    );
}

#[test]
fn connection_caught_mid_body_resyncs() {
    let out = run(
        &[
            (C, 1, b"ata\":[1,2,3]}"),
            (S, 2, b"dy of an earlier response\r\n"),
            (C, 3, b"POST /items HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
            (S, 4, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        ],
        None,
    );
    assert_eq!(out.desyncs, 2);
    assert_eq!(names(&out.exchanges), ["POST /items"]);
    assert_eq!(
        int_attr(&out.exchanges[0], "http.request.body.size"),
        Some(2)
    );
}

#[test]
fn absolute_form_and_odd_targets() {
    let out = run(
        &[
            (
                C,
                1,
                b"GET http://example.org:8080/x/y?secret=1 HTTP/1.1\r\n\r\n",
            ),
            (S, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            (C, 3, b"OPTIONS * HTTP/1.1\r\n\r\n"),
            (S, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            (C, 5, b"PROPFIND /dav/ HTTP/1.1\r\nDepth: 1\r\n\r\n"),
            (
                S,
                6,
                b"HTTP/1.1 207 Multi-Status\r\nContent-Length: 0\r\n\r\n",
            ),
        ],
        None,
    );
    assert_eq!(
        names(&out.exchanges),
        ["GET /x/y", "OPTIONS *", "PROPFIND /dav/"]
    );
    let propfind = &out.exchanges[2];
    assert_eq!(str_attr(propfind, "http.request.method"), Some("_OTHER"));
    assert_eq!(
        str_attr(propfind, "http.request.method_original"),
        Some("PROPFIND")
    );
}

#[test]
fn leading_empty_lines_are_tolerated() {
    let out = run(
        &[
            (C, 1, b"POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\n"),
            (S, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            (C, 3, b"\r\nGET /b HTTP/1.1\r\n\r\n"),
            (S, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        None,
    );
    assert_eq!(out.desyncs, 0);
    assert_eq!(names(&out.exchanges), ["POST /a", "GET /b"]);
    assert_eq!(out.exchanges[1].start_ns, 3);
}

#[test]
fn early_response_before_request_body_ends() {
    let out = run(
        &[
            (C, 1, b"PUT /big HTTP/1.1\r\nContent-Length: 10\r\n\r\n1234"),
            (
                S,
                2,
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n",
            ),
            (C, 3, b"567890"),
            (C, 4, b"GET /after HTTP/1.1\r\n\r\n"),
            (S, 5, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        None,
    );
    assert_eq!(out.desyncs, 0);
    assert_eq!(names(&out.exchanges), ["PUT /big", "GET /after"]);
    // The declared length, not the 4 bytes seen before the answer.
    assert_eq!(
        int_attr(&out.exchanges[0], "http.request.body.size"),
        Some(10)
    );
}

#[test]
fn early_response_before_chunked_body_ends_leaves_size_out() {
    let out = run(
        &[
            (
                C,
                1,
                b"PUT /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n1234\r\n",
            ),
            (
                S,
                2,
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n",
            ),
            (C, 3, b"6\r\n567890\r\n0\r\n\r\n"),
            (C, 4, b"GET /after HTTP/1.1\r\n\r\n"),
            (S, 5, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        None,
    );
    assert_eq!(out.desyncs, 0);
    assert_eq!(names(&out.exchanges), ["PUT /big", "GET /after"]);
    assert_eq!(int_attr(&out.exchanges[0], "http.request.body.size"), None);
    assert_eq!(
        int_attr(&out.exchanges[1], "http.request.body.size"),
        Some(0)
    );
}

#[test]
fn chunked_body_ending_during_the_response_is_counted() {
    // The server sends its head first, the client's last chunk comes before
    // the response's body ends: the size is known when the exchange ends.
    let out = run(
        &[
            (
                C,
                1,
                b"PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n1234\r\n",
            ),
            (S, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n12"),
            (C, 3, b"6\r\n567890\r\n0\r\n\r\n"),
            (S, 4, b"34"),
        ],
        None,
    );
    assert_eq!(out.desyncs, 0);
    let [exchange] = out.exchanges.as_slice() else {
        panic!("{:?}", out.exchanges)
    };
    assert_eq!(int_attr(exchange, "http.request.body.size"), Some(10));
    assert_eq!(int_attr(exchange, "http.response.body.size"), Some(4));
}

#[test]
fn request_body_cut_short_by_close_has_no_size() {
    for (request, seen) in [
        (
            &b"POST /up HTTP/1.1\r\nContent-Length: 10\r\n\r\n1234"[..],
            4,
        ),
        (
            &b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n1234\r\n"[..],
            4,
        ),
    ] {
        let out = run(&[(C, 1, request)], Some(2));
        let [exchange] = out.exchanges.as_slice() else {
            panic!("{:?}", out.exchanges)
        };
        assert!(exchange.incomplete);
        assert_eq!(
            int_attr(exchange, "http.request.body.size"),
            None,
            "not 10, nor the {seen} bytes that came"
        );
    }
    // A body that was all sent keeps its size, answered or not.
    let out = run(
        &[(C, 1, b"POST /up HTTP/1.1\r\nContent-Length: 4\r\n\r\n1234")],
        Some(2),
    );
    assert_eq!(
        int_attr(&out.exchanges[0], "http.request.body.size"),
        Some(4)
    );
}

#[test]
fn head_limit_is_a_desync() {
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
    big.extend_from_slice(b"\r\n\r\n");
    let out = run(
        &[
            (C, 1, &big),
            (S, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        Some(3),
    );
    assert_eq!(out.desyncs, 1);
    assert!(out.exchanges.is_empty());

    // Just under the limit is fine, even a byte at a time.
    let mut fits = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    fits.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES - fits.len() - 4));
    fits.extend_from_slice(b"\r\n\r\n");
    assert_eq!(fits.len(), MAX_HEAD_BYTES);
    let mut parser = Http1Parser::new(ParserOptions::default());
    let mut out = ParseOutput::default();
    for byte in fits.chunks(1) {
        parser.on_data(C, 1, byte, &mut out);
    }
    parser.on_data(
        S,
        2,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        &mut out,
    );
    assert_eq!((out.desyncs, out.exchanges.len()), (0, 1));
}

#[test]
fn pending_requests_are_bounded() {
    let mut parser = Http1Parser::new(ParserOptions::default());
    let mut out = ParseOutput::default();
    for i in 0..(MAX_PENDING as u64 + 10) {
        parser.on_data(
            C,
            i,
            format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes(),
            &mut out,
        );
    }
    assert_eq!(out.desyncs, 10);
    parser.on_data(
        S,
        1000,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        &mut out,
    );
    parser.on_close(2000, &mut out);
    assert_eq!(out.exchanges.len(), MAX_PENDING);
    assert_eq!(out.exchanges[0].name, "GET /10", "the oldest were dropped");
    assert!(!out.exchanges[0].incomplete);
    assert!(out.exchanges[1..]
        .iter()
        .all(|e| e.incomplete && e.end_ns == 2000));
}

#[test]
fn bad_framing_is_a_desync() {
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"",
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b""),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b""),
        (
            b"GET / HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        ),
        (
            b"GET / HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ),
        (
            b"GET / HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        ),
    ];
    for (request, response) in cases {
        let out = run(&[(C, 1, request), (S, 2, response)], Some(3));
        assert_eq!(out.desyncs, 1, "{}", String::from_utf8_lossy(request));
        assert!(
            out.exchanges.iter().all(|e| e.incomplete),
            "{:?}",
            names(&out.exchanges)
        );
    }
}

#[test]
fn response_body_other_coding_ends_at_close() {
    let out = run(
        &[
            (C, 1, b"GET /z HTTP/1.1\r\n\r\n"),
            (
                S,
                2,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b",
            ),
            (S, 3, b"\x08\x00"),
        ],
        Some(9),
    );
    let [exchange] = out.exchanges.as_slice() else {
        panic!()
    };
    assert_eq!((exchange.end_ns, exchange.incomplete), (3, false));
    assert_eq!(int_attr(exchange, "http.response.body.size"), Some(4));
}
