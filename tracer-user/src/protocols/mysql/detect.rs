//! Recognising MySQL from the first bytes of one direction.

use super::packets::{
    header, printable, query_text, valid_command, valid_err, valid_greeting,
    valid_handshake_response, Reader, COM_QUERY, COM_STMT_PREPARE, HEADER_LEN,
};
use crate::protocols::Side;

/// Whether `data`, the first bytes seen in one direction of a connection
/// (possibly caught mid-stream), look like MySQL, and from which side.
///
/// Server: the greeting (sequence 0, protocol version 10, NUL-terminated
/// printable version string), an ERR packet with its SQLSTATE marker, or a
/// result-set header followed by a column definition. Client: the
/// handshake response (sequence 1, `CLIENT_PROTOCOL_41`, zero filler) or a
/// well-formed command with sequence 0 (a `COM_QUERY` or `COM_STMT_PREPARE`
/// whose text is printable, even if not all of it is in `data`). No
/// allocation.
pub fn detect(data: &[u8]) -> Option<Side> {
    let (len, seq) = header(data)?;
    if len == 0 {
        return None;
    }
    let available = data.get(HEADER_LEN..).unwrap_or_default();
    let payload = available.get(..len);
    match (seq, payload) {
        (0, Some(p)) if valid_greeting(p) => Some(Side::Server),
        (0, Some(p)) if valid_command(p) => Some(Side::Client),
        (0, None) if long_statement_start(available) => Some(Side::Client),
        (1, Some(p)) if valid_handshake_response(p) => Some(Side::Client),
        (1.., Some(p)) if valid_err(p) => Some(Side::Server),
        (1, Some(p)) if result_set_start(p, data.get(HEADER_LEN + len..)?) => Some(Side::Server),
        _ => None,
    }
}

/// The start of a statement too long to be in `data` whole.
fn long_statement_start(available: &[u8]) -> bool {
    const MIN_TEXT: usize = 16;
    let Some((&command, args)) = available.split_first() else {
        return false;
    };
    let text = match command {
        COM_QUERY => query_text(args, None),
        COM_STMT_PREPARE => Some(args),
        _ => None,
    };
    text.is_some_and(|text| {
        text.len() >= MIN_TEXT
            && printable(text)
            && text.first().is_some_and(|b| {
                b.is_ascii_alphabetic() || b.is_ascii_whitespace() || *b == b'(' || *b == b'/'
            })
    })
}

/// A column count followed by a column definition (catalog `def`).
fn result_set_start(count_payload: &[u8], next: &[u8]) -> bool {
    let mut count = Reader::new(count_payload);
    // MariaDB's metadata cache adds a "metadata follows" flag.
    let columns_ok =
        count.lenenc().is_some_and(|n| (1..=4096).contains(&n)) && matches!(count.rest(), [] | [1]);
    let Some((_, next_seq)) = header(next) else {
        return false;
    };
    columns_ok && next_seq == 2 && next.get(HEADER_LEN..HEADER_LEN + 4) == Some(b"\x03def")
}
