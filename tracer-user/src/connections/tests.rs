//! `ConnectionTable::on_data`: routing a data record to its connection,
//! detection, roles, TLS, a full table, reused fds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tracer_common::{
    ConnEvent, DataEvent, Direction, EventKind, Role, Syscall, AF_INET, DATA_FLAG_TLS,
    DATA_FLAG_TRUNCATED, IPPROTO_TCP,
};

use super::{ConnRef, ConnectionTable, Origin};
use crate::protocols::{self, ParseOutput, ParserOptions, Protocol};
use crate::spans::SpanKind;

const PID: u32 = 40;
const TID: u32 = 41;
const FD: u32 = 7;
const SOCK: u64 = 0xffff_0001;

const REQUEST: &[u8] = b"GET /items HTTP/1.1\r\nHost: example.test\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// A TLS 1.2 handshake record header and a few bytes of a `ClientHello`.
const CLIENT_HELLO: &[u8] = &[22, 3, 1, 0, 5, 1, 0, 0, 1, 0];

fn new_table(max_connections: usize) -> ConnectionTable {
    ConnectionTable::new(
        protocols::default_enabled(),
        ParserOptions::default(),
        max_connections,
    )
}

fn data(fd: u32, sock: u64, direction: Direction, ts_ns: u64, payload: &[u8]) -> DataEvent {
    let syscall = match direction {
        Direction::Egress => Syscall::Write,
        Direction::Ingress => Syscall::Read,
    };
    DataEvent {
        kind: EventKind::Data as u8,
        direction: direction as u8,
        syscall: syscall as u8,
        flags: 0,
        pid: PID,
        tid: TID,
        fd,
        timestamp_ns: ts_ns,
        sock,
        goroutine: 0,
        total_len: u32::try_from(payload.len()).unwrap(),
        captured_len: u32::try_from(payload.len()).unwrap(),
    }
}

fn tls_data(direction: Direction, ts_ns: u64, payload: &[u8]) -> DataEvent {
    DataEvent {
        flags: DATA_FLAG_TLS,
        ..data(FD, SOCK, direction, ts_ns, payload)
    }
}

fn open(role: Role, ts_ns: u64) -> ConnEvent {
    ConnEvent {
        kind: EventKind::ConnOpen as u8,
        role: role as u8,
        family: AF_INET,
        pid: PID,
        tid: TID,
        fd: FD,
        timestamp_ns: ts_ns,
        sock: SOCK,
        local_addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        remote_addr: [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        local_port: 40000,
        remote_port: 8080,
        protocol: IPPROTO_TCP,
        _pad: 0,
    }
}

fn close(ts_ns: u64) -> ConnEvent {
    ConnEvent {
        kind: EventKind::ConnClose as u8,
        family: 0,
        ..open(Role::Unknown, ts_ns)
    }
}

/// Feeds `event` with its whole payload.
fn feed(
    table: &mut ConnectionTable,
    event: &DataEvent,
    payload: &[u8],
) -> (Option<Origin>, ParseOutput) {
    let mut out = ParseOutput::default();
    let origin = table.on_data(event, payload, &mut out);
    (origin, out)
}

/// One request and its response on `FD`/`SOCK`, the request going
/// `request_direction`; what the response call returned.
fn exchange(
    table: &mut ConnectionTable,
    request_direction: Direction,
    ts_ns: u64,
) -> (Option<Origin>, ParseOutput) {
    let response_direction = match request_direction {
        Direction::Egress => Direction::Ingress,
        Direction::Ingress => Direction::Egress,
    };
    let (_, out) = feed(
        table,
        &data(FD, SOCK, request_direction, ts_ns, REQUEST),
        REQUEST,
    );
    assert!(out.exchanges.is_empty());
    feed(
        table,
        &data(FD, SOCK, response_direction, ts_ns + 10, RESPONSE),
        RESPONSE,
    )
}

fn one_exchange_named(out: &ParseOutput, name: &str) {
    assert_eq!(out.exchanges.len(), 1, "{out:?}");
    assert_eq!(out.exchanges[0].name, name);
    assert!(!out.exchanges[0].incomplete);
}

#[test]
fn request_sent_first_makes_a_client_connection() {
    let mut table = new_table(16);
    let (origin, out) = exchange(&mut table, Direction::Egress, 1_000);
    let origin = origin.unwrap();
    one_exchange_named(&out, "GET /items");
    assert_eq!(out.exchanges[0].start_ns, 1_000);
    assert_eq!(out.exchanges[0].end_ns, 1_010);
    assert_eq!(origin.kind, SpanKind::Client);
    assert_eq!(origin.protocol, Protocol::Http);
    assert_eq!(
        origin.conn,
        ConnRef {
            pid: PID,
            fd: FD,
            sock: SOCK
        }
    );
    assert_eq!(origin.seq, 0);
    // Without an open record: no addresses, no kernel role.
    assert_eq!((origin.local, origin.remote), (None, None));
    assert_eq!(origin.role, Role::Unknown);
    assert!(origin.tls.is_none());
    assert_eq!(table.stats().opened, 1);
    assert_eq!(table.len(), 1);
}

#[test]
fn request_received_first_makes_a_server_connection() {
    let mut table = new_table(16);
    let (origin, out) = exchange(&mut table, Direction::Ingress, 1_000);
    one_exchange_named(&out, "GET /items");
    assert_eq!(origin.unwrap().kind, SpanKind::Server);
    // The request is being served from its first byte until the answer.
    assert_eq!(table.open_request_since(origin.unwrap().conn), None);
}

#[test]
fn a_process_makes_calls_once_it_sends_a_request_or_connects() {
    let mut table = new_table(16);
    feed(
        &mut table,
        &data(FD, SOCK, Direction::Ingress, 1_000, REQUEST),
        REQUEST,
    );
    assert!(!table.makes_calls(PID), "serving is not calling");
    // Before any response: the call's parent must still be findable.
    feed(
        &mut table,
        &data(FD + 1, SOCK + 1, Direction::Egress, 1_100, REQUEST),
        REQUEST,
    );
    assert!(table.makes_calls(PID));
    let mut out = ParseOutput::default();
    table.on_process_exit(PID, 2_000, &mut out);
    assert!(
        table.makes_calls(PID),
        "still known while the spans its exit completed are linked"
    );
    table.forget_calls(PID);
    assert!(!table.makes_calls(PID), "forgotten with the process");

    table.on_open(&open(Role::Server, 3_000), &mut out);
    assert!(!table.makes_calls(PID));
    table.on_open(&open(Role::Client, 3_100), &mut out);
    assert!(table.makes_calls(PID), "a connect is a call to come");
}

#[test]
fn a_server_connection_has_its_request_open_until_answered() {
    let mut table = new_table(16);
    let (origin, out) = feed(
        &mut table,
        &data(FD, SOCK, Direction::Ingress, 500, REQUEST),
        REQUEST,
    );
    assert!(out.exchanges.is_empty());
    let origin = origin.unwrap();
    assert_eq!(origin.kind, SpanKind::Server);
    assert_eq!(table.open_request_since(origin.conn), Some(500));
    assert_eq!(table.serving_since(PID), Some(500));
}

#[test]
fn response_bytes_first_tell_the_side_too() {
    // The request was missed: a response coming in still says that the
    // traced process is the client.
    let mut table = new_table(16);
    let (origin, out) = feed(
        &mut table,
        &data(FD, SOCK, Direction::Ingress, 1_000, RESPONSE),
        RESPONSE,
    );
    assert!(out.exchanges.is_empty());
    assert_eq!(origin.unwrap().kind, SpanKind::Client);
    // And a response going out says it is the server.
    let (origin, _) = feed(
        &mut table,
        &data(FD + 1, SOCK + 1, Direction::Egress, 2_000, RESPONSE),
        RESPONSE,
    );
    assert_eq!(origin.unwrap().kind, SpanKind::Server);
    // Later exchanges go on with that side.
    let (origin, out) = exchange(&mut table, Direction::Egress, 3_000);
    one_exchange_named(&out, "GET /items");
    assert_eq!(origin.unwrap().kind, SpanKind::Client);
}

#[test]
fn the_kernel_role_is_kept_but_the_kind_comes_from_the_bytes() {
    // accept() said server, but the process sends the requests on it: the
    // spans are client spans, the role still tells what the kernel saw.
    let mut table = new_table(16);
    let mut out = ParseOutput::default();
    assert!(table.on_open(&open(Role::Server, 900), &mut out).is_none());
    let (origin, out) = exchange(&mut table, Direction::Egress, 1_000);
    one_exchange_named(&out, "GET /items");
    let origin = origin.unwrap();
    assert_eq!(origin.kind, SpanKind::Client);
    assert_eq!(origin.role, Role::Server);
    assert_eq!(
        origin.local,
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000))
    );
    assert_eq!(
        origin.remote,
        Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            8080
        ))
    );
    assert_eq!(
        table.stats().opened,
        1,
        "the data joined the opened connection"
    );

    let mut table = new_table(16);
    let mut out = ParseOutput::default();
    table.on_open(&open(Role::Client, 900), &mut out);
    let (origin, _) = exchange(&mut table, Direction::Egress, 1_000);
    assert_eq!(origin.unwrap().role, Role::Client);
    assert_eq!(origin.unwrap().kind, SpanKind::Client);
}

#[test]
fn a_connection_matching_nothing_is_ignored_after_eight_data_events() {
    let mut table = new_table(16);
    let noise = b"\x00\x01 not a protocol \xfe";
    for i in 0..7 {
        let (origin, out) = feed(
            &mut table,
            &data(FD, SOCK, Direction::Egress, 100 + i, noise),
            noise,
        );
        assert!(origin.is_none() && out.exchanges.is_empty());
        // Empty reads do not count as attempts.
        feed(
            &mut table,
            &data(FD, SOCK, Direction::Ingress, 100 + i, b""),
            b"",
        );
    }
    assert_eq!(table.stats().unrecognised, 0);
    // Still detecting: a request now would be recognised...
    let mut other = new_table(16);
    for i in 0..7 {
        feed(
            &mut other,
            &data(FD, SOCK, Direction::Egress, 100 + i, noise),
            noise,
        );
    }
    let (origin, out) = exchange(&mut other, Direction::Egress, 1_000);
    one_exchange_named(&out, "GET /items");
    assert!(origin.is_some());
    // ...but the eighth attempt gives up for good.
    feed(
        &mut table,
        &data(FD, SOCK, Direction::Egress, 200, noise),
        noise,
    );
    assert_eq!(table.stats().unrecognised, 1);
    let (origin, out) = exchange(&mut table, Direction::Egress, 1_000);
    assert!(origin.is_none());
    assert!(out.exchanges.is_empty());
    assert_eq!(table.stats().unrecognised, 1);
    assert_eq!(table.len(), 1, "an ignored connection is still tracked");
}

#[test]
fn a_full_table_refuses_new_connections_and_counts_them() {
    let mut table = new_table(1);
    let (origin, _) = feed(
        &mut table,
        &data(FD, SOCK, Direction::Egress, 100, REQUEST),
        REQUEST,
    );
    assert!(origin.is_some());
    let (origin, out) = feed(
        &mut table,
        &data(FD + 1, SOCK + 1, Direction::Egress, 200, REQUEST),
        REQUEST,
    );
    assert!(origin.is_none());
    assert!(out.exchanges.is_empty());
    assert_eq!(table.stats().table_full, 1);
    assert_eq!(table.stats().opened, 1);
    assert_eq!(table.len(), 1);
    // The connection that got in goes on.
    let (origin, out) = feed(
        &mut table,
        &data(FD, SOCK, Direction::Ingress, 300, RESPONSE),
        RESPONSE,
    );
    one_exchange_named(&out, "GET /items");
    assert_eq!(origin.unwrap().conn.fd, FD);
}

#[test]
fn ciphertext_alone_is_counted_as_undecrypted_at_close() {
    let mut table = new_table(16);
    let (origin, out) = feed(
        &mut table,
        &data(FD, SOCK, Direction::Egress, 100, CLIENT_HELLO),
        CLIENT_HELLO,
    );
    assert!(origin.is_none() && out.exchanges.is_empty());
    // Never parsed as plaintext afterwards.
    let (origin, out) = exchange(&mut table, Direction::Egress, 200);
    assert!(origin.is_none() && out.exchanges.is_empty());
    assert_eq!(table.stats().tls_undecrypted, 0, "counted at close");
    let mut out = ParseOutput::default();
    table.on_close(&close(300), &mut out);
    assert_eq!(table.stats().tls_undecrypted, 1);
    assert_eq!(table.stats().unrecognised, 0);
    assert_eq!(table.stats().closed, 1);
}

#[test]
fn plaintext_from_tls_hooks_replaces_the_ciphertext() {
    let mut table = new_table(16);
    feed(
        &mut table,
        &data(FD, SOCK, Direction::Egress, 100, CLIENT_HELLO),
        CLIENT_HELLO,
    );
    let (origin, out) = feed(
        &mut table,
        &tls_data(Direction::Egress, 200, REQUEST),
        REQUEST,
    );
    assert!(out.exchanges.is_empty());
    assert_eq!(origin.unwrap().tls, Some("openssl"));
    // The socket's own (encrypted) copy of the bytes is dropped.
    let (origin, out) = feed(
        &mut table,
        &data(FD, SOCK, Direction::Egress, 201, &[23, 3, 3, 0, 40]),
        &[23, 3, 3, 0, 40],
    );
    assert!(origin.is_none() && out.exchanges.is_empty());
    let (origin, out) = feed(
        &mut table,
        &tls_data(Direction::Ingress, 300, RESPONSE),
        RESPONSE,
    );
    one_exchange_named(&out, "GET /items");
    let origin = origin.unwrap();
    assert_eq!(origin.tls, Some("openssl"));
    assert_eq!(origin.kind, SpanKind::Client);
    let mut out = ParseOutput::default();
    table.on_close(&close(400), &mut out);
    assert_eq!(table.stats().tls_undecrypted, 0);
}

#[test]
fn a_reused_fd_with_another_sock_starts_a_new_connection() {
    let mut table = new_table(16);
    let (first, out) = exchange(&mut table, Direction::Egress, 1_000);
    one_exchange_named(&out, "GET /items");
    assert_eq!(first.unwrap().conn.sock, SOCK);
    // Same pid and fd, another sock: the server side this time.
    let (origin, out) = feed(
        &mut table,
        &data(FD, SOCK + 1, Direction::Ingress, 2_000, REQUEST),
        REQUEST,
    );
    assert!(out.exchanges.is_empty());
    let origin = origin.unwrap();
    assert_eq!(origin.conn.sock, SOCK + 1);
    assert_eq!(origin.kind, SpanKind::Server);
    assert_eq!(origin.seq, 0, "counting starts over");
    assert_eq!(table.stats().opened, 2);
    assert_eq!(table.stats().closed, 1);
    assert_eq!(table.len(), 1);
    // A late close for the old sock does not end the new connection.
    let mut out = ParseOutput::default();
    assert!(table.on_close(&close(2_500), &mut out).is_none());
    assert_eq!(table.len(), 1);
    let (origin, out) = feed(
        &mut table,
        &data(FD, SOCK + 1, Direction::Egress, 3_000, RESPONSE),
        RESPONSE,
    );
    one_exchange_named(&out, "GET /items");
    assert_eq!(origin.unwrap().conn.sock, SOCK + 1);
}

#[test]
fn exchanges_are_numbered_along_the_connection() {
    let mut table = new_table(16);
    for seq in 0..3 {
        let (origin, out) = exchange(&mut table, Direction::Egress, 1_000 * (seq + 1));
        one_exchange_named(&out, "GET /items");
        assert_eq!(origin.unwrap().seq, seq);
    }
}

#[test]
fn bytes_not_captured_are_a_gap_for_the_parser() {
    // A response whose body was cut by the payload cap still completes.
    let mut table = new_table(16);
    feed(
        &mut table,
        &data(FD, SOCK, Direction::Egress, 100, REQUEST),
        REQUEST,
    );
    let captured = &RESPONSE[..RESPONSE.len() - 2];
    let event = DataEvent {
        flags: DATA_FLAG_TRUNCATED,
        captured_len: u32::try_from(captured.len()).unwrap(),
        ..data(FD, SOCK, Direction::Ingress, 200, RESPONSE)
    };
    let (origin, out) = feed(&mut table, &event, captured);
    one_exchange_named(&out, "GET /items");
    assert!(origin.is_some());
    assert_eq!(table.stats().desyncs, 0);
}

#[test]
fn a_replaced_connection_keeps_its_unanswered_request() {
    // A request never answered on the old sock, then the fd comes back with
    // another sock: the incomplete exchange is the old connection's.
    let mut table = new_table(16);
    let (old, _) = feed(
        &mut table,
        &data(FD, SOCK, Direction::Egress, 1_000, REQUEST),
        REQUEST,
    );
    assert_eq!(old.unwrap().conn.sock, SOCK);
    let reused = data(FD, SOCK + 1, Direction::Egress, 2_000, REQUEST);
    let mut out = ParseOutput::default();
    let replaced = table.close_replaced(&reused, &mut out).unwrap();
    assert_eq!(replaced.conn.sock, SOCK);
    assert_eq!(replaced.kind, SpanKind::Client);
    assert_eq!(out.exchanges.len(), 1);
    assert!(out.exchanges[0].incomplete);
    assert_eq!(out.exchanges[0].start_ns, 1_000);
    assert_eq!(table.stats().closed, 1);
    // The new connection's record then starts clean.
    let (origin, out) = feed(&mut table, &reused, REQUEST);
    assert!(out.exchanges.is_empty(), "{out:?}");
    assert_eq!(origin.unwrap().conn.sock, SOCK + 1);
    assert_eq!(table.stats().opened, 2);
    // Nothing to replace: the same sock, or no connection at all.
    let mut out = ParseOutput::default();
    assert!(table.close_replaced(&reused, &mut out).is_none());
    let elsewhere = data(FD + 1, SOCK + 2, Direction::Egress, 3_000, REQUEST);
    assert!(table.close_replaced(&elsewhere, &mut out).is_none());
    assert!(out.exchanges.is_empty());
}

/// A client call made on a thread that reads a server request is caused by
/// that request; not in a Go process, whose goroutines move between
/// threads.
#[test]
fn no_request_causes_a_go_process_call_by_thread() {
    let cause_of_call = |go: bool| {
        let mut table = new_table(16);
        if go {
            table.schedules_goroutines(PID);
        }
        // A request read on server connection 5, a call sent on 6 by the
        // same thread before the request is answered.
        let request = data(5, 0x5000, Direction::Ingress, 100, REQUEST);
        feed(&mut table, &request, REQUEST);
        let call = data(6, 0x6000, Direction::Egress, 200, REQUEST);
        let (origin, _) = feed(&mut table, &call, REQUEST);
        let answer = data(6, 0x6000, Direction::Ingress, 300, RESPONSE);
        let (origin_after, _) = feed(&mut table, &answer, RESPONSE);
        origin
            .or(origin_after)
            .and_then(|o| o.requests.at(200))
            .and_then(|sender| sender.cause)
    };
    assert!(cause_of_call(false).is_some());
    assert!(cause_of_call(true).is_none());
}

/// In a Go process a call is caused by the request its goroutine read; Go's
/// HTTP client writes from a connection's own goroutine, handed the
/// caller's by the `*http.Request` both name.
#[test]
fn a_go_call_is_caused_by_the_request_of_its_goroutine() {
    use tracer_common::{GoCall, GoCallEvent};
    const HANDLER_A: u64 = 0x00c0_0001_0000;
    const HANDLER_B: u64 = 0x00c0_0002_0000;
    const WRITER: u64 = 0x00c0_0003_0000;
    let go_call = |call: GoCall, goroutine: u64, request: u64, ts: u64| GoCallEvent {
        kind: EventKind::GoCall as u8,
        call: call as u8,
        _pad: [0; 2],
        pid: PID,
        goroutine,
        object: request,
        timestamp_ns: ts,
    };
    let by = |goroutine: u64, event: DataEvent| DataEvent { goroutine, ..event };
    let mut table = new_table(16);
    table.schedules_goroutines(PID);
    // Two handlers read a request each, on one thread.
    for (fd, goroutine, ts) in [(5, HANDLER_A, 100), (7, HANDLER_B, 110)] {
        let request = by(
            goroutine,
            data(fd, 0x1000 * u64::from(fd), Direction::Ingress, ts, REQUEST),
        );
        feed(&mut table, &request, REQUEST);
    }
    let cause_of_call = |table: &mut ConnectionTable, fd: u32, ts: u64| {
        let call = by(
            WRITER,
            data(fd, 0x1000 * u64::from(fd), Direction::Egress, ts, REQUEST),
        );
        let (origin, _) = feed(table, &call, REQUEST);
        origin
            .and_then(|o| o.requests.at(ts))
            .and_then(|sender| sender.cause)
            .map(|cause| cause.conn.fd)
    };
    // The writer read nothing: no cause, not the thread's requests.
    assert_eq!(cause_of_call(&mut table, 6, 200), None);
    // B's round trip, written by the writer: B's request.
    table.on_go_call(&go_call(GoCall::RoundTrip, HANDLER_B, 0xb0, 300));
    table.on_go_call(&go_call(GoCall::RequestWrite, WRITER, 0xb0, 301));
    assert_eq!(cause_of_call(&mut table, 8, 302), Some(7));
    // Then A's, on another connection of the same writer goroutine.
    table.on_go_call(&go_call(GoCall::RoundTrip, HANDLER_A, 0xa0, 400));
    table.on_go_call(&go_call(GoCall::RequestWrite, WRITER, 0xa0, 401));
    assert_eq!(cause_of_call(&mut table, 9, 402), Some(5));
    // A goroutine the kernel could not read causes nothing.
    let unknown = data(10, 0xa000, Direction::Egress, 500, REQUEST);
    let (origin, _) = feed(&mut table, &unknown, REQUEST);
    assert!(origin
        .and_then(|o| o.requests.at(500))
        .and_then(|sender| sender.cause)
        .is_none());
}

/// The client may read its response and close before the server's write
/// returns: the server span built after that close still has a traced
/// caller.
#[test]
fn a_client_that_spoke_and_closed_is_still_a_traced_peer() {
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 8080);
    let mut table = new_table(16);
    let mut out = ParseOutput::default();
    table.on_open(&open(Role::Client, 1_000), &mut out);
    // From the server's side: its local address is the client's remote.
    assert!(
        !table.peer_is_traced(remote, local),
        "no protocol spoken yet"
    );
    exchange(&mut table, Direction::Egress, 2_000);
    assert!(table.peer_is_traced(remote, local));
    table.on_close(&close(3_000), &mut out);
    assert!(table.peer_is_traced(remote, local), "closed a moment ago");

    // A connection that never spoke a known protocol leaves nothing.
    let mut silent = new_table(16);
    silent.on_open(&open(Role::Client, 1_000), &mut out);
    silent.on_close(&close(3_000), &mut out);
    assert!(!silent.peer_is_traced(remote, local));
}
