//! PostgreSQL frontend/backend protocol v3.
//!
//! One exchange per simple Query (however many statements it holds, named
//! after the first; it ends at `ReadyForQuery`) and one per extended-protocol
//! Execute (carrying the SQL of the statement its portal was bound to; it
//! ends at its `CommandComplete`, `EmptyQueryResponse`, `PortalSuspended` or
//! `ErrorResponse`). Startup, authentication, Parse/Bind round trips without
//! an Execute, COPY sub-protocol data and function calls produce none.
//!
//! Responses come back in request order, so pairing is a queue of what the
//! client asked for: Query, Execute, and the Sync (or `FunctionCall`) points
//! at which the server answers `ReadyForQuery`. After an `ErrorResponse` the
//! server ignores everything up to the next Sync, so the Executes queued
//! before that Sync end as failures when its `ReadyForQuery` arrives.
//!
//! When the client's `SSLRequest` or `GSSENCRequest` is accepted, the rest of
//! the connection is encrypted and nothing more is parsed.

mod detect;
mod format;
mod messages;
#[cfg(test)]
mod tests;

pub use detect::detect;

use std::collections::VecDeque;
use std::sync::Arc;

use self::format::{ClientFormat, ServerFormat, UNTYPED_HEADER_LEN};
use self::messages::{
    cstr_or_prefix, error_sqlstate, startup_code, Reader, GSSENC_REQUEST, PROTOCOL_3, SSL_REQUEST,
};
use super::sql::framing::{Frame, Framer, GapStep, Step};
use super::sql::{
    exchange, BoundedMap, Dialect, Outcome, Statement, MAX_PENDING_REQUESTS,
    MAX_PREPARED_STATEMENTS,
};
use super::{ParseOutput, Parser, ParserOptions, Protocol, Side};

/// `db.system.name`.
const SYSTEM: &str = "postgresql";

/// Most named portals remembered (they live for one transaction at most).
const MAX_NAMED_PORTALS: usize = 64;

/// Per-connection PostgreSQL state.
pub struct PostgresParser {
    client: Framer,
    server: Framer,
    session: Session,
}

impl PostgresParser {
    pub fn new(options: ParserOptions) -> Self {
        PostgresParser {
            client: Framer::hunting(),
            server: Framer::hunting(),
            session: Session::new(options),
        }
    }
}

impl Parser for PostgresParser {
    fn on_data(&mut self, side: Side, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        let mut input = data;
        match side {
            Side::Client => {
                while !self.session.encrypted {
                    let format = self.session.client_format();
                    match self.client.next(&mut input, &format, ts_ns) {
                        Step::Frame(frame) => self.session.on_client_message(&frame),
                        Step::NeedMore => break,
                        Step::Desync => self.session.on_desync(Side::Client, out),
                    }
                }
            }
            Side::Server => {
                if self.session.awaiting_encryption_answer {
                    input = self.session.on_encryption_answer(input);
                }
                while !self.session.encrypted {
                    match self.server.next(&mut input, &ServerFormat, ts_ns) {
                        Step::Frame(frame) => self.session.on_server_message(&frame, ts_ns, out),
                        Step::NeedMore => break,
                        Step::Desync => self.session.on_desync(Side::Server, out),
                    }
                }
            }
        }
    }

    fn on_gap(&mut self, side: Side, ts_ns: u64, len: usize, out: &mut ParseOutput) {
        if self.session.encrypted {
            return;
        }
        match side {
            Side::Client => {
                let format = self.session.client_format();
                match self.client.gap(len, &format) {
                    GapStep::Absorbed => {}
                    GapStep::Truncated(frame) => self.session.on_client_message(&frame),
                    GapStep::Desync => self.session.on_desync(Side::Client, out),
                }
            }
            Side::Server => match self.server.gap(len, &ServerFormat) {
                GapStep::Absorbed => {}
                GapStep::Truncated(frame) => {
                    self.session.on_server_message(&frame, ts_ns, out);
                }
                GapStep::Desync => self.session.on_desync(Side::Server, out),
            },
        }
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        self.session.on_close(ts_ns, out);
    }
}

/// What the client asked for that the server has yet to answer.
#[derive(Debug)]
enum Pending {
    Query(Request),
    Execute(Request),
    /// A Sync or `FunctionCall`: the server answers it with `ReadyForQuery`.
    SyncPoint {
        start_ns: u64,
    },
}

impl Pending {
    fn start_ns(&self) -> u64 {
        match self {
            Pending::Query(request) | Pending::Execute(request) => request.start_ns,
            Pending::SyncPoint { start_ns } => *start_ns,
        }
    }
}

#[derive(Debug)]
struct Request {
    start_ns: u64,
    statement: Option<Arc<Statement>>,
    rows: u64,
    /// False once response bytes were lost, making `rows` a lower bound.
    rows_exact: bool,
    /// SQLSTATE of the first error (simple Query: later statements of the
    /// same string are not run after it).
    error: Option<String>,
    failed: bool,
}

impl Request {
    fn new(start_ns: u64, statement: Option<Arc<Statement>>) -> Self {
        Request {
            start_ns,
            statement,
            rows: 0,
            rows_exact: true,
            error: None,
            failed: false,
        }
    }

    fn finish(self, end_ns: u64, incomplete: bool, out: &mut ParseOutput) {
        let outcome = Outcome {
            end_ns,
            incomplete,
            rows: (self.rows_exact && !incomplete && !self.failed).then_some(self.rows),
            failed: self.failed,
            error_code: self.error,
        };
        out.exchanges.push(exchange(
            Protocol::Postgresql,
            SYSTEM,
            self.statement.as_deref(),
            self.start_ns,
            outcome,
            &mut out.spare,
        ));
    }
}

#[expect(
    clippy::struct_excessive_bools,
    reason = "skipping_to_sync and copy_in vary apart from the startup flags; a startup-phase enum would be a parser change of its own"
)]
struct Session {
    options: ParserOptions,
    /// The client may still send a startup-family (untyped) message.
    startup_allowed: bool,
    /// The client asked for SSL or GSS encryption; the server's next byte
    /// says whether it agreed.
    awaiting_encryption_answer: bool,
    encrypted: bool,
    unnamed_statement: Option<Arc<Statement>>,
    named_statements: BoundedMap<Box<[u8]>, Arc<Statement>>,
    unnamed_portal: Option<Arc<Statement>>,
    named_portals: BoundedMap<Box<[u8]>, Arc<Statement>>,
    pending: VecDeque<Pending>,
    /// When the first message preparing the next Execute (Parse, Bind,
    /// Describe) started: that is when the request started.
    execute_start_ns: Option<u64>,
    /// An `ErrorResponse` came; the server skips to the next Sync.
    skipping_to_sync: bool,
    /// `ReadyForQuery` was seen: authentication is over.
    ready_seen: bool,
    /// The server is taking COPY data from the client.
    copy_in: bool,
}

impl Session {
    fn new(options: ParserOptions) -> Self {
        Session {
            options,
            startup_allowed: true,
            awaiting_encryption_answer: false,
            encrypted: false,
            unnamed_statement: None,
            named_statements: BoundedMap::new(MAX_PREPARED_STATEMENTS),
            unnamed_portal: None,
            named_portals: BoundedMap::new(MAX_NAMED_PORTALS),
            pending: VecDeque::new(),
            execute_start_ns: None,
            skipping_to_sync: false,
            ready_seen: false,
            copy_in: false,
        }
    }

    /// How the client's next message may look, given the conversation.
    fn client_format(&self) -> ClientFormat {
        ClientFormat {
            startup_allowed: self.startup_allowed,
            password_allowed: !self.ready_seen,
            copy_in: self.copy_in,
        }
    }

    fn statement(&self, sql: &[u8]) -> Arc<Statement> {
        Arc::new(Statement::new(
            sql,
            Dialect::Postgres,
            self.options.raw_statements,
        ))
    }

    /// Consumes the single-byte answer to `SSLRequest` / `GSSENCRequest`.
    fn on_encryption_answer<'a>(&mut self, input: &'a [u8]) -> &'a [u8] {
        let Some((&answer, rest)) = input.split_first() else {
            return input;
        };
        self.awaiting_encryption_answer = false;
        match answer {
            b'S' | b'G' => {
                self.encrypted = true;
                &[]
            }
            b'N' => rest,
            // Anything else (an old server's ErrorResponse) is a message.
            _ => input,
        }
    }

    fn on_client_message(&mut self, frame: &Frame<'_>) {
        if frame.header.len() == UNTYPED_HEADER_LEN {
            self.on_startup_message(frame.body);
            return;
        }
        self.startup_allowed = false;
        let Some(&ty) = frame.header.first() else {
            return;
        };
        let mut body = Reader::new(frame.body);
        match ty {
            b'Q' => {
                let statement = self.statement(cstr_or_prefix(&mut body));
                self.execute_start_ns = None;
                self.enqueue(Pending::Query(Request::new(
                    frame.start_ns,
                    Some(statement),
                )));
            }
            b'P' => {
                self.execute_start_ns.get_or_insert(frame.start_ns);
                let Some(name) = body.cstr() else {
                    return;
                };
                let statement = self.statement(cstr_or_prefix(&mut body));
                if name.is_empty() {
                    self.unnamed_statement = Some(statement);
                } else {
                    self.named_statements.insert(name.into(), statement);
                }
            }
            b'B' => {
                self.execute_start_ns.get_or_insert(frame.start_ns);
                let (Some(portal), Some(name)) = (body.cstr(), body.cstr()) else {
                    return;
                };
                let statement = if name.is_empty() {
                    self.unnamed_statement.clone()
                } else {
                    self.named_statements.get(name).cloned()
                };
                if portal.is_empty() {
                    self.unnamed_portal = statement;
                } else if let Some(statement) = statement {
                    self.named_portals.insert(portal.into(), statement);
                } else {
                    self.named_portals.remove(portal);
                }
            }
            b'E' => {
                let start_ns = self.execute_start_ns.take().unwrap_or(frame.start_ns);
                let Some(portal) = body.cstr() else {
                    return;
                };
                let statement = if portal.is_empty() {
                    self.unnamed_portal.clone()
                } else {
                    self.named_portals.get(portal).cloned()
                };
                self.enqueue(Pending::Execute(Request::new(start_ns, statement)));
            }
            b'S' | b'F' => {
                self.execute_start_ns = None;
                self.enqueue(Pending::SyncPoint {
                    start_ns: frame.start_ns,
                });
            }
            b'D' => {
                self.execute_start_ns.get_or_insert(frame.start_ns);
            }
            b'C' => {
                let (Some(kind), Some(name)) = (body.u8(), body.cstr()) else {
                    return;
                };
                match (kind, name.is_empty()) {
                    (b'S', true) => self.unnamed_statement = None,
                    (b'S', false) => self.named_statements.remove(name),
                    (b'P', true) => self.unnamed_portal = None,
                    (b'P', false) => self.named_portals.remove(name),
                    _ => {}
                }
            }
            // Flush, Terminate, COPY data and passwords: nothing to track
            // (and passwords are never looked at).
            _ => {}
        }
    }

    fn on_startup_message(&mut self, body: &[u8]) {
        match startup_code(body) {
            Some(SSL_REQUEST | GSSENC_REQUEST) => self.awaiting_encryption_answer = true,
            Some(PROTOCOL_3) => self.startup_allowed = false,
            _ => {}
        }
    }

    fn enqueue(&mut self, pending: Pending) {
        // A client this far ahead of the server is not traced request by
        // request; dropping the newest keeps the older pairs right.
        if self.pending.len() < MAX_PENDING_REQUESTS {
            self.pending.push_back(pending);
        }
    }

    fn on_server_message(&mut self, frame: &Frame<'_>, ts_ns: u64, out: &mut ParseOutput) {
        let Some(&ty) = frame.header.first() else {
            return;
        };
        match ty {
            b'G' => self.copy_in = true,
            b'C' | b'E' | b'Z' => self.copy_in = false,
            _ => {}
        }
        self.ready_seen |= ty == b'Z';
        // A response that started before the request it would answer
        // belongs to a request that was never seen (lost or before capture).
        if self
            .pending
            .front()
            .is_none_or(|front| front.start_ns() > frame.start_ns)
        {
            return;
        }
        match ty {
            b'D' => {
                if let Some(Pending::Query(request) | Pending::Execute(request)) =
                    self.pending.front_mut()
                {
                    request.rows += 1;
                }
            }
            b'C' | b'I' | b's' => {
                if matches!(self.pending.front(), Some(Pending::Execute(_))) {
                    if let Some(Pending::Execute(request)) = self.pending.pop_front() {
                        request.finish(ts_ns, false, out);
                    }
                }
            }
            b'E' => self.on_error(error_sqlstate(frame.body), ts_ns, out),
            b'Z' => self.on_ready_for_query(ts_ns, out),
            // Everything else either belongs to the current request without
            // changing its outcome (descriptions, COPY, notices) or to no
            // request (parameter status, notifications).
            _ => {}
        }
    }

    fn on_error(&mut self, sqlstate: Option<String>, ts_ns: u64, out: &mut ParseOutput) {
        match self.pending.front_mut() {
            Some(Pending::Query(request)) if !request.failed => {
                request.failed = true;
                request.error = sqlstate;
            }
            // A query that failed already, or nothing pending.
            Some(Pending::Query(_)) | None => {}
            Some(Pending::Execute(_)) => {
                if let Some(Pending::Execute(mut request)) = self.pending.pop_front() {
                    request.failed = true;
                    request.error = sqlstate;
                    request.finish(ts_ns, false, out);
                }
                self.skipping_to_sync = true;
            }
            Some(Pending::SyncPoint { .. }) => self.skipping_to_sync = true,
        }
    }

    /// Ends the Query, or the extended-protocol batch up to its Sync.
    fn on_ready_for_query(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        while let Some(pending) = self.pending.pop_front() {
            match pending {
                Pending::Query(request) => {
                    request.finish(ts_ns, false, out);
                    break;
                }
                Pending::Execute(mut request) => {
                    // No completion came: normally because the batch was
                    // abandoned after an error, so it never ran.
                    request.failed = self.skipping_to_sync;
                    request.rows_exact = false;
                    request.finish(ts_ns, false, out);
                }
                Pending::SyncPoint { .. } => break,
            }
        }
        self.skipping_to_sync = false;
    }

    fn on_desync(&mut self, side: Side, out: &mut ParseOutput) {
        out.desyncs += 1;
        match side {
            Side::Client => {
                // What the lost bytes may have redefined is not to be trusted.
                self.execute_start_ns = None;
                self.unnamed_statement = None;
                self.unnamed_portal = None;
            }
            Side::Server => self.rows_lost(),
        }
    }

    /// Response bytes went missing: row counts so far are lower bounds.
    fn rows_lost(&mut self) {
        for pending in &mut self.pending {
            if let Pending::Query(request) | Pending::Execute(request) = pending {
                request.rows_exact = false;
            }
        }
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        for pending in self.pending.drain(..) {
            if let Pending::Query(request) | Pending::Execute(request) = pending {
                request.finish(ts_ns, true, out);
            }
        }
        self.execute_start_ns = None;
        self.skipping_to_sync = false;
    }
}
