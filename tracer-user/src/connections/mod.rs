//! The connection table: per-connection state between the raw events and
//! the protocol parsers.
//!
//! A connection is `(pid, fd)` plus the kernel `struct sock` behind it, so
//! a reused fd starts a new connection. Each connection turns the traced
//! process's egress/ingress bytes into the client/server streams its
//! protocol parser expects, once the first bytes have told which protocol
//! it speaks and which end the traced process is.

mod addr;

use std::{collections::HashMap, net::SocketAddr};

use tracer_common::{ConnEvent, DataEvent, Direction, Role, DATA_FLAG_TLS, DATA_FLAG_TRUNCATED, IPPROTO_UDP};

use crate::{
    protocols::{self, ParseOutput, Parser, ParserOptions, Protocol, Side, Transport},
    spans::SpanKind,
};

pub use addr::socket_addrs;

/// Data events with payload a connection may show before it is given up
/// as speaking no known protocol.
const DETECTION_ATTEMPTS: u8 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub pid: u32,
    pub fd: u32,
}

enum ProtocolState {
    Detecting { attempts: u8 },
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
    /// Bytes that looked like a TLS record arrived on the socket itself.
    saw_ciphertext: bool,
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
    /// Decrypted at the TLS library.
    pub tls: bool,
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
}

impl ConnectionTable {
    pub fn new(enabled: Vec<Protocol>, options: ParserOptions, max_connections: usize) -> Self {
        ConnectionTable {
            conns: HashMap::new(),
            enabled,
            options,
            max_connections,
            stats: ConnectionStats::default(),
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
        let key = ConnKey { pid: event.pid, fd: event.fd };
        let origin = self.close(key, event.timestamp_ns, out);
        if self.conns.len() >= self.max_connections {
            self.stats.table_full += 1;
            return origin;
        }
        let (local, remote) = socket_addrs(event);
        self.conns.insert(
            key,
            Connection {
                sock: event.sock,
                transport: if event.protocol == IPPROTO_UDP { Transport::Udp } else { Transport::Tcp },
                local,
                remote,
                role: Role::from_u8(event.role),
                state: ProtocolState::Detecting { attempts: 0 },
                last_seen_ns: event.timestamp_ns,
                tls: false,
                saw_ciphertext: false,
            },
        );
        self.stats.opened += 1;
        origin
    }

    /// The traced process closed the socket.
    pub fn on_close(&mut self, event: &ConnEvent, out: &mut ParseOutput) -> Option<Origin> {
        let key = ConnKey { pid: event.pid, fd: event.fd };
        match self.conns.get(&key) {
            Some(conn) if conn.sock == event.sock => self.close(key, event.timestamp_ns, out),
            _ => None,
        }
    }

    fn close(&mut self, key: ConnKey, ts_ns: u64, out: &mut ParseOutput) -> Option<Origin> {
        let mut conn = self.conns.remove(&key)?;
        self.stats.closed += 1;
        if conn.saw_ciphertext && !conn.tls {
            self.stats.tls_undecrypted += 1;
        }
        let origin = conn.origin();
        if let ProtocolState::Active { parser, .. } = &mut conn.state {
            let before = out.desyncs;
            parser.on_close(ts_ns, out);
            self.stats.desyncs += out.desyncs - before;
        }
        origin
    }

    /// All connections of an exited process end.
    pub fn on_process_exit(&mut self, pid: u32, ts_ns: u64, out: &mut ParseOutput) -> Vec<Origin> {
        let keys: Vec<ConnKey> = self.conns.keys().filter(|k| k.pid == pid).copied().collect();
        let mut origins = Vec::new();
        for key in keys {
            let before = out.exchanges.len();
            if let Some(origin) = self.close(key, ts_ns, out) {
                // Keep one origin per exchange so the caller can pair them.
                origins.extend(std::iter::repeat_n(origin, out.exchanges.len() - before));
            }
        }
        origins
    }

    /// Payload moved by the traced process; exchanges it completes are
    /// appended to `out` and all come from the returned origin.
    pub fn on_data(&mut self, event: &DataEvent, payload: &[u8], out: &mut ParseOutput) -> Option<Origin> {
        let key = ConnKey { pid: event.pid, fd: event.fd };
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
                Connection {
                    sock: event.sock,
                    transport: Transport::Tcp,
                    local: None,
                    remote: None,
                    role: Role::Unknown,
                    state: ProtocolState::Detecting { attempts: 0 },
                    last_seen_ns: event.timestamp_ns,
                    tls: false,
                    saw_ciphertext: false,
                },
            );
            self.stats.opened += 1;
        }
        let conn = self.conns.get_mut(&key)?;
        conn.last_seen_ns = event.timestamp_ns;
        let plaintext_from_tls = event.flags & DATA_FLAG_TLS != 0;
        if plaintext_from_tls && !conn.tls {
            // The TLS hooks took over: what the socket carried so far was
            // handshake ciphertext; start over on the plaintext.
            conn.tls = true;
            conn.state = ProtocolState::Detecting { attempts: 0 };
        } else if conn.tls && !plaintext_from_tls {
            return None; // ciphertext emitted before the kernel knew
        }
        let direction = if event.direction == Direction::Ingress as u8 {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        if let ProtocolState::Detecting { attempts } = &mut conn.state {
            if payload.is_empty() {
                return None;
            }
            if !conn.tls && looks_like_tls_record(payload) {
                // Shown as a connection, never parsed as plaintext; the TLS
                // hooks, if the library is hooked, bring the plaintext.
                conn.saw_ciphertext = true;
                conn.state = ProtocolState::Ignored;
                return None;
            }
            match protocols::detect(&self.enabled, conn.transport, payload) {
                Some((protocol, side)) => match protocols::new_parser(protocol, conn.transport, self.options) {
                    Some(parser) => {
                        let client_bytes_come_in = (side == Side::Client) == (direction == Direction::Ingress);
                        let we_are = if client_bytes_come_in { SpanKind::Server } else { SpanKind::Client };
                        conn.state = ProtocolState::Active { protocol, we_are, parser };
                    }
                    None => conn.state = ProtocolState::Ignored,
                },
                None => {
                    *attempts += 1;
                    if *attempts >= DETECTION_ATTEMPTS {
                        conn.state = ProtocolState::Ignored;
                        self.stats.unrecognised += 1;
                    }
                    return None;
                }
            }
        }
        let ProtocolState::Active { we_are, parser, .. } = &mut conn.state else {
            return None;
        };
        let side = match (*we_are, direction) {
            (SpanKind::Server, Direction::Ingress) | (SpanKind::Client, Direction::Egress) => Side::Client,
            _ => Side::Server,
        };
        let before = out.desyncs;
        if !payload.is_empty() {
            parser.on_data(side, event.timestamp_ns, payload, out);
        }
        let missing = (event.total_len as usize).saturating_sub(payload.len());
        if missing > 0 || event.flags & DATA_FLAG_TRUNCATED != 0 {
            parser.on_gap(side, event.timestamp_ns, missing, out);
        }
        self.stats.desyncs += out.desyncs - before;
        conn.origin()
    }

    /// Drops connections idle since before `cutoff_ns` (their pending
    /// requests are lost and counted as evictions).
    pub fn evict_idle(&mut self, cutoff_ns: u64) {
        let before = self.conns.len();
        self.conns.retain(|_, conn| conn.last_seen_ns >= cutoff_ns);
        self.stats.evicted += (before - self.conns.len()) as u64;
    }
}

/// A TLS record header: handshake, alert, change-cipher-spec or
/// application data, protocol version 3.x.
fn looks_like_tls_record(data: &[u8]) -> bool {
    matches!(data, [20..=23, 3, 0..=4, ..])
}

impl Connection {
    fn origin(&self) -> Option<Origin> {
        match &self.state {
            ProtocolState::Active { protocol, we_are, .. } => Some(Origin {
                kind: *we_are,
                protocol: *protocol,
                local: self.local,
                remote: self.remote,
                role: self.role,
                tls: self.tls,
            }),
            _ => None,
        }
    }
}
