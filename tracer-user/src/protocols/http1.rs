//! HTTP/1.0 and HTTP/1.1: requests paired with their responses.
//!
//! Each direction is cut into messages by a `stream::SideStream`; the
//! `conversation::Conversation` pairs responses with requests first in
//! first out (pipelining included) and decides how response bodies end,
//! which depends on the request (`HEAD`, `CONNECT`).
//!
//! Behaviour the connection layer can rely on:
//! - `start_ns` is the timestamp of the read that carried the request's
//!   first byte; `end_ns` that of the read (or gap) that carried the
//!   response's last byte. A body delimited by the close ends at the last
//!   read or gap of the server side before [`Parser::on_close`].
//! - Interim responses (1xx but 101) are skipped. `101 Switching Protocols`
//!   and a 2xx answer to `CONNECT` end the exchange, and the parser ignores
//!   the connection from then on (it no longer speaks HTTP/1.x).
//! - Gaps inside a Content-Length body or inside chunk data count as body
//!   bytes. Any other gap, and any byte that is not HTTP/1.x, loses sync:
//!   `desyncs` grows by one and that side skips input until a plausible
//!   request line (with one of the nine standard methods) or status line.
//!   In sync, registered extension methods (`PROPFIND`, `PURGE`...) are
//!   accepted too.
//! - When the server side loses sync the pending requests are dropped
//!   without exchanges: how many responses went missing is unknown, and
//!   pairing later responses with them could be wrong for the rest of the
//!   connection. A response with no pending request (a connection caught
//!   mid-stream) yields no exchange and is not counted as a desync.
//! - A connection caught mid-message counts one desync per side that
//!   starts inside a message.
//! - Body sizes count payload bytes: decoded size for chunked bodies,
//!   uncaptured (gap) bytes included. A size is only reported when it is
//!   known (OpenTelemetry: the payload bytes transferred, often the
//!   `Content-Length`); a wrong one is worse than none:
//!   - a request body still arriving when its response ends the exchange
//!     (a server answering before reading it all) has its declared
//!     `Content-Length`; the client stream goes on skipping the rest, so the
//!     next request on the connection is found. A chunked body's size is
//!     known only once its last chunk was seen: otherwise it is left out;
//!   - a body cut short by the close, request or response, has no size
//!     (neither the length it declared nor the bytes that came is its
//!     size); a response body delimited by the close is complete there.
//! - Heads are bounded to 16 KiB and 64 headers per side, pending requests
//!   to 64 (the oldest dropped, counted as a desync).
//! - [`Parser::on_close`] reports a response cut short by the close as an
//!   incomplete exchange with its status (without a body size), and requests
//!   without a response as incomplete exchanges without one, all ending at
//!   the close. The parser can then serve a new connection.
//! - Only the attributes listed on [`Http1Parser`] are emitted; no header
//!   value other than the trace context is ever kept.

mod body;
mod conversation;
mod exchange;
mod head;
mod start;
mod stream;
mod target;
pub(crate) mod traceparent;

#[cfg(test)]
mod tests;

use conversation::{Conversation, Sink};
use stream::SideStream;

use super::{ParseOutput, Parser, ParserOptions, Side};

pub use start::detect;

/// HTTP/1.x parser of one connection.
///
/// Exchanges carry `http.request.method` (`_OTHER` plus
/// `http.request.method_original` for non-standard methods), `url.path`
/// (not for `CONNECT`), `url.query` (only with
/// [`ParserOptions::include_query`], when not empty),
/// `network.protocol.name`, `network.protocol.version` (of the request),
/// `http.response.status_code` (when a response came),
/// `http.request.body.size` and `http.response.body.size` (when a response
/// came; either left out when unknown, see the module's notes). Names are
/// `METHOD path`, without the query.
pub struct Http1Parser {
    options: ParserOptions,
    client: SideStream,
    server: SideStream,
    conversation: Conversation,
}

impl Http1Parser {
    pub fn new(options: ParserOptions) -> Self {
        Http1Parser {
            options,
            client: SideStream::new(Side::Client),
            server: SideStream::new(Side::Server),
            conversation: Conversation::default(),
        }
    }
}

impl Parser for Http1Parser {
    fn on_data(&mut self, side: Side, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        if self.conversation.switched {
            return;
        }
        let (stream, mut sink) = self.split(side, out);
        stream.feed(ts_ns, data, &mut sink);
    }

    fn on_gap(&mut self, side: Side, ts_ns: u64, len: usize, out: &mut ParseOutput) {
        if self.conversation.switched {
            return;
        }
        let (stream, mut sink) = self.split(side, out);
        stream.gap(ts_ns, len, &mut sink);
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        let mut sink = Sink {
            conversation: &mut self.conversation,
            options: self.options,
            out: &mut *out,
        };
        self.server.close(&mut sink);
        self.client.close(&mut sink);
        self.conversation.close(ts_ns, out);
    }
}

impl Http1Parser {
    /// One side's stream and a sink over the conversation, borrowed apart.
    fn split<'a>(
        &'a mut self,
        side: Side,
        out: &'a mut ParseOutput,
    ) -> (&'a mut SideStream, Sink<'a>) {
        let stream = match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        };
        let sink = Sink {
            conversation: &mut self.conversation,
            options: self.options,
            out,
        };
        (stream, sink)
    }
}
