//! Ties the TLS calls of event loops to their sockets.
//!
//! Node.js and Python asyncio decrypt from memory BIOs: the socket `read`
//! happens before `SSL_read`, the socket `write` after `SSL_write`, and no
//! syscall inside the SSL call names the connection, so the kernel hands
//! their plaintext on unbound ([`DATA_FLAG_TLS_UNBOUND`], the `SSL *` in
//! `sock`). The event loop does both on one thread, one connection at a
//! time, which this stage follows per thread:
//!
//! - an unbound read belongs to the connection whose ciphertext (bytes
//!   that walk as TLS records) the thread read last, once (the read is used
//!   up by the `SSL *` it binds), if that read's application-data records
//!   can hold the plaintext (so a handshake's last flight read from another
//!   connection does not pass for it);
//! - unbound writes wait for the next ciphertext the thread writes (a
//!   client's first request may leave with the handshake's last records):
//!   it binds them if they all came from one `SSL *` and it is long enough
//!   to carry them (every record adds a header and an authentication tag);
//!   or for a read that binds their `SSL *`, before which they are handed
//!   on.
//!
//! Ambiguity is never resolved by guessing: a socket already tied to
//! another `SSL *`, writes of two `SSL *`s waiting together, or no
//! ciphertext at all leave the plaintext dropped and counted. What is
//! learnt goes back to the kernel (`SSL_SOCKETS`, see
//! [`TlsBinder::take_learnt`]), which then binds the later calls itself and
//! stops emitting the ciphertext.

use foldhash::HashMap;

use tracer_common::{DataEvent, Direction, DATA_FLAG_TLS, DATA_FLAG_TLS_UNBOUND};

/// TLS record content type of application data, and of every encrypted
/// record in TLS 1.3.
const APPLICATION_DATA: u8 = 23;
/// The authentication tag of AEAD ciphers, the least a protected record
/// adds to its plaintext besides its header.
const AEAD_TAG: usize = 16;
/// Bytes a TLS record adds at least: its 5-byte header and a 16-byte tag
/// (AEAD) or a MAC of 20 bytes or more (TLS 1.2 CBC).
const RECORD_OVERHEAD: u64 = 21;
/// How long a thread's ciphertext stays a candidate for its next SSL call:
/// the event loop decrypts in the same turn it read.
const CANDIDATE_NS: u64 = 1_000_000_000;
/// Unbound writes a thread may hold while waiting for its ciphertext.
const MAX_PENDING_WRITES: usize = 16;
/// Thread state idle this long is forgotten at [`TlsBinder::prune`].
const IDLE_THREAD_NS: u64 = 10_000_000_000;

/// An `SSL *` tied to its socket, for the kernel's `SSL_SOCKETS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub pid: u32,
    pub ssl: u64,
    pub fd: u32,
    pub sock: u64,
}

/// Counts for the summary and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsBindingStats {
    /// `SSL *`s tied to a socket by a read.
    pub bound_by_read: u64,
    /// `SSL *`s tied to a socket by a write.
    pub bound_by_write: u64,
    /// Unbound SSL calls whose plaintext was dropped: no ciphertext next to
    /// it, or more than one connection it could belong to.
    pub unbound_calls: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Thread {
    pid: u32,
    tid: u32,
}

#[derive(Clone, Copy)]
struct Socket {
    fd: u32,
    sock: u64,
}

#[derive(Clone, Copy)]
struct CipherRead {
    socket: Socket,
    ts_ns: u64,
    /// Most plaintext its application-data records can hold.
    capacity: u64,
}

struct PendingWrite {
    header: DataEvent,
    payload: Vec<u8>,
}

#[derive(Default)]
struct ThreadState {
    /// The ciphertext the thread read last, not yet used by an `SSL *`.
    read: Option<CipherRead>,
    /// Unbound writes waiting for the ciphertext that carries them.
    pending: Vec<PendingWrite>,
    last_ns: u64,
}

#[derive(Default)]
pub struct TlsBinder {
    by_ssl: HashMap<(u32, u64), Socket>,
    /// `(pid, fd)` → the `sock` and `SSL *` tied to it.
    by_socket: HashMap<(u32, u32), (u64, u64)>,
    threads: HashMap<Thread, ThreadState>,
    learnt: Vec<Binding>,
    stats: TlsBindingStats,
}

/// What the caller hands on to the connection table.
pub enum Routed {
    /// The event, with its socket filled in if it was unbound.
    Event(DataEvent),
    /// Held (an unbound write) or dropped (counted).
    Nothing,
}

impl TlsBinder {
    pub fn stats(&self) -> TlsBindingStats {
        self.stats
    }

    /// Bindings learnt since the last call, for the kernel.
    pub fn take_learnt(&mut self) -> Vec<Binding> {
        std::mem::take(&mut self.learnt)
    }

    /// Routes one data event. Unbound writes this event ties to its socket
    /// are appended to `released`, bound, to be handed on before it.
    pub fn route(
        &mut self,
        header: &DataEvent,
        payload: &[u8],
        released: &mut Vec<(DataEvent, Vec<u8>)>,
    ) -> Routed {
        if header.flags & DATA_FLAG_TLS_UNBOUND != 0 {
            return self.route_unbound(header, payload, released);
        }
        if header.flags & DATA_FLAG_TLS == 0 && starts_tls_record(payload) {
            self.on_ciphertext(header, payload, released);
        }
        Routed::Event(*header)
    }

    fn route_unbound(
        &mut self,
        header: &DataEvent,
        payload: &[u8],
        released: &mut Vec<(DataEvent, Vec<u8>)>,
    ) -> Routed {
        let ssl = header.sock;
        if let Some(&socket) = self.by_ssl.get(&(header.pid, ssl)) {
            return Routed::Event(bound(header, socket));
        }
        let thread = Thread {
            pid: header.pid,
            tid: header.tid,
        };
        let state = self.threads.entry(thread).or_default();
        state.last_ns = header.timestamp_ns;
        if header.direction == Direction::Egress as u8 {
            if state.pending.len() >= MAX_PENDING_WRITES {
                state.pending.remove(0);
                self.stats.unbound_calls += 1;
            }
            state.pending.push(PendingWrite {
                header: *header,
                payload: payload.to_vec(),
            });
            return Routed::Nothing;
        }
        let plaintext = u64::from(header.total_len.max(header.captured_len));
        let candidate = state.read.take().filter(|read| {
            header.timestamp_ns.saturating_sub(read.ts_ns) <= CANDIDATE_NS
                && plaintext <= read.capacity
        });
        match candidate.map(|read| read.socket) {
            Some(socket) if self.free_for(header.pid, socket, ssl) => {
                self.bind(header.pid, ssl, socket);
                self.stats.bound_by_read += 1;
                // Its writes that went before (a client's request whose
                // ciphertext went out with the handshake's last records).
                if let Some(state) = self.threads.get_mut(&thread) {
                    let (mine, others) = std::mem::take(&mut state.pending)
                        .into_iter()
                        .partition(|w| w.header.sock == ssl);
                    state.pending = others;
                    released.extend(
                        mine.into_iter()
                            .map(|w: PendingWrite| (bound(&w.header, socket), w.payload)),
                    );
                }
                Routed::Event(bound(header, socket))
            }
            _ => {
                self.stats.unbound_calls += 1;
                Routed::Nothing
            }
        }
    }

    /// Socket bytes that start with a TLS record header.
    fn on_ciphertext(
        &mut self,
        header: &DataEvent,
        payload: &[u8],
        released: &mut Vec<(DataEvent, Vec<u8>)>,
    ) {
        let thread = Thread {
            pid: header.pid,
            tid: header.tid,
        };
        let socket = Socket {
            fd: header.fd,
            sock: header.sock,
        };
        if header.direction == Direction::Ingress as u8 {
            let state = self.threads.entry(thread).or_default();
            state.read =
                application_data_capacity(payload, header.total_len).map(|capacity| CipherRead {
                    socket,
                    ts_ns: header.timestamp_ns,
                    capacity,
                });
            state.last_ns = header.timestamp_ns;
            return;
        }
        let Some(state) = self.threads.get_mut(&thread) else {
            return;
        };
        let before = state.pending.len();
        state
            .pending
            .retain(|w| header.timestamp_ns.saturating_sub(w.header.timestamp_ns) <= CANDIDATE_NS);
        self.stats.unbound_calls += (before - state.pending.len()) as u64;
        let Some(first) = state.pending.first() else {
            return;
        };
        let ssl = first.header.sock;
        let one_ssl = state.pending.iter().all(|w| w.header.sock == ssl);
        let plaintext: u64 = state
            .pending
            .iter()
            .map(|w| u64::from(w.header.total_len.max(w.header.captured_len)))
            .sum();
        if one_ssl && u64::from(header.total_len) < plaintext + RECORD_OVERHEAD {
            // Too short to carry them: other ciphertext, or a partial
            // write; they wait for the next.
            return;
        }
        let pending = std::mem::take(&mut state.pending);
        if !one_ssl || !self.free_for(header.pid, socket, ssl) {
            self.stats.unbound_calls += pending.len() as u64;
            return;
        }
        self.bind(header.pid, ssl, socket);
        self.stats.bound_by_write += 1;
        released.extend(
            pending
                .into_iter()
                .map(|w| (bound(&w.header, socket), w.payload)),
        );
    }

    /// Whether `socket` may be tied to `ssl`: not tied to another `SSL *`.
    fn free_for(&self, pid: u32, socket: Socket, ssl: u64) -> bool {
        match self.by_socket.get(&(pid, socket.fd)) {
            Some(&(sock, bound_ssl)) => sock != socket.sock || bound_ssl == ssl,
            None => true,
        }
    }

    fn bind(&mut self, pid: u32, ssl: u64, socket: Socket) {
        if let Some((_, old_ssl)) = self.by_socket.insert((pid, socket.fd), (socket.sock, ssl)) {
            self.by_ssl.remove(&(pid, old_ssl));
        }
        self.by_ssl.insert((pid, ssl), socket);
        self.learnt.push(Binding {
            pid,
            ssl,
            fd: socket.fd,
            sock: socket.sock,
        });
    }

    /// The process closed `fd`: its `SSL *` may be reused by another
    /// connection.
    pub fn on_close(&mut self, pid: u32, fd: u32, sock: u64) {
        if let Some(&(bound_sock, ssl)) = self.by_socket.get(&(pid, fd)) {
            if bound_sock == sock {
                self.by_socket.remove(&(pid, fd));
                self.by_ssl.remove(&(pid, ssl));
            }
        }
    }

    pub fn on_process_exit(&mut self, pid: u32) {
        self.by_ssl.retain(|&(p, _), _| p != pid);
        self.by_socket.retain(|&(p, _), _| p != pid);
        let mut dropped = 0;
        self.threads.retain(|thread, state| {
            if thread.pid == pid {
                dropped += state.pending.len() as u64;
            }
            thread.pid != pid
        });
        self.stats.unbound_calls += dropped;
    }

    /// Forgets threads quiet since before `now_ns - IDLE_THREAD_NS`; their
    /// writes that never met their ciphertext are counted.
    pub fn prune(&mut self, now_ns: u64) {
        let cutoff = now_ns.saturating_sub(IDLE_THREAD_NS);
        let mut dropped = 0;
        self.threads.retain(|_, state| {
            let keep = state.last_ns >= cutoff;
            if !keep {
                dropped += state.pending.len() as u64;
            }
            keep
        });
        self.stats.unbound_calls += dropped;
    }
}

fn bound(header: &DataEvent, socket: Socket) -> DataEvent {
    DataEvent {
        fd: socket.fd,
        sock: socket.sock,
        flags: header.flags & !DATA_FLAG_TLS_UNBOUND,
        ..*header
    }
}

/// The most plaintext the TLS records of one socket read can carry: the
/// application-data records' lengths less a 16-byte tag each, walked
/// record by record through the captured bytes (a record may go on into
/// the next read). Unbounded when the capture was cut short; `None` when
/// the bytes are not a run of TLS records.
fn application_data_capacity(payload: &[u8], total_len: u32) -> Option<u64> {
    let mut capacity = 0u64;
    let mut at = 0usize;
    // Records are at least 5 bytes: the walk ends within as many steps.
    for _ in 0..=payload.len() / 5 {
        let Some(header) = payload.get(at..at + 5) else {
            break;
        };
        if !starts_tls_record(header) {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] == APPLICATION_DATA {
            capacity += len.saturating_sub(AEAD_TAG) as u64;
        }
        at += 5 + len;
    }
    if at == 0 {
        return None;
    }
    if payload.len() < total_len as usize && at < total_len as usize {
        return Some(u64::MAX);
    }
    Some(capacity)
}

/// A TLS record header: handshake, alert, change-cipher-spec or
/// application data, protocol version 3.x.
pub fn starts_tls_record(data: &[u8]) -> bool {
    matches!(data, [20..=23, 3, 0..=4, ..])
}

#[cfg(test)]
#[path = "tls_binding_tests.rs"]
mod tests;
