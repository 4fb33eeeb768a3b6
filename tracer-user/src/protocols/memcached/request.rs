//! Reading memcached text-protocol command lines.

use super::framer::MAX_BLOCK;

/// memcached refuses longer keys.
const MAX_KEY_LEN: usize = 250;

/// The commands whose exchanges are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Command {
    Get,
    Gets,
    Gat,
    Gats,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    Version,
    Stats,
    FlushAll,
    Verbosity,
}

/// What kind of answer a command gets, which is how its end is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// `VALUE` blocks, then `END`.
    Values,
    /// `STORED`, `NOT_STORED`, `EXISTS` or `NOT_FOUND`.
    Storage,
    /// `DELETED` or `NOT_FOUND`.
    Deletion,
    /// The new value or `NOT_FOUND`.
    Counter,
    /// `TOUCHED` or `NOT_FOUND`.
    Touch,
    /// `VERSION <version>`.
    Version,
    /// `STAT`-like lines until `END` (or a lone `OK`/`RESET`).
    Stats,
    /// `OK`.
    Ok,
    /// Whatever one line (or `VA`/`VALUE` block) says: commands we do not
    /// report but must keep in step with.
    AnyOne,
}

impl Command {
    pub(super) fn name(self) -> &'static str {
        match self {
            Command::Get => "get",
            Command::Gets => "gets",
            Command::Gat => "gat",
            Command::Gats => "gats",
            Command::Set => "set",
            Command::Add => "add",
            Command::Replace => "replace",
            Command::Append => "append",
            Command::Prepend => "prepend",
            Command::Cas => "cas",
            Command::Delete => "delete",
            Command::Incr => "incr",
            Command::Decr => "decr",
            Command::Touch => "touch",
            Command::Version => "version",
            Command::Stats => "stats",
            Command::FlushAll => "flush_all",
            Command::Verbosity => "verbosity",
        }
    }

    fn from_word(word: &[u8]) -> Option<Command> {
        Some(match word {
            b"get" => Command::Get,
            b"gets" => Command::Gets,
            b"gat" => Command::Gat,
            b"gats" => Command::Gats,
            b"set" => Command::Set,
            b"add" => Command::Add,
            b"replace" => Command::Replace,
            b"append" => Command::Append,
            b"prepend" => Command::Prepend,
            b"cas" => Command::Cas,
            b"delete" => Command::Delete,
            b"incr" => Command::Incr,
            b"decr" => Command::Decr,
            b"touch" => Command::Touch,
            b"version" => Command::Version,
            b"stats" => Command::Stats,
            b"flush_all" => Command::FlushAll,
            b"verbosity" => Command::Verbosity,
            _ => return None,
        })
    }

    pub(super) fn reply(self) -> Reply {
        match self {
            Command::Get | Command::Gets | Command::Gat | Command::Gats => Reply::Values,
            Command::Set
            | Command::Add
            | Command::Replace
            | Command::Append
            | Command::Prepend
            | Command::Cas => Reply::Storage,
            Command::Delete => Reply::Deletion,
            Command::Incr | Command::Decr => Reply::Counter,
            Command::Touch => Reply::Touch,
            Command::Version => Reply::Version,
            Command::Stats => Reply::Stats,
            Command::FlushAll | Command::Verbosity => Reply::Ok,
        }
    }
}

/// A command line, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Line {
    Request {
        command: Command,
        /// Keys asked for (retrieval commands), else 1 or 0.
        keys: usize,
        /// Length of the data block that follows (storage commands).
        block: Option<u64>,
        /// No reply will come.
        noreply: bool,
    },
    /// Text that memcached answers with one line (`ERROR` for an unknown
    /// command, `CLIENT_ERROR` for a malformed one) or a meta command: kept
    /// in step with, not reported.
    Unreported { block: Option<u64>, quiet: bool },
    /// `quit`: no answer, the server closes.
    Quit,
    /// A blank line, which memcached skips.
    Blank,
    /// Not the text protocol.
    Garbage,
}

pub(super) fn parse_line(line: &[u8]) -> Line {
    let mut words = line.split(|&b| b == b' ').filter(|word| !word.is_empty());
    let Some(word) = words.next() else {
        return Line::Blank;
    };
    if !word.iter().all(|&b| b.is_ascii_lowercase() || b == b'_') {
        return Line::Garbage;
    }
    if word == b"quit" {
        return Line::Quit;
    }
    let Some(command) = Command::from_word(word) else {
        return parse_meta(word, words);
    };
    let arguments = collect_arguments(words);
    let args = arguments.as_slice();
    let any_arguments = matches!(command.reply(), Reply::Values | Reply::Stats);
    if arguments.overflow && !any_arguments {
        return Line::Unreported {
            block: None,
            quiet: false,
        };
    }
    let noreply = args.last().is_some_and(|last| *last == b"noreply");
    let parsed = match command.reply() {
        Reply::Values => count_keys(line).map(|keys| (keys, None)),
        Reply::Storage => storage(command, args, noreply),
        Reply::Deletion => match args {
            [key] | [key, b"0" | b"noreply"] | [key, b"0", b"noreply"] if is_key(key) => {
                Some((1, None))
            }
            _ => None,
        },
        Reply::Counter => match args {
            [key, delta] | [key, delta, b"noreply"] if is_key(key) && is_number(delta) => {
                Some((1, None))
            }
            _ => None,
        },
        Reply::Touch => match args {
            [key, exptime] | [key, exptime, b"noreply"] if is_key(key) && is_signed(exptime) => {
                Some((1, None))
            }
            _ => None,
        },
        Reply::Version => args.is_empty().then_some((0, None)),
        Reply::Stats => Some((0, None)),
        Reply::Ok => match args {
            [] | [b"noreply"] => Some((0, None)),
            [number] | [number, b"noreply"] if is_signed(number) => Some((0, None)),
            _ => None,
        },
        Reply::AnyOne => None,
    };
    match parsed {
        Some((keys, block)) => Line::Request {
            command,
            keys,
            block,
            noreply: noreply && command.reply() != Reply::Values,
        },
        // memcached answers a malformed command with one error line.
        None => Line::Unreported {
            block: None,
            quiet: false,
        },
    }
}

/// `<cmd> <key> <flags> <exptime> <bytes> [<cas unique>] [noreply]`.
fn storage(command: Command, args: &[&[u8]], noreply: bool) -> Option<(usize, Option<u64>)> {
    let args = if noreply {
        args.split_last().map_or(args, |(_, rest)| rest)
    } else {
        args
    };
    let (key, flags, exptime, bytes) = match (command, args) {
        (Command::Cas, [key, flags, exptime, bytes, cas]) if is_number(cas) => {
            (key, flags, exptime, bytes)
        }
        (Command::Cas, _) => return None,
        (_, [key, flags, exptime, bytes]) => (key, flags, exptime, bytes),
        _ => return None,
    };
    if !(is_key(key) && is_number(flags) && is_signed(exptime)) {
        return None;
    }
    let len = parse_number(bytes).filter(|&len| len <= MAX_BLOCK)?;
    Some((1, Some(len)))
}

/// Meta commands (`mg`, `ms`, ...): not reported, but `ms` carries a data
/// block and the `q` flag silences success replies.
fn parse_meta<'a>(word: &[u8], mut args: impl Iterator<Item = &'a [u8]>) -> Line {
    if !matches!(word, b"mg" | b"ms" | b"md" | b"ma" | b"mn" | b"me") {
        // memcached answers an unknown command with ERROR.
        return Line::Unreported {
            block: None,
            quiet: false,
        };
    }
    let block = if word == b"ms" {
        let _key = args.next();
        match args.next().map(parse_number) {
            Some(Some(len)) if len <= MAX_BLOCK => Some(len),
            _ => return Line::Garbage,
        }
    } else {
        None
    };
    let quiet = args.any(|flag| flag == b"q");
    Line::Unreported { block, quiet }
}

/// Enough argument slots for any command but a big multi-get, whose keys
/// past the capacity are only counted.
const ARGUMENT_CAPACITY: usize = 8;

struct ArgumentList<'a> {
    slots: [&'a [u8]; ARGUMENT_CAPACITY],
    len: usize,
    overflow: bool,
}

impl<'a> ArgumentList<'a> {
    fn as_slice(&self) -> &[&'a [u8]] {
        self.slots.get(..self.len).unwrap_or_default()
    }
}

fn collect_arguments<'a>(words: impl Iterator<Item = &'a [u8]>) -> ArgumentList<'a> {
    let mut list = ArgumentList {
        slots: [&[]; ARGUMENT_CAPACITY],
        len: 0,
        overflow: false,
    };
    for word in words {
        match list.slots.get_mut(list.len) {
            Some(slot) => {
                *slot = word;
                list.len += 1;
            }
            None => list.overflow = true,
        }
    }
    list
}

/// Key count of a retrieval line (any number of keys), if all are valid.
fn count_keys(line: &[u8]) -> Option<usize> {
    let mut words = line.split(|&b| b == b' ').filter(|word| !word.is_empty());
    let command = Command::from_word(words.next()?)?;
    if matches!(command, Command::Gat | Command::Gats) && !is_signed(words.next()?) {
        return None;
    }
    let mut keys = 0;
    for key in words {
        if !is_key(key) {
            return None;
        }
        keys += 1;
    }
    (keys > 0).then_some(keys)
}

fn is_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(|&b| b > 0x20 && b != 0x7f)
}

fn is_number(word: &[u8]) -> bool {
    parse_number(word).is_some()
}

fn is_signed(word: &[u8]) -> bool {
    is_number(word.strip_prefix(b"-").unwrap_or(word))
}

pub(super) fn parse_number(word: &[u8]) -> Option<u64> {
    if word.is_empty() || word.len() > 20 {
        return None;
    }
    word.iter().try_fold(0_u64, |value, &digit| {
        if digit.is_ascii_digit() {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        } else {
            None
        }
    })
}
