//! Cutting one side's bytes into frames, whatever the read boundaries, and
//! finding frame boundaries again after losing them.
//!
//! Payloads are not kept beyond what the parser needs: DATA is counted
//! (only its pad length byte is read), header blocks are kept up to
//! [`MAX_BLOCK`], control frames up to a few bytes.

use std::collections::VecDeque;

use crate::protocols::Side;

use super::frame::{
    settings, FrameHeader, FrameType, DEFAULT_MAX_FRAME, END_HEADERS, END_STREAM, HEADER_LEN,
    PADDED, PREFACE, PRIORITY, SETTINGS_HEADER_TABLE_SIZE,
};

/// Largest header block kept for decoding; a bigger one is lost (and with
/// it the HPACK context of that side).
pub(super) const MAX_BLOCK: usize = 64 * 1024;
/// Padding and priority fields in front of and behind a fragment.
const MAX_BLOCK_FRAME_EXTRA: usize = 1 + 5 + 255;
/// SETTINGS beyond this many bytes (64 settings) are not read.
const MAX_SETTINGS_BYTES: usize = 6 * 64;
/// Bytes held while looking for a frame boundary: enough for a candidate
/// frame of any plausible size and the next frame's header.
const SCAN_LIMIT: usize = 2 * (DEFAULT_MAX_FRAME as usize + 2 * HEADER_LEN);

/// What a side's frames mean to the rest of the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// The client connection preface: the connection was seen from its
    /// start.
    ClientPreface,
    /// A complete header block (HEADERS or `PUSH_PROMISE`, then any
    /// CONTINUATION). `block` is `None` when it was lost (a gap, or too
    /// big to keep).
    Headers {
        stream: u32,
        block: Option<&'a [u8]>,
        end_stream: bool,
        push_promise: bool,
        /// When the first byte of the HEADERS frame moved.
        start_ns: u64,
    },
    /// A DATA frame; `len` excludes padding.
    Data {
        stream: u32,
        len: u64,
        end_stream: bool,
    },
    /// `code` is `None` when the payload was not captured.
    RstStream { stream: u32, code: Option<u32> },
    /// A SETTINGS frame (not an acknowledgement).
    Settings { header_table_size: Option<u32> },
}

/// Receives a side's frames.
pub(super) trait FrameSink {
    /// A frame ended in the read (or gap) at `ts_ns`.
    fn frame(&mut self, side: Side, ts_ns: u64, frame: Frame<'_>);
    /// Frame boundaries were lost and found again further on: frames,
    /// header blocks among them, went unseen.
    fn lost_sync(&mut self, side: Side);
}

#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// The client side's first bytes, checked against the preface.
    Preface {
        matched: usize,
    },
    InSync,
    /// Looking for a frame boundary.
    Scanning,
}

/// The frame whose payload is being read.
#[derive(Debug)]
struct Current {
    header: FrameHeader,
    start_ns: u64,
    remaining: usize,
    /// Payload bytes kept, at most `keep`.
    keep: usize,
    /// Some payload bytes were not captured.
    damaged: bool,
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    push_promise: bool,
    start_ns: u64,
    lost: bool,
}

/// Bytes held while scanning, with the time each piece arrived.
#[derive(Debug, Default)]
struct ScanBuffer {
    bytes: Vec<u8>,
    /// (ts, length) of each piece of `bytes`, in order.
    pieces: VecDeque<(u64, usize)>,
    /// Offsets from here on were not looked at yet.
    scanned_to: usize,
    /// Offsets before `scanned_to` whose frame looked plausible but whose
    /// next frame header had not arrived, in order. All other offsets
    /// before `scanned_to` were rejected for good.
    waiting: Vec<usize>,
    /// Bytes were skipped or dropped since the last time in sync.
    skipped: bool,
}

/// What the bytes at an offset say about a frame starting there.
enum Candidate {
    Rejected,
    /// Plausible, but the next frame's header has not arrived.
    Waiting,
    /// Plausible, and so is the next frame.
    Confirmed,
}

impl ScanBuffer {
    fn push(&mut self, ts_ns: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.bytes.extend_from_slice(data);
        self.pieces.push_back((ts_ns, data.len()));
    }

    /// Drops the first `n` bytes.
    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.bytes.len());
        if n == 0 {
            return;
        }
        self.skipped = true;
        self.bytes.drain(..n);
        self.scanned_to = self.scanned_to.saturating_sub(n);
        self.waiting.retain(|&at| at >= n);
        for at in &mut self.waiting {
            *at -= n;
        }
        let mut left = n;
        while let Some((_, len)) = self.pieces.front_mut() {
            if *len > left {
                *len -= left;
                break;
            }
            left -= *len;
            self.pieces.pop_front();
        }
    }

    fn clear(&mut self) {
        self.skipped |= !self.bytes.is_empty();
        self.bytes.clear();
        self.pieces.clear();
        self.scanned_to = 0;
        self.waiting.clear();
    }

    fn candidate(&self, at: usize) -> Candidate {
        let Some(header) = self.bytes.get(at..).and_then(FrameHeader::parse_prefix) else {
            return Candidate::Waiting;
        };
        if !header.is_plausible() || header.kind == FrameType::Continuation {
            return Candidate::Rejected;
        }
        let next_at = at + HEADER_LEN + header.length as usize;
        match self
            .bytes
            .get(next_at..)
            .and_then(FrameHeader::parse_prefix)
        {
            None => Candidate::Waiting,
            Some(next) if next.is_plausible() && header.may_precede(&next) => Candidate::Confirmed,
            Some(_) => Candidate::Rejected,
        }
    }

    /// The first offset where a plausible frame is followed by another
    /// plausible frame that may follow it. A confirmed offset wins over
    /// earlier ones still waiting for bytes: real frames mostly arrive
    /// whole, and waiting could hold the connection's frames back for as
    /// long as it stays idle.
    fn find(&mut self) -> Option<usize> {
        let mut i = 0;
        while let Some(&at) = self.waiting.get(i) {
            match self.candidate(at) {
                Candidate::Confirmed => return Some(at),
                Candidate::Rejected => {
                    self.waiting.remove(i);
                }
                Candidate::Waiting => i += 1,
            }
        }
        while self.scanned_to + HEADER_LEN <= self.bytes.len() {
            let at = self.scanned_to;
            self.scanned_to += 1;
            match self.candidate(at) {
                Candidate::Confirmed => return Some(at),
                Candidate::Waiting => self.waiting.push(at),
                Candidate::Rejected => {}
            }
        }
        None
    }

    /// Bytes before this offset will never be needed.
    fn first_needed(&self) -> usize {
        self.waiting
            .first()
            .copied()
            .unwrap_or(self.scanned_to)
            .min(self.scanned_to)
    }

    /// A waiting candidate that ends exactly where the bytes end (taken
    /// when no more bytes will come).
    fn exact_fit(&self) -> Option<usize> {
        self.waiting.iter().copied().find(|&at| {
            FrameHeader::parse_prefix(self.bytes.get(at..).unwrap_or_default()).is_some_and(|h| {
                !h.opens_block() && at + HEADER_LEN + h.length as usize == self.bytes.len()
            })
        })
    }

    /// The held bytes from `from` on, as the pieces they arrived in.
    fn take_from(&mut self, from: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut offset = 0;
        for &(ts, len) in &self.pieces {
            let end = offset + len;
            if end > from {
                let start = offset.max(from);
                if let Some(bytes) = self.bytes.get(start..end) {
                    out.push((ts, bytes.to_vec()));
                }
            }
            offset = end;
        }
        self.bytes.clear();
        self.pieces.clear();
        self.scanned_to = 0;
        self.waiting.clear();
        self.skipped = false;
        out
    }
}

/// One side of a connection, cut into frames.
#[derive(Debug)]
pub(super) struct Framer {
    side: Side,
    mode: Mode,
    header: [u8; HEADER_LEN],
    header_len: usize,
    header_start_ns: u64,
    current: Option<Current>,
    /// Kept payload of the current frame; for header blocks, the fragments
    /// so far.
    payload: Vec<u8>,
    /// Where the current frame's payload starts in `payload` (after the
    /// fragments of earlier frames of the same header block).
    payload_start: usize,
    open_block: Option<OpenBlock>,
    scan: ScanBuffer,
    /// Bytes were fed already.
    started: bool,
}

impl Framer {
    /// The client side starts with the preface; the server side, or a
    /// client caught mid-stream, starts by looking for frame boundaries.
    pub fn new(side: Side) -> Framer {
        Framer {
            side,
            mode: match side {
                Side::Client => Mode::Preface { matched: 0 },
                Side::Server => Mode::Scanning,
            },
            header: [0; HEADER_LEN],
            header_len: 0,
            header_start_ns: 0,
            current: None,
            payload: Vec::new(),
            payload_start: 0,
            open_block: None,
            scan: ScanBuffer::default(),
            started: false,
        }
    }

    pub fn feed(&mut self, ts_ns: u64, data: &[u8], sink: &mut impl FrameSink) {
        if !self.started {
            self.started = true;
            // A server's opening SETTINGS as its very first bytes: in sync
            // from the start, even when its next frame is not there yet to
            // confirm the boundary (Go writes it alone, before it reads the
            // client's preface).
            if self.mode == Mode::Scanning
                && self.side == Side::Server
                && !self.scan.skipped
                && self.scan.bytes.is_empty()
                && super::detect::is_server_opening(data)
            {
                self.mode = Mode::InSync;
            }
        }
        // Scanning may hand back held bytes to parse in sync, and parsing
        // may lose sync and hand bytes to scanning: a queue, not recursion.
        let mut queue: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut first: Option<&[u8]> = Some(data);
        loop {
            let owned;
            let (ts, bytes): (u64, &[u8]) = match first.take() {
                Some(bytes) => (ts_ns, bytes),
                None => match queue.pop_front() {
                    Some((ts, bytes)) => {
                        owned = bytes;
                        (ts, &owned)
                    }
                    None => return,
                },
            };
            match self.mode {
                Mode::Preface { matched } => self.preface(ts, bytes, matched, sink, &mut queue),
                Mode::InSync => {
                    if let Some(lost_at) = self.in_sync(ts, bytes, sink) {
                        self.start_scanning(ts, bytes.get(lost_at..).unwrap_or_default());
                        self.scan_found(sink, &mut queue);
                    }
                }
                Mode::Scanning => {
                    self.scan.push(ts, bytes);
                    self.scan_found(sink, &mut queue);
                }
            }
        }
    }

    /// `len` bytes at `ts_ns` were not captured.
    pub fn gap(&mut self, ts_ns: u64, len: usize, sink: &mut impl FrameSink) {
        if len == 0 {
            return;
        }
        match self.mode {
            Mode::Preface { .. } => {
                self.mode = Mode::Scanning;
                self.scan.skipped = true;
            }
            Mode::Scanning => self.scan.clear(),
            Mode::InSync => {
                let Some(current) = self.current.as_mut() else {
                    // A frame header went missing; the part of it we hold
                    // is not followed by what comes next.
                    self.header_len = 0;
                    self.start_scanning(ts_ns, &[]);
                    return;
                };
                let inside = len.min(current.remaining);
                current.remaining -= inside;
                if current.header.kind != FrameType::Data {
                    current.damaged = true;
                } else if current.header.has(PADDED) && self.payload.len() == self.payload_start {
                    // The pad length went missing: count padding as data.
                    current.damaged = true;
                }
                if current.remaining == 0 {
                    self.finish(ts_ns, sink);
                }
                if len > inside {
                    // The gap runs past the frame: the next header is lost.
                    self.start_scanning(ts_ns, &[]);
                }
            }
        }
    }

    /// The connection closed: a frame waiting to be confirmed by the next
    /// one is taken if it ends exactly where the bytes end.
    pub fn close(&mut self, sink: &mut impl FrameSink) {
        if self.mode != Mode::Scanning {
            return;
        }
        if let Some(at) = self.scan.exact_fit() {
            let mut queue = VecDeque::new();
            self.hand_over(at, sink, &mut queue);
            for (ts, bytes) in queue {
                let _ = self.in_sync(ts, &bytes, sink);
            }
        }
    }

    fn preface(
        &mut self,
        ts_ns: u64,
        bytes: &[u8],
        matched: usize,
        sink: &mut impl FrameSink,
        queue: &mut VecDeque<(u64, Vec<u8>)>,
    ) {
        let expected = PREFACE.get(matched..).unwrap_or_default();
        let n = expected.len().min(bytes.len());
        if bytes.get(..n) != expected.get(..n) {
            // Not the preface: a connection caught mid-stream.
            self.mode = Mode::Scanning;
            self.scan
                .push(ts_ns, PREFACE.get(..matched).unwrap_or_default());
            self.scan.push(ts_ns, bytes);
            self.scan_found(sink, queue);
            return;
        }
        if matched + n < PREFACE.len() {
            self.mode = Mode::Preface {
                matched: matched + n,
            };
            return;
        }
        self.mode = Mode::InSync;
        sink.frame(self.side, ts_ns, Frame::ClientPreface);
        if let Some(rest) = bytes.get(n..).filter(|rest| !rest.is_empty()) {
            queue.push_front((ts_ns, rest.to_vec()));
        }
    }

    /// Starts looking for a boundary after losing sync; the bytes of a
    /// frame header read so far are kept (a frame may start among them).
    fn start_scanning(&mut self, ts_ns: u64, rest: &[u8]) {
        let held = self
            .header
            .get(..self.header_len)
            .unwrap_or_default()
            .to_vec();
        self.mode = Mode::Scanning;
        self.reset_frame_state();
        self.scan.skipped = true;
        self.scan.push(ts_ns, held.get(1..).unwrap_or_default());
        self.scan.push(ts_ns, rest);
    }

    fn reset_frame_state(&mut self) {
        self.header_len = 0;
        self.current = None;
        self.open_block = None;
        self.payload.clear();
        self.payload_start = 0;
    }

    /// Checks the scan buffer; on a boundary, queues the held bytes from
    /// there to be parsed in sync.
    fn scan_found(&mut self, sink: &mut impl FrameSink, queue: &mut VecDeque<(u64, Vec<u8>)>) {
        if let Some(pos) = self.scan.find() {
            self.hand_over(pos, sink, queue);
        } else {
            // Rejected offsets are never needed again, and no
            // candidate needs more than SCAN_LIMIT bytes.
            let unneeded = self.scan.first_needed();
            self.scan.drop_front(unneeded);
            let excess = self.scan.bytes.len().saturating_sub(SCAN_LIMIT);
            self.scan.drop_front(excess);
        }
    }

    fn hand_over(
        &mut self,
        pos: usize,
        sink: &mut impl FrameSink,
        queue: &mut VecDeque<(u64, Vec<u8>)>,
    ) {
        if self.scan.skipped || pos > 0 {
            sink.lost_sync(self.side);
        }
        let pieces = self.scan.take_from(pos);
        self.mode = Mode::InSync;
        self.reset_frame_state();
        for piece in pieces.into_iter().rev() {
            queue.push_front(piece);
        }
    }

    /// Parses frames; returns the offset in `data` where sync was lost.
    fn in_sync(&mut self, ts_ns: u64, data: &[u8], sink: &mut impl FrameSink) -> Option<usize> {
        let mut at = 0;
        while at < data.len() {
            let rest = data.get(at..).unwrap_or_default();
            let Some(current) = self.current.as_mut() else {
                if self.header_len == 0 {
                    self.header_start_ns = ts_ns;
                }
                let take = (HEADER_LEN - self.header_len).min(rest.len());
                if let (Some(dst), Some(src)) = (
                    self.header.get_mut(self.header_len..self.header_len + take),
                    rest.get(..take),
                ) {
                    dst.copy_from_slice(src);
                }
                self.header_len += take;
                at += take;
                if self.header_len < HEADER_LEN {
                    return None;
                }
                let header = FrameHeader::parse(self.header);
                if !self.accepts(&header) {
                    // `header` holds the bytes up to `at`: rescan them.
                    return Some(at);
                }
                self.header_len = 0;
                self.begin(header);
                if header.length == 0 {
                    self.finish(ts_ns, sink);
                }
                continue;
            };
            let take = current.remaining.min(rest.len());
            let kept = self.payload.len().saturating_sub(self.payload_start);
            let keep = current.keep.saturating_sub(kept).min(take);
            self.payload
                .extend_from_slice(rest.get(..keep).unwrap_or_default());
            current.remaining -= take;
            at += take;
            if current.remaining == 0 {
                self.finish(ts_ns, sink);
            }
        }
        None
    }

    /// Whether `header` may come next; else we are not at a boundary.
    fn accepts(&self, header: &FrameHeader) -> bool {
        if !header.is_valid() {
            return false;
        }
        let continues = header.kind == FrameType::Continuation;
        match &self.open_block {
            Some(block) => continues && header.stream == block.stream,
            None => !continues,
        }
    }

    fn begin(&mut self, header: FrameHeader) {
        let length = header.length as usize;
        let keep = match header.kind {
            FrameType::Data => usize::from(header.has(PADDED)),
            FrameType::Headers | FrameType::PushPromise | FrameType::Continuation => {
                length.min(MAX_BLOCK + MAX_BLOCK_FRAME_EXTRA)
            }
            FrameType::Settings => MAX_SETTINGS_BYTES,
            FrameType::RstStream => 4,
            _ => 0,
        };
        if header.kind != FrameType::Continuation {
            self.payload.clear();
        }
        self.payload_start = self.payload.len();
        self.current = Some(Current {
            header,
            start_ns: self.header_start_ns,
            remaining: length,
            keep,
            damaged: false,
        });
    }

    /// The current frame's payload is complete (or given up on).
    fn finish(&mut self, ts_ns: u64, sink: &mut impl FrameSink) {
        let Some(current) = self.current.take() else {
            return;
        };
        let header = current.header;
        let payload = self.payload.get(self.payload_start..).unwrap_or_default();
        let complete = !current.damaged && payload.len() == header.length as usize;
        match header.kind {
            FrameType::Data => {
                let padding = if header.has(PADDED) {
                    let pad = if current.damaged {
                        0
                    } else {
                        payload.first().copied().unwrap_or(0)
                    };
                    1 + u64::from(pad)
                } else {
                    0
                };
                sink.frame(
                    self.side,
                    ts_ns,
                    Frame::Data {
                        stream: header.stream,
                        len: u64::from(header.length).saturating_sub(padding),
                        end_stream: header.has(END_STREAM),
                    },
                );
                self.payload.clear();
            }
            FrameType::Headers | FrameType::PushPromise => {
                let fragment = if complete {
                    fragment(&header, payload)
                } else {
                    None
                };
                let lost = fragment.is_none();
                self.keep_fragment(fragment);
                self.open_block = Some(OpenBlock {
                    stream: header.stream,
                    end_stream: header.has(END_STREAM),
                    push_promise: header.kind == FrameType::PushPromise,
                    start_ns: current.start_ns,
                    lost,
                });
                self.end_of_block_fragment(&header, ts_ns, sink);
            }
            FrameType::Continuation => {
                let fragment = complete.then_some(0..payload.len());
                if fragment.is_none() {
                    if let Some(block) = self.open_block.as_mut() {
                        block.lost = true;
                    }
                }
                self.keep_fragment(fragment);
                self.end_of_block_fragment(&header, ts_ns, sink);
            }
            FrameType::RstStream => {
                let code = complete
                    .then(|| payload.try_into().ok().map(u32::from_be_bytes))
                    .flatten();
                sink.frame(
                    self.side,
                    ts_ns,
                    Frame::RstStream {
                        stream: header.stream,
                        code,
                    },
                );
                self.payload.clear();
            }
            FrameType::Settings => {
                if !header.has(super::frame::ACK) && !current.damaged {
                    let header_table_size = settings(payload)
                        .filter(|(id, _)| *id == SETTINGS_HEADER_TABLE_SIZE)
                        .map(|(_, value)| value)
                        .last();
                    sink.frame(self.side, ts_ns, Frame::Settings { header_table_size });
                }
                self.payload.clear();
            }
            _ => self.payload.clear(),
        }
    }

    /// Keeps only `range` of the current frame's payload as its fragment;
    /// `None` drops the block's bytes (it is lost).
    fn keep_fragment(&mut self, range: Option<std::ops::Range<usize>>) {
        match range {
            Some(range) => {
                let start = self.payload_start.min(self.payload.len());
                let end = (start + range.end).min(self.payload.len());
                let from = (start + range.start).min(end);
                self.payload.truncate(end);
                self.payload.drain(start..from);
                if self.payload.len() > MAX_BLOCK {
                    if let Some(block) = self.open_block.as_mut() {
                        block.lost = true;
                    }
                    self.payload.clear();
                }
            }
            None => self.payload.clear(),
        }
        if self.open_block.as_ref().is_some_and(|b| b.lost) {
            self.payload.clear();
        }
        self.payload_start = self.payload.len();
    }

    fn end_of_block_fragment(
        &mut self,
        header: &FrameHeader,
        ts_ns: u64,
        sink: &mut impl FrameSink,
    ) {
        if !header.has(END_HEADERS) {
            return;
        }
        let Some(block) = self.open_block.take() else {
            return;
        };
        sink.frame(
            self.side,
            ts_ns,
            Frame::Headers {
                stream: block.stream,
                block: (!block.lost).then_some(self.payload.as_slice()),
                end_stream: block.end_stream,
                push_promise: block.push_promise,
                start_ns: block.start_ns,
            },
        );
        self.payload.clear();
        self.payload_start = 0;
    }
}

/// The header block fragment inside a complete HEADERS or `PUSH_PROMISE`
/// payload, without padding, priority or promised stream id; `None` when
/// the padding is longer than the payload.
fn fragment(header: &FrameHeader, payload: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    let mut pad = 0;
    if header.has(PADDED) {
        pad = usize::from(*payload.first()?);
        start += 1;
    }
    match header.kind {
        FrameType::Headers if header.has(PRIORITY) => start += 5,
        FrameType::PushPromise => start += 4,
        _ => {}
    }
    let end = payload.len().checked_sub(pad)?;
    (start <= end).then_some(start..end)
}

#[cfg(test)]
mod tests;
