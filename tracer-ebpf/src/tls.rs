//! Plaintext of TLS connections, read at OpenSSL's boundary with uprobes on
//! `SSL_write`, `SSL_write_ex`, `SSL_read` and `SSL_read_ex`.
//!
//! Without kprobes the `SSL *` cannot be tied to its socket by reading
//! OpenSSL's internals portably; instead the socket syscall OpenSSL makes on
//! the same thread *inside* the call names it ([`note_socket_of_ssl_call`]),
//! and is remembered per `SSL *` for calls served from OpenSSL's buffers.
//! Event loops (Node.js, Python asyncio) decrypt from memory BIOs: no
//! syscall inside the call. Their plaintext goes to user space unbound
//! (`DATA_FLAG_TLS_UNBOUND`), which ties the `SSL *` to the socket whose
//! ciphertext the thread moved next to the call, and writes what it learnt
//! into `SSL_SOCKETS`.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    maps::{Counter, SslKey, SslSocket},
    DataEvent, Direction, EventKind, Syscall, DATA_FLAG_TLS, DATA_FLAG_TLS_UNBOUND,
};

use crate::{
    emit::emit_flat,
    maps::{
        count, in_flight_slot, socket_key, traced_current, SslCall, SOCKETS, SSL_IN_FLIGHT,
        SSL_SOCKETS,
    },
    socket::{ensure_connection, mark_tls, Tracked},
};

/// uprobe `int SSL_write(SSL *ssl, const void *buf, int num)`.
#[uprobe]
pub fn tracer_ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, Syscall::SslWrite, false);
    0
}

/// uprobe `int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written)`.
#[uprobe]
pub fn tracer_ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, Syscall::SslWrite, true);
    0
}

/// uprobe `int SSL_read(SSL *ssl, void *buf, int num)`.
#[uprobe]
pub fn tracer_ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, Syscall::SslRead, false);
    0
}

/// uprobe `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`.
#[uprobe]
pub fn tracer_ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, Syscall::SslRead, true);
    0
}

#[inline(always)]
fn enter(ctx: &ProbeContext, syscall: Syscall, ex: bool) {
    if traced_current().is_none() {
        return;
    }
    let (Some(ssl), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return;
    };
    let count_out = if ex {
        ctx.arg::<u64>(3).unwrap_or(0)
    } else {
        0
    };
    let call = SslCall {
        ssl,
        buf,
        count_out,
        sock: 0,
        // SAFETY: no preconditions.
        enter_ns: unsafe { bpf_ktime_get_ns() },
        fd: 0,
        syscall: syscall as u8,
        _pad: [0; 3],
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if SSL_IN_FLIGHT.insert(pid_tgid, call, 0).is_err() {
        count(Counter::InFlightFull);
        return;
    }
    set_in_tls_call(pid_tgid, 1);
}

/// Tells the thread's socket syscalls whether they run inside a TLS call.
#[inline(always)]
fn set_in_tls_call(pid_tgid: u64, inside: u8) {
    if let Some(slot) = in_flight_slot(pid_tgid) {
        // SAFETY: the slot belongs to the calling thread, which is running here.
        unsafe { (*slot).in_tls_call = inside };
    }
}

/// uretprobe on all four functions: emits the plaintext that moved.
#[uretprobe]
pub fn tracer_ssl_ret(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: plain lookup; copied before removal.
    let Some(call) = (unsafe { SSL_IN_FLIGHT.get(pid_tgid) }).copied() else {
        return 0;
    };
    let _ = SSL_IN_FLIGHT.remove(pid_tgid);
    set_in_tls_call(pid_tgid, 0);
    let ret: i64 = i64::from(ctx.ret::<i32>());
    if ret <= 0 {
        return 0;
    }
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    let moved = if call.count_out != 0 {
        // SAFETY: user pointer given to the `_ex` call, filled on success.
        match unsafe { bpf_probe_read_user(call.count_out as *const u64) } {
            Ok(n) => n,
            Err(_) => return 0,
        }
    } else {
        ret as u64
    };
    if moved == 0 {
        return 0;
    }
    let key = SslKey {
        ssl: call.ssl,
        tgid,
        _pad: 0,
    };
    let (fd, sock) = if call.sock != 0 {
        let socket = SslSocket {
            sock: call.sock,
            fd: call.fd,
            _pad: 0,
        };
        let _ = SSL_SOCKETS.insert(key, socket, 0);
        (call.fd, call.sock)
    } else if let Some(socket) = socket_still_open(&key) {
        (socket.fd, socket.sock)
    } else {
        emit_unbound(&call, tgid, tid, moved);
        return 0;
    };
    if ensure_connection(tgid, tid, fd, sock) == Tracked::No {
        return 0;
    }
    mark_tls(tgid, fd);
    emit_plaintext(&call, tgid, tid, DATA_FLAG_TLS, fd, sock, moved);
    0
}

/// The socket `SSL_SOCKETS` names for `key`, if the process still has it
/// open under that fd (a closed connection's `SSL *` may be reused by the
/// next one: its old entry is dropped).
#[inline(always)]
fn socket_still_open(key: &SslKey) -> Option<SslSocket> {
    // SAFETY: plain lookup, copied out.
    let socket = (unsafe { SSL_SOCKETS.get(key) }).copied()?;
    // SAFETY: plain lookup.
    let open = unsafe { SOCKETS.get(socket_key(key.tgid, socket.fd)) };
    if open.is_some_and(|state| state.sock == socket.sock) {
        Some(socket)
    } else {
        let _ = SSL_SOCKETS.remove(key);
        None
    }
}

/// Plaintext of a call whose socket is not known here: `sock` carries the
/// `SSL *` for user space to tie to a socket.
#[inline(always)]
fn emit_unbound(call: &SslCall, tgid: u32, tid: u32, moved: u64) {
    emit_plaintext(
        call,
        tgid,
        tid,
        DATA_FLAG_TLS | DATA_FLAG_TLS_UNBOUND,
        0,
        call.ssl,
        moved,
    );
}

#[inline(always)]
fn emit_plaintext(call: &SslCall, tgid: u32, tid: u32, flags: u8, fd: u32, sock: u64, moved: u64) {
    let syscall = if call.syscall == Syscall::SslWrite as u8 {
        Syscall::SslWrite
    } else {
        Syscall::SslRead
    };
    let direction = syscall.direction();
    let header = DataEvent {
        kind: EventKind::Data as u8,
        direction: direction as u8,
        syscall: syscall as u8,
        flags,
        pid: tgid,
        tid,
        fd,
        timestamp_ns: match direction {
            Direction::Egress => call.enter_ns,
            // SAFETY: no preconditions.
            Direction::Ingress => unsafe { bpf_ktime_get_ns() },
        },
        sock,
        // OpenSSL in a Go process (cgo) is rare; its calls are not
        // followed by goroutine.
        goroutine: 0,
        total_len: 0,
        captured_len: 0,
    };
    emit_flat(header, call.buf, moved);
}

/// Called from a socket syscall's exit: if this thread is inside an SSL
/// call, the socket is that call's, its bytes are ciphertext, and nothing is
/// to be emitted for the syscall itself (returns true).
#[inline(always)]
pub fn note_socket_of_ssl_call(pid_tgid: u64, tgid: u32, fd: u32, sock: u64) -> bool {
    let Some(call) = SSL_IN_FLIGHT.get_ptr_mut(pid_tgid) else {
        return false;
    };
    // SAFETY: the entry belongs to this thread, which is running here.
    unsafe {
        (*call).fd = fd;
        (*call).sock = sock;
    }
    mark_tls(tgid, fd);
    true
}
