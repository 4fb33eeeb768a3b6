//! Cutting one direction of a length-framed protocol into messages.
//!
//! Messages arrive split at arbitrary points, so a partial message is kept
//! until the rest comes; complete messages inside one chunk are handed out
//! without copying. Messages too large to keep are handed out as a prefix
//! and the rest is skipped by length, which is also how gaps inside a
//! message are survived. When the position of the next message is unknown
//! (a gap at a message boundary, or a stream caught in the middle), the
//! framer hunts: it scans for a spot the protocol's own validator accepts.

/// Most bytes a framer keeps: larger messages are handed out as a prefix.
pub const MAX_BUFFERED: usize = 64 * 1024;

/// Most bytes kept while hunting; messages longer than this cannot be
/// validated and so are never chosen as a resynchronisation point.
pub const MAX_HUNT_WINDOW: usize = 16 * 1024;

/// Body bytes shown to [`Format::check_start`].
pub const START_CHECK_LEN: usize = 16;

/// What the validator thinks of the bytes starting at some offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A message (or chain of them) starts here, checked beyond doubt.
    Valid,
    /// No message starts here.
    Invalid,
    /// Plausible so far; more bytes are needed to tell.
    Incomplete,
}

/// How a protocol delimits its messages in one direction.
pub trait Format {
    /// Header size of the message whose first byte is `first`.
    fn header_len(&self, first: u8) -> usize;
    /// Body length announced by a complete header; `None` if no message can
    /// start with this header.
    fn body_len(&self, header: &[u8]) -> Option<usize>;
    /// How many bytes of an oversized message (header included) are worth
    /// keeping for the parser to look at.
    fn prefix_wanted(&self, header: &[u8]) -> usize;
    /// Whether a message can start with `start`: its header and up to
    /// [`START_CHECK_LEN`] bytes of its body (all of it, if shorter). Lets
    /// a format refuse a bogus length before waiting for that many bytes.
    fn check_start(&self, _start: &[u8]) -> bool {
        true
    }
    /// Whether a message starts at `data[0]` (used while hunting).
    fn probe(&self, data: &[u8]) -> Probe;
}

/// One message, or the kept prefix of one.
#[derive(Debug)]
pub struct Frame<'a> {
    pub header: &'a [u8],
    pub body: &'a [u8],
    /// False when `body` is only a prefix (message oversized or damaged by
    /// a gap).
    pub complete: bool,
    /// Timestamp of the call that carried the message's first byte.
    pub start_ns: u64,
}

/// What [`Framer::next`] found.
#[derive(Debug)]
pub enum Step<'a> {
    Frame(Frame<'a>),
    /// All input consumed; call again with the next chunk.
    NeedMore,
    /// The stream stopped making sense; the framer now hunts. Count it.
    Desync,
}

/// What [`Framer::gap`] made of missing bytes.
#[derive(Debug)]
pub enum GapStep<'a> {
    /// The gap lay inside a message that is being skipped anyway.
    Absorbed,
    /// The gap cut a message whose length is known: here is what arrived
    /// of it; the rest is skipped.
    Truncated(Frame<'a>),
    /// The position of the next message is lost; count it.
    Desync,
}

#[derive(Debug)]
pub struct Framer {
    /// Bytes of a partial message, or of the hunting window.
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out.
    consumed: usize,
    /// Bytes of the current message still to be thrown away.
    skip: usize,
    hunting: bool,
    /// When the first byte in `buf` arrived.
    buf_start_ns: u64,
}

impl Framer {
    /// A framer that first has to find a message boundary: nobody knows
    /// whether the stream was caught at its start.
    pub fn hunting() -> Self {
        Framer {
            buf: Vec::new(),
            consumed: 0,
            skip: 0,
            hunting: true,
            buf_start_ns: 0,
        }
    }

    #[cfg(test)]
    pub fn is_hunting(&self) -> bool {
        self.hunting
    }

    /// Forgets everything and hunts for the next message.
    pub fn lose_sync(&mut self) {
        self.buf = Vec::new();
        self.consumed = 0;
        self.skip = 0;
        self.hunting = true;
    }

    /// The next message from what was buffered and `input` (which is
    /// advanced past what was used). Call until it returns `NeedMore`.
    pub fn next<'s, 'a: 's>(
        &'s mut self,
        input: &mut &'a [u8],
        format: &impl Format,
        ts_ns: u64,
    ) -> Step<'s> {
        self.release_consumed();
        loop {
            if self.skip > 0 {
                let skipped = self.skip.min(input.len());
                self.skip -= skipped;
                *input = input.get(skipped..).unwrap_or_default();
                if self.skip > 0 {
                    return Step::NeedMore;
                }
                continue;
            }
            if self.hunting {
                if !self.hunt(input, format, ts_ns) {
                    return Step::NeedMore;
                }
                continue;
            }
            if self.buf.is_empty() {
                return self.next_from_input(input, format, ts_ns);
            }
            return self.next_from_buffer(input, format);
        }
    }

    /// Missing bytes: `len` bytes of this direction were not captured.
    pub fn gap(&mut self, len: usize, format: &impl Format) -> GapStep<'_> {
        self.release_consumed();
        if self.hunting {
            self.buf.clear();
            return GapStep::Absorbed;
        }
        if self.skip > 0 {
            if len <= self.skip {
                self.skip -= len;
                return GapStep::Absorbed;
            }
            self.lose_sync();
            return GapStep::Desync;
        }
        let Some(&first) = self.buf.first() else {
            self.lose_sync();
            return GapStep::Desync;
        };
        let header_len = format.header_len(first);
        let total = self
            .buf
            .get(..header_len)
            .and_then(|header| format.body_len(header))
            .map(|body| body.saturating_add(header_len));
        match total {
            Some(total) if self.buf.len().saturating_add(len) <= total => {
                self.skip = total - self.buf.len() - len;
                self.consumed = self.buf.len();
                let (header, body) = self.buf.split_at_checked(header_len).unwrap_or_default();
                GapStep::Truncated(Frame {
                    header,
                    body,
                    complete: false,
                    start_ns: self.buf_start_ns,
                })
            }
            _ => {
                self.lose_sync();
                GapStep::Desync
            }
        }
    }

    fn release_consumed(&mut self) {
        if self.consumed == 0 {
            return;
        }
        if self.consumed >= self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.consumed);
        }
        self.consumed = 0;
    }

    /// Scans for a message boundary; true once found (the bytes from there
    /// on are in `buf`, to be framed normally).
    fn hunt(&mut self, input: &mut &[u8], format: &impl Format, ts_ns: u64) -> bool {
        loop {
            if self.buf.is_empty() {
                self.buf_start_ns = ts_ns;
            }
            let from_this_call = self.buf.len();
            let room = MAX_HUNT_WINDOW.saturating_sub(self.buf.len());
            let taken = room.min(input.len());
            self.buf
                .extend_from_slice(input.get(..taken).unwrap_or_default());
            *input = input.get(taken..).unwrap_or_default();

            let window_full = self.buf.len() >= MAX_HUNT_WINDOW;
            // The earliest offset still undecided is kept for more bytes:
            // a later offset that validates may lie inside its message.
            let mut keep_from = None;
            for offset in 0..self.buf.len() {
                let candidate = self.buf.get(offset..).unwrap_or_default();
                match format.probe(candidate) {
                    Probe::Valid => {
                        if offset >= from_this_call {
                            self.buf_start_ns = ts_ns;
                        }
                        self.buf.drain(..offset);
                        self.hunting = false;
                        return true;
                    }
                    // A full window cannot grow, so what is still
                    // undecided at its front never will be.
                    Probe::Incomplete if !(window_full && offset == 0) => {
                        keep_from = Some(offset);
                        break;
                    }
                    Probe::Incomplete | Probe::Invalid => {}
                }
            }
            self.buf.drain(..keep_from.unwrap_or(self.buf.len()));
            if input.is_empty() {
                return false;
            }
        }
    }

    fn next_from_input<'s, 'a: 's>(
        &'s mut self,
        input: &mut &'a [u8],
        format: &impl Format,
        ts_ns: u64,
    ) -> Step<'s> {
        let data: &'a [u8] = input;
        let Some(&first) = data.first() else {
            return Step::NeedMore;
        };
        let header_len = format.header_len(first);
        let Some(header) = data.get(..header_len) else {
            self.start_buffer(data, ts_ns);
            *input = &[];
            return Step::NeedMore;
        };
        let Some(body_len) = format.body_len(header) else {
            self.lose_sync();
            return Step::Desync;
        };
        let total = header_len.saturating_add(body_len);
        let Some(start) = data.get(..total.min(header_len + START_CHECK_LEN)) else {
            self.start_buffer(data, ts_ns);
            *input = &[];
            return Step::NeedMore;
        };
        if !format.check_start(start) {
            self.lose_sync();
            return Step::Desync;
        }
        let (wanted, complete) = if total <= MAX_BUFFERED {
            (total, true)
        } else {
            (prefix_len(format, header, header_len), false)
        };
        let Some(message) = data.get(..wanted) else {
            self.start_buffer(data, ts_ns);
            *input = &[];
            return Step::NeedMore;
        };
        *input = data.get(wanted..).unwrap_or_default();
        if !complete {
            self.skip = total - wanted;
        }
        let (header, body) = message.split_at_checked(header_len).unwrap_or_default();
        Step::Frame(Frame {
            header,
            body,
            complete,
            start_ns: ts_ns,
        })
    }

    fn start_buffer(&mut self, data: &[u8], ts_ns: u64) {
        self.buf_start_ns = ts_ns;
        self.buf.extend_from_slice(data);
    }

    fn next_from_buffer(&mut self, input: &mut &[u8], format: &impl Format) -> Step<'_> {
        let Some(&first) = self.buf.first() else {
            return Step::NeedMore;
        };
        let header_len = format.header_len(first);
        if !self.fill_to(header_len, input) {
            return Step::NeedMore;
        }
        let header = self.buf.get(..header_len).unwrap_or_default();
        let Some(body_len) = format.body_len(header) else {
            self.lose_sync();
            return Step::Desync;
        };
        let total = header_len.saturating_add(body_len);
        if !self.fill_to(total.min(header_len + START_CHECK_LEN), input) {
            return Step::NeedMore;
        }
        let start = self.buf.get(..total.min(header_len + START_CHECK_LEN));
        if !start.is_some_and(|start| format.check_start(start)) {
            self.lose_sync();
            return Step::Desync;
        }
        if total <= MAX_BUFFERED {
            if !self.fill_to(total, input) {
                return Step::NeedMore;
            }
            self.consumed = total;
            let message = self.buf.get(..total).unwrap_or_default();
            let (header, body) = message.split_at_checked(header_len).unwrap_or_default();
            return Step::Frame(Frame {
                header,
                body,
                complete: true,
                start_ns: self.buf_start_ns,
            });
        }
        let header = self.buf.get(..header_len).unwrap_or_default();
        let wanted = prefix_len(format, header, header_len);
        if !self.fill_to(wanted, input) {
            return Step::NeedMore;
        }
        // Everything buffered belongs to this message (it is longer than
        // any buffer): the wanted prefix is handed out, the rest skipped.
        let have = self.buf.len();
        self.skip = total.saturating_sub(have);
        self.consumed = have;
        let prefix = self.buf.get(..wanted.min(have)).unwrap_or_default();
        let (header, body) = prefix.split_at(header_len.min(prefix.len()));
        Step::Frame(Frame {
            header,
            body,
            complete: false,
            start_ns: self.buf_start_ns,
        })
    }

    /// Moves bytes from `input` until `buf` holds `len`; false if it ran out.
    fn fill_to(&mut self, len: usize, input: &mut &[u8]) -> bool {
        let missing = len.saturating_sub(self.buf.len());
        let taken = missing.min(input.len());
        self.buf
            .extend_from_slice(input.get(..taken).unwrap_or_default());
        *input = input.get(taken..).unwrap_or_default();
        self.buf.len() >= len
    }
}

fn prefix_len(format: &impl Format, header: &[u8], header_len: usize) -> usize {
    format.prefix_wanted(header).clamp(header_len, MAX_BUFFERED)
}
