//! memcached parser tests on connections recorded from memcached 1.6 (see
//! ../testdata/README.md).

use crate::protocols::test_support::*;

use super::*;

const SESSION: &[u8] = include_bytes!("../testdata/memcached/session.cap");
const PIPELINED: &[u8] = include_bytes!("../testdata/memcached/pipelined.cap");

fn default_parser() -> MemcachedParser {
    MemcachedParser::new(ParserOptions::default())
}

fn raw_parser() -> MemcachedParser {
    MemcachedParser::new(ParserOptions {
        raw_statements: true,
        ..ParserOptions::default()
    })
}

fn run(capture: &[u8]) -> ParseOutput {
    replay_whole(&mut default_parser(), &records(capture))
}

/// (name, batch size, error code, start record, end record)
type Summary = (String, Option<i64>, Option<String>, u64, u64);

fn summary(out: &ParseOutput) -> Vec<Summary> {
    out.exchanges
        .iter()
        .map(|exchange| {
            assert_eq!(exchange.protocol, Protocol::Memcached);
            assert_eq!(attr_str(exchange, "db.system.name"), Some("memcached"));
            assert_eq!(
                attr_str(exchange, "db.operation.name"),
                Some(exchange.name.as_str())
            );
            assert!(!exchange.incomplete, "{exchange:?}");
            let code = attr_str(exchange, "db.response.status_code").map(str::to_owned);
            let expected_fault = if code.is_some() {
                Fault::Server
            } else {
                Fault::None
            };
            assert_eq!(exchange.fault, expected_fault, "{exchange:?}");
            let batch = match attr(exchange, "db.operation.batch.size") {
                Some(AttrValue::Int(size)) => Some(*size),
                _ => None,
            };
            (
                exchange.name.to_string(),
                batch,
                code,
                exchange.start_ns / 1000 - 1,
                exchange.end_ns / 1000 - 1,
            )
        })
        .collect()
}

fn ok(name: &str, start: u64, end: u64) -> Summary {
    (name.to_owned(), None, None, start, end)
}

fn batch(name: &str, size: i64, start: u64, end: u64) -> Summary {
    (name.to_owned(), Some(size), None, start, end)
}

fn failed(name: &str, code: &str, start: u64, end: u64) -> Summary {
    (name.to_owned(), None, Some(code.to_owned()), start, end)
}

fn session_summary() -> Vec<Summary> {
    vec![
        ok("set", 0, 1),
        ok("set", 2, 3),
        batch("get", 3, 4, 5),
        ok("gets", 6, 7),
        ok("get", 8, 9),
        ok("delete", 10, 11),
        ok("delete", 12, 13),
        ok("set", 14, 15),
        ok("incr", 16, 17),
        ok("decr", 18, 19),
        failed("incr", "CLIENT_ERROR", 20, 21),
        // noreply: reported at once, ending where it started.
        ok("set", 22, 22),
        ok("get", 23, 24),
        ok("add", 25, 26),
        ok("touch", 27, 28),
        // Record 29, `bogus command`, gets ERROR: not reported.
        ok("version", 31, 32),
        ok("stats", 33, 34),
        ok("flush_all", 35, 36),
        ok("append", 37, 38),
        // A 70000-byte value, in two reads each way.
        ok("set", 39, 41),
        ok("get", 42, 44),
        // `set ... 3` followed by 6 bytes: `CLIENT_ERROR bad data chunk`,
        // then the leftover `f` draws an ERROR that answers nothing.
        failed("set", "CLIENT_ERROR", 45, 46),
    ]
}

#[test]
fn session_pairs_every_command_with_its_response() {
    let out = run(SESSION);
    assert_eq!(out.desyncs, 0);
    assert_eq!(summary(&out), session_summary());
}

#[test]
fn pipelined_commands_and_noreply_are_paired_in_order() {
    let out = run(PIPELINED);
    assert_eq!(out.desyncs, 0);
    assert_eq!(
        summary(&out),
        vec![
            // One write of seven commands: the two noreply ones are reported
            // as soon as they are read, the others when answered.
            ok("set", 0, 0),
            ok("delete", 0, 0),
            ok("set", 0, 1),
            batch("get", 2, 0, 1),
            ok("gets", 0, 1),
            ok("incr", 0, 1),
            ok("get", 0, 1),
            // Records 2 and 4 (`get` without a key, a 300-byte key) are
            // refused with ERROR and CLIENT_ERROR: not reported.
            ok("cas", 6, 7),
            batch("gat", 2, 8, 9),
            ok("prepend", 10, 11),
            ok("gets", 12, 13),
            ok("stats", 14, 15),
            ok("verbosity", 16, 17),
            ok("decr", 18, 19),
            ok("touch", 20, 21),
            ok("replace", 22, 23),
            // Record 24 is `quit`.
        ]
    );
}

#[test]
fn any_split_of_the_captures_gives_the_same_exchanges() {
    for (name, capture) in [("session", SESSION), ("pipelined", PIPELINED)] {
        let records = records(capture);
        let whole = replay_whole(&mut default_parser(), &records);
        let bytewise = replay_bytewise(&mut default_parser(), &records);
        assert_eq!(bytewise.exchanges, whole.exchanges, "{name} bytewise");
        assert_eq!(bytewise.desyncs, 0, "{name}");
        for seed in 0..30 {
            let random = replay_random(&mut default_parser(), &records, seed);
            assert_eq!(random.exchanges, whole.exchanges, "{name} seed {seed}");
        }
        let coalesced = replay_whole(&mut default_parser(), &coalesce(&records));
        assert_eq!(
            without_times(&coalesced.exchanges),
            without_times(&whole.exchanges)
        );
        // Every cut point of the records, except inside the big value.
        let small: Vec<Record> = records
            .iter()
            .filter(|r| r.data.len() < 4096)
            .cloned()
            .collect();
        let small_whole = replay_whole(&mut default_parser(), &small);
        let longest = small.iter().map(|r| r.data.len()).max().unwrap_or(0);
        for at in 1..longest {
            let split = replay_split_at(&mut default_parser(), &small, at);
            assert_eq!(
                split.exchanges, small_whole.exchanges,
                "{name} split at {at}"
            );
        }
    }
}

#[test]
fn keys_and_values_are_hidden_unless_raw_and_values_always() {
    for capture in [SESSION, PIPELINED] {
        let text = visible_text(&run(capture).exchanges);
        for secret in [
            "user:1",
            "secretvalue42",
            "counter",
            "hush!",
            "kkkk",
            "xxxx",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(!text.contains("db.query.text"));
    }
    let out = replay_whole(&mut raw_parser(), &records(SESSION));
    let queries: Vec<_> = out
        .exchanges
        .iter()
        .map(|e| attr_str(e, "db.query.text").unwrap())
        .collect();
    assert_eq!(queries[0], "set user:1 0 0 13");
    assert_eq!(queries[2], "get user:1 user:2 nokey");
    assert_eq!(queries[11], "set quiet 0 0 5 noreply");
    let text = visible_text(&out.exchanges);
    for value in ["secretvalue42", "hush!", "xxxx"] {
        assert!(!text.contains(value), "{value} in {text}");
    }
}

/// Feeds records, replacing bytes `range` of record `index` by a gap.
fn replay_with_gap(records: &[Record], index: usize, range: std::ops::Range<usize>) -> ParseOutput {
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    for (i, record) in records.iter().enumerate() {
        if i == index {
            let data = &record.data;
            parser.on_data(record.side, record.ts_ns, &data[..range.start], &mut out);
            parser.on_gap(record.side, record.ts_ns, range.len(), &mut out);
            parser.on_data(record.side, record.ts_ns, &data[range.end..], &mut out);
        } else {
            parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
        }
    }
    parser.on_close(close_ts(records), &mut out);
    out
}

#[test]
fn gaps_inside_values_are_skipped() {
    let records = records(SESSION);
    // Record 39 is `set big 0 0 70000\r\n` and the value's start; record 43
    // is `VALUE big 0 70000\r\n` and the value's start.
    for (index, range) in [(39, 100..60_000), (43, 19..65_536), (40, 0..4483)] {
        let out = replay_with_gap(&records, index, range.clone());
        assert_eq!(out.desyncs, 0, "{index} {range:?}");
        assert_eq!(summary(&out), session_summary(), "{index} {range:?}");
    }
}

#[test]
fn lost_lines_desync_and_resync() {
    let records = records(SESSION);
    // The DELETED response (record 11) is lost: that delete is dropped, and
    // the next one pairs with its own NOT_FOUND.
    let out = replay_with_gap(&records, 11, 0..9);
    assert_eq!(out.desyncs, 1);
    let mut expected = session_summary();
    expected.remove(5);
    assert_eq!(summary(&out), expected);

    // The first delete command (record 10) is lost: its DELETED must not
    // answer the second delete.
    let out = replay_with_gap(&records, 10, 0..15);
    assert_eq!(out.desyncs, 1);
    assert_eq!(summary(&out), expected);
}

#[test]
fn truncated_connections_report_unanswered_commands() {
    let records = records(SESSION);
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    // Up to `get big`, without its (two-part) response.
    for record in &records[..43] {
        parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
    }
    parser.on_close(99_000, &mut out);
    let last = out.exchanges.last().unwrap();
    assert_eq!((last.name.as_str(), last.incomplete), ("get", true));
    assert_eq!((last.start_ns, last.end_ns), (ts(42), 99_000));
    assert_eq!(out.exchanges.len(), 21);

    // Every prefix of the pipelined capture: no panic, never more exchanges.
    let full = run(PIPELINED).exchanges.len();
    for cut in 0..PIPELINED.len() {
        let mut parser = default_parser();
        let mut out = ParseOutput::default();
        let mut rest = &PIPELINED[..cut];
        while let [tag, a, b, c, d, tail @ ..] = rest {
            let len = (u32::from_be_bytes([*a, *b, *c, *d]) as usize).min(tail.len());
            let side = if *tag == b'C' {
                Side::Client
            } else {
                Side::Server
            };
            parser.on_data(side, 1, &tail[..len], &mut out);
            rest = &tail[len..];
        }
        parser.on_close(2, &mut out);
        assert!(out.exchanges.len() <= full, "cut {cut}");
    }
}

#[test]
fn huge_gaps_desync_without_panicking() {
    for side in [Side::Client, Side::Server] {
        let mut parser = default_parser();
        let mut out = ParseOutput::default();
        parser.on_data(Side::Client, 1, b"get a\r\nset a 0 0 5\r\nab", &mut out);
        parser.on_data(Side::Server, 1, b"VALUE a 0 5\r\nab", &mut out);
        parser.on_gap(side, 2, usize::MAX, &mut out);
        parser.on_close(3, &mut out);
        assert_eq!(out.desyncs, 1);
        assert!(out.exchanges.is_empty());
    }
}

#[test]
fn pending_commands_are_bounded() {
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    parser.on_data(Side::Client, 1, &b"get k\r\n".repeat(1030), &mut out);
    assert_eq!(out.desyncs, 6);
    parser.on_close(2, &mut out);
    assert_eq!(out.exchanges.len(), MAX_PENDING);
    assert!(out.exchanges.iter().all(|e| e.incomplete && e.end_ns == 2));
}

#[test]
fn garbage_never_makes_exchanges() {
    let mut rng = fastrand::Rng::with_seed(3);
    for round in 0..300 {
        let mut parser = default_parser();
        let mut out = ParseOutput::default();
        for step in 0..20 {
            let side = if rng.bool() {
                Side::Client
            } else {
                Side::Server
            };
            let len = rng.usize(0..200);
            let data = garbage(&mut rng, len, b"\r\n 0123456789ENDVALUE");
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
fn http_and_redis_are_not_commands() {
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    parser.on_data(
        Side::Client,
        1,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &mut out,
    );
    parser.on_data(Side::Server, 2, b"STORED\r\n", &mut out);
    parser.on_data(Side::Client, 3, b"*1\r\n$4\r\nPING\r\n", &mut out);
    parser.on_data(Side::Server, 4, b"END\r\n", &mut out);
    parser.on_close(5, &mut out);
    assert!(out.exchanges.is_empty(), "{:?}", out.exchanges);
    assert_eq!(out.desyncs, 2);
}

#[test]
fn mutated_captures_never_panic() {
    let mut rng = fastrand::Rng::with_seed(5);
    for capture in [SESSION, PIPELINED] {
        let records = records(capture);
        for _ in 0..50 {
            let mut mutated = records.clone();
            for _ in 0..rng.usize(1..8) {
                let record = &mut mutated[rng.usize(..records.len())];
                if !record.data.is_empty() {
                    let at = rng.usize(..record.data.len());
                    record.data[at] = rng.u8(..);
                }
            }
            replay_random(&mut default_parser(), &mutated, rng.u64(..));
        }
    }
}

#[test]
fn detects_commands_and_distinctive_responses() {
    for capture in [SESSION, PIPELINED] {
        for record in records(capture) {
            let detected = detect(&record.data);
            match record.side {
                // Every client write here starts with a command, except the
                // rest of a value and the refused ones.
                Side::Client => assert!(
                    detected == Some(Side::Client)
                        || record.data.starts_with(b"xxx")
                        || record.data.starts_with(b"bogus")
                        || record.data.starts_with(b"get\r\n")
                        || record.data.starts_with(b"get kkk")
                        || record.data.starts_with(b"quit"),
                    "{}",
                    record.data.escape_ascii()
                ),
                Side::Server => assert_ne!(detected, Some(Side::Client)),
            }
        }
    }
    for response in [
        &b"STORED\r\n"[..],
        b"END\r\n",
        b"VALUE user:1 0 13\r\nsecretvalue42\r\nEND\r\n",
        b"CLIENT_ERROR bad data chunk\r\n",
        b"VERSION 1.6.18\r\n",
        b"STAT pid 1\r\n",
    ] {
        assert_eq!(
            detect(response),
            Some(Side::Server),
            "{}",
            response.escape_ascii()
        );
    }
    for other in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"+OK\r\n",
        b"OK\r\n",
        b"set k 0 0 x\r\n",
        b"gets\r\n",
        b"\x80\x00\x00\x05",
        b"",
    ] {
        assert_eq!(detect(other), None, "{}", other.escape_ascii());
    }
    let long_get = format!("get {}", "key ".repeat(1000));
    assert_eq!(detect(long_get.as_bytes()), Some(Side::Client));
}
