//! Every capture, replayed as recorded and cut in many other ways, must
//! give exactly the exchanges that happened.

use crate::protocols::{ParserOptions, Side};

use super::*;

/// Requests and responses of each capture, as curl and the servers saw them.
fn wants(capture: &Capture) -> Vec<Want> {
    match capture.name {
        "chunked" => vec![Want::ok("GET /chunked", "GET /chunked", 200, 321, 553)],
        "close_delimited" => vec![Want {
            response_end: Some(244),
            ..Want::ok("GET /close", "GET /close", 200, 108, 244)
        }],
        "continue_100" => {
            vec![Want::ok("POST /upload", "POST /upload", 201, 19, 192).request_body(25889)]
        }
        "get_simple" => vec![Want::ok("GET /small.txt", "GET /small.txt", 200, 17, 253)],
        "gzip_chunked" => vec![Want::ok(
            "GET /words.txt",
            "GET /words.txt",
            200,
            6969,
            7232,
        )],
        "head" => vec![Want::ok("HEAD /big.bin", "HEAD /big.bin", 200, 0, 257)],
        "head_then_get_nginx" => vec![
            Want::ok("HEAD /big.bin", "HEAD /big.bin", 200, 0, 257),
            Want::ok("GET /small.txt", "GET /small.txt", 200, 17, 511),
            Want::ok("GET /chunked", "GET /chunked?x=1", 404, 153, 819),
        ],
        "http10_close" => {
            vec![Want::ok("GET /small.txt", "GET /small.txt", 200, 17, 202).version("1.0")]
        }
        "keepalive" => vec![
            Want::ok("GET /small.txt", "GET /small.txt?token", 200, 17, 253),
            Want::ok("GET /big.bin", "GET /big.bin", 200, 100_000, 100_511),
            Want::ok("GET /missing.html", "GET /missing.html", 404, 153, 100_819),
        ],
        "no_content_503" => vec![
            Want::ok("GET /nothing", "GET /nothing", 204, 0, 109),
            Want::ok("GET /boom", "GET /boom", 503, 197, 483),
        ],
        "not_found" => vec![Want::ok(
            "GET /missing/page",
            "GET /missing/page?id=42",
            404,
            153,
            307,
        )],
        "not_modified" => vec![
            Want::ok("GET /small.txt", "GET /small.txt", 304, 0, 178),
            Want::ok("GET /small.txt", "GET /small.txt", 304, 0, 357),
        ],
        "pipelined" => vec![
            Want::ok("GET /small.txt", "GET /small.txt", 200, 17, 253),
            Want::ok("HEAD /big.bin", "HEAD /big.bin", 200, 0, 511),
            Want::ok("GET /missing", "GET /missing?q=1", 404, 153, 814),
        ],
        "pipelined_post" => vec![
            Want::ok("POST /echo", "POST /echo", 201, 16, 164).request_body(11),
            Want::ok("GET /chunked", "GET /chunked", 200, 321, 718),
            Want::ok("GET /nope", "GET /nope", 404, 330, 1226),
        ],
        "post" => vec![Want::ok("POST /echo", "POST /echo", 201, 16, 164).request_body(27)],
        "post_chunked" => {
            vec![Want::ok("POST /upload", "POST /upload", 201, 19, 167).request_body(25889)]
        }
        // nginx answered after 196 572 of the 1 000 000 body bytes, before
        // the last chunk: the body's size is unknown when the exchange ends.
        "post_chunked_early_answer" => vec![
            Want::ok("POST /upload", "POST /upload", 200, 3, 149).request_body_unknown(),
            Want::ok("GET /small.txt", "GET /small.txt", 200, 17, 403),
        ],
        // nginx answered after 98 304 of the 1 000 000 body bytes (issue #13).
        "post_early_answer" => vec![
            Want::ok("POST /upload", "POST /upload", 200, 3, 149).request_body(1_000_000),
            Want::ok("GET /small.txt", "GET /small.txt", 200, 17, 403),
        ],
        other => panic!("no expectations for {other}"),
    }
}

/// Replays `pieces` with and without a close at the end and checks both.
fn check(capture: &Capture, how: &str, pieces: Vec<Piece>) {
    let replay = Replay::new(pieces);
    let all = wants(capture);
    let closed = replay.run(ParserOptions::default(), true);
    assert_exchanges(
        &format!("{} {how}, closed", capture.name),
        capture,
        &replay,
        &closed.exchanges,
        &all,
    );
    assert_eq!(closed.desyncs, 0, "{} {how}", capture.name);

    // Only a body delimited by the close waits for it.
    let open = replay.run(ParserOptions::default(), false);
    let before_close = if capture.name == "close_delimited" {
        &[][..]
    } else {
        &all[..]
    };
    assert_exchanges(
        &format!("{} {how}, open", capture.name),
        capture,
        &replay,
        &open.exchanges,
        before_close,
    );
}

#[test]
fn captures_as_recorded() {
    for capture in &ALL_CAPTURES {
        check(capture, "as recorded", capture.pieces());
    }
}

#[test]
fn captures_byte_by_byte() {
    for capture in &ALL_CAPTURES {
        check(capture, "byte by byte", split_every(capture.pieces(), 1));
    }
}

#[test]
fn captures_in_random_pieces() {
    for capture in &ALL_CAPTURES {
        for seed in 0..24 {
            let max = [2, 3, 7, 16, 64, 1500][usize::try_from(seed % 6).unwrap()];
            let how = format!("random pieces seed {seed} max {max}");
            check(capture, &how, split_random(capture.pieces(), seed, max));
        }
    }
}

#[test]
fn small_captures_split_at_every_byte() {
    for capture in ALL_CAPTURES.iter().filter(|c| c.len() < 2048) {
        for side in [Side::Client, Side::Server] {
            for offset in 1..capture.bytes(side).len() {
                let how = format!("split at {side:?} byte {offset}");
                check(capture, &how, split_at(capture.pieces(), side, offset));
            }
        }
    }
}

#[test]
fn close_delimited_response_ends_at_last_read_not_at_close() {
    let replay = Replay::new(split_every(CLOSE_DELIMITED.pieces(), 50));
    let out = replay.run(ParserOptions::default(), true);
    let [exchange] = out.exchanges.as_slice() else {
        panic!("{:?}", out.exchanges)
    };
    assert_eq!(
        exchange.end_ns,
        replay.ts_of(Side::Server, CLOSE_DELIMITED.bytes(Side::Server).len() - 1)
    );
    assert!(exchange.end_ns < replay.close_ns);
    assert!(!exchange.incomplete);
}

#[test]
fn gap_inside_content_length_body_is_counted() {
    let body_start = 100_512 - 100_000;
    let pieces = with_gap(
        KEEPALIVE.pieces(),
        Side::Server,
        body_start + 100..body_start + 99_000,
    );
    let replay = Replay::new(pieces);
    let out = replay.run(ParserOptions::default(), true);
    assert_eq!(out.desyncs, 0);
    assert_exchanges(
        "keepalive with gap",
        &KEEPALIVE,
        &replay,
        &out.exchanges,
        &wants(&KEEPALIVE),
    );
}

#[test]
fn gap_ending_a_body_completes_it_then_loses_the_next_start() {
    // The gap swallows the end of the big body and the start of the 404.
    let pieces = with_gap(KEEPALIVE.pieces(), Side::Server, 100_000..100_600);
    let replay = Replay::new(pieces);
    let out = replay.run(ParserOptions::default(), true);
    assert_eq!(out.desyncs, 1);
    let gap_ns = replay.ts_of(Side::Server, 100_000);
    let mut want = wants(&KEEPALIVE);
    want[1].response_end = Some(100_000);
    // As recorded, the gap is two: the body's end (which completes it),
    // then the 404's start after curl sent `/missing.html`. Losing that
    // response drops the request waiting for it.
    want.truncate(2);
    assert_exchanges(
        "keepalive gap over boundary",
        &KEEPALIVE,
        &replay,
        &out.exchanges,
        &want,
    );
    assert_eq!(out.exchanges[1].end_ns, gap_ns);
}

#[test]
fn gaps_inside_chunk_data_are_counted() {
    let data_start = 7233 - 6982 + 6; // after the head and `1b39\r\n`
    for range in [
        data_start..data_start + 1,
        data_start + 10..data_start + 6969,
        data_start..data_start + 6969,
    ] {
        let pieces = with_gap(GZIP_CHUNKED.pieces(), Side::Server, range.clone());
        let replay = Replay::new(pieces);
        let out = replay.run(ParserOptions::default(), true);
        assert_eq!(out.desyncs, 0, "{range:?}");
        assert_exchanges(
            "gzip chunked gap",
            &GZIP_CHUNKED,
            &replay,
            &out.exchanges,
            &wants(&GZIP_CHUNKED),
        );
    }
}

#[test]
fn gap_over_chunk_framing_loses_the_response() {
    let data_start = 7233 - 6982 + 6;
    let pieces = with_gap(
        GZIP_CHUNKED.pieces(),
        Side::Server,
        data_start + 10..data_start + 6972,
    );
    let out = Replay::new(pieces).run(ParserOptions::default(), true);
    assert_eq!(out.desyncs, 1);
    // The request was dropped with the lost response: no half-known exchange.
    assert!(out.exchanges.is_empty(), "{:?}", out.exchanges);
}

#[test]
fn gaps_in_request_bodies_count_as_body() {
    // Chunked upload: one 0x6521-byte chunk, then `\r\n0\r\n\r\n`.
    let data_start = 26065 - 25889 - 2 - 5;
    let pieces = with_gap(
        POST_CHUNKED.pieces(),
        Side::Client,
        data_start + 5..data_start + 25_000,
    );
    let replay = Replay::new(pieces);
    let out = replay.run(ParserOptions::default(), true);
    assert_eq!(out.desyncs, 0);
    assert_exchanges(
        "post chunked gap",
        &POST_CHUNKED,
        &replay,
        &out.exchanges,
        &wants(&POST_CHUNKED),
    );

    // Content-Length upload after 100 Continue.
    let pieces = with_gap(CONTINUE_100.pieces(), Side::Client, 200..26_000);
    let replay = Replay::new(pieces);
    let out = replay.run(ParserOptions::default(), true);
    assert_eq!(out.desyncs, 0);
    assert_exchanges(
        "continue gap",
        &CONTINUE_100,
        &replay,
        &out.exchanges,
        &wants(&CONTINUE_100),
    );
}

#[test]
fn gap_inside_a_head_loses_that_message() {
    // Part of the first response head is missing.
    let pieces = with_gap(KEEPALIVE.pieces(), Side::Server, 20..40);
    let replay = Replay::new(pieces);
    let out = replay.run(ParserOptions::default(), true);
    assert_eq!(out.desyncs, 1);
    // Requests sent after the loss pair with the responses found again.
    assert_exchanges(
        "head gap",
        &KEEPALIVE,
        &replay,
        &out.exchanges,
        &wants(&KEEPALIVE)[1..],
    );
}

#[test]
fn trace_context_from_captured_request() {
    let out = Replay::new(KEEPALIVE.pieces()).run(ParserOptions::default(), true);
    assert_eq!(out.exchanges.len(), 3);
    for exchange in &out.exchanges {
        let context = exchange.trace_context.as_ref().unwrap();
        assert_eq!(
            crate::spans::hex_lower(&context.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            crate::spans::hex_lower(&context.parent_span_id),
            "00f067aa0ba902b7"
        );
        assert_eq!(context.flags, 1);
        assert_eq!(
            context.tracestate.as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
    }
    let out = Replay::new(GET_SIMPLE.pieces()).run(ParserOptions::default(), true);
    assert_eq!(out.exchanges[0].trace_context, None);
}

#[test]
fn secrets_never_reach_attributes() {
    let secrets = [
        "s3cr3t",
        "c00kie",
        "query-secret",
        "Bearer",
        "curl/",
        "hunter2",
        "password",
        "127.0.0.1",
    ];
    for capture in &ALL_CAPTURES {
        let out = Replay::new(capture.pieces()).run(ParserOptions::default(), true);
        for exchange in &out.exchanges {
            let mut shown = vec![exchange.name.to_string()];
            for (key, value) in &exchange.attributes {
                shown.push(key.to_string());
                shown.push(format!("{value:?}"));
            }
            for text in &shown {
                for secret in secrets {
                    assert!(
                        !text.contains(secret),
                        "{}: {text} shows {secret}",
                        capture.name
                    );
                }
            }
            assert!(str_attr(exchange, "url.query").is_none());
        }
    }
}

#[test]
fn query_only_when_asked() {
    let options = ParserOptions {
        include_query: true,
        ..ParserOptions::default()
    };
    let out = Replay::new(KEEPALIVE.pieces()).run(options, true);
    let queries: Vec<Option<&str>> = out
        .exchanges
        .iter()
        .map(|e| str_attr(e, "url.query"))
        .collect();
    assert_eq!(queries, [Some("token=query-secret&page=2"), None, None]);
    assert_eq!(out.exchanges[0].name, "GET /small.txt");
    let out = Replay::new(NOT_FOUND.pieces()).run(options, true);
    assert_eq!(str_attr(&out.exchanges[0], "url.query"), Some("id=42"));
}

/// Replays an early-answer capture as recorded and as the tracer gets it
/// from the kernel (`--max-payload` 4096: each write's first 4096 bytes,
/// then a gap). The proxy read curl's last body write and its next request
/// together; curl wrote them apart, so the replay cuts them apart first.
fn early_answer_replays(capture: &Capture) -> Vec<(&'static str, Vec<Piece>)> {
    let client = capture.bytes(Side::Client);
    let next_request = find_from(&client, b"GET /small.txt", 0).unwrap();
    let writes = split_at(capture.pieces(), Side::Client, next_request);
    vec![
        ("as recorded", capture.pieces()),
        ("max payload 4096", truncate_reads(writes, 4096)),
    ]
}

/// The response came before the client had sent its whole body: the tracer
/// saw 98 304 of 1 000 000 body bytes and used to report that (issue #13).
#[test]
fn early_answer_reports_the_declared_content_length() {
    for (how, pieces) in early_answer_replays(&POST_EARLY_ANSWER) {
        let replay = Replay::new(pieces);
        let out = replay.run(ParserOptions::default(), true);
        assert_eq!(out.desyncs, 0, "{how}");
        assert_exchanges(
            &format!("post early answer {how}"),
            &POST_EARLY_ANSWER,
            &replay,
            &out.exchanges,
            &wants(&POST_EARLY_ANSWER),
        );
        let post = &out.exchanges[0];
        assert_eq!(
            int_attr(post, "http.request.body.size"),
            Some(1_000_000),
            "{how}"
        );
        // Really early: most of the body moved after the exchange ended,
        // and was skipped, so the next request was found.
        let client = POST_EARLY_ANSWER.bytes(Side::Client);
        let head_len = find_from(&client, b"\r\n\r\n", 0).unwrap() + 4;
        assert!(
            replay.ts_of(Side::Client, head_len + 98_304) > post.end_ns,
            "{how}"
        );
        assert!(
            replay.ts_of(Side::Client, head_len + 98_303) < post.end_ns,
            "{how}"
        );
    }
}

/// The same with a chunked body: its size is known only at the last chunk,
/// which came after the response, so it is left out rather than reported
/// as the 196 572 bytes seen.
#[test]
fn early_answer_to_chunked_upload_leaves_the_size_out() {
    for (how, pieces) in early_answer_replays(&POST_CHUNKED_EARLY_ANSWER) {
        let replay = Replay::new(pieces);
        let out = replay.run(ParserOptions::default(), true);
        // Truncated, the gaps hide chunk-size lines: the client side loses
        // sync in the body and finds the next request again.
        let desyncs = u64::from(how != "as recorded");
        assert_eq!(out.desyncs, desyncs, "{how}");
        assert_exchanges(
            &format!("post chunked early answer {how}"),
            &POST_CHUNKED_EARLY_ANSWER,
            &replay,
            &out.exchanges,
            &wants(&POST_CHUNKED_EARLY_ANSWER),
        );
        let post = &out.exchanges[0];
        assert_eq!(int_attr(post, "http.request.body.size"), None, "{how}");
        let body_end = find_from(
            &POST_CHUNKED_EARLY_ANSWER.bytes(Side::Client),
            b"0\r\n\r\n",
            0,
        )
        .unwrap();
        assert!(replay.ts_of(Side::Client, body_end) > post.end_ns, "{how}");
    }
}
