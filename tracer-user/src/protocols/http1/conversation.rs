//! Pairing requests with responses, first in first out (pipelining
//! included), and deciding how each response body is delimited, which
//! depends on the request it answers.

use std::collections::VecDeque;

use crate::protocols::{ParseOutput, ParserOptions, Side};

use super::body::BodyKind;
use super::exchange::{build_exchange, Request, ResponseSummary};
use super::head::{parse_request, parse_response, Framing, Parsed, ResponseHead};
use super::stream::{HeadVerdict, MessageSink};

/// Requests kept waiting for responses; beyond this the oldest is dropped
/// (and counted as a desync) so a peer that never answers cannot grow memory.
pub(super) const MAX_PENDING: usize = 64;

/// Pairing state shared by both directions of a connection.
#[derive(Debug, Default)]
pub(super) struct Conversation {
    /// Requests whose head was read, oldest first, not yet answered.
    pending: VecDeque<Request>,
    /// The response being read, with the request it answers (`None` for a
    /// response to a request never seen, e.g. caught mid-connection).
    answering: Option<Answer>,
    next_seq: u64,
    /// The request whose body the client is sending.
    request_in_body: Option<u64>,
    /// The connection switched to another protocol: ignore it from now on.
    pub switched: bool,
}

#[derive(Debug)]
struct Answer {
    request: Option<Request>,
    status: u16,
    body_size: u64,
}

impl Conversation {
    /// Reports what the connection's close leaves unanswered, then forgets.
    /// Call after the streams saw the close (a close-delimited response ends
    /// there first).
    pub fn close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        if let Some(answer) = self.answering.take() {
            if let Some(request) = answer.request {
                // Cut short by the close: neither the length it declared nor
                // the bytes that came is the body's size.
                let response = ResponseSummary {
                    status: answer.status,
                    body_size: None,
                };
                out.exchanges.push(build_exchange(
                    request,
                    Some(response),
                    ts_ns,
                    true,
                    &mut out.spare,
                ));
            }
        }
        for request in self.pending.drain(..) {
            out.exchanges
                .push(build_exchange(request, None, ts_ns, true, &mut out.spare));
        }
        self.request_in_body = None;
        self.switched = false;
    }

    fn request_head(
        &mut self,
        head: &[u8],
        start_ns: u64,
        options: ParserOptions,
        out: &mut ParseOutput,
    ) -> HeadVerdict {
        let head = match parse_request(head, options.include_query) {
            Parsed::Complete(head) => head,
            Parsed::Incomplete => return HeadVerdict::Incomplete,
            Parsed::Invalid => return HeadVerdict::Invalid,
        };
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            out.desyncs += 1;
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let body = head.body;
        self.request_in_body = body.map(|_| seq);
        self.pending.push_back(Request {
            seq,
            head,
            start_ns,
            body_size: 0,
            body_ended: body.is_none(),
        });
        HeadVerdict::Message(body)
    }

    fn response_head(&mut self, head: &[u8]) -> HeadVerdict {
        let head = match parse_response(head) {
            Parsed::Complete(head) => head,
            Parsed::Incomplete => return HeadVerdict::Incomplete,
            Parsed::Invalid => return HeadVerdict::Invalid,
        };
        if (100..200).contains(&head.status) && head.status != 101 {
            // 100 Continue, 103 Early Hints...: the final response follows.
            return HeadVerdict::Interim;
        }
        let method = self.pending.front().map(|r| r.head.method.as_str());
        let verdict = response_verdict(&head, method);
        if verdict == HeadVerdict::SwitchProtocols {
            self.switched = true;
        }
        self.answering = Some(Answer {
            request: self.pending.pop_front(),
            status: head.status,
            body_size: 0,
        });
        verdict
    }

    /// The request whose body the client is sending, unless its exchange
    /// was already reported (a server answering before reading the whole
    /// body: the client stream still skips the rest).
    fn request_in_body(&mut self) -> Option<&mut Request> {
        let seq = self.request_in_body?;
        // Usually the newest request; it may be getting its response.
        self.pending
            .iter_mut()
            .rev()
            .chain(self.answering.as_mut().and_then(|a| a.request.as_mut()))
            .find(|r| r.seq == seq)
    }

    fn add_request_body(&mut self, payload: u64) {
        if let Some(request) = self.request_in_body() {
            request.body_size = request.body_size.saturating_add(payload);
        }
    }

    fn end_request_body(&mut self) {
        if let Some(request) = self.request_in_body() {
            request.body_ended = true;
        }
        self.request_in_body = None;
    }
}

/// How a response to `method` (`None`: unknown request) is delimited.
fn response_verdict(head: &ResponseHead, method: Option<&str>) -> HeadVerdict {
    let status = head.status;
    if status == 101 || (method == Some("CONNECT") && (200..300).contains(&status)) {
        return HeadVerdict::SwitchProtocols;
    }
    if method == Some("HEAD") || status == 204 || status == 304 {
        return HeadVerdict::Message(None);
    }
    HeadVerdict::Message(match head.framing {
        Framing::Length(0) => None,
        Framing::Length(len) => Some(BodyKind::Length(len)),
        Framing::Chunked => Some(BodyKind::Chunked),
        Framing::OtherCoding | Framing::Unspecified => Some(BodyKind::UntilClose),
    })
}

/// A [`MessageSink`] over the conversation for one call into the parser.
pub(super) struct Sink<'a> {
    pub conversation: &'a mut Conversation,
    pub options: ParserOptions,
    pub out: &'a mut ParseOutput,
}

impl MessageSink for Sink<'_> {
    fn head(&mut self, side: Side, head: &[u8], start_ns: u64) -> HeadVerdict {
        match side {
            Side::Client => self
                .conversation
                .request_head(head, start_ns, self.options, self.out),
            Side::Server => self.conversation.response_head(head),
        }
    }

    fn body(&mut self, side: Side, payload: u64) {
        match side {
            Side::Client => self.conversation.add_request_body(payload),
            Side::Server => {
                if let Some(answer) = &mut self.conversation.answering {
                    answer.body_size = answer.body_size.saturating_add(payload);
                }
            }
        }
    }

    fn end(&mut self, side: Side, ts_ns: u64) {
        match side {
            Side::Client => self.conversation.end_request_body(),
            Side::Server => {
                let Some(answer) = self.conversation.answering.take() else {
                    return;
                };
                let Some(request) = answer.request else {
                    return;
                };
                let response = ResponseSummary {
                    status: answer.status,
                    body_size: Some(answer.body_size),
                };
                self.out.exchanges.push(build_exchange(
                    request,
                    Some(response),
                    ts_ns,
                    false,
                    &mut self.out.spare,
                ));
            }
        }
    }

    fn desync(&mut self, side: Side) {
        self.out.desyncs += 1;
        match side {
            Side::Client => self.conversation.request_in_body = None,
            Side::Server => {
                // Responses went missing, and how many is unknown: pairing
                // the next response with the oldest request could be wrong
                // for the rest of the connection. Requests sent from now on
                // pair correctly.
                self.conversation.answering = None;
                self.conversation.pending.clear();
            }
        }
    }
}
