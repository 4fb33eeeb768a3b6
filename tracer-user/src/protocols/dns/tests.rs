//! DNS parser tests on flows recorded between dig (or a Python stub
//! resolver) and dnsmasq 2.90 (see ../testdata/README.md).

use crate::protocols::test_support::*;

use super::*;

const A: &[u8] = include_bytes!("../testdata/dns/a.cap");
const AAAA: &[u8] = include_bytes!("../testdata/dns/aaaa.cap");
const NXDOMAIN: &[u8] = include_bytes!("../testdata/dns/nxdomain.cap");
const CNAME: &[u8] = include_bytes!("../testdata/dns/cname.cap");
const REFUSED: &[u8] = include_bytes!("../testdata/dns/refused.cap");
const PARALLEL: &[u8] = include_bytes!("../testdata/dns/parallel.cap");
const TCP_KEEPOPEN: &[u8] = include_bytes!("../testdata/dns/tcp_keepopen.cap");

const UDP_CAPTURES: [&[u8]; 6] = [A, AAAA, NXDOMAIN, CNAME, REFUSED, PARALLEL];

fn udp() -> DnsParser {
    DnsParser::new(ParserOptions::default())
}

fn tcp() -> DnsParser {
    DnsParser::new_tcp(ParserOptions::default())
}

/// (name, response code, answers, fault, start record, end record)
type Summary = (String, String, i64, Fault, u64, u64);

fn summary(out: &ParseOutput) -> Vec<Summary> {
    out.exchanges
        .iter()
        .map(|exchange| {
            assert_eq!(exchange.protocol, Protocol::Dns);
            assert!(!exchange.incomplete);
            let qname = attr_str(exchange, "dns.question.name").unwrap();
            let qtype = attr_str(exchange, "dns.question.type").unwrap();
            assert_eq!(exchange.name.as_str(), format!("{qtype} {qname}"));
            let Some(AttrValue::Int(answers)) = attr(exchange, "dns.answer.count") else {
                panic!("no answer count: {exchange:?}");
            };
            (
                exchange.name.to_string(),
                attr_str(exchange, "dns.response.code").unwrap().to_owned(),
                *answers,
                exchange.fault,
                exchange.start_ns / 1000 - 1,
                exchange.end_ns / 1000 - 1,
            )
        })
        .collect()
}

fn answered(name: &str, rcode: &str, answers: i64, fault: Fault, start: u64, end: u64) -> Summary {
    (
        name.to_owned(),
        rcode.to_owned(),
        answers,
        fault,
        start,
        end,
    )
}

#[test]
fn dig_queries_pair_with_their_answers() {
    let cases = [
        (
            A,
            answered("A example.test", "NOERROR", 1, Fault::None, 0, 1),
        ),
        (
            AAAA,
            answered("AAAA example.test", "NOERROR", 1, Fault::None, 0, 1),
        ),
        (
            NXDOMAIN,
            answered("A nothing.blocked.test", "NXDOMAIN", 0, Fault::None, 0, 1),
        ),
        // The CNAME's owner and target are compression pointers.
        (
            CNAME,
            answered("A alias.test", "NOERROR", 1, Fault::None, 0, 1),
        ),
        (
            REFUSED,
            answered("A unknown.zone", "REFUSED", 0, Fault::Server, 0, 1),
        ),
    ];
    for (capture, expected) in cases {
        let out = replay_whole(&mut udp(), &records(capture));
        assert_eq!(out.desyncs, 0);
        assert_eq!(summary(&out), vec![expected]);
        // Only the question and the response's shape are reported.
        let text = visible_text(&out.exchanges);
        assert_eq!(text.lines().count(), 5, "{text}");
    }
}

#[test]
fn outstanding_queries_pair_by_id_in_any_order() {
    let records = records(PARALLEL);
    let expected = vec![
        answered("A example.test", "NOERROR", 1, Fault::None, 0, 2),
        answered("AAAA example.test", "NOERROR", 1, Fault::None, 1, 3),
        answered("AAAA alias.test", "NOERROR", 1, Fault::None, 4, 5),
    ];
    let out = replay_whole(&mut udp(), &records);
    assert_eq!(out.desyncs, 0);
    assert_eq!(summary(&out), expected);

    // Answers in the other order.
    let mut swapped = records.clone();
    swapped.swap(2, 3);
    swapped[2].ts_ns = ts(2);
    swapped[3].ts_ns = ts(3);
    let out = replay_whole(&mut udp(), &swapped);
    let mut got = summary(&out);
    got.sort_by_key(|summary| summary.4);
    assert_eq!(
        got,
        vec![
            answered("A example.test", "NOERROR", 1, Fault::None, 0, 3),
            answered("AAAA example.test", "NOERROR", 1, Fault::None, 1, 2),
            answered("AAAA alias.test", "NOERROR", 1, Fault::None, 4, 5),
        ]
    );
}

#[test]
fn tcp_messages_split_anyhow_pair_alike() {
    let records = records(TCP_KEEPOPEN);
    let expected = vec![
        answered("A example.test", "NOERROR", 1, Fault::None, 0, 1),
        answered("AAAA example.test", "NOERROR", 1, Fault::None, 2, 3),
        answered("A nothing.blocked.test", "NXDOMAIN", 0, Fault::None, 4, 5),
    ];
    let whole = replay_whole(&mut tcp(), &records);
    assert_eq!(whole.desyncs, 0);
    assert_eq!(summary(&whole), expected);
    assert_eq!(
        replay_bytewise(&mut tcp(), &records).exchanges,
        whole.exchanges
    );
    for seed in 0..20 {
        assert_eq!(
            replay_random(&mut tcp(), &records, seed).exchanges,
            whole.exchanges
        );
    }
    for at in 1..80 {
        assert_eq!(
            replay_split_at(&mut tcp(), &records, at).exchanges,
            whole.exchanges
        );
    }
    let coalesced = replay_whole(&mut tcp(), &coalesce(&records));
    assert_eq!(
        without_times(&coalesced.exchanges),
        without_times(&whole.exchanges)
    );
}

#[test]
fn tcp_gaps_inside_a_message_lose_only_that_message() {
    let records = records(TCP_KEEPOPEN);
    let mut parser = tcp();
    let mut out = ParseOutput::default();
    for (index, record) in records.iter().enumerate() {
        if index == 3 {
            // The AAAA answer: its prefix and header arrive, the rest not.
            parser.on_data(record.side, record.ts_ns, &record.data[..14], &mut out);
            parser.on_gap(record.side, record.ts_ns, record.data.len() - 14, &mut out);
        } else {
            parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
        }
    }
    parser.on_close(99_000, &mut out);
    assert_eq!(out.desyncs, 0);
    let names: Vec<_> = out
        .exchanges
        .iter()
        .map(|e| (e.name.as_str(), e.incomplete))
        .collect();
    assert_eq!(
        names,
        [
            ("A example.test", false),
            ("A nothing.blocked.test", false),
            ("AAAA example.test", true)
        ]
    );

    // A gap running past the message loses our place.
    let mut parser = tcp();
    let mut out = ParseOutput::default();
    parser.on_data(Side::Client, 1, &records[0].data[..10], &mut out);
    parser.on_gap(Side::Client, 1, 1000, &mut out);
    assert_eq!(out.desyncs, 1);
    parser.on_data(Side::Client, ts(1), &records[2].data, &mut out);
    parser.on_data(Side::Server, ts(2), &records[3].data, &mut out);
    assert_eq!(
        summary(&out),
        vec![answered(
            "AAAA example.test",
            "NOERROR",
            1,
            Fault::None,
            1,
            2
        )]
    );
}

#[test]
fn unanswered_queries_are_incomplete_at_close() {
    let records = records(PARALLEL);
    let mut parser = udp();
    let mut out = ParseOutput::default();
    for record in &records[..3] {
        parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
    }
    parser.on_close(99_000, &mut out);
    assert_eq!(out.exchanges.len(), 2);
    let open = &out.exchanges[1];
    assert_eq!(open.name, "AAAA example.test");
    assert!(open.incomplete);
    assert_eq!(
        (open.start_ns, open.end_ns, open.fault),
        (ts(1), 99_000, Fault::None)
    );
    assert_eq!(attr(open, "dns.response.code"), None);
}

#[test]
fn retransmissions_keep_the_first_start() {
    let records = records(A);
    let mut parser = udp();
    let mut out = ParseOutput::default();
    parser.on_data(Side::Client, 1, &records[0].data, &mut out);
    parser.on_data(Side::Client, 2, &records[0].data, &mut out);
    parser.on_data(Side::Server, 3, &records[1].data, &mut out);
    parser.on_data(Side::Server, 4, &records[1].data, &mut out);
    parser.on_close(5, &mut out);
    let times: Vec<_> = out
        .exchanges
        .iter()
        .map(|e| (e.start_ns, e.end_ns))
        .collect();
    assert_eq!(times, [(1, 3)]);
}

#[test]
fn responses_to_other_questions_do_not_pair() {
    let records = records(PARALLEL);
    // The answer for id 0x1234 with the AAAA query's question.
    let mut forged = records[3].data.clone();
    forged[..2].copy_from_slice(&0x1234_u16.to_be_bytes());
    let mut parser = udp();
    let mut out = ParseOutput::default();
    parser.on_data(Side::Client, 1, &records[0].data, &mut out);
    parser.on_data(Side::Server, 2, &forged, &mut out);
    assert!(out.exchanges.is_empty());
    parser.on_data(Side::Server, 3, &records[2].data, &mut out);
    assert_eq!(out.exchanges.len(), 1);
}

#[test]
fn truncated_datagrams() {
    let records = records(CNAME);
    let (query, response) = (&records[0].data, &records[1].data);
    // A response captured only in part (inside its answer) still answers:
    // header and question come first.
    for cut in [40, 50, response.len() - 1] {
        let mut parser = udp();
        let mut out = ParseOutput::default();
        parser.on_data(Side::Client, ts(0), query, &mut out);
        parser.on_data(Side::Server, ts(1), &response[..cut], &mut out);
        assert_eq!(
            summary(&out),
            vec![answered("A alias.test", "NOERROR", 1, Fault::None, 0, 1)],
            "cut {cut}"
        );
    }
    // Cut inside the question: nothing to report, and the query stays open.
    let mut parser = udp();
    let mut out = ParseOutput::default();
    parser.on_data(Side::Client, 1, query, &mut out);
    parser.on_data(Side::Server, 2, &response[..20], &mut out);
    assert!(out.exchanges.is_empty());
    assert_eq!(out.desyncs, 1);
    // A cut query is not a query.
    for cut in 0..query.len() {
        let mut parser = udp();
        let mut out = ParseOutput::default();
        parser.on_data(Side::Client, 1, &query[..cut], &mut out);
        parser.on_data(Side::Server, 2, response, &mut out);
        parser.on_close(3, &mut out);
        assert!(out.exchanges.is_empty(), "cut {cut}");
        assert_eq!(out.desyncs, 1, "cut {cut}");
    }
}

/// A query for `name` (wire form after the header), id 7.
fn query_with_name(name: &[u8]) -> Vec<u8> {
    let mut query = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(name);
    query.extend_from_slice(&[0, 1, 0, 1]);
    query
}

#[test]
fn hostile_names_are_rejected() {
    let mut too_long = Vec::new();
    for _ in 0..5 {
        too_long.push(63);
        too_long.extend_from_slice(&[b'a'; 63]);
    }
    too_long.push(0);
    let hostile: [&[u8]; 7] = [
        // Pointer to itself.
        &[0xc0, 12],
        // Pointer forwards.
        &[0xc0, 14, 1, b'a', 0],
        // Pointer into the header.
        &[0xc0, 2],
        // A label, then a pointer back to it: a cycle.
        &[1, b'a', 0xc0, 12],
        // Obsolete extended label type.
        &[0x41, 0, 0],
        // Label past the end.
        &[20, b'a'],
        &too_long,
    ];
    for name in hostile {
        let query = query_with_name(name);
        assert_eq!(detect(&query), None, "{name:?}");
        let mut out = ParseOutput::default();
        let mut parser = udp();
        parser.on_data(Side::Client, 1, &query, &mut out);
        parser.on_close(2, &mut out);
        assert!(out.exchanges.is_empty(), "{name:?}");
    }
    // Sane names, escaped as dig prints them.
    let query = query_with_name(b"\x03a.b\x03c d\x01\x01\x00");
    let mut out = ParseOutput::default();
    let mut parser = udp();
    parser.on_data(Side::Client, 1, &query, &mut out);
    parser.on_close(2, &mut out);
    assert_eq!(out.exchanges[0].name, "A a\\.b.c\\032d.\\001");
    let mut out = ParseOutput::default();
    let mut parser = udp();
    parser.on_data(Side::Client, 1, &query_with_name(b"\x00"), &mut out);
    parser.on_close(2, &mut out);
    assert_eq!(out.exchanges[0].name, "A .");
}

#[test]
fn huge_gaps_desync_without_panicking() {
    let records = records(TCP_KEEPOPEN);
    for side in [Side::Client, Side::Server] {
        let mut parser = tcp();
        let mut out = ParseOutput::default();
        parser.on_data(Side::Client, 1, &records[0].data, &mut out);
        parser.on_data(Side::Server, 1, &records[1].data[..20], &mut out);
        parser.on_data(Side::Client, 1, &records[2].data[..20], &mut out);
        parser.on_gap(side, 2, usize::MAX, &mut out);
        assert_eq!(out.desyncs, 1);
        parser.on_gap(side, 2, usize::MAX, &mut out);
        assert_eq!(out.desyncs, 2);
    }
    let mut parser = udp();
    let mut out = ParseOutput::default();
    parser.on_gap(Side::Server, 2, usize::MAX, &mut out);
    assert_eq!(out.desyncs, 1);
}

#[test]
fn pending_queries_are_bounded() {
    let mut parser = udp();
    let mut out = ParseOutput::default();
    let mut query = records(A)[0].data.clone();
    for id in 0..300_u16 {
        query[..2].copy_from_slice(&id.to_be_bytes());
        parser.on_data(Side::Client, 1, &query, &mut out);
    }
    assert_eq!(out.desyncs, 300 - MAX_PENDING as u64);
    parser.on_close(2, &mut out);
    assert_eq!(out.exchanges.len(), MAX_PENDING);
}

#[test]
fn garbage_never_makes_exchanges() {
    let mut rng = fastrand::Rng::with_seed(9);
    for round in 0..2000 {
        let mut parser = if round % 2 == 0 { udp() } else { tcp() };
        let mut out = ParseOutput::default();
        for step in 0..10 {
            let side = if rng.bool() {
                Side::Client
            } else {
                Side::Server
            };
            let len = rng.usize(0..120);
            let mut data = garbage(&mut rng, len, b"\x00\x01\xc0\x0c\x07");
            // Some with a plausible header, to get deeper.
            if data.len() >= 12 && rng.bool() {
                data[2..12].copy_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            }
            parser.on_data(side, step, &data, &mut out);
            if rng.u8(..) < 10 {
                parser.on_gap(side, step, rng.usize(0..1000), &mut out);
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
fn mutated_datagrams_never_panic() {
    let mut rng = fastrand::Rng::with_seed(13);
    for capture in UDP_CAPTURES.into_iter().chain([TCP_KEEPOPEN]) {
        let records = records(capture);
        for _ in 0..300 {
            let mut mutated = records.clone();
            for _ in 0..rng.usize(1..4) {
                let record = &mut mutated[rng.usize(..records.len())];
                let at = rng.usize(..record.data.len());
                record.data[at] = rng.u8(..);
            }
            replay_whole(&mut udp(), &mutated);
            replay_random(&mut tcp(), &mutated, rng.u64(..));
        }
    }
}

#[test]
fn detects_queries_and_responses() {
    for capture in UDP_CAPTURES {
        for record in records(capture) {
            assert_eq!(detect(&record.data), Some(record.side));
        }
    }
    for record in records(TCP_KEEPOPEN) {
        assert_eq!(detect_tcp(&record.data), Some(record.side));
        assert_eq!(detect(&record.data), None);
    }
    for other in [
        &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"get foo\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        b"",
    ] {
        assert_eq!(detect(other), None, "{}", other.escape_ascii());
        assert_eq!(detect_tcp(other), None, "{}", other.escape_ascii());
    }
}
