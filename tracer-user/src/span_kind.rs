//! Which end of a request the traced process is: known to a connection
//! before any span exists, so below both [`connections`](crate::connections)
//! and [`spans`](crate::spans), which re-exports it.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanKind {
    /// The traced process answered the request.
    Server,
    /// The traced process sent the request.
    Client,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
        }
    }
}
