//! Following one command's response, packet by packet.
//!
//! A response is OK, ERR, or one or more result sets (column count, column
//! definitions, [EOF], rows, EOF-or-OK); a statement preparation answers
//! with its own OK followed by parameter and column definitions. Classic
//! servers end each definition block with an EOF packet; with
//! `CLIENT_DEPRECATE_EOF` those are left out and the final EOF becomes an
//! OK with a 0xFE header. When the handshake was not seen the choice is
//! learnt from the packets themselves (an EOF is exactly 5 bytes, the OK
//! that replaces it at least 7).

use super::packets::{
    err_code, is_eof, is_short_fe, ok_status, terminator_status, MAX_PACKET_PAYLOAD,
    PROGRESS_REPORT, SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_CURSOR_EXISTS,
};

/// What kind of answer a command gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// OK, ERR, LOCAL INFILE request or result sets (`COM_QUERY`,
    /// `COM_STMT_EXECUTE`, `COM_PROCESS_INFO`).
    ResultSets,
    /// `COM_STMT_PREPARE`'s OK and definitions, or ERR.
    Prepared,
    /// One packet of any kind (`COM_PING`, `COM_INIT_DB`, `COM_STATISTICS`, ...).
    OnePacket,
    /// Packets up to an EOF or ERR (`COM_FIELD_LIST`).
    UntilEof,
    /// Rows up to a terminator or ERR (`COM_STMT_FETCH`).
    Rows,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The first packet of the response, or of its next result set.
    Start,
    Columns {
        left: u64,
    },
    /// Column definitions are done: an EOF (classic), a row or a
    /// terminator may come.
    AfterColumns,
    Rows,
    /// Waiting for the OK or ERR that follows the client's LOCAL INFILE data.
    LocalInfile,
    /// Parameter or column definitions of a prepared statement; `then` is
    /// the number of column definitions after the parameters.
    Definitions {
        left: u64,
        then: u64,
    },
    /// A definition block ended; an EOF may follow, unless the block was
    /// the last and EOFs are deprecated. `end_ns` is when the last
    /// definition arrived, for when it turns out to have been the end.
    AfterDefinitions {
        then: u64,
        end_ns: u64,
    },
    UntilEof,
}

/// What a response packet did to the command it answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More of the response is to come.
    Continues,
    /// The response is complete.
    Done { end_ns: u64, error: Option<u16> },
    /// The response had already ended (at `end_ns`) and this packet starts
    /// the next one: handle it again for the next command.
    EndedBefore { end_ns: u64 },
}

/// A statement preparation's answer: the id to remember the text under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub statement_id: u32,
}

#[derive(Debug)]
pub struct Response {
    expect: Expect,
    stage: Stage,
    pub rows: u64,
    pub prepared: Option<Prepared>,
    /// Payload of the previous packet was exactly `MAX_PACKET_PAYLOAD`:
    /// this one continues it and means nothing by itself.
    continuation: bool,
}

impl Response {
    pub fn new(expect: Expect) -> Self {
        let stage = match expect {
            Expect::UntilEof => Stage::UntilEof,
            Expect::Rows => Stage::Rows,
            _ => Stage::Start,
        };
        Response {
            expect,
            stage,
            rows: 0,
            prepared: None,
            continuation: false,
        }
    }

    /// Handles one packet's payload (or its prefix, if `whole_len` is
    /// larger) with sequence id `seq`, that arrived at `ts_ns`. `deprecate_eof` is what the
    /// handshake said, or what was learnt, if anything.
    pub fn on_packet(
        &mut self,
        payload: &[u8],
        whole_len: usize,
        seq: u8,
        ts_ns: u64,
        deprecate_eof: &mut Option<bool>,
    ) -> Progress {
        if std::mem::replace(&mut self.continuation, whole_len == MAX_PACKET_PAYLOAD) {
            return Progress::Continues;
        }
        let Some(&first) = payload.first() else {
            return Progress::Continues;
        };
        if first == 0xff {
            let code = err_code(payload);
            if code == Some(PROGRESS_REPORT) {
                return Progress::Continues;
            }
            if let Stage::AfterDefinitions { then: 0, end_ns } = self.stage {
                return Progress::EndedBefore { end_ns };
            }
            return Progress::Done {
                end_ns: ts_ns,
                error: Some(code.unwrap_or(0)),
            };
        }
        match self.stage {
            Stage::Start => self.on_start(payload, whole_len, ts_ns),
            Stage::Columns { left } => {
                self.stage = if left > 1 {
                    Stage::Columns { left: left - 1 }
                } else if *deprecate_eof == Some(true) {
                    Stage::Rows
                } else {
                    Stage::AfterColumns
                };
                Progress::Continues
            }
            Stage::AfterColumns => self.after_columns(payload, ts_ns, deprecate_eof),
            Stage::Rows => {
                let terminator = is_short_fe(payload)
                    || (first == 0xfe
                        && *deprecate_eof == Some(true)
                        && whole_len < MAX_PACKET_PAYLOAD);
                if terminator {
                    return self.end_of_result_set(payload, ts_ns);
                }
                self.rows += 1;
                Progress::Continues
            }
            Stage::LocalInfile => self.end_of_result_set(payload, ts_ns),
            Stage::Definitions { left, then } => {
                if left > 1 {
                    self.stage = Stage::Definitions {
                        left: left - 1,
                        then,
                    };
                    return Progress::Continues;
                }
                if *deprecate_eof == Some(true) {
                    return self.next_definition_block(then, ts_ns);
                }
                self.stage = Stage::AfterDefinitions {
                    then,
                    end_ns: ts_ns,
                };
                Progress::Continues
            }
            Stage::AfterDefinitions { then, end_ns } => {
                // A new response starts at sequence id 1; the EOF that
                // would end this block continues this response's ids.
                if seq != 1 && is_eof(payload) && *deprecate_eof != Some(true) {
                    deprecate_eof.get_or_insert(false);
                    return self.next_definition_block(then, ts_ns);
                }
                if then == 0 || seq == 1 {
                    return Progress::EndedBefore { end_ns };
                }
                // Column definitions straight after parameter ones: no EOFs.
                deprecate_eof.get_or_insert(true);
                self.stage = Stage::Definitions {
                    left: then,
                    then: 0,
                };
                self.on_packet(payload, whole_len, seq, ts_ns, deprecate_eof)
            }
            Stage::UntilEof => {
                if is_short_fe(payload) {
                    Progress::Done {
                        end_ns: ts_ns,
                        error: None,
                    }
                } else {
                    Progress::Continues
                }
            }
        }
    }

    fn on_start(&mut self, payload: &[u8], whole_len: usize, ts_ns: u64) -> Progress {
        match (self.expect, payload.first()) {
            (Expect::OnePacket, _) => Progress::Done {
                end_ns: ts_ns,
                error: None,
            },
            (Expect::Prepared, Some(0x00)) => self.on_prepare_ok(payload, ts_ns),
            (_, Some(0x00 | 0xfe)) => self.end_of_result_set(payload, ts_ns),
            (_, Some(0xfb)) if whole_len > 1 => {
                self.stage = Stage::LocalInfile;
                Progress::Continues
            }
            _ => {
                let mut reader = super::packets::Reader::new(payload);
                match reader.lenenc() {
                    // MariaDB's metadata cache: a 0 after the count means
                    // the column definitions are left out.
                    Some(1..) if reader.rest() == [0] => {
                        self.stage = Stage::AfterColumns;
                        Progress::Continues
                    }
                    Some(count @ 1..) => {
                        self.stage = Stage::Columns { left: count };
                        Progress::Continues
                    }
                    _ => Progress::Done {
                        end_ns: ts_ns,
                        error: None,
                    },
                }
            }
        }
    }

    /// The packet after the column definitions: their EOF (classic
    /// protocol; rows follow unless it opened a cursor), or already the
    /// first row or the result set's terminator (`CLIENT_DEPRECATE_EOF`).
    /// Which one it is tells the protocol, if not known yet.
    fn after_columns(
        &mut self,
        payload: &[u8],
        ts_ns: u64,
        deprecate_eof: &mut Option<bool>,
    ) -> Progress {
        if is_short_fe(payload) {
            let classic_eof = match *deprecate_eof {
                Some(deprecated) => !deprecated,
                None => is_eof(payload),
            };
            deprecate_eof.get_or_insert(!classic_eof);
            let cursor_opened = terminator_status(payload)
                .is_some_and(|status| status & SERVER_STATUS_CURSOR_EXISTS != 0);
            if classic_eof && !cursor_opened {
                self.stage = Stage::Rows;
                return Progress::Continues;
            }
            return self.end_of_result_set(payload, ts_ns);
        }
        deprecate_eof.get_or_insert(true);
        self.rows += 1;
        self.stage = Stage::Rows;
        Progress::Continues
    }

    fn on_prepare_ok(&mut self, payload: &[u8], ts_ns: u64) -> Progress {
        let mut reader = super::packets::Reader::new(payload);
        reader.u8();
        let (Some(statement_id), Some(columns), Some(params)) =
            (reader.u32(), reader.u16(), reader.u16())
        else {
            return Progress::Done {
                end_ns: ts_ns,
                error: None,
            };
        };
        self.prepared = Some(Prepared { statement_id });
        if params > 0 {
            self.stage = Stage::Definitions {
                left: u64::from(params),
                then: u64::from(columns),
            };
            return Progress::Continues;
        }
        self.next_definition_block(u64::from(columns), ts_ns)
    }

    /// Moves on to a block of `count` definitions; none means the
    /// preparation's answer is complete.
    fn next_definition_block(&mut self, count: u64, ts_ns: u64) -> Progress {
        if count == 0 {
            return Progress::Done {
                end_ns: ts_ns,
                error: None,
            };
        }
        self.stage = Stage::Definitions {
            left: count,
            then: 0,
        };
        Progress::Continues
    }

    fn end_of_result_set(&mut self, payload: &[u8], ts_ns: u64) -> Progress {
        let status = terminator_status(payload).or_else(|| ok_status(payload));
        if status.is_some_and(|s| s & SERVER_MORE_RESULTS_EXISTS != 0) {
            self.stage = Stage::Start;
            return Progress::Continues;
        }
        Progress::Done {
            end_ns: ts_ns,
            error: None,
        }
    }

    /// The server asked for a LOCAL INFILE's contents.
    pub fn awaits_client_data(&self) -> bool {
        self.stage == Stage::LocalInfile
    }

    /// The connection closed: a preparation whose last definition arrived
    /// had its answer complete.
    pub fn ended_at_close(&self) -> Option<u64> {
        match self.stage {
            Stage::AfterDefinitions { then: 0, end_ns } => Some(end_ns),
            _ => None,
        }
    }

    /// The position in the response is unknown (bytes were lost): where
    /// the stream resumes, rows are the most likely thing to be in.
    pub fn lost_position(&mut self) {
        self.continuation = false;
        if matches!(self.stage, Stage::Columns { .. } | Stage::AfterColumns) {
            self.stage = Stage::Rows;
        }
    }
}
