//! Reading and checking individual MySQL client/server protocol packets.
//!
//! Every packet is a 3-byte little-endian payload length, a sequence id
//! and the payload. Validators check payloads against their full structure
//! so that they can be trusted to find packet boundaries while hunting.

use std::ops::{Deref, DerefMut};

use crate::protocols::byte_cursor::ByteCursor;

pub const HEADER_LEN: usize = 4;
/// A payload of exactly this length continues in the next packet.
pub const MAX_PACKET_PAYLOAD: usize = 0xFF_FFFF;

pub const CLIENT_COMPRESS: u32 = 0x0000_0020;
pub const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
pub const CLIENT_SSL: u32 = 0x0000_0800;
pub const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
pub const CLIENT_QUERY_ATTRIBUTES: u32 = 0x0800_0000;

pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
/// An execution opened a cursor: rows come later, one `COM_STMT_FETCH` at a time.
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;

pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_REFRESH: u8 = 0x07;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_INFO: u8 = 0x0a;
pub const COM_PROCESS_KILL: u8 = 0x0c;
pub const COM_DEBUG: u8 = 0x0d;
pub const COM_PING: u8 = 0x0e;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_BINLOG_DUMP: u8 = 0x12;
pub const COM_REGISTER_SLAVE: u8 = 0x15;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1a;
pub const COM_SET_OPTION: u8 = 0x1b;
pub const COM_STMT_FETCH: u8 = 0x1c;
pub const COM_BINLOG_DUMP_GTID: u8 = 0x1e;
pub const COM_RESET_CONNECTION: u8 = 0x1f;

/// Payload length and sequence id of a packet header.
pub fn header(header: &[u8]) -> Option<(usize, u8)> {
    match header {
        [a, b, c, seq, ..] => Some((
            usize::from(*a) | (usize::from(*b) << 8) | (usize::from(*c) << 16),
            *seq,
        )),
        _ => None,
    }
}

/// A cursor over a payload; every read fails softly at the end. Integers
/// are little-endian.
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
    pub fn new(payload: &'a [u8]) -> Self {
        Reader(ByteCursor::new(payload))
    }

    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    /// A length-encoded integer (not NULL).
    pub fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            small @ 0..=0xfa => Some(u64::from(small)),
            0xfc => self.u16().map(u64::from),
            0xfd => {
                let [low, mid, high] = self.array()?;
                Some(u64::from(u32::from_le_bytes([low, mid, high, 0])))
            }
            0xfe => Some(u64::from_le_bytes(self.array()?)),
            _ => None,
        }
    }
}

pub fn printable(text: &[u8]) -> bool {
    text.iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || matches!(b, b'\t' | b'\n' | b'\r'))
}

/// An EOF packet, or an OK packet sent in its place (`CLIENT_DEPRECATE_EOF`
/// result-set terminator). A row never starts with 0xFE unless it is at
/// least 9 bytes long.
pub fn is_short_fe(payload: &[u8]) -> bool {
    payload.first() == Some(&0xfe) && payload.len() < 9
}

/// A classic EOF packet: 0xFE, warnings, status.
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&0xfe) && payload.len() == 5
}

/// Status flags of an OK packet (0x00 or 0xFE header).
pub fn ok_status(payload: &[u8]) -> Option<u16> {
    let mut r = Reader::new(payload);
    if !matches!(r.u8()?, 0x00 | 0xfe) {
        return None;
    }
    r.lenenc()?;
    r.lenenc()?;
    r.u16()
}

/// Status flags of whatever ends a result set: EOF or OK.
pub fn terminator_status(payload: &[u8]) -> Option<u16> {
    if is_eof(payload) {
        let mut r = Reader::new(payload);
        r.bytes(3)?;
        r.u16()
    } else {
        ok_status(payload)
    }
}

/// The error code of an ERR packet.
pub fn err_code(payload: &[u8]) -> Option<u16> {
    let mut r = Reader::new(payload);
    (r.u8()? == 0xff).then_some(())?;
    r.u16()
}

/// MariaDB sends progress reports as ERR packets with this code.
pub const PROGRESS_REPORT: u16 = 0xffff;

/// Server status flags that exist (anything else means it is no status).
fn plausible_status(status: u16) -> bool {
    status < 0x8000
}

/// A complete, well-formed OK packet.
pub fn valid_ok(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    let parsed = ok_fields(&mut r).is_some_and(plausible_status);
    // The info text may be preceded by its length.
    let info = r.rest().get(1..).unwrap_or_default();
    parsed && printable(info)
}

/// Reads an OK packet (0x00 header) up to its info text; its status.
fn ok_fields(r: &mut Reader<'_>) -> Option<u16> {
    if r.u8()? != 0x00 {
        return None;
    }
    r.lenenc()?;
    r.lenenc()?;
    let status = r.u16()?;
    r.u16()?;
    Some(status)
}

/// A complete, well-formed ERR packet (protocol 4.1: with SQLSTATE).
pub fn valid_err(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    r.u8() == Some(0xff)
        && r.u16().is_some_and(|code| code >= 1000)
        && r.u8() == Some(b'#')
        && r.bytes(5)
            .is_some_and(|state| state.iter().all(u8::is_ascii_alphanumeric))
        && printable(r.rest())
}

/// A complete, well-formed classic EOF packet.
pub fn valid_eof(payload: &[u8]) -> bool {
    is_eof(payload) && terminator_status(payload).is_some_and(plausible_status)
}

/// The initial handshake packet (protocol 10): version string and the
/// fixed fields after it.
pub fn valid_greeting(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    r.u8() == Some(10)
        && r.cstr().is_some_and(|v| !v.is_empty() && printable(v))
        && r.bytes(4 + 8 + 1 + 2).is_some()
}

/// Whether the greeting's version string names MariaDB.
pub fn greeting_is_mariadb(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    r.u8();
    r.cstr().is_some_and(|version| {
        version
            .windows(7)
            .any(|w| w.eq_ignore_ascii_case(b"mariadb"))
    })
}

/// A `HandshakeResponse41` (or the `SSLRequest` that starts like one).
pub fn valid_handshake_response(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    let (Some(capabilities), Some(_max_packet), Some(_charset), Some(filler)) =
        (r.u32(), r.u32(), r.u8(), r.bytes(23))
    else {
        return false;
    };
    // MariaDB clients put extended capabilities in the filler's last 4 bytes.
    let zeros = filler.get(..19).unwrap_or_default();
    capabilities & CLIENT_PROTOCOL_41 != 0 && zeros.iter().all(|&b| b == 0)
}

/// Capability flags of a handshake response.
pub fn client_capabilities(payload: &[u8]) -> Option<u32> {
    Reader::new(payload).u32()
}

/// Whether a packet with sequence id 0 is a well-formed command.
#[expect(
    clippy::match_same_arms,
    reason = "one arm per command's argument layout; equal checks are a coincidence"
)]
pub fn valid_command(payload: &[u8]) -> bool {
    let Some((&command, args)) = payload.split_first() else {
        return false;
    };
    match command {
        COM_QUERY => query_text(args, None).is_some_and(|text| !text.is_empty() && printable(text)),
        COM_STMT_PREPARE | COM_INIT_DB => !args.is_empty() && printable(args),
        COM_STMT_EXECUTE => {
            let mut r = Reader::new(args);
            r.u32().is_some()
                && r.u8().is_some_and(|flags| flags < 0x10 || flags == 0x80)
                && r.u32() == Some(1)
        }
        COM_STMT_CLOSE | COM_STMT_RESET => args.len() == 4,
        COM_STMT_FETCH => args.len() == 8,
        COM_STMT_SEND_LONG_DATA => args.len() >= 6,
        COM_SET_OPTION => args.len() == 2,
        COM_PROCESS_KILL => args.len() == 4,
        COM_REFRESH => args.len() == 1,
        COM_QUIT | COM_STATISTICS | COM_PROCESS_INFO | COM_DEBUG | COM_PING
        | COM_RESET_CONNECTION => args.is_empty(),
        COM_FIELD_LIST => {
            let mut r = Reader::new(args);
            r.cstr().is_some_and(printable) && printable(r.rest())
        }
        COM_CHANGE_USER => Reader::new(args).cstr().is_some_and(printable),
        COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID | COM_REGISTER_SLAVE => args.len() >= 6,
        _ => false,
    }
}

/// Whether a command can start with `payload_start` (its first bytes).
pub fn valid_command_start(payload_start: &[u8]) -> bool {
    let Some((&command, args)) = payload_start.split_first() else {
        return false;
    };
    match command {
        COM_QUERY => query_text(args, None).is_none_or(printable),
        COM_STMT_PREPARE | COM_INIT_DB => printable(args),
        COM_QUIT
        | COM_INIT_DB..=COM_REFRESH
        | COM_STATISTICS..=COM_PING
        | COM_CHANGE_USER
        | COM_BINLOG_DUMP
        | COM_REGISTER_SLAVE..=COM_STMT_FETCH
        | COM_BINLOG_DUMP_GTID
        | COM_RESET_CONNECTION => true,
        _ => false,
    }
}

/// Whether the kept prefix of a command too large to keep whole can be a
/// command: only statements and their data get that large.
pub fn valid_command_prefix(payload: &[u8]) -> bool {
    match payload.split_first() {
        Some((&COM_QUERY, args)) => query_text(args, None).is_some_and(printable),
        Some((&COM_STMT_PREPARE, text)) => printable(text),
        Some((&(COM_STMT_EXECUTE | COM_STMT_SEND_LONG_DATA), _)) => true,
        _ => false,
    }
}

/// The SQL text of a `COM_QUERY`'s arguments. With query attributes
/// (`CLIENT_QUERY_ATTRIBUTES`, MySQL 8.0.23+) a parameter count and set
/// count come first; `attributes` says whether they were negotiated, or
/// `None` when the handshake was not seen (then SQL starting with a control
/// byte is taken for them). Text following actual attributes is not
/// located: `None`.
pub fn query_text(args: &[u8], attributes: Option<bool>) -> Option<&[u8]> {
    let has_attributes = attributes.unwrap_or_else(|| {
        args.first()
            .is_some_and(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    });
    if !has_attributes {
        return Some(args);
    }
    let mut r = Reader::new(args);
    let parameters = r.lenenc()?;
    r.lenenc()?;
    (parameters == 0).then(|| r.rest())
}
