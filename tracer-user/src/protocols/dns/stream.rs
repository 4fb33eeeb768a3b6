//! DNS over TCP (RFC 1035 4.2.2): each message follows its 2-byte length.

/// A message shorter than a header is not DNS.
const MIN_MESSAGE_LEN: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the length prefix; `high` holds its first byte once read.
    Length { high: Option<u8> },
    /// Reading a message of `len` bytes; `lost` bytes of it were not
    /// captured, so it will be dropped when complete.
    Body { len: usize, lost: usize },
}

/// What [`Reassembler::advance`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    NeedMore,
    /// A whole message: read it with [`Reassembler::message`].
    Message,
    /// A message ended but parts of it were lost.
    Damaged,
    /// A length no DNS message has.
    Invalid,
}

pub(super) struct Reassembler {
    state: State,
    /// The message being read (at most 64 KiB, the length prefix's limit).
    buffer: Vec<u8>,
    message_complete: bool,
    message_start_ns: u64,
}

impl Reassembler {
    pub fn new() -> Self {
        Reassembler {
            state: State::Length { high: None },
            buffer: Vec::new(),
            message_complete: false,
            message_start_ns: 0,
        }
    }

    pub fn reset(&mut self) {
        self.state = State::Length { high: None };
        self.buffer.clear();
        self.message_complete = false;
    }

    pub fn message(&self) -> &[u8] {
        &self.buffer
    }

    /// When the first byte of the current (or last) message's prefix moved.
    pub fn message_start_ns(&self) -> u64 {
        self.message_start_ns
    }

    pub fn advance(&mut self, data: &[u8], ts_ns: u64) -> (usize, Step) {
        if self.message_complete {
            self.buffer.clear();
            self.message_complete = false;
        }
        let mut pos = 0;
        while let Some((&byte, rest)) = data.get(pos..).and_then(<[u8]>::split_first) {
            match self.state {
                State::Length { high: None } => {
                    self.message_start_ns = ts_ns;
                    self.state = State::Length { high: Some(byte) };
                    pos += 1;
                }
                State::Length { high: Some(high) } => {
                    pos += 1;
                    let len = usize::from(u16::from_be_bytes([high, byte]));
                    if len < MIN_MESSAGE_LEN {
                        return (pos, Step::Invalid);
                    }
                    self.state = State::Body { len, lost: 0 };
                }
                State::Body { len, lost } => {
                    let wanted = len.saturating_sub(self.buffer.len() + lost);
                    let take = wanted.min(rest.len() + 1);
                    let chunk = data.get(pos..pos + take).unwrap_or_default();
                    self.buffer.extend_from_slice(chunk);
                    pos += take;
                    if self.buffer.len() + lost >= len {
                        self.state = State::Length { high: None };
                        self.message_complete = true;
                        return (
                            pos,
                            if lost == 0 {
                                Step::Message
                            } else {
                                Step::Damaged
                            },
                        );
                    }
                }
            }
        }
        (pos, Step::NeedMore)
    }

    /// `len` bytes were lost: true if they fall inside the message being
    /// read (which will come out damaged), false if we lost our place.
    pub fn skip_gap(&mut self, gap: usize) -> bool {
        let State::Body { len, lost } = self.state else {
            return false;
        };
        let lost = lost.saturating_add(gap);
        // A gap running past the message took the next length prefix.
        if self.buffer.len().saturating_add(lost) > len {
            return false;
        }
        self.state = State::Body { len, lost };
        true
    }
}
