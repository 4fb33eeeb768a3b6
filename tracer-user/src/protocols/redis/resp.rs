//! Incremental RESP2/RESP3 framing of one direction of a connection.
//!
//! The reader finds where each top-level value ends without buffering bulk
//! payloads (a `GET` of a 100 MiB value costs nothing), and keeps only a
//! bounded prefix of the value's direct items: enough for the command name,
//! its arguments, an error's code or a pub/sub push's kind.

/// Longest simple string, error or inline command kept while waiting for its
/// line end; redis itself refuses inline commands longer than 64 KiB.
const MAX_TEXT_LINE: usize = 64 * 1024;
/// Longest header or number line (`*<n>`, `:<n>`, `,<double>`, ...). Real
/// ones are a few bytes; the bound rejects binary garbage early.
const MAX_NUMBER_LINE: usize = 512;
/// redis' default `proto-max-bulk-len`.
const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// redis refuses multibulk lengths above `INT_MAX`.
const MAX_AGGREGATE_LEN: i64 = 0x7fff_ffff;
/// Nesting of aggregates; redis replies nest a few levels (COMMAND DOCS: 6).
const MAX_DEPTH: usize = 32;

/// Which stream the reader frames: they differ in what is legal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Client to server: arrays of bulk strings, or inline command lines.
    Commands,
    /// Server to client: any RESP2/RESP3 value.
    Replies,
}

/// How much of a value's direct items the reader keeps.
#[derive(Clone, Copy, Debug)]
pub(super) struct CaptureLimits {
    pub items: usize,
    pub bytes_per_item: usize,
}

/// One captured direct item of a value.
#[derive(Clone, Copy, Debug)]
struct Item {
    start: usize,
    end: usize,
    truncated: bool,
}

/// What the reader keeps of the top-level value it is reading or just read.
#[derive(Debug, Default)]
pub(super) struct Value {
    /// Type byte: `*`, `+`, `-`, `$`, `>`, ... (`*` for inline commands).
    kind: u8,
    inline: bool,
    /// Direct items: elements of an aggregate (keys and values of a map), 1
    /// for a scalar, words of an inline command; -1 for a null.
    count: i64,
    bytes: Vec<u8>,
    items: Vec<Item>,
    start_ns: u64,
}

impl Value {
    pub fn kind(&self) -> u8 {
        self.kind
    }

    pub fn is_inline(&self) -> bool {
        self.inline
    }

    pub fn count(&self) -> i64 {
        self.count
    }

    /// When the value's first byte moved.
    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The captured bytes of direct item `index` (the scalar itself for a
    /// scalar value) and whether they were cut short. Nested aggregates are
    /// captured as empty items.
    pub fn item(&self, index: usize) -> Option<(&[u8], bool)> {
        let item = self.items.get(index)?;
        Some((self.bytes.get(item.start..item.end)?, item.truncated))
    }

    fn clear(&mut self, start_ns: u64) {
        self.kind = 0;
        self.inline = false;
        self.count = 0;
        self.bytes.clear();
        self.items.clear();
        self.start_ns = start_ns;
    }
}

/// What [`RespReader::advance`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// All input was consumed; the current value (if any) is unfinished.
    NeedMore,
    /// A top-level value ended; read it with [`RespReader::value`].
    Value,
    /// The bytes are not RESP (or break a limit); the reader must be reset.
    Invalid,
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// At a line: a type byte and header, a simple value or an inline command.
    Line,
    /// Inside a bulk payload (`$`, `!`, `=`).
    Payload { remaining: u64 },
    /// After a bulk payload, `left` bytes of its `\r\n` are still to come.
    PayloadEnd { left: u8 },
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    remaining: u64,
    /// RESP3 attributes (`|`) annotate the value that follows them and are
    /// not elements of their parent.
    attribute: bool,
}

/// Outcome of handling one complete line.
enum LineOutcome {
    Continue,
    ValueDone,
    /// An empty command (`*0`, blank inline line): redis ignores it.
    Ignored,
    Invalid,
}

pub(super) struct RespReader {
    role: Role,
    limits: CaptureLimits,
    state: State,
    /// The start of a line whose end has not arrived yet.
    partial_line: Vec<u8>,
    frames: Vec<Frame>,
    value: Value,
    in_value: bool,
    /// Index in `value.items` of the payload being read, if it is captured.
    capturing: Option<usize>,
}

impl RespReader {
    pub fn new(role: Role, limits: CaptureLimits) -> Self {
        RespReader {
            role,
            limits,
            state: State::Line,
            partial_line: Vec::new(),
            frames: Vec::new(),
            value: Value::default(),
            in_value: false,
            capturing: None,
        }
    }

    /// Forgets everything: the next byte is taken as the start of a value.
    pub fn reset(&mut self) {
        self.state = State::Line;
        self.partial_line.clear();
        self.frames.clear();
        self.value.clear(0);
        self.in_value = false;
        self.capturing = None;
    }

    /// The value that the last [`Event::Value`] reported.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Consumes `data` (sent at `ts_ns`) until a top-level value ends or the
    /// input runs out; returns how many bytes were consumed.
    pub fn advance(&mut self, data: &[u8], ts_ns: u64) -> (usize, Event) {
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|rest| !rest.is_empty()) {
            if !self.in_value {
                self.in_value = true;
                self.value.clear(ts_ns);
            }
            match self.state {
                State::Payload { remaining } => {
                    let take = usize::try_from(remaining).map_or(rest.len(), |r| r.min(rest.len()));
                    self.capture_payload(rest.get(..take).unwrap_or_default());
                    pos += take;
                    let remaining = remaining.saturating_sub(take as u64);
                    self.state = if remaining == 0 {
                        State::PayloadEnd { left: 2 }
                    } else {
                        State::Payload { remaining }
                    };
                }
                State::PayloadEnd { left } => {
                    let expected = if left == 2 { b'\r' } else { b'\n' };
                    if rest.first() != Some(&expected) {
                        return (pos, Event::Invalid);
                    }
                    // The whole line end almost always arrives with the
                    // payload: both bytes taken in one step.
                    let step = if left == 2 && rest.get(1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    };
                    pos += usize::from(step);
                    if left > step {
                        self.state = State::PayloadEnd { left: left - step };
                    } else {
                        self.state = State::Line;
                        self.capturing = None;
                        if self.element_done() {
                            return (pos, self.finish_value());
                        }
                    }
                }
                State::Line => {
                    let (taken, ended) = self.line_step(rest);
                    pos += taken;
                    if let Some(event) = ended {
                        return (pos, event);
                    }
                }
            }
        }
        (pos, Event::NeedMore)
    }

    /// One step in the `Line` state: a bulk string that is here whole, or
    /// a line (or the start of one, kept until its end arrives). Returns
    /// the bytes taken and, when the value ended or broke there, its event.
    fn line_step(&mut self, rest: &[u8]) -> (usize, Option<Event>) {
        if let Some(payload) = self.whole_bulk(rest) {
            let taken = self.take_whole_bulk(rest, payload);
            let ended = self.element_done().then(|| self.finish_value());
            return (taken, ended);
        }
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            if self.partial_line.len() + rest.len() > self.line_limit(rest)
                || !self.could_start_line(rest)
            {
                return (0, Some(Event::Invalid));
            }
            self.partial_line.extend_from_slice(rest);
            return (rest.len(), None);
        };
        let head = rest.get(..newline).unwrap_or_default();
        let mut line = std::mem::take(&mut self.partial_line);
        let outcome = if line.is_empty() {
            self.on_line(head)
        } else {
            line.extend_from_slice(head);
            self.on_line(&line)
        };
        line.clear();
        self.partial_line = line;
        let ended = match outcome {
            LineOutcome::Continue => None,
            LineOutcome::ValueDone => Some(self.finish_value()),
            LineOutcome::Ignored => {
                self.in_value = false;
                None
            }
            LineOutcome::Invalid => Some(Event::Invalid),
        };
        (newline + 1, ended)
    }

    /// A bulk string that arrived whole, where one is legal, as (payload
    /// start, payload end): the commonest RESP element (every argument of a
    /// command, a `GET`'s reply), read in one step instead of through the
    /// line, payload and line-end states. Anything else (a length with a
    /// sign or past 9 digits, a null, a bulk at a command's top level, bytes
    /// still to come) is `None`, left to those states, which read the same
    /// bytes to the same value.
    fn whole_bulk(&self, rest: &[u8]) -> Option<(usize, usize)> {
        if rest.first() != Some(&b'$')
            || !self.partial_line.is_empty()
            || (self.role == Role::Commands && self.frames.is_empty())
        {
            return None;
        }
        // MAX_BULK_LEN has 9 digits; u64 cannot overflow on as many.
        let mut len: u64 = 0;
        let mut at = 1;
        loop {
            let &byte = rest.get(at)?;
            if byte == b'\r' {
                break;
            }
            if !byte.is_ascii_digit() || at > 9 {
                return None;
            }
            len = len * 10 + u64::from(byte - b'0');
            at += 1;
        }
        if at == 1 || rest.get(at + 1) != Some(&b'\n') || len > MAX_BULK_LEN.unsigned_abs() {
            return None;
        }
        let start = at + 2;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        (rest.get(end..end.checked_add(2)?) == Some(b"\r\n")).then_some((start, end))
    }

    /// Reads the whole bulk string `rest` starts with, its payload at
    /// `start..end` (found by [`Self::whole_bulk`]), as the general path
    /// would; returns the bytes consumed. The caller ends the element.
    fn take_whole_bulk(&mut self, rest: &[u8], (start, end): (usize, usize)) -> usize {
        if self.frames.is_empty() {
            self.value.kind = b'$';
            self.value.count = 1;
        }
        // Captured at once, it is kept and marked truncated exactly as when
        // captured empty and then fed its payload.
        self.capture_item(rest.get(start..end).unwrap_or_default());
        end + 2
    }

    /// `len` bytes were lost: true if they fall inside the bulk payload being
    /// read (which is then cut short), false if the reader lost its place.
    pub fn skip_gap(&mut self, len: usize) -> bool {
        let State::Payload { remaining } = self.state else {
            return false;
        };
        let Ok(len) = u64::try_from(len) else {
            return false;
        };
        if len > remaining {
            return false;
        }
        let remaining = remaining - len;
        self.state = if remaining == 0 {
            State::PayloadEnd { left: 2 }
        } else {
            State::Payload { remaining }
        };
        if let Some(item) = self
            .capturing
            .and_then(|index| self.value.items.get_mut(index))
        {
            item.truncated = true;
        }
        true
    }

    fn finish_value(&mut self) -> Event {
        self.in_value = false;
        Event::Value
    }

    /// The longest a line starting like `rest` (or the partial line) may get.
    fn line_limit(&self, rest: &[u8]) -> usize {
        let first = self.partial_line.first().or(rest.first()).copied();
        let at_top = self.frames.is_empty();
        match first {
            Some(b'+' | b'-') => MAX_TEXT_LINE,
            Some(b'*') => MAX_NUMBER_LINE,
            _ if self.role == Role::Commands && at_top => MAX_TEXT_LINE,
            _ => MAX_NUMBER_LINE,
        }
    }

    /// Rejects an unfinished line early when its start (or, for an inline
    /// command, any byte) already rules it out, rather than buffering up to
    /// the line limit.
    fn could_start_line(&self, rest: &[u8]) -> bool {
        let Some(&first) = self.partial_line.first().or(rest.first()) else {
            return true;
        };
        let at_top = self.frames.is_empty();
        match self.role {
            Role::Commands if at_top && first != b'*' => !rest
                .iter()
                .any(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\r')) || b == 0x7f),
            Role::Commands if !at_top => first == b'$',
            Role::Commands => true,
            Role::Replies => b"+-:$*_#,(!=%~>|".contains(&first),
        }
    }

    fn on_line(&mut self, line: &[u8]) -> LineOutcome {
        let at_top = self.frames.is_empty();
        if self.role == Role::Commands && at_top && line.first() != Some(&b'*') {
            return self.on_inline_command(line);
        }
        let Some(body) = line.strip_suffix(b"\r") else {
            return LineOutcome::Invalid;
        };
        let Some((&kind, body)) = body.split_first() else {
            return LineOutcome::Invalid;
        };
        if self.role == Role::Commands && !at_top && kind != b'$' {
            return LineOutcome::Invalid;
        }
        match kind {
            b'*' | b'%' | b'~' | b'>' | b'|' => self.on_aggregate_header(kind, body),
            b'$' | b'!' | b'=' => self.on_bulk_header(kind, body),
            b'+' | b'-' => self.on_scalar(kind, body),
            b':' | b'(' if is_integer(body) => self.on_scalar(kind, body),
            b',' if is_double(body) => self.on_scalar(kind, body),
            b'#' if body == b"t" || body == b"f" => self.on_scalar(kind, body),
            b'_' if body.is_empty() => self.on_scalar(kind, body),
            _ => LineOutcome::Invalid,
        }
    }

    fn on_inline_command(&mut self, line: &[u8]) -> LineOutcome {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return LineOutcome::Invalid;
        }
        let words = line
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|word| !word.is_empty());
        let mut count: i64 = 0;
        for word in words {
            self.capture_item(word);
            count += 1;
        }
        if count == 0 {
            return LineOutcome::Ignored;
        }
        self.value.kind = b'*';
        self.value.inline = true;
        self.value.count = count;
        LineOutcome::ValueDone
    }

    fn on_aggregate_header(&mut self, kind: u8, body: &[u8]) -> LineOutcome {
        let Some(declared) = parse_integer(body) else {
            return LineOutcome::Invalid;
        };
        let at_top = self.frames.is_empty();
        if declared == -1 && kind == b'*' && self.role == Role::Replies {
            // RESP2 null array.
            return self.on_scalar(kind, b"");
        }
        if self.role == Role::Commands && declared <= 0 {
            return if declared == 0 || declared == -1 {
                LineOutcome::Ignored
            } else {
                LineOutcome::Invalid
            };
        }
        if !(0..=MAX_AGGREGATE_LEN).contains(&declared) {
            return LineOutcome::Invalid;
        }
        let Ok(declared) = u64::try_from(declared) else {
            return LineOutcome::Invalid;
        };
        let items = if kind == b'%' || kind == b'|' {
            declared * 2
        } else {
            declared
        };
        let attribute = kind == b'|';
        if at_top && !attribute {
            self.value.kind = kind;
            self.value.count = i64::try_from(items).unwrap_or(i64::MAX);
        } else if !attribute {
            self.capture_item(b"");
        }
        if items == 0 {
            if attribute {
                return LineOutcome::Continue;
            }
            return if self.element_done() {
                LineOutcome::ValueDone
            } else {
                LineOutcome::Continue
            };
        }
        if self.frames.len() >= MAX_DEPTH {
            return LineOutcome::Invalid;
        }
        self.frames.push(Frame {
            remaining: items,
            attribute,
        });
        LineOutcome::Continue
    }

    fn on_bulk_header(&mut self, kind: u8, body: &[u8]) -> LineOutcome {
        let Some(len) = parse_integer(body) else {
            return LineOutcome::Invalid;
        };
        if len == -1 && kind == b'$' && self.role == Role::Replies {
            // RESP2 null bulk string.
            return self.on_scalar(kind, b"");
        }
        if !(0..=MAX_BULK_LEN).contains(&len) {
            return LineOutcome::Invalid;
        }
        let Ok(len) = u64::try_from(len) else {
            return LineOutcome::Invalid;
        };
        if self.frames.is_empty() {
            self.value.kind = kind;
            self.value.count = 1;
        }
        self.capturing = self.capture_item(b"");
        self.state = if len == 0 {
            State::PayloadEnd { left: 2 }
        } else {
            State::Payload { remaining: len }
        };
        LineOutcome::Continue
    }

    fn on_scalar(&mut self, kind: u8, body: &[u8]) -> LineOutcome {
        if self.frames.is_empty() {
            self.value.kind = kind;
            self.value.count = if body.is_empty() && matches!(kind, b'*' | b'$') {
                -1
            } else {
                1
            };
        }
        self.capture_item(body);
        if self.element_done() {
            LineOutcome::ValueDone
        } else {
            LineOutcome::Continue
        }
    }

    /// Records a direct item of the top-level value (or the top-level scalar
    /// itself) while under the capture limit; returns its index.
    fn capture_item(&mut self, bytes: &[u8]) -> Option<usize> {
        let direct = match self.frames.as_slice() {
            [] => true,
            [top] => !top.attribute,
            _ => false,
        };
        if !direct || self.value.items.len() >= self.limits.items {
            return None;
        }
        let kept = bytes.len().min(self.limits.bytes_per_item);
        let start = self.value.bytes.len();
        self.value
            .bytes
            .extend_from_slice(bytes.get(..kept).unwrap_or_default());
        self.value.items.push(Item {
            start,
            end: self.value.bytes.len(),
            truncated: kept < bytes.len(),
        });
        Some(self.value.items.len() - 1)
    }

    fn capture_payload(&mut self, chunk: &[u8]) {
        let Some(index) = self.capturing else {
            return;
        };
        let limit = self.limits.bytes_per_item;
        let Some(item) = self.value.items.get_mut(index) else {
            return;
        };
        let room = limit.saturating_sub(item.end - item.start);
        let kept = chunk.len().min(room);
        // Items are captured one at a time, so this one is last in `bytes`.
        self.value
            .bytes
            .extend_from_slice(chunk.get(..kept).unwrap_or_default());
        item.end = self.value.bytes.len();
        if kept < chunk.len() {
            item.truncated = true;
        }
    }

    /// One element (scalar or closed aggregate) ended: closes the aggregates
    /// it completes. True when the top-level value is complete.
    fn element_done(&mut self) -> bool {
        loop {
            let Some(frame) = self.frames.last_mut() else {
                return true;
            };
            frame.remaining = frame.remaining.saturating_sub(1);
            if frame.remaining > 0 {
                return false;
            }
            let closed = self.frames.pop();
            if closed.is_some_and(|frame| frame.attribute) {
                // The attributed value itself is still to come.
                return false;
            }
        }
    }
}

/// `-?[0-9]{1,19}` without overflow.
pub(super) fn parse_integer(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', digits)) => (true, digits),
        Some((b'+', digits)) => (false, digits),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut magnitude: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(i64::from(digit - b'0'))?;
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// Integers and RESP3 big numbers: an optional sign and digits.
fn is_integer(bytes: &[u8]) -> bool {
    let digits = match bytes.split_first() {
        Some((b'-' | b'+', digits)) => digits,
        _ => bytes,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// RESP3 doubles: `1.5`, `-2e10`, `inf`, `-inf`, `nan`.
fn is_double(bytes: &[u8]) -> bool {
    let unsigned = match bytes.split_first() {
        Some((b'-' | b'+', rest)) => rest,
        _ => bytes,
    };
    matches!(unsigned, b"inf" | b"nan")
        || (unsigned.first().is_some_and(u8::is_ascii_digit)
            && unsigned
                .iter()
                .all(|&b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+')))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reader makes of `bytes`: every value it ends (type byte,
    /// count, captured items) or where it found them invalid.
    #[derive(Debug, PartialEq)]
    enum Read {
        Value(u8, i64, Vec<(Vec<u8>, bool)>),
        Invalid,
    }

    const LIMITS: CaptureLimits = CaptureLimits {
        items: 3,
        bytes_per_item: 4,
    };

    /// `bytes` fed in chunks of `chunk` bytes.
    fn read(role: Role, bytes: &[u8], chunk: usize) -> Vec<Read> {
        let mut reader = RespReader::new(role, LIMITS);
        let mut found = Vec::new();
        for piece in bytes.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (used, event) = reader.advance(rest, 1);
                rest = rest.get(used..).unwrap_or_default();
                match event {
                    Event::NeedMore => {}
                    Event::Value => {
                        let value = reader.value();
                        let items = (0..)
                            .map_while(|i| value.item(i))
                            .map(|(bytes, truncated)| (bytes.to_vec(), truncated))
                            .collect();
                        found.push(Read::Value(value.kind(), value.count(), items));
                    }
                    Event::Invalid => {
                        found.push(Read::Invalid);
                        return found;
                    }
                }
            }
        }
        found
    }

    /// Byte by byte, no bulk string is ever whole in the input: the general
    /// path reads them all. In one piece, the whole-bulk step does.
    fn same_both_ways(role: Role, bytes: &[u8]) -> Vec<Read> {
        let whole = read(role, bytes, bytes.len().max(1));
        assert_eq!(
            read(role, bytes, 1),
            whole,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        whole
    }

    #[test]
    fn whole_bulk_strings_read_as_the_general_path_reads_them() {
        let commands: &[&[u8]] = &[
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$0\r\n\r\n",
            b"*2\r\n$3\r\nGET\r\n$03\r\nkey\r\n",
            b"*2\r\n$3\r\nGET\r\n$+3\r\nkey\r\n",
            b"*5\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n",
            b"*1\r\n$3\r\nabcXY",
            b"*1\r\n$3\r\nab",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$1234567890\r\nx\r\n",
            b"*1\r\n$536870913\r\nx\r\n",
            b"*1\r\n$\r\n\r\n",
            b"$3\r\nGET\r\n",
        ];
        for bytes in commands {
            same_both_ways(Role::Commands, bytes);
        }
        let replies: &[&[u8]] = &[
            b"$5\r\nhello\r\n$-1\r\n$0\r\n\r\n",
            b"*2\r\n$2\r\nok\r\n*1\r\n$3\r\nnested\r\n",
            b"%1\r\n$1\r\nk\r\n$1\r\nv\r\n|1\r\n$1\r\na\r\n$1\r\nb\r\n$2\r\nhi\r\n",
            b"$2\r\nhi\n\r",
        ];
        for bytes in replies {
            same_both_ways(Role::Replies, bytes);
        }
        // And what they read to, so neither way can be wrong alike.
        assert_eq!(
            same_both_ways(Role::Commands, commands[0]),
            [Read::Value(
                b'*',
                3,
                vec![
                    (b"SET".to_vec(), false),
                    (b"key:".to_vec(), true),
                    (Vec::new(), false)
                ]
            )]
        );
        assert_eq!(
            same_both_ways(Role::Replies, replies[0]),
            [
                Read::Value(b'$', 1, vec![(b"hell".to_vec(), true)]),
                Read::Value(b'$', -1, vec![(Vec::new(), false)]),
                Read::Value(b'$', 1, vec![(Vec::new(), false)]),
            ]
        );
        assert_eq!(same_both_ways(Role::Commands, commands[4]), [Read::Invalid]);
        assert_eq!(same_both_ways(Role::Commands, commands[5]), []);
        assert_eq!(same_both_ways(Role::Commands, commands[7]), [Read::Invalid]);
        assert_eq!(same_both_ways(Role::Replies, replies[3]), [Read::Invalid]);
    }
}
