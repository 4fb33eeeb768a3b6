//! Where an HTTP/1.x message begins: the first bytes of a request line or a
//! status line. Used to detect the protocol, to check each message start
//! while in sync, and to find a plausible start again after losing sync.

use crate::protocols::Side;

/// Methods trusted when guessing where a request starts (detection and
/// resynchronisation), where any uppercase word would match too much text.
const KNOWN_METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// Registered extension methods (WebDAV, caches, UPnP...) also accepted at a
/// message boundary of a stream in sync, where the start is not a guess.
/// A fixed list rather than any token: span names come from methods.
const EXTENSION_METHODS: [&[u8]; 20] = [
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"MKACTIVITY",
    b"CHECKOUT",
    b"MERGE",
    b"PURGE",
    b"LINK",
    b"UNLINK",
    b"QUERY",
    b"M-SEARCH",
    b"NOTIFY",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
];

/// Room for the bytes of an undecided start: more than any start pattern
/// needs to be decided (the longest method, a space and the first byte of
/// the request-target, 13; or `HTTP/1.1 200 `, 13).
pub(super) const MAX_START_PATTERN: usize = 14;

/// Whether some bytes begin a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StartMatch {
    Yes,
    No,
    /// The bytes are a prefix of a start; more are needed to decide.
    NeedMore,
}

/// Which request methods a start may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Methods {
    Known,
    /// Known and extension methods: right after a complete message, where
    /// the stream is known to be at a message boundary.
    Extended,
}

pub(super) fn message_start(side: Side, bytes: &[u8], methods: Methods) -> StartMatch {
    match side {
        Side::Client => request_start(bytes, methods),
        Side::Server => status_start(bytes),
    }
}

pub(super) fn request_start(bytes: &[u8], methods: Methods) -> StartMatch {
    let extensions: &[&[u8]] = match methods {
        Methods::Known => &[],
        Methods::Extended => &EXTENSION_METHODS,
    };
    // Checked at every message start: stop at the first full match (the
    // strongest answer) instead of trying every method.
    let mut found = StartMatch::No;
    for method in KNOWN_METHODS.iter().chain(extensions) {
        match method_start(bytes, method) {
            StartMatch::Yes => return StartMatch::Yes,
            StartMatch::NeedMore => found = StartMatch::NeedMore,
            StartMatch::No => {}
        }
    }
    found
}

/// `bytes` against `METHOD SP target-start`.
fn method_start(bytes: &[u8], method: &[u8]) -> StartMatch {
    let compared = bytes.len().min(method.len());
    if bytes.get(..compared) != method.get(..compared) {
        return StartMatch::No;
    }
    match (bytes.get(method.len()), bytes.get(method.len() + 1)) {
        (None, _) | (Some(b' '), None) => StartMatch::NeedMore,
        (Some(b' '), Some(&first)) if is_target_start(first) => StartMatch::Yes,
        _ => StartMatch::No,
    }
}

/// First byte of origin-form (`/`), asterisk-form (`*`), absolute-form
/// (`http:`) or authority-form (`host:443`, `[::1]:443`) targets.
fn is_target_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'*' | b'[')
}

/// `HTTP/1.x SP 3DIGIT` followed by the reason's space or the line end.
pub(super) fn status_start(bytes: &[u8]) -> StartMatch {
    const PATTERN_LEN: usize = 13;
    let fits = bytes
        .iter()
        .take(PATTERN_LEN)
        .enumerate()
        .all(|(i, &b)| match i {
            0..=6 => b"HTTP/1.".get(i) == Some(&b),
            7 => b == b'0' || b == b'1',
            8 => b == b' ',
            9..=11 => b.is_ascii_digit(),
            _ => matches!(b, b' ' | b'\r' | b'\n'),
        });
    match (fits, bytes.len() >= PATTERN_LEN) {
        (false, _) => StartMatch::No,
        (true, true) => StartMatch::Yes,
        (true, false) => StartMatch::NeedMore,
    }
}

/// Guesses which side of an HTTP/1.x conversation sent `data`, the first
/// bytes seen in one direction of a connection.
///
/// `Some(Side::Client)` for the start of a request with a well-known method
/// (when the whole request line is in `data`, it must end in `HTTP/1.0` or
/// `HTTP/1.1`); `Some(Side::Server)` for `HTTP/1.0 ` or `HTTP/1.1 ` and a
/// 3-digit status. `None` otherwise, also when `data` is too short to tell.
/// Does not allocate.
pub fn detect(data: &[u8]) -> Option<Side> {
    if status_line_start(data) {
        return Some(Side::Server);
    }
    if request_start(data, Methods::Known) == StartMatch::Yes && request_line_plausible(data) {
        return Some(Side::Client);
    }
    None
}

/// Like [`status_start`] but content with the status code alone when the
/// data stops right after it.
fn status_line_start(data: &[u8]) -> bool {
    match status_start(data) {
        StartMatch::Yes => true,
        StartMatch::NeedMore => data.len() == 12,
        StartMatch::No => false,
    }
}

/// Checks the request-target and the version on the first line, as far as
/// `data` reaches.
fn request_line_plausible(data: &[u8]) -> bool {
    let line_end = data.iter().position(|b| matches!(b, b'\r' | b'\n'));
    let line = data
        .get(..line_end.unwrap_or(data.len()))
        .unwrap_or_default();
    let Some(method_end) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let after_method = line.get(method_end + 1..).unwrap_or_default();
    let target_len = after_method.iter().take_while(|&&b| b != b' ').count();
    let target = after_method.get(..target_len).unwrap_or_default();
    if !target.iter().all(|&b| b > b' ' && b != 0x7f) {
        return false;
    }
    let Some(version) = after_method.get(target_len + 1..) else {
        // No version yet: the target may be long; HTTP/0.9 lines end here.
        return line_end.is_none();
    };
    match line_end {
        Some(_) => version == b"HTTP/1.1" || version == b"HTTP/1.0",
        None => version.iter().enumerate().all(|(i, &b)| match i {
            0..=6 => b"HTTP/1.".get(i) == Some(&b),
            7 => b == b'0' || b == b'1',
            _ => false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_starts() {
        assert_eq!(request_start(b"GET /", Methods::Known), StartMatch::Yes);
        assert_eq!(request_start(b"GE", Methods::Known), StartMatch::NeedMore);
        assert_eq!(request_start(b"GET ", Methods::Known), StartMatch::NeedMore);
        assert_eq!(request_start(b"GET  /", Methods::Known), StartMatch::No);
        assert_eq!(request_start(b"PROPFIND /", Methods::Known), StartMatch::No);
        assert_eq!(
            request_start(b"PROPFIND /", Methods::Extended),
            StartMatch::Yes
        );
        assert_eq!(
            request_start(b"M-SEARCH *", Methods::Extended),
            StartMatch::Yes
        );
        assert_eq!(
            request_start(b"UNSUBSCRIB", Methods::Extended),
            StartMatch::NeedMore
        );
        assert_eq!(
            request_start(b"XYZGET /", Methods::Extended),
            StartMatch::No
        );
        assert_eq!(request_start(b"get /", Methods::Extended), StartMatch::No);
        assert_eq!(
            request_start(b"CONNECT example.org:443", Methods::Known),
            StartMatch::Yes
        );
        assert_eq!(request_start(b"GET \x01", Methods::Known), StartMatch::No);
        let longest = KNOWN_METHODS
            .iter()
            .chain(&EXTENSION_METHODS)
            .map(|m| m.len())
            .max();
        assert_eq!(longest.map(|len| len + 2), Some(MAX_START_PATTERN - 1));
    }

    #[test]
    fn status_starts() {
        assert_eq!(status_start(b"HTTP/1.1 200 OK"), StartMatch::Yes);
        assert_eq!(status_start(b"HTTP/1.0 404\r\n"), StartMatch::Yes);
        assert_eq!(status_start(b"HTTP/1.1 20"), StartMatch::NeedMore);
        assert_eq!(status_start(b"HTTP/2 200 "), StartMatch::No);
        assert_eq!(status_start(b"HTTP/1.1 2x0 "), StartMatch::No);
    }

    #[test]
    fn detects_requests() {
        assert_eq!(
            detect(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Side::Client)
        );
        assert_eq!(
            detect(b"POST /api/v1/items?x=1 HTTP/1.0\r\n"),
            Some(Side::Client)
        );
        assert_eq!(
            detect(b"DELETE /very/long/path/that/was/cut"),
            Some(Side::Client)
        );
        assert_eq!(detect(b"GET /x HTT"), Some(Side::Client));
        assert_eq!(detect(b"OPTIONS * HTTP/1.1\r\n"), Some(Side::Client));
        assert_eq!(
            detect(b"GET http://example.org/ HTTP/1.1\r\n"),
            Some(Side::Client)
        );
    }

    #[test]
    fn rejects_non_requests() {
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"GE"), None);
        assert_eq!(detect(b"GET /x HTTP/2.0\r\n"), None);
        assert_eq!(detect(b"GET /x HTTX"), None);
        assert_eq!(detect(b"GET /x\r\n"), None, "HTTP/0.9");
        assert_eq!(detect(b"GET /x HTTP/1.1 extra\r\n"), None);
        assert_eq!(detect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        assert_eq!(detect(b"ET / HTTP/1.1\r\n"), None, "caught mid-stream");
        assert_eq!(detect(b"get / HTTP/1.1\r\n"), None);
        assert_eq!(detect(b"PROPFIND / HTTP/1.1\r\n"), None);
        assert_eq!(detect(b"*1\r\n$4\r\nPING\r\n"), None);
        assert_eq!(detect(b"GET /a\x00b HTTP/1.1\r\n"), None);
    }

    #[test]
    fn detects_responses() {
        assert_eq!(detect(b"HTTP/1.1 200 OK\r\n"), Some(Side::Server));
        assert_eq!(detect(b"HTTP/1.0 503"), Some(Side::Server));
        assert_eq!(detect(b"HTTP/1.1 204\r\n\r\n"), Some(Side::Server));
        assert_eq!(detect(b"HTTP/1.1 20"), None);
        assert_eq!(detect(b"HTTP/2 200"), None);
        assert_eq!(detect(b"HTTP/1.1 200X"), None);
        assert_eq!(detect(b"HTTP/1.2 200 OK"), None);
    }
}
