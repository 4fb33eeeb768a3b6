//! The connection table: per-connection state between the raw events and
//! the protocol parsers.
//!
//! A connection is `(pid, fd)` plus the kernel `struct sock` behind it, so
//! a reused fd starts a new connection. Each connection turns the traced
//! process's egress/ingress bytes into the client/server streams its
//! protocol parser expects, once the first bytes have told which protocol
//! it speaks and which end the traced process is.

mod activity;
mod addr;
mod addr_pair;
mod executors;
mod handoffs;
mod peers;
mod requests;
#[cfg(test)]
mod tests;
mod tls_binding;

use std::net::SocketAddr;

// Looked up on every record: seeded foldhash, much cheaper than SipHash.
use foldhash::{HashMap, HashSet};

use tracer_common::{
    ConnEvent, DataEvent, Direction, GoCall, GoCallEvent, Role, Syscall, DATA_FLAG_TLS,
    DATA_FLAG_TRUNCATED, IPPROTO_UDP,
};

use crate::{
    protocols::{self, ParseOutput, Parser, ParserOptions, Protocol, Side, Transport},
    span_kind::SpanKind,
};

pub use addr::socket_addrs;
pub use addr_pair::AddrPair;
pub use requests::{Cause, RequestLog, Sender};
pub use tls_binding::{Binding, Routed, TlsBinder, TlsBindingStats};

use activity::{Activity, Executor};
use executors::Executors;
use peers::PeerIndex;

/// Data events with payload a connection may show before it is given up
/// as speaking no known protocol.
const DETECTION_ATTEMPTS: u8 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub pid: u32,
    pub fd: u32,
}

/// One connection over its whole life: a reused fd comes with another sock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub pid: u32,
    pub fd: u32,
    pub sock: u64,
}

enum ProtocolState {
    Detecting {
        attempts: u8,
    },
    Active {
        protocol: Protocol,
        /// What the traced process is on this connection.
        we_are: SpanKind,
        parser: Box<dyn Parser>,
    },
    /// No known protocol: bytes are dropped at once.
    Ignored,
}

struct Connection {
    sock: u64,
    transport: Transport,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    role: Role,
    state: ProtocolState,
    last_seen_ns: u64,
    /// Plaintext comes from a TLS library hook; socket bytes are ciphertext.
    tls: bool,
    /// Which library, once `tls`.
    tls_library: &'static str,
    /// Bytes that looked like a TLS record arrived on the socket itself.
    saw_ciphertext: bool,
    /// Exchanges completed so far: both ends of a connection count the
    /// same, which lets the linking stage pair their spans.
    exchanges: u64,
    /// Who sent the requests.
    requests: RequestLog,
    /// The unanswered request: when its first byte moved.
    open_since: Option<u64>,
    /// Which side sent the last bytes: request bytes after response bytes
    /// start a new request even if the parser never paired the last one.
    last_side: Option<Side>,
    /// The thread (goroutine) that last read a request here (server
    /// connections).
    reader: Option<Executor>,
}

impl Connection {
    fn new(
        sock: u64,
        transport: Transport,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        role: Role,
        ts_ns: u64,
    ) -> Self {
        Connection {
            sock,
            transport,
            local,
            remote,
            role,
            state: ProtocolState::Detecting { attempts: 0 },
            last_seen_ns: ts_ns,
            tls: false,
            tls_library: "",
            saw_ciphertext: false,
            exchanges: 0,
            requests: RequestLog::default(),
            open_since: None,
            last_side: None,
            reader: None,
        }
    }
}

/// Request bytes moved on a connection.
#[derive(Clone, Copy)]
struct RequestBytes {
    conn: ConnRef,
    we_are: SpanKind,
    executor: Option<Executor>,
    tid: u32,
    ts_ns: u64,
}

/// Who sent a request: on a server connection, that its reader serves it;
/// on a client one, what it is for.
fn note_request_bytes(
    activity: &mut Activity,
    executors: &Executors,
    conn: &mut Connection,
    bytes: RequestBytes,
) {
    let RequestBytes {
        conn: conn_ref,
        we_are,
        executor,
        tid,
        ts_ns,
    } = bytes;
    if we_are == SpanKind::Server {
        if let Some(reader) = executor {
            activity.read_request(reader, conn_ref, ts_ns);
        }
        conn.reader = executor;
    }
    let new_request = conn.open_since.is_none() || conn.last_side == Some(Side::Server);
    if !new_request {
        return;
    }
    let cause = match we_are {
        SpanKind::Server => {
            activity.request_opened(executor, conn_ref, ts_ns, conn.open_since.is_none());
            None
        }
        SpanKind::Client => executor
            .and_then(|sender| executors.caller(sender))
            .and_then(|caller| activity.claim(caller)),
    };
    conn.open_since.get_or_insert(ts_ns);
    conn.requests.record(ts_ns, Sender { tid, cause });
}

/// Where the exchanges appended by a call happened.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    pub kind: SpanKind,
    pub protocol: Protocol,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// What the kernel saw: connect (client) or accept (server), if either.
    pub role: Role,
    /// Decrypted at this TLS library.
    pub tls: Option<&'static str>,
    pub conn: ConnRef,
    /// Exchanges the connection completed before the first one of this call.
    pub seq: u64,
    /// Who sent the requests; look an exchange's up by its `start_ns`.
    pub requests: RequestLog,
}

/// Counts the table keeps, for the run summary and metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionStats {
    pub opened: u64,
    pub closed: u64,
    /// Dropped for being idle past the timeout or for lack of room.
    pub evicted: u64,
    /// Connections given up as speaking no known protocol.
    pub unrecognised: u64,
    /// Connections refused because the table was full.
    pub table_full: u64,
    pub desyncs: u64,
    /// TLS connections whose library was not hooked: seen, not decrypted.
    pub tls_undecrypted: u64,
}

pub struct ConnectionTable {
    conns: HashMap<ConnKey, Connection>,
    enabled: Vec<Protocol>,
    options: ParserOptions,
    max_connections: usize,
    stats: ConnectionStats,
    activity: Activity,
    peers: PeerIndex,
    /// Threads or goroutines, by process.
    executors: Executors,
    /// Processes that opened or sent requests on a client connection since
    /// they were first seen: the only ones whose server spans can have
    /// children.
    callers: HashSet<u32>,
}

impl ConnectionTable {
    pub fn new(enabled: Vec<Protocol>, options: ParserOptions, max_connections: usize) -> Self {
        ConnectionTable {
            conns: HashMap::default(),
            enabled,
            options,
            max_connections,
            stats: ConnectionStats::default(),
            activity: Activity::default(),
            peers: PeerIndex::default(),
            executors: Executors::default(),
            callers: HashSet::default(),
        }
    }

    /// Whether `pid` was seen making calls: opening a client connection or
    /// sending a request on one.
    pub fn makes_calls(&self, pid: u32) -> bool {
        self.callers.contains(&pid)
    }

    /// `pid` exited and the spans its connections left were linked: its
    /// number may come back as another process.
    pub fn forget_calls(&mut self, pid: u32) {
        self.callers.remove(&pid);
    }

    /// `pid` runs Go code: its threads tell nothing of which request a
    /// call is for (until it exits); its goroutines do.
    pub fn schedules_goroutines(&mut self, pid: u32) {
        self.executors.schedules_goroutines(pid);
    }

    /// `pid` started running an executable not looked at yet.
    pub fn executors_unknown(&mut self, pid: u32) {
        self.executors.unknown(pid);
    }

    /// `pid`'s executable was looked at: Go (`goroutines`) or not.
    pub fn settle_executors(&mut self, pid: u32, goroutines: bool) {
        self.executors.settle(pid, goroutines);
    }

    /// A goroutine of a Go process entered a function followed for
    /// linking, or made a goroutine (which inherits what it served).
    pub fn on_go_call(&mut self, event: &GoCallEvent) {
        if GoCall::from_u8(event.call) == Some(GoCall::Spawn) {
            self.activity.spawned(
                Executor::goroutine(event.pid, event.goroutine),
                Executor::goroutine(event.pid, event.object),
            );
        } else {
            self.executors.on_go_call(event);
        }
    }

    /// Whether `pid`'s threads may say nothing of its requests: it runs Go
    /// code, or its executable was not looked at yet.
    pub fn runs_goroutines(&self, pid: u32) -> bool {
        self.executors.threads_say_nothing(pid)
    }

    /// When the oldest request `pid` is serving now started, if any.
    pub fn serving_since(&self, pid: u32) -> Option<u64> {
        self.activity.serving_since(pid)
    }

    /// When the unanswered request on server connection `conn` started.
    pub fn open_request_since(&self, conn: ConnRef) -> Option<u64> {
        self.conns
            .get(&ConnKey {
                pid: conn.pid,
                fd: conn.fd,
            })
            .filter(|c| c.sock == conn.sock)
            .and_then(|c| c.open_since)
    }

    /// Whether the other end of a connection from `local` to `remote` is a
    /// traced socket whose protocol is being parsed (so spans may come from
    /// it), or was until it closed lately.
    pub fn peer_is_traced(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        match self.peers.get(remote, local) {
            Some(key) => self
                .conns
                .get(&key)
                .is_some_and(|conn| matches!(conn.state, ProtocolState::Active { .. })),
            None => self.peers.closed_lately(remote, local),
        }
    }

    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// A socket seen for the first time: start a connection (ending the
    /// previous one on that fd, whose close may not have been seen).
    pub fn on_open(&mut self, event: &ConnEvent, out: &mut ParseOutput) -> Option<Origin> {
        let key = ConnKey {
            pid: event.pid,
            fd: event.fd,
        };
        let origin = self.close(key, event.timestamp_ns, out);
        if self.conns.len() >= self.max_connections {
            self.stats.table_full += 1;
            return origin;
        }
        let (local, remote) = socket_addrs(event);
        if Role::from_u8(event.role) == Role::Client {
            self.callers.insert(event.pid);
        }
        let transport = if event.protocol == IPPROTO_UDP {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        self.conns.insert(
            key,
            Connection::new(
                event.sock,
                transport,
                local,
                remote,
                Role::from_u8(event.role),
                event.timestamp_ns,
            ),
        );
        self.peers.insert(local, remote, key);
        self.stats.opened += 1;
        origin
    }

    /// The traced process closed the socket.
    pub fn on_close(&mut self, event: &ConnEvent, out: &mut ParseOutput) -> Option<Origin> {
        let key = ConnKey {
            pid: event.pid,
            fd: event.fd,
        };
        match self.conns.get(&key) {
            Some(conn) if conn.sock == event.sock => self.close(key, event.timestamp_ns, out),
            _ => None,
        }
    }

    fn close(&mut self, key: ConnKey, ts_ns: u64, out: &mut ParseOutput) -> Option<Origin> {
        let mut conn = self.conns.remove(&key)?;
        self.stats.closed += 1;
        let spoke = matches!(conn.state, ProtocolState::Active { .. });
        self.forget(key, &conn, spoke.then_some(ts_ns));
        if conn.saw_ciphertext && !conn.tls {
            self.stats.tls_undecrypted += 1;
        }
        let origin = conn.origin(key);
        if let ProtocolState::Active { parser, .. } = &mut conn.state {
            let before = out.desyncs;
            parser.on_close(ts_ns, out);
            self.stats.desyncs += out.desyncs - before;
        }
        origin
    }

    /// Drops what the side indexes know of a connection that ended (and,
    /// if it spoke a known protocol, `closed` at a time).
    fn forget(&mut self, key: ConnKey, conn: &Connection, closed: Option<u64>) {
        self.peers.remove(conn.local, conn.remote, key, closed);
        let conn_ref = ConnRef {
            pid: key.pid,
            fd: key.fd,
            sock: conn.sock,
        };
        self.activity.connection_closed(conn_ref, conn.reader);
    }

    /// All connections of an exited process end.
    pub fn on_process_exit(&mut self, pid: u32, ts_ns: u64, out: &mut ParseOutput) -> Vec<Origin> {
        let keys: Vec<ConnKey> = self
            .conns
            .keys()
            .filter(|k| k.pid == pid)
            .copied()
            .collect();
        let mut origins = Vec::new();
        for key in keys {
            let before = out.exchanges.len();
            if let Some(origin) = self.close(key, ts_ns, out) {
                // One origin per exchange so the caller can pair them.
                let added = (out.exchanges.len() - before) as u64;
                origins.extend((0..added).map(|i| Origin {
                    seq: origin.seq + i,
                    ..origin
                }));
            }
        }
        self.activity.process_exited(pid);
        self.executors.process_exited(pid);
        origins
    }

    /// A data record on `(pid, fd)` with another sock than the connection
    /// known there: the old socket was closed unseen. Ends its connection
    /// first, so that the exchanges it still held (unanswered requests) come
    /// out with their own origin, not with the next connection's. Call it
    /// before [`Self::on_data`] and hand on what it appended to `out`.
    pub fn close_replaced(&mut self, event: &DataEvent, out: &mut ParseOutput) -> Option<Origin> {
        let key = ConnKey {
            pid: event.pid,
            fd: event.fd,
        };
        match self.conns.get(&key) {
            Some(conn) if conn.sock != event.sock => self.close(key, event.timestamp_ns, out),
            _ => None,
        }
    }

    /// Payload moved by the traced process; exchanges it completes are
    /// appended to `out` and all come from the returned origin. A previous
    /// connection on the fd is ended here too if [`Self::close_replaced`]
    /// was not called: then what it still held is appended with the rest.
    pub fn on_data(
        &mut self,
        event: &DataEvent,
        payload: &[u8],
        out: &mut ParseOutput,
    ) -> Option<Origin> {
        let key = ConnKey {
            pid: event.pid,
            fd: event.fd,
        };
        let known = self.conns.get(&key).is_some_and(|c| c.sock == event.sock);
        if !known {
            // The open record was lost or the socket predates its kernel
            // state: trace it without addresses rather than not at all.
            let _ = self.close(key, event.timestamp_ns, out);
            if self.conns.len() >= self.max_connections {
                self.stats.table_full += 1;
                return None;
            }
            self.conns.insert(
                key,
                Connection::new(
                    event.sock,
                    Transport::Tcp,
                    None,
                    None,
                    Role::Unknown,
                    event.timestamp_ns,
                ),
            );
            self.stats.opened += 1;
        }
        let conn = self.conns.get_mut(&key)?;
        conn.last_seen_ns = event.timestamp_ns;
        if !conn.follow_tls(event) {
            return None; // ciphertext emitted before the kernel knew
        }
        let direction = if event.direction == Direction::Ingress as u8 {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        conn.detect(
            &self.enabled,
            self.options,
            &mut self.stats,
            direction,
            payload,
        );
        let ProtocolState::Active { we_are, parser, .. } = &mut conn.state else {
            return None;
        };
        let side = match (*we_are, direction) {
            (SpanKind::Server, Direction::Ingress) | (SpanKind::Client, Direction::Egress) => {
                Side::Client
            }
            _ => Side::Server,
        };
        let we_are = *we_are;
        let before = out.desyncs;
        let exchanges_before = out.exchanges.len();
        if !payload.is_empty() {
            parser.on_data(side, event.timestamp_ns, payload, out);
        }
        let missing = (event.total_len as usize).saturating_sub(payload.len());
        if missing > 0 || event.flags & DATA_FLAG_TRUNCATED != 0 {
            parser.on_gap(side, event.timestamp_ns, missing, out);
        }
        self.stats.desyncs += out.desyncs - before;
        let completed = (out.exchanges.len() - exchanges_before) as u64;
        let conn_ref = ConnRef {
            pid: key.pid,
            fd: key.fd,
            sock: conn.sock,
        };
        let (tid, ts) = (event.tid, event.timestamp_ns);
        if completed > 0 && conn.open_since.take().is_some() && we_are == SpanKind::Server {
            self.activity.request_closed(conn_ref, conn.reader);
        }
        if side == Side::Client && !payload.is_empty() {
            if we_are == SpanKind::Client {
                // Before its exchange (and the server span containing it)
                // completes: the linker keeps that server span's facts.
                self.callers.insert(key.pid);
            }
            let executor = self.executors.of(event);
            note_request_bytes(
                &mut self.activity,
                &self.executors,
                conn,
                RequestBytes {
                    conn: conn_ref,
                    we_are,
                    executor,
                    tid,
                    ts_ns: ts,
                },
            );
        }
        if !payload.is_empty() {
            conn.last_side = Some(side);
        }
        let origin = conn.origin(key);
        conn.exchanges += completed;
        origin
    }

    /// Drops connections idle since before `cutoff_ns` (their pending
    /// requests are lost and counted as evictions).
    pub fn evict_idle(&mut self, cutoff_ns: u64) {
        let idle: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.last_seen_ns < cutoff_ns)
            .map(|(key, _)| *key)
            .collect();
        for key in idle {
            if let Some(conn) = self.conns.remove(&key) {
                self.forget(key, &conn, None);
                self.stats.evicted += 1;
            }
        }
        self.executors.prune(crate::clock::monotonic_ns());
        self.activity.prune();
    }
}

impl Connection {
    /// Whether `event`'s bytes are for the parser: once TLS plaintext came,
    /// the socket's own bytes (ciphertext) are not.
    fn follow_tls(&mut self, event: &DataEvent) -> bool {
        let plaintext_from_tls = event.flags & DATA_FLAG_TLS != 0;
        if plaintext_from_tls && !self.tls {
            // The TLS hooks took over: what the socket carried so far was
            // handshake ciphertext; start over on the plaintext.
            self.tls = true;
            self.tls_library = Syscall::from_u8(event.syscall).map_or("", Syscall::tls_library);
            self.state = ProtocolState::Detecting { attempts: 0 };
        }
        plaintext_from_tls || !self.tls
    }

    /// While `Detecting`, tries to recognise the protocol from `payload`:
    /// on success the connection is `Active` (and `payload` is for its
    /// parser), otherwise it stays `Detecting` or gives up (`Ignored`).
    /// Does nothing in any other state.
    fn detect(
        &mut self,
        enabled: &[Protocol],
        options: ParserOptions,
        stats: &mut ConnectionStats,
        direction: Direction,
        payload: &[u8],
    ) {
        let ProtocolState::Detecting { attempts } = &mut self.state else {
            return;
        };
        if payload.is_empty() {
            return;
        }
        if !self.tls && tls_binding::starts_tls_record(payload) {
            // Shown as a connection, never parsed as plaintext; the TLS
            // hooks, if the library is hooked, bring the plaintext.
            self.saw_ciphertext = true;
            self.state = ProtocolState::Ignored;
            return;
        }
        let Some((protocol, side)) = protocols::detect(enabled, self.transport, payload) else {
            *attempts += 1;
            if *attempts >= DETECTION_ATTEMPTS {
                self.state = ProtocolState::Ignored;
                stats.unrecognised += 1;
            }
            return;
        };
        self.state = match protocols::new_parser(protocol, self.transport, options) {
            Some(parser) => {
                let client_bytes_come_in =
                    (side == Side::Client) == (direction == Direction::Ingress);
                let we_are = if client_bytes_come_in {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                };
                ProtocolState::Active {
                    protocol,
                    we_are,
                    parser,
                }
            }
            None => ProtocolState::Ignored,
        };
    }

    fn origin(&self, key: ConnKey) -> Option<Origin> {
        match &self.state {
            ProtocolState::Active {
                protocol, we_are, ..
            } => Some(Origin {
                kind: *we_are,
                protocol: *protocol,
                local: self.local,
                remote: self.remote,
                role: self.role,
                tls: self.tls.then_some(self.tls_library),
                conn: ConnRef {
                    pid: key.pid,
                    fd: key.fd,
                    sock: self.sock,
                },
                seq: self.exchanges,
                requests: self.requests,
            }),
            _ => None,
        }
    }
}
