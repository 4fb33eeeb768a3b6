//! Tests over real captures (see `../testdata/README.md`).

use super::{detect, PostgresParser};
use crate::protocols::test_support::{
    attr_str, db_summary, everything, feed_bytewise, feed_damaged, feed_random, feed_whole,
    feed_with_gap, random_bytes, records, Record,
};
use crate::protocols::{Exchange, Fault, ParseOutput, Parser, ParserOptions, Protocol, Side};

macro_rules! capture {
    ($name:literal) => {
        records(include_bytes!(concat!(
            "../testdata/postgresql/",
            $name,
            ".bin"
        )))
    };
}

const PASSWORD: &str = "S3cretPw!";

fn parser() -> PostgresParser {
    PostgresParser::new(ParserOptions::default())
}

fn raw_parser() -> PostgresParser {
    PostgresParser::new(ParserOptions {
        raw_statements: true,
        ..ParserOptions::default()
    })
}

type Summary = (String, Option<String>, Option<i64>, Option<String>);

fn row(name: &str, text: &str, rows: Option<i64>, error: Option<&str>) -> Summary {
    (name.into(), Some(text.into()), rows, error.map(Into::into))
}

fn summaries(out: &ParseOutput) -> Vec<Summary> {
    out.exchanges.iter().map(db_summary).collect()
}

/// Feeds a capture whole, checks it parses cleanly, and returns it.
fn parse_whole(chunks: &[Record]) -> ParseOutput {
    let out = feed_whole(&mut parser(), chunks);
    assert_eq!(out.desyncs, 0);
    for exchange in &out.exchanges {
        assert_eq!(exchange.protocol, Protocol::Postgresql);
        assert!(!exchange.incomplete, "{exchange:?}");
        assert!(exchange.start_ns <= exchange.end_ns);
        assert_eq!(attr_str(exchange, "db.system.name"), Some("postgresql"));
        assert_eq!(
            attr_str(exchange, "db.operation.name"),
            Some(exchange.name.as_str())
        );
    }
    out
}

/// Every way of cutting the capture gives the same exchanges.
fn assert_split_invariant(chunks: &[Record]) {
    let whole = feed_whole(&mut parser(), chunks);
    let bytewise = feed_bytewise(&mut parser(), chunks);
    assert_eq!(bytewise.exchanges, whole.exchanges, "one byte per call");
    assert_eq!(bytewise.desyncs, whole.desyncs);
    for seed in 0..8 {
        let random = feed_random(
            &mut parser(),
            chunks,
            seed,
            1 + usize::try_from(seed).unwrap() * 7,
        );
        assert_eq!(random.exchanges, whole.exchanges, "seed {seed}");
        assert_eq!(random.desyncs, whole.desyncs);
    }
}

#[test]
fn simple_queries() {
    let cases: [(&str, Vec<Record>, Summary); 5] = [
        (
            "create",
            capture!("create"),
            row(
                "CREATE",
                "CREATE TABLE items (id int primary key, name text, price numeric)",
                Some(0),
                None,
            ),
        ),
        (
            "insert",
            capture!("insert"),
            row("INSERT", "INSERT INTO items VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)", Some(0), None),
        ),
        (
            "select",
            capture!("select"),
            row("SELECT", "SELECT id, name FROM items WHERE name <> ? ORDER BY id", Some(3), None),
        ),
        (
            "error",
            capture!("error"),
            row("SELECT", "SELECT * FROM missing_table WHERE x = ?", None, Some("42P01")),
        ),
        (
            "multi",
            capture!("multi"),
            row(
                "BEGIN",
                "BEGIN; UPDATE items SET price = ? WHERE id = ?; SELECT count(*) FROM items; COMMIT",
                Some(1),
                None,
            ),
        ),
    ];
    for (name, chunks, expected) in cases {
        let out = parse_whole(&chunks);
        assert_eq!(summaries(&out), vec![expected], "{name}");
        let fault = if name == "error" {
            Fault::Server
        } else {
            Fault::None
        };
        assert_eq!(out.exchanges[0].fault, fault, "{name}");
        assert_split_invariant(&chunks);
    }
}

#[test]
fn timestamps_come_from_the_first_request_byte_and_last_response_byte() {
    let chunks = capture!("select");
    let query = chunks
        .iter()
        .find(|c| c.side == Side::Client && c.data.first() == Some(&b'Q'))
        .unwrap();
    let ready = chunks
        .iter()
        .find(|c| {
            c.side == Side::Server && c.data.ends_with(b"Z\0\0\0\x05I") && c.ts_ns > query.ts_ns
        })
        .unwrap();
    let out = parse_whole(&chunks);
    assert_eq!(out.exchanges[0].start_ns, query.ts_ns);
    assert_eq!(out.exchanges[0].end_ns, ready.ts_ns);

    // The request's first byte arriving in an earlier call than the rest
    // moves the start; likewise the response's last byte and the end.
    let mut p = parser();
    let mut out = ParseOutput::default();
    for chunk in &chunks {
        if std::ptr::eq(chunk, query) {
            p.on_data(Side::Client, 7, &chunk.data[..1], &mut out);
            p.on_data(Side::Client, chunk.ts_ns, &chunk.data[1..], &mut out);
        } else if std::ptr::eq(chunk, ready) {
            p.on_data(
                Side::Server,
                chunk.ts_ns,
                &chunk.data[..chunk.data.len() - 1],
                &mut out,
            );
            p.on_data(
                Side::Server,
                chunk.ts_ns + 5,
                &chunk.data[chunk.data.len() - 1..],
                &mut out,
            );
        } else {
            p.on_data(chunk.side, chunk.ts_ns, &chunk.data, &mut out);
        }
    }
    assert_eq!(out.exchanges.len(), 1);
    assert_eq!(out.exchanges[0].start_ns, 7);
    assert_eq!(out.exchanges[0].end_ns, ready.ts_ns + 5);
}

const PGBENCH_TRANSACTION: [(&str, &str, Option<i64>); 7] = [
    ("BEGIN", "BEGIN;", Some(0)),
    ("UPDATE", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;", Some(0)),
    ("SELECT", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", Some(1)),
    ("UPDATE", "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;", Some(0)),
    ("UPDATE", "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;", Some(0)),
    (
        "INSERT",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
        Some(0),
    ),
    ("END", "END;", Some(0)),
];

fn expected_pgbench(transactions: usize) -> Vec<Summary> {
    (0..transactions)
        .flat_map(|_| PGBENCH_TRANSACTION)
        .map(|(name, text, rows)| row(name, text, rows, None))
        .collect()
}

#[test]
fn pgbench_prepared_parses_once_and_executes_many_times() {
    let chunks = capture!("pgbench_prepared");
    let out = parse_whole(&chunks);
    assert_eq!(summaries(&out), expected_pgbench(20));
    assert_split_invariant(&chunks);
}

#[test]
fn pgbench_extended_parses_every_time() {
    let chunks = capture!("pgbench_extended");
    let out = parse_whole(&chunks);
    assert_eq!(summaries(&out), expected_pgbench(20));
    assert_split_invariant(&chunks);
}

#[test]
fn pgbench_setup_connections() {
    let init = parse_whole(&capture!("pgbench_init"));
    let names: Vec<&str> = init.exchanges.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "DROP", "CREATE", "CREATE", "CREATE", "CREATE", "BEGIN", "TRUNCATE", "INSERT",
            "INSERT", "INSERT", "COMMIT", "VACUUM", "VACUUM", "VACUUM", "VACUUM", "ALTER", "ALTER",
            "ALTER"
        ]
    );
    assert_eq!(
        attr_str(&init.exchanges[9], "db.query.text"),
        Some(
            "insert into pgbench_accounts(aid,bid,abalance,filler) select aid, (aid - ?) / ? + ?, ?, ? from generate_series(?, ?) as aid"
        )
    );
    for main in [
        capture!("pgbench_prepared_main"),
        capture!("pgbench_extended_main"),
    ] {
        let out = parse_whole(&main);
        let names: Vec<&str> = out.exchanges.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["SELECT", "SELECT", "VACUUM", "VACUUM", "TRUNCATE"]);
        assert_eq!(summaries(&out)[0].2, Some(1));
    }
}

#[test]
fn pipelined_batch_with_an_error_fails_the_rest_of_the_batch() {
    let chunks = capture!("pipeline_error");
    let out = parse_whole(&chunks);
    assert_eq!(
        summaries(&out),
        vec![
            row("SELECT", "SELECT ? AS one;", Some(1), None),
            row(
                "SELECT",
                "SELECT name FROM items WHERE id = ?;",
                Some(1),
                None
            ),
            row(
                "SELECT",
                "SELECT * FROM missing_table;",
                None,
                Some("42P01")
            ),
            row("SELECT", "SELECT ?;", None, None),
        ]
    );
    let faults: Vec<Fault> = out.exchanges.iter().map(|e| e.fault).collect();
    assert_eq!(
        faults,
        [Fault::None, Fault::None, Fault::Server, Fault::Server]
    );
    // All four were sent in one write; the first two ended before the error.
    assert!(out
        .exchanges
        .iter()
        .all(|e| e.start_ns == out.exchanges[0].start_ns));
    assert_split_invariant(&chunks);
}

#[test]
fn authentication_exchanges_make_no_spans() {
    for chunks in [capture!("scram_auth"), capture!("sslrequest_refused")] {
        let out = parse_whole(&chunks);
        assert_eq!(out.exchanges.len(), 1);
        assert_eq!(summaries(&out)[0].2, Some(1));
        assert_split_invariant(&chunks);
    }
}

#[test]
fn accepted_ssl_stops_parsing() {
    let chunks = capture!("sslrequest_tls");
    for out in [
        feed_whole(&mut parser(), &chunks),
        feed_bytewise(&mut parser(), &chunks),
    ] {
        assert!(out.exchanges.is_empty());
        assert_eq!(out.desyncs, 0);
    }
}

#[test]
fn big_results_and_copy() {
    let chunks = capture!("big_result");
    let out = parse_whole(&chunks);
    assert_eq!(
        summaries(&out),
        vec![
            row(
                "SELECT",
                "SELECT g, repeat(?, ?) AS pad FROM generate_series(?, ?) g",
                Some(300),
                None
            ),
            row("SELECT", "SELECT repeat(?, ?) AS big", Some(1), None),
            row("COPY", "COPY items TO STDOUT", Some(0), None),
        ]
    );
    assert_split_invariant(&chunks);
}

#[test]
fn gap_inside_a_huge_row_is_skipped_by_length() {
    let chunks = capture!("big_result");
    let whole = feed_whole(&mut parser(), &chunks);
    // The 70000-byte DataRow is the only message that large.
    let (index, at) = chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.side == Side::Server)
        .find_map(|(i, c)| {
            c.data
                .windows(5)
                .position(|w| {
                    let len = u32::from_be_bytes(w[1..5].try_into().unwrap());
                    w[0] == b'D' && (70_000..1_000_000).contains(&len)
                })
                .map(|at| (i, at))
        })
        .unwrap();
    let gap_start = (at + 1000).min(chunks[index].data.len() - 10);
    let gap_len = (chunks[index].data.len() - gap_start - 5).min(20_000);
    let out = feed_with_gap(&mut parser(), &chunks, index, gap_start, gap_len);
    assert_eq!(out.desyncs, 0);
    assert_eq!(out.exchanges, whole.exchanges);
}

#[test]
fn gap_across_many_rows_resynchronises() {
    let chunks = capture!("big_result");
    // The first response: 300 small rows.
    let index = chunks
        .iter()
        .position(|c| c.side == Side::Server && c.data.starts_with(b"T"))
        .unwrap();
    let out = feed_with_gap(&mut parser(), &chunks, index, 3000, 10_000);
    assert_eq!(out.desyncs, 1);
    let got = summaries(&out);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].0, "SELECT");
    assert_eq!(got[0].2, None, "rows were lost, so no count");
    assert_eq!(
        got[1],
        row("SELECT", "SELECT repeat(?, ?) AS big", Some(1), None)
    );
    assert_eq!(got[2].0, "COPY");
    assert!(out.exchanges.iter().all(|e| !e.incomplete));
}

#[test]
fn gap_in_requests_loses_only_the_requests_it_covered() {
    let chunks = capture!("pgbench_prepared");
    // A whole Bind/Describe/Execute/Sync write of the second transaction.
    let index = chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.side == Side::Client && c.data.starts_with(b"B"))
        .nth(9)
        .unwrap()
        .0;
    let len = chunks[index].data.len();
    let out = feed_with_gap(&mut parser(), &chunks, index, 0, len);
    assert_eq!(out.desyncs, 1);
    let mut expected = expected_pgbench(20);
    expected.remove(9);
    assert_eq!(summaries(&out), expected);
}

#[test]
fn caught_mid_stream() {
    let chunks = capture!("pgbench_prepared");
    // Start in the middle of the 20th client write of the run: statements
    // were prepared before, so their text is unknown; pairing still holds.
    let first = chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.side == Side::Client && c.data.starts_with(b"B"))
        .nth(20)
        .unwrap()
        .0;
    let mut p = parser();
    let mut out = ParseOutput::default();
    let partial = &chunks[first];
    p.on_data(Side::Client, partial.ts_ns, &partial.data[3..], &mut out);
    for chunk in &chunks[first + 1..] {
        p.on_data(chunk.side, chunk.ts_ns, &chunk.data, &mut out);
    }
    p.on_close(1 << 40, &mut out);
    let executes_after = chunks[first + 1..]
        .iter()
        .filter(|c| c.side == Side::Client && c.data.starts_with(b"B"))
        .count();
    // The Describe/Execute/Sync after the cut Bind still count.
    assert_eq!(out.exchanges.len(), executes_after + 1);
    assert_eq!(out.desyncs, 0, "starting to hunt is not losing sync");
    for exchange in &out.exchanges {
        assert_eq!(exchange.name, "postgresql");
        assert_eq!(attr_str(exchange, "db.query.text"), None);
        assert!(!exchange.incomplete);
    }
}

#[test]
fn close_reports_unanswered_requests() {
    let chunks = capture!("select");
    let query_index = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.data.first() == Some(&b'Q'))
        .unwrap();
    let mut p = parser();
    let mut out = ParseOutput::default();
    for chunk in &chunks[..=query_index] {
        p.on_data(chunk.side, chunk.ts_ns, &chunk.data, &mut out);
    }
    p.on_close(99_999, &mut out);
    assert_eq!(out.exchanges.len(), 1);
    let exchange = &out.exchanges[0];
    assert!(exchange.incomplete);
    assert_eq!(exchange.end_ns, 99_999);
    assert_eq!(exchange.name, "SELECT");
    assert_eq!(db_summary(exchange).2, None);
}

#[test]
fn truncated_captures_never_invent_exchanges() {
    for chunks in [
        capture!("pipeline_error"),
        capture!("multi"),
        capture!("big_result"),
    ] {
        let complete = feed_whole(&mut parser(), &chunks).exchanges;
        let total: usize = chunks.iter().map(|c| c.data.len()).sum();
        for cut in (0..total).step_by(97) {
            let mut p = parser();
            let mut out = ParseOutput::default();
            let mut left = cut;
            for chunk in &chunks {
                let now = left.min(chunk.data.len());
                if now == 0 {
                    break;
                }
                p.on_data(chunk.side, chunk.ts_ns, &chunk.data[..now], &mut out);
                left -= now;
            }
            p.on_close(1 << 40, &mut out);
            assert!(out.exchanges.len() <= complete.len());
            for (got, want) in out.exchanges.iter().zip(&complete) {
                assert_eq!(got.name, want.name);
                if !got.incomplete {
                    assert_eq!(got, want);
                }
            }
        }
    }
}

fn feed_garbage(p: &mut impl Parser, seed: u64) -> ParseOutput {
    let mut out = ParseOutput::default();
    for round in 0..40u64 {
        let side = if round % 2 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        let data = random_bytes(
            seed * 1000 + round,
            1 + usize::try_from(round * 37 % 700).unwrap(),
        );
        p.on_data(side, round, &data, &mut out);
        if round % 7 == 3 {
            p.on_gap(side, round, 13, &mut out);
        }
    }
    p.on_close(1000, &mut out);
    out
}

#[test]
fn garbage_produces_nothing() {
    for seed in 0..50 {
        assert!(
            feed_garbage(&mut parser(), seed).exchanges.is_empty(),
            "seed {seed}"
        );
    }
    let mut out = ParseOutput::default();
    let mut p = parser();
    p.on_data(
        Side::Client,
        1,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &mut out,
    );
    p.on_data(
        Side::Server,
        2,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        &mut out,
    );
    p.on_data(Side::Client, 3, b"*1\r\n$4\r\nPING\r\n", &mut out);
    p.on_data(Side::Server, 4, b"+PONG\r\n", &mut out);
    p.on_close(5, &mut out);
    assert!(out.exchanges.is_empty());
}

#[test]
fn garbage_inside_a_real_conversation_is_survived() {
    let chunks = capture!("pgbench_prepared");
    let whole = feed_whole(&mut parser(), &chunks);
    let mut p = parser();
    let mut out = ParseOutput::default();
    for (i, chunk) in chunks.iter().enumerate() {
        p.on_data(chunk.side, chunk.ts_ns, &chunk.data, &mut out);
        if i == 100 {
            // Bytes from nowhere on the server side, after a complete
            // response: counted as a desync and survived.
            p.on_data(Side::Server, chunk.ts_ns, &random_bytes(7, 300), &mut out);
        }
        if i == 201 {
            assert_eq!(chunk.side, Side::Server);
            // And on the client side, before a request.
            p.on_data(Side::Client, chunk.ts_ns, &random_bytes(8, 300), &mut out);
        }
    }
    p.on_close(1 << 40, &mut out);
    assert!(out.desyncs >= 2);
    assert_eq!(out.exchanges.len(), whole.exchanges.len());
    let matching = out
        .exchanges
        .iter()
        .zip(&whole.exchanges)
        .filter(|(a, b)| a == b)
        .count();
    assert!(matching >= whole.exchanges.len() - 2, "{matching}");
}

#[test]
fn literals_and_passwords_stay_secret() {
    let chunks = capture!("select");
    let sanitised = everything(&feed_whole(&mut parser(), &chunks).exchanges);
    assert!(!sanitised.contains("secret-literal"));
    let raw = everything(&feed_whole(&mut raw_parser(), &chunks).exchanges);
    assert!(
        raw.contains("'secret-literal'"),
        "raw statements keep literals"
    );

    // The cleartext-password captures carry the password on the wire; no
    // exchange may, even with raw statements.
    let select = capture!("select");
    assert!(select.iter().any(|c| c
        .data
        .windows(PASSWORD.len())
        .any(|w| w == PASSWORD.as_bytes())));
    for chunks in [select, capture!("pgbench_prepared"), capture!("scram_auth")] {
        for out in [
            feed_whole(&mut raw_parser(), &chunks),
            feed_bytewise(&mut raw_parser(), &chunks),
        ] {
            let text = everything(&out.exchanges);
            assert!(!text.contains(PASSWORD));
            assert!(!text.contains("SCRAM"));
            assert!(!text.contains("r="));
            assert!(
                !text.contains("application_name"),
                "startup parameters stay out"
            );
        }
    }
}

#[test]
fn detects_clients_and_servers() {
    for chunks in [
        capture!("select"),
        capture!("scram_auth"),
        capture!("sslrequest_tls"),
    ] {
        assert_eq!(detect(&chunks[0].data), Some(Side::Client));
    }
    let select = capture!("select");
    assert_eq!(
        detect(&select[1].data),
        Some(Side::Server),
        "authentication request"
    );
    let prepared = capture!("pgbench_prepared");
    let mid_client = prepared
        .iter()
        .find(|c| c.side == Side::Client && c.data.starts_with(b"B"))
        .unwrap();
    assert_eq!(
        detect(&mid_client.data),
        Some(Side::Client),
        "Bind/Describe/Execute/Sync"
    );
    let parse_sync = prepared
        .iter()
        .find(|c| c.side == Side::Client && c.data.starts_with(b"P"))
        .unwrap();
    assert_eq!(detect(&parse_sync.data), Some(Side::Client));
    let query = select
        .iter()
        .find(|c| c.side == Side::Client && c.data.starts_with(b"Q"))
        .unwrap();
    assert_eq!(detect(&query.data), Some(Side::Client));
    let mid_server = prepared
        .iter()
        .find(|c| c.side == Side::Server && c.data.starts_with(b"2"))
        .unwrap();
    assert_eq!(detect(&mid_server.data), Some(Side::Server));
    let rows = select
        .iter()
        .find(|c| c.side == Side::Server && c.data.starts_with(b"T"))
        .unwrap();
    assert_eq!(detect(&rows.data), Some(Side::Server));
}

#[test]
fn detect_refuses_other_protocols_and_garbage() {
    let others: [&[u8]; 10] = [
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"+OK\r\n",
        b"$5\r\nhello\r\n",
        b"set k 0 0 1\r\nx\r\n",
        b"N",
        b"",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ];
    for data in others {
        assert_eq!(detect(data), None, "{:?}", String::from_utf8_lossy(data));
    }
    let mysql_greeting = &records(include_bytes!("../testdata/mysql/select.bin"))[0];
    assert_eq!(detect(&mysql_greeting.data), None);
    for seed in 0..500 {
        assert_eq!(detect(&random_bytes(seed, 64)), None, "seed {seed}");
    }
}

#[test]
fn many_statements_in_flight_are_bounded() {
    // A client that only sends: the queue stays bounded and close reports
    // what it kept.
    let mut p = parser();
    let mut out = ParseOutput::default();
    p.on_data(Side::Client, 1, b"\0\0\0\x09\0\x03\0\0\0", &mut out);
    let mut query = b"Q\0\0\0\x0dSELECT 1\0".to_vec();
    query.extend(b"H\0\0\0\x04");
    for ts in 0..5000 {
        p.on_data(Side::Client, ts, &query, &mut out);
    }
    p.on_close(9999, &mut out);
    assert_eq!(
        out.exchanges.len(),
        crate::protocols::sql::MAX_PENDING_REQUESTS
    );
    assert!(out.exchanges.iter().all(|e: &Exchange| e.incomplete));
}

#[test]
fn damaged_captures_never_panic_nor_multiply_exchanges() {
    for chunks in [
        capture!("select"),
        capture!("error"),
        capture!("multi"),
        capture!("pgbench_prepared"),
        capture!("pgbench_extended"),
        capture!("pipeline_error"),
        capture!("scram_auth"),
        capture!("sslrequest_refused"),
        capture!("big_result"),
        capture!("pgbench_init"),
    ] {
        let undamaged = feed_whole(&mut parser(), &chunks).exchanges.len();
        for seed in 0..40 {
            let out = feed_damaged(&mut parser(), &chunks, seed);
            assert!(
                out.exchanges.len() <= undamaged + 2,
                "seed {seed}: {}",
                out.exchanges.len()
            );
        }
    }
}

#[test]
fn copy_from_stdin_is_one_exchange() {
    let chunks = capture!("copy_from_stdin");
    let out = parse_whole(&chunks);
    assert_eq!(
        summaries(&out),
        vec![
            row(
                "CREATE",
                "CREATE TABLE items2 (id int, name text, price numeric)",
                Some(0),
                None
            ),
            row("COPY", "COPY items2 FROM STDIN csv", Some(0), None),
            row("SELECT", "SELECT count(*) FROM items2", Some(1), None),
        ]
    );
    assert_split_invariant(&chunks);
}
