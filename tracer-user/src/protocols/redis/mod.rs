//! Redis (RESP2 and RESP3): commands paired with their replies, in order,
//! with pipelining, pub/sub pushes and MONITOR streams kept out of the
//! pairing.

mod commands;
mod detect;
mod resp;
#[cfg(test)]
mod tests;

use std::{collections::VecDeque, sync::Arc};

use commands::{
    command_kind, command_name, is_container, is_known_command, is_secret, query_text, CommandKind,
    PubSubKind,
};
pub use detect::detect;
use resp::{CaptureLimits, Event, RespReader, Role, Value};

use super::{
    AttrValue, Exchange, Fault, ParseOutput, Parser, ParserOptions, Protocol, SharedStr, Side,
    SpareAttributes,
};

/// Commands sent but not yet answered; a pipeline deeper than this means we
/// lost track of the replies.
const MAX_PENDING: usize = 1024;
/// Longest error code kept for `db.response.status_code`.
const MAX_ERROR_CODE: usize = 32;

/// Commands need their name and subcommand to be described; with raw
/// statements, their arguments too (bounded: values can be huge).
const COMMAND_CAPTURE: CaptureLimits = CaptureLimits {
    items: 2,
    bytes_per_item: 64,
};
const RAW_COMMAND_CAPTURE: CaptureLimits = CaptureLimits {
    items: 65,
    bytes_per_item: 256,
};
/// Replies need an error's text and a push's kind and subscription count.
const REPLY_CAPTURE: CaptureLimits = CaptureLimits {
    items: 3,
    bytes_per_item: 64,
};

/// Where the reply stream stands after losing its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplySync {
    InStep,
    /// Replies are discarded until the client sends a command: the replies
    /// to commands we lost come before it, the reply to the new one after.
    AwaitingCommand,
}

struct PendingCommand {
    name: SharedStr,
    query_text: SharedStr,
    kind: CommandKind,
    start_ns: u64,
}

/// Per-connection Redis state.
pub struct RedisParser {
    raw_statements: bool,
    commands: RespReader,
    replies: RespReader,
    reply_sync: ReplySync,
    pending: VecDeque<PendingCommand>,
    /// RESP2 subscribed mode: arrays starting with `message` are pushes.
    subscribed: bool,
    /// After MONITOR, the server streams `+<timestamp> ...` lines.
    monitoring: bool,
    /// Confirmations still expected for a (P|S)(UN)SUBSCRIBE that was already
    /// paired with its first one.
    extra_confirmations: Option<(PubSubKind, usize)>,
    /// The last masked query text of a known command (`SET ? ?`) with its
    /// name and argument count: a connection mostly repeats a few commands,
    /// and the text depends on nothing else, so it is shared, not rebuilt.
    masked_query: Option<MaskedQuery>,
}

/// What a known command's name and argument count decide, kept for the
/// next command of the connection.
struct MaskedQuery {
    name: &'static str,
    arguments: usize,
    kind: CommandKind,
    text: Arc<str>,
}

impl RedisParser {
    pub fn new(options: ParserOptions) -> Self {
        let command_capture = if options.raw_statements {
            RAW_COMMAND_CAPTURE
        } else {
            COMMAND_CAPTURE
        };
        RedisParser {
            raw_statements: options.raw_statements,
            commands: RespReader::new(Role::Commands, command_capture),
            replies: RespReader::new(Role::Replies, REPLY_CAPTURE),
            reply_sync: ReplySync::InStep,
            pending: VecDeque::new(),
            subscribed: false,
            monitoring: false,
            extra_confirmations: None,
            masked_query: None,
        }
    }

    fn on_commands(&mut self, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        let mut rest = data;
        while !rest.is_empty() {
            let (used, event) = self.commands.advance(rest, ts_ns);
            rest = rest.get(used..).unwrap_or_default();
            match event {
                Event::NeedMore => break,
                Event::Value => {
                    if !self.on_command(out) {
                        self.desync(Side::Client, out);
                        break;
                    }
                }
                Event::Invalid => {
                    // The rest of this write is unusable; clients write whole
                    // commands, so the next write starts afresh.
                    self.desync(Side::Client, out);
                    break;
                }
            }
        }
    }

    /// Queues the command just read; false if it is not a command.
    fn on_command(&mut self, out: &mut ParseOutput) -> bool {
        let command = self.commands.value();
        let Some((name_bytes, false)) = command.item(0) else {
            return false;
        };
        if command.is_inline() && !is_plausible_inline(command, name_bytes) {
            return false;
        }
        let arguments = usize::try_from(command.count().saturating_sub(1)).unwrap_or(0);
        let pending = match &self.masked_query {
            // The same command as last time: nothing to look up or build.
            Some(cached)
                if cached.arguments == arguments
                    && name_bytes.eq_ignore_ascii_case(cached.name.as_bytes()) =>
            {
                PendingCommand {
                    name: SharedStr::Static(cached.name),
                    query_text: SharedStr::Shared(Arc::clone(&cached.text)),
                    kind: cached.kind,
                    start_ns: command.start_ns(),
                }
            }
            _ => {
                let Some(name) = command_name(name_bytes) else {
                    return false;
                };
                let kind = command_kind(&name, arguments);
                PendingCommand {
                    query_text: shared_query_text(
                        &mut self.masked_query,
                        self.raw_statements,
                        command,
                        &name,
                        arguments,
                        kind,
                    ),
                    kind,
                    start_ns: command.start_ns(),
                    name,
                }
            }
        };
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            out.desyncs += 1;
        }
        self.pending.push_back(pending);
        if self.reply_sync == ReplySync::AwaitingCommand {
            self.reply_sync = ReplySync::InStep;
            self.replies.reset();
        }
        true
    }

    fn on_replies(&mut self, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        if self.reply_sync == ReplySync::AwaitingCommand {
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let (used, event) = self.replies.advance(rest, ts_ns);
            rest = rest.get(used..).unwrap_or_default();
            match event {
                Event::NeedMore => break,
                Event::Value => self.on_reply(ts_ns, out),
                Event::Invalid => {
                    self.desync(Side::Server, out);
                    break;
                }
            }
        }
    }

    fn on_reply(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        let reply = self.replies.value();
        match reply.kind() {
            b'>' => {
                if let Some(kind) = first_item_pubsub_kind(reply) {
                    self.on_confirmation(kind, ts_ns, out);
                }
                // Other pushes (messages, invalidations) answer no command.
                return;
            }
            b'*' if self.subscribed || self.head_is_pubsub() => {
                if let Some(kind) = first_item_pubsub_kind(reply) {
                    self.on_confirmation(kind, ts_ns, out);
                    return;
                }
                if self.subscribed && is_message(reply) {
                    return;
                }
            }
            b'+' if self.monitoring && is_monitor_line(reply) => return,
            _ => {}
        }
        if let Some(command) = self.pending.pop_front() {
            match command.kind {
                CommandKind::Monitor => self.monitoring = reply.kind() == b'+',
                CommandKind::Reset => {
                    self.monitoring = false;
                    self.subscribed = false;
                }
                CommandKind::Plain | CommandKind::PubSub { .. } => {}
            }
            let exchange = complete(command, Some(reply), ts_ns, &mut out.spare);
            out.exchanges.push(exchange);
        }
    }

    fn head_is_pubsub(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|command| matches!(command.kind, CommandKind::PubSub { .. }))
    }

    /// A `subscribe`/`unsubscribe`/... confirmation: the first one answers
    /// the command, the others (one per further channel) answer nothing.
    fn on_confirmation(&mut self, kind: PubSubKind, ts_ns: u64, out: &mut ParseOutput) {
        let reply = self.replies.value();
        // RESP3 confirmations are pushes, and RESP3 arrays are never pushes:
        // only RESP2 confirmations switch subscribed mode.
        if reply.kind() == b'*' {
            if let Some(count) = reply
                .item(2)
                .and_then(|(count, _)| resp::parse_integer(count))
            {
                self.subscribed = count > 0;
            }
        }
        if let Some((extra_kind, left)) = self.extra_confirmations {
            if extra_kind == kind && left > 0 {
                self.extra_confirmations = left
                    .checked_sub(1)
                    .filter(|&extra| extra > 0)
                    .map(|extra| (kind, extra));
                return;
            }
        }
        let head_matches = self.pending.front().is_some_and(|command| {
            matches!(command.kind, CommandKind::PubSub { confirms, .. } if confirms == kind)
        });
        if !head_matches {
            return;
        }
        if let Some(command) = self.pending.pop_front() {
            if let CommandKind::PubSub { channels, .. } = command.kind {
                self.extra_confirmations = channels
                    .checked_sub(1)
                    .filter(|&extra| extra > 0)
                    .map(|extra| (kind, extra));
            }
            out.exchanges
                .push(complete(command, Some(reply), ts_ns, &mut out.spare));
        }
    }

    /// Lost our place on `side`: what was pending can no longer be paired.
    fn desync(&mut self, side: Side, out: &mut ParseOutput) {
        out.desyncs += 1;
        self.pending.clear();
        self.extra_confirmations = None;
        self.replies.reset();
        self.reply_sync = ReplySync::AwaitingCommand;
        if side == Side::Client {
            self.commands.reset();
        }
    }
}

/// `db.query.text` of `command`, named `name`; a masked text of a known
/// command is kept in `cache` for the next command.
fn shared_query_text(
    cache: &mut Option<MaskedQuery>,
    raw: bool,
    command: &Value,
    name: &SharedStr,
    arguments: usize,
    kind: CommandKind,
) -> SharedStr {
    let SharedStr::Static(known) = *name else {
        return SharedStr::Owned(query_text(command, name, raw));
    };
    // Only a text of `?`s is the same for every command with this name and
    // argument count.
    let masked = (!raw || is_secret(known)) && !is_container(known);
    if !masked {
        return SharedStr::Owned(query_text(command, known, raw));
    }
    let text: Arc<str> = Arc::from(query_text(command, known, raw));
    *cache = Some(MaskedQuery {
        name: known,
        arguments,
        kind,
        text: Arc::clone(&text),
    });
    SharedStr::Shared(text)
}

/// Inline commands are typed by people; a line that names no known command
/// or reads like an HTTP request line (`GET /index.html HTTP/1.1`) is not one.
fn is_plausible_inline(command: &Value, name: &[u8]) -> bool {
    let path_like = command
        .item(1)
        .is_some_and(|(argument, _)| argument.starts_with(b"/"));
    is_known_command(name) && !path_like
}

/// The kind of a pub/sub confirmation (`subscribe`, `punsubscribe`, ...).
fn first_item_pubsub_kind(reply: &Value) -> Option<PubSubKind> {
    let (kind, _) = reply.item(0)?;
    PubSubKind::from_name(kind)
}

/// A RESP2 pub/sub message array.
fn is_message(reply: &Value) -> bool {
    reply
        .item(0)
        .is_some_and(|(kind, _)| matches!(kind, b"message" | b"pmessage" | b"smessage"))
}

/// MONITOR lines start with the command's timestamp: `+1700000000.123 [0 ...`.
fn is_monitor_line(reply: &Value) -> bool {
    reply
        .item(0)
        .is_some_and(|(line, _)| line.first().is_some_and(u8::is_ascii_digit))
}

/// The exchange for `command`, answered by `reply` (`None`: never answered).
fn complete(
    command: PendingCommand,
    reply: Option<&Value>,
    end_ns: u64,
    spare: &mut SpareAttributes,
) -> Exchange {
    let mut attributes = spare.take(4);
    attributes.push(("db.system.name", AttrValue::fixed("redis")));
    attributes.push(("db.operation.name", AttrValue::Str(command.name.clone())));
    attributes.push(("db.query.text", AttrValue::Str(command.query_text)));
    let error_code = reply.and_then(error_code);
    let fault = if error_code.is_some() {
        Fault::Server
    } else {
        Fault::None
    };
    if let Some(code) = error_code {
        attributes.push(("db.response.status_code", code));
    }
    Exchange {
        protocol: Protocol::Redis,
        name: command.name.clone(),
        start_ns: command.start_ns,
        end_ns,
        fault,
        incomplete: reply.is_none(),
        attributes,
        trace_context: None,
    }
}

/// The code of an error reply (`-WRONGTYPE Operation...` gives `WRONGTYPE`).
fn error_code(reply: &Value) -> Option<AttrValue> {
    if !matches!(reply.kind(), b'-' | b'!') {
        return None;
    }
    let (text, _) = reply.item(0)?;
    let code = text.split(|&b| b == b' ').next().unwrap_or_default();
    let code = code
        .get(..code.len().min(MAX_ERROR_CODE))
        .unwrap_or_default();
    if code.is_empty() {
        return Some(AttrValue::fixed("ERR"));
    }
    Some(AttrValue::from(String::from_utf8_lossy(code).into_owned()))
}

impl Parser for RedisParser {
    fn on_data(&mut self, side: Side, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        match side {
            Side::Client => self.on_commands(ts_ns, data, out),
            Side::Server => self.on_replies(ts_ns, data, out),
        }
    }

    fn on_gap(&mut self, side: Side, _ts_ns: u64, len: usize, out: &mut ParseOutput) {
        match side {
            Side::Client => {
                if !self.commands.skip_gap(len) {
                    self.desync(Side::Client, out);
                }
            }
            Side::Server => {
                if self.reply_sync == ReplySync::InStep && !self.replies.skip_gap(len) {
                    self.desync(Side::Server, out);
                }
            }
        }
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        out.exchanges.extend(
            self.pending
                .drain(..)
                .map(|command| complete(command, None, ts_ns, &mut out.spare)),
        );
        self.extra_confirmations = None;
    }
}
