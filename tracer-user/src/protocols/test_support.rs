//! Test support for the protocol parsers: recorded connections (see
//! `testdata/README.md`) replayed through a parser in many cuts, and helpers
//! to look into the exchanges that come out.
//!
//! A capture file is the sequence of reads the recording proxy saw: a side
//! tag (`C` client→server, `S` server→client), a big-endian u32 length, then
//! the bytes of one read or one datagram.

use crate::protocols::{AttrValue, Exchange, ParseOutput, Parser, Side};

#[derive(Clone, Debug)]
pub struct Record {
    pub side: Side,
    pub ts_ns: u64,
    pub data: Vec<u8>,
}

/// Record `i` happens at `(i + 1) * 1000` ns, so expected timestamps can be
/// written as record indexes.
pub fn ts(index: usize) -> u64 {
    (index as u64 + 1) * 1000
}

pub fn records(capture: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut rest = capture;
    while let [tag, a, b, c, d, tail @ ..] = rest {
        let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        let side = match tag {
            b'C' => Side::Client,
            b'S' => Side::Server,
            other => panic!("bad capture tag {other}"),
        };
        let (data, next) = tail.split_at(len);
        out.push(Record {
            side,
            ts_ns: ts(out.len()),
            data: data.to_vec(),
        });
        rest = next;
    }
    assert!(rest.is_empty(), "truncated capture");
    out
}

/// The end of the replay: after the last record.
pub fn close_ts(records: &[Record]) -> u64 {
    records.last().map_or(0, |record| record.ts_ns + 1000)
}

/// Feeds every record cut into pieces of the lengths `cut` returns for it
/// (record index, record length), then closes at `close_ns`. All pieces of a
/// record share its timestamp, so the result must not depend on the cutting.
fn feed_cut(
    parser: &mut impl Parser,
    records: &[Record],
    mut cut: impl FnMut(usize, usize) -> Vec<usize>,
    close_ns: u64,
) -> ParseOutput {
    let mut out = ParseOutput::default();
    for (index, record) in records.iter().enumerate() {
        let mut rest = record.data.as_slice();
        for piece in cut(index, rest.len()) {
            let (head, tail) = rest.split_at(piece.min(rest.len()));
            parser.on_data(record.side, record.ts_ns, head, &mut out);
            rest = tail;
        }
        if !rest.is_empty() {
            parser.on_data(record.side, record.ts_ns, rest, &mut out);
        }
    }
    parser.on_close(close_ns, &mut out);
    out
}

/// Feeds every record, cut into pieces by `cut` (piece lengths), then closes.
pub fn replay_with<P: Parser>(
    parser: &mut P,
    records: &[Record],
    mut cut: impl FnMut(usize) -> Vec<usize>,
) -> ParseOutput {
    feed_cut(parser, records, |_, len| cut(len), close_ts(records))
}

pub fn replay_whole<P: Parser>(parser: &mut P, records: &[Record]) -> ParseOutput {
    replay_with(parser, records, |len| vec![len])
}

pub fn replay_bytewise<P: Parser>(parser: &mut P, records: &[Record]) -> ParseOutput {
    replay_with(parser, records, |len| vec![1; len])
}

/// Every record cut in two at `at` (when longer).
pub fn replay_split_at<P: Parser>(parser: &mut P, records: &[Record], at: usize) -> ParseOutput {
    replay_with(parser, records, |len| {
        if len > at {
            vec![at, len - at]
        } else {
            vec![len]
        }
    })
}

/// Every record cut into random pieces, mostly small.
pub fn replay_random<P: Parser>(parser: &mut P, records: &[Record], seed: u64) -> ParseOutput {
    let mut rng = fastrand::Rng::with_seed(seed);
    replay_with(parser, records, |mut len| {
        let mut pieces = Vec::new();
        while len > 0 {
            let max = if rng.bool() { 8 } else { 4096 };
            let piece = rng.usize(1..=max).min(len);
            pieces.push(piece);
            len -= piece;
        }
        pieces
    })
}

/// Consecutive records of one side merged into one read (at the first one's
/// time): many messages per call.
pub fn coalesce(records: &[Record]) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for record in records {
        match out.last_mut() {
            Some(last) if last.side == record.side => last.data.extend_from_slice(&record.data),
            _ => out.push(record.clone()),
        }
    }
    out
}

pub fn attr<'a>(exchange: &'a Exchange, key: &str) -> Option<&'a AttrValue> {
    exchange
        .attributes
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, value)| value)
}

pub fn attr_str<'a>(exchange: &'a Exchange, key: &str) -> Option<&'a str> {
    match attr(exchange, key) {
        Some(AttrValue::Str(text)) => Some(text),
        _ => None,
    }
}

pub fn attr_int(exchange: &Exchange, key: &str) -> Option<i64> {
    match attr(exchange, key) {
        Some(AttrValue::Int(value)) => Some(*value),
        _ => None,
    }
}

/// Everything a span would show of these exchanges, for secret checks.
pub fn visible_text(exchanges: &[Exchange]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for exchange in exchanges {
        text.push_str(&exchange.name);
        text.push('\n');
        for (key, value) in &exchange.attributes {
            writeln!(text, "{key}={value:?}").unwrap();
        }
    }
    text
}

/// Exchanges with timestamps cleared, to compare replays that changed them.
pub fn without_times(exchanges: &[Exchange]) -> Vec<Exchange> {
    exchanges
        .iter()
        .cloned()
        .map(|mut exchange| {
            exchange.start_ns = 0;
            exchange.end_ns = 0;
            exchange
        })
        .collect()
}

/// Random bytes, biased towards protocol punctuation so that some of it gets
/// past the first checks.
pub fn garbage(rng: &mut fastrand::Rng, len: usize, alphabet: &[u8]) -> Vec<u8> {
    (0..len)
        .map(|_| {
            if rng.bool() {
                alphabet[rng.usize(..alphabet.len())]
            } else {
                rng.u8(..)
            }
        })
        .collect()
}

// The `feed_*` replays close at `ts(records.len())`, the time after as many
// records as were fed (the `replay_*` ones close after the last record's
// time): the SQL tests feed tails of captures and expect this.

fn feed_close_ts(records: &[Record]) -> u64 {
    ts(records.len())
}

/// Feeds every record in one call, then closes at a later time.
pub fn feed_whole(parser: &mut impl Parser, records: &[Record]) -> ParseOutput {
    feed_cut(parser, records, |_, len| vec![len], feed_close_ts(records))
}

/// Feeds every record one byte per call.
pub fn feed_bytewise(parser: &mut impl Parser, records: &[Record]) -> ParseOutput {
    feed_cut(
        parser,
        records,
        |_, len| vec![1; len],
        feed_close_ts(records),
    )
}

/// Feeds every record in random pieces of `1..=max_piece` bytes.
pub fn feed_random(
    parser: &mut impl Parser,
    records: &[Record],
    seed: u64,
    max_piece: usize,
) -> ParseOutput {
    let mut rng = fastrand::Rng::with_seed(seed);
    let close_ns = feed_close_ts(records);
    feed_cut(
        parser,
        records,
        |_, len| {
            let mut pieces = Vec::new();
            let mut left = len;
            while left > 0 {
                let piece = rng.usize(1..=max_piece).min(left);
                pieces.push(piece);
                left -= piece;
            }
            pieces
        },
        close_ns,
    )
}

/// Feeds the records, but replaces `gap_len` bytes starting `gap_at` bytes
/// into record `gap_record` by a gap.
pub fn feed_with_gap(
    parser: &mut impl Parser,
    records: &[Record],
    gap_record: usize,
    gap_at: usize,
    gap_len: usize,
) -> ParseOutput {
    let mut out = ParseOutput::default();
    for (index, record) in records.iter().enumerate() {
        if index == gap_record {
            let (before, rest) = record.data.split_at(gap_at);
            let after = &rest[gap_len..];
            parser.on_data(record.side, record.ts_ns, before, &mut out);
            parser.on_gap(record.side, record.ts_ns, gap_len, &mut out);
            parser.on_data(record.side, record.ts_ns, after, &mut out);
        } else {
            parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
        }
    }
    parser.on_close(feed_close_ts(records), &mut out);
    out
}

/// A compact, comparable summary of an exchange: name, text, rows, error.
pub fn db_summary(exchange: &Exchange) -> (String, Option<String>, Option<i64>, Option<String>) {
    (
        exchange.name.to_string(),
        attr_str(exchange, "db.query.text").map(str::to_owned),
        attr_int(exchange, "db.response.returned_rows"),
        attr_str(exchange, "db.response.status_code").map(str::to_owned),
    )
}

/// Every attribute value and name of every exchange, as one string (for
/// checking that something never appears anywhere).
pub fn everything(exchanges: &[Exchange]) -> String {
    format!("{exchanges:?}")
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Feeds a capture with random damage: flipped bytes, gaps, reordered
/// cutting. Returns what came out; the point is that nothing panics.
pub fn feed_damaged(parser: &mut impl Parser, records: &[Record], seed: u64) -> ParseOutput {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = ParseOutput::default();
    for record in records {
        let mut data = record.data.clone();
        if rng.u8(..) < 40 && !data.is_empty() {
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..data.len());
                data[at] = rng.u8(..);
            }
        }
        let mut rest = &data[..];
        while !rest.is_empty() {
            let piece = rng.usize(1..=rest.len().min(4096));
            let (now, later) = rest.split_at(piece);
            if rng.u8(..) < 8 {
                parser.on_gap(record.side, record.ts_ns, now.len(), &mut out);
            } else {
                parser.on_data(record.side, record.ts_ns, now, &mut out);
            }
            rest = later;
        }
    }
    parser.on_close(feed_close_ts(records), &mut out);
    out
}
