//! Recognising HTTP/2 (cleartext, prior knowledge) from a connection's
//! first captured bytes, and which side sent them.

use crate::protocols::Side;

use super::frame::{
    settings_are_legal, FrameHeader, FrameType, END_HEADERS, HEADER_LEN, PADDED, PREFACE, PRIORITY,
};
use super::hpack::{Decoder, Field};

/// A preface cut short is trusted from this many bytes on
/// (`PRI * HT`): no other protocol we know starts like this.
const MIN_PREFACE_PREFIX: usize = 8;
/// Frames looked at when guessing from the middle of a connection.
const MAX_FRAMES: usize = 16;

/// `Client` for the connection preface, `Server` for a server's opening
/// SETTINGS frame. For a connection caught mid-stream, bytes that cut into
/// a sequence of plausible frames, where a HEADERS frame tells the side: a
/// request pseudo-header (`:method`, `:path`...) from the client, `:status`
/// from the server. Anything else is not claimed.
pub fn detect(data: &[u8]) -> Option<Side> {
    if is_preface(data) {
        return Some(Side::Client);
    }
    if is_server_opening(data) {
        return Some(Side::Server);
    }
    side_of_frames(data)
}

fn is_preface(data: &[u8]) -> bool {
    if data.len() >= PREFACE.len() {
        data.starts_with(PREFACE)
    } else {
        data.len() >= MIN_PREFACE_PREFIX && PREFACE.starts_with(data)
    }
}

/// A SETTINGS frame (not an acknowledgement) with legal values, followed
/// by nothing or by another plausible frame: what a server sends first.
pub(super) fn is_server_opening(data: &[u8]) -> bool {
    let Some(header) = FrameHeader::parse_prefix(data) else {
        return false;
    };
    if header.kind != FrameType::Settings || header.flags != 0 || !header.is_plausible() {
        return false;
    }
    let end = HEADER_LEN + header.length as usize;
    let Some(payload) = data.get(HEADER_LEN..end) else {
        return false;
    };
    if !settings_are_legal(payload) {
        return false;
    }
    match data.get(end..) {
        Some(rest) if rest.len() >= HEADER_LEN => {
            FrameHeader::parse_prefix(rest).is_some_and(|next| next.is_plausible())
        }
        _ => true,
    }
}

/// The side that sent `data`, when it is a run of plausible frames (the
/// last may be cut short) holding a HEADERS frame that tells.
fn side_of_frames(data: &[u8]) -> Option<Side> {
    let mut at = 0;
    let mut previous: Option<FrameHeader> = None;
    let mut complete_frames = 0;
    let mut side = None;
    for _ in 0..MAX_FRAMES {
        let Some(header) = data.get(at..).and_then(FrameHeader::parse_prefix) else {
            break;
        };
        let sequence_ok = previous.map_or(header.kind != FrameType::Continuation, |p| {
            p.may_precede(&header)
        });
        if !header.is_plausible() || !sequence_ok {
            return None;
        }
        let payload_at = at + HEADER_LEN;
        let end = payload_at + header.length as usize;
        let Some(payload) = data.get(payload_at..end) else {
            break;
        };
        complete_frames += 1;
        if side.is_none() {
            side = side_of_frame(&header, payload);
        }
        previous = Some(header);
        at = end;
    }
    let whole = at == data.len();
    // One frame alone proves little unless it is all there is.
    (complete_frames >= 2 || (complete_frames == 1 && whole))
        .then_some(side)
        .flatten()
}

fn side_of_frame(header: &FrameHeader, payload: &[u8]) -> Option<Side> {
    match header.kind {
        FrameType::PushPromise => Some(Side::Server),
        FrameType::Headers => {
            let mut start = 0;
            let mut end = payload.len();
            if header.has(PADDED) {
                start += 1;
                end = end.checked_sub(usize::from(*payload.first()?))?;
            }
            if header.has(PRIORITY) {
                start += 5;
            }
            let fragment = payload.get(start..end)?;
            let side = side_of_block(fragment, header.has(END_HEADERS))?;
            // Requests only open odd (client-initiated) streams.
            (side == Side::Server || header.stream % 2 == 1).then_some(side)
        }
        _ => None,
    }
}

/// Reads a header block (or its first fragment) with no dynamic table
/// known: static-table and literal fields still decode.
fn side_of_block(fragment: &[u8], whole_block: bool) -> Option<Side> {
    let mut side = None;
    let mut decoder = Decoder::new();
    let result = decoder.decode(fragment, |field| {
        if side.is_some() {
            return;
        }
        if let Field {
            name: Some(name), ..
        } = field
        {
            side = match name {
                b":method" | b":scheme" | b":path" | b":authority" => Some(Side::Client),
                b":status" => Some(Side::Server),
                _ => None,
            };
        }
    });
    // A fragment may stop inside a field; a whole block may not.
    (result.is_ok() || !whole_block).then_some(side).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn preface_whole_and_cut() {
        assert_eq!(detect(PREFACE), Some(Side::Client));
        let mut with_settings = PREFACE.to_vec();
        with_settings.extend(frame(4, 0, 0, &[]));
        assert_eq!(detect(&with_settings), Some(Side::Client));
        assert_eq!(detect(&PREFACE[..8]), Some(Side::Client));
        assert_eq!(detect(&PREFACE[..7]), None);
        assert_eq!(detect(b"PRI * HTTP/2.1\r\n\r\nSM\r\n\r\n"), None);
    }

    #[test]
    fn server_settings() {
        let nginx = frame(
            4,
            0,
            0,
            &[
                0, 3, 0, 0, 0, 0x80, 0, 4, 0, 1, 0, 0, 0, 5, 0, 0xff, 0xff, 0xff,
            ],
        );
        assert_eq!(detect(&nginx), Some(Side::Server));
        let mut more = nginx.clone();
        more.extend(frame(8, 0, 0, &[0, 0, 0x7f, 0xff]));
        assert_eq!(detect(&more), Some(Side::Server));
        assert_eq!(detect(&frame(4, 0, 0, &[])), Some(Side::Server));
        // An acknowledgement, bad values, or junk after it.
        assert_eq!(detect(&frame(4, 1, 0, &[])), None);
        assert_eq!(detect(&frame(4, 0, 0, &[0, 2, 0, 0, 0, 7])), None);
        let mut junk = nginx;
        junk.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(detect(&junk), None);
    }

    #[test]
    fn mid_stream_headers_tell_the_side() {
        // :method POST, :scheme http, then an unknown dynamic entry.
        let request = frame(1, 0x4, 13, &[0x83, 0x86, 0xbe]);
        let mut client = request.clone();
        client.extend(frame(0, 1, 13, b"hello"));
        assert_eq!(detect(&client), Some(Side::Client));
        assert_eq!(detect(&request), Some(Side::Client), "one frame, exactly");
        // :status 200, dynamic entries.
        let mut server = frame(1, 0x4, 13, &[0x88, 0xc0, 0xbf]);
        server.extend(frame(0, 0, 13, &[0; 18]));
        assert_eq!(detect(&server), Some(Side::Server));
        // A request on an even stream is not one.
        assert_eq!(detect(&frame(1, 0x4, 2, &[0x82, 0x84])), None);
        // Frames without HEADERS do not tell.
        let mut pings = frame(6, 0, 0, &[0; 8]);
        pings.extend(frame(8, 0, 0, &[0, 0, 0, 1]));
        assert_eq!(detect(&pings), None);
    }

    #[test]
    fn other_protocols_are_not_claimed() {
        let others: [&[u8]; 8] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"*1\r\n$4\r\nPING\r\n",
            b"+OK\r\n",
            b"get foo\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"\x00\x1c\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01",
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        ];
        for data in others {
            assert_eq!(detect(data), None, "{data:?}");
        }
    }

    #[test]
    fn random_bytes_are_not_claimed() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut claimed = 0;
        for _ in 0..20_000 {
            let len = rng.usize(1..64);
            let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if detect(&data).is_some() {
                claimed += 1;
            }
        }
        assert_eq!(claimed, 0);
    }
}
