//! Test support: connections recorded from nginx, nghttpd, curl, nghttp
//! and Python grpcio (see `testdata/http2/README.md`), and hand-built
//! frames for what recordings do not show.

mod captures;
mod degraded;
mod synthetic;

use crate::protocols::test_support::*;

use super::*;
use crate::protocols::{AttrValue, Exchange, Fault, Protocol};

pub(super) const CAPTURES: [(&str, &[u8]); 15] = [
    (
        "curl_get_secrets",
        include_bytes!("../testdata/http2/curl_get_secrets.cap"),
    ),
    (
        "curl_post",
        include_bytes!("../testdata/http2/curl_post.cap"),
    ),
    (
        "curl_head",
        include_bytes!("../testdata/http2/curl_head.cap"),
    ),
    ("curl_503", include_bytes!("../testdata/http2/curl_503.cap")),
    (
        "nghttp_nginx_multi",
        include_bytes!("../testdata/http2/nghttp_nginx_multi.cap"),
    ),
    (
        "nghttp_nginx_post",
        include_bytes!("../testdata/http2/nghttp_nginx_post.cap"),
    ),
    (
        "nghttpd_padding_push",
        include_bytes!("../testdata/http2/nghttpd_padding_push.cap"),
    ),
    (
        "nghttpd_table_size_0",
        include_bytes!("../testdata/http2/nghttpd_table_size_0.cap"),
    ),
    (
        "nghttpd_small_encoder_table",
        include_bytes!("../testdata/http2/nghttpd_small_encoder_table.cap"),
    ),
    (
        "grpc_unary",
        include_bytes!("../testdata/http2/grpc_unary.cap"),
    ),
    (
        "grpc_stream",
        include_bytes!("../testdata/http2/grpc_stream.cap"),
    ),
    (
        "grpc_deadline",
        include_bytes!("../testdata/http2/grpc_deadline.cap"),
    ),
    (
        "grpc_unimplemented",
        include_bytes!("../testdata/http2/grpc_unimplemented.cap"),
    ),
    (
        "grpc_many",
        include_bytes!("../testdata/http2/grpc_many.cap"),
    ),
    (
        "grpc_concurrent",
        include_bytes!("../testdata/http2/grpc_concurrent.cap"),
    ),
];

pub(super) fn capture(name: &str) -> Vec<Record> {
    let (_, bytes) = CAPTURES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no capture {name}"));
    records(bytes)
}

pub(super) fn parser() -> Http2Parser {
    Http2Parser::new(ParserOptions::default())
}

pub(super) fn run(name: &str) -> ParseOutput {
    replay_whole(&mut parser(), &capture(name))
}

/// (protocol, name, HTTP or gRPC status, fault, start record, end record)
pub(super) type Summary = (Protocol, String, Option<i64>, Fault, u64, u64);

pub(super) fn summary(out: &ParseOutput) -> Vec<Summary> {
    out.exchanges
        .iter()
        .map(|e| {
            assert_eq!(attr_str(e, "network.protocol.name"), Some("http"), "{e:?}");
            assert_eq!(attr_str(e, "network.protocol.version"), Some("2"), "{e:?}");
            let status_key = match e.protocol {
                Protocol::Grpc => {
                    assert_eq!(attr_str(e, "rpc.system"), Some("grpc"));
                    "rpc.grpc.status_code"
                }
                _ => "http.response.status_code",
            };
            let status = match attr(e, status_key) {
                Some(AttrValue::Int(code)) => Some(*code),
                _ => None,
            };
            (
                e.protocol,
                e.name.to_string(),
                status,
                e.fault,
                e.start_ns / 1000 - 1,
                e.end_ns / 1000 - 1,
            )
        })
        .collect()
}

pub(super) fn http(name: &str, status: i64, fault: Fault, start: u64, end: u64) -> Summary {
    (
        Protocol::Http2,
        name.to_owned(),
        Some(status),
        fault,
        start,
        end,
    )
}

pub(super) fn grpc(name: &str, status: Option<i64>, fault: Fault, start: u64, end: u64) -> Summary {
    (Protocol::Grpc, name.to_owned(), status, fault, start, end)
}

pub(super) fn int_attr(exchange: &Exchange, key: &str) -> Option<i64> {
    match attr(exchange, key) {
        Some(AttrValue::Int(value)) => Some(*value),
        _ => None,
    }
}

pub(super) fn body_sizes(out: &ParseOutput) -> Vec<(Option<i64>, Option<i64>)> {
    out.exchanges
        .iter()
        .map(|e| {
            (
                int_attr(e, "http.request.body.size"),
                int_attr(e, "http.response.body.size"),
            )
        })
        .collect()
}

pub(super) const SAY_HELLO: &str = "demo.v1.Greeter/SayHello";
pub(super) const FAIL: &str = "demo.v1.Greeter/Fail";
pub(super) const STREAM_HELLOS: &str = "demo.v1.Greeter/StreamHellos";

/// Frame types and flags for hand-built frames.
pub(super) const DATA: u8 = 0;
pub(super) const HEADERS: u8 = 1;
pub(super) const RST_STREAM: u8 = 3;
pub(super) const SETTINGS: u8 = 4;
pub(super) const CONTINUATION: u8 = 9;
pub(super) const END_STREAM: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;

pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with a `prefix_bits`-bit prefix, first byte `first`.
fn hpack_integer(first: u8, prefix_bits: u8, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | u8::try_from(value).unwrap());
        return;
    }
    out.push(first | u8::try_from(max).unwrap());
    value -= max;
    while value >= 128 {
        out.push(u8::try_from(value % 128).unwrap() | 0x80);
        value /= 128;
    }
    out.push(u8::try_from(value).unwrap());
}

/// A literal field without indexing, with a literal name.
pub(super) fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00];
    hpack_integer(0, 7, name.len(), &mut out);
    out.extend_from_slice(name.as_bytes());
    hpack_integer(0, 7, value.len(), &mut out);
    out.extend_from_slice(value.as_bytes());
    out
}

/// A header block of literal fields.
pub(super) fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    fields.iter().flat_map(|(n, v)| literal(n, v)).collect()
}

/// The client's opening: preface and an empty SETTINGS frame.
pub(super) fn client_opening() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// Feeds one side's bytes at `ts_ns`.
pub(super) fn feed(
    parser: &mut Http2Parser,
    side: Side,
    ts_ns: u64,
    data: &[u8],
    out: &mut ParseOutput,
) {
    parser.on_data(side, ts_ns, data, out);
}

/// What Go 1.19's `net/http` server and curl 7.88 exchanged over TLS for
/// two requests on one connection (`curl --http2`), as the Go TLS probes
/// read it: "1 <hex>" the client's bytes, "0 <hex>" the server's. Go writes
/// its opening SETTINGS alone, before it reads the client's preface.
const GO_SERVER_CONNECTION: &[&str] = &[
    "0 0000180400000000000005001000000003000000fa000600100140000400100000",
    "1 505249202a20485454502f322e300d0a0d0a534d0d0a0d0a",
    "0 000004080000000000000f0001",
    "1 000012040000000000",
    "1 000300000064000402000000000200000000",
    "1 000004080000000000",
    "1 01ff0001",
    "0 000000040100000000",
    "1 000023010500000001",
    "1 82048362710f87418b089d5c0b8170dc0bcd34e77a8825b650c3abbcf2e153032a2f2a",
    "0 000030010400000001885f92497ca58ae819aafb50938ec415305a99567b5c01386196e4593e940094be52282009c502d5c65fb801298b46ff000008000100000001676f202f6832610a",
    "1 000000040100000000",
    "1 00000a010500000003",
    "1 82048362714787c0bfbe",
    "0 00000401040000000388c0bfbe000008000100000003676f202f6832620a",
];

#[test]
fn a_server_opening_settings_alone_is_in_sync_from_the_start() {
    let mut parser = parser();
    let mut out = ParseOutput::default();
    for (i, line) in GO_SERVER_CONNECTION.iter().enumerate() {
        let (direction, hex) = line.split_once(' ').unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|j| u8::from_str_radix(&hex[j..j + 2], 16).unwrap())
            .collect();
        let side = if direction == "1" {
            Side::Client
        } else {
            Side::Server
        };
        feed(&mut parser, side, i as u64, &bytes, &mut out);
    }
    assert_eq!(out.desyncs, 0);
    let statuses: Vec<Option<i64>> = out
        .exchanges
        .iter()
        .map(|e| int_attr(e, "http.response.status_code"))
        .collect();
    assert_eq!(statuses, [Some(200), Some(200)]);
}
