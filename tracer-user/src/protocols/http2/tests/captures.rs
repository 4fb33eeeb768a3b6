//! Recorded connections replayed whole and in every kind of cut.

use super::*;
use crate::protocols::test_support::*;

#[test]
fn curl_one_request_per_connection() {
    let out = run("curl_get_secrets");
    assert_eq!(
        summary(&out),
        [http("GET /index.html", 200, Fault::None, 0, 1)]
    );
    assert_eq!(body_sizes(&out), [(Some(0), Some(34))]);
    let get = &out.exchanges[0];
    assert_eq!(attr_str(get, "http.request.method"), Some("GET"));
    assert_eq!(attr_str(get, "url.path"), Some("/index.html"));
    assert_eq!(attr(get, "url.query"), None, "query only on request");
    assert!(!get.incomplete);

    let out = run("curl_post");
    assert_eq!(summary(&out), [http("POST /echo", 200, Fault::None, 0, 1)]);
    assert_eq!(body_sizes(&out), [(Some(27), Some(7))]);

    let out = run("curl_head");
    assert_eq!(
        summary(&out),
        [http("HEAD /index.html", 200, Fault::None, 0, 1)]
    );
    assert_eq!(body_sizes(&out), [(Some(0), Some(0))]);

    let out = run("curl_503");
    assert_eq!(summary(&out), [http("GET /fail", 503, Fault::Server, 0, 1)]);
    for name in ["curl_get_secrets", "curl_post", "curl_head", "curl_503"] {
        assert_eq!(run(name).desyncs, 0, "{name}");
    }
}

#[test]
fn nghttp_concurrent_requests_on_one_connection() {
    // Six requests in the first write; nginx answers them in turn, the big
    // file last in 8 KiB DATA frames.
    let out = run("nghttp_nginx_multi");
    assert_eq!(
        summary(&out),
        [
            http("GET /hello", 200, Fault::None, 0, 2),
            http("GET /index.html", 200, Fault::None, 0, 2),
            http("GET /missing", 404, Fault::Client, 0, 3),
            http("GET /fail", 503, Fault::Server, 0, 4),
            http("GET /teapot", 418, Fault::Client, 0, 4),
            http("GET /big.bin", 200, Fault::None, 0, 6),
        ]
    );
    let responses: Vec<_> = body_sizes(&out).into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        responses,
        [
            Some(6),
            Some(34),
            Some(153),
            Some(197),
            Some(0),
            Some(50_000)
        ]
    );
    assert_eq!(out.desyncs, 0);

    // A POST with a body; the server resets the stream (NO_ERROR) after
    // its complete response, which adds nothing.
    let out = run("nghttp_nginx_post");
    assert_eq!(summary(&out), [http("POST /echo", 200, Fault::None, 0, 2)]);
    assert_eq!(body_sizes(&out), [(Some(6), Some(7))]);
    assert_eq!(attr(&out.exchanges[0], "error.type"), None);
}

#[test]
fn padding_priority_push_and_table_sizes() {
    // nghttpd and nghttp padding every frame; a push promise for /hello.
    let out = run("nghttpd_padding_push");
    assert_eq!(
        summary(&out),
        [
            http("GET /index.html", 200, Fault::None, 0, 3),
            http("GET /nothing", 404, Fault::Client, 0, 3),
            http("GET /big.bin", 200, Fault::None, 0, 3),
        ]
    );
    let responses: Vec<_> = body_sizes(&out).into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        responses,
        [Some(34), Some(148), Some(50_000)],
        "padding is not body"
    );
    assert_eq!(out.desyncs, 0);

    // The client asks for a 0-byte header table: the server's encoder
    // announces it with a size update, then never indexes.
    let out = run("nghttpd_table_size_0");
    assert_eq!(
        summary(&out),
        [
            http("GET /hello", 200, Fault::None, 0, 1),
            http("GET /index.html", 200, Fault::None, 0, 1),
        ]
    );
    // A 64-byte encoder table on the client: entries are evicted as fast
    // as they are added.
    let out = run("nghttpd_small_encoder_table");
    assert_eq!(
        summary(&out),
        [
            http("GET /hello", 200, Fault::None, 0, 1),
            http("GET /index.html", 200, Fault::None, 0, 1),
            http("GET /big.bin", 200, Fault::None, 0, 1),
        ]
    );
    assert_eq!(out.desyncs, 0);
}

#[test]
fn grpc_unary_calls_with_statuses() {
    let out = run("grpc_unary");
    assert_eq!(
        summary(&out),
        [
            grpc(SAY_HELLO, Some(0), Fault::None, 2, 5),
            grpc(SAY_HELLO, Some(0), Fault::None, 6, 8),
            grpc(SAY_HELLO, Some(0), Fault::None, 9, 10),
            // NOT_FOUND: the caller's problem, an error on client spans only.
            grpc(FAIL, Some(5), Fault::Client, 11, 12),
            // INTERNAL: the server's.
            grpc(FAIL, Some(13), Fault::Server, 13, 14),
            // 40 KB each way, in several DATA frames.
            grpc(SAY_HELLO, Some(0), Fault::None, 15, 16),
            grpc(SAY_HELLO, Some(0), Fault::None, 17, 18),
        ]
    );
    for exchange in &out.exchanges {
        let name = exchange.name.as_str();
        let (service, method) = name.split_once('/').unwrap();
        assert_eq!(attr_str(exchange, "rpc.service"), Some(service));
        assert_eq!(attr_str(exchange, "rpc.method"), Some(method));
        assert!(!exchange.incomplete);
        assert_eq!(
            attr(exchange, "http.request.method"),
            None,
            "gRPC spans use rpc.*"
        );
    }
    assert_eq!(out.desyncs, 0);
}

#[test]
fn grpc_server_streaming_and_trailers_only() {
    let out = run("grpc_stream");
    assert_eq!(
        summary(&out),
        [
            grpc(SAY_HELLO, Some(0), Fault::None, 2, 5),
            // Five messages in separate writes: the span ends at the trailers.
            grpc(STREAM_HELLOS, Some(0), Fault::None, 6, 13),
            // No message: a trailers-only response.
            grpc(STREAM_HELLOS, Some(0), Fault::None, 14, 15),
            grpc(SAY_HELLO, Some(0), Fault::None, 16, 17),
        ]
    );
    let out = run("grpc_unimplemented");
    assert_eq!(
        summary(&out),
        [
            grpc(
                "demo.v1.Greeter/NoSuchMethod",
                Some(12),
                Fault::Server,
                2,
                3
            ),
            grpc(SAY_HELLO, Some(0), Fault::None, 5, 6),
        ]
    );
}

#[test]
fn grpc_deadline_exceeded_then_resets() {
    // The server answers DEADLINE_EXCEEDED (trailers only) and resets the
    // stream, then the client resets it too: one exchange, no more.
    let out = run("grpc_deadline");
    assert_eq!(
        summary(&out),
        [
            grpc(SAY_HELLO, Some(0), Fault::None, 2, 3),
            grpc("demo.v1.Greeter/Slow", Some(4), Fault::Server, 6, 9),
            grpc(SAY_HELLO, Some(0), Fault::None, 10, 11),
        ]
    );
    assert!(out
        .exchanges
        .iter()
        .all(|e| attr(e, "error.type").is_none()));
}

#[test]
fn grpc_concurrent_calls_interleave() {
    // Six calls sent in one write, answered out of order.
    let out = run("grpc_concurrent");
    assert_eq!(
        summary(&out),
        [
            grpc(SAY_HELLO, Some(0), Fault::None, 2, 5),
            grpc(FAIL, Some(14), Fault::Server, 2, 8),
            grpc(SAY_HELLO, Some(0), Fault::None, 2, 8),
            grpc(SAY_HELLO, Some(0), Fault::None, 2, 9),
            grpc(SAY_HELLO, Some(0), Fault::None, 2, 12),
            grpc(STREAM_HELLOS, Some(0), Fault::None, 2, 13),
        ]
    );
}

#[test]
fn grpc_many_calls_reuse_the_dynamic_table() {
    // After the first call, requests are a handful of dynamic indexes.
    let out = run("grpc_many");
    let expected: Vec<Summary> = (0..24)
        .map(|i| {
            let (start, end) = if i == 0 {
                (2, 5)
            } else {
                (2 * i + 6, 2 * i + 7)
            };
            if i % 6 == 5 {
                grpc(FAIL, Some(3), Fault::Client, start, end)
            } else {
                grpc(SAY_HELLO, Some(0), Fault::None, start, end)
            }
        })
        .collect();
    assert_eq!(summary(&out), expected);
    assert_eq!(out.desyncs, 0);
}

#[test]
fn every_split_gives_the_same_exchanges() {
    for (name, bytes) in CAPTURES {
        let records = records(bytes);
        let whole = replay_whole(&mut parser(), &records);
        assert!(!whole.exchanges.is_empty(), "{name}");
        let bytewise = replay_bytewise(&mut parser(), &records);
        assert_eq!(bytewise.exchanges, whole.exchanges, "{name} byte by byte");
        assert_eq!(bytewise.desyncs, 0, "{name}");
        for at in [1, 5, 9, 10, 24, 100] {
            let split = replay_split_at(&mut parser(), &records, at);
            assert_eq!(split.exchanges, whole.exchanges, "{name} split at {at}");
        }
        for seed in 0..8 {
            let random = replay_random(&mut parser(), &records, seed);
            assert_eq!(random.exchanges, whole.exchanges, "{name} seed {seed}");
        }
        let merged = replay_whole(&mut parser(), &coalesce(&records));
        assert_eq!(
            without_times(&merged.exchanges),
            without_times(&whole.exchanges),
            "{name} coalesced"
        );
    }
}

#[test]
fn one_parser_serves_connection_after_connection() {
    let mut parser = parser();
    let mut all = Vec::new();
    for name in ["curl_post", "grpc_stream", "curl_503"] {
        let out = replay_whole(&mut parser, &capture(name));
        all.extend(summary(&out).into_iter().map(|s| s.1));
    }
    assert_eq!(
        all,
        [
            "POST /echo",
            SAY_HELLO,
            STREAM_HELLOS,
            STREAM_HELLOS,
            SAY_HELLO,
            "GET /fail"
        ]
    );
}

#[test]
fn secrets_never_appear() {
    let mut text = String::new();
    for (_, bytes) in CAPTURES {
        text.push_str(&visible_text(
            &replay_whole(&mut parser(), &records(bytes)).exchanges,
        ));
    }
    for secret in [
        "sekrit",
        "cookie-secret",
        "hunter2",
        "qwerty",
        "alice",
        "Bearer",
        "failing on purpose",
    ] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
}

#[test]
fn query_only_when_asked() {
    let options = ParserOptions {
        include_query: true,
        ..ParserOptions::default()
    };
    let out = replay_whole(&mut Http2Parser::new(options), &capture("curl_get_secrets"));
    let get = &out.exchanges[0];
    assert_eq!(get.name, "GET /index.html");
    assert_eq!(attr_str(get, "url.query"), Some("user=alice&token=qwerty"));
}

#[test]
fn trace_context_from_request_headers() {
    let out = run("curl_get_secrets");
    let context = out.exchanges[0].trace_context.clone().unwrap();
    assert_eq!(context.trace_id[..4], [0x4b, 0xf9, 0x2f, 0x35]);
    assert_eq!(context.parent_span_id[..2], [0x00, 0xf0]);
    assert_eq!(context.flags, 1);
    assert_eq!(context.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7"));

    // gRPC metadata on some calls only.
    let out = run("grpc_unary");
    let with_context: Vec<bool> = out
        .exchanges
        .iter()
        .map(|e| e.trace_context.is_some())
        .collect();
    assert_eq!(with_context, [true, true, false, true, false, false, true]);
    let context = out.exchanges[0].trace_context.clone().unwrap();
    assert_eq!(context.trace_id[..2], [0x0a, 0xf7]);
    assert_eq!(context.tracestate, None);
}

#[test]
fn grpc_only_parser_skips_plain_http2() {
    let mut grpc_only = Http2Parser::grpc_only(ParserOptions::default());
    assert!(replay_whole(&mut grpc_only, &capture("nghttp_nginx_multi"))
        .exchanges
        .is_empty());
    let out = replay_whole(&mut grpc_only, &capture("grpc_unimplemented"));
    assert_eq!(out.exchanges.len(), 2);
}
