//! Guessing from the first bytes of one direction whether it is memcached.

use super::request::{parse_line, Line};
use super::response::is_distinctive;
use crate::protocols::Side;

/// Longest first line looked at: command lines are short, except multi-key
/// gets, for which the start suffices.
const MAX_LINE: usize = 2048;

/// `Some(Side::Client)` for a well-formed text-protocol command line,
/// `Some(Side::Server)` for a response line only memcached writes.
pub fn detect(data: &[u8]) -> Option<Side> {
    let window = data.get(..data.len().min(MAX_LINE)).unwrap_or(data);
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return looks_like_long_get(window).then_some(Side::Client);
    };
    let line = window.get(..end)?;
    if matches!(parse_line(line), Line::Request { .. }) {
        Some(Side::Client)
    } else if is_distinctive(line) {
        Some(Side::Server)
    } else {
        None
    }
}

/// The start of a multi-key get whose line end is past the window.
fn looks_like_long_get(window: &[u8]) -> bool {
    (window.starts_with(b"get ") || window.starts_with(b"gets "))
        && window.len() == MAX_LINE
        && window.iter().all(|&b| b.is_ascii_graphic() || b == b' ')
}
