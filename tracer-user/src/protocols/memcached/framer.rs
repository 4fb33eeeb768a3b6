//! Splitting one direction of the text protocol into lines and data blocks.

/// Longest line kept while waiting for its end. memcached reads command lines
/// of a few KiB; a multi-key `get` can be longer, but not this long.
const MAX_LINE: usize = 64 * 1024;
/// memcached's item size limit can be raised to 1 GiB (`-I`).
pub(super) const MAX_BLOCK: u64 = 1024 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Line,
    /// Inside a data block (a value), `remaining` bytes before its `\r\n`.
    Block {
        remaining: u64,
    },
    /// After a data block, `left` bytes of its terminator are still to come.
    BlockEnd {
        left: u8,
        intact: bool,
    },
}

/// What [`Framer::advance`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    NeedMore,
    /// A line ended; read it with [`Framer::line`] (without its `\r\n`).
    Line,
    /// A data block and its two terminator bytes were consumed; `intact`
    /// is false when those bytes were not `\r\n` (memcached then answers
    /// `CLIENT_ERROR bad data chunk` and reads on after them).
    BlockDone {
        intact: bool,
    },
    /// Not the text protocol (control bytes or an endless line).
    Invalid,
}

pub(super) struct Framer {
    state: State,
    line: Vec<u8>,
    line_complete: bool,
    line_start_ns: u64,
}

impl Framer {
    pub fn new() -> Self {
        Framer {
            state: State::Line,
            line: Vec::new(),
            line_complete: false,
            line_start_ns: 0,
        }
    }

    pub fn reset(&mut self) {
        self.state = State::Line;
        self.line.clear();
        self.line_complete = false;
    }

    /// The line that the last [`Step::Line`] reported.
    pub fn line(&self) -> &[u8] {
        self.line.strip_suffix(b"\r").unwrap_or(&self.line)
    }

    /// When the first byte of the current (or last) line moved.
    pub fn line_start_ns(&self) -> u64 {
        self.line_start_ns
    }

    /// The line just read announced a data block of `len` bytes.
    pub fn expect_block(&mut self, len: u64) {
        self.state = if len == 0 {
            State::BlockEnd {
                left: 2,
                intact: true,
            }
        } else {
            State::Block { remaining: len }
        };
    }

    /// Consumes `data` (sent at `ts_ns`) up to the next line end or block end.
    pub fn advance(&mut self, data: &[u8], ts_ns: u64) -> (usize, Step) {
        if self.line_complete {
            self.line.clear();
            self.line_complete = false;
        }
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|rest| !rest.is_empty()) {
            match self.state {
                State::Block { remaining } => {
                    let take = usize::try_from(remaining).map_or(rest.len(), |r| r.min(rest.len()));
                    pos += take;
                    let remaining = remaining.saturating_sub(take as u64);
                    self.state = if remaining == 0 {
                        State::BlockEnd {
                            left: 2,
                            intact: true,
                        }
                    } else {
                        State::Block { remaining }
                    };
                }
                State::BlockEnd { left, intact } => {
                    let expected = if left == 2 { b'\r' } else { b'\n' };
                    let intact = intact && rest.first() == Some(&expected);
                    pos += 1;
                    if left > 1 {
                        self.state = State::BlockEnd {
                            left: left - 1,
                            intact,
                        };
                    } else {
                        self.state = State::Line;
                        return (pos, Step::BlockDone { intact });
                    }
                }
                State::Line => {
                    if self.line.is_empty() {
                        self.line_start_ns = ts_ns;
                    }
                    let (chunk, ended) = match rest.iter().position(|&b| b == b'\n') {
                        Some(newline) => (rest.get(..newline).unwrap_or_default(), true),
                        None => (rest, false),
                    };
                    if self.line.len() + chunk.len() > MAX_LINE || !is_text(chunk) {
                        return (pos, Step::Invalid);
                    }
                    self.line.extend_from_slice(chunk);
                    pos += chunk.len();
                    if ended {
                        pos += 1;
                        self.line_complete = true;
                        return (pos, Step::Line);
                    }
                }
            }
        }
        (pos, Step::NeedMore)
    }

    /// `len` bytes were lost: true if they fall inside the data block being
    /// read, false if the framer lost its place.
    pub fn skip_gap(&mut self, len: usize) -> bool {
        let State::Block { remaining } = self.state else {
            return false;
        };
        match u64::try_from(len) {
            Ok(len) if len < remaining => {
                self.state = State::Block {
                    remaining: remaining - len,
                };
                true
            }
            Ok(len) if len == remaining => {
                self.expect_block(0);
                true
            }
            _ => false,
        }
    }
}

/// Protocol lines are text: no control bytes but tab and a trailing `\r`.
/// Keys may be UTF-8, so bytes above 0x7f pass.
fn is_text(chunk: &[u8]) -> bool {
    chunk
        .iter()
        .all(|&b| b >= 0x20 && b != 0x7f || b == b'\t' || b == b'\r')
}
