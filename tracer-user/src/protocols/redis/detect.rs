//! Guessing from the first bytes of one direction whether it is Redis.

use super::commands::is_known_command;
use super::resp::parse_integer;
use crate::protocols::Side;

/// Lines checked before a well-formed reply prefix is taken as evidence.
const LINE_BUDGET: usize = 8;
/// Longest line looked at; detection sees a short prefix anyway.
const MAX_LINE: usize = 1024;
const MAX_DEPTH: usize = 8;

/// `Some(Side::Client)` for the start of a command, `Some(Side::Server)` for
/// an unmistakable reply. Replies are mostly ambiguous (`:1\r\n` could be
/// many things), so commands are what detection should rely on.
pub fn detect(data: &[u8]) -> Option<Side> {
    if looks_like_command(data) {
        Some(Side::Client)
    } else if looks_like_reply(data) {
        Some(Side::Server)
    } else {
        None
    }
}

/// `*<n>\r\n$<len>\r\n<known command>\r\n`, or an upper-case inline command
/// line such as `PING\r\n` (lower case is left to memcached, whose
/// `get key\r\n` is also a valid Redis inline command).
fn looks_like_command(data: &[u8]) -> bool {
    if let Some(rest) = data.strip_prefix(b"*") {
        return looks_like_array_command(rest).unwrap_or(false);
    }
    let Some((line, _)) = split_line(data) else {
        return false;
    };
    let mut words = line.split(|&b| b == b' ');
    let command = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    command.iter().all(u8::is_ascii_uppercase)
        && is_known_command(command)
        && !second.starts_with(b"/")
        && !line.windows(6).any(|window| window == b" HTTP/")
        && line
            .iter()
            .all(|&b| b.is_ascii_graphic() || b == b' ' || b >= 0x80)
}

fn looks_like_array_command(rest: &[u8]) -> Option<bool> {
    let (count, rest) = split_line(rest)?;
    let count = parse_integer(count)?;
    let rest = rest.strip_prefix(b"$")?;
    let (len, rest) = split_line(rest)?;
    let len = usize::try_from(parse_integer(len)?).ok()?;
    let (name, rest) = rest.split_at_checked(len)?;
    Some(count >= 1 && rest.starts_with(b"\r\n") && is_known_command(name))
}

fn looks_like_reply(data: &[u8]) -> bool {
    match data.first() {
        Some(b'+') => split_line(data)
            .is_some_and(|(line, _)| matches!(line, b"+OK" | b"+PONG" | b"+QUEUED" | b"+RESET")),
        Some(b'-') => split_line(data).is_some_and(|(line, _)| is_error_line(line)),
        Some(&kind) if is_type_byte(kind) => match walk(data) {
            Walk::Complete(end) => data.get(end).is_none_or(|&next| is_type_byte(next)),
            Walk::Partial { lines } => lines >= 2,
            Walk::Invalid => false,
        },
        _ => false,
    }
}

/// `-ERR ...`, `-WRONGTYPE ...`: an upper-case error code first.
fn is_error_line(line: &[u8]) -> bool {
    let code = line
        .get(1..)
        .unwrap_or_default()
        .split(|&b| b == b' ')
        .next()
        .unwrap_or_default();
    (2..=32).contains(&code.len()) && code.iter().all(|&b| b.is_ascii_uppercase() || b == b'_')
}

fn is_integer_text(body: &[u8]) -> bool {
    let digits = body.strip_prefix(b"-").unwrap_or(body);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

fn is_type_byte(byte: u8) -> bool {
    b"+-:$*_#,(!=%~>|".contains(&byte)
}

/// The line before the first `\r\n` and what follows it.
fn split_line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let window = data.get(..data.len().min(MAX_LINE + 2)).unwrap_or(data);
    let end = window.windows(2).position(|pair| pair == b"\r\n")?;
    Some((data.get(..end)?, data.get(end + 2..)?))
}

enum Walk {
    /// A whole value ends at this offset.
    Complete(usize),
    /// Well-formed as far as it goes, after this many lines.
    Partial {
        lines: usize,
    },
    Invalid,
}

/// Checks the structure of the reply at the start of `data`, stopping when
/// enough lines agree.
fn walk(data: &[u8]) -> Walk {
    let mut open = [0_u64; MAX_DEPTH];
    let mut depth = 0;
    let mut pos = 0;
    let mut lines = 0;
    loop {
        if lines == LINE_BUDGET {
            return Walk::Partial { lines };
        }
        let rest = data.get(pos..).unwrap_or_default();
        let Some((line, after)) = split_line(rest) else {
            return if rest.len() > MAX_LINE {
                Walk::Invalid
            } else {
                Walk::Partial { lines }
            };
        };
        pos = data.len() - after.len();
        lines += 1;
        let Some((&kind, body)) = line.split_first() else {
            return Walk::Invalid;
        };
        let element_done = match kind {
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let Some(count) = parse_integer(body) else {
                    return Walk::Invalid;
                };
                let count = if kind == b'%' || kind == b'|' {
                    count.saturating_mul(2)
                } else {
                    count
                };
                match u64::try_from(count) {
                    Ok(0) => true,
                    Ok(count) => {
                        let Some(slot) = open.get_mut(depth) else {
                            return Walk::Partial { lines };
                        };
                        *slot = count;
                        depth += 1;
                        false
                    }
                    Err(_) if count == -1 && kind == b'*' => true,
                    Err(_) => return Walk::Invalid,
                }
            }
            b'$' | b'!' | b'=' => match parse_integer(body).map(usize::try_from) {
                Some(Ok(len)) => {
                    let Some(payload_end) = pos.checked_add(len) else {
                        return Walk::Invalid;
                    };
                    match data.get(payload_end..payload_end.saturating_add(2)) {
                        Some(b"\r\n") => pos = payload_end + 2,
                        Some(_) if data.len() >= payload_end.saturating_add(2) => {
                            return Walk::Invalid
                        }
                        _ => return Walk::Partial { lines },
                    }
                    true
                }
                Some(Err(_)) if body == b"-1" && kind == b'$' => true,
                _ => return Walk::Invalid,
            },
            b'+' | b'-' => true,
            b':' | b'(' if is_integer_text(body) => true,
            b',' if !body.is_empty() => true,
            b'#' if body == b"t" || body == b"f" => true,
            b'_' if body.is_empty() => true,
            _ => return Walk::Invalid,
        };
        if element_done {
            loop {
                let Some(top) = depth.checked_sub(1) else {
                    return Walk::Complete(pos);
                };
                let Some(remaining) = open.get_mut(top) else {
                    return Walk::Invalid;
                };
                *remaining = remaining.saturating_sub(1);
                if *remaining > 0 {
                    break;
                }
                depth = top;
            }
        }
    }
}
