//! DNS: queries paired with their responses by transaction id and question.
//!
//! Over UDP (the default) each `on_data` call is one datagram; over TCP
//! ([`DnsParser::new_tcp`]) the bytes are length-prefixed messages.

mod message;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use message::{parse, rcode_name, type_name, Extent, Header, Question};
use stream::Reassembler;

use super::{
    AttrValue, Exchange, Fault, ParseOutput, Parser, ParserOptions, Protocol, Side, SpareAttributes,
};

/// Queries awaiting an answer; a resolver keeps a few per socket, a busy
/// forwarder more.
const MAX_PENDING: usize = 256;
/// Shortest message worth a look: a header and a root question.
const MIN_QUERY_LEN: usize = 12 + 5;

/// `Some(Side::Client)` for a datagram that is a standard query,
/// `Some(Side::Server)` for one that is a response to one.
pub fn detect(datagram: &[u8]) -> Option<Side> {
    let header = Header::parse(datagram)?;
    if datagram.len() < MIN_QUERY_LEN || header.questions == 0 {
        return None;
    }
    if header.is_plausible_query() {
        parse(datagram, Extent::Whole).map(|_| Side::Client)
    } else if header.is_plausible_response() {
        parse(datagram, Extent::UpToRecords).map(|_| Side::Server)
    } else {
        None
    }
}

/// [`detect`] for DNS over TCP: the message after its 2-byte length.
pub fn detect_tcp(data: &[u8]) -> Option<Side> {
    let (prefix, message) = data.split_at_checked(2)?;
    let len = usize::from(u16::from_be_bytes([*prefix.first()?, *prefix.get(1)?]));
    detect(message.get(..len.min(message.len()))?)
}

struct PendingQuery {
    id: u16,
    question: Question,
    start_ns: u64,
}

enum Transport {
    /// One datagram per call.
    Udp,
    /// Length-prefixed messages, one reassembler per direction.
    Tcp {
        queries: Box<Reassembler>,
        responses: Box<Reassembler>,
    },
}

/// Per-flow DNS state.
pub struct DnsParser {
    transport: Transport,
    queries: Queries,
}

/// Queries awaiting their response, oldest first.
#[derive(Default)]
struct Queries {
    pending: VecDeque<PendingQuery>,
}

impl DnsParser {
    /// For UDP: every `on_data` call must carry exactly one datagram.
    pub fn new(_options: ParserOptions) -> Self {
        DnsParser {
            transport: Transport::Udp,
            queries: Queries::default(),
        }
    }

    /// For TCP (RFC 7766): messages with 2-byte length prefixes, split
    /// arbitrarily across calls.
    pub fn new_tcp(_options: ParserOptions) -> Self {
        DnsParser {
            transport: Transport::Tcp {
                queries: Box::new(Reassembler::new()),
                responses: Box::new(Reassembler::new()),
            },
            queries: Queries::default(),
        }
    }
}

impl Queries {
    /// One whole message from `side`, whose first byte moved at `start_ns`
    /// and last at `end_ns`.
    fn on_message(
        &mut self,
        side: Side,
        start_ns: u64,
        end_ns: u64,
        bytes: &[u8],
        out: &mut ParseOutput,
    ) {
        let handled = match side {
            Side::Client => self.on_query(start_ns, bytes, out),
            Side::Server => self.on_response(end_ns, bytes, out),
        };
        if !handled {
            out.desyncs += 1;
        }
    }

    /// False if `bytes` is not a query.
    fn on_query(&mut self, start_ns: u64, bytes: &[u8], out: &mut ParseOutput) -> bool {
        let Some(header) = Header::parse(bytes).filter(Header::is_plausible_query) else {
            return false;
        };
        // Queries are small and sent whole: anything less is not one.
        let Some(question) = parse(bytes, Extent::Whole).and_then(|message| message.question)
        else {
            return false;
        };
        if let Some(index) = self.pending.iter().position(|query| query.id == header.id) {
            if self
                .pending
                .get(index)
                .is_some_and(|query| query.question.same_as(&question))
            {
                // A retransmission: the wait started with the first one.
                return true;
            }
            // A reused id: the old query will get no answer we can tell apart.
            self.pending.remove(index);
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            out.desyncs += 1;
        }
        self.pending.push_back(PendingQuery {
            id: header.id,
            question,
            start_ns,
        });
        true
    }

    /// False if `bytes` is not a response (an unsolicited one is fine).
    fn on_response(&mut self, end_ns: u64, bytes: &[u8], out: &mut ParseOutput) -> bool {
        if !Header::parse(bytes).is_some_and(|header| header.is_plausible_response()) {
            return false;
        }
        // Large responses may be captured only in part: the header and the
        // question are what we report, and they come first.
        let Some(response) = parse(bytes, Extent::UpToRecords) else {
            return false;
        };
        let matches = |query: &PendingQuery| {
            query.id == response.header.id
                && response
                    .question
                    .as_ref()
                    .is_none_or(|question| question.same_as(&query.question))
        };
        if let Some(index) = self.pending.iter().position(matches) {
            if let Some(query) = self.pending.remove(index) {
                out.exchanges.push(exchange(
                    &query,
                    end_ns,
                    Some((response.rcode, response.header.answers)),
                    &mut out.spare,
                ));
            }
        }
        true
    }
}

fn exchange(
    query: &PendingQuery,
    end_ns: u64,
    answer: Option<(u16, u16)>,
    spare: &mut SpareAttributes,
) -> Exchange {
    let qtype = type_name(query.question.qtype)
        .map_or_else(|| query.question.qtype.to_string(), str::to_owned);
    let mut attributes = spare.take(4);
    attributes.push((
        "dns.question.name",
        AttrValue::from(query.question.name.as_str()),
    ));
    attributes.push(("dns.question.type", AttrValue::from(qtype.as_str())));
    let mut fault = Fault::None;
    if let Some((rcode, answers)) = answer {
        let code = rcode_name(rcode).map_or_else(|| rcode.to_string(), str::to_owned);
        attributes.push(("dns.response.code", AttrValue::from(code)));
        attributes.push(("dns.answer.count", AttrValue::from(answers)));
        fault = match rcode {
            // The server could not or would not answer.
            2 | 4 | 5 => Fault::Server,
            // It could not read the query.
            1 => Fault::Client,
            // NXDOMAIN and NODATA are answers.
            _ => Fault::None,
        };
    }
    Exchange {
        protocol: Protocol::Dns,
        name: format!("{qtype} {}", query.question.name).into(),
        start_ns: query.start_ns,
        end_ns,
        fault,
        incomplete: answer.is_none(),
        attributes,
        trace_context: None,
    }
}

impl Parser for DnsParser {
    fn on_data(&mut self, side: Side, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        let DnsParser { transport, queries } = self;
        let Transport::Tcp {
            queries: query_stream,
            responses: response_stream,
        } = transport
        else {
            queries.on_message(side, ts_ns, ts_ns, data, out);
            return;
        };
        let reassembler = match side {
            Side::Client => query_stream,
            Side::Server => response_stream,
        };
        let mut rest = data;
        while !rest.is_empty() {
            let (used, step) = reassembler.advance(rest, ts_ns);
            rest = rest.get(used..).unwrap_or_default();
            match step {
                stream::Step::NeedMore => break,
                stream::Step::Message => {
                    let start_ns = reassembler.message_start_ns();
                    queries.on_message(side, start_ns, ts_ns, reassembler.message(), out);
                }
                stream::Step::Damaged => {}
                stream::Step::Invalid => {
                    // Resynchronise at the next write: DNS clients and
                    // servers write a prefix and its message together.
                    reassembler.reset();
                    out.desyncs += 1;
                    break;
                }
            }
        }
    }

    fn on_gap(&mut self, side: Side, _ts_ns: u64, len: usize, out: &mut ParseOutput) {
        match &mut self.transport {
            // A datagram (or its tail) we did not see.
            Transport::Udp => out.desyncs += 1,
            Transport::Tcp { queries, responses } => {
                let reassembler = match side {
                    Side::Client => queries,
                    Side::Server => responses,
                };
                if !reassembler.skip_gap(len) {
                    reassembler.reset();
                    out.desyncs += 1;
                }
            }
        }
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        out.exchanges.extend(
            self.queries
                .pending
                .drain(..)
                .map(|query| exchange(&query, ts_ns, None, &mut out.spare)),
        );
    }
}
