//! Reading memcached text-protocol response lines.

use super::framer::MAX_BLOCK;
use super::request::{parse_number, Reply};

/// What a response line means for the command it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// More lines of the same response follow (`VALUE`, `STAT`).
    Continues,
    /// The response ends with this line, or with the data block it announces.
    Ends,
    /// The response is an error line.
    Fails(ErrorKind),
    /// Not an answer to this command: we lost our place.
    Unexpected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ErrorKind {
    /// Unknown command.
    Error,
    ClientError,
    ServerError,
}

impl ErrorKind {
    pub(super) fn code(self) -> &'static str {
        match self {
            ErrorKind::Error => "ERROR",
            ErrorKind::ClientError => "CLIENT_ERROR",
            ErrorKind::ServerError => "SERVER_ERROR",
        }
    }
}

fn error_kind(line: &[u8]) -> Option<ErrorKind> {
    if line == b"ERROR" || line.starts_with(b"ERROR ") {
        Some(ErrorKind::Error)
    } else if line.starts_with(b"CLIENT_ERROR") {
        Some(ErrorKind::ClientError)
    } else if line.starts_with(b"SERVER_ERROR") {
        Some(ErrorKind::ServerError)
    } else {
        None
    }
}

/// The data block a line announces: `VALUE <key> <flags> <bytes> [<cas>]`
/// or the meta protocol's `VA <bytes> <flags>*`. `Err` for a malformed one.
pub(super) fn announced_block(line: &[u8]) -> Result<Option<u64>, ()> {
    let mut words = line.split(|&b| b == b' ').filter(|word| !word.is_empty());
    let bytes = match words.next() {
        Some(b"VALUE") => {
            let _key = words.next().ok_or(())?;
            words.next().and_then(parse_number).ok_or(())?;
            let bytes = words.next().ok_or(())?;
            if let Some(cas) = words.next() {
                parse_number(cas).ok_or(())?;
            }
            if words.next().is_some() {
                return Err(());
            }
            bytes
        }
        Some(b"VA") => words.next().ok_or(())?,
        _ => return Ok(None),
    };
    match parse_number(bytes) {
        Some(len) if len <= MAX_BLOCK => Ok(Some(len)),
        _ => Err(()),
    }
}

/// What `line` means as (part of) the reply to a command expecting `reply`.
pub(super) fn classify(reply: Reply, line: &[u8], announces_block: bool) -> Outcome {
    if let Some(kind) = error_kind(line) {
        return Outcome::Fails(kind);
    }
    let ends = match reply {
        Reply::Values if announces_block && line.starts_with(b"VALUE ") => {
            return Outcome::Continues;
        }
        Reply::Values => line == b"END",
        Reply::Storage => matches!(line, b"STORED" | b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND"),
        Reply::Deletion => matches!(line, b"DELETED" | b"NOT_FOUND"),
        Reply::Counter => line == b"NOT_FOUND" || parse_number(line).is_some(),
        Reply::Touch => matches!(line, b"TOUCHED" | b"NOT_FOUND"),
        Reply::Version => line.starts_with(b"VERSION "),
        Reply::Stats if matches!(line, b"END" | b"OK" | b"RESET") => true,
        // STAT, ITEM, PREFIX ...: stats subcommands print many kinds of line.
        Reply::Stats => return Outcome::Continues,
        Reply::Ok => line == b"OK",
        Reply::AnyOne => true,
    };
    if ends {
        Outcome::Ends
    } else {
        Outcome::Unexpected
    }
}

/// Whether `line` is unmistakably a memcached response line (detection).
pub(super) fn is_distinctive(line: &[u8]) -> bool {
    matches!(
        line,
        b"STORED"
            | b"NOT_STORED"
            | b"EXISTS"
            | b"NOT_FOUND"
            | b"DELETED"
            | b"TOUCHED"
            | b"END"
            | b"ERROR"
    ) || line.starts_with(b"CLIENT_ERROR ")
        || line.starts_with(b"SERVER_ERROR ")
        || line.starts_with(b"VERSION ")
        || line.starts_with(b"STAT ")
        || (line.starts_with(b"VALUE ") && matches!(announced_block(line), Ok(Some(_))))
}
