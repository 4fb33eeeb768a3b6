//! The span model every report output is built from: what one stored
//! OTLP span says, with the few attributes the reports use.

/// A span's kind, as OTLP numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    pub fn from_otlp(number: u64) -> Kind {
        match number {
            1 => Kind::Internal,
            2 => Kind::Server,
            3 => Kind::Client,
            4 => Kind::Producer,
            5 => Kind::Consumer,
            _ => Kind::Unspecified,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Unspecified => "unspecified",
            Kind::Internal => "internal",
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Producer => "producer",
            Kind::Consumer => "consumer",
        }
    }
}

/// One stored span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanRecord {
    /// Lower-case hex, as OTLP/JSON writes ids.
    pub trace_id: String,
    pub span_id: String,
    /// `None` for a span that started its trace.
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: Kind,
    pub error: bool,
    pub start_ns: u64,
    pub end_ns: u64,
    /// The resource's `service.name` (`unknown_service` when absent, as the
    /// OpenTelemetry SDKs name it).
    pub service: String,
    /// The resource's `process.pid`: which process of the service.
    pub pid: Option<i64>,
    /// The application protocol, from the semantic-convention attributes
    /// (`db.system.name`, `rpc.system`, `network.protocol.*`, `dns.*`);
    /// `None` when they do not say.
    pub protocol: Option<String>,
    /// `server.address[:server.port]` (else `network.peer.*` on a client).
    pub server_endpoint: Option<String>,
    /// `client.address` (else `network.peer.address` on a server); the
    /// port of a client is ephemeral and left out.
    pub client_address: Option<String>,
    /// `http.response.status_code`, `rpc.grpc.status_code`,
    /// `db.response.status_code` or `error.type`, whichever is present.
    pub status_detail: Option<String>,
}

impl SpanRecord {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// The process that wrote the span: its service and pid.
    pub fn process(&self) -> (&str, Option<i64>) {
        (&self.service, self.pid)
    }
}
