//! What the SQL protocol parsers share: statement sanitising and naming,
//! length-delimited framing with gap recovery, and exchange building.

mod bounded_map;
pub(crate) mod framing;
mod sanitize;
#[cfg(test)]
mod tests;

pub(crate) use bounded_map::BoundedMap;
pub use sanitize::{operation_name, sanitize, Dialect};

use super::{AttrValue, Exchange, Fault, Protocol, SharedStr, SpareAttributes};

/// Longest `db.query.text` emitted, in bytes; longer statements are cut at a
/// character boundary (after sanitising, so no literal is ever cut in half).
pub const MAX_QUERY_TEXT_BYTES: usize = 4 * 1024;

/// Most requests a connection may have waiting for their responses; past
/// that the parser forgets the oldest (a pipelining client of that depth is
/// not something to trace request by request).
pub const MAX_PENDING_REQUESTS: usize = 256;

/// Most prepared statements remembered per connection.
pub const MAX_PREPARED_STATEMENTS: usize = 256;

/// What a statement is, computed once when it is first seen (a prepared
/// statement may be executed millions of times).
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    /// `db.operation.name`, e.g. `SELECT`.
    pub operation: Option<String>,
    /// `db.query.text`: sanitised unless raw statements were asked for.
    pub text: String,
}

impl Statement {
    /// Describes the statement text `sql` (possibly a truncated prefix).
    pub fn new(sql: &[u8], dialect: Dialect, raw: bool) -> Statement {
        let sql = String::from_utf8_lossy(sql);
        let mut text = if raw {
            sql.clone().into_owned()
        } else {
            sanitize(&sql, dialect)
        };
        truncate_at_char_boundary(&mut text, MAX_QUERY_TEXT_BYTES);
        // Prepared statements are kept for the life of the connection.
        text.shrink_to_fit();
        Statement {
            operation: operation_name(&sql),
            text,
        }
    }
}

fn truncate_at_char_boundary(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
}

/// How an exchange ended.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub end_ns: u64,
    pub incomplete: bool,
    /// Rows returned, when every one of them was seen.
    pub rows: Option<u64>,
    /// The server's error code (SQLSTATE for PostgreSQL, the numeric error
    /// for MySQL), if it failed.
    pub error_code: Option<String>,
    /// The server reported an error without a usable code.
    pub failed: bool,
}

/// The span-contract exchange for one statement.
pub(crate) fn exchange(
    protocol: Protocol,
    system: &'static str,
    statement: Option<&Statement>,
    start_ns: u64,
    outcome: Outcome,
    spare: &mut SpareAttributes,
) -> Exchange {
    let mut attributes = spare.take(5);
    attributes.push(("db.system.name", AttrValue::fixed(system)));
    let operation = statement.and_then(|s| s.operation.as_deref());
    if let Some(operation) = operation {
        attributes.push(("db.operation.name", operation.into()));
    }
    if let Some(statement) = statement.filter(|s| !s.text.is_empty()) {
        attributes.push(("db.query.text", statement.text.as_str().into()));
    }
    if let Some(rows) = outcome.rows {
        attributes.push(("db.response.returned_rows", rows.into()));
    }
    let failed = outcome.failed || outcome.error_code.is_some();
    if let Some(code) = outcome.error_code {
        attributes.push(("db.response.status_code", code.into()));
    }
    Exchange {
        protocol,
        // Semantic conventions: the operation, else the system name.
        name: SharedStr::copied(operation.unwrap_or(system)),
        start_ns,
        end_ns: outcome.end_ns.max(start_ns),
        fault: if failed { Fault::Server } else { Fault::None },
        incomplete: outcome.incomplete,
        attributes,
        trace_context: None,
    }
}
