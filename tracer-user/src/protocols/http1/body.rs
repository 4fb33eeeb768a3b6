//! Message bodies: where they end, and how many payload bytes they carry.

/// Limits the bytes of a chunk-size line (extensions included) so a stream
/// of junk cannot keep the reader waiting for a line end forever.
const MAX_CHUNK_LINE: usize = 4096;
/// Limits the trailer section of a chunked body, like a header block.
const MAX_TRAILERS: usize = super::head::MAX_HEAD_BYTES;

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    Length(u64),
    Chunked,
    /// Ends when the connection closes (responses only).
    UntilClose,
}

/// Reads one message body.
#[derive(Debug)]
pub(super) struct BodyReader {
    state: State,
}

#[derive(Debug)]
enum State {
    Length { remaining: u64 },
    Chunked(Chunk),
    UntilClose,
}

/// Where a chunked body reader stands.
#[derive(Debug)]
enum Chunk {
    Size {
        value: u64,
        phase: SizePhase,
        line_len: usize,
    },
    Data {
        remaining: u64,
    },
    /// The CRLF after chunk data.
    DataEnd {
        saw_cr: bool,
    },
    Trailers {
        phase: TrailerPhase,
        len: usize,
    },
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SizePhase {
    FirstDigit,
    Digits,
    /// Whitespace after the size, before an extension or the line end.
    Space,
    Extension,
    Cr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrailerPhase {
    LineStart,
    InLine,
    /// A CR at a line start: the empty line that ends the body.
    FinalCr,
}

/// What one [`BodyReader::feed`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Progress {
    /// Input bytes that belonged to the body (framing included).
    pub consumed: usize,
    /// Payload bytes among them (chunk framing excluded).
    pub payload: u64,
    pub finished: bool,
}

/// The body's framing is broken: the stream is out of sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Malformed;

/// What missing (uncaptured) bytes did to the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GapOutcome {
    /// The bytes were payload; the body goes on.
    Absorbed { payload: u64 },
    /// The body ended inside the gap; `overrun` bytes after it belonged to
    /// whatever followed.
    Finished { payload: u64, overrun: u64 },
    /// The gap hid framing: where the body ends is unknown.
    Lost,
}

impl BodyReader {
    pub fn new(kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::Length(remaining) => State::Length { remaining },
            BodyKind::Chunked => State::Chunked(Chunk::new_size_line()),
            BodyKind::UntilClose => State::UntilClose,
        };
        BodyReader { state }
    }

    /// The body is complete when the connection closes.
    pub fn ends_at_close(&self) -> bool {
        matches!(self.state, State::UntilClose)
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, Malformed> {
        match &mut self.state {
            State::Length { remaining } => {
                let taken = take(remaining, data.len());
                Ok(Progress {
                    consumed: taken,
                    payload: widen(taken),
                    finished: *remaining == 0,
                })
            }
            State::UntilClose => Ok(Progress {
                consumed: data.len(),
                payload: widen(data.len()),
                finished: false,
            }),
            State::Chunked(chunk) => chunk.feed(data),
        }
    }

    pub fn gap(&mut self, len: u64) -> GapOutcome {
        match &mut self.state {
            State::Length { remaining } if len > *remaining => {
                let payload = *remaining;
                *remaining = 0;
                GapOutcome::Finished {
                    payload,
                    overrun: len - payload,
                }
            }
            State::Length { remaining } => {
                *remaining -= len;
                if *remaining == 0 {
                    GapOutcome::Finished {
                        payload: len,
                        overrun: 0,
                    }
                } else {
                    GapOutcome::Absorbed { payload: len }
                }
            }
            State::UntilClose => GapOutcome::Absorbed { payload: len },
            State::Chunked(Chunk::Data { remaining }) if len <= *remaining => {
                *remaining -= len;
                let after = if *remaining == 0 {
                    Chunk::DataEnd { saw_cr: false }
                } else {
                    Chunk::Data {
                        remaining: *remaining,
                    }
                };
                self.state = State::Chunked(after);
                GapOutcome::Absorbed { payload: len }
            }
            State::Chunked(_) => GapOutcome::Lost,
        }
    }
}

impl Chunk {
    fn new_size_line() -> Self {
        Chunk::Size {
            value: 0,
            phase: SizePhase::FirstDigit,
            line_len: 0,
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<Progress, Malformed> {
        let mut consumed = 0;
        let mut payload = 0;
        while let Some(rest) = data.get(consumed..).filter(|r| !r.is_empty()) {
            if matches!(self, Chunk::Done) {
                break;
            }
            if let Chunk::Data { remaining } = self {
                let taken = take(remaining, rest.len());
                consumed += taken;
                payload += widen(taken);
                if *remaining == 0 {
                    *self = Chunk::DataEnd { saw_cr: false };
                }
                continue;
            }
            let Some(&byte) = rest.first() else { break };
            consumed += 1;
            self.framing_byte(byte)?;
        }
        Ok(Progress {
            consumed,
            payload,
            finished: matches!(self, Chunk::Done),
        })
    }

    /// One byte of a size line, the CRLF after data, or the trailers.
    fn framing_byte(&mut self, byte: u8) -> Result<(), Malformed> {
        match self {
            Chunk::Size {
                value,
                phase,
                line_len,
            } => {
                *line_len += 1;
                if *line_len > MAX_CHUNK_LINE {
                    return Err(Malformed);
                }
                let line_ended = size_line_byte(value, phase, byte)?;
                if line_ended {
                    *self = match *value {
                        0 => Chunk::Trailers {
                            phase: TrailerPhase::LineStart,
                            len: 0,
                        },
                        remaining => Chunk::Data { remaining },
                    };
                }
            }
            Chunk::DataEnd { saw_cr } => match (byte, *saw_cr) {
                (b'\r', false) => *saw_cr = true,
                // A bare LF is tolerated, as most servers do.
                (b'\n', _) => *self = Chunk::new_size_line(),
                _ => return Err(Malformed),
            },
            Chunk::Trailers { phase, len } => {
                *len += 1;
                if *len > MAX_TRAILERS {
                    return Err(Malformed);
                }
                let next = match (*phase, byte) {
                    (TrailerPhase::LineStart, b'\r') => Some(TrailerPhase::FinalCr),
                    (TrailerPhase::LineStart | TrailerPhase::FinalCr, b'\n') => None,
                    (TrailerPhase::FinalCr, _) => return Err(Malformed),
                    (_, b'\n') => Some(TrailerPhase::LineStart),
                    _ => Some(TrailerPhase::InLine),
                };
                match next {
                    Some(next) => *phase = next,
                    None => *self = Chunk::Done,
                }
            }
            Chunk::Data { .. } | Chunk::Done => {}
        }
        Ok(())
    }
}

/// Advances a chunk-size line (`1a;ext=v\r\n`); true at its end.
fn size_line_byte(value: &mut u64, phase: &mut SizePhase, byte: u8) -> Result<bool, Malformed> {
    let digit = char::from(byte).to_digit(16).map(u64::from);
    *phase = match (*phase, byte, digit) {
        (SizePhase::FirstDigit | SizePhase::Digits, _, Some(digit)) => {
            *value = value
                .checked_mul(16)
                .and_then(|v| v.checked_add(digit))
                .ok_or(Malformed)?;
            SizePhase::Digits
        }
        (SizePhase::FirstDigit, _, None) => return Err(Malformed),
        (SizePhase::Digits | SizePhase::Space, b' ' | b'\t', _) => SizePhase::Space,
        (SizePhase::Digits | SizePhase::Space | SizePhase::Extension, b';', _) => {
            SizePhase::Extension
        }
        (SizePhase::Digits | SizePhase::Space | SizePhase::Extension, b'\r', _) => SizePhase::Cr,
        (_, b'\n', _) => return Ok(true),
        (SizePhase::Extension, _, _) => SizePhase::Extension,
        _ => return Err(Malformed),
    };
    Ok(false)
}

/// Takes up to `available` of `remaining`, returning how many.
fn take(remaining: &mut u64, available: usize) -> usize {
    let taken = usize::try_from(*remaining).map_or(available, |r| r.min(available));
    *remaining -= widen(taken);
    taken
}

fn widen(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` in pieces of `piece` bytes; returns (payload, finished, consumed).
    fn feed_all(
        kind: BodyKind,
        data: &[u8],
        piece: usize,
    ) -> Result<(u64, bool, usize), Malformed> {
        let mut reader = BodyReader::new(kind);
        let (mut payload, mut consumed) = (0, 0);
        for part in data.chunks(piece) {
            let progress = reader.feed(part)?;
            payload += progress.payload;
            consumed += progress.consumed;
            if progress.finished {
                return Ok((payload, true, consumed));
            }
        }
        Ok((payload, false, consumed))
    }

    #[test]
    fn length_body_stops_at_its_end() {
        assert_eq!(
            feed_all(BodyKind::Length(5), b"helloGET", 100),
            Ok((5, true, 5))
        );
        assert_eq!(feed_all(BodyKind::Length(5), b"hello", 1), Ok((5, true, 5)));
        assert_eq!(
            feed_all(BodyKind::Length(9), b"hello", 2),
            Ok((5, false, 5))
        );
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let body = b"5;a=b\r\nhello\r\n6 ; q=\"x;y\"\r\n world\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\nNEXT";
        for piece in 1..body.len() {
            assert_eq!(
                feed_all(BodyKind::Chunked, body, piece),
                Ok((11, true, body.len() - 4)),
                "{piece}"
            );
        }
    }

    #[test]
    fn chunked_body_with_bare_lf() {
        let body = b"3\nabc\n0\n\n";
        assert_eq!(
            feed_all(BodyKind::Chunked, body, 1),
            Ok((3, true, body.len()))
        );
    }

    #[test]
    fn chunked_body_rejects_broken_framing() {
        let broken: &[&[u8]] = &[
            b"x\r\n",
            b"\r\n",
            b"3\r\nabcX\r\n",
            b"3\r\x01",
            b"fffffffffffffffff\r\n",
            b"0\r\n\r\x01",
        ];
        for case in broken {
            assert_eq!(
                feed_all(BodyKind::Chunked, case, 1),
                Err(Malformed),
                "{case:?}"
            );
        }
        let long_line = [b"1;".as_slice(), &[b'a'; MAX_CHUNK_LINE]].concat();
        assert_eq!(feed_all(BodyKind::Chunked, &long_line, 64), Err(Malformed));
    }

    #[test]
    fn gaps_inside_payload_are_absorbed() {
        let mut reader = BodyReader::new(BodyKind::Chunked);
        assert_eq!(reader.feed(b"a\r\n").map(|p| p.payload), Ok(0));
        assert_eq!(reader.gap(4), GapOutcome::Absorbed { payload: 4 });
        assert_eq!(reader.gap(6), GapOutcome::Absorbed { payload: 6 });
        let end = reader.feed(b"\r\n0\r\n\r\n").unwrap();
        assert!(end.finished);
        let mut reader = BodyReader::new(BodyKind::Chunked);
        reader.feed(b"a\r\n").unwrap();
        assert_eq!(reader.gap(11), GapOutcome::Lost);
    }

    #[test]
    fn gaps_in_length_bodies() {
        let mut reader = BodyReader::new(BodyKind::Length(10));
        assert_eq!(reader.gap(4), GapOutcome::Absorbed { payload: 4 });
        assert_eq!(
            reader.gap(9),
            GapOutcome::Finished {
                payload: 6,
                overrun: 3
            }
        );
        let mut reader = BodyReader::new(BodyKind::UntilClose);
        assert_eq!(
            reader.gap(1 << 40),
            GapOutcome::Absorbed { payload: 1 << 40 }
        );
        assert!(reader.ends_at_close());
    }
}
