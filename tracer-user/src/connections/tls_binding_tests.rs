use tracer_common::{
    DataEvent, Direction, EventKind, Syscall, DATA_FLAG_TLS, DATA_FLAG_TLS_UNBOUND,
};

use super::{Binding, Routed, TlsBinder};

const PID: u32 = 40;
const LOOP_THREAD: u32 = 40;
const SSL_A: u64 = 0x5555_0000_1000;
const SSL_B: u64 = 0x5555_0000_2000;
const SOCK_A: u64 = 0xffff_8880_0000_a000;
const SOCK_B: u64 = 0xffff_8880_0000_b000;

/// Starts of what Node.js's `https` server read and wrote on its socket
/// (strace of `node` 20 serving curl): the client's request record and
/// the server's response record, TLS 1.3.
const REQUEST_RECORD: &[u8] = b"\x17\x03\x03\x00\x61\x47\x92\x4f\x4f\x5d\x0c\xf0";
const RESPONSE_RECORD: &[u8] = b"\x17\x03\x03\x00\xc1\x7f\x28\x43\xeb\xd2\x4d\x58";
const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
/// A client's change-cipher-spec and Finished, which its first request may
/// follow in the same write.
const CLIENT_FINISHED: &[u8] = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x45";

fn event(direction: Direction, flags: u8, fd: u32, sock: u64, len: usize, ts: u64) -> DataEvent {
    let len = u32::try_from(len).expect("a test length");
    let syscall = match (flags & DATA_FLAG_TLS != 0, direction) {
        (true, Direction::Ingress) => Syscall::SslRead,
        (true, Direction::Egress) => Syscall::SslWrite,
        (false, Direction::Ingress) => Syscall::Read,
        (false, Direction::Egress) => Syscall::Write,
    };
    DataEvent {
        kind: EventKind::Data as u8,
        direction: direction as u8,
        syscall: syscall as u8,
        flags,
        pid: PID,
        tid: LOOP_THREAD,
        fd,
        timestamp_ns: ts,
        sock,
        goroutine: 0,
        total_len: len,
        captured_len: len,
    }
}

fn ciphertext(
    direction: Direction,
    fd: u32,
    sock: u64,
    bytes: &[u8],
    len: usize,
    ts: u64,
) -> (DataEvent, Vec<u8>) {
    (event(direction, 0, fd, sock, len, ts), bytes.to_vec())
}

fn unbound(direction: Direction, ssl: u64, plaintext: &[u8], ts: u64) -> (DataEvent, Vec<u8>) {
    (
        event(
            direction,
            DATA_FLAG_TLS | DATA_FLAG_TLS_UNBOUND,
            0,
            ssl,
            plaintext.len(),
            ts,
        ),
        plaintext.to_vec(),
    )
}

/// Routes one event; returns the events handed on, released ones first.
fn route(binder: &mut TlsBinder, (header, payload): &(DataEvent, Vec<u8>)) -> Vec<DataEvent> {
    let mut released = Vec::new();
    let routed = binder.route(header, payload, &mut released);
    let mut out: Vec<DataEvent> = released.into_iter().map(|(h, _)| h).collect();
    if let Routed::Event(h) = routed {
        out.push(h);
    }
    out
}

fn on_socket(events: &[DataEvent]) -> Vec<(u32, u64, u8)> {
    events.iter().map(|e| (e.fd, e.sock, e.flags)).collect()
}

#[test]
fn an_unbound_read_belongs_to_the_ciphertext_the_thread_read_last() {
    let mut binder = TlsBinder::default();
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 7, SOCK_A, CLIENT_HELLO, 517, 10),
    );
    let read = ciphertext(Direction::Ingress, 7, SOCK_A, REQUEST_RECORD, 102, 20);
    assert_eq!(on_socket(&route(&mut binder, &read)), [(7, SOCK_A, 0)]);
    let request = unbound(Direction::Ingress, SSL_A, b"GET /a HTTP/1.1\r\n\r\n", 21);
    assert_eq!(
        on_socket(&route(&mut binder, &request)),
        [(7, SOCK_A, DATA_FLAG_TLS)]
    );
    assert_eq!(
        binder.take_learnt(),
        [Binding {
            pid: PID,
            ssl: SSL_A,
            fd: 7,
            sock: SOCK_A
        }]
    );
    // Later calls of that SSL * need no ciphertext next to them.
    let response = unbound(Direction::Egress, SSL_A, b"HTTP/1.1 200 OK\r\n\r\n", 22);
    assert_eq!(
        on_socket(&route(&mut binder, &response)),
        [(7, SOCK_A, DATA_FLAG_TLS)]
    );
    assert_eq!(binder.stats().bound_by_read, 1);
    assert_eq!(binder.stats().unbound_calls, 0);
}

#[test]
fn without_ciphertext_before_it_an_unbound_read_is_dropped_and_counted() {
    let mut binder = TlsBinder::default();
    let request = unbound(Direction::Ingress, SSL_A, b"GET / HTTP/1.1\r\n\r\n", 5);
    assert!(route(&mut binder, &request).is_empty());
    // Plain bytes are no ciphertext.
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 7, SOCK_A, b"GET / HTTP/1.1\r\n", 16, 6),
    );
    assert!(route(&mut binder, &request).is_empty());
    assert_eq!(binder.stats().unbound_calls, 2);
    assert!(binder.take_learnt().is_empty());
}

#[test]
fn a_read_binds_one_ssl_only() {
    let mut binder = TlsBinder::default();
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 7, SOCK_A, REQUEST_RECORD, 102, 10),
    );
    assert_eq!(
        route(
            &mut binder,
            &unbound(Direction::Ingress, SSL_A, b"GET /", 11)
        )
        .len(),
        1
    );
    // Another SSL * with no read of its own: not given A's socket.
    assert!(route(
        &mut binder,
        &unbound(Direction::Ingress, SSL_B, b"GET /", 12)
    )
    .is_empty());
    // Nor when A's socket is read again: it is tied to SSL_A.
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 7, SOCK_A, REQUEST_RECORD, 102, 13),
    );
    assert!(route(
        &mut binder,
        &unbound(Direction::Ingress, SSL_B, b"GET /", 14)
    )
    .is_empty());
    assert_eq!(binder.stats().unbound_calls, 2);
    // B's own ciphertext binds it.
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 9, SOCK_B, REQUEST_RECORD, 102, 15),
    );
    assert_eq!(
        on_socket(&route(
            &mut binder,
            &unbound(Direction::Ingress, SSL_B, b"GET /", 16)
        )),
        [(9, SOCK_B, DATA_FLAG_TLS)]
    );
}

#[test]
fn a_read_long_before_the_call_is_not_its_ciphertext() {
    let mut binder = TlsBinder::default();
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 7, SOCK_A, REQUEST_RECORD, 102, 1_000),
    );
    let late = unbound(Direction::Ingress, SSL_A, b"GET /", 2_000_001_000);
    assert!(route(&mut binder, &late).is_empty());
    assert_eq!(binder.stats().unbound_calls, 1);
}

#[test]
fn another_thread_does_not_bind_what_this_one_read() {
    let mut binder = TlsBinder::default();
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 7, SOCK_A, REQUEST_RECORD, 102, 10),
    );
    let (mut header, payload) = unbound(Direction::Ingress, SSL_A, b"GET /", 11);
    header.tid = LOOP_THREAD + 1;
    assert!(route(&mut binder, &(header, payload)).is_empty());
}

#[test]
fn unbound_writes_wait_for_the_ciphertext_that_carries_them() {
    let mut binder = TlsBinder::default();
    let request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(route(&mut binder, &unbound(Direction::Egress, SSL_A, request, 10)).is_empty());
    // Plain bytes and too short a record do not carry it.
    route(
        &mut binder,
        &ciphertext(Direction::Egress, 7, SOCK_A, b"PING\r\n", 6, 11),
    );
    let short = request.len() + 20;
    assert_eq!(
        route(
            &mut binder,
            &ciphertext(Direction::Egress, 7, SOCK_A, RESPONSE_RECORD, short, 12)
        )
        .len(),
        1
    );
    assert!(binder.take_learnt().is_empty());
    let carrier = ciphertext(
        Direction::Egress,
        7,
        SOCK_A,
        RESPONSE_RECORD,
        request.len() + 22,
        13,
    );
    assert_eq!(
        on_socket(&route(&mut binder, &carrier)),
        [(7, SOCK_A, DATA_FLAG_TLS), (7, SOCK_A, 0)],
        "the held write comes out first, then the ciphertext"
    );
    assert_eq!(binder.take_learnt().len(), 1);
    assert_eq!(binder.stats().bound_by_write, 1);
}

#[test]
fn a_first_request_may_leave_with_the_handshake() {
    let mut binder = TlsBinder::default();
    let request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    route(&mut binder, &unbound(Direction::Egress, SSL_A, request, 10));
    let carrier = ciphertext(
        Direction::Egress,
        7,
        SOCK_A,
        CLIENT_FINISHED,
        64 + request.len() + 22,
        11,
    );
    assert_eq!(
        on_socket(&route(&mut binder, &carrier)),
        [(7, SOCK_A, DATA_FLAG_TLS), (7, SOCK_A, 0)]
    );
}

#[test]
fn a_read_that_binds_an_ssl_hands_on_its_waiting_writes_first() {
    let mut binder = TlsBinder::default();
    route(
        &mut binder,
        &unbound(Direction::Egress, SSL_A, b"GET /a HTTP/1.1\r\n\r\n", 10),
    );
    route(
        &mut binder,
        &unbound(Direction::Egress, SSL_B, b"GET /b HTTP/1.1\r\n\r\n", 11),
    );
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 7, SOCK_A, REQUEST_RECORD, 102, 12),
    );
    let response = unbound(Direction::Ingress, SSL_A, b"HTTP/1.1 200 OK\r\n\r\n", 13);
    let out = route(&mut binder, &response);
    assert_eq!(
        out.iter()
            .map(|e| (e.direction, e.fd, e.sock))
            .collect::<Vec<_>>(),
        [
            (Direction::Egress as u8, 7, SOCK_A),
            (Direction::Ingress as u8, 7, SOCK_A)
        ]
    );
    // B's write still waits for its own ciphertext.
    route(
        &mut binder,
        &ciphertext(Direction::Egress, 9, SOCK_B, RESPONSE_RECORD, 200, 14),
    );
    assert_eq!(binder.stats().bound_by_write, 1);
    assert_eq!(binder.stats().unbound_calls, 0);
}

#[test]
fn writes_of_two_ssls_waiting_together_are_dropped() {
    let mut binder = TlsBinder::default();
    route(
        &mut binder,
        &unbound(Direction::Egress, SSL_A, b"GET /a HTTP/1.1\r\n\r\n", 10),
    );
    route(
        &mut binder,
        &unbound(Direction::Egress, SSL_B, b"GET /b HTTP/1.1\r\n\r\n", 11),
    );
    let carrier = ciphertext(Direction::Egress, 7, SOCK_A, RESPONSE_RECORD, 200, 12);
    assert_eq!(route(&mut binder, &carrier).len(), 1);
    assert!(binder.take_learnt().is_empty());
    assert_eq!(binder.stats().unbound_calls, 2);
}

#[test]
fn a_closed_socket_frees_its_ssl() {
    let mut binder = TlsBinder::default();
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 7, SOCK_A, REQUEST_RECORD, 102, 10),
    );
    route(
        &mut binder,
        &unbound(Direction::Ingress, SSL_A, b"GET /", 11),
    );
    binder.on_close(PID, 7, SOCK_A);
    // The same SSL * address, reused by the next connection on another fd.
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 9, SOCK_B, REQUEST_RECORD, 102, 12),
    );
    assert_eq!(
        on_socket(&route(
            &mut binder,
            &unbound(Direction::Ingress, SSL_A, b"GET /", 13)
        )),
        [(9, SOCK_B, DATA_FLAG_TLS)]
    );
}

#[test]
fn writes_that_never_meet_their_ciphertext_are_counted() {
    let mut binder = TlsBinder::default();
    route(
        &mut binder,
        &unbound(Direction::Egress, SSL_A, b"GET /a HTTP/1.1\r\n\r\n", 10),
    );
    binder.prune(10 + 5_000_000_000);
    assert_eq!(binder.stats().unbound_calls, 0, "still recent");
    binder.prune(10 + 20_000_000_000);
    assert_eq!(binder.stats().unbound_calls, 1);
    route(
        &mut binder,
        &unbound(Direction::Egress, SSL_B, b"GET /b HTTP/1.1\r\n\r\n", 30),
    );
    binder.on_process_exit(PID);
    assert_eq!(binder.stats().unbound_calls, 2);
}

#[test]
fn a_read_too_small_for_the_plaintext_is_not_its_ciphertext() {
    let mut binder = TlsBinder::default();
    // Another connection's handshake finished on this thread: its
    // change-cipher-spec and a 69-byte Finished record hold 53 bytes at most.
    route(
        &mut binder,
        &ciphertext(Direction::Ingress, 9, SOCK_B, CLIENT_FINISHED, 80, 10),
    );
    let request = unbound(Direction::Ingress, SSL_A, &[b'x'; 80], 11);
    assert!(route(&mut binder, &request).is_empty());
    assert_eq!(binder.stats().unbound_calls, 1);
}

#[test]
fn the_capacity_of_a_read_is_walked_record_by_record() {
    use super::application_data_capacity as capacity;
    // Change-cipher-spec (1 byte) and a 69-byte application-data record.
    let mut flight = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x45".to_vec();
    flight.resize(6 + 5 + 69, 0);
    assert_eq!(capacity(&flight, 80), Some(53));
    // Two records, the second going on into the next read.
    let mut two = flight.clone();
    two.extend_from_slice(b"\x17\x03\x03\x40\x00");
    two.resize(200, 0);
    assert_eq!(capacity(&two, 200), Some(53 + 0x4000 - 16));
    // Captured in part: the second header tells what the rest holds...
    assert_eq!(capacity(&flight[..20], 80), Some(53));
    // ... and without it the rest is unknown.
    assert_eq!(capacity(&flight[..8], 80), Some(u64::MAX));
    // Not TLS after the first record.
    let mut broken = flight.clone();
    broken.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(capacity(&broken, 96), None);
    assert_eq!(capacity(b"GET / HTTP/1.1\r\n", 16), None);
    assert_eq!(capacity(REQUEST_RECORD, 102), Some(0x61 - 16));
}
