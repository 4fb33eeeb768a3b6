//! HTTP/2 frame headers (RFC 9113 section 4.1) and the rules that tell a
//! frame boundary from arbitrary bytes.

/// Every frame starts with this many bytes.
pub(super) const HEADER_LEN: usize = 9;
/// What a client sends first on a prior-knowledge (h2c) connection.
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// `SETTINGS_MAX_FRAME_SIZE`'s initial value. Peers may allow larger
/// frames, but when guessing where a frame starts we only trust sizes a
/// peer may always send.
pub(super) const DEFAULT_MAX_FRAME: u32 = 16_384;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY: u8 = 0x20;

/// Settings identifiers (RFC 9113 6.5.2).
pub(super) const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub(super) const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub(super) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(super) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FrameType {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    /// Extension frames, which receivers ignore (RFC 9113 4.1).
    Unknown(u8),
}

impl FrameType {
    fn from_u8(value: u8) -> FrameType {
        match value {
            0 => FrameType::Data,
            1 => FrameType::Headers,
            2 => FrameType::Priority,
            3 => FrameType::RstStream,
            4 => FrameType::Settings,
            5 => FrameType::PushPromise,
            6 => FrameType::Ping,
            7 => FrameType::GoAway,
            8 => FrameType::WindowUpdate,
            9 => FrameType::Continuation,
            other => FrameType::Unknown(other),
        }
    }

    /// The flags defined for this type.
    fn defined_flags(self) -> u8 {
        match self {
            FrameType::Data => END_STREAM | PADDED,
            FrameType::Headers => END_STREAM | END_HEADERS | PADDED | PRIORITY,
            FrameType::Settings | FrameType::Ping => ACK,
            FrameType::PushPromise => END_HEADERS | PADDED,
            FrameType::Continuation => END_HEADERS,
            FrameType::Priority
            | FrameType::RstStream
            | FrameType::GoAway
            | FrameType::WindowUpdate
            | FrameType::Unknown(_) => 0,
        }
    }

    /// Frames that belong to a stream (and so need a stream id other
    /// than 0), as opposed to the connection.
    fn on_stream(self) -> Option<bool> {
        match self {
            FrameType::Data
            | FrameType::Headers
            | FrameType::Priority
            | FrameType::RstStream
            | FrameType::PushPromise
            | FrameType::Continuation => Some(true),
            FrameType::Settings | FrameType::Ping | FrameType::GoAway => Some(false),
            FrameType::WindowUpdate | FrameType::Unknown(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrameHeader {
    pub length: u32,
    pub kind: FrameType,
    pub flags: u8,
    pub stream: u32,
    /// The bit before the stream id, which senders must leave clear.
    pub reserved: bool,
}

impl FrameHeader {
    pub fn parse(bytes: [u8; HEADER_LEN]) -> FrameHeader {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = bytes;
        let stream = u32::from_be_bytes([s0, s1, s2, s3]);
        FrameHeader {
            length: u32::from_be_bytes([0, l0, l1, l2]),
            kind: FrameType::from_u8(kind),
            flags,
            stream: stream & 0x7fff_ffff,
            reserved: stream & 0x8000_0000 != 0,
        }
    }

    /// The first [`HEADER_LEN`] bytes of `bytes` as a header.
    pub fn parse_prefix(bytes: &[u8]) -> Option<FrameHeader> {
        let head: [u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        Some(FrameHeader::parse(head))
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether a peer could send this frame without the connection
    /// failing: sizes fixed by the type, stream ids where the type needs
    /// them. A frame breaking these means we are not at a frame boundary.
    /// Unknown flags and the reserved bit are ignored, as receivers must.
    pub fn is_valid(&self) -> bool {
        let len = self.length;
        let padded = u32::from(self.has(PADDED));
        let stream_ok = match self.kind.on_stream() {
            Some(true) => self.stream != 0,
            Some(false) => self.stream == 0,
            None => true,
        };
        let length_ok = match self.kind {
            FrameType::Data => len >= padded,
            FrameType::Headers => len >= padded + if self.has(PRIORITY) { 5 } else { 0 },
            FrameType::Priority => len == 5,
            FrameType::RstStream | FrameType::WindowUpdate => len == 4,
            FrameType::Settings => len.is_multiple_of(6) && !(self.has(ACK) && len != 0),
            FrameType::PushPromise => len >= padded + 4,
            FrameType::Ping => len == 8,
            FrameType::GoAway => len >= 8,
            FrameType::Continuation | FrameType::Unknown(_) => true,
        };
        stream_ok && length_ok
    }

    /// Whether these bytes are believable as a frame start when we do not
    /// know where frames start (detection, resynchronisation): valid, of a
    /// known type, with only defined flags, the reserved bit clear and a
    /// size any peer may send.
    pub fn is_plausible(&self) -> bool {
        !matches!(self.kind, FrameType::Unknown(_))
            && self.is_valid()
            && !self.reserved
            && self.flags & !self.kind.defined_flags() == 0
            && self.length <= DEFAULT_MAX_FRAME
    }

    /// Whether a header block stays open after this frame.
    pub fn opens_block(&self) -> bool {
        matches!(
            self.kind,
            FrameType::Headers | FrameType::PushPromise | FrameType::Continuation
        ) && !self.has(END_HEADERS)
    }

    /// Whether `next` may follow this frame on the same side: a header
    /// block left open must go on with a CONTINUATION of its stream, and a
    /// CONTINUATION needs such an open block.
    pub fn may_precede(&self, next: &FrameHeader) -> bool {
        let continues = next.kind == FrameType::Continuation;
        if self.opens_block() {
            continues && next.stream == self.stream
        } else {
            !continues
        }
    }
}

/// The settings of a SETTINGS payload, as (identifier, value) pairs.
pub(super) fn settings(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload.chunks_exact(6).map(|pair| {
        let [i0, i1, v0, v1, v2, v3] = <[u8; 6]>::try_from(pair).unwrap_or_default();
        (
            u16::from_be_bytes([i0, i1]),
            u32::from_be_bytes([v0, v1, v2, v3]),
        )
    })
}

/// Whether every known setting in `payload` has a legal value (RFC 9113
/// 6.5.2); unknown identifiers must be ignored, so they pass.
pub(super) fn settings_are_legal(payload: &[u8]) -> bool {
    settings(payload).all(|(id, value)| match id {
        SETTINGS_ENABLE_PUSH => value <= 1,
        SETTINGS_INITIAL_WINDOW_SIZE => value <= 0x7fff_ffff,
        SETTINGS_MAX_FRAME_SIZE => (DEFAULT_MAX_FRAME..=0x00ff_ffff).contains(&value),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: [u8; 9]) -> FrameHeader {
        FrameHeader::parse(bytes)
    }

    #[test]
    fn parses_fields() {
        let h = header([0x00, 0x01, 0x02, 0x01, 0x25, 0x80, 0x00, 0x00, 0x0d]);
        assert_eq!(h.length, 258);
        assert_eq!(h.kind, FrameType::Headers);
        assert!(h.has(END_STREAM) && h.has(END_HEADERS) && h.has(PRIORITY) && !h.has(PADDED));
        assert_eq!(h.stream, 13);
        assert!(h.reserved);
        assert!(h.is_valid());
        assert!(!h.is_plausible(), "reserved bit set");
    }

    #[test]
    fn validity_rules() {
        let valid = [
            [0, 0, 8, 6, 0, 0, 0, 0, 0],    // PING
            [0, 0, 4, 3, 0, 0, 0, 0, 1],    // RST_STREAM
            [0, 0, 0, 4, 1, 0, 0, 0, 0],    // SETTINGS ACK
            [0, 0, 12, 4, 0, 0, 0, 0, 0],   // SETTINGS
            [0, 0, 0, 0, 1, 0, 0, 0, 1],    // empty DATA, END_STREAM
            [0, 0, 4, 8, 0, 0, 0, 0, 0],    // WINDOW_UPDATE
            [0, 0, 5, 2, 0, 0, 0, 0, 3],    // PRIORITY
            [0, 0, 20, 7, 0, 0, 0, 0, 0],   // GOAWAY
            [0, 0, 3, 0xfa, 0, 0, 0, 0, 0], // extension frame
        ];
        for bytes in valid {
            assert!(header(bytes).is_valid(), "{bytes:?}");
        }
        let invalid = [
            [0, 0, 7, 6, 0, 0, 0, 0, 0],    // PING of 7 bytes
            [0, 0, 8, 6, 0, 0, 0, 0, 1],    // PING on a stream
            [0, 0, 4, 3, 0, 0, 0, 0, 0],    // RST_STREAM on stream 0
            [0, 0, 6, 4, 1, 0, 0, 0, 0],    // SETTINGS ACK with payload
            [0, 0, 7, 4, 0, 0, 0, 0, 0],    // SETTINGS of 7 bytes
            [0, 0, 1, 0, 0, 0, 0, 0, 0],    // DATA on stream 0
            [0, 0, 0, 0, 8, 0, 0, 0, 1],    // PADDED without a pad length
            [0, 0, 4, 1, 0x20, 0, 0, 0, 1], // PRIORITY flag, 4 bytes
            [0, 0, 3, 5, 0, 0, 0, 0, 1],    // PUSH_PROMISE of 3 bytes
        ];
        for bytes in invalid {
            assert!(!header(bytes).is_valid(), "{bytes:?}");
        }
    }

    #[test]
    fn plausibility_is_stricter() {
        assert!(
            !header([0, 0, 3, 0xfa, 0, 0, 0, 0, 0]).is_plausible(),
            "unknown type"
        );
        assert!(
            !header([0, 0, 1, 0, 0x2, 0, 0, 0, 1]).is_plausible(),
            "undefined flag"
        );
        assert!(
            !header([0, 0x40, 1, 0, 0, 0, 0, 0, 1]).is_plausible(),
            "over 16 KiB"
        );
        assert!(header([0, 0x40, 0, 0, 0, 0, 0, 0, 1]).is_plausible());
        // What other protocols start with.
        for text in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"*1\r\n$4\r\nPING\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc",
        ] {
            assert!(!FrameHeader::parse_prefix(text).unwrap().is_plausible());
        }
    }

    #[test]
    fn continuation_sequencing() {
        let open = header([0, 0, 1, 1, 0, 0, 0, 0, 1]);
        let cont = header([0, 0, 1, 9, 4, 0, 0, 0, 1]);
        let other = header([0, 0, 1, 9, 4, 0, 0, 0, 3]);
        let data = header([0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert!(open.may_precede(&cont));
        assert!(!open.may_precede(&other));
        assert!(!open.may_precede(&data));
        assert!(!data.may_precede(&cont));
        assert!(cont.may_precede(&data));
    }

    #[test]
    fn settings_values() {
        let nginx = [
            0, 3, 0, 0, 0, 0x80, 0, 4, 0, 1, 0, 0, 0, 5, 0, 0xff, 0xff, 0xff,
        ];
        assert_eq!(
            settings(&nginx).collect::<Vec<_>>(),
            [(3, 128), (4, 65536), (5, 0xff_ffff)]
        );
        assert!(settings_are_legal(&nginx));
        assert!(!settings_are_legal(&[0, 2, 0, 0, 0, 2]));
        assert!(!settings_are_legal(&[0, 5, 0, 0, 0, 1]));
        assert!(
            settings_are_legal(&[0xfe, 3, 0, 0, 0, 1]),
            "unknown ids are ignored"
        );
    }
}
