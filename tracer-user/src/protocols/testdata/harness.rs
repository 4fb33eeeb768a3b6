// Replaying recorded connections into parsers (tests only). Each protocol's
// tests `include!` this file: protocols/mod.rs is shared with the other
// protocols' authors, so it cannot be declared there once.
//
// A capture file (see README.md here) is the sequence of reads the
// recording proxy saw: a side tag (`C` client→server, `S` server→client), a
// big-endian u32 length, then the bytes of one read or one datagram.

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

/// Feeds every record, cut into pieces by `cut` (piece lengths), then closes.
pub fn replay_with<P: Parser>(
    parser: &mut P,
    records: &[Record],
    mut cut: impl FnMut(usize) -> Vec<usize>,
) -> ParseOutput {
    let mut out = ParseOutput::default();
    for record in records {
        let mut rest = record.data.as_slice();
        for piece in cut(rest.len()) {
            let (head, tail) = rest.split_at(piece.min(rest.len()));
            parser.on_data(record.side, record.ts_ns, head, &mut out);
            rest = tail;
        }
        if !rest.is_empty() {
            parser.on_data(record.side, record.ts_ns, rest, &mut out);
        }
    }
    parser.on_close(close_ts(records), &mut out);
    out
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
