//! Reading and checking individual PostgreSQL v3 messages.
//!
//! Validators check a message body against its full structure, so that a
//! message they accept is very unlikely to be a coincidence; that is what
//! makes them usable to find message boundaries in a stream of unknown
//! position.

use std::ops::{Deref, DerefMut};

use crate::protocols::byte_cursor::ByteCursor;

/// Protocol 3.0 in a `StartupMessage`.
pub const PROTOCOL_3: u32 = 0x0003_0000;
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// Largest message the server accepts (PostgreSQL's own limit is 1 GiB).
pub const MAX_MESSAGE_LEN: u32 = 0x4000_0000;
/// Largest `StartupMessage` / `SSLRequest` / `CancelRequest` PostgreSQL accepts.
pub const MAX_STARTUP_LEN: u32 = 10_000;

/// Type bytes a frontend sends after startup.
pub const CLIENT_TYPES: &[u8] = b"QPBEDCSHFXdcfp";
/// Type bytes a backend sends.
pub const SERVER_TYPES: &[u8] = b"RSKZTDCEN123nIstGHWAVvdc";

/// A cursor over a message body; every read fails softly at the end.
/// Integers are big-endian.
#[derive(Clone, Copy)]
pub struct Reader<'a>(ByteCursor<'a>);

impl<'a> Deref for Reader<'a> {
    type Target = ByteCursor<'a>;
    fn deref(&self) -> &ByteCursor<'a> {
        &self.0
    }
}

impl DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Reader(ByteCursor::new(body))
    }

    pub fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.array()?))
    }

    /// `count` as read from an Int16 count field, refusing negatives.
    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.i16()?).ok()
    }

    /// `count` Int16 values.
    fn skip_i16s(&mut self) -> Option<()> {
        let count = self.count()?;
        self.bytes(count.checked_mul(2)?).map(drop)
    }

    /// `count` values of an Int32 length (-1 for NULL) and that many bytes.
    fn skip_values(&mut self) -> Option<()> {
        for _ in 0..self.count()? {
            let len = self.i32()?;
            if len >= 0 {
                self.bytes(usize::try_from(len).ok()?)?;
            } else if len != -1 {
                return None;
            }
        }
        Some(())
    }
}

/// The length field of a header, as a body length.
pub fn body_len_from(length_field: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(length_field.try_into().ok()?);
    if !(4..=MAX_MESSAGE_LEN).contains(&len) {
        return None;
    }
    usize::try_from(len - 4).ok()
}

/// The request code of an untyped (startup-family) message body.
pub fn startup_code(body: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(body.get(..4)?.try_into().ok()?))
}

/// Checks an untyped message: length field plus body.
pub fn valid_startup(len_field: u32, body: &[u8]) -> bool {
    if !(8..=MAX_STARTUP_LEN).contains(&len_field) {
        return false;
    }
    match startup_code(body) {
        Some(SSL_REQUEST | GSSENC_REQUEST) => body.len() == 4,
        Some(CANCEL_REQUEST) => body.len() == 12,
        Some(PROTOCOL_3) => valid_startup_parameters(body.get(4..).unwrap_or_default()),
        _ => false,
    }
}

/// `name\0value\0 ... \0`, names and values printable.
fn valid_startup_parameters(params: &[u8]) -> bool {
    let mut reader = Reader::new(params);
    loop {
        let Some(name) = reader.cstr() else {
            return false;
        };
        if name.is_empty() {
            return reader.is_empty();
        }
        if !printable(name) || !reader.cstr().is_some_and(printable) {
            return false;
        }
    }
}

fn printable(text: &[u8]) -> bool {
    text.iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || matches!(b, b'\t' | b'\n' | b'\r'))
}

/// Whether `body` is exactly what a frontend message of type `ty` holds.
/// Types whose bodies are free-form (copy data, passwords) never pass.
pub fn valid_client_message(ty: u8, body: &[u8]) -> bool {
    let mut r = Reader::new(body);
    let parsed = match ty {
        b'Q' | b'f' => r.cstr().filter(|text| printable(text)).map(drop),
        b'P' => parse_body(&mut r),
        b'B' => bind_body(&mut r),
        b'E' => r.cstr().and_then(|_| r.i32()).map(drop),
        b'D' | b'C' => r
            .u8()
            .filter(|kind| matches!(kind, b'S' | b'P'))
            .and_then(|_| r.cstr())
            .map(drop),
        b'S' | b'H' | b'X' | b'c' => Some(()),
        b'F' => function_call_body(&mut r),
        _ => None,
    };
    parsed.is_some() && r.is_empty()
}

/// Whether `body` is exactly what a backend message of type `ty` holds.
pub fn valid_server_message(ty: u8, body: &[u8]) -> bool {
    let mut r = Reader::new(body);
    let parsed = match ty {
        b'R' => valid_authentication(&mut r),
        b'S' => r.cstr().and_then(|_| r.cstr()).map(drop),
        b'K' => r.bytes(8).map(drop),
        b'Z' => r.u8().filter(|s| matches!(s, b'I' | b'T' | b'E')).map(drop),
        b'T' => row_description_body(&mut r),
        b'D' => r.skip_values(),
        b'C' => r
            .cstr()
            .filter(|tag| !tag.is_empty() && tag.iter().all(|b| b.is_ascii_graphic() || *b == b' '))
            .map(drop),
        b'E' | b'N' => notice_fields(&mut r),
        b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c' => Some(()),
        b't' => r
            .count()
            .and_then(|count| r.bytes(count.checked_mul(4)?))
            .map(drop),
        b'G' | b'H' | b'W' => r.u8().and_then(|_| r.skip_i16s()),
        b'A' => r
            .i32()
            .and_then(|_| r.cstr())
            .and_then(|_| r.cstr())
            .map(drop),
        b'V' => function_result_body(&mut r),
        b'v' => negotiate_version_body(&mut r),
        _ => None,
    };
    parsed.is_some() && r.is_empty()
}

fn parse_body(r: &mut Reader<'_>) -> Option<()> {
    r.cstr()?;
    r.cstr().filter(|text| printable(text))?;
    let params = r.count()?;
    r.bytes(params.checked_mul(4)?).map(drop)
}

fn bind_body(r: &mut Reader<'_>) -> Option<()> {
    r.cstr()?;
    r.cstr()?;
    r.skip_i16s()?;
    r.skip_values()?;
    r.skip_i16s()
}

fn function_call_body(r: &mut Reader<'_>) -> Option<()> {
    r.i32()?;
    r.skip_i16s()?;
    r.skip_values()?;
    r.i16().map(drop)
}

fn row_description_body(r: &mut Reader<'_>) -> Option<()> {
    for _ in 0..r.count()? {
        r.cstr()?;
        r.bytes(18)?;
    }
    Some(())
}

fn notice_fields(r: &mut Reader<'_>) -> Option<()> {
    loop {
        if r.u8()? == 0 {
            return Some(());
        }
        r.cstr()?;
    }
}

fn function_result_body(r: &mut Reader<'_>) -> Option<()> {
    let len = r.i32()?;
    if len >= 0 {
        r.bytes(usize::try_from(len).ok()?)?;
    }
    Some(())
}

fn negotiate_version_body(r: &mut Reader<'_>) -> Option<()> {
    r.i32()?;
    for _ in 0..usize::try_from(r.i32()?).ok()? {
        r.cstr()?;
    }
    Some(())
}

/// Authentication request codes and the data each carries.
fn valid_authentication(r: &mut Reader<'_>) -> Option<()> {
    match r.i32()? {
        0 | 2 | 3 | 6 | 7 | 9 => Some(()),
        5 => r.bytes(4).map(drop),
        10 => loop {
            let mechanism = r.cstr()?;
            if mechanism.is_empty() {
                return Some(());
            }
        },
        8 | 11 | 12 => {
            let remaining = r.rest().len();
            r.bytes(remaining);
            Some(())
        }
        _ => None,
    }
}

/// The SQLSTATE (`C` field) of an `ErrorResponse` body.
pub fn error_sqlstate(body: &[u8]) -> Option<String> {
    let mut r = Reader::new(body);
    loop {
        let field = r.u8()?;
        if field == 0 {
            return None;
        }
        let value = r.cstr()?;
        if field == b'C' {
            return (value.len() == 5 && value.iter().all(u8::is_ascii_alphanumeric))
                .then(|| String::from_utf8_lossy(value).into_owned());
        }
    }
}

/// The text of a NUL-terminated string that may have been cut short.
pub fn cstr_or_prefix<'a>(r: &mut Reader<'a>) -> &'a [u8] {
    r.cstr().unwrap_or_else(|| {
        let rest = r.rest();
        r.bytes(rest.len());
        rest
    })
}
