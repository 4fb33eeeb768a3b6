//! The few header fields spans need, read out of a decoded header block.
//! Every other field value is dropped as it is decoded: authorization,
//! cookies and the like are never kept.

use crate::protocols::http1::traceparent::trace_context_of;
use crate::protocols::TraceContext;

use super::hpack::{Decoder, Field};

/// Longest `:path` kept; a longer one counts as unknown.
const MAX_PATH: usize = 8 * 1024;
/// Longest `:method` kept (methods are short tokens).
const MAX_METHOD: usize = 32;
/// `traceparent` is 55 bytes in version 00; later versions may add fields.
const MAX_TRACEPARENT: usize = 256;
/// W3C limits `tracestate` to 32 members; 512 bytes is the recommended
/// propagation limit, and a truncated value would be wrong.
const MAX_TRACESTATE: usize = 1024;

/// What a request's header block says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RequestFields {
    pub method: Option<String>,
    /// `:path` as sent, query included.
    pub path: Option<String>,
    /// `content-type: application/grpc...`.
    pub grpc: bool,
    pub trace_context: Option<TraceContext>,
    /// Some field could not be decoded: a missing field may be among them.
    pub incomplete: bool,
}

/// What a response's header block (or its trailers) says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct ResponseFields {
    pub status: Option<u16>,
    /// `content-type: application/grpc...`, or a `grpc-status` or
    /// `grpc-message` field: only gRPC sends those.
    pub grpc: bool,
    pub grpc_status: Option<i64>,
    pub incomplete: bool,
}

impl ResponseFields {
    /// Trailers add to the response head.
    pub fn merge_trailers(&mut self, trailers: ResponseFields) {
        self.grpc |= trailers.grpc;
        if trailers.grpc_status.is_some() {
            self.grpc_status = trailers.grpc_status;
        }
        self.incomplete |= trailers.incomplete;
    }
}

/// Decodes a request's header block. A block that fails to decode tells
/// nothing (what was read of it may be garbage).
pub(super) fn request(decoder: &mut Decoder, block: &[u8]) -> RequestFields {
    let mut fields = RequestFields::default();
    let mut traceparent: Option<Vec<u8>> = None;
    let mut traceparents = 0;
    let mut tracestate: Option<Vec<u8>> = None;
    let decoded = decoder.decode(block, |field| {
        let Field {
            name: Some(name),
            value: Some(value),
        } = field
        else {
            fields.incomplete = true;
            return;
        };
        match name {
            b":method" if fields.method.is_none() => fields.method = method(value),
            b":path" if fields.path.is_none() => fields.path = path(value),
            b"content-type" => fields.grpc |= is_grpc_content_type(value),
            b"traceparent" => {
                traceparents += 1;
                if traceparent.is_none() && value.len() <= MAX_TRACEPARENT {
                    traceparent = Some(value.to_vec());
                }
            }
            b"tracestate" if tracestate.is_none() && value.len() <= MAX_TRACESTATE => {
                tracestate = Some(value.to_vec());
            }
            _ => {}
        }
    });
    if decoded.is_err() {
        return RequestFields {
            incomplete: true,
            ..RequestFields::default()
        };
    }
    fields.trace_context =
        traceparent.and_then(|tp| trace_context_of(&tp, traceparents, tracestate.as_deref()));
    fields
}

/// Decodes a response's header block (head or trailers).
pub(super) fn response(decoder: &mut Decoder, block: &[u8]) -> ResponseFields {
    let mut fields = ResponseFields::default();
    let decoded = decoder.decode(block, |field| {
        let Field {
            name: Some(name),
            value: Some(value),
        } = field
        else {
            fields.incomplete = true;
            return;
        };
        match name {
            b":status" if fields.status.is_none() => fields.status = status(value),
            b"content-type" => fields.grpc |= is_grpc_content_type(value),
            b"grpc-status" => {
                fields.grpc = true;
                fields.grpc_status = grpc_status(value);
            }
            b"grpc-message" => fields.grpc = true,
            _ => {}
        }
    });
    if decoded.is_err() {
        return ResponseFields {
            incomplete: true,
            ..ResponseFields::default()
        };
    }
    fields
}

/// A method token (RFC 9110 5.6.2), else unknown.
fn method(value: &[u8]) -> Option<String> {
    let is_tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if value.is_empty() || value.len() > MAX_METHOD || !value.iter().all(is_tchar) {
        return None;
    }
    String::from_utf8(value.to_vec()).ok()
}

/// A path of visible ASCII, else unknown.
fn path(value: &[u8]) -> Option<String> {
    if value.is_empty() || value.len() > MAX_PATH || !value.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    String::from_utf8(value.to_vec()).ok()
}

fn status(value: &[u8]) -> Option<u16> {
    match value {
        [a, b, c] if value.iter().all(u8::is_ascii_digit) && *a != b'0' => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// gRPC status codes are small non-negative integers.
fn grpc_status(value: &[u8]) -> Option<i64> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc-web`...
fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value
            .get(..GRPC.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(GRPC))
        && value
            .get(GRPC.len())
            .is_none_or(|b| matches!(b, b'+' | b'-' | b';'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of literal fields without indexing, new names.
    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0x00);
            out.push(u8::try_from(name.len()).unwrap());
            out.extend_from_slice(name.as_bytes());
            out.push(u8::try_from(value.len()).unwrap());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    #[test]
    fn request_fields() {
        let mut decoder = Decoder::new();
        let fields = request(
            &mut decoder,
            &block(&[
                (":method", "POST"),
                (":path", "/demo.v1.Greeter/SayHello?x=1"),
                ("content-type", "application/grpc+proto"),
                ("authorization", "Bearer secret"),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("tracestate", "rojo=00f067aa0ba902b7"),
            ]),
        );
        assert_eq!(fields.method.as_deref(), Some("POST"));
        assert_eq!(
            fields.path.as_deref(),
            Some("/demo.v1.Greeter/SayHello?x=1")
        );
        assert!(fields.grpc);
        assert!(!fields.incomplete);
        let context = fields.trace_context.unwrap();
        assert_eq!(context.flags, 1);
        assert_eq!(context.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7"));
    }

    #[test]
    fn two_traceparents_give_no_context() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let fields = request(
            &mut Decoder::new(),
            &block(&[("traceparent", tp), ("traceparent", tp)]),
        );
        assert_eq!(fields.trace_context, None);
    }

    #[test]
    fn unknown_entries_make_fields_incomplete() {
        // :method POST (static), then index 62, unknown mid-stream.
        let fields = request(&mut Decoder::new(), &[0x83, 0xbe]);
        assert_eq!(fields.method.as_deref(), Some("POST"));
        assert_eq!(fields.path, None);
        assert!(fields.incomplete);
        // A block that fails to decode tells nothing, not even the method.
        let mut decoder = Decoder::new();
        decoder.start_synchronised();
        let fields = request(&mut decoder, &[0x83, 0xbe]);
        assert_eq!(fields.method, None);
        assert!(fields.incomplete);
    }

    #[test]
    fn response_fields_and_trailers() {
        let mut decoder = Decoder::new();
        let mut head = response(
            &mut decoder,
            &block(&[(":status", "200"), ("content-type", "text/html")]),
        );
        assert_eq!(head.status, Some(200));
        assert!(!head.grpc);
        let trailers = response(
            &mut decoder,
            &block(&[("grpc-status", "5"), ("grpc-message", "nope")]),
        );
        head.merge_trailers(trailers);
        assert!(head.grpc);
        assert_eq!(head.grpc_status, Some(5));
    }

    #[test]
    fn value_checks() {
        assert_eq!(status(b"404"), Some(404));
        for bad in [&b"40"[..], b"0200", b"2x0", b"099", b""] {
            assert_eq!(status(bad), None);
        }
        assert_eq!(method(b"GET").as_deref(), Some("GET"));
        assert_eq!(method(b"GE T"), None);
        assert_eq!(path(b"/a b"), None);
        assert_eq!(grpc_status(b"13"), Some(13));
        assert_eq!(grpc_status(b"-1"), None);
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"Application/GRPC+json"));
        assert!(is_grpc_content_type(b"application/grpc-web+proto"));
        assert!(!is_grpc_content_type(b"application/grpcx"));
        assert!(!is_grpc_content_type(b"application/json"));
    }
}
