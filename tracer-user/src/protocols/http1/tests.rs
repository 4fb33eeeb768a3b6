//! Test support: real traffic captured on loopback (see
//! `testdata/http1/README.md`), replayed through the parser in many cuts.

mod captures;
mod robustness;
mod semantics;

use crate::protocols::{AttrValue, Exchange, Fault, ParseOutput, Parser, ParserOptions, Side};

use super::Http1Parser;
pub(super) use crate::protocols::test_support::attr;

/// One recorded connection: what each side sent, and the reads the
/// recording proxy saw, in order (`c 88` / `s 254` lines; a read may list
/// several segments, `xN` being `N` bytes `x` left out of the `.bin` file:
/// see `testdata/http1/README.md`).
#[derive(Clone, Copy)]
pub(super) struct Capture {
    pub name: &'static str,
    /// The stored bytes, without the elided runs.
    client: &'static [u8],
    server: &'static [u8],
    events: &'static str,
}

macro_rules! capture {
    ($name:literal) => {
        Capture {
            name: $name,
            client: include_bytes!(concat!("../testdata/http1/", $name, ".client.bin")),
            server: include_bytes!(concat!("../testdata/http1/", $name, ".server.bin")),
            events: include_str!(concat!("../testdata/http1/", $name, ".events")),
        }
    };
}

pub(super) const CHUNKED: Capture = capture!("chunked");
pub(super) const CLOSE_DELIMITED: Capture = capture!("close_delimited");
pub(super) const CONTINUE_100: Capture = capture!("continue_100");
pub(super) const GET_SIMPLE: Capture = capture!("get_simple");
pub(super) const GZIP_CHUNKED: Capture = capture!("gzip_chunked");
pub(super) const HEAD: Capture = capture!("head");
pub(super) const HEAD_THEN_GET: Capture = capture!("head_then_get_nginx");
pub(super) const HTTP10_CLOSE: Capture = capture!("http10_close");
pub(super) const KEEPALIVE: Capture = capture!("keepalive");
pub(super) const NO_CONTENT_503: Capture = capture!("no_content_503");
pub(super) const NOT_FOUND: Capture = capture!("not_found");
pub(super) const NOT_MODIFIED: Capture = capture!("not_modified");
pub(super) const PIPELINED: Capture = capture!("pipelined");
pub(super) const PIPELINED_POST: Capture = capture!("pipelined_post");
pub(super) const POST: Capture = capture!("post");
pub(super) const POST_CHUNKED: Capture = capture!("post_chunked");
pub(super) const POST_CHUNKED_EARLY_ANSWER: Capture = capture!("post_chunked_early_answer");
pub(super) const POST_EARLY_ANSWER: Capture = capture!("post_early_answer");

pub(super) const ALL_CAPTURES: [Capture; 18] = [
    CHUNKED,
    CLOSE_DELIMITED,
    CONTINUE_100,
    GET_SIMPLE,
    GZIP_CHUNKED,
    HEAD,
    HEAD_THEN_GET,
    HTTP10_CLOSE,
    KEEPALIVE,
    NO_CONTENT_503,
    NOT_FOUND,
    NOT_MODIFIED,
    PIPELINED,
    PIPELINED_POST,
    POST,
    POST_CHUNKED,
    POST_CHUNKED_EARLY_ANSWER,
    POST_EARLY_ANSWER,
];

/// One call into the parser, before timestamps are given out.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Piece {
    Data(Side, Vec<u8>),
    Gap(Side, usize),
}

impl Piece {
    fn side(&self) -> Side {
        match self {
            Piece::Data(side, _) | Piece::Gap(side, _) => *side,
        }
    }

    fn len(&self) -> usize {
        match self {
            Piece::Data(_, bytes) => bytes.len(),
            Piece::Gap(_, len) => *len,
        }
    }
}

/// The byte the elided runs of a capture are made of (the uploads were
/// files of `x`).
const ELIDED_BYTE: u8 = b'x';

impl Capture {
    /// The reads as the proxy saw them, elided runs filled in again.
    pub fn pieces(&self) -> Vec<Piece> {
        let (mut client, mut server) = (self.client, self.server);
        let mut pieces = Vec::new();
        for line in self.events.lines() {
            let mut segments = line.split(' ');
            let (side, source) = match segments.next().unwrap() {
                "c" => (Side::Client, &mut client),
                "s" => (Side::Server, &mut server),
                other => panic!("bad event tag {other}"),
            };
            let mut read = Vec::new();
            for segment in segments {
                if let Some(elided) = segment.strip_prefix('x') {
                    let len: usize = elided.parse().unwrap();
                    read.resize(read.len() + len, ELIDED_BYTE);
                } else {
                    let len: usize = segment.parse().unwrap();
                    let (now, rest) = source.split_at(len);
                    *source = rest;
                    read.extend_from_slice(now);
                }
            }
            assert!(!read.is_empty(), "{}: empty read {line:?}", self.name);
            pieces.push(Piece::Data(side, read));
        }
        assert!(
            client.is_empty() && server.is_empty(),
            "{}: events do not cover the capture",
            self.name
        );
        pieces
    }

    /// Every byte `side` sent, elided runs included.
    pub fn bytes(&self, side: Side) -> Vec<u8> {
        self.pieces()
            .into_iter()
            .filter(|piece| piece.side() == side)
            .flat_map(|piece| match piece {
                Piece::Data(_, bytes) => bytes,
                Piece::Gap(..) => unreachable!("captures hold no gaps"),
            })
            .collect()
    }

    /// Bytes both sides sent, elided runs included.
    pub fn len(&self) -> usize {
        self.pieces().iter().map(Piece::len).sum()
    }
}

/// Cuts every data piece into pieces of at most `size` bytes.
pub(super) fn split_every(pieces: Vec<Piece>, size: usize) -> Vec<Piece> {
    pieces
        .into_iter()
        .flat_map(|piece| match piece {
            Piece::Data(side, bytes) => bytes
                .chunks(size)
                .map(|c| Piece::Data(side, c.to_vec()))
                .collect(),
            gap @ Piece::Gap(..) => vec![gap],
        })
        .collect()
}

/// Cuts every data piece into random pieces of 1 to `max` bytes.
pub(super) fn split_random(pieces: Vec<Piece>, seed: u64, max: usize) -> Vec<Piece> {
    let mut rng = fastrand::Rng::with_seed(seed);
    pieces
        .into_iter()
        .flat_map(|piece| match piece {
            Piece::Data(side, bytes) => {
                let mut out = Vec::new();
                let mut rest = bytes.as_slice();
                while !rest.is_empty() {
                    let (now, later) = rest.split_at(rng.usize(1..=max).min(rest.len()));
                    out.push(Piece::Data(side, now.to_vec()));
                    rest = later;
                }
                out
            }
            gap @ Piece::Gap(..) => vec![gap],
        })
        .collect()
}

/// Splits the piece holding `side`'s byte `offset` so a piece starts there.
pub(super) fn split_at(pieces: Vec<Piece>, side: Side, offset: usize) -> Vec<Piece> {
    let mut seen = 0;
    let mut out = Vec::new();
    for piece in pieces {
        let len = piece.len();
        let on_side = piece.side() == side;
        match piece {
            Piece::Data(s, bytes) if on_side && seen < offset && offset < seen + len => {
                let (a, b) = bytes.split_at(offset - seen);
                out.push(Piece::Data(s, a.to_vec()));
                out.push(Piece::Data(s, b.to_vec()));
            }
            other => out.push(other),
        }
        if on_side {
            seen += len;
        }
    }
    out
}

/// What the tracer gets from the kernel: of each read (syscall) longer than
/// `max_payload`, the first `max_payload` bytes, then a gap for the rest.
pub(super) fn truncate_reads(pieces: Vec<Piece>, max_payload: usize) -> Vec<Piece> {
    pieces
        .into_iter()
        .flat_map(|piece| match piece {
            Piece::Data(side, mut bytes) if bytes.len() > max_payload => {
                let missing = bytes.len() - max_payload;
                bytes.truncate(max_payload);
                vec![Piece::Data(side, bytes), Piece::Gap(side, missing)]
            }
            other => vec![other],
        })
        .collect()
}

/// Replaces `side`'s bytes in `range` with gaps (one per run of pieces).
pub(super) fn with_gap(
    pieces: Vec<Piece>,
    side: Side,
    range: std::ops::Range<usize>,
) -> Vec<Piece> {
    let pieces = split_at(split_at(pieces, side, range.start), side, range.end);
    let mut seen = 0;
    let mut out = Vec::new();
    for piece in pieces {
        let len = piece.len();
        let on_side = piece.side() == side;
        if on_side && seen >= range.start && seen + len <= range.end {
            match out.last_mut() {
                Some(Piece::Gap(s, gap)) if *s == side => *gap += len,
                _ => out.push(Piece::Gap(side, len)),
            }
        } else {
            out.push(piece);
        }
        if on_side {
            seen += len;
        }
    }
    out
}

/// Pieces with timestamps, fed to a parser.
pub(super) struct Replay {
    pub calls: Vec<(u64, Piece)>,
    pub close_ns: u64,
}

pub(super) const TS_STEP: u64 = 1_000;

impl Replay {
    pub fn new(pieces: Vec<Piece>) -> Self {
        let calls: Vec<(u64, Piece)> = pieces
            .into_iter()
            .zip(1..)
            .map(|(piece, i)| (i * TS_STEP, piece))
            .collect();
        let close_ns = (calls.len() as u64 + 1) * TS_STEP;
        Replay { calls, close_ns }
    }

    /// Timestamp of the call that moved `side`'s byte `offset`.
    pub fn ts_of(&self, side: Side, offset: usize) -> u64 {
        let mut seen = 0;
        for (ts, piece) in &self.calls {
            if piece.side() != side {
                continue;
            }
            if offset < seen + piece.len() {
                return *ts;
            }
            seen += piece.len();
        }
        panic!("offset {offset} past the {side:?} stream");
    }

    pub fn run(&self, options: ParserOptions, close: bool) -> ParseOutput {
        let mut parser = Http1Parser::new(options);
        let mut out = ParseOutput::default();
        for (ts, piece) in &self.calls {
            match piece {
                Piece::Data(side, bytes) => parser.on_data(*side, *ts, bytes, &mut out),
                Piece::Gap(side, len) => parser.on_gap(*side, *ts, *len, &mut out),
            }
        }
        if close {
            parser.on_close(self.close_ns, &mut out);
        }
        out
    }
}

/// What one exchange must be.
#[derive(Clone, Copy, Debug)]
pub(super) struct Want {
    pub name: &'static str,
    /// Text at the request's first byte in the client stream (first match
    /// at or after the previous request's).
    pub request_at: &'static str,
    pub status: Option<u16>,
    /// `None`: `http.request.body.size` left out.
    pub request_body: Option<u64>,
    pub response_body: Option<u64>,
    pub version: &'static str,
    /// Last byte of the response in the server stream; `None`: the close.
    pub response_end: Option<usize>,
}

impl Want {
    pub const fn ok(
        name: &'static str,
        request_at: &'static str,
        status: u16,
        response_body: u64,
        response_end: usize,
    ) -> Self {
        Want {
            name,
            request_at,
            status: Some(status),
            request_body: Some(0),
            response_body: Some(response_body),
            version: "1.1",
            response_end: Some(response_end),
        }
    }

    pub const fn request_body(mut self, size: u64) -> Self {
        self.request_body = Some(size);
        self
    }

    pub const fn request_body_unknown(mut self) -> Self {
        self.request_body = None;
        self
    }

    pub const fn version(mut self, version: &'static str) -> Self {
        self.version = version;
        self
    }
}

pub(super) fn int_attr(exchange: &Exchange, key: &str) -> Option<i64> {
    match attr(exchange, key) {
        Some(AttrValue::Int(v)) => Some(*v),
        None => None,
        other => panic!("{key} is {other:?}"),
    }
}

pub(super) fn str_attr<'a>(exchange: &'a Exchange, key: &str) -> Option<&'a str> {
    match attr(exchange, key) {
        Some(AttrValue::Str(v)) => Some(v),
        None => None,
        other => panic!("{key} is {other:?}"),
    }
}

fn find_from(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Asserts `exchanges` are exactly `wants`, timestamps included.
pub(super) fn assert_exchanges(
    context: &str,
    capture: &Capture,
    replay: &Replay,
    exchanges: &[Exchange],
    wants: &[Want],
) {
    let names: Vec<&str> = exchanges.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(exchanges.len(), wants.len(), "{context}: {names:?}");
    let client = capture.bytes(Side::Client);
    let mut search_from = 0;
    for (i, (exchange, want)) in exchanges.iter().zip(wants).enumerate() {
        let context = format!("{context}, exchange {i} ({})", want.name);
        let request_at = find_from(&client, want.request_at.as_bytes(), search_from)
            .unwrap_or_else(|| panic!("{context}: {:?} not in capture", want.request_at));
        search_from = request_at + 1;
        assert_eq!(exchange.name, want.name, "{context}");
        assert_eq!(
            exchange.start_ns,
            replay.ts_of(Side::Client, request_at),
            "{context}: start"
        );
        let end_ns = match want.response_end {
            Some(offset) => replay.ts_of(Side::Server, offset),
            None => replay.close_ns,
        };
        assert_eq!(exchange.end_ns, end_ns, "{context}: end");
        assert_eq!(
            int_attr(exchange, "http.response.status_code"),
            want.status.map(i64::from),
            "{context}"
        );
        assert_eq!(exchange.incomplete, want.status.is_none(), "{context}");
        assert_eq!(
            int_attr(exchange, "http.request.body.size"),
            want.request_body.map(|b| i64::try_from(b).unwrap()),
            "{context}"
        );
        assert_eq!(
            int_attr(exchange, "http.response.body.size"),
            want.response_body.map(|b| i64::try_from(b).unwrap()),
            "{context}"
        );
        assert_eq!(
            str_attr(exchange, "network.protocol.version"),
            Some(want.version),
            "{context}"
        );
        assert_eq!(
            str_attr(exchange, "network.protocol.name"),
            Some("http"),
            "{context}"
        );
        let method = want.name.split(' ').next().unwrap();
        assert_eq!(
            str_attr(exchange, "http.request.method"),
            Some(method),
            "{context}"
        );
        assert_eq!(
            str_attr(exchange, "url.path"),
            want.name.split_once(' ').map(|(_, p)| p),
            "{context}"
        );
        let fault = match want.status {
            Some(500..=599) => Fault::Server,
            Some(400..=499) => Fault::Client,
            _ => Fault::None,
        };
        assert_eq!(exchange.fault, fault, "{context}");
        assert_eq!(
            exchange.protocol,
            crate::protocols::Protocol::Http,
            "{context}"
        );
    }
}
