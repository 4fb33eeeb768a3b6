use super::framing::{Format, Framer, GapStep, Probe, Step, MAX_BUFFERED};
use super::{exchange, operation_name, sanitize, Dialect, Outcome, Statement};
use crate::protocols::{Fault, Protocol, SpareAttributes};

fn pg(sql: &str) -> String {
    sanitize(sql, Dialect::Postgres)
}

fn my(sql: &str) -> String {
    sanitize(sql, Dialect::Mysql)
}

#[test]
fn replaces_string_and_numeric_literals() {
    assert_eq!(
        pg("SELECT * FROM t WHERE name = 'bob' AND age > 42 AND score < 1.5e3"),
        "SELECT * FROM t WHERE name = ? AND age > ? AND score < ?"
    );
    assert_eq!(pg("SELECT 'it''s', .5, 3."), "SELECT ?, ?, ?");
    assert_eq!(
        pg("UPDATE t SET a = -7 WHERE id=1"),
        "UPDATE t SET a = -? WHERE id=?"
    );
}

#[test]
fn keeps_identifiers_keywords_and_placeholders() {
    assert_eq!(
        pg("SELECT t1.col_2, \"Weird 'Col' 9\" FROM s.t1 WHERE a = $1 AND b = $12"),
        "SELECT t1.col_2, \"Weird 'Col' 9\" FROM s.t1 WHERE a = $1 AND b = $12"
    );
    assert_eq!(
        my("SELECT `odd 'name' 7` FROM t WHERE a = ? AND b = :named AND c::int = 1"),
        "SELECT `odd 'name' 7` FROM t WHERE a = ? AND b = :named AND c::int = ?"
    );
}

#[test]
fn replaces_postgres_special_strings() {
    assert_eq!(pg("SELECT E'a\\'b', e'x'"), "SELECT ?, ?");
    assert_eq!(pg("SELECT $$ it's $ body $$, 1"), "SELECT ?, ?");
    assert_eq!(pg("SELECT $fn$ a $$ b $fn$ FROM t"), "SELECT ? FROM t");
    assert_eq!(
        pg("SELECT X'1F', B'0101', N'nat', U&'d\\0061t'"),
        "SELECT ?, ?, ?, ?"
    );
    // Standard strings: a backslash does not escape the quote.
    assert_eq!(pg("SELECT 'a\\' , 'b'"), "SELECT ? , ?");
}

#[test]
fn replaces_mysql_special_literals() {
    assert_eq!(
        my("SELECT \"double\", 'a\\'b', 0x1F, 0b101, x'AB', _utf8mb4'z'"),
        "SELECT ?, ?, ?, ?, ?, ?"
    );
    assert_eq!(my("SELECT 1 # comment 'x'\nFROM t"), "SELECT ? FROM t");
}

#[test]
fn collapses_in_lists_of_literals() {
    assert_eq!(
        pg("SELECT * FROM t WHERE id IN (1, 2, 3)"),
        "SELECT * FROM t WHERE id IN (?)"
    );
    assert_eq!(
        pg("SELECT * FROM t WHERE id in ('a','b')"),
        "SELECT * FROM t WHERE id in (?)"
    );
    assert_eq!(pg("WHERE id IN ($1, $2)"), "WHERE id IN ($1, $2)");
    assert_eq!(
        pg("WHERE id IN (SELECT id FROM u WHERE x = 1)"),
        "WHERE id IN (SELECT id FROM u WHERE x = ?)"
    );
    assert_eq!(pg("VALUES (1, 2)"), "VALUES (?, ?)");
}

#[test]
fn drops_comments_and_collapses_whitespace() {
    assert_eq!(
        pg("  /* user 'alice' */ SELECT\n\t1 -- trailing 'secret'\n FROM t  "),
        "SELECT ? FROM t"
    );
}

#[test]
fn unterminated_literals_swallow_the_rest() {
    assert_eq!(pg("SELECT 'never closed, secret"), "SELECT ?");
    assert_eq!(pg("SELECT $q$ never closed"), "SELECT ?");
    assert_eq!(pg("SELECT /* never closed 'x'"), "SELECT");
    assert_eq!(my("SELECT 'ends in backslash\\"), "SELECT ?");
}

#[test]
fn sanitizing_never_panics_on_odd_text() {
    for text in [
        "",
        "'",
        "$",
        "$$",
        "E'\\",
        "U&",
        "0x",
        "1e",
        "1e+",
        "é'ü\\é'",
        "\\é",
        "( ) ) (",
        "IN (",
        "in )",
    ] {
        pg(text);
        my(text);
    }
    for seed in 0..200 {
        let bytes = crate::protocols::test_support::random_bytes(seed, 64);
        let text = String::from_utf8_lossy(&bytes);
        pg(&text);
        my(&text);
        operation_name(&text);
    }
}

#[test]
fn operation_is_the_first_keyword() {
    assert_eq!(operation_name("select 1").as_deref(), Some("SELECT"));
    assert_eq!(
        operation_name("  -- c\n /* d */ Insert INTO t").as_deref(),
        Some("INSERT")
    );
    assert_eq!(operation_name("BEGIN;").as_deref(), Some("BEGIN"));
    assert_eq!(
        operation_name("(SELECT 1) UNION (SELECT 2)").as_deref(),
        Some("SELECT")
    );
    assert_eq!(operation_name("COMMIT").as_deref(), Some("COMMIT"));
    assert_eq!(operation_name(""), None);
    assert_eq!(operation_name("  ;"), None);
    assert_eq!(operation_name("42"), None);
}

#[test]
fn operation_of_with_is_the_main_verb() {
    assert_eq!(
        operation_name(
            "WITH a AS (SELECT 1), b AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM a"
        )
        .as_deref(),
        Some("INSERT")
    );
    assert_eq!(
        operation_name("with recursive r(n) as (select 1) select * from r").as_deref(),
        Some("SELECT")
    );
    assert_eq!(operation_name("WITH x").as_deref(), Some("WITH"));
}

#[test]
fn statement_text_is_sanitised_unless_raw() {
    let sql = b"SELECT * FROM t WHERE pw = 'hunter2'";
    let sanitised = Statement::new(sql, Dialect::Postgres, false);
    assert_eq!(sanitised.text, "SELECT * FROM t WHERE pw = ?");
    assert_eq!(sanitised.operation.as_deref(), Some("SELECT"));
    let raw = Statement::new(sql, Dialect::Postgres, true);
    assert_eq!(raw.text, "SELECT * FROM t WHERE pw = 'hunter2'");
}

#[test]
fn statement_text_is_bounded() {
    let long = format!("SELECT {}", "é, ".repeat(10_000));
    let statement = Statement::new(long.as_bytes(), Dialect::Postgres, true);
    assert!(statement.text.len() <= super::MAX_QUERY_TEXT_BYTES);
    assert!(statement.text.len() > super::MAX_QUERY_TEXT_BYTES - 4);
}

#[test]
fn exchange_names_fall_back_to_the_system() {
    let failed = exchange(
        Protocol::Postgresql,
        "postgresql",
        None,
        10,
        Outcome {
            end_ns: 5,
            error_code: Some("42P01".into()),
            ..Outcome::default()
        },
        &mut SpareAttributes::default(),
    );
    assert_eq!(failed.name, "postgresql");
    assert_eq!(failed.fault, Fault::Server);
    assert_eq!(failed.end_ns, 10, "end never precedes start");
}

/// A toy format: one length byte, then that many bytes; a message is valid
/// while hunting when its body is all `b'v'`.
struct Toy;

impl Format for Toy {
    fn header_len(&self, _first: u8) -> usize {
        2
    }
    fn body_len(&self, header: &[u8]) -> Option<usize> {
        (header[0] == b'#').then(|| usize::from(header[1]) * 1024)
    }
    fn prefix_wanted(&self, _header: &[u8]) -> usize {
        4
    }
    fn probe(&self, data: &[u8]) -> Probe {
        match data {
            [] | [b'#'] => Probe::Incomplete,
            [b'#', len, body @ ..] => {
                let len = usize::from(*len) * 1024;
                if body.len() < len {
                    Probe::Incomplete
                } else if body[..len].iter().all(|&b| b == b'v') {
                    Probe::Valid
                } else {
                    Probe::Invalid
                }
            }
            _ => Probe::Invalid,
        }
    }
}

fn toy_message(kib: u8, fill: u8) -> Vec<u8> {
    let mut message = vec![b'#', kib];
    message.resize(2 + usize::from(kib) * 1024, fill);
    message
}

fn frames(framer: &mut Framer, mut input: &[u8]) -> (Vec<(usize, bool)>, usize) {
    let mut found = Vec::new();
    let mut desyncs = 0;
    loop {
        match framer.next(&mut input, &Toy, 1) {
            Step::Frame(frame) => found.push((frame.body.len(), frame.complete)),
            Step::NeedMore => return (found, desyncs),
            Step::Desync => desyncs += 1,
        }
    }
}

#[test]
fn framer_hunts_then_frames_and_skips_oversized_messages() {
    let mut framer = Framer::hunting();
    let mut stream = b"junk".to_vec();
    stream.extend(toy_message(1, b'v'));
    stream.extend(toy_message(100, b'x'));
    stream.extend(toy_message(2, b'y'));
    let (found, desyncs) = frames(&mut framer, &stream);
    assert_eq!(found, vec![(1024, true), (2, false), (2048, true)]);
    assert_eq!(desyncs, 0);
    const { assert!(100 * 1024 > MAX_BUFFERED) };
}

#[test]
fn framer_survives_a_gap_inside_a_message_but_not_across_messages() {
    let mut framer = Framer::hunting();
    let message = toy_message(1, b'v');
    let (found, _) = frames(&mut framer, &message);
    assert_eq!(found, vec![(1024, true)]);
    let (found, _) = frames(&mut framer, &message[..100]);
    assert!(found.is_empty());
    assert!(
        matches!(framer.gap(500, &Toy), GapStep::Truncated(f) if !f.complete && f.body.len() == 98)
    );
    let (found, _) = frames(&mut framer, &message[600..]);
    assert!(
        found.is_empty(),
        "the rest of the damaged message is skipped"
    );
    let (found, _) = frames(&mut framer, &toy_message(1, b'z'));
    assert_eq!(found, vec![(1024, true)]);
    assert!(matches!(framer.gap(10, &Toy), GapStep::Desync));
    assert!(framer.is_hunting());
}
