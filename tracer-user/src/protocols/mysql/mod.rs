//! MySQL / MariaDB client/server protocol.
//!
//! One exchange per `COM_QUERY` (however many statements it holds, named
//! after the first; multiple result sets count as one answer), per
//! `COM_STMT_PREPARE` (named `PREPARE`, with the statement's text) and per
//! `COM_STMT_EXECUTE` (carrying the text remembered from the preparation
//! under the statement id the server returned). Other commands (ping,
//! init-db, statement reset, ...) are followed, so that responses stay
//! paired, but produce no exchange; `COM_STMT_CLOSE`, `COM_STMT_SEND_LONG_DATA`
//! and `COM_QUIT` get no answer.
//!
//! The handshake and authentication are skipped: after the server's
//! greeting and the client's handshake response, packets are commands only
//! once the server's OK ends authentication. A connection caught
//! mid-stream starts with the first client packet of sequence id 0 that is
//! a well-formed command. Connections that switch to TLS or compression,
//! or become replication streams, are not followed further.
//!
//! `db.system.name` is `mariadb` when the greeting was seen and names
//! MariaDB, `mysql` otherwise.

mod detect;
mod format;
mod packets;
mod response;
#[cfg(test)]
mod tests;

pub use detect::detect;

use std::collections::VecDeque;
use std::sync::Arc;

use self::format::{ClientFormat, ServerFormat};
use self::packets::{
    client_capabilities, greeting_is_mariadb, header, query_text, valid_command,
    valid_command_prefix, valid_greeting, valid_handshake_response, Reader, CLIENT_COMPRESS,
    CLIENT_DEPRECATE_EOF, CLIENT_QUERY_ATTRIBUTES, CLIENT_SSL, COM_BINLOG_DUMP,
    COM_BINLOG_DUMP_GTID, COM_CHANGE_USER, COM_FIELD_LIST, COM_PROCESS_INFO, COM_QUERY, COM_QUIT,
    COM_REGISTER_SLAVE, COM_RESET_CONNECTION, COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_FETCH,
    COM_STMT_PREPARE, COM_STMT_SEND_LONG_DATA, MAX_PACKET_PAYLOAD,
};
use self::response::{Expect, Progress, Response};
use super::sql::framing::{Frame, Framer, GapStep, Step};
use super::sql::{
    exchange, BoundedMap, Dialect, Outcome, Statement, MAX_PENDING_REQUESTS,
    MAX_PREPARED_STATEMENTS,
};
use super::{ParseOutput, Parser, ParserOptions, Protocol, Side};

/// Per-connection MySQL state.
pub struct MysqlParser {
    client: Framer,
    server: Framer,
    session: Session,
}

impl MysqlParser {
    pub fn new(options: ParserOptions) -> Self {
        MysqlParser {
            client: Framer::hunting(),
            server: Framer::hunting(),
            session: Session::new(options),
        }
    }
}

impl Parser for MysqlParser {
    fn on_data(&mut self, side: Side, ts_ns: u64, data: &[u8], out: &mut ParseOutput) {
        let mut input = data;
        while self.session.phase != Phase::Stopped {
            let step = match side {
                Side::Client => self
                    .client
                    .next(&mut input, &self.session.client_format(), ts_ns),
                Side::Server => self.server.next(&mut input, &ServerFormat, ts_ns),
            };
            let lost_sync = match step {
                Step::Frame(frame) => match side {
                    Side::Client => !self.session.on_client_packet(&frame),
                    Side::Server => !self.session.on_server_packet(&frame, ts_ns, out),
                },
                Step::NeedMore => break,
                Step::Desync => true,
            };
            if lost_sync {
                self.lose_sync(side, out);
            }
        }
    }

    fn on_gap(&mut self, side: Side, ts_ns: u64, len: usize, out: &mut ParseOutput) {
        if self.session.phase == Phase::Stopped {
            return;
        }
        let step = match side {
            Side::Client => self.client.gap(len, &self.session.client_format()),
            Side::Server => self.server.gap(len, &ServerFormat),
        };
        let lost_sync = match step {
            GapStep::Absorbed => false,
            GapStep::Truncated(frame) => match side {
                Side::Client => !self.session.on_client_packet(&frame),
                Side::Server => !self.session.on_server_packet(&frame, ts_ns, out),
            },
            GapStep::Desync => true,
        };
        if lost_sync {
            self.lose_sync(side, out);
        }
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        self.session.on_close(ts_ns, out);
    }
}

impl MysqlParser {
    fn lose_sync(&mut self, side: Side, out: &mut ParseOutput) {
        out.desyncs += 1;
        match side {
            Side::Client => {
                self.client.lose_sync();
                self.session.client_continuation = false;
            }
            Side::Server => {
                self.server.lose_sync();
                self.session.server_position_lost();
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing recognisable seen yet.
    Unknown,
    /// The server greeted; the client's handshake response comes next.
    Greeted,
    /// Authentication is going on until the server's OK or ERR.
    Authenticating,
    Commands,
    /// Encrypted, compressed or replication: nothing more to understand.
    Stopped,
}

/// What a command is, for pairing and for its exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Query,
    Prepare,
    Execute,
    /// Followed for pairing only.
    Silent,
}

#[derive(Debug)]
struct Command {
    kind: Kind,
    start_ns: u64,
    statement: Option<Arc<Statement>>,
    response: Response,
    /// Sequence id the next response packet should carry, when known: the
    /// ids continue from the command's own packets (and from LOCAL INFILE
    /// data the client sends in the middle of the response).
    next_seq: Option<u8>,
    /// False once response bytes were lost, making row counts lower bounds.
    rows_exact: bool,
}

struct Session {
    options: ParserOptions,
    phase: Phase,
    system: &'static str,
    /// `CLIENT_DEPRECATE_EOF`, as negotiated or as learnt from responses.
    deprecate_eof: Option<bool>,
    /// `CLIENT_QUERY_ATTRIBUTES`, when the handshake was seen.
    query_attributes: Option<bool>,
    compressed: bool,
    statements: BoundedMap<u32, Arc<Statement>>,
    pending: VecDeque<Command>,
    /// The previous client packet's payload was exactly the maximum.
    client_continuation: bool,
}

impl Session {
    fn new(options: ParserOptions) -> Self {
        Session {
            options,
            phase: Phase::Unknown,
            system: "mysql",
            deprecate_eof: None,
            query_attributes: None,
            compressed: false,
            statements: BoundedMap::new(MAX_PREPARED_STATEMENTS),
            pending: VecDeque::new(),
            client_continuation: false,
        }
    }

    fn client_format(&self) -> ClientFormat {
        let data_expected = self.client_continuation
            || self
                .pending
                .front()
                .is_some_and(|c| c.response.awaits_client_data());
        ClientFormat {
            expect_command: self.phase == Phase::Commands && !data_expected,
        }
    }

    /// Returns false if the packet shows the client stream is not where it
    /// was thought to be.
    fn on_client_packet(&mut self, frame: &Frame<'_>) -> bool {
        let Some((len, seq)) = header(frame.header) else {
            return false;
        };
        if std::mem::replace(&mut self.client_continuation, len == MAX_PACKET_PAYLOAD) {
            // More of a huge command: its response starts after it.
            if let Some(last) = self.pending.back_mut() {
                last.next_seq = Some(seq.wrapping_add(1));
            }
            return true;
        }
        match (self.phase, seq) {
            (Phase::Unknown | Phase::Greeted, 1) if valid_handshake_response(frame.body) => {
                self.on_handshake_response(frame.body);
                true
            }
            (Phase::Unknown | Phase::Commands, 0) => {
                let valid = if frame.complete {
                    valid_command(frame.body)
                } else {
                    valid_command_prefix(frame.body)
                };
                if !valid {
                    return self.phase == Phase::Unknown;
                }
                self.phase = Phase::Commands;
                self.on_command(frame);
                true
            }
            (Phase::Commands, _) => {
                // LOCAL INFILE data: the server's answer continues its ids.
                if let Some(front) = self.pending.front_mut() {
                    front.next_seq = Some(seq.wrapping_add(1));
                }
                true
            }
            // Authentication data, or packets before anything is known.
            _ => true,
        }
    }

    fn on_handshake_response(&mut self, payload: &[u8]) {
        let capabilities = client_capabilities(payload).unwrap_or_default();
        if capabilities & CLIENT_SSL != 0 {
            self.phase = Phase::Stopped;
            return;
        }
        self.deprecate_eof = Some(capabilities & CLIENT_DEPRECATE_EOF != 0);
        // MariaDB gives that capability bit another meaning.
        self.query_attributes =
            Some(capabilities & CLIENT_QUERY_ATTRIBUTES != 0 && self.system != "mariadb");
        self.compressed = capabilities & CLIENT_COMPRESS != 0;
        self.phase = Phase::Authenticating;
    }

    fn statement(&self, sql: &[u8]) -> Arc<Statement> {
        Arc::new(Statement::new(
            sql,
            Dialect::Mysql,
            self.options.raw_statements,
        ))
    }

    fn on_command(&mut self, frame: &Frame<'_>) {
        let Some((&command, args)) = frame.body.split_first() else {
            return;
        };
        let (kind, expect, statement) = match command {
            COM_QUERY => {
                let statement =
                    query_text(args, self.query_attributes).map(|sql| self.statement(sql));
                (Kind::Query, Expect::ResultSets, statement)
            }
            COM_STMT_PREPARE => (Kind::Prepare, Expect::Prepared, Some(self.statement(args))),
            COM_STMT_EXECUTE => {
                let statement = Reader::new(args)
                    .u32()
                    .and_then(|id| self.statements.get(&id).cloned());
                (Kind::Execute, Expect::ResultSets, statement)
            }
            COM_STMT_CLOSE => {
                if let Some(id) = Reader::new(args).u32() {
                    self.statements.remove(&id);
                }
                return;
            }
            COM_QUIT | COM_STMT_SEND_LONG_DATA => return,
            COM_CHANGE_USER => {
                self.statements.clear();
                self.phase = Phase::Authenticating;
                return;
            }
            COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID | COM_REGISTER_SLAVE => {
                self.phase = Phase::Stopped;
                return;
            }
            COM_RESET_CONNECTION => {
                self.statements.clear();
                (Kind::Silent, Expect::OnePacket, None)
            }
            COM_FIELD_LIST => (Kind::Silent, Expect::UntilEof, None),
            COM_STMT_FETCH => (Kind::Silent, Expect::Rows, None),
            COM_PROCESS_INFO => (Kind::Silent, Expect::ResultSets, None),
            _ => (Kind::Silent, Expect::OnePacket, None),
        };
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            return;
        }
        self.pending.push_back(Command {
            kind,
            start_ns: frame.start_ns,
            statement,
            response: Response::new(expect),
            next_seq: Some(1),
            rows_exact: true,
        });
    }

    /// Returns false if the packet shows the server stream is not where it
    /// was thought to be.
    fn on_server_packet(&mut self, frame: &Frame<'_>, ts_ns: u64, out: &mut ParseOutput) -> bool {
        let Some((len, seq)) = header(frame.header) else {
            return false;
        };
        match self.phase {
            Phase::Unknown if seq == 0 => {
                if valid_greeting(frame.body) {
                    if greeting_is_mariadb(frame.body) {
                        self.system = "mariadb";
                    }
                    self.phase = Phase::Greeted;
                } else if frame.body.first() == Some(&0xff) {
                    // Refused before the handshake (too many connections...).
                    self.phase = Phase::Stopped;
                }
                true
            }
            Phase::Authenticating => {
                match frame.body.first() {
                    Some(0x00) if self.compressed => self.phase = Phase::Stopped,
                    Some(0x00 | 0xff) => self.phase = Phase::Commands,
                    _ => {}
                }
                true
            }
            Phase::Commands => self.on_response_packet(frame, len, seq, ts_ns, out),
            _ => true,
        }
    }

    fn on_response_packet(
        &mut self,
        frame: &Frame<'_>,
        len: usize,
        seq: u8,
        ts_ns: u64,
        out: &mut ParseOutput,
    ) -> bool {
        // A packet may end one response and, seen again, belong to the next.
        loop {
            let Some(command) = self.pending.front_mut() else {
                return true;
            };
            // A response that started before the command it would answer
            // belongs to one that was never seen.
            if command.start_ns > frame.start_ns {
                return true;
            }
            if command.next_seq.is_some_and(|expected| expected != seq) {
                // Only the start of the next response may break the
                // sequence, and only where this one may have ended.
                match command.response.ended_at_close() {
                    Some(end_ns) if seq == 1 => {
                        self.finish_front(end_ns, None, out);
                        continue;
                    }
                    _ => return false,
                }
            }
            command.next_seq = Some(seq.wrapping_add(1));
            let progress =
                command
                    .response
                    .on_packet(frame.body, len, seq, ts_ns, &mut self.deprecate_eof);
            if let (Some(prepared), Some(statement)) =
                (command.response.prepared.take(), &command.statement)
            {
                // Remembered at once: an execution may be sent before the
                // end of the preparation's answer is recognised.
                self.statements
                    .insert(prepared.statement_id, Arc::clone(statement));
            }
            match progress {
                Progress::Continues => return true,
                Progress::Done { end_ns, error } => {
                    self.finish_front(end_ns, error, out);
                    return true;
                }
                Progress::EndedBefore { end_ns } => self.finish_front(end_ns, None, out),
            }
        }
    }

    fn finish_front(&mut self, end_ns: u64, error: Option<u16>, out: &mut ParseOutput) {
        if let Some(command) = self.pending.pop_front() {
            self.emit(command, end_ns, error, false, out);
        }
    }

    fn emit(
        &self,
        command: Command,
        end_ns: u64,
        error: Option<u16>,
        incomplete: bool,
        out: &mut ParseOutput,
    ) {
        let rows_known = command.rows_exact && error.is_none() && !incomplete;
        let (statement, rows) = match command.kind {
            Kind::Silent => return,
            Kind::Query | Kind::Execute => (
                command.statement,
                rows_known.then_some(command.response.rows),
            ),
            Kind::Prepare => {
                let text = command
                    .statement
                    .map(|s| s.text.clone())
                    .unwrap_or_default();
                let prepare = Statement {
                    operation: Some("PREPARE".to_owned()),
                    text,
                };
                (Some(Arc::new(prepare)), None)
            }
        };
        let outcome = Outcome {
            end_ns,
            incomplete,
            rows,
            error_code: error.map(|code| code.to_string()),
            failed: false,
        };
        out.exchanges.push(exchange(
            Protocol::Mysql,
            self.system,
            statement.as_deref(),
            command.start_ns,
            outcome,
            &mut out.spare,
        ));
    }

    /// Response bytes were lost: counts become lower bounds and the
    /// sequence ids are no longer known.
    fn server_position_lost(&mut self) {
        for command in &mut self.pending {
            command.rows_exact = false;
        }
        if let Some(front) = self.pending.front_mut() {
            front.response.lost_position();
            front.next_seq = None;
        }
    }

    fn on_close(&mut self, ts_ns: u64, out: &mut ParseOutput) {
        if let Some(end_ns) = self
            .pending
            .front()
            .and_then(|c| c.response.ended_at_close())
        {
            self.finish_front(end_ns, None, out);
        }
        while let Some(command) = self.pending.pop_front() {
            self.emit(command, ts_ns, None, true, out);
        }
    }
}
