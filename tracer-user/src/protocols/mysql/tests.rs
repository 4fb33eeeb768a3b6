//! Tests over real captures (see `../testdata/README.md`).

use super::{detect, MysqlParser};
use crate::protocols::test_support::{
    attr_str, db_summary, everything, feed_bytewise, feed_damaged, feed_random, feed_whole,
    feed_with_gap, random_bytes, records, Record,
};
use crate::protocols::{Fault, ParseOutput, Parser, ParserOptions, Protocol, Side};

macro_rules! capture {
    ($name:literal) => {
        records(include_bytes!(concat!("../testdata/mysql/", $name, ".bin")))
    };
}

fn parser() -> MysqlParser {
    MysqlParser::new(ParserOptions::default())
}

fn raw_parser() -> MysqlParser {
    MysqlParser::new(ParserOptions {
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

fn parse_whole(chunks: &[Record], system: &str) -> ParseOutput {
    let out = feed_whole(&mut parser(), chunks);
    assert_eq!(out.desyncs, 0);
    for exchange in &out.exchanges {
        assert_eq!(exchange.protocol, Protocol::Mysql);
        assert!(!exchange.incomplete, "{exchange:?}");
        assert!(exchange.start_ns <= exchange.end_ns);
        assert_eq!(attr_str(exchange, "db.system.name"), Some(system));
        assert_eq!(
            attr_str(exchange, "db.operation.name"),
            Some(exchange.name.as_str())
        );
        let failed = attr_str(exchange, "db.response.status_code").is_some();
        assert_eq!(exchange.fault == Fault::Server, failed);
    }
    out
}

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
fn text_protocol_queries() {
    let cases = [
        (
            capture!("select"),
            row("SELECT", "SELECT id, name FROM items WHERE name <> ? ORDER BY id", Some(3), None),
        ),
        (
            capture!("insert"),
            row("INSERT", "INSERT INTO items VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)", Some(0), None),
        ),
        (
            capture!("error"),
            row("SELECT", "SELECT * FROM missing_table WHERE x = ?", None, Some("1146")),
        ),
        (
            capture!("multi"),
            row(
                "BEGIN",
                "BEGIN; UPDATE items SET price = ? WHERE id = ?; SELECT count(*) FROM items; COMMIT",
                Some(1),
                None,
            ),
        ),
    ];
    for (chunks, expected) in cases {
        let out = parse_whole(&chunks, "mariadb");
        assert_eq!(summaries(&out), vec![expected.clone()], "{}", expected.0);
        assert_split_invariant(&chunks);
    }
}

#[test]
fn timestamps_come_from_the_first_request_byte_and_last_response_byte() {
    let chunks = capture!("select");
    let query = chunks
        .iter()
        .find(|c| c.side == Side::Client && c.data.get(4) == Some(&0x03))
        .unwrap();
    let response = chunks
        .iter()
        .find(|c| c.side == Side::Server && c.ts_ns > query.ts_ns)
        .unwrap();
    let out = parse_whole(&chunks, "mariadb");
    assert_eq!(out.exchanges[0].start_ns, query.ts_ns);
    assert_eq!(out.exchanges[0].end_ns, response.ts_ns);
}

#[test]
fn prepared_statements_from_connector_python() {
    let chunks = capture!("prepared");
    let out = parse_whole(&chunks, "mariadb");
    let select = "SELECT name, price FROM items WHERE id = ?";
    let insert = "INSERT INTO items (id, name, price) VALUES (?, ?, ?)";
    assert_eq!(
        summaries(&out),
        vec![
            row("SET", "SET NAMES ? COLLATE ?", Some(0), None),
            row("SET", "SET @@session.autocommit = OFF", Some(0), None),
            row("PREPARE", select, None, None),
            row("SELECT", select, Some(1), None),
            row("SELECT", select, Some(1), None),
            row("SELECT", select, Some(1), None),
            row("PREPARE", insert, None, None),
            row("INSERT", insert, Some(0), None),
            row("COMMIT", "COMMIT", Some(0), None),
            row(
                "PREPARE",
                "SELECT * FROM missing_table WHERE id = ?",
                None,
                Some("1146")
            ),
        ]
    );
    assert_split_invariant(&chunks);
}

/// What the raw-client captures ran (see testdata/README.md), whichever
/// way EOF packets were negotiated.
fn expected_raw_client() -> Vec<Summary> {
    let prepared = "SELECT id, name FROM items WHERE price > ? AND name <> ?";
    vec![
        row(
            "SELECT",
            "SELECT ? AS one; SELECT name FROM items WHERE id IN (?) ORDER BY id; UPDATE items SET price = ? WHERE id = ?",
            Some(4),
            None,
        ),
        row("CALL", "CALL two_results(?)", Some(5), None),
        row("PREPARE", prepared, None, None),
        row("SELECT", prepared, Some(4), None),
        row("SELECT", prepared, Some(4), None),
        row("SELECT", "SELECT seq, REPEAT(?, ?) FROM seq_1_to_300", Some(300), None),
        row("SELECT", "SELECT REPEAT(?, ?) AS big", Some(1), None),
        row("SELECT", "SELECT * FROM missing_table", None, Some("1146")),
    ]
}

#[test]
fn multi_results_prepared_and_big_rows_with_classic_eof() {
    let chunks = capture!("raw_classic_eof");
    assert_eq!(
        summaries(&parse_whole(&chunks, "mariadb")),
        expected_raw_client()
    );
    assert_split_invariant(&chunks);
}

#[test]
fn multi_results_prepared_and_big_rows_with_deprecated_eof() {
    let chunks = capture!("raw_deprecate_eof");
    assert_eq!(
        summaries(&parse_whole(&chunks, "mariadb")),
        expected_raw_client()
    );
    assert_split_invariant(&chunks);
}

/// Index of the server chunk answering the client chunk whose payload
/// contains `text`.
fn response_chunk(chunks: &[Record], text: &str) -> usize {
    let request = chunks
        .iter()
        .position(|c| {
            c.side == Side::Client && c.data.windows(text.len()).any(|w| w == text.as_bytes())
        })
        .unwrap();
    request
        + 1
        + chunks[request + 1..]
            .iter()
            .position(|c| c.side == Side::Server)
            .unwrap()
}

#[test]
fn gap_inside_a_huge_row_is_skipped_by_length() {
    for chunks in [capture!("raw_classic_eof"), capture!("raw_deprecate_eof")] {
        let index = response_chunk(&chunks, "REPEAT('y'");
        assert!(chunks[index].data.len() > 1000);
        let out = feed_with_gap(
            &mut parser(),
            &chunks,
            index,
            500,
            chunks[index].data.len() - 600,
        );
        assert_eq!(out.desyncs, 0);
        assert_eq!(summaries(&out), expected_raw_client());
    }
}

#[test]
fn gap_across_many_rows_resynchronises() {
    for chunks in [capture!("raw_classic_eof"), capture!("raw_deprecate_eof")] {
        let index = response_chunk(&chunks, "seq_1_to_300");
        let out = feed_with_gap(&mut parser(), &chunks, index, 2000, 10_000);
        assert_eq!(out.desyncs, 1);
        let mut expected = expected_raw_client();
        expected[5].2 = None;
        assert_eq!(summaries(&out), expected);
    }
}

#[test]
fn gap_at_a_command_boundary_loses_that_command_only() {
    let chunks = capture!("raw_deprecate_eof");
    let index = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.data.windows(12).any(|w| w == b"CALL two_res"))
        .unwrap();
    let out = feed_with_gap(&mut parser(), &chunks, index, 0, chunks[index].data.len());
    assert_eq!(out.desyncs, 1);
    let mut expected = expected_raw_client();
    expected.remove(1);
    assert_eq!(summaries(&out), expected);
}

#[test]
fn caught_mid_stream() {
    // From the CALL on: the handshake (and so the EOF style) is unknown,
    // the system cannot be told from MySQL, but everything pairs up.
    for chunks in [capture!("raw_classic_eof"), capture!("raw_deprecate_eof")] {
        let first = chunks
            .iter()
            .position(|c| {
                c.side == Side::Client && c.data.windows(12).any(|w| w == b"CALL two_res")
            })
            .unwrap();
        let out = feed_whole(&mut parser(), &chunks[first..]);
        assert_eq!(out.desyncs, 0);
        assert_eq!(summaries(&out), expected_raw_client()[1..].to_vec());
        assert!(out
            .exchanges
            .iter()
            .all(|e| attr_str(e, "db.system.name") == Some("mysql")));
        let bytewise = feed_bytewise(&mut parser(), &chunks[first..]);
        assert_eq!(bytewise.exchanges, out.exchanges);
    }
    // From after a preparation: executions pair up but carry no text.
    let chunks = capture!("prepared");
    let first = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.data.get(4) == Some(&0x17))
        .unwrap();
    let out = feed_whole(&mut parser(), &chunks[first..]);
    let names: Vec<&str> = out.exchanges.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["mysql", "mysql", "mysql", "PREPARE", "INSERT", "COMMIT", "PREPARE"]
    );
    assert_eq!(summaries(&out)[0].2, Some(1));
}

#[test]
fn close_reports_unanswered_commands() {
    let chunks = capture!("select");
    let query = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.data.get(4) == Some(&0x03))
        .unwrap();
    let mut p = parser();
    let mut out = ParseOutput::default();
    for chunk in &chunks[..=query] {
        p.on_data(chunk.side, chunk.ts_ns, &chunk.data, &mut out);
    }
    p.on_close(77_777, &mut out);
    assert_eq!(out.exchanges.len(), 1);
    assert!(out.exchanges[0].incomplete);
    assert_eq!(out.exchanges[0].end_ns, 77_777);
    assert_eq!(out.exchanges[0].name, "SELECT");
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut packet = len.to_le_bytes()[..3].to_vec();
    packet.push(seq);
    packet.extend_from_slice(payload);
    packet
}

#[test]
fn payloads_over_16_mib_span_several_packets() {
    const MAX: usize = 0xFF_FFFF;
    let mut p = parser();
    let mut out = ParseOutput::default();
    // A ping first: a hunting parser cannot validate packets that large.
    p.on_data(Side::Client, 1, &packet(0, b"\x0e"), &mut out);
    p.on_data(
        Side::Server,
        2,
        &packet(1, b"\x00\x00\x00\x02\x00\x00\x00"),
        &mut out,
    );
    // A 16 MiB INSERT: two packets, the first exactly the maximum.
    let mut statement = b"\x03INSERT INTO t VALUES ('".to_vec();
    statement.resize(MAX + 100, b'a');
    statement.extend_from_slice(b"')");
    let mut request = packet(0, &statement[..MAX]);
    request.extend(packet(1, &statement[MAX..]));
    p.on_data(Side::Client, 10, &request, &mut out);
    p.on_data(
        Side::Server,
        20,
        &packet(2, b"\x00\x01\x00\x02\x00\x00\x00"),
        &mut out,
    );
    // A SELECT whose one row is over 16 MiB; its continuation packet looks
    // like an EOF and must not be taken for one.
    p.on_data(
        Side::Client,
        30,
        &packet(0, b"\x03SELECT big FROM t"),
        &mut out,
    );
    let mut response = packet(1, b"\x01");
    response.extend(packet(
        2,
        b"\x03def\x00\x00\x00\x03big\x00\x0c\x21\x00\xff\xff\xff\xff\xfc\x00\x00\x00\x00\x00",
    ));
    response.extend(packet(3, b"\xfe\x00\x00\x02\x00"));
    let mut big_row = vec![0xfe];
    big_row.extend((MAX as u64 + 20).to_le_bytes());
    big_row.resize(MAX, b'b');
    response.extend(packet(4, &big_row));
    response.extend(packet(5, b"\xfe\x00\x00\x02\x00"));
    response.extend(packet(6, b"\xfe\x00\x00\x02\x00"));
    for piece in response.chunks(100_000) {
        p.on_data(Side::Server, 40, piece, &mut out);
    }
    p.on_close(50, &mut out);
    assert_eq!(out.desyncs, 0);
    assert_eq!(
        summaries(&out),
        vec![
            // Only the kept prefix is described; the literal it cuts is
            // still hidden.
            row("INSERT", "INSERT INTO t VALUES (?", Some(0), None),
            row("SELECT", "SELECT big FROM t", Some(1), None),
        ]
    );
    assert_eq!(
        (out.exchanges[0].start_ns, out.exchanges[0].end_ns),
        (10, 20)
    );
    assert_eq!(
        (out.exchanges[1].start_ns, out.exchanges[1].end_ns),
        (30, 40)
    );
}

#[test]
fn truncated_captures_never_invent_exchanges() {
    for chunks in [
        capture!("prepared"),
        capture!("multi"),
        capture!("raw_deprecate_eof"),
    ] {
        let complete = feed_whole(&mut parser(), &chunks).exchanges;
        let total: usize = chunks.iter().map(|c| c.data.len()).sum();
        for cut in (0..total).step_by(89) {
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

#[test]
fn garbage_produces_nothing() {
    for seed in 0..50 {
        let mut p = parser();
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
        assert!(out.exchanges.is_empty(), "seed {seed}");
    }
    let mut p = parser();
    let mut out = ParseOutput::default();
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
    let chunks = capture!("raw_deprecate_eof");
    let mut p = parser();
    let mut out = ParseOutput::default();
    let call = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.data.windows(12).any(|w| w == b"CALL two_res"))
        .unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        if i == call {
            // Bytes from nowhere in place of a command.
            p.on_data(Side::Client, chunk.ts_ns, &random_bytes(3, 40), &mut out);
        }
        p.on_data(chunk.side, chunk.ts_ns, &chunk.data, &mut out);
    }
    p.on_close(1 << 40, &mut out);
    assert!(out.desyncs >= 1);
    assert_eq!(summaries(&out), expected_raw_client());
}

#[test]
fn literals_and_credentials_stay_secret() {
    let chunks = capture!("select");
    assert!(!everything(&feed_whole(&mut parser(), &chunks).exchanges).contains("secret-literal"));
    assert!(
        everything(&feed_whole(&mut raw_parser(), &chunks).exchanges).contains("'secret-literal'")
    );
    for chunks in [
        capture!("select"),
        capture!("prepared"),
        capture!("raw_classic_eof"),
    ] {
        for out in [
            feed_whole(&mut raw_parser(), &chunks),
            feed_bytewise(&mut raw_parser(), &chunks),
        ] {
            let text = everything(&out.exchanges);
            // Bound parameters travel in COM_STMT_EXECUTE, never exported.
            assert!(!text.contains("secret-param"));
            assert!(!text.contains("MyS3cret"));
            assert!(!text.contains("mysql_native_password"));
            assert!(!text.contains("\"app\""));
        }
    }
}

#[test]
fn detects_clients_and_servers() {
    let select = capture!("select");
    assert_eq!(detect(&select[0].data), Some(Side::Server), "greeting");
    assert_eq!(
        detect(&select[1].data),
        Some(Side::Client),
        "handshake response"
    );
    let prepared = capture!("prepared");
    for command in [0x03, 0x16, 0x17] {
        let chunk = prepared
            .iter()
            .find(|c| c.side == Side::Client && c.data.get(4) == Some(&command) && c.data[3] == 0)
            .unwrap();
        assert_eq!(
            detect(&chunk.data),
            Some(Side::Client),
            "command {command:#x}"
        );
    }
    let error = capture!("error");
    let err_packet = error
        .iter()
        .find(|c| c.side == Side::Server && c.data.get(4) == Some(&0xff))
        .unwrap();
    assert_eq!(detect(&err_packet.data), Some(Side::Server));
    let result_set = select
        .iter()
        .rev()
        .find(|c| c.side == Side::Server && c.data.len() > 50)
        .unwrap();
    assert_eq!(detect(&result_set.data), Some(Side::Server));
}

#[test]
fn detect_refuses_other_protocols_and_garbage() {
    let others: [&[u8]; 8] = [
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"+OK\r\n",
        b"set k 0 0 1\r\nx\r\n",
        b"",
        b"\x01\x00\x00",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ];
    for data in others {
        assert_eq!(detect(data), None, "{:?}", String::from_utf8_lossy(data));
    }
    let postgres = records(include_bytes!("../testdata/postgresql/select.bin"));
    for chunk in postgres.iter().take(6) {
        assert_eq!(detect(&chunk.data), None);
    }
    for seed in 0..500 {
        assert_eq!(detect(&random_bytes(seed, 64)), None, "seed {seed}");
    }
}

#[test]
fn damaged_captures_never_panic_nor_multiply_exchanges() {
    for chunks in [
        capture!("select"),
        capture!("insert"),
        capture!("error"),
        capture!("multi"),
        capture!("prepared"),
        capture!("raw_classic_eof"),
        capture!("raw_deprecate_eof"),
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
fn local_infile_data_and_progress_reports_are_part_of_the_answer() {
    let chunks = capture!("local_infile");
    let out = parse_whole(&chunks, "mariadb");
    assert_eq!(
        summaries(&out),
        vec![
            row(
                "LOAD",
                "LOAD DATA LOCAL INFILE ? INTO TABLE items2 FIELDS TERMINATED BY ?",
                Some(0),
                None
            ),
            row("SELECT", "SELECT COUNT(*) FROM items2", Some(1), None),
        ]
    );
    assert_split_invariant(&chunks);
}

#[test]
fn execution_opening_a_cursor_ends_at_its_column_definitions() {
    // Hand-built (no captured client opens cursors): after a real
    // handshake-less start, COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY is
    // answered by column definitions and an EOF flagged "cursor exists";
    // rows come later through COM_STMT_FETCH, which makes no exchange.
    let mut p = parser();
    let mut out = ParseOutput::default();
    p.on_data(
        Side::Client,
        1,
        &packet(0, b"\x16SELECT a FROM t WHERE b = ?"),
        &mut out,
    );
    let mut prepared = packet(1, b"\x00\x05\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00");
    prepared.extend(packet(
        2,
        b"\x03def\x00\x00\x00\x01?\x00\x0c\x3f\x00\x00\x00\x00\x00\x06\x80\x00\x00\x00\x00",
    ));
    prepared.extend(packet(3, b"\xfe\x00\x00\x02\x00"));
    prepared.extend(packet(
        4,
        b"\x03def\x01s\x01t\x01t\x01a\x01a\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00",
    ));
    prepared.extend(packet(5, b"\xfe\x00\x00\x02\x00"));
    p.on_data(Side::Server, 2, &prepared, &mut out);
    p.on_data(
        Side::Client,
        3,
        &packet(
            0,
            b"\x17\x05\x00\x00\x00\x01\x01\x00\x00\x00\x01\x08\x00\x07\x00\x00\x00\x00\x00\x00\x00",
        ),
        &mut out,
    );
    let mut opened = packet(1, b"\x01");
    opened.extend(packet(
        2,
        b"\x03def\x01s\x01t\x01t\x01a\x01a\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00",
    ));
    opened.extend(packet(3, b"\xfe\x00\x00\x42\x00"));
    p.on_data(Side::Server, 4, &opened, &mut out);
    p.on_data(
        Side::Client,
        5,
        &packet(0, b"\x1c\x05\x00\x00\x00\x0a\x00\x00\x00"),
        &mut out,
    );
    let mut fetched = packet(1, b"\x00\x00\x2a\x00\x00\x00");
    fetched.extend(packet(2, b"\xfe\x00\x00\x82\x00"));
    p.on_data(Side::Server, 6, &fetched, &mut out);
    p.on_data(Side::Client, 7, &packet(0, b"\x0e"), &mut out);
    p.on_data(
        Side::Server,
        8,
        &packet(1, b"\x00\x00\x00\x02\x00\x00\x00"),
        &mut out,
    );
    p.on_close(9, &mut out);
    assert_eq!(out.desyncs, 0);
    let text = "SELECT a FROM t WHERE b = ?";
    assert_eq!(
        summaries(&out),
        vec![
            row("PREPARE", text, None, None),
            row("SELECT", text, Some(0), None)
        ]
    );
    assert_eq!((out.exchanges[1].start_ns, out.exchanges[1].end_ns), (3, 4));
}
