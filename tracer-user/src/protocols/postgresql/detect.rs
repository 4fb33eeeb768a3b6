//! Recognising PostgreSQL from the first bytes of one direction.

use super::format::{probe_typed, TYPED_HEADER_LEN};
use super::messages::{
    body_len_from, valid_client_message, valid_server_message, CANCEL_REQUEST, CLIENT_TYPES,
    GSSENC_REQUEST, MAX_STARTUP_LEN, PROTOCOL_3, SERVER_TYPES, SSL_REQUEST,
};
use crate::protocols::sql::framing::Probe;
use crate::protocols::Side;

/// Whether `data`, the first bytes seen in one direction of a connection
/// (possibly caught mid-stream), look like PostgreSQL, and from which side.
///
/// A client is recognised by its `StartupMessage`, `SSLRequest`, `GSSENCRequest`
/// or `CancelRequest`, or by a complete, well-formed frontend message that is
/// followed by another (or is one of the kinds that carry enough structure
/// alone, such as Query). A server is recognised the same way by backend
/// messages (authentication requests, row descriptions, data rows, ...).
/// Every length and field is checked, so HTTP, Redis and other text
/// protocols are not claimed. No allocation.
pub fn detect(data: &[u8]) -> Option<Side> {
    if data.first() == Some(&0) {
        return startup_family(data).then_some(Side::Client);
    }
    if chain_looks_right(data, CLIENT_TYPES, valid_client_message, b"QPBEFDCf")
        || query_prefix(data)
    {
        return Some(Side::Client);
    }
    if chain_looks_right(data, SERVER_TYPES, valid_server_message, b"RZTDCESKAt") {
        return Some(Side::Server);
    }
    None
}

fn startup_family(data: &[u8]) -> bool {
    let (Some(len), Some(code)) = (be_u32(data, 0), be_u32(data, 4)) else {
        return false;
    };
    match code {
        PROTOCOL_3 => (9..=MAX_STARTUP_LEN).contains(&len),
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        _ => false,
    }
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// A complete valid message, then either another plausible one or the end
/// of the data (for message types distinctive enough alone).
fn chain_looks_right(
    data: &[u8],
    types: &[u8],
    validate: fn(u8, &[u8]) -> bool,
    distinctive_alone: &[u8],
) -> bool {
    if probe_typed(data, types, validate) != Probe::Valid {
        return false;
    }
    let Some(first_len) = data
        .get(1..TYPED_HEADER_LEN)
        .and_then(body_len_from)
        .map(|body| body + TYPED_HEADER_LEN)
    else {
        return false;
    };
    let rest = data.get(first_len..).unwrap_or_default();
    if rest.is_empty() {
        return data
            .first()
            .is_some_and(|ty| distinctive_alone.contains(ty));
    }
    probe_typed(rest, types, validate) != Probe::Invalid
}

/// The start of a Query too long to be in `data` whole: plausible length
/// and a good stretch of text with no NUL.
fn query_prefix(data: &[u8]) -> bool {
    const MIN_TEXT: usize = 16;
    if data.first() != Some(&b'Q') {
        return false;
    }
    let Some(body_len) = data.get(1..TYPED_HEADER_LEN).and_then(body_len_from) else {
        return false;
    };
    let text = data.get(TYPED_HEADER_LEN..).unwrap_or_default();
    body_len > text.len()
        && text.len() >= MIN_TEXT
        && text
            .iter()
            .all(|&b| (b >= 0x20 && b != 0x7f) || matches!(b, b'\t' | b'\n' | b'\r'))
        && text.first().is_some_and(|b| {
            b.is_ascii_alphabetic()
                || b.is_ascii_whitespace()
                || *b == b'('
                || *b == b'/'
                || *b == b'-'
        })
}
