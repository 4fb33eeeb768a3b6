//! memcached text protocol: commands paired with their responses, in order,
//! with `noreply` commands reported at once and values never buffered.

mod detect;
mod framer;
mod request;
mod response;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

pub use detect::detect;
use framer::{Framer, Step};
use request::{parse_line, Command, Line, Reply};
use response::{announced_block, classify, ErrorKind, Outcome};

use super::{
    AttrValue, Exchange, Fault, ParseOutput, Parser, ParserOptions, Protocol, SharedStr, Side,
    SpareAttributes,
};

/// Commands sent but not yet answered; deeper pipelines mean we lost track.
const MAX_PENDING: usize = 1024;
/// Longest `db.query.text` (raw statements): a multi-key get can be long.
const MAX_QUERY_TEXT: usize = 1024;

/// Where the response stream stands after losing its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplySync {
    InStep,
    /// Responses are discarded until the client sends a command: responses
    /// to commands we lost come before it, the one to the new one after.
    AwaitingCommand,
}

struct Pending {
    /// `None` for commands that are kept in step with but not reported.
    command: Option<Command>,
    reply: Reply,
    keys: usize,
    query_text: Option<String>,
    start_ns: u64,
}

/// Per-connection memcached state.
pub struct MemcachedParser {
    raw_statements: bool,
    requests: Framer,
    responses: Framer,
    reply_sync: ReplySync,
    /// A storage command whose data block is being read, and its `noreply`.
    storing: Option<(Pending, bool)>,
    pending: VecDeque<Pending>,
    /// The response to the oldest command ends with the block being read.
    ends_with_block: bool,
}

impl MemcachedParser {
    pub fn new(options: ParserOptions) -> Self {
        MemcachedParser {
            raw_statements: options.raw_statements,
            requests: Framer::new(),
            responses: Framer::new(),
            reply_sync: ReplySync::InStep,
            storing: None,
            pending: VecDeque::new(),
            ends_with_block: false,
        }
    }

    fn on_requests(&mut self, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        let mut rest = data;
        while !rest.is_empty() {
            let (used, step) = self.requests.advance(rest, ts_ns);
            rest = rest.get(used..).unwrap_or_default();
            let in_step = match step {
                Step::NeedMore => break,
                Step::Line => self.on_request_line(out),
                Step::BlockDone { .. } => {
                    // A bad block end gets `CLIENT_ERROR bad data chunk`,
                    // which answers the command like any error.
                    if let Some((pending, noreply)) = self.storing.take() {
                        self.submit(pending, noreply, out);
                    }
                    true
                }
                Step::Invalid => false,
            };
            if !in_step {
                // Clients write whole commands: the next write starts afresh.
                self.desync(Side::Client, out);
                break;
            }
        }
    }

    /// Handles the command line just read; false if it is not one.
    fn on_request_line(&mut self, out: &mut ParseOutput) -> bool {
        let line = self.requests.line();
        let start_ns = self.requests.line_start_ns();
        match parse_line(line) {
            Line::Request {
                command,
                keys,
                block,
                noreply,
            } => {
                let pending = Pending {
                    command: Some(command),
                    reply: command.reply(),
                    keys,
                    query_text: self.raw_statements.then(|| query_text(line)),
                    start_ns,
                };
                match block {
                    Some(len) => {
                        self.requests.expect_block(len);
                        self.storing = Some((pending, noreply));
                    }
                    None => self.submit(pending, noreply, out),
                }
            }
            Line::Unreported { block, quiet } => {
                let pending = Pending {
                    command: None,
                    reply: Reply::AnyOne,
                    keys: 0,
                    query_text: None,
                    start_ns,
                };
                match block {
                    Some(len) => {
                        self.requests.expect_block(len);
                        self.storing = Some((pending, quiet));
                    }
                    None => self.submit(pending, quiet, out),
                }
            }
            Line::Quit | Line::Blank => {}
            Line::Garbage => return false,
        }
        true
    }

    /// A complete command: reported now if no reply will come, else queued.
    fn submit(&mut self, pending: Pending, noreply: bool, out: &mut ParseOutput) {
        if self.reply_sync == ReplySync::AwaitingCommand {
            self.reply_sync = ReplySync::InStep;
            self.responses.reset();
            self.ends_with_block = false;
        }
        if noreply {
            let end_ns = pending.start_ns;
            out.exchanges
                .extend(exchange(pending, end_ns, Answer::None, &mut out.spare));
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            out.desyncs += 1;
        }
        self.pending.push_back(pending);
    }

    fn on_responses(&mut self, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        if self.reply_sync == ReplySync::AwaitingCommand {
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let (used, step) = self.responses.advance(rest, ts_ns);
            rest = rest.get(used..).unwrap_or_default();
            let in_step = match step {
                Step::NeedMore => break,
                Step::Line => self.on_response_line(ts_ns, out),
                Step::BlockDone { intact } => {
                    if intact && self.ends_with_block {
                        self.ends_with_block = false;
                        self.complete(ts_ns, Answer::Ok, out);
                    }
                    intact
                }
                Step::Invalid => false,
            };
            if !in_step {
                self.desync(Side::Server, out);
                break;
            }
        }
    }

    /// Handles the response line just read; false if it makes no sense.
    fn on_response_line(&mut self, ts_ns: u64, out: &mut ParseOutput) -> bool {
        let line = self.responses.line();
        let Ok(block) = announced_block(line) else {
            return false;
        };
        let outcome = self
            .pending
            .front()
            .map(|head| classify(head.reply, line, block.is_some()));
        if let Some(len) = block {
            self.responses.expect_block(len);
        }
        match outcome {
            // Unsolicited (a `noreply` command's error, or a response to a
            // command sent before we started): nothing to pair it with.
            None | Some(Outcome::Continues) => {}
            Some(Outcome::Ends) if block.is_some() => self.ends_with_block = true,
            Some(Outcome::Ends) => self.complete(ts_ns, Answer::Ok, out),
            Some(Outcome::Fails(kind)) => self.complete(ts_ns, Answer::Error(kind), out),
            Some(Outcome::Unexpected) => return false,
        }
        true
    }

    fn complete(&mut self, end_ns: u64, answer: Answer, out: &mut ParseOutput) {
        if let Some(pending) = self.pending.pop_front() {
            out.exchanges
                .extend(exchange(pending, end_ns, answer, &mut out.spare));
        }
    }

    /// Lost our place on `side`: what was pending can no longer be paired.
    fn desync(&mut self, side: Side, out: &mut ParseOutput) {
        out.desyncs += 1;
        self.pending.clear();
        self.responses.reset();
        self.ends_with_block = false;
        self.reply_sync = ReplySync::AwaitingCommand;
        if side == Side::Client {
            self.requests.reset();
            self.storing = None;
        }
    }
}

/// How a command was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Ok,
    Error(ErrorKind),
    /// No answer: `noreply`, or the connection closed first.
    None,
}

/// The exchange for a reported command.
fn exchange(
    pending: Pending,
    end_ns: u64,
    answer: Answer,
    spare: &mut SpareAttributes,
) -> Option<Exchange> {
    let command = pending.command?;
    let mut attributes = spare.take(5);
    attributes.push(("db.system.name", AttrValue::fixed("memcached")));
    attributes.push(("db.operation.name", AttrValue::fixed(command.name())));
    if pending.keys > 1 {
        attributes.push(("db.operation.batch.size", AttrValue::from(pending.keys)));
    }
    if let Some(text) = pending.query_text {
        attributes.push(("db.query.text", AttrValue::from(text)));
    }
    let fault = match answer {
        Answer::Error(kind) => {
            attributes.push(("db.response.status_code", AttrValue::fixed(kind.code())));
            Fault::Server
        }
        Answer::Ok | Answer::None => Fault::None,
    };
    Some(Exchange {
        protocol: Protocol::Memcached,
        name: SharedStr::copied(command.name()),
        start_ns: pending.start_ns,
        end_ns,
        fault,
        // `noreply` commands are complete without an answer; only a close
        // leaves queued commands incomplete.
        incomplete: false,
        attributes,
        trace_context: None,
    })
}

/// The command line as sent (data blocks are never part of it), bounded.
fn query_text(line: &[u8]) -> String {
    let kept = line
        .get(..line.len().min(MAX_QUERY_TEXT))
        .unwrap_or_default();
    let mut text = String::from_utf8_lossy(kept).into_owned();
    if kept.len() < line.len() {
        text.push_str("...");
    }
    text
}

impl Parser for MemcachedParser {
    fn on_data(&mut self, side: Side, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        match side {
            Side::Client => self.on_requests(ts_ns, data, out),
            Side::Server => self.on_responses(ts_ns, data, out),
        }
    }

    fn on_gap(&mut self, side: Side, _ts_ns: u64, len: usize, out: &mut ParseOutput) {
        match side {
            Side::Client => {
                if self.storing.is_none() || !self.requests.skip_gap(len) {
                    self.desync(Side::Client, out);
                }
            }
            Side::Server => {
                if self.reply_sync == ReplySync::InStep && !self.responses.skip_gap(len) {
                    self.desync(Side::Server, out);
                }
            }
        }
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        // A command cut off inside its data block never reached the server
        // whole; queued ones went unanswered.
        self.storing = None;
        for pending in self.pending.drain(..) {
            if let Some(mut exchange) = exchange(pending, ts_ns, Answer::None, &mut out.spare) {
                exchange.incomplete = true;
                out.exchanges.push(exchange);
            }
        }
    }
}
