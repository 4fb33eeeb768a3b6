//! Spans straight to the OTLP protobuf wire form: the bytes of an
//! `ExportTraceServiceRequest`, written from our [`Span`]s into one reused
//! buffer, without building the generated message structs first (a struct,
//! a `String` per id, name and attribute key, a `Vec` per list, for every
//! span).
//!
//! The output is byte for byte what prost writes for the structs
//! [`encode::request`](super::encode::request) builds: the same messages,
//! fields in field-number order, proto3 defaults left out, every length
//! prefix a canonical varint. Lengths are computed before anything is
//! written (a first pass over the spans), so nothing is back-patched.
//!
//! The layout (field numbers from opentelemetry-proto):
//!
//! ```text
//! ExportTraceServiceRequest { 1: ResourceSpans* }          one per process
//! ResourceSpans { 1: Resource { 1: KeyValue* }, 2: ScopeSpans }
//! ScopeSpans    { 1: InstrumentationScope { 1: name, 2: version }, 2: Span* }
//! Span { 1: trace_id, 2: span_id, 3: trace_state, 4: parent_span_id, 5: name,
//!        6: kind, 7: start fixed64, 8: end fixed64, 9: KeyValue*,
//!        15: Status { 3: code }, 16: flags fixed32 }
//! KeyValue { 1: key, 2: AnyValue { 1: string | 2: bool | 3: int } }
//! ```

use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::trace::v1::SpanFlags;
use prost::{encoding::encoded_len_varint, Message as _};

use super::encode::{self, SCOPE_NAME};
use crate::{
    protocols::AttrValue,
    sinks::resource::{ResourceConfig, ResourceValue},
    spans::{Span, SpanKind, SpanStatus},
};

// Wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// The key of field `tag` (< 16: one byte).
const fn key(tag: u8, wire_type: u8) -> u8 {
    (tag << 3) | wire_type
}

/// The key of span field 16 (`flags`, fixed32): `16 << 3 | 5` = 133, a
/// two-byte varint.
const FLAGS_KEY: [u8; 2] = [0x85, 0x01];

/// The attribute every span carries besides its own.
const THREAD_ID: &str = "thread.id";

/// OTLP span kinds (`Span.SpanKind`).
const KIND_SERVER: u8 = 2;
const KIND_CLIENT: u8 = 3;
/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u8 = 2;

/// Sampled, and whether the parent is remote is known.
const FLAGS: u32 = 0x01 | SpanFlags::ContextHasIsRemoteMask as u32;

/// An attribute value, span's or resource's.
#[derive(Clone, Copy)]
enum Any<'v> {
    Str(&'v str),
    Int(i64),
    Bool(bool),
}

impl<'v> From<&'v AttrValue> for Any<'v> {
    fn from(value: &'v AttrValue) -> Self {
        match value {
            AttrValue::Str(s) => Any::Str(s),
            AttrValue::Int(i) => Any::Int(*i),
            AttrValue::Bool(b) => Any::Bool(*b),
        }
    }
}

impl<'v> From<&'v ResourceValue> for Any<'v> {
    fn from(value: &'v ResourceValue) -> Self {
        match value {
            ResourceValue::Str(s) => Any::Str(s),
            ResourceValue::Int(i) => Any::Int(*i),
        }
    }
}

/// int64 goes on the wire as its two's-complement bits (ten bytes when
/// negative), as prost writes it.
fn int_bits(value: i64) -> u64 {
    value.cast_unsigned()
}

/// Bytes of a length-delimited field with a one-byte key and `len` bytes
/// of content.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Content bytes of an `AnyValue` holding `value` (the oneof member is
/// always written, even when it is its type's default).
fn any_value_len(value: Any<'_>) -> usize {
    match value {
        Any::Str(s) => field_len(s.len()),
        Any::Int(i) => 1 + encoded_len_varint(int_bits(i)),
        Any::Bool(_) => 2,
    }
}

/// Content bytes of a `KeyValue`. An empty key is proto3's default, left
/// out; the value, a message, is always there.
fn key_value_len(name: &str, value: Any<'_>) -> usize {
    let key = if name.is_empty() {
        0
    } else {
        field_len(name.len())
    };
    key + field_len(any_value_len(value))
}

/// Content bytes of the `Span` message of `span`.
fn span_len(span: &Span) -> usize {
    // trace_id (16 bytes), span_id (8), kind, flags.
    let mut n = 18 + 10 + 2 + 6;
    if let Some(state) = span.tracestate.as_deref().filter(|s| !s.is_empty()) {
        n += field_len(state.len());
    }
    if span.parent_span_id.is_some() {
        n += 10;
    }
    if !span.name.is_empty() {
        n += field_len(span.name.len());
    }
    if span.start_time_unix_nano != 0 {
        n += 9;
    }
    if span.end_time_unix_nano != 0 {
        n += 9;
    }
    for (name, value) in &span.attributes {
        n += field_len(key_value_len(name, value.into()));
    }
    n += field_len(key_value_len(THREAD_ID, thread_id(span)));
    // Status: empty (unset), or { code: ERROR }.
    n += match span.status {
        SpanStatus::Ok => 2,
        SpanStatus::Error => 4,
    };
    n
}

fn thread_id(span: &Span) -> Any<'static> {
    Any::Int(i64::from(span.tid))
}

/// Writes into a buffer of the length computed beforehand. A write past
/// its end is not done but remembered: the lengths were computed wrong.
struct Out<'b> {
    buf: &'b mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'b> Out<'b> {
    fn new(buf: &'b mut [u8]) -> Self {
        Out {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    /// Whether exactly the whole buffer was written.
    fn complete(&self) -> bool {
        !self.overflow && self.pos == self.buf.len()
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        match self.buf.get_mut(self.pos) {
            Some(slot) => *slot = b,
            None => self.overflow = true,
        }
        self.pos += 1;
    }

    #[inline]
    fn bytes(&mut self, src: &[u8]) {
        let end = self.pos + src.len();
        match self.buf.get_mut(self.pos..end) {
            Some(dst) => dst.copy_from_slice(src),
            None => self.overflow = true,
        }
        self.pos = end;
    }

    #[inline]
    fn varint(&mut self, value: u64) {
        if value < 0x80 {
            self.byte(value.to_le_bytes()[0]);
        } else {
            self.varint_long(value);
        }
    }

    fn varint_long(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.byte(value.to_le_bytes()[0] | 0x80);
            value >>= 7;
        }
        self.byte(value.to_le_bytes()[0]);
    }

    /// The key of length-delimited field `tag` and the length.
    #[inline]
    fn len_key(&mut self, tag: u8, len: usize) {
        if len < 0x80 {
            self.bytes(&[key(tag, LEN), len.to_le_bytes()[0]]);
        } else {
            self.byte(key(tag, LEN));
            self.varint_long(len as u64);
        }
    }

    #[inline]
    fn bytes_field(&mut self, tag: u8, bytes: &[u8]) {
        self.len_key(tag, bytes.len());
        self.bytes(bytes);
    }

    /// A `KeyValue` as field `tag` of its parent.
    fn key_value(&mut self, tag: u8, name: &str, value: Any<'_>) {
        self.len_key(tag, key_value_len(name, value));
        if !name.is_empty() {
            self.bytes_field(1, name.as_bytes());
        }
        self.len_key(2, any_value_len(value));
        match value {
            Any::Str(s) => self.bytes_field(1, s.as_bytes()),
            Any::Int(i) => {
                self.byte(key(3, VARINT));
                self.varint(int_bits(i));
            }
            Any::Bool(b) => self.bytes(&[key(2, VARINT), u8::from(b)]),
        }
    }

    /// The `Span` message content of `span`.
    fn span(&mut self, span: &Span) {
        self.bytes_field(1, &span.trace_id.0);
        self.bytes_field(2, &span.span_id.0);
        if let Some(state) = span.tracestate.as_deref().filter(|s| !s.is_empty()) {
            self.bytes_field(3, state.as_bytes());
        }
        if let Some(parent) = &span.parent_span_id {
            self.bytes_field(4, &parent.0);
        }
        if !span.name.is_empty() {
            self.bytes_field(5, span.name.as_bytes());
        }
        let kind = match span.kind {
            SpanKind::Server => KIND_SERVER,
            SpanKind::Client => KIND_CLIENT,
        };
        self.bytes(&[key(6, VARINT), kind]);
        if span.start_time_unix_nano != 0 {
            self.byte(key(7, FIXED64));
            self.bytes(&span.start_time_unix_nano.to_le_bytes());
        }
        if span.end_time_unix_nano != 0 {
            self.byte(key(8, FIXED64));
            self.bytes(&span.end_time_unix_nano.to_le_bytes());
        }
        for (name, value) in &span.attributes {
            self.key_value(9, name, value.into());
        }
        self.key_value(9, THREAD_ID, thread_id(span));
        match span.status {
            SpanStatus::Ok => self.bytes(&[key(15, LEN), 0]),
            SpanStatus::Error => self.bytes(&[key(15, LEN), 2, key(3, VARINT), STATUS_ERROR]),
        }
        // A parent always came over the wire in `traceparent`: it is remote.
        let mut flags = FLAGS;
        if span.parent_span_id.is_some() {
            flags |= SpanFlags::ContextIsRemoteMask as u32;
        }
        self.bytes(&FLAGS_KEY);
        self.bytes(&flags.to_le_bytes());
    }
}

/// One process's spans in a request.
struct Group<'a> {
    pid: u32,
    process: &'a str,
    /// Its `Resource` message content, in [`WireEncoder::resources`].
    resource: std::ops::Range<usize>,
    /// Bytes of its spans as `ScopeSpans.spans` fields.
    spans_len: usize,
}

/// Encodes export requests into one buffer that is reused from request to
/// request (once the previous request's bytes are dropped).
pub struct WireEncoder {
    buf: BytesMut,
    /// Per span of the request being encoded: its group and its length.
    per_span: Vec<(usize, usize)>,
    /// The `Resource` message content of every group of the request.
    resources: Vec<u8>,
    /// `InstrumentationScope { name, version }`, the same in every request.
    scope: Vec<u8>,
}

impl Default for WireEncoder {
    fn default() -> Self {
        WireEncoder::new()
    }
}

impl WireEncoder {
    pub fn new() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        let mut scope = vec![0; field_len(SCOPE_NAME.len()) + field_len(version.len())];
        let mut out = Out::new(&mut scope);
        out.bytes_field(1, SCOPE_NAME.as_bytes());
        out.bytes_field(2, version.as_bytes());
        debug_assert!(out.complete());
        WireEncoder {
            buf: BytesMut::new(),
            per_span: Vec::new(),
            resources: Vec::new(),
            scope,
        }
    }

    /// The `ExportTraceServiceRequest` of `spans`, grouped by process in
    /// order of first appearance (spans keep their order within a group).
    /// `spans` is walked once per group after a first pass, hence `Clone`.
    pub fn encode<'a, I>(&mut self, spans: I, resource: &ResourceConfig) -> Bytes
    where
        I: IntoIterator<Item = &'a Span>,
        I::IntoIter: Clone,
    {
        let spans = spans.into_iter();
        self.per_span.clear();
        self.resources.clear();
        let mut complete = true;
        // Few processes per batch: a linear scan beats hashing here, and the
        // group of the previous span is the likeliest.
        let mut groups: Vec<Group<'a>> = Vec::new();
        let mut last = 0;
        for span in spans.clone() {
            let same = |g: &Group<'_>| g.pid == span.pid && g.process == &*span.process;
            let index = if groups.get(last).is_some_and(same) {
                last
            } else if let Some(i) = groups.iter().position(same) {
                i
            } else {
                let start = self.resources.len();
                complete &= put_resource(&mut self.resources, resource, span.pid, &span.process);
                groups.push(Group {
                    pid: span.pid,
                    process: &span.process,
                    resource: start..self.resources.len(),
                    spans_len: 0,
                });
                groups.len() - 1
            };
            last = index;
            let len = span_len(span);
            groups[index].spans_len += field_len(len);
            self.per_span.push((index, len));
        }

        // ResourceSpans { resource, ScopeSpans { scope, spans } } per group.
        let sizes = |g: &Group<'_>| {
            let scope_spans = field_len(self.scope.len()) + g.spans_len;
            let resource_spans = field_len(g.resource.len()) + field_len(scope_spans);
            (resource_spans, scope_spans)
        };
        let total: usize = groups.iter().map(|g| field_len(sizes(g).0)).sum();
        self.buf.clear();
        self.buf.resize(total, 0);
        let mut out = Out::new(&mut self.buf);
        for (index, group) in groups.iter().enumerate() {
            let (resource_spans, scope_spans) = sizes(group);
            out.len_key(1, resource_spans);
            out.bytes_field(1, &self.resources[group.resource.clone()]);
            out.len_key(2, scope_spans);
            out.bytes_field(1, &self.scope);
            let only_group = groups.len() == 1;
            for (span, &(g, len)) in spans.clone().zip(&self.per_span) {
                if only_group || g == index {
                    out.len_key(2, len);
                    out.span(span);
                }
            }
        }
        complete &= out.complete();
        if !complete {
            // Lengths computed wrong: a bug, which the tests are there to
            // catch; the request is still sent, encoded the old way.
            debug_assert!(false, "OTLP request lengths miscomputed");
            log::error!("otlp: internal error in the request encoder; using the slow one");
            self.buf.clear();
            let request = encode::request(spans, resource);
            self.buf.reserve(request.encoded_len());
            let _ = request.encode(&mut self.buf);
        }
        self.buf.split().freeze()
    }
}

/// Appends the `Resource` message content of a process, its attributes, to
/// `buf`; whether the lengths came out as computed.
fn put_resource(buf: &mut Vec<u8>, resource: &ResourceConfig, pid: u32, process: &str) -> bool {
    let attributes = resource.attributes(pid, process);
    let len: usize = attributes
        .iter()
        .map(|(name, value)| field_len(key_value_len(name, value.into())))
        .sum();
    let start = buf.len();
    buf.resize(start + len, 0);
    let mut out = Out::new(&mut buf[start..]);
    for (name, value) in &attributes {
        out.key_value(1, name, value.into());
    }
    out.complete()
}

#[cfg(test)]
mod tests {
    //! The reference is prost's encoding of the message structs
    //! [`encode::request`] builds (the encoding this module replaced): every
    //! request must come out byte for byte the same.

    use std::{net::SocketAddr, sync::Arc};

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;

    use super::*;
    use crate::{
        protocols::{
            new_parser,
            test_support::{records, Record},
            ParseOutput, ParserOptions, Protocol, SharedStr, Side, Transport,
        },
        sinks::{json::tests::sample_span, otlp::encode},
        spans::{SpanBuilder, SpanContext, SpanId, TraceId},
    };

    fn reference(spans: &[&Span], resource: &ResourceConfig) -> Vec<u8> {
        encode::request(spans.iter().copied(), resource).encode_to_vec()
    }

    /// Encodes `spans` with `encoder` and checks it against the reference
    /// (and that it decodes); returns the bytes.
    fn check(encoder: &mut WireEncoder, spans: &[&Span], resource: &ResourceConfig) -> Bytes {
        let ours = encoder.encode(spans.iter().copied(), resource);
        let expected = reference(spans, resource);
        if ours[..] != expected[..] {
            let at = ours
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(ours.len().min(expected.len()));
            panic!(
                "{} spans: {} bytes, reference {}; first difference at byte {at}: {:02x?} vs {:02x?}",
                spans.len(),
                ours.len(),
                expected.len(),
                &ours[at.saturating_sub(8)..(at + 8).min(ours.len())],
                &expected[at.saturating_sub(8)..(at + 8).min(expected.len())],
            );
        }
        ExportTraceServiceRequest::decode(ours.clone()).unwrap();
        ours
    }

    fn resources() -> Vec<ResourceConfig> {
        vec![
            ResourceConfig::default(),
            ResourceConfig {
                service_name: Some("web".into()),
                attributes: vec![
                    ("team".into(), "a b".into()),
                    ("host.name".into(), "override".into()),
                    ("process.pid".into(), "1".into()),
                    ("empty".into(), String::new()),
                    (String::new(), "no key".into()),
                    ("ключ".into(), "значение ✓".into()),
                ],
                host_name: Some("höst-1".into()),
            },
            ResourceConfig {
                service_name: Some(String::new()),
                attributes: Vec::new(),
                host_name: Some("h".repeat(200)),
            },
        ]
    }

    const KEYS: [&str; 12] = [
        "http.request.method",
        "url.path",
        "http.response.status_code",
        "server.address",
        "server.port",
        "db.system.name",
        "db.query.text",
        "rpc.grpc.status_code",
        "",
        "ключ.юникод",
        "error.type",
        "tls.protocol.name",
    ];

    fn text(rng: &mut fastrand::Rng) -> String {
        match rng.u8(0..8) {
            0 => String::new(),
            1 => "ünïcödé ✓ 日本語 🦀".into(),
            2 => "x".repeat(rng.usize(100..300)),
            3 => "y".repeat(rng.usize(16_300..16_500)),
            4 => "\0\u{7f}\u{80}\u{ffff}".into(),
            _ => (0..rng.usize(1..40)).map(|_| rng.alphanumeric()).collect(),
        }
    }

    fn value(rng: &mut fastrand::Rng) -> AttrValue {
        match rng.u8(0..12) {
            0 => AttrValue::fixed("GET"),
            1 => AttrValue::Str(SharedStr::Shared(Arc::from("127.0.0.1"))),
            2 => AttrValue::Str(SharedStr::Owned(String::new())),
            3 => AttrValue::fixed(""),
            4 => AttrValue::Int(0),
            5 => AttrValue::Int(-1),
            6 => AttrValue::Int(
                *rng.choice(&[i64::MIN, i64::MAX, 127, 128, 16_383, 16_384])
                    .unwrap(),
            ),
            7 => AttrValue::Int(rng.i64(..)),
            8 => AttrValue::Int(rng.i64(0..70_000)),
            9 => AttrValue::Bool(true),
            10 => AttrValue::Bool(false),
            _ => AttrValue::Str(SharedStr::Owned(text(rng))),
        }
    }

    fn id<const N: usize>(rng: &mut fastrand::Rng) -> [u8; N] {
        let mut id = [0u8; N];
        if rng.u8(0..8) != 0 {
            rng.fill(&mut id);
        }
        id
    }

    fn time(rng: &mut fastrand::Rng) -> u64 {
        match rng.u8(0..8) {
            0 => 0,
            1 => u64::MAX,
            _ => rng.u64(1_600_000_000_000_000_000..1_900_000_000_000_000_000),
        }
    }

    const PROCESSES: [(u32, &str); 5] = [
        (1234, "nginx"),
        (99, "redis-server"),
        (99, "redis-cli"),
        (7, "процесс"),
        (0, ""),
    ];

    fn random_span(rng: &mut fastrand::Rng, processes: usize) -> Span {
        let (pid, process) = PROCESSES[rng.usize(0..processes)];
        Span {
            trace_id: TraceId(id(rng)),
            span_id: SpanId(id(rng)),
            parent_span_id: rng.bool().then(|| SpanId(id(rng))),
            tracestate: match rng.u8(0..4) {
                0 => None,
                1 => Some(String::new()),
                _ => Some(text(rng)),
            },
            name: text(rng).into(),
            kind: if rng.bool() {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            status: if rng.bool() {
                SpanStatus::Ok
            } else {
                SpanStatus::Error
            },
            start_time_unix_nano: time(rng),
            end_time_unix_nano: time(rng),
            pid,
            tid: match rng.u8(0..4) {
                0 => 0,
                1 => u32::MAX,
                _ => rng.u32(..),
            },
            process: Arc::from(process),
            protocol: *rng.choice(&Protocol::ALL).unwrap(),
            attributes: (0..rng.usize(0..14))
                .map(|_| (*rng.choice(&KEYS).unwrap(), value(rng)))
                .collect(),
        }
    }

    #[test]
    fn random_spans_are_byte_identical_to_prost() {
        let mut rng = fastrand::Rng::with_seed(0x07_1b);
        // One encoder for everything: reuse must not leak between requests.
        let mut encoder = WireEncoder::new();
        for resource in resources() {
            for round in 0..300 {
                let processes = 1 + round % PROCESSES.len();
                let n = match round % 10 {
                    0 => 0,
                    1 => 1,
                    2 => 512,
                    _ => rng.usize(1..40),
                };
                let spans: Vec<Span> = (0..n).map(|_| random_span(&mut rng, processes)).collect();
                let refs: Vec<&Span> = spans.iter().collect();
                check(&mut encoder, &refs, &resource);
            }
        }
    }

    #[test]
    fn the_edges_of_every_field() {
        let mut encoder = WireEncoder::new();
        let resource = ResourceConfig::default();
        assert!(check(&mut encoder, &[], &resource).is_empty());

        let mut bare = sample_span();
        bare.attributes.clear();
        bare.name = SharedStr::Static("");
        bare.start_time_unix_nano = 0;
        bare.end_time_unix_nano = 0;
        bare.tid = 0;
        bare.trace_id = TraceId([0; 16]);
        bare.span_id = SpanId([0; 8]);
        check(&mut encoder, &[&bare], &resource);

        let mut full = sample_span();
        full.parent_span_id = Some(SpanId([0xff; 8]));
        full.tracestate = Some("vendor=1,ünï=✓".into());
        full.status = SpanStatus::Error;
        full.kind = SpanKind::Client;
        full.tid = u32::MAX;
        full.start_time_unix_nano = u64::MAX;
        full.end_time_unix_nano = 1;
        full.name = "ñ".repeat(70_000).into();
        full.attributes.extend([
            ("neg", AttrValue::Int(i64::MIN)),
            ("max", AttrValue::Int(i64::MAX)),
            ("zero", AttrValue::Int(0)),
            ("t", AttrValue::Bool(true)),
            ("f", AttrValue::Bool(false)),
            ("", AttrValue::fixed("")),
            ("big", AttrValue::from("z".repeat(3_000_000))),
        ]);
        let mut empty_state = sample_span();
        empty_state.tracestate = Some(String::new());
        check(
            &mut encoder,
            &[&full, &bare, &empty_state, &full],
            &resource,
        );
    }

    #[test]
    fn processes_are_grouped_in_order_of_first_appearance() {
        let mut encoder = WireEncoder::new();
        let make = |pid: u32, process: &str, name: &str| {
            let mut span = sample_span();
            span.pid = pid;
            span.process = Arc::from(process);
            span.name = SharedStr::copied(name);
            span
        };
        let spans = [
            make(2, "b", "1"),
            make(1, "a", "2"),
            make(2, "b", "3"),
            make(2, "c", "4"),
            make(1, "a", "5"),
            make(3, "b", "6"),
        ];
        let refs: Vec<&Span> = spans.iter().collect();
        for resource in resources() {
            let bytes = check(&mut encoder, &refs, &resource);
            let request = ExportTraceServiceRequest::decode(bytes).unwrap();
            let names: Vec<Vec<&str>> = request
                .resource_spans
                .iter()
                .map(|rs| {
                    rs.scope_spans[0]
                        .spans
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect()
                })
                .collect();
            assert_eq!(
                names,
                [vec!["1", "3"], vec!["2", "5"], vec!["4"], vec!["6"]]
            );
        }
    }

    #[test]
    fn writes_past_the_computed_length_are_caught_not_panicked() {
        let mut buf = [0u8; 4];
        let mut out = Out::new(&mut buf);
        out.bytes_field(1, b"ab");
        assert!(out.complete());
        out.byte(1);
        out.bytes(b"xyz");
        out.varint(u64::MAX);
        assert!(!out.complete());
        let mut short = [0u8; 3];
        let mut out = Out::new(&mut short);
        out.bytes_field(1, b"ab");
        assert!(!out.complete());
        let mut long = [0u8; 5];
        let mut out = Out::new(&mut long);
        out.bytes_field(1, b"ab");
        assert!(!out.complete(), "short of the computed length");
    }

    #[test]
    fn the_flags_key_is_field_16_fixed32() {
        let mut key = Vec::new();
        prost::encoding::encode_key(16, prost::encoding::WireType::ThirtyTwoBit, &mut key);
        assert_eq!(key, FLAGS_KEY);
    }

    macro_rules! capture {
        ($protocol:ident, $transport:ident, $file:literal) => {
            (
                Protocol::$protocol,
                Transport::$transport,
                $file,
                include_bytes!(concat!("../../protocols/testdata/", $file)),
            )
        };
    }

    /// Recorded traffic of every protocol (`protocols/testdata`).
    const CAPTURES: [(Protocol, Transport, &str, &[u8]); 15] = [
        capture!(Redis, Tcp, "redis/cli_session.cap"),
        capture!(Redis, Tcp, "redis/resp3_types.cap"),
        capture!(Memcached, Tcp, "memcached/session.cap"),
        capture!(Dns, Udp, "dns/a.cap"),
        capture!(Dns, Udp, "dns/nxdomain.cap"),
        capture!(Dns, Tcp, "dns/tcp_keepopen.cap"),
        capture!(Http2, Tcp, "http2/curl_503.cap"),
        capture!(Http2, Tcp, "http2/nghttp_nginx_multi.cap"),
        capture!(Grpc, Tcp, "http2/grpc_unary.cap"),
        capture!(Grpc, Tcp, "http2/grpc_unimplemented.cap"),
        capture!(Postgresql, Tcp, "postgresql/select.bin"),
        capture!(Postgresql, Tcp, "postgresql/error.bin"),
        capture!(Mysql, Tcp, "mysql/select.bin"),
        capture!(Mysql, Tcp, "mysql/error.bin"),
        capture!(Mysql, Tcp, "mysql/prepared.bin"),
    ];

    /// Spans as the tracer makes them: every protocol's recorded traffic
    /// through its parser and the span builder, on both ends, with and
    /// without TLS, and an HTTP request carrying `traceparent` and
    /// `tracestate` (a server span with a remote parent).
    fn spans_of_every_protocol() -> Vec<Span> {
        let http = [
            (Side::Client, "GET /api/users?id=7&q=ünï HTTP/1.1\r\nHost: example\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntracestate: congo=t61rcWkgMzE,ünï=1\r\n\r\n".as_bytes()),
            (Side::Server, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            (Side::Client, b"POST /oops HTTP/1.1\r\nHost: example\r\nContent-Length: 0\r\n\r\n"),
            (Side::Server, b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (side, data))| Record {
            side,
            ts_ns: (i as u64 + 1) * 1000,
            data: data.to_vec(),
        })
        .collect::<Vec<_>>();
        let mut inputs: Vec<(Protocol, Transport, &str, Vec<Record>)> = CAPTURES
            .iter()
            .map(|(p, t, file, c)| (*p, *t, *file, records(c)))
            .collect();
        inputs.push((Protocol::Http, Transport::Tcp, "http", http));

        let options = ParserOptions {
            include_query: true,
            raw_statements: false,
        };
        let mut builder = SpanBuilder::new(1_700_000_000_000_000_000);
        let mut spans = Vec::new();
        let mut seen = Vec::new();
        for (protocol, transport, file, records) in &inputs {
            for (kind, tls, pid, process) in [
                (SpanKind::Server, false, 10, "server"),
                (SpanKind::Client, true, 20, "client"),
            ] {
                let mut parser = new_parser(*protocol, *transport, options).unwrap();
                let mut out = ParseOutput::default();
                for record in records {
                    parser.on_data(record.side, record.ts_ns, &record.data, &mut out);
                }
                parser.on_close(records.last().map_or(0, |r| r.ts_ns + 1000), &mut out);
                assert!(!out.exchanges.is_empty(), "{file}: no exchanges");
                let local: SocketAddr = "10.0.0.1:8080".parse().unwrap();
                let remote: SocketAddr = "[2001:db8::1]:54321".parse().unwrap();
                let ctx = SpanContext {
                    pid,
                    tid: pid + 1,
                    process: Arc::from(process),
                    kind,
                    local: Some(local),
                    remote: (!tls).then_some(remote),
                    tls: tls.then_some("openssl"),
                };
                for exchange in out.exchanges {
                    let (span, _) = builder.build(exchange, &ctx);
                    seen.push(span.protocol);
                    spans.push(span);
                }
            }
        }
        for protocol in Protocol::ALL {
            assert!(seen.contains(&protocol), "no {protocol:?} span");
        }
        spans
    }

    #[test]
    fn spans_of_every_protocol_are_byte_identical_to_prost() {
        let spans = spans_of_every_protocol();
        assert!(
            spans
                .iter()
                .any(|s| s.parent_span_id.is_some() && s.tracestate.is_some()),
            "a span with a remote parent and tracestate"
        );
        assert!(spans.iter().any(|s| s.status == SpanStatus::Error));
        let mut encoder = WireEncoder::new();
        let refs: Vec<&Span> = spans.iter().collect();
        for resource in resources() {
            // All at once, one by one, and in batches of 7.
            check(&mut encoder, &refs, &resource);
            for span in &refs {
                check(&mut encoder, &[span], &resource);
            }
            for chunk in refs.chunks(7) {
                check(&mut encoder, chunk, &resource);
            }
        }
    }
}
