//! W3C Trace Context (level 1) carried by request headers.

use crate::protocols::TraceContext;

/// `00-` + 32 + `-` + 16 + `-` + 2.
const TRACEPARENT_LEN: usize = 55;

/// Reads `traceparent` and `tracestate` from a request's headers. Anything
/// malformed yields `None` as a whole: a half-read context would link spans
/// to the wrong trace.
pub(super) fn trace_context(headers: &[httparse::Header<'_>]) -> Option<TraceContext> {
    let mut traceparents = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("traceparent"));
    let traceparent = traceparents.next()?;
    let count = if traceparents.next().is_some() { 2 } else { 1 };
    let tracestate = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("tracestate"))
        .map(|h| h.value);
    trace_context_of(traceparent.value, count, tracestate)
}

/// The trace context of a request with `traceparent_count` `traceparent`
/// fields, the first being `traceparent`, and `tracestate` as its first
/// `tracestate` field. Shared with HTTP/2, whose fields come out of HPACK.
pub(crate) fn trace_context_of(
    traceparent: &[u8],
    traceparent_count: usize,
    tracestate: Option<&[u8]>,
) -> Option<TraceContext> {
    if traceparent_count != 1 {
        // Two parents: no way to tell which one the caller meant.
        return None;
    }
    let (trace_id, parent_span_id, flags) = parse_traceparent(traceparent)?;
    let tracestate = tracestate
        .and_then(|value| std::str::from_utf8(trim_ows(value)).ok())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Some(TraceContext {
        trace_id,
        parent_span_id,
        flags,
        tracestate,
    })
}

/// `version-traceid-parentid-flags`, lowercase hex only.
pub(super) fn parse_traceparent(value: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    let value = trim_ows(value);
    let (head, tail) = value.split_at_checked(TRACEPARENT_LEN)?;
    let [version] = decode_hex::<1>(head.get(0..2)?)?;
    if version == 0xff {
        return None;
    }
    // Version 00 is exactly this long; later versions may append fields.
    let tail_ok = tail.is_empty() || (version != 0 && tail.first() == Some(&b'-'));
    let dashes_ok = [2, 35, 52].iter().all(|&i| head.get(i) == Some(&b'-'));
    if !tail_ok || !dashes_ok {
        return None;
    }
    let trace_id = decode_hex::<16>(head.get(3..35)?)?;
    let parent_span_id = decode_hex::<8>(head.get(36..52)?)?;
    let [flags] = decode_hex::<1>(head.get(53..55)?)?;
    if trace_id == [0; 16] || parent_span_id == [0; 8] {
        return None;
    }
    Some((trace_id, parent_span_id, flags))
}

fn decode_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (lower_hex_digit(*high)? << 4) | lower_hex_digit(*low)?;
    }
    Some(out)
}

fn lower_hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn header<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    #[test]
    fn parses_valid_traceparent() {
        let (trace_id, parent, flags) = parse_traceparent(VALID).unwrap();
        assert_eq!(
            trace_id,
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(parent, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(flags, 1);
        assert!(
            parse_traceparent(b" \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ")
                .is_some()
        );
    }

    #[test]
    fn rejects_malformed_traceparent() {
        let cases: &[&[u8]] = &[
            b"",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7x01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 trailing",
            b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u{e9}".as_bytes(),
        ];
        for case in cases {
            assert_eq!(
                parse_traceparent(case),
                None,
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn accepts_future_versions_with_more_fields() {
        let future =
            b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert_eq!(parse_traceparent(future).map(|t| t.2), Some(1));
        let exact = b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(parse_traceparent(exact).is_some());
    }

    #[test]
    fn tracestate_only_with_valid_parent() {
        let headers = [
            header("TraceState", b" rojo=00f067aa0ba902b7 "),
            header("TRACEPARENT", VALID),
            header("tracestate", b"second=ignored"),
        ];
        let context = trace_context(&headers).unwrap();
        assert_eq!(context.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7"));
        assert_eq!(context.flags, 1);

        let broken = [
            header(
                "traceparent",
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            ),
            header("tracestate", b"rojo=00f067aa0ba902b7"),
        ];
        assert_eq!(trace_context(&broken), None);
        assert_eq!(trace_context(&[header("tracestate", b"a=b")]), None);
    }

    #[test]
    fn two_traceparents_are_not_trusted() {
        let headers = [header("traceparent", VALID), header("traceparent", VALID)];
        assert_eq!(trace_context(&headers), None);
    }
}
