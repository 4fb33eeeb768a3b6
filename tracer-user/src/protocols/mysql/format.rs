//! MySQL packet framing for each direction.

use super::packets::{
    header, valid_command, valid_command_start, valid_eof, valid_err, valid_greeting,
    valid_handshake_response, valid_ok, HEADER_LEN,
};
use crate::protocols::sql::framing::{Format, Probe, MAX_BUFFERED, MAX_HUNT_WINDOW};

/// Bytes of an oversized server packet worth keeping: enough for any
/// OK/ERR/EOF header fields and for telling a row from a terminator.
const SERVER_PREFIX: usize = HEADER_LEN + 64;

pub struct ClientFormat {
    /// The next client packet must be a command (sequence 0): no command's
    /// data (LOCAL INFILE, continuation) is expected.
    pub expect_command: bool,
}

impl Format for ClientFormat {
    fn header_len(&self, _first: u8) -> usize {
        HEADER_LEN
    }

    fn body_len(&self, header_bytes: &[u8]) -> Option<usize> {
        header(header_bytes).map(|(len, _)| len)
    }

    fn prefix_wanted(&self, _header: &[u8]) -> usize {
        // A huge packet is a statement (or its data): keep the text's start.
        MAX_BUFFERED
    }

    fn check_start(&self, start: &[u8]) -> bool {
        let Some((len, seq)) = header(start) else {
            return false;
        };
        !self.expect_command
            || (seq == 0
                && len > 0
                && valid_command_start(start.get(HEADER_LEN..).unwrap_or_default()))
    }

    /// A command (sequence 0) or a handshake response (sequence 1).
    fn probe(&self, data: &[u8]) -> Probe {
        // Refuse early what cannot become valid, rather than wait for as
        // many bytes as a bogus length announces.
        let partial = data.get(HEADER_LEN..).unwrap_or_default();
        let plausible = match header(data) {
            Some((_, 0)) => partial.is_empty() || valid_command_start(partial),
            Some((_, 1)) => partial
                .get(..4)
                .is_none_or(|caps| caps.get(1).is_some_and(|b| b & 0x02 != 0)),
            Some(_) => false,
            None => true,
        };
        if !plausible {
            return Probe::Invalid;
        }
        probe_packet(data, |seq, payload| match seq {
            0 => valid_command(payload),
            1 => valid_handshake_response(payload),
            _ => false,
        })
    }
}

pub struct ServerFormat;

impl Format for ServerFormat {
    fn header_len(&self, _first: u8) -> usize {
        HEADER_LEN
    }

    fn body_len(&self, header_bytes: &[u8]) -> Option<usize> {
        header(header_bytes).map(|(len, _)| len)
    }

    fn prefix_wanted(&self, _header: &[u8]) -> usize {
        SERVER_PREFIX
    }

    /// A greeting, a well-formed OK/ERR/EOF, or three packets whose
    /// sequence ids follow each other (rows, column definitions).
    fn probe(&self, data: &[u8]) -> Probe {
        let alone = probe_packet(data, |seq, payload| {
            (seq == 0 && valid_greeting(payload))
                || (seq != 0 && (valid_ok(payload) || valid_err(payload) || valid_eof(payload)))
        });
        if alone != Probe::Invalid {
            return alone;
        }
        probe_chain(data, 3)
    }
}

/// Whether a complete packet accepted by `valid` starts at `data[0]`.
fn probe_packet(data: &[u8], valid: impl Fn(u8, &[u8]) -> bool) -> Probe {
    let Some((len, seq)) = header(data) else {
        return Probe::Incomplete;
    };
    if len == 0 || len > MAX_HUNT_WINDOW {
        return Probe::Invalid;
    }
    match data.get(HEADER_LEN..HEADER_LEN + len) {
        None => Probe::Incomplete,
        Some(payload) if valid(seq, payload) => Probe::Valid,
        Some(_) => Probe::Invalid,
    }
}

/// `count` consecutive packets with consecutive sequence ids.
fn probe_chain(data: &[u8], count: usize) -> Probe {
    let mut rest = data;
    let mut expected_seq = None;
    for _ in 0..count {
        let Some((len, seq)) = header(rest) else {
            return Probe::Incomplete;
        };
        if len > MAX_HUNT_WINDOW || expected_seq.is_some_and(|e| e != seq) {
            return Probe::Invalid;
        }
        expected_seq = Some(seq.wrapping_add(1));
        let Some(next) = rest.get(HEADER_LEN + len..) else {
            return Probe::Incomplete;
        };
        rest = next;
    }
    Probe::Valid
}
