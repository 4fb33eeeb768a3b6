//! One JSON object per span per line: the contract later sinks and tests
//! build on.
//!
//! Written straight into the caller's buffer, field by field, in the order
//! and with the escaping `serde_json` used to produce (the tests compare the
//! two byte for byte): serialising through serde cost an allocation per id
//! and several per span, on every span the tracer emits.

use crate::{
    protocols::{AttrValue, SharedStr},
    spans::{Span, SpanId, SpanKind, SpanStatus},
};

/// Appends `span` as one JSON line to `out`.
pub fn write_json_line(out: &mut Vec<u8>, span: &Span) {
    // Most lines are a few hundred bytes: one reservation, not many.
    out.reserve(512);
    out.extend_from_slice(b"{\"trace_id\":\"");
    push_hex(out, &span.trace_id.0);
    out.extend_from_slice(b"\",\"span_id\":\"");
    push_hex(out, &span.span_id.0);
    match span.parent_span_id {
        Some(SpanId(id)) => {
            out.extend_from_slice(b"\",\"parent_span_id\":\"");
            push_hex(out, &id);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"\",\"parent_span_id\":null"),
    }
    if let Some(state) = &span.tracestate {
        out.extend_from_slice(b",\"tracestate\":");
        push_str(out, state);
    }
    out.extend_from_slice(b",\"name\":");
    push_str(out, &span.name);
    // Both are fixed words: written with their keys in one go.
    out.extend_from_slice(match (span.kind, span.status) {
        (SpanKind::Server, SpanStatus::Ok) => b",\"kind\":\"server\",\"status\":\"ok\"",
        (SpanKind::Server, SpanStatus::Error) => b",\"kind\":\"server\",\"status\":\"error\"",
        (SpanKind::Client, SpanStatus::Ok) => b",\"kind\":\"client\",\"status\":\"ok\"",
        (SpanKind::Client, SpanStatus::Error) => b",\"kind\":\"client\",\"status\":\"error\"",
    });
    out.extend_from_slice(b",\"start_time_unix_nano\":");
    push_int(out, span.start_time_unix_nano);
    out.extend_from_slice(b",\"end_time_unix_nano\":");
    push_int(out, span.end_time_unix_nano);
    out.extend_from_slice(b",\"duration_ns\":");
    push_int(out, span.duration_ns());
    out.extend_from_slice(b",\"pid\":");
    push_int(out, span.pid);
    out.extend_from_slice(b",\"tid\":");
    push_int(out, span.tid);
    out.extend_from_slice(b",\"process\":");
    push_str(out, &span.process);
    out.extend_from_slice(b",\"protocol\":");
    push_own_str(out, span.protocol.as_str());
    out.extend_from_slice(b",\"attributes\":{");
    for (i, (key, value)) in span.attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_own_str(out, key);
        out.push(b':');
        match value {
            AttrValue::Str(SharedStr::Static(v)) => push_own_str(out, v),
            AttrValue::Str(v) => push_str(out, v),
            AttrValue::Int(v) => push_int(out, *v),
            AttrValue::Bool(true) => out.extend_from_slice(b"true"),
            AttrValue::Bool(false) => out.extend_from_slice(b"false"),
        }
    }
    out.extend_from_slice(b"}}\n");
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of an id, as the ids' `Display` writes them: four bytes
/// at a time turned into eight digits by arithmetic on one word, then one
/// fixed-size copy (a table lookup and a push per digit cost ~130
/// instructions per span id, under callgrind).
pub(super) fn push_hex<const N: usize>(out: &mut Vec<u8>, bytes: &[u8; N]) {
    const { assert!(N.is_multiple_of(4) && N <= 16, "ids are 8 or 16 bytes") };
    let mut text = [0u8; 32];
    for (digits, quad) in text.chunks_exact_mut(8).zip(bytes.chunks_exact(4)) {
        let mut word = [0u8; 4];
        word.copy_from_slice(quad);
        digits.copy_from_slice(&hex_digits(u32::from_be_bytes(word)).to_be_bytes());
    }
    out.extend_from_slice(text.get(..2 * N).unwrap_or(&text));
}

/// The eight lower-case hex digits of `value`, first digit in the most
/// significant byte.
fn hex_digits(value: u32) -> u64 {
    // Spread the nibbles one per byte, keeping their order.
    let mut nibbles = u64::from(value);
    nibbles = (nibbles | (nibbles << 16)) & 0x0000_ffff_0000_ffff;
    nibbles = (nibbles | (nibbles << 8)) & 0x00ff_00ff_00ff_00ff;
    nibbles = (nibbles | (nibbles << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more (adding 6 carries into
    // bit 4, never into the next byte).
    let letters = ((nibbles + ONES * 6) >> 4) & ONES;
    // '0' + n for digits; 'a' + n - 10 = '0' + n + 39 for letters.
    nibbles + ONES * u64::from(b'0') + letters * 39
}

pub(super) fn push_int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Whether `serde_json` escapes this byte in a string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// A string of the tracer's own (an attribute key, a fixed word): it
/// needs no escaping, so it is copied as it is. Keys and fixed words are
/// `&'static str`, so none can come from traced bytes.
fn push_own_str(out: &mut Vec<u8>, text: &'static str) {
    debug_assert!(
        !text.bytes().any(needs_escape),
        "{text:?} would need escaping"
    );
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// A JSON string as `serde_json` writes one: `"`, backslash and the control
/// characters escaped (the common ones as `\n`-style, the others as
/// `\u00xx`), everything else (DEL, non-ASCII) as is.
fn push_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.push(b'"');
    if any_needs_escape(bytes) {
        push_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Whether some byte of `bytes` needs escaping. Almost no text does: it
/// is checked eight bytes at a time, reading only, so the copy that
/// follows is one.
fn any_needs_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_needs_escape(u64::from_ne_bytes(word)) {
            return true;
        }
    }
    let tail = chunks.remainder();
    if tail.is_empty() {
        return false;
    }
    // The tail as a whole word: the last eight bytes when there are that
    // many (some checked twice), or the tail padded with bytes that need
    // no escaping.
    let word = match bytes.len().checked_sub(8) {
        Some(from) => last_word(bytes, from),
        None => short_word(tail),
    };
    word_needs_escape(u64::from_ne_bytes(word))
}

fn last_word(bytes: &[u8], from: usize) -> [u8; 8] {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes.get(from..from + 8).unwrap_or(&[b'a'; 8]));
    word
}

/// Fewer than eight bytes as a word, padded with `a` (which needs no
/// escaping): the bytes are read as two overlapping halves, so there is
/// no copy of a variable length.
fn short_word(bytes: &[u8]) -> [u8; 8] {
    let mut word = [b'a'; 8];
    let len = bytes.len();
    if len >= 4 {
        let mut half = [0u8; 4];
        half.copy_from_slice(bytes.get(..4).unwrap_or(&[b'a'; 4]));
        word[..4].copy_from_slice(&half);
        half.copy_from_slice(bytes.get(len - 4..).unwrap_or(&[b'a'; 4]));
        if let Some(at) = word.get_mut(len - 4..len) {
            at.copy_from_slice(&half);
        }
    } else if let (Some(&first), Some(&middle), Some(&last)) =
        (bytes.first(), bytes.get(len / 2), bytes.last())
    {
        word[0] = first;
        word[len / 2] = middle;
        word[len - 1] = last;
    }
    word
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any of the eight bytes in `word` needs escaping: below 0x20,
/// `"` or `\`. Each test sets a byte's high bit exactly when some byte
/// matches (the classic "has a byte less than n" for n <= 128).
fn word_needs_escape(word: u64) -> bool {
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGHS != 0
}

fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(bytes.get(run_start..i).unwrap_or_default());
        run_start = i + 1;
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            _ => b'u',
        };
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[
                b'0',
                b'0',
                HEX_DIGITS[usize::from(b >> 4)],
                HEX_DIGITS[usize::from(b & 0xf)],
            ]);
        }
    }
    out.extend_from_slice(bytes.get(run_start..).unwrap_or_default());
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        protocols::Protocol,
        spans::{SpanId, SpanKind, SpanStatus, TraceId},
    };

    pub(crate) fn sample_span() -> Span {
        Span {
            trace_id: TraceId([0xab; 16]),
            span_id: SpanId([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]),
            parent_span_id: None,
            tracestate: None,
            name: "GET /index.html".into(),
            kind: SpanKind::Server,
            status: SpanStatus::Ok,
            start_time_unix_nano: 1_000_002_000,
            end_time_unix_nano: 1_001_232_000,
            pid: 1234,
            tid: 1235,
            process: Arc::from("nginx"),
            protocol: Protocol::Http,
            attributes: vec![
                ("http.request.method", AttrValue::Str("GET".into())),
                ("url.path", AttrValue::Str("/index.html".into())),
                ("http.response.status_code", AttrValue::Int(200)),
                ("server.address", AttrValue::Str("127.0.0.1".into())),
                ("server.port", AttrValue::Int(8080)),
                ("client.address", AttrValue::Str("127.0.0.1".into())),
                ("client.port", AttrValue::Int(54321)),
            ],
        }
    }

    #[test]
    fn matches_the_contract() {
        let mut out = Vec::new();
        write_json_line(&mut out, &sample_span());
        assert_eq!(out.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["trace_id"], "abababababababababababababababab");
        assert_eq!(value["span_id"], "0102030405060708");
        assert!(value["parent_span_id"].is_null());
        assert_eq!(value["name"], "GET /index.html");
        assert_eq!(value["kind"], "server");
        assert_eq!(value["status"], "ok");
        assert_eq!(value["duration_ns"], 1_230_000);
        assert_eq!(value["pid"], 1234);
        assert_eq!(value["tid"], 1235);
        assert_eq!(value["process"], "nginx");
        assert_eq!(value["protocol"], "http");
        assert_eq!(value["attributes"]["http.response.status_code"], 200);
        assert_eq!(value["attributes"]["server.port"], 8080);
    }

    /// The `serde_json` serialisation the sink used before it wrote JSON by
    /// hand: its output is the contract, byte for byte.
    mod reference {
        use serde::ser::{Serialize, SerializeMap, Serializer};

        use crate::{protocols::AttrValue, spans::Span};

        pub fn write_json_line(out: &mut Vec<u8>, span: &Span) {
            serde_json::to_writer(&mut *out, &JsonSpan(span)).unwrap();
            out.push(b'\n');
        }

        struct JsonSpan<'a>(&'a Span);
        struct JsonAttributes<'a>(&'a Span);

        impl Serialize for JsonSpan<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let span = self.0;
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("trace_id", &span.trace_id.to_string())?;
                map.serialize_entry("span_id", &span.span_id.to_string())?;
                map.serialize_entry(
                    "parent_span_id",
                    &span.parent_span_id.map(|id| id.to_string()),
                )?;
                if let Some(state) = &span.tracestate {
                    map.serialize_entry("tracestate", state)?;
                }
                map.serialize_entry("name", span.name.as_str())?;
                map.serialize_entry("kind", span.kind.as_str())?;
                map.serialize_entry("status", span.status.as_str())?;
                map.serialize_entry("start_time_unix_nano", &span.start_time_unix_nano)?;
                map.serialize_entry("end_time_unix_nano", &span.end_time_unix_nano)?;
                map.serialize_entry("duration_ns", &span.duration_ns())?;
                map.serialize_entry("pid", &span.pid)?;
                map.serialize_entry("tid", &span.tid)?;
                map.serialize_entry("process", &*span.process)?;
                map.serialize_entry("protocol", span.protocol.as_str())?;
                map.serialize_entry("attributes", &JsonAttributes(span))?;
                map.end()
            }
        }

        impl Serialize for JsonAttributes<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.attributes.len()))?;
                for (key, value) in &self.0.attributes {
                    match value {
                        AttrValue::Str(v) => map.serialize_entry(key, v.as_str())?,
                        AttrValue::Int(v) => map.serialize_entry(key, v)?,
                        AttrValue::Bool(v) => map.serialize_entry(key, v)?,
                    }
                }
                map.end()
            }
        }
    }

    fn assert_same_as_reference(span: &Span) {
        let mut ours = b"kept\n".to_vec();
        write_json_line(&mut ours, span);
        let mut theirs = b"kept\n".to_vec();
        reference::write_json_line(&mut theirs, span);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_word_check_agrees_with_the_byte_check() {
        for b in 0u8..=0xff {
            for len in 0..20 {
                for at in 0..len {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = b;
                    assert_eq!(
                        any_needs_escape(&bytes),
                        needs_escape(b),
                        "byte {b:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_length_is_copied_whole() {
        let text: String = (0..64u8).map(|i| char::from(b'a' + i % 26)).collect();
        for len in 0..text.len() {
            let mut out = b"kept".to_vec();
            push_str(&mut out, &text[..len]);
            assert_eq!(out, format!("kept\"{}\"", &text[..len]).as_bytes());
        }
    }

    #[test]
    fn ids_are_lower_case_hex() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            let id: [u8; 16] = std::array::from_fn(|_| rng.u8(..));
            let expected = id.iter().fold(String::new(), |mut text, b| {
                text.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                text.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
                text
            });
            let mut out = b"kept".to_vec();
            push_hex(&mut out, &id);
            assert_eq!(out, format!("kept{expected}").as_bytes());
            let mut out = Vec::new();
            let half: [u8; 8] = std::array::from_fn(|i| id[i]);
            push_hex(&mut out, &half);
            assert_eq!(out, &expected.as_bytes()[..16]);
        }
        let mut out = Vec::new();
        push_hex(&mut out, &[0x00, 0x09, 0x0a, 0x0f, 0x90, 0xa0, 0xf0, 0xff]);
        assert_eq!(out, b"00090a0f90a0f0ff");
    }

    /// Keys and fixed values are copied unchecked: one that needed
    /// escaping would be a bug in the tracer, caught in every debug build.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "would need escaping")]
    fn an_own_word_that_needs_escaping_is_a_bug() {
        let mut span = sample_span();
        span.attributes = vec![("key\twith\"odd\\chars", AttrValue::fixed(""))];
        write_json_line(&mut Vec::new(), &span);
    }

    #[test]
    fn byte_for_byte_what_serde_json_wrote() {
        assert_same_as_reference(&sample_span());

        // Every byte that may need escaping, in every field that is text.
        let mut awkward: String = (0u8..=0x7f).map(char::from).collect();
        awkward.push_str("é€😀\u{2028}\u{fffd}\\\"end");
        let mut span = sample_span();
        span.parent_span_id = Some(SpanId([0, 0xff, 0x10, 0x0a, 0, 0, 0, 1]));
        span.trace_id = TraceId([
            0x00, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xf0, 0, 0, 0, 0, 0, 0x0f,
        ]);
        span.tracestate = Some(format!("vendor={awkward}"));
        span.name = awkward.clone().into();
        span.kind = SpanKind::Client;
        span.status = SpanStatus::Error;
        span.start_time_unix_nano = u64::MAX;
        span.end_time_unix_nano = 0;
        span.pid = u32::MAX;
        span.tid = 0;
        span.process = Arc::from(awkward.as_str());
        span.protocol = Protocol::Postgresql;
        span.attributes = vec![
            ("db.query.text", AttrValue::from(awkward.as_str())),
            ("empty", AttrValue::fixed("")),
            ("neg", AttrValue::Int(i64::MIN)),
            ("max", AttrValue::Int(i64::MAX)),
            ("zero", AttrValue::Int(0)),
            ("yes", AttrValue::Bool(true)),
            ("no", AttrValue::Bool(false)),
            (
                "shared",
                AttrValue::Str(SharedStr::Shared(Arc::from("::1"))),
            ),
            ("dup", AttrValue::Int(1)),
            ("dup", AttrValue::Int(2)),
        ];
        assert_same_as_reference(&span);

        span.attributes.clear();
        span.tracestate = Some(String::new());
        span.name = SharedStr::Static("");
        assert_same_as_reference(&span);

        for protocol in Protocol::ALL {
            span.protocol = protocol;
            assert_same_as_reference(&span);
        }
        // Each control byte alone, at the start, middle and end.
        for b in 0u8..0x20 {
            let c = char::from(b);
            span.name = format!("{c}a{c}b{c}").into();
            assert_same_as_reference(&span);
        }
    }
}
