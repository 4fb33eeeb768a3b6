//! Replaying recorded connections (see `testdata/README.md`) through a
//! parser in different ways.

use crate::protocols::{Exchange, ParseOutput, Parser, Side};

/// One recorded read: what one side sent, as the recording proxy saw it.
#[derive(Clone, Copy, Debug)]
pub struct Chunk {
    pub side: Side,
    pub data: &'static [u8],
    /// Timestamp given to the calls carrying this chunk.
    pub ts_ns: u64,
}

/// Timestamp of the `index`th recorded chunk.
pub fn chunk_ts(index: usize) -> u64 {
    (index as u64 + 1) * 1000
}

/// Parses a capture: records of a side byte (`C` or `S`), a big-endian u32
/// length and that many bytes.
pub fn transcript(bytes: &'static [u8]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let side = match rest[0] {
            b'C' => Side::Client,
            b'S' => Side::Server,
            other => panic!("bad side byte {other}"),
        };
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let data = &rest[5..5 + len];
        chunks.push(Chunk {
            side,
            data,
            ts_ns: chunk_ts(chunks.len()),
        });
        rest = &rest[5 + len..];
    }
    chunks
}

/// Feeds every chunk in one call, then closes at a later time.
pub fn feed_whole(parser: &mut impl Parser, chunks: &[Chunk]) -> ParseOutput {
    feed_split(parser, chunks, |_, len| vec![len])
}

/// Feeds every chunk cut into pieces of the lengths `split` returns for it
/// (chunk index, chunk length); all pieces of a chunk share its timestamp,
/// so the result must not depend on the cutting.
pub fn feed_split(
    parser: &mut impl Parser,
    chunks: &[Chunk],
    mut split: impl FnMut(usize, usize) -> Vec<usize>,
) -> ParseOutput {
    let mut out = ParseOutput::default();
    for (index, chunk) in chunks.iter().enumerate() {
        let mut rest = chunk.data;
        for piece in split(index, chunk.data.len()) {
            let (now, later) = rest.split_at(piece.min(rest.len()));
            parser.on_data(chunk.side, chunk.ts_ns, now, &mut out);
            rest = later;
        }
        if !rest.is_empty() {
            parser.on_data(chunk.side, chunk.ts_ns, rest, &mut out);
        }
    }
    parser.on_close(close_ts(chunks), &mut out);
    out
}

/// Feeds every chunk one byte per call.
pub fn feed_bytewise(parser: &mut impl Parser, chunks: &[Chunk]) -> ParseOutput {
    feed_split(parser, chunks, |_, len| vec![1; len])
}

/// Feeds every chunk in random pieces of `1..=max_piece` bytes.
pub fn feed_random(
    parser: &mut impl Parser,
    chunks: &[Chunk],
    seed: u64,
    max_piece: usize,
) -> ParseOutput {
    let mut rng = fastrand::Rng::with_seed(seed);
    feed_split(parser, chunks, |_, len| {
        let mut pieces = Vec::new();
        let mut left = len;
        while left > 0 {
            let piece = rng.usize(1..=max_piece).min(left);
            pieces.push(piece);
            left -= piece;
        }
        pieces
    })
}

/// Feeds the chunks, but replaces `gap_len` bytes starting `gap_at` bytes
/// into chunk `gap_chunk` by a gap.
pub fn feed_with_gap(
    parser: &mut impl Parser,
    chunks: &[Chunk],
    gap_chunk: usize,
    gap_at: usize,
    gap_len: usize,
) -> ParseOutput {
    let mut out = ParseOutput::default();
    for (index, chunk) in chunks.iter().enumerate() {
        if index == gap_chunk {
            let (before, rest) = chunk.data.split_at(gap_at);
            let after = &rest[gap_len..];
            parser.on_data(chunk.side, chunk.ts_ns, before, &mut out);
            parser.on_gap(chunk.side, chunk.ts_ns, gap_len, &mut out);
            parser.on_data(chunk.side, chunk.ts_ns, after, &mut out);
        } else {
            parser.on_data(chunk.side, chunk.ts_ns, chunk.data, &mut out);
        }
    }
    parser.on_close(close_ts(chunks), &mut out);
    out
}

pub fn close_ts(chunks: &[Chunk]) -> u64 {
    chunk_ts(chunks.len())
}

/// The string attribute `key` of an exchange.
pub fn attr_str<'e>(exchange: &'e Exchange, key: &str) -> Option<&'e str> {
    exchange.attributes.iter().find_map(|(k, v)| match v {
        crate::protocols::AttrValue::Str(s) if *k == key => Some(s.as_str()),
        _ => None,
    })
}

/// The integer attribute `key` of an exchange.
pub fn attr_int(exchange: &Exchange, key: &str) -> Option<i64> {
    exchange.attributes.iter().find_map(|(k, v)| match v {
        crate::protocols::AttrValue::Int(i) if *k == key => Some(*i),
        _ => None,
    })
}

/// A compact, comparable summary of an exchange: name, text, rows, error.
pub fn summary(exchange: &Exchange) -> (String, Option<String>, Option<i64>, Option<String>) {
    (
        exchange.name.clone(),
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
pub fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Feeds a capture with random damage: flipped bytes, gaps, reordered
/// cutting. Returns what came out; the point is that nothing panics.
pub fn feed_damaged(parser: &mut impl Parser, chunks: &[Chunk], seed: u64) -> ParseOutput {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = ParseOutput::default();
    for chunk in chunks {
        let mut data = chunk.data.to_vec();
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
                parser.on_gap(chunk.side, chunk.ts_ns, now.len(), &mut out);
            } else {
                parser.on_data(chunk.side, chunk.ts_ns, now, &mut out);
            }
            rest = later;
        }
    }
    parser.on_close(close_ts(chunks), &mut out);
    out
}
