//! PostgreSQL message framing for each direction.

use super::messages::{
    body_len_from, startup_code, valid_client_message, valid_server_message, valid_startup,
    CANCEL_REQUEST, CLIENT_TYPES, GSSENC_REQUEST, MAX_STARTUP_LEN, PROTOCOL_3, SERVER_TYPES,
    SSL_REQUEST,
};
use crate::protocols::sql::framing::{Format, Probe, MAX_BUFFERED, MAX_HUNT_WINDOW};

/// Header of a typed message: type byte and Int32 length.
pub const TYPED_HEADER_LEN: usize = 5;
/// Header of a startup-family message: Int32 length only.
pub const UNTYPED_HEADER_LEN: usize = 4;

/// Frontend messages. Before the `StartupMessage` the client sends untyped
/// messages (their length's first byte is always 0, which no type byte is).
pub struct ClientFormat {
    pub startup_allowed: bool,
    /// Password / SASL messages are possible: `ReadyForQuery`, which ends
    /// authentication, has not been seen.
    pub password_allowed: bool,
    /// The server asked for COPY data (`CopyInResponse`) and the COPY is not
    /// over yet.
    pub copy_in: bool,
}

impl Format for ClientFormat {
    fn header_len(&self, first: u8) -> usize {
        if self.startup_allowed && first == 0 {
            UNTYPED_HEADER_LEN
        } else {
            TYPED_HEADER_LEN
        }
    }

    fn body_len(&self, header: &[u8]) -> Option<usize> {
        match header {
            [0, ..] if header.len() == UNTYPED_HEADER_LEN => {
                let body = body_len_from(header)?;
                (body + 4 <= MAX_STARTUP_LEN as usize && body >= 4).then_some(body)
            }
            [ty, len @ ..] if CLIENT_TYPES.contains(ty) => body_len_from(len),
            _ => None,
        }
    }

    fn prefix_wanted(&self, header: &[u8]) -> usize {
        match header.first() {
            // Statement text (and the names linking statements) is worth
            // keeping; everything else of a huge message is not.
            Some(b'Q' | b'P' | b'B') => MAX_BUFFERED,
            _ => header.len(),
        }
    }

    fn check_start(&self, start: &[u8]) -> bool {
        match start.split_first() {
            // Startup-family messages (first byte 0) were checked by length.
            Some((&ty, rest)) if ty != 0 => {
                let (len, body) = rest.split_at_checked(4).unwrap_or_default();
                match ty {
                    b'p' => self.password_allowed,
                    b'd' | b'c' | b'f' => self.copy_in,
                    _ => plausible_client_start(ty, be_len(len), body),
                }
            }
            _ => true,
        }
    }

    fn probe(&self, data: &[u8]) -> Probe {
        if self.startup_allowed && data.first() == Some(&0) {
            return probe_startup(data);
        }
        probe_typed(data, CLIENT_TYPES, valid_client_message)
    }
}

/// Backend messages.
pub struct ServerFormat;

impl Format for ServerFormat {
    fn header_len(&self, _first: u8) -> usize {
        TYPED_HEADER_LEN
    }

    fn body_len(&self, header: &[u8]) -> Option<usize> {
        match header {
            [ty, len @ ..] if SERVER_TYPES.contains(ty) => body_len_from(len),
            _ => None,
        }
    }

    fn prefix_wanted(&self, header: &[u8]) -> usize {
        match header.first() {
            // A huge error still carries its SQLSTATE near the start.
            Some(b'E') => 1024,
            _ => header.len(),
        }
    }

    fn check_start(&self, start: &[u8]) -> bool {
        match start.split_first() {
            Some((ty, rest)) => {
                let (len, body) = rest.split_at_checked(4).unwrap_or_default();
                plausible_server_start(*ty, be_len(len), body)
            }
            None => false,
        }
    }

    fn probe(&self, data: &[u8]) -> Probe {
        probe_typed(data, SERVER_TYPES, valid_server_message)
    }
}

fn be_len(len_field: &[u8]) -> u32 {
    <[u8; 4]>::try_from(len_field).map_or(0, u32::from_be_bytes)
}

/// Text up to its terminating NUL (if in view) is printable.
fn text_start(body: &[u8]) -> bool {
    let text = body.split(|&b| b == 0).next().unwrap_or_default();
    text.iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || matches!(b, b'\t' | b'\n' | b'\r'))
}

/// Cheap checks on a frontend message's length and first body bytes, so
/// that garbage is refused at once instead of being read as a message.
fn plausible_client_start(ty: u8, len: u32, body: &[u8]) -> bool {
    match ty {
        b'Q' => len > 4 && text_start(body),
        b'S' | b'H' | b'X' | b'c' => len == 4,
        b'E' => len >= 9,
        b'D' | b'C' => len >= 6 && body.first().is_none_or(|k| matches!(k, b'S' | b'P')),
        b'P' => len >= 8,
        b'B' => len >= 12,
        b'F' => len >= 14,
        _ => true,
    }
}

/// Cheap checks on a backend message's length and first body bytes.
fn plausible_server_start(ty: u8, len: u32, body: &[u8]) -> bool {
    match ty {
        b'Z' => len == 5 && body.first().is_none_or(|s| matches!(s, b'I' | b'T' | b'E')),
        b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c' => len == 4,
        b'K' => len == 12,
        b'R' => len >= 8,
        b'D' | b'T' | b't' => len >= 6,
        b'C' => len > 5 && body.first().is_none_or(u8::is_ascii_uppercase) && text_start(body),
        b'E' | b'N' => len > 5 && body.first().is_none_or(u8::is_ascii_alphabetic),
        b'S' => len > 5 && text_start(body),
        _ => true,
    }
}

fn probe_startup(data: &[u8]) -> Probe {
    // The request code comes right after the length and is one of a few
    // values: checking it first stops long waits on bytes that merely
    // start with a zero.
    let Some(header) = data.get(..UNTYPED_HEADER_LEN + 4) else {
        return Probe::Incomplete;
    };
    let known_code = matches!(
        startup_code(header.get(UNTYPED_HEADER_LEN..).unwrap_or_default()),
        Some(PROTOCOL_3 | SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST)
    );
    if !known_code {
        return Probe::Invalid;
    }
    let Some(len_field) = data.get(..UNTYPED_HEADER_LEN) else {
        return Probe::Incomplete;
    };
    let Ok(len_field) = <[u8; 4]>::try_from(len_field) else {
        return Probe::Invalid;
    };
    let len = u32::from_be_bytes(len_field);
    if len > MAX_STARTUP_LEN {
        return Probe::Invalid;
    }
    let Some(body) = data.get(UNTYPED_HEADER_LEN..len as usize) else {
        return if len < 8 {
            Probe::Invalid
        } else {
            Probe::Incomplete
        };
    };
    if valid_startup(len, body) {
        Probe::Valid
    } else {
        Probe::Invalid
    }
}

/// Whether a typed message that passes `validate` starts at `data[0]`.
pub fn probe_typed(data: &[u8], types: &[u8], validate: fn(u8, &[u8]) -> bool) -> Probe {
    let Some(&ty) = data.first() else {
        return Probe::Incomplete;
    };
    if !types.contains(&ty) {
        return Probe::Invalid;
    }
    let Some(len_field) = data.get(1..TYPED_HEADER_LEN) else {
        // A first length byte above zero means at least 16 MiB, far more
        // than a hunting window can validate.
        return if data.get(1).is_some_and(|&b| b != 0) {
            Probe::Invalid
        } else {
            Probe::Incomplete
        };
    };
    let Some(body_len) = body_len_from(len_field).filter(|len| *len < MAX_HUNT_WINDOW) else {
        return Probe::Invalid;
    };
    match data.get(TYPED_HEADER_LEN..TYPED_HEADER_LEN + body_len) {
        None => Probe::Incomplete,
        Some(body) if validate(ty, body) => Probe::Valid,
        Some(_) => Probe::Invalid,
    }
}
