//! One direction of a connection cut into messages: start line search,
//! head collection, body framing, and resynchronisation after losing track.
//! What a head means (and so how its body is delimited) is up to a
//! [`MessageSink`], which knows about the other direction.

use crate::protocols::Side;

use super::body::{BodyKind, BodyReader, GapOutcome};
use super::head::{HeadBuffer, MAX_HEAD_BYTES};
use super::start::{message_start, Methods, StartMatch, MAX_START_PATTERN};

/// Receives the messages a [`SideStream`] finds.
pub(super) trait MessageSink {
    /// A head, possibly not all of it yet, started at `start_ns`.
    fn head(&mut self, side: Side, head: &[u8], start_ns: u64) -> HeadVerdict;
    /// `payload` more body bytes of the current message.
    fn body(&mut self, side: Side, payload: u64);
    /// The current message ended with bytes moved at `ts_ns`.
    fn end(&mut self, side: Side, ts_ns: u64);
    /// The stream lost its place; it skips input until a plausible start.
    fn desync(&mut self, side: Side);
}

/// What a sink made of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeadVerdict {
    Incomplete,
    Invalid,
    /// A message with this body (`None`: no body, the message has ended).
    Message(Option<BodyKind>),
    /// An interim (1xx) response: no body, not a message of its own.
    Interim,
    /// The message ended and the connection stops speaking HTTP/1.x.
    SwitchProtocols,
}

#[derive(Debug)]
enum State {
    /// In sync between messages: the next bytes must start one.
    Boundary,
    /// Lost: skipping to something that looks like a message start.
    Resync,
    /// Collecting a head; `from_resync` when its start was a guess, whose
    /// failure is not a new loss of sync.
    Head {
        from_resync: bool,
    },
    Body(BodyReader),
    /// No longer HTTP/1.x (after 101 Switching Protocols or a CONNECT).
    Switched,
}

/// Bytes that may begin a message, held until enough arrive to decide,
/// with when each moved (the message's start time is its first byte's).
#[derive(Debug)]
struct StartCarry {
    bytes: [u8; MAX_START_PATTERN],
    ts_ns: [u64; MAX_START_PATTERN],
    len: usize,
}

pub(super) struct SideStream {
    side: Side,
    state: State,
    carry: StartCarry,
    head: HeadBuffer,
    /// When this side last moved bytes: a close-delimited body ended then.
    last_ts_ns: u64,
}

impl SideStream {
    pub fn new(side: Side) -> Self {
        SideStream {
            side,
            state: State::Boundary,
            carry: StartCarry::new(),
            head: HeadBuffer::default(),
            last_ts_ns: 0,
        }
    }

    pub fn feed(&mut self, ts_ns: u64, mut input: &[u8], sink: &mut impl MessageSink) {
        self.last_ts_ns = ts_ns;
        while !input.is_empty() {
            match &mut self.state {
                State::Boundary | State::Resync => self.seek_start(&mut input, ts_ns, sink),
                State::Head { .. } => self.feed_head(&mut input, ts_ns, sink),
                State::Body(reader) => match reader.feed(input) {
                    Ok(progress) => {
                        input = input.get(progress.consumed..).unwrap_or_default();
                        if progress.payload > 0 {
                            sink.body(self.side, progress.payload);
                        }
                        if progress.finished {
                            self.state = State::Boundary;
                            sink.end(self.side, ts_ns);
                        } else if progress.consumed == 0 {
                            // Cannot happen with a live reader; never spin.
                            self.lose_sync(sink);
                        }
                    }
                    Err(_) => self.lose_sync(sink),
                },
                State::Switched => return,
            }
        }
    }

    /// `len` bytes moved at `ts_ns` without being captured.
    pub fn gap(&mut self, ts_ns: u64, len: usize, sink: &mut impl MessageSink) {
        self.last_ts_ns = ts_ns;
        if len == 0 {
            return;
        }
        match &mut self.state {
            State::Switched => {}
            // The carried bytes are no longer followed by what comes next.
            State::Resync => self.carry.clear(),
            State::Boundary | State::Head { .. } => self.lose_sync(sink),
            State::Body(reader) => match reader.gap(u64::try_from(len).unwrap_or(u64::MAX)) {
                GapOutcome::Absorbed { payload } => sink.body(self.side, payload),
                GapOutcome::Finished { payload, overrun } => {
                    sink.body(self.side, payload);
                    self.state = State::Boundary;
                    sink.end(self.side, ts_ns);
                    if overrun > 0 {
                        // The next message's start went missing.
                        self.lose_sync(sink);
                    }
                }
                GapOutcome::Lost => self.lose_sync(sink),
            },
        }
    }

    /// The connection closed: a body delimited by the close is complete.
    /// Leaves the stream as new.
    pub fn close(&mut self, sink: &mut impl MessageSink) {
        if let State::Body(reader) = &self.state {
            if reader.ends_at_close() {
                sink.end(self.side, self.last_ts_ns);
            }
        }
        self.state = State::Boundary;
        self.carry.clear();
        self.head.clear();
    }

    /// Looks for a message start in the carried bytes and `input`. In sync it
    /// must be right here; otherwise anywhere.
    fn seek_start(&mut self, input: &mut &[u8], ts_ns: u64, sink: &mut impl MessageSink) {
        let mut resyncing = matches!(self.state, State::Resync);
        if !resyncing && self.carry.len == 0 {
            // Empty lines before a message are tolerated (RFC 9112 §2.2).
            let blank = input
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            *input = input.get(blank..).unwrap_or_default();
            if input.is_empty() {
                return;
            }
        }
        let carried = self.carry.len;
        let total = carried + input.len();
        let mut window_buf = [0u8; MAX_START_PATTERN];
        for position in 0..total {
            let window = if position < carried {
                self.carry.window(position, input, &mut window_buf)
            } else {
                input.get(position - carried..).unwrap_or_default()
            };
            let methods = if resyncing {
                Methods::Known
            } else {
                Methods::Extended
            };
            match message_start(self.side, window, methods) {
                StartMatch::Yes => {
                    let start_ns = self.carry.ts_at(position).unwrap_or(ts_ns);
                    self.head.begin(start_ns, self.carry.bytes_from(position));
                    self.carry.clear();
                    *input = input
                        .get(position.saturating_sub(carried)..)
                        .unwrap_or_default();
                    self.state = State::Head {
                        from_resync: resyncing,
                    };
                    return;
                }
                StartMatch::NeedMore => {
                    self.carry.keep_from(position, input, ts_ns);
                    *input = &[];
                    return;
                }
                StartMatch::No if !resyncing => {
                    sink.desync(self.side);
                    resyncing = true;
                    self.state = State::Resync;
                }
                StartMatch::No => {}
            }
        }
        self.carry.clear();
        *input = &[];
    }

    fn feed_head(&mut self, input: &mut &[u8], ts_ns: u64, sink: &mut impl MessageSink) {
        let scan = self.head.scan(input);
        let (taken, rest) = input.split_at_checked(scan.take).unwrap_or((input, &[]));
        *input = rest;
        if self.head.len() + taken.len() > MAX_HEAD_BYTES {
            self.lose_sync(sink);
            return;
        }
        self.head.extend(taken);
        if !scan.saw_line_end {
            return;
        }
        match sink.head(self.side, self.head.bytes(), self.head.start_ns) {
            HeadVerdict::Incomplete if !scan.ended => {}
            HeadVerdict::Incomplete | HeadVerdict::Invalid => self.lose_sync(sink),
            HeadVerdict::Message(None) => {
                self.enter(State::Boundary);
                sink.end(self.side, ts_ns);
            }
            HeadVerdict::Message(Some(kind)) => self.enter(State::Body(BodyReader::new(kind))),
            HeadVerdict::Interim => self.enter(State::Boundary),
            HeadVerdict::SwitchProtocols => {
                self.enter(State::Switched);
                sink.end(self.side, ts_ns);
            }
        }
    }

    fn enter(&mut self, state: State) {
        self.head.clear();
        self.state = state;
    }

    /// Drops what this side held and starts looking for a message start. A
    /// guessed start that fails is not counted again.
    fn lose_sync(&mut self, sink: &mut impl MessageSink) {
        if !matches!(
            self.state,
            State::Resync | State::Head { from_resync: true }
        ) {
            sink.desync(self.side);
        }
        self.head.clear();
        self.carry.clear();
        self.state = State::Resync;
    }
}

impl StartCarry {
    fn new() -> Self {
        StartCarry {
            bytes: [0; MAX_START_PATTERN],
            ts_ns: [0; MAX_START_PATTERN],
            len: 0,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn held(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn bytes_from(&self, position: usize) -> &[u8] {
        self.held().get(position..).unwrap_or_default()
    }

    /// When the carried byte at `position` moved; `None` past the carry.
    fn ts_at(&self, position: usize) -> Option<u64> {
        self.ts_ns.get(..self.len)?.get(position).copied()
    }

    /// Carried bytes from `position` on, followed by as much `input` as fits.
    fn window<'a>(
        &self,
        position: usize,
        input: &[u8],
        buf: &'a mut [u8; MAX_START_PATTERN],
    ) -> &'a [u8] {
        let carried = self.bytes_from(position);
        let mut len = 0;
        for (slot, &byte) in buf.iter_mut().zip(carried.iter().chain(input)) {
            *slot = byte;
            len += 1;
        }
        buf.get(..len).unwrap_or_default()
    }

    /// Keeps carried bytes and `input` from `position` (counted from the
    /// start of the carry) for the next read.
    fn keep_from(&mut self, position: usize, input: &[u8], ts_ns: u64) {
        let kept_carry = self.len.saturating_sub(position);
        let skipped_input = position.saturating_sub(self.len);
        self.bytes.copy_within(self.len - kept_carry..self.len, 0);
        self.ts_ns.copy_within(self.len - kept_carry..self.len, 0);
        self.len = kept_carry;
        for &byte in input.get(skipped_input..).unwrap_or_default() {
            let (Some(slot), Some(ts_slot)) =
                (self.bytes.get_mut(self.len), self.ts_ns.get_mut(self.len))
            else {
                break;
            };
            *slot = byte;
            *ts_slot = ts_ns;
            self.len += 1;
        }
    }
}
