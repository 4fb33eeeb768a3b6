//! HTTP/2 over cleartext TCP with prior knowledge (h2c, as gRPC uses it),
//! and gRPC on top.
//!
//! Each direction is cut into frames by a `framer::Framer`; header blocks
//! are decoded by that direction's HPACK `hpack::Decoder`; the
//! `conversation::Conversation` pairs each request stream with the response
//! on the same stream, however streams interleave.
//!
//! Behaviour the connection layer can rely on:
//! - An exchange is one client-initiated stream: the request's HEADERS
//!   (with CONTINUATION) and DATA, the response's HEADERS, DATA and
//!   trailers. `start_ns` is the timestamp of the read that carried the
//!   first byte of the request's HEADERS frame; `end_ns` that of the read
//!   (or gap) that completed the frame ending the server's side of the
//!   stream (`END_STREAM`), or the `RST_STREAM` that cut it.
//! - A request whose `content-type` is `application/grpc...`, or whose
//!   response carries a gRPC content type, `grpc-status` or
//!   `grpc-message`, is a [`Protocol::Grpc`](super::Protocol::Grpc) exchange; any other is
//!   [`Protocol::Http2`](super::Protocol::Http2). A parser made by [`Http2Parser::grpc_only`]
//!   reports only the former.
//! - Interim (1xx) response heads are skipped. `RST_STREAM` ends the
//!   exchange with `error.type` set to the HTTP/2 error code name; it is a
//!   server fault when the server reset (with an error), a client fault
//!   when the client did (it gave up), unless the response already says.
//!   Such an exchange is `incomplete` when no response head had come.
//! - Server push is not reported (its header blocks are decoded to keep
//!   the HPACK context).
//! - Connections caught mid-stream: each side starts by looking for two
//!   consecutive plausible frame headers; the client side may instead
//!   start with the preface. Without the preface, HPACK starts
//!   unsynchronised (see `hpack`): fields that refer to dynamic table
//!   entries added before we looked are unknown. An exchange whose
//!   `:method` is unknown is named `HTTP/2 (headers unknown)` (method
//!   `_OTHER`); a gRPC call whose `:path` is unknown is named
//!   `grpc (method unknown)`. Responses to requests we never saw give no
//!   exchange. A side that starts inside a frame counts one desync.
//! - Gaps inside a DATA payload count as body bytes (the size comes from
//!   the frame header). A gap inside another frame's payload loses that
//!   frame's content (a header block lost: the stream's headers are
//!   unknown and that side's HPACK context is dropped, one desync). A gap
//!   over a frame header loses the frame boundaries: one desync, the HPACK
//!   context of that side is dropped, and the side resynchronises on the
//!   next two consecutive plausible frame headers (the bytes between are
//!   skipped; so are streams whose frames went missing, until the close).
//! - A header block failing to decode while synchronised (corrupt input)
//!   counts one desync and drops that side's HPACK context.
//! - Memory is bounded: header blocks to 64 KiB (a bigger block is lost),
//!   HPACK tables to 64 KiB per side, tracked streams to 1000 (the oldest
//!   dropped, counted as a desync), DATA payloads are counted, never kept.
//! - [`Parser::on_close`] reports streams still waiting as incomplete
//!   exchanges ending at the close, with what is known of their response.
//!   The parser can then serve a new connection.
//! - Only the attributes listed on [`Http2Parser`] are emitted; no header
//!   value other than `:method`, `:path`, `:status`, `grpc-status` and the
//!   trace context is ever kept.

mod conversation;
mod detect;
mod exchange;
mod fields;
mod frame;
mod framer;
mod grpc;
mod hpack;

#[cfg(test)]
mod tests;

use conversation::{Conversation, Sink};
use framer::Framer;

use super::{ParseOutput, Parser, ParserOptions, Side};

pub use detect::detect;

/// HTTP/2 and gRPC parser of one connection.
///
/// HTTP/2 exchanges carry `http.request.method` (`_OTHER`, with
/// `http.request.method_original` when known, for non-standard or unknown
/// methods), `url.path`, `url.query` (only with
/// [`ParserOptions::include_query`], when not empty),
/// `network.protocol.name` (`http`), `network.protocol.version` (`2`),
/// `http.response.status_code` (when known), `http.request.body.size`
/// and `http.response.body.size` (DATA payload bytes without padding; the
/// latter when a response came). Names are `METHOD path` without the
/// query (`HTTP path` for non-standard methods).
///
/// gRPC exchanges carry `rpc.system` (`grpc`), `rpc.service`,
/// `rpc.method`, `rpc.grpc.status_code` (from `grpc-status`, when known),
/// `network.protocol.name` and `network.protocol.version`. Names are
/// `package.Service/Method`. A non-OK status is a server fault for
/// UNKNOWN, `DEADLINE_EXCEEDED`, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and
/// `DATA_LOSS`, a client fault otherwise (OpenTelemetry's gRPC conventions).
///
/// Reset streams add `error.type` (the `RST_STREAM` error code name).
pub struct Http2Parser {
    client: Framer,
    server: Framer,
    conversation: Conversation,
}

impl Http2Parser {
    pub fn new(options: ParserOptions) -> Self {
        Http2Parser::with(options, false)
    }

    /// A parser that reports gRPC calls only.
    pub fn grpc_only(options: ParserOptions) -> Self {
        Http2Parser::with(options, true)
    }

    fn with(options: ParserOptions, grpc_only: bool) -> Self {
        Http2Parser {
            client: Framer::new(Side::Client),
            server: Framer::new(Side::Server),
            conversation: Conversation::new(options, grpc_only),
        }
    }

    fn split<'a>(&'a mut self, side: Side, out: &'a mut ParseOutput) -> (&'a mut Framer, Sink<'a>) {
        let framer = match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        };
        let sink = Sink {
            conversation: &mut self.conversation,
            out,
        };
        (framer, sink)
    }
}

impl Parser for Http2Parser {
    fn on_data(&mut self, side: Side, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        let (framer, mut sink) = self.split(side, out);
        framer.feed(ts_ns, data, &mut sink);
    }

    fn on_gap(&mut self, side: Side, ts_ns: u64, len: usize, out: &mut ParseOutput) {
        let (framer, mut sink) = self.split(side, out);
        framer.gap(ts_ns, len, &mut sink);
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        for side in [Side::Server, Side::Client] {
            let (framer, mut sink) = self.split(side, out);
            framer.close(&mut sink);
        }
        self.conversation.close(ts_ns, out);
        self.client = Framer::new(Side::Client);
        self.server = Framer::new(Side::Server);
    }
}
