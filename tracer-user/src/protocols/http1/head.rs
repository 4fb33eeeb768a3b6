//! Message heads (start line and header block): collecting their bytes
//! across reads, and reading what the parser needs out of them.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::protocols::{SharedStr, TraceContext};

use super::body::BodyKind;
use super::exchange::standard_method;
use super::target::split_target;
use super::traceparent::trace_context;

/// A head longer than this is not HTTP we can follow: the stream is out of
/// sync (or abusive), and buffering more would let one peer grow memory.
pub(super) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// More headers than this is treated like garbage.
const MAX_HEADERS: usize = 64;

/// The bytes of one head as they arrive.
#[derive(Debug, Default)]
pub(super) struct HeadBuffer {
    bytes: Vec<u8>,
    line: LineState,
    /// When the head's first byte moved.
    pub start_ns: u64,
}

/// Tracks line ends to find the empty line that ends a head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum LineState {
    #[default]
    InLine,
    AfterLf,
    AfterLfCr,
}

/// What [`HeadBuffer::scan`] found in new input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Scan {
    /// Bytes of the input that belong to the head.
    pub take: usize,
    /// The head's final empty line is among them.
    pub ended: bool,
    /// Some line ended among them: worth checking what was received so far.
    pub saw_line_end: bool,
}

impl HeadBuffer {
    /// Starts a new head with `prefix`, bytes already known to begin a start
    /// line (so holding no line end).
    pub fn begin(&mut self, start_ns: u64, prefix: &[u8]) {
        self.clear();
        self.start_ns = start_ns;
        self.bytes.extend_from_slice(prefix);
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.line = LineState::InLine;
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Finds how much of `input` belongs to this head, remembering line
    /// state across calls; append that much with [`Self::extend`].
    pub fn scan(&mut self, input: &[u8]) -> Scan {
        if self.line == LineState::InLine {
            // Usually the whole rest of the head is here: found in one search.
            if let Some(end) = empty_line_end(input) {
                return Scan {
                    take: end,
                    ended: true,
                    saw_line_end: true,
                };
            }
        }
        let mut saw_line_end = false;
        let mut i = 0;
        while let Some(&byte) = input.get(i) {
            if self.line == LineState::InLine && byte != b'\n' {
                // Within a line only a line feed changes the state: jump to
                // the next one rather than stepping through every byte.
                match memchr::memchr(b'\n', input.get(i..).unwrap_or_default()) {
                    Some(offset) => i += offset,
                    None => break,
                }
                continue;
            }
            i += 1;
            self.line = match (self.line, byte) {
                (LineState::AfterLf | LineState::AfterLfCr, b'\n') => {
                    self.line = LineState::InLine;
                    return Scan {
                        take: i,
                        ended: true,
                        saw_line_end: true,
                    };
                }
                (_, b'\n') => {
                    saw_line_end = true;
                    LineState::AfterLf
                }
                (LineState::AfterLf, b'\r') => LineState::AfterLfCr,
                _ => LineState::InLine,
            };
        }
        Scan {
            take: input.len(),
            ended: false,
            saw_line_end,
        }
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

/// Just past the first empty line in `input`, read from inside a line: the
/// end of the first `\n\r\n` or `\n\n`. Two vectorised searches instead of
/// one `memchr` per line and a state step per line end (callgrind on the
/// replay example: 12.17k -> 11.68k instructions per HTTP span).
fn empty_line_end(input: &[u8]) -> Option<usize> {
    static CRLF_LINE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    static LF_LINE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    match CRLF_LINE.find(input) {
        // A bare line feed's empty line ends the head first if it is
        // there, and it would start before `at`.
        Some(at) => Some(
            input
                .get(..=at)
                .and_then(|before| LF_LINE.find(before))
                .map_or(at + 3, |lf| lf + 2),
        ),
        None => LF_LINE.find(input).map(|lf| lf + 2),
    }
}

/// Outcome of reading a head.
#[derive(Debug, PartialEq)]
pub(super) enum Parsed<T> {
    /// Valid so far; the rest has not arrived.
    Incomplete,
    Invalid,
    Complete(T),
}

/// What the parser keeps of a request head. Header values other than the
/// trace context are never kept: they may carry credentials.
#[derive(Debug, PartialEq)]
pub(super) struct RequestHead {
    /// A standard method is held as a constant: no copy per request.
    pub method: SharedStr,
    pub path: Option<SharedStr>,
    /// Kept only when queries may be shown.
    pub query: Option<String>,
    /// Minor version: 0 or 1.
    pub version: u8,
    pub body: Option<BodyKind>,
    pub trace_context: Option<TraceContext>,
}

#[derive(Debug, PartialEq)]
pub(super) struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
}

/// Body delimitation a head declares by its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    Unspecified,
    Length(u64),
    Chunked,
    /// Transfer-Encoding whose final coding is not `chunked`.
    OtherCoding,
}

pub(super) fn parse_request(bytes: &[u8], keep_query: bool) -> Parsed<RequestHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) if len == bytes.len() => {}
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        // Complete before the end of what was collected up to the first
        // empty line, too many headers, or bad syntax: not a head we trust.
        Ok(httparse::Status::Complete(_)) | Err(_) => return Parsed::Invalid,
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parsed::Invalid;
    };
    let body = match framing(request.headers) {
        Ok(Framing::Unspecified | Framing::Length(0)) => None,
        Ok(Framing::Length(len)) => Some(BodyKind::Length(len)),
        Ok(Framing::Chunked) => Some(BodyKind::Chunked),
        // A request body's end cannot be found without chunked framing.
        Ok(Framing::OtherCoding) | Err(InvalidFraming) => return Parsed::Invalid,
    };
    let parts = split_target(target, method == "CONNECT");
    Parsed::Complete(RequestHead {
        method: standard_method(method)
            .map_or_else(|| SharedStr::Owned(method.to_owned()), SharedStr::Static),
        path: parts.path.map(SharedStr::copied),
        query: parts.query.filter(|_| keep_query).map(str::to_owned),
        version,
        body,
        trace_context: trace_context(request.headers),
    })
}

pub(super) fn parse_response(bytes: &[u8]) -> Parsed<ResponseHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) if len == bytes.len() => {}
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Ok(httparse::Status::Complete(_)) | Err(_) => return Parsed::Invalid,
    }
    let Some(status) = response.code else {
        return Parsed::Invalid;
    };
    match framing(response.headers) {
        Ok(framing) => Parsed::Complete(ResponseHead { status, framing }),
        Err(InvalidFraming) => Parsed::Invalid,
    }
}

/// Conflicting or unreadable `Content-Length`.
#[derive(Debug, PartialEq, Eq)]
struct InvalidFraming;

/// Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, InvalidFraming> {
    let mut final_coding: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if let Some(last) = header
                .value
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .rfind(|coding| !coding.is_empty())
            {
                final_coding = Some(last);
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value = parse_length(header.value).ok_or(InvalidFraming)?;
            if length.is_some_and(|seen| seen != value) {
                return Err(InvalidFraming);
            }
            length = Some(value);
        }
    }
    Ok(match (final_coding, length) {
        (Some(coding), _) if coding.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        (Some(_), _) => Framing::OtherCoding,
        (None, Some(len)) => Framing::Length(len),
        (None, None) => Framing::Unspecified,
    })
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time scan `HeadBuffer::scan` replaced.
    fn reference_scan(line: &mut LineState, input: &[u8]) -> Scan {
        let mut saw_line_end = false;
        for (i, &byte) in input.iter().enumerate() {
            *line = match (*line, byte) {
                (LineState::AfterLf | LineState::AfterLfCr, b'\n') => {
                    *line = LineState::InLine;
                    return Scan {
                        take: i + 1,
                        ended: true,
                        saw_line_end: true,
                    };
                }
                (_, b'\n') => {
                    saw_line_end = true;
                    LineState::AfterLf
                }
                (LineState::AfterLf, b'\r') => LineState::AfterLfCr,
                _ => LineState::InLine,
            };
        }
        Scan {
            take: input.len(),
            ended: false,
            saw_line_end,
        }
    }

    #[test]
    fn scan_agrees_with_stepping_through_every_byte() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let input: Vec<u8> = (0..len).map(|_| *rng.choice(b"\r\nab").unwrap()).collect();
            let mut buffer = HeadBuffer::default();
            let mut line = LineState::InLine;
            let mut rest = input.as_slice();
            while !rest.is_empty() {
                let cut = rng.usize(1..=rest.len());
                let (chunk, after) = rest.split_at(cut);
                let ours = buffer.scan(chunk);
                assert_eq!(ours, reference_scan(&mut line, chunk), "{input:?}");
                assert_eq!(buffer.line, line);
                rest = if ours.ended { &[] } else { after };
            }
        }
    }

    fn scan_all(buffer: &mut HeadBuffer, input: &[u8]) -> Scan {
        let scan = buffer.scan(input);
        buffer.extend(input.get(..scan.take).unwrap());
        scan
    }

    #[test]
    fn finds_head_end_across_reads() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        for split in 0..head.len() {
            let mut buffer = HeadBuffer::default();
            let (first, second) = head.split_at(split);
            let a = scan_all(&mut buffer, first);
            let b = if a.ended {
                a
            } else {
                scan_all(&mut buffer, second)
            };
            assert!(b.ended, "{split}");
            assert_eq!(buffer.bytes(), &head[..head.len() - 4], "{split}");
        }
        let mut buffer = HeadBuffer::default();
        assert_eq!(
            buffer.scan(b"GET / HTTP/1.1\n\nx"),
            Scan {
                take: 16,
                ended: true,
                saw_line_end: true
            }
        );
    }

    #[test]
    fn request_fields() {
        let head = b"PUT http://example.org/a/b?c=d HTTP/1.0\r\nContent-Length: 12\r\nAuthorization: x\r\n\r\n";
        let Parsed::Complete(request) = parse_request(head, true) else {
            panic!()
        };
        assert_eq!(request.method, "PUT");
        assert_eq!(request.path.as_deref(), Some("/a/b"));
        assert_eq!(request.query.as_deref(), Some("c=d"));
        assert_eq!(request.version, 0);
        assert_eq!(request.body, Some(BodyKind::Length(12)));
        let Parsed::Complete(request) = parse_request(head, false) else {
            panic!()
        };
        assert_eq!(request.query, None);
    }

    #[test]
    fn request_framing() {
        let body_of = |head: &[u8]| match parse_request(head, false) {
            Parsed::Complete(request) => Some(request.body),
            _ => None,
        };
        assert_eq!(body_of(b"GET / HTTP/1.1\r\n\r\n"), Some(None));
        assert_eq!(
            body_of(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Some(None)
        );
        assert_eq!(
            body_of(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\nContent-Length: 3\r\n\r\n"
            ),
            Some(Some(BodyKind::Chunked))
        );
        assert_eq!(
            body_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            None
        );
        assert_eq!(
            body_of(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            None
        );
        assert_eq!(
            body_of(b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length:  3 \r\n\r\n"),
            Some(Some(BodyKind::Length(3)))
        );
        assert_eq!(
            body_of(b"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n"),
            None
        );
        assert_eq!(
            body_of(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            None
        );
    }

    #[test]
    fn rejects_bad_heads() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHo", false),
            Parsed::Incomplete
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", false),
            Parsed::Invalid
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\n\r\nX", false),
            Parsed::Invalid
        );
        let many: Vec<u8> = [b"GET / HTTP/1.1\r\n".as_slice()]
            .into_iter()
            .chain(std::iter::repeat_n(b"X: y\r\n".as_slice(), MAX_HEADERS + 1))
            .chain([b"\r\n".as_slice()])
            .flatten()
            .copied()
            .collect();
        assert_eq!(parse_request(&many, false), Parsed::Invalid);
    }

    #[test]
    fn response_fields() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Parsed::Complete(ResponseHead {
                status: 200,
                framing: Framing::Length(5)
            })
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 304\r\n\r\n"),
            Parsed::Complete(ResponseHead {
                status: 304,
                framing: Framing::Unspecified
            })
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Parsed::Complete(ResponseHead {
                status: 200,
                framing: Framing::OtherCoding
            })
        );
        assert_eq!(parse_response(b"HTTP/1.1 2000 OK\r\n\r\n"), Parsed::Invalid);
    }
}
