//! The whole user side from ring-buffer records: decoding, the connection
//! table, protocol detection and parsing, span building and linking. The
//! input is read as a sequence of operations, each a control byte and its
//! fields, built into well-formed records (data on a few connections, opens,
//! closes, process events, Go calls) so that they reach the parsers and the linking,
//! with some raw garbage records among them. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::{
    linking::LinkConfig,
    pipeline::{Pipeline, PipelineConfig},
    protocols::{self, ParserOptions},
};
use tracer_common::{
    ConnEvent, DataEvent, EventKind, GoCallEvent, ProcessEvent, AF_INET, AF_INET6, DATA_FLAG_TLS,
    DATA_FLAG_TRUNCATED, IPPROTO_TCP, IPPROTO_UDP, TASK_COMM_LEN,
};

/// First bytes of each protocol's messages, so that payloads get past
/// detection more often than random bytes would.
const PREFIXES: [&[u8]; 16] = [
    b"",
    b"GET / HTTP/1.1\r\n",
    b"POST /a?b=c HTTP/1.1\r\nContent-Length: ",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"*2\r\n$3\r\nGET\r\n$",
    b"+OK\r\n",
    b"get key\r\n",
    b"VALUE key 0 ",
    b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
    b"Q\x00\x00\x00",
    b"\x0a\x00\x00\x00\x0a8.0.36\x00",
    b"\x00\x1c\x12\x34\x01\x00\x00\x01",
    b"\x16\x03\x01\x00",
    b"\x17\x03\x03\x00",
];

/// Reads the fuzzer's bytes, zeros past the end.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&byte, rest)) => {
                self.0 = rest;
                byte
            }
            None => 0,
        }
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }
}

fn as_bytes<T: Copy>(value: &T) -> Vec<u8> {
    let mut out = vec![0u8; size_of::<T>()];
    // SAFETY: the buffer is exactly one T long; T is a plain repr(C) struct.
    unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast::<T>(), *value) };
    out
}

fn conn_event(kind: EventKind, selector: u8, input: &mut Input, ts: u64) -> ConnEvent {
    let (pid, fd, sock) = conn(selector);
    let fields = input.byte();
    let v6 = fields & 0x10 != 0;
    let mut local_addr = [0u8; 16];
    let mut remote_addr = [0u8; 16];
    if v6 {
        local_addr[15] = 1;
        remote_addr[15] = 1 + (fields >> 6);
    } else {
        local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        remote_addr[..4].copy_from_slice(&[127, 0, 0, 1 + (fields >> 6)]);
    }
    // Ports from a small set, so that both ends of a connection can be
    // traced and peers found.
    let ports = [8080u16, 40000, 40001, 0];
    ConnEvent {
        kind: kind as u8,
        role: fields & 0x03,
        family: if v6 { AF_INET6 } else { AF_INET },
        pid,
        tid: pid + u32::from(fields & 0x01),
        fd,
        timestamp_ns: ts,
        sock,
        local_addr,
        remote_addr,
        local_port: ports[usize::from((fields >> 2) & 0x03)],
        remote_port: ports[usize::from((fields >> 4) & 0x03) ^ 1],
        protocol: if fields & 0x20 != 0 {
            IPPROTO_UDP
        } else {
            IPPROTO_TCP
        },
        _pad: 0,
    }
}

/// The process that runs Go: its events carry goroutines.
const GO_PID: u32 = 101;

/// A few goroutines of the Go process (0: not read); none elsewhere.
fn goroutine(pid: u32, input: &mut Input) -> u64 {
    if pid == GO_PID {
        u64::from(input.byte() % 4) * 0x00c0_0000_1000
    } else {
        0
    }
}

/// A few processes, fds and socks: (pid, fd, sock).
fn conn(selector: u8) -> (u32, u32, u64) {
    let pid = 100 + u32::from(selector & 0x01);
    let fd = 3 + u32::from((selector >> 1) & 0x03);
    let sock = 0xffff_8000_0000_0000 + u64::from((selector >> 3) & 0x03);
    (pid, fd, sock)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut pipeline = Pipeline::new(PipelineConfig {
        enabled: protocols::default_enabled(),
        options: ParserOptions {
            include_query: true,
            raw_statements: false,
        },
        max_connections: 6,
        wall_offset_ns: 1_700_000_000_000_000_000,
        link: LinkConfig {
            window_ns: 1_000_000,
            max_spans: 16,
        },
    });
    pipeline.schedules_goroutines(GO_PID);
    let mut ts = 1_000_000u64;
    let mut steps = 0;
    while !input.0.is_empty() && steps < 256 {
        steps += 1;
        let control = input.byte();
        // Records of several CPUs interleave: time mostly goes on, at
        // times a little back.
        let step = u64::from(input.byte());
        ts = if step == 0xff {
            ts.saturating_sub(5_000)
        } else {
            ts + step * 1_000
        };
        let record = match control & 0x0f {
            0..=7 => {
                let (pid, fd, sock) = conn(input.byte());
                let flags = input.byte();
                let prefix = PREFIXES[usize::from(flags & 0x0f)];
                let tail_len = usize::from(input.byte());
                let mut payload = prefix.to_vec();
                payload.extend_from_slice(input.bytes(tail_len));
                let missing = match flags >> 6 {
                    0 | 1 => 0,
                    2 => u32::from(input.byte()),
                    _ => u32::from(input.byte()) * 1024,
                };
                let header = DataEvent {
                    kind: EventKind::Data as u8,
                    direction: (control >> 4) & 0x01,
                    syscall: control >> 5,
                    flags: (flags >> 4) & (DATA_FLAG_TLS | DATA_FLAG_TRUNCATED),
                    pid,
                    tid: pid + u32::from(control >> 7),
                    fd,
                    timestamp_ns: ts,
                    sock,
                    goroutine: goroutine(pid, &mut input),
                    total_len: u32::try_from(payload.len()).unwrap_or(u32::MAX) + missing,
                    captured_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                };
                let mut record = as_bytes(&header);
                record.extend_from_slice(&payload);
                record
            }
            8 | 9 => as_bytes(&conn_event(
                EventKind::ConnOpen,
                input.byte(),
                &mut input,
                ts,
            )),
            10 => as_bytes(&conn_event(
                EventKind::ConnClose,
                input.byte(),
                &mut input,
                ts,
            )),
            12 => {
                let selector = input.byte();
                as_bytes(&GoCallEvent {
                    kind: EventKind::GoCall as u8,
                    call: selector % 3,
                    _pad: [0; 2],
                    pid: 100 + u32::from((selector >> 2) & 0x01),
                    goroutine: goroutine(GO_PID, &mut input),
                    object: u64::from(selector >> 3),
                    timestamp_ns: ts,
                })
            }
            11 => {
                let selector = input.byte();
                let kind = match selector % 4 {
                    0 => EventKind::ProcessFork,
                    1 => EventKind::ProcessExec,
                    2 => EventKind::ProcessJoin,
                    _ => EventKind::ProcessExit,
                };
                let mut comm = [0u8; TASK_COMM_LEN];
                let name = input.bytes(usize::from(selector >> 4));
                comm[..name.len()].copy_from_slice(name);
                as_bytes(&ProcessEvent {
                    kind: kind as u8,
                    _pad: [0; 3],
                    pid: 100 + u32::from((selector >> 2) & 0x01),
                    parent_pid: 100,
                    _pad2: 0,
                    timestamp_ns: ts,
                    comm,
                })
            }
            13 => {
                // A record cut short or overlong, of any kind.
                let len = usize::from(input.byte());
                let mut record = vec![input.byte() % 8];
                record.extend_from_slice(input.bytes(len));
                record
            }
            14 => {
                let len = usize::from(input.byte());
                input.bytes(len).to_vec()
            }
            _ => {
                pipeline.evict_idle(ts.saturating_sub(u64::from(control >> 4) * 100_000));
                let _ = pipeline.take_batch();
                continue;
            }
        };
        pipeline.handle_record(&record);
        if control & 0xf0 == 0xf0 {
            let _ = pipeline.take_batch();
        }
    }
    pipeline.flush_linking();
    if let Some(batch) = pipeline.take_batch() {
        for span in batch.iter() {
            assert!(
                span.end_time_unix_nano >= span.start_time_unix_nano,
                "{span:?}"
            );
        }
    }
    let stats = pipeline.stats();
    assert!(stats.malformed_records <= stats.records);
    assert!(pipeline.connections_open() <= 6);
});
