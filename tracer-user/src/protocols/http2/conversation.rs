//! The connection as a whole: HPACK contexts, request streams and their
//! pairing with responses.

use std::collections::BTreeMap;

use crate::protocols::{ParseOutput, ParserOptions, Side};

use super::exchange::{build, Ending, Stream};
use super::fields;
use super::framer::{Frame, FrameSink};
use super::hpack::Decoder;

/// Request streams tracked at once; past this the oldest is dropped.
pub(super) const MAX_STREAMS: usize = 1000;

#[derive(Debug, Default)]
pub(super) struct Conversation {
    pub options: ParserOptions,
    /// Report only gRPC calls (`--protocols grpc` without `http2`).
    pub grpc_only: bool,
    /// Decodes the client's header blocks.
    client_hpack: Decoder,
    /// Decodes the server's header blocks.
    server_hpack: Decoder,
    /// Request streams waiting for the end of their response, by id.
    streams: BTreeMap<u32, Stream>,
    /// Highest request stream id seen: a lower id that is not open belongs
    /// to a finished stream (stream ids only grow).
    last_request_stream: u32,
}

impl Conversation {
    pub fn new(options: ParserOptions, grpc_only: bool) -> Conversation {
        Conversation {
            options,
            grpc_only,
            ..Conversation::default()
        }
    }

    fn hpack(&mut self, side: Side) -> &mut Decoder {
        match side {
            Side::Client => &mut self.client_hpack,
            Side::Server => &mut self.server_hpack,
        }
    }

    /// The connection closed: streams still waiting end incomplete, and the
    /// state is ready for a new connection.
    pub fn close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        let streams = std::mem::take(&mut self.streams);
        for stream in streams.into_values() {
            self.emit(stream, ts_ns, Ending::Closed, out);
        }
        *self = Conversation::new(self.options, self.grpc_only);
    }

    fn emit(&self, stream: Stream, end_ns: u64, ending: Ending, out: &mut ParseOutput) {
        if self.grpc_only && !stream.is_grpc() {
            return;
        }
        out.exchanges
            .push(build(stream, end_ns, ending, self.options, &mut out.spare));
    }

    fn on_frame(&mut self, side: Side, ts_ns: u64, frame: Frame<'_>, out: &mut ParseOutput) {
        match frame {
            Frame::ClientPreface => {
                // Seen from its start: both encoders began with empty tables.
                self.client_hpack.start_synchronised();
                self.server_hpack.start_synchronised();
            }
            Frame::Settings { header_table_size } => {
                // Limits the table of the *other* side's encoder.
                if let Some(size) = header_table_size {
                    self.hpack(side.other()).set_settings_limit(size);
                }
            }
            Frame::Headers {
                stream,
                block,
                end_stream,
                push_promise,
                start_ns,
            } => self.on_headers(
                side,
                ts_ns,
                stream,
                block,
                end_stream,
                push_promise,
                start_ns,
                out,
            ),
            Frame::Data {
                stream,
                len,
                end_stream,
            } => match side {
                Side::Client => {
                    if let Some(open) = self.streams.get_mut(&stream) {
                        open.request_body = open.request_body.saturating_add(len);
                    }
                }
                Side::Server => {
                    if let Some(open) = self.streams.get_mut(&stream) {
                        open.response_body = open.response_body.saturating_add(len);
                    }
                    if end_stream {
                        self.complete(stream, ts_ns, out);
                    }
                }
            },
            Frame::RstStream { stream, code } => {
                if let Some(open) = self.streams.remove(&stream) {
                    self.emit(open, ts_ns, Ending::Reset { by: side, code }, out);
                }
            }
        }
    }

    #[expect(clippy::too_many_arguments, reason = "the fields of one HEADERS frame")]
    fn on_headers(
        &mut self,
        side: Side,
        ts_ns: u64,
        stream: u32,
        block: Option<&[u8]>,
        end_stream: bool,
        push_promise: bool,
        start_ns: u64,
        out: &mut ParseOutput,
    ) {
        let hpack = self.hpack(side);
        if block.is_none() {
            // What the lost block added to the table is unknown.
            hpack.lose_sync();
            out.desyncs += 1;
        }
        let was_synchronised = hpack.is_synchronised();
        match (side, push_promise) {
            (Side::Client, false) => {
                let request = match block {
                    Some(block) => fields::request(hpack, block),
                    None => fields::RequestFields {
                        incomplete: true,
                        ..Default::default()
                    },
                };
                self.count_hpack_loss(side, block.is_some(), was_synchronised, out);
                self.on_request_headers(stream, request, start_ns, out);
            }
            (Side::Server, false) => {
                let response = match block {
                    Some(block) => fields::response(hpack, block),
                    None => fields::ResponseFields {
                        incomplete: true,
                        ..Default::default()
                    },
                };
                self.count_hpack_loss(side, block.is_some(), was_synchronised, out);
                self.on_response_headers(stream, response, end_stream, ts_ns, out);
            }
            (_, true) => {
                // Server push is not traced, but its block still changes the
                // HPACK table.
                if let Some(block) = block {
                    let _ = fields::response(hpack, block);
                    self.count_hpack_loss(side, true, was_synchronised, out);
                }
            }
        }
    }

    /// A block that failed to decode dropped a synchronised table.
    fn count_hpack_loss(
        &mut self,
        side: Side,
        decoded: bool,
        was_synchronised: bool,
        out: &mut ParseOutput,
    ) {
        if decoded && was_synchronised && !self.hpack(side).is_synchronised() {
            out.desyncs += 1;
        }
    }

    fn on_request_headers(
        &mut self,
        stream: u32,
        request: fields::RequestFields,
        start_ns: u64,
        out: &mut ParseOutput,
    ) {
        if stream.is_multiple_of(2)
            || self.streams.contains_key(&stream)
            || stream <= self.last_request_stream
        {
            // Even: not a client stream. Known: request trailers. Lower:
            // trailers of a stream already answered.
            return;
        }
        self.last_request_stream = stream;
        if self.streams.len() >= MAX_STREAMS {
            // The oldest stream has waited longest: its response was
            // likely lost.
            let _ = self.streams.pop_first();
            out.desyncs += 1;
        }
        self.streams.insert(
            stream,
            Stream {
                request,
                start_ns,
                request_body: 0,
                response: None,
                response_body: 0,
            },
        );
    }

    fn on_response_headers(
        &mut self,
        stream: u32,
        response: fields::ResponseFields,
        end_stream: bool,
        ts_ns: u64,
        out: &mut ParseOutput,
    ) {
        let Some(open) = self.streams.get_mut(&stream) else {
            // A response to a request we did not see (caught mid-stream).
            return;
        };
        if let Some(head) = open.response.as_mut() {
            head.merge_trailers(response);
        } else {
            let interim = response.status.is_some_and(|s| (100..200).contains(&s));
            if interim && !end_stream {
                // 100 Continue, 103 Early Hints: the final head follows.
                return;
            }
            open.response = Some(response);
        }
        if end_stream {
            self.complete(stream, ts_ns, out);
        }
    }

    fn complete(&mut self, stream: u32, ts_ns: u64, out: &mut ParseOutput) {
        if let Some(open) = self.streams.remove(&stream) {
            self.emit(open, ts_ns, Ending::Complete, out);
        }
    }
}

/// Frames of one side delivered to the conversation.
pub(super) struct Sink<'a> {
    pub conversation: &'a mut Conversation,
    pub out: &'a mut ParseOutput,
}

impl FrameSink for Sink<'_> {
    fn frame(&mut self, side: Side, ts_ns: u64, frame: Frame<'_>) {
        self.conversation.on_frame(side, ts_ns, frame, self.out);
    }

    fn lost_sync(&mut self, side: Side) {
        self.out.desyncs += 1;
        // Header blocks may have been among the lost bytes.
        self.conversation.hpack(side).lose_sync();
    }
}
