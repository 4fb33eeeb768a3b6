//! Garbage, damage and loss: the parser must never panic, never make an
//! exchange out of non-HTTP bytes, and find its way back to real messages.

use crate::protocols::{ParseOutput, Parser, ParserOptions, Side};

use super::*;

const GARBAGE: &[u8] = b"\x00\x17\xfe garbage \xc3\x28\r\n\r\nnot http at all\r\n\x01";

fn random_side(rng: &mut fastrand::Rng) -> Side {
    if rng.bool() {
        Side::Client
    } else {
        Side::Server
    }
}

/// Feeds `bytes` as random calls (and sometimes gaps) on random sides.
fn feed_randomly(
    parser: &mut Http1Parser,
    rng: &mut fastrand::Rng,
    bytes: &[u8],
    out: &mut ParseOutput,
) {
    let mut rest = bytes;
    let mut ts = 0;
    while !rest.is_empty() {
        ts += 1;
        let (now, later) = rest.split_at(rng.usize(1..=64).min(rest.len()));
        rest = later;
        let side = random_side(rng);
        if rng.u8(..) < 16 {
            parser.on_gap(side, ts, now.len(), out);
        } else {
            parser.on_data(side, ts, now, out);
        }
    }
    parser.on_close(ts + 1, out);
}

#[test]
fn random_bytes_never_make_exchanges() {
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let len = rng.usize(0..4096);
        let bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
        let mut parser = Http1Parser::new(ParserOptions::default());
        let mut out = ParseOutput::default();
        feed_randomly(&mut parser, &mut rng, &bytes, &mut out);
        assert!(out.exchanges.is_empty(), "seed {seed}: {:?}", out.exchanges);
    }
}

#[test]
fn random_http_like_tokens_never_panic() {
    const WORDS: &[&[u8]] = &[
        b"GET ",
        b"HEAD ",
        b"POST ",
        b"CONNECT ",
        b"/",
        b"/x?y",
        b" HTTP/1.1",
        b" HTTP/1.0",
        b"HTTP/1.1 ",
        b"200 OK",
        b"101 ",
        b"100 Continue",
        b"204",
        b"304 ",
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b":",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip",
        b"0",
        b"5",
        b"ffffffffffffffffff",
        b";ext=1",
        b"hello",
        b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"\x00",
        b"\xff",
    ];
    for seed in 0..2000 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut parser = Http1Parser::new(ParserOptions {
            include_query: rng.bool(),
            ..ParserOptions::default()
        });
        let mut out = ParseOutput::default();
        let mut ts = 0;
        for _ in 0..rng.usize(1..80) {
            ts += 1;
            let side = random_side(&mut rng);
            let call: Vec<u8> = (0..rng.usize(1..12))
                .flat_map(|_| WORDS[rng.usize(..WORDS.len())].iter().copied())
                .collect();
            match rng.u8(..8) {
                0 => parser.on_gap(side, ts, call.len(), &mut out),
                1 => parser.on_close(ts, &mut out),
                _ => parser.on_data(side, ts, &call, &mut out),
            }
        }
        parser.on_close(ts + 1, &mut out);
        for exchange in &out.exchanges {
            assert!(exchange.start_ns <= exchange.end_ns, "seed {seed}");
            assert!(!exchange.name.is_empty(), "seed {seed}");
        }
    }
}

#[test]
fn damaged_captures_never_panic() {
    for capture in &ALL_CAPTURES {
        let requests = capture
            .bytes(Side::Client)
            .windows(9)
            .filter(|w| w.starts_with(b" HTTP/1."))
            .count();
        for seed in 0..40 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut pieces = split_random(capture.pieces(), seed, 200);
            for _ in 0..rng.usize(1..6) {
                let index = rng.usize(..pieces.len());
                let Some(Piece::Data(_, bytes)) = pieces.get_mut(index) else {
                    continue;
                };
                if bytes.is_empty() {
                    continue;
                }
                let at = rng.usize(..bytes.len());
                match rng.u8(..4) {
                    0 => bytes[at] = rng.u8(..),
                    1 => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, rng.u8(..)),
                    _ => bytes.truncate(at),
                }
            }
            if rng.bool() {
                let side = random_side(&mut rng);
                let len = capture.bytes(side).len();
                let start = rng.usize(..len);
                pieces = with_gap(pieces, side, start..rng.usize(start..=len));
            }
            let out = Replay::new(pieces).run(ParserOptions::default(), rng.bool());
            assert!(
                out.exchanges.len() <= requests,
                "{} seed {seed}",
                capture.name
            );
            for exchange in &out.exchanges {
                assert!(exchange.start_ns <= exchange.end_ns);
            }
        }
    }
}

/// Puts `bytes` before the first byte of `side` in `pieces`, in a call of
/// their own or glued to that first call.
fn prefix(pieces: Vec<Piece>, side: Side, bytes: &[u8], glued: bool) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len() + 1);
    let mut done = false;
    for piece in pieces {
        match piece {
            Piece::Data(s, data) if s == side && !done => {
                done = true;
                if glued {
                    out.push(Piece::Data(s, [bytes, &data].concat()));
                } else {
                    out.push(Piece::Data(s, bytes.to_vec()));
                    out.push(Piece::Data(s, data));
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[test]
fn garbage_before_requests_is_skipped() {
    for capture in &ALL_CAPTURES {
        for glued in [false, true] {
            for split in [None, Some(1), Some(5)] {
                let mut pieces = prefix(capture.pieces(), Side::Client, GARBAGE, glued);
                if let Some(size) = split {
                    pieces = split_every(pieces, size);
                }
                let replay = Replay::new(pieces);
                let out = replay.run(ParserOptions::default(), true);
                let context = format!("{} glued {glued} split {split:?}", capture.name);
                assert_eq!(out.desyncs, 1, "{context}");
                let want = expected(capture);
                assert_eq!(out.exchanges.len(), want.len(), "{context}");
                for (exchange, (name, status)) in out.exchanges.iter().zip(&want) {
                    assert_eq!(
                        (
                            exchange.name.as_str(),
                            int_attr(exchange, "http.response.status_code")
                        ),
                        (name.as_str(), *status),
                        "{context}"
                    );
                }
                // The first request starts at its own first byte, not the garbage's.
                let first = &out.exchanges[0];
                assert_eq!(
                    first.start_ns,
                    replay.ts_of(Side::Client, GARBAGE.len()),
                    "{context}"
                );
            }
        }
    }
}

/// Names and statuses of a capture's exchanges, from a clean replay.
fn expected(capture: &Capture) -> Vec<(String, Option<i64>)> {
    let out = Replay::new(capture.pieces()).run(ParserOptions::default(), true);
    assert_eq!(out.desyncs, 0);
    out.exchanges
        .iter()
        .map(|e| (e.name.to_string(), int_attr(e, "http.response.status_code")))
        .collect()
}

#[test]
fn garbage_before_any_request_on_server_side_is_skipped() {
    for capture in &ALL_CAPTURES {
        let mut pieces = vec![Piece::Data(Side::Server, GARBAGE.to_vec())];
        pieces.extend(capture.pieces());
        let out = Replay::new(pieces).run(ParserOptions::default(), true);
        assert_eq!(out.desyncs, 1, "{}", capture.name);
        let got: Vec<(String, Option<i64>)> = out
            .exchanges
            .iter()
            .map(|e| (e.name.to_string(), int_attr(e, "http.response.status_code")))
            .collect();
        assert_eq!(got, expected(capture), "{}", capture.name);
    }
}

#[test]
fn garbage_instead_of_a_response_drops_the_waiting_request() {
    let pieces = prefix(GET_SIMPLE.pieces(), Side::Server, GARBAGE, true);
    let out = Replay::new(pieces).run(ParserOptions::default(), true);
    assert_eq!(out.desyncs, 1);
    assert!(out.exchanges.is_empty(), "{:?}", out.exchanges);

    // The connection recovers for the next request.
    let mut pieces = prefix(NOT_MODIFIED.pieces(), Side::Server, GARBAGE, true);
    pieces = split_every(pieces, 3);
    let out = Replay::new(pieces).run(ParserOptions::default(), true);
    assert_eq!(out.desyncs, 1);
    assert_eq!(out.exchanges.len(), 1);
    assert_eq!(
        int_attr(&out.exchanges[0], "http.response.status_code"),
        Some(304)
    );
}

#[test]
fn server_bytes_first_then_client_never_panics() {
    for capture in &ALL_CAPTURES {
        let mut parser = Http1Parser::new(ParserOptions::default());
        let mut out = ParseOutput::default();
        parser.on_data(Side::Server, 1, &capture.bytes(Side::Server), &mut out);
        parser.on_data(Side::Client, 2, &capture.bytes(Side::Client), &mut out);
        parser.on_close(3, &mut out);
        // Every request is reported, unanswered: its response came first.
        assert!(
            out.exchanges.iter().all(|e| e.incomplete),
            "{}",
            capture.name
        );
    }
}
