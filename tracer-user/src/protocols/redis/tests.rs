//! Redis parser tests on connections recorded from redis-server 7.0 (see
//! ../testdata/README.md).

use crate::protocols::test_support::*;

use super::*;

const CLI_SESSION: &[u8] = include_bytes!("../testdata/redis/cli_session.cap");
const BENCHMARK_SET: &[u8] = include_bytes!("../testdata/redis/benchmark_set_p16.cap");
const BENCHMARK_GET: &[u8] = include_bytes!("../testdata/redis/benchmark_get_p16.cap");
const BENCHMARK_CONFIG: &[u8] = include_bytes!("../testdata/redis/benchmark_config.cap");
const RESP3_CLI_SESSION: &[u8] = include_bytes!("../testdata/redis/resp3_cli_session.cap");
const RESP3_TYPES: &[u8] = include_bytes!("../testdata/redis/resp3_types.cap");
const RESP2_PUBSUB: &[u8] = include_bytes!("../testdata/redis/resp2_pubsub.cap");
const RESP3_PUBSUB: &[u8] = include_bytes!("../testdata/redis/resp3_pubsub.cap");
const CLI_SUBSCRIBE_RESP2: &[u8] = include_bytes!("../testdata/redis/cli_subscribe_resp2.cap");
const CLI_SUBSCRIBE_RESP3: &[u8] = include_bytes!("../testdata/redis/cli_subscribe_resp3.cap");
const CLI_PUBLISH: &[u8] = include_bytes!("../testdata/redis/cli_publish.cap");
const INLINE: &[u8] = include_bytes!("../testdata/redis/inline.cap");

const ALL_CAPTURES: [(&str, &[u8]); 12] = [
    ("cli_session", CLI_SESSION),
    ("benchmark_set", BENCHMARK_SET),
    ("benchmark_get", BENCHMARK_GET),
    ("benchmark_config", BENCHMARK_CONFIG),
    ("resp3_cli_session", RESP3_CLI_SESSION),
    ("resp3_types", RESP3_TYPES),
    ("resp2_pubsub", RESP2_PUBSUB),
    ("resp3_pubsub", RESP3_PUBSUB),
    ("cli_subscribe_resp2", CLI_SUBSCRIBE_RESP2),
    ("cli_subscribe_resp3", CLI_SUBSCRIBE_RESP3),
    ("cli_publish", CLI_PUBLISH),
    ("inline", INLINE),
];

fn default_parser() -> RedisParser {
    RedisParser::new(ParserOptions::default())
}

fn raw_parser() -> RedisParser {
    RedisParser::new(ParserOptions {
        raw_statements: true,
        ..ParserOptions::default()
    })
}

fn run(capture: &[u8]) -> ParseOutput {
    replay_whole(&mut default_parser(), &records(capture))
}

/// (name, query text, error code, start record, end record)
type Summary = (String, String, Option<String>, u64, u64);

fn summary(out: &ParseOutput) -> Vec<Summary> {
    out.exchanges
        .iter()
        .map(|exchange| {
            assert_eq!(exchange.protocol, Protocol::Redis);
            assert_eq!(attr_str(exchange, "db.system.name"), Some("redis"));
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
            (
                exchange.name.to_string(),
                attr_str(exchange, "db.query.text")
                    .unwrap_or_default()
                    .to_owned(),
                code,
                exchange.start_ns / 1000 - 1,
                exchange.end_ns / 1000 - 1,
            )
        })
        .collect()
}

fn expect(name: &str, query: &str, code: Option<&str>, start: u64, end: u64) -> Summary {
    (
        name.to_owned(),
        query.to_owned(),
        code.map(str::to_owned),
        start,
        end,
    )
}

#[test]
fn cli_session_pairs_every_command_with_its_reply() {
    let out = run(CLI_SESSION);
    assert_eq!(out.desyncs, 0);
    assert_eq!(
        summary(&out),
        vec![
            // 172 KB of nested arrays, streamed through a bounded reader.
            expect("COMMAND", "COMMAND DOCS", None, 0, 3),
            expect("SET", "SET ? ?", None, 4, 5),
            expect("GET", "GET ?", None, 6, 7),
            expect("INCR", "INCR ?", None, 8, 9),
            expect("SET", "SET ? ?", None, 10, 11),
            expect("LPUSH", "LPUSH ? ?", Some("WRONGTYPE"), 12, 13),
            expect("HSET", "HSET ? ? ? ? ?", None, 14, 15),
            expect("HGETALL", "HGETALL ?", None, 16, 17),
            expect("MULTI", "MULTI", None, 18, 19),
            expect("SET", "SET ? ?", None, 20, 21),
            expect("INCR", "INCR ?", None, 22, 23),
            expect("EXEC", "EXEC", None, 24, 25),
            expect("GET", "GET ?", None, 26, 27),
            expect("DEL", "DEL ?", None, 28, 29),
            expect("AUTH", "AUTH ?", Some("ERR"), 30, 31),
            expect("CLIENT", "CLIENT SETNAME ?", None, 32, 33),
            expect("CONFIG", "CONFIG GET ?", None, 34, 35),
            expect("PING", "PING", None, 36, 37),
        ]
    );
}

#[test]
fn pipelined_benchmark_pairs_all_commands_in_order() {
    for (capture, name) in [(BENCHMARK_SET, "SET"), (BENCHMARK_GET, "GET")] {
        let records = records(capture);
        let out = replay_whole(&mut default_parser(), &records);
        assert_eq!(out.desyncs, 0);
        // redis-benchmark -n 200 -P 16 sends 13 writes of 16 commands.
        assert_eq!(out.exchanges.len(), 208);
        for (index, exchange) in out.exchanges.iter().enumerate() {
            assert_eq!(exchange.name, name);
            // The i-th batch of 16 is records 2i (commands) and 2i+1 (replies).
            let batch = index / 16;
            assert_eq!(exchange.start_ns, ts(2 * batch), "{index}");
            assert_eq!(exchange.end_ns, ts(2 * batch + 1), "{index}");
            assert_eq!(exchange.fault, Fault::None);
        }
    }
    let out = run(BENCHMARK_CONFIG);
    assert_eq!(
        summary(&out),
        vec![
            expect("CONFIG", "CONFIG GET ?", None, 0, 1),
            expect("CONFIG", "CONFIG GET ?", None, 0, 1),
        ]
    );
}

#[test]
fn resp3_replies_of_every_type_are_framed() {
    let out = run(RESP3_TYPES);
    assert_eq!(out.desyncs, 0);
    let debug = |start| expect("DEBUG", "DEBUG PROTOCOL ?", None, start, start + 1);
    assert_eq!(
        summary(&out),
        vec![
            expect("HELLO", "HELLO ?", None, 0, 1),
            debug(2),  // bignum
            debug(4),  // verbatim string
            debug(6),  // true
            debug(8),  // false
            debug(10), // attribute, then the reply it annotates
            debug(12), // double
            debug(14), // null
            debug(16), // map
            debug(18), // set
            expect("LPUSH", "LPUSH ? ?", Some("WRONGTYPE"), 20, 21),
            expect("CLIENT", "CLIENT TRACKING ?", None, 22, 23),
            expect("GET", "GET ?", None, 24, 25),
            // +OK, then an invalidation push that must not answer PING.
            expect("SET", "SET ? ?", None, 26, 27),
            expect("PING", "PING", None, 28, 29),
        ]
    );

    let out = run(RESP3_CLI_SESSION);
    assert_eq!(out.desyncs, 0);
    let names: Vec<_> = out.exchanges.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "HELLO", "COMMAND", "HSET", "HGETALL", "SADD", "SMEMBERS", "ZADD", "ZSCORE", "GET",
            "EXISTS", "DEBUG"
        ]
    );
    assert_eq!(
        summary(&out)[1],
        expect("COMMAND", "COMMAND DOCS", None, 2, 5)
    );
}

#[test]
fn resp2_pubsub_pushes_never_answer_commands() {
    let out = run(RESP2_PUBSUB);
    assert_eq!(out.desyncs, 0);
    assert_eq!(
        summary(&out),
        vec![
            // Two channels: two confirmations in record 1, then messages.
            expect("SUBSCRIBE", "SUBSCRIBE ? ?", None, 0, 1),
            expect("PSUBSCRIBE", "PSUBSCRIBE ?", None, 4, 5),
            expect("PING", "PING", None, 8, 9),
            expect("UNSUBSCRIBE", "UNSUBSCRIBE", None, 10, 11),
            expect("PUNSUBSCRIBE", "PUNSUBSCRIBE", None, 12, 13),
            // Out of subscribed mode again: a plain reply.
            expect("GET", "GET ?", None, 14, 15),
        ]
    );

    let out = run(CLI_SUBSCRIBE_RESP2);
    assert_eq!(
        summary(&out),
        vec![expect("SUBSCRIBE", "SUBSCRIBE ?", None, 0, 1)]
    );
    let out = run(CLI_PUBLISH);
    assert_eq!(
        summary(&out),
        vec![expect("PUBLISH", "PUBLISH ? ?", None, 0, 1)]
    );
}

#[test]
fn resp3_pubsub_pushes_never_answer_commands() {
    let out = run(RESP3_PUBSUB);
    assert_eq!(out.desyncs, 0);
    assert_eq!(
        summary(&out),
        vec![
            expect("HELLO", "HELLO ?", None, 0, 1),
            expect("SUBSCRIBE", "SUBSCRIBE ? ?", None, 2, 3),
            // RESP3 allows any command while subscribed.
            expect("GET", "GET ?", None, 6, 7),
            expect("PING", "PING", None, 8, 9),
            expect("UNSUBSCRIBE", "UNSUBSCRIBE", None, 10, 11),
            expect("GET", "GET ?", None, 12, 13),
        ]
    );
    let out = run(CLI_SUBSCRIBE_RESP3);
    assert_eq!(
        summary(&out),
        vec![
            expect("HELLO", "HELLO ?", None, 0, 1),
            expect("SUBSCRIBE", "SUBSCRIBE ?", None, 2, 3),
        ]
    );
}

/// The records of `capture` in the order `order`, timed by their new places.
fn reordered(capture: &[u8], order: &[usize]) -> Vec<Record> {
    let records = records(capture);
    let mut out: Vec<Record> = order.iter().map(|&index| records[index].clone()).collect();
    out.extend(records.iter().skip(order.len()).cloned());
    for (index, record) in out.iter_mut().enumerate() {
        record.ts_ns = ts(index);
    }
    out
}

#[test]
fn pushes_arriving_while_commands_wait_answer_nothing() {
    // RESP2: PSUBSCRIBE sent before the two messages arrive, PING before a
    // pmessage and a message.
    let records = reordered(RESP2_PUBSUB, &[0, 1, 4, 2, 3, 5, 8, 6, 7, 9]);
    let out = replay_whole(&mut default_parser(), &records);
    assert_eq!(out.desyncs, 0);
    assert_eq!(
        summary(&out)[..3],
        [
            expect("SUBSCRIBE", "SUBSCRIBE ? ?", None, 0, 1),
            expect("PSUBSCRIBE", "PSUBSCRIBE ?", None, 2, 5),
            expect("PING", "PING", None, 6, 9),
        ]
    );
    // RESP3: GET sent before two message pushes arrive.
    let records = reordered(RESP3_PUBSUB, &[0, 1, 2, 3, 6, 4, 5, 7]);
    let out = replay_whole(&mut default_parser(), &records);
    assert_eq!(summary(&out)[2], expect("GET", "GET ?", None, 4, 7));
    // RESP3: PING sent before SET's reply and the invalidation push after it.
    let order: Vec<usize> = (0..=26).chain([28, 27, 29]).collect();
    let records = reordered(RESP3_TYPES, &order);
    let out = replay_whole(&mut default_parser(), &records);
    assert_eq!(
        summary(&out)[13..],
        [
            expect("SET", "SET ? ?", None, 26, 28),
            expect("PING", "PING", None, 27, 29)
        ]
    );
}

#[test]
fn pipelined_subscribes_pair_with_their_own_confirmations() {
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    parser.on_data(
        Side::Client,
        1,
        b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n",
        &mut out,
    );
    parser.on_data(
        Side::Server,
        2,
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
        &mut out,
    );
    parser.on_data(
        Side::Server,
        3,
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
        &mut out,
    );
    parser.on_data(
        Side::Server,
        4,
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:3\r\n",
        &mut out,
    );
    let ends: Vec<_> = out.exchanges.iter().map(|e| e.end_ns).collect();
    assert_eq!(ends, [2, 4]);
}

#[test]
fn inline_commands_are_parsed() {
    let out = run(INLINE);
    assert_eq!(out.desyncs, 0);
    assert_eq!(
        summary(&out),
        vec![
            expect("PING", "PING", None, 0, 1),
            expect("SET", "SET ? ?", None, 2, 3),
            expect("GET", "GET ?", None, 2, 3),
            expect("EXISTS", "EXISTS ?", None, 4, 5),
        ]
    );
}

#[test]
fn any_split_of_the_captures_gives_the_same_exchanges() {
    for (name, capture) in ALL_CAPTURES {
        let records = records(capture);
        let whole = replay_whole(&mut default_parser(), &records);
        assert!(!whole.exchanges.is_empty(), "{name}");
        let bytewise = replay_bytewise(&mut default_parser(), &records);
        assert_eq!(bytewise.exchanges, whole.exchanges, "{name} bytewise");
        assert_eq!(bytewise.desyncs, 0, "{name}");
        for seed in 0..20 {
            let random = replay_random(&mut default_parser(), &records, seed);
            assert_eq!(random.exchanges, whole.exchanges, "{name} seed {seed}");
        }
        let coalesced = replay_whole(&mut default_parser(), &coalesce(&records));
        assert_eq!(
            without_times(&coalesced.exchanges),
            without_times(&whole.exchanges),
            "{name}"
        );
        if capture.len() < 12_000 {
            let longest = records.iter().map(|r| r.data.len()).max().unwrap_or(0);
            for at in 1..longest {
                let split = replay_split_at(&mut default_parser(), &records, at);
                assert_eq!(split.exchanges, whole.exchanges, "{name} split at {at}");
            }
        }
    }
}

#[test]
fn raw_statements_show_arguments_but_never_credentials() {
    let out = replay_whole(&mut raw_parser(), &records(CLI_SESSION));
    let queries: Vec<_> = out
        .exchanges
        .iter()
        .map(|e| attr_str(e, "db.query.text").unwrap_or_default())
        .collect();
    assert_eq!(queries[1], "SET user:1 secretvalue42");
    assert_eq!(queries[6], "HSET h f1 v1 f2 v2");
    assert_eq!(queries[14], "AUTH ?");
    assert_eq!(queries[15], "CLIENT SETNAME myconn");
    assert_eq!(queries[16], "CONFIG GET ?");
    assert!(!visible_text(&out.exchanges).contains("hunter2secret"));
}

#[test]
fn default_options_show_no_keys_or_values() {
    let secrets = [
        "secretvalue42",
        "hunter2secret",
        "user:1",
        "myconn",
        "hello-one",
        "ch1",
        "key:__rand_int__",
        "VXK",
        "plainstring",
    ];
    for (name, capture) in ALL_CAPTURES {
        let text = visible_text(&run(capture).exchanges);
        for secret in secrets {
            assert!(!text.contains(secret), "{name} shows {secret}: {text}");
        }
    }
}

#[test]
fn raw_arguments_are_escaped_and_bounded() {
    let mut parser = raw_parser();
    let mut out = ParseOutput::default();
    let long = "x".repeat(1000);
    let command = format!("*3\r\n$3\r\nSET\r\n$5\r\na b\"c\r\n$1000\r\n{long}\r\n");
    parser.on_data(Side::Client, 1, command.as_bytes(), &mut out);
    parser.on_data(Side::Server, 2, b"+OK\r\n", &mut out);
    let query = attr_str(&out.exchanges[0], "db.query.text").unwrap();
    assert_eq!(query, format!("SET \"a b\\\"c\" {}...", "x".repeat(256)));
}

#[test]
fn huge_commands_describe_a_bounded_number_of_arguments() {
    let mut command = b"*1001\r\n$4\r\nMSET\r\n".to_vec();
    for _ in 0..1000 {
        command.extend_from_slice(b"$1\r\nk\r\n");
    }
    for mut parser in [default_parser(), raw_parser()] {
        let mut out = ParseOutput::default();
        parser.on_data(Side::Client, 1, &command, &mut out);
        parser.on_data(Side::Server, 2, b"+OK\r\n", &mut out);
        let query = attr_str(&out.exchanges[0], "db.query.text").unwrap();
        assert!(query.len() < 400, "{query}");
        assert!(query.ends_with(" ..."), "{query}");
    }
}

#[test]
fn bulk_errors_are_server_faults() {
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    parser.on_data(
        Side::Client,
        1,
        b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n",
        &mut out,
    );
    parser.on_data(
        Side::Server,
        2,
        b"!21\r\nSYNTAX invalid syntax\r\n-ERR\r\n",
        &mut out,
    );
    let codes: Vec<_> = out
        .exchanges
        .iter()
        .map(|e| (e.fault, attr_str(e, "db.response.status_code")))
        .collect();
    assert_eq!(
        codes,
        [
            (Fault::Server, Some("SYNTAX")),
            (Fault::Server, Some("ERR"))
        ]
    );
}

#[test]
fn monitor_stream_answers_nothing() {
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    parser.on_data(Side::Client, 1, b"*1\r\n$7\r\nMONITOR\r\n", &mut out);
    parser.on_data(Side::Server, 2, b"+OK\r\n", &mut out);
    parser.on_data(
        Side::Server,
        3,
        b"+1700000000.1 [0 127.0.0.1:1] \"get\" \"k\"\r\n",
        &mut out,
    );
    parser.on_data(Side::Client, 4, b"*1\r\n$5\r\nRESET\r\n", &mut out);
    parser.on_data(
        Side::Server,
        5,
        b"+1700000000.2 [0 127.0.0.1:1] \"set\" \"k\"\r\n",
        &mut out,
    );
    parser.on_data(Side::Server, 6, b"+RESET\r\n", &mut out);
    let ends: Vec<_> = out
        .exchanges
        .iter()
        .map(|e| (e.name.as_str(), e.end_ns))
        .collect();
    assert_eq!(ends, [("MONITOR", 2), ("RESET", 6)]);
}

/// Feeds records, replacing record `gap` by an uncaptured gap of its length.
fn replay_with_gap(records: &[Record], gap: usize) -> ParseOutput {
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    for (index, record) in records.iter().enumerate() {
        if index == gap {
            parser.on_gap(record.side, record.ts_ns, record.data.len(), &mut out);
        } else {
            parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
        }
    }
    parser.on_close(close_ts(records), &mut out);
    out
}

#[test]
fn lost_reply_drops_its_command_and_resyncs() {
    let records = records(CLI_SESSION);
    // Record 13 is the WRONGTYPE reply to LPUSH.
    let out = replay_with_gap(&records, 13);
    assert_eq!(out.desyncs, 1);
    let mut expected = summary(&run(CLI_SESSION));
    expected.remove(5);
    assert_eq!(summary(&out), expected);
}

#[test]
fn lost_command_drops_its_reply_and_resyncs() {
    let records = records(CLI_SESSION);
    // Record 12 is LPUSH: its reply must not answer HSET.
    let out = replay_with_gap(&records, 12);
    assert_eq!(out.desyncs, 1);
    let mut expected = summary(&run(CLI_SESSION));
    expected.remove(5);
    assert_eq!(summary(&out), expected);
}

#[test]
fn gaps_inside_bulk_payloads_are_skipped() {
    // `$13\r\nsecretvalue42\r\n` and `...$13\r\nsecretvalue42\r\n` lose 8 bytes.
    let records = records(CLI_SESSION);
    for (record_index, payload_at) in [(4, 30), (7, 5)] {
        let mut parser = default_parser();
        let mut out = ParseOutput::default();
        for (index, record) in records.iter().enumerate() {
            if index == record_index {
                let (head, rest) = record.data.split_at(payload_at);
                let tail = &rest[8..];
                parser.on_data(record.side, record.ts_ns, head, &mut out);
                parser.on_gap(record.side, record.ts_ns, 8, &mut out);
                parser.on_data(record.side, record.ts_ns, tail, &mut out);
            } else {
                parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
            }
        }
        parser.on_close(close_ts(&records), &mut out);
        assert_eq!(out.desyncs, 0, "record {record_index}");
        assert_eq!(
            summary(&out),
            summary(&run(CLI_SESSION)),
            "record {record_index}"
        );
    }
}

#[test]
fn truncated_connections_report_unanswered_commands() {
    let records = records(CLI_SESSION);
    // Stop after LPUSH was sent but before its reply.
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    for record in &records[..13] {
        parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
    }
    parser.on_close(99_000, &mut out);
    assert_eq!(out.exchanges.len(), 6);
    let last = out.exchanges.last().unwrap();
    assert_eq!(
        (last.name.as_str(), last.incomplete, last.end_ns),
        ("LPUSH", true, 99_000)
    );
    assert_eq!(last.start_ns, ts(12));
    assert_eq!(last.fault, Fault::None);

    // Every prefix of every capture: no panic, never more exchanges than
    // commands, and only the last ones may be incomplete.
    for (name, capture) in ALL_CAPTURES {
        if capture.len() > 2_000 {
            continue;
        }
        let full = run(capture).exchanges.len();
        for cut in 0..capture.len() {
            let stream: Vec<u8> = capture[..cut].to_vec();
            let mut parser = default_parser();
            let mut out = ParseOutput::default();
            let mut rest = stream.as_slice();
            // Captures are record framed: feed whole records of the prefix.
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
            assert!(out.exchanges.len() <= full, "{name} cut {cut}");
        }
    }
}

#[test]
fn huge_gaps_desync_without_panicking() {
    for side in [Side::Client, Side::Server] {
        let mut parser = default_parser();
        let mut out = ParseOutput::default();
        parser.on_data(Side::Client, 1, b"*2\r\n$3\r\nGET\r\n$5\r\nab", &mut out);
        parser.on_data(Side::Server, 1, b"$5\r\nab", &mut out);
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
    let commands = b"*1\r\n$4\r\nPING\r\n".repeat(1100);
    parser.on_data(Side::Client, 1, &commands, &mut out);
    assert_eq!(out.desyncs, 76);
    parser.on_close(2, &mut out);
    assert_eq!(out.exchanges.len(), MAX_PENDING);
    assert!(out.exchanges.iter().all(|e| e.incomplete));
}

#[test]
fn garbage_never_makes_exchanges() {
    let mut rng = fastrand::Rng::with_seed(7);
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
            let data = garbage(&mut rng, len, b"*$:+-\r\n0123456789>%_");
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
fn http_and_binary_are_not_commands() {
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    parser.on_data(
        Side::Client,
        1,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &mut out,
    );
    parser.on_data(Side::Server, 2, b"+OK\r\n", &mut out);
    parser.on_data(
        Side::Client,
        3,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        &mut out,
    );
    parser.on_data(Side::Server, 4, b"+OK\r\n", &mut out);
    parser.on_close(5, &mut out);
    assert!(out.exchanges.is_empty(), "{:?}", out.exchanges);
    assert_eq!(out.desyncs, 2);
}

#[test]
fn mutated_captures_never_panic() {
    let mut rng = fastrand::Rng::with_seed(11);
    for (_, capture) in ALL_CAPTURES {
        let records = records(capture);
        for _ in 0..30 {
            let mut mutated = records.clone();
            for _ in 0..rng.usize(1..8) {
                let record = &mut mutated[rng.usize(..records.len())];
                if !record.data.is_empty() {
                    let at = rng.usize(..record.data.len());
                    record.data[at] = rng.u8(..);
                }
            }
            let out = replay_random(&mut default_parser(), &mutated, rng.u64(..));
            assert!(out.exchanges.len() <= run(capture).exchanges.len() + MAX_PENDING);
        }
    }
}

#[test]
fn detects_commands_and_clear_replies() {
    for (name, capture) in ALL_CAPTURES {
        let records = records(capture);
        let first_client = records.iter().find(|r| r.side == Side::Client).unwrap();
        assert_eq!(detect(&first_client.data), Some(Side::Client), "{name}");
    }
    for reply in [
        &b"+OK\r\n"[..],
        b"+PONG\r\n",
        b"-WRONGTYPE Operation against a key\r\n",
        b"-ERR unknown command\r\n",
        b"$13\r\nsecretvalue42\r\n",
        b"$-1\r\n",
        b":1\r\n",
        b"*2\r\n+OK\r\n:2\r\n",
        b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n",
        b">3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n",
    ] {
        assert_eq!(
            detect(reply),
            Some(Side::Server),
            "{}",
            reply.escape_ascii()
        );
    }
    for other in [
        &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\n",
        b"get foo\r\n",
        b"set foo 0 0 3\r\nbar\r\n",
        b"VALUE foo 0 3\r\nbar\r\nEND\r\n",
        b"\x16\x03\x01\x02\x00",
        b"+hello world\r\n",
        b"$5\r\nabc\r\n",
        b"",
        b"*",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
    ] {
        assert_eq!(detect(other), None, "{}", other.escape_ascii());
    }
    // Well-formed, but no command: at most a reply.
    assert_ne!(detect(b"*3\r\n$3\r\nFOO\r\n"), Some(Side::Client));
}

/// A connection's last masked query text is reused only for the same
/// command with as many arguments, whatever the case it was sent in.
#[test]
fn repeated_commands_share_only_their_own_query_text() {
    let mut parser = default_parser();
    let mut out = ParseOutput::default();
    let commands: &[&[u8]] = &[
        b"*3\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\nb\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nc\r\n$1\r\nd\r\n",
        b"*5\r\n$3\r\nSeT\r\n$1\r\na\r\n$1\r\nb\r\n$2\r\nEX\r\n$1\r\n9\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
        b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n",
        b"*2\r\n$6\r\nclient\r\n$4\r\ninfo\r\n",
        b"*2\r\n$8\r\nJSON.GET\r\n$1\r\na\r\n",
    ];
    for (index, command) in commands.iter().enumerate() {
        let ts = (2 * index as u64 + 1) * 1000;
        parser.on_data(Side::Client, ts, command, &mut out);
        parser.on_data(Side::Server, ts + 1000, b"+OK\r\n", &mut out);
    }
    assert_eq!(
        summary(&out),
        vec![
            expect("SET", "SET ? ?", None, 0, 1),
            expect("SET", "SET ? ?", None, 2, 3),
            expect("SET", "SET ? ? ? ?", None, 4, 5),
            expect("GET", "GET ?", None, 6, 7),
            expect("CLIENT", "CLIENT LIST", None, 8, 9),
            expect("CLIENT", "CLIENT INFO", None, 10, 11),
            expect("JSON.GET", "JSON.GET ?", None, 12, 13),
        ]
    );
}
