//! Sockets: which syscalls reach one (sock `tp_btf` hooks), how traced
//! connections start (connect, accept) and end (close), and their addresses.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use tracer_common::{maps::Counter, ConnEvent, EventKind, Role, AF_INET, AF_INET6};

use crate::{
    ctx::{syscall_arg, syscall_ret},
    emit::output_record,
    maps::{
        config, count, finish_in_flight, in_flight_slot, socket_key, traced_current, SocketState,
        IN_FLIGHT, SOCKETS, SYSCALL_CONNECT,
    },
};

/// `-EINPROGRESS`: a non-blocking connect under way counts as connected.
const EINPROGRESS: i64 = -115;

/// `tp_btf` `sock_send_length(struct sock *sk, int ret, int flags)`, fired by
/// `sock_sendmsg_nosec()` for every send on any socket, whatever the syscall.
#[btf_tracepoint(function = "sock_send_length")]
pub fn tracer_sock_send(ctx: BtfTracePointContext) -> i32 {
    mark_socket(&ctx);
    0
}

/// `tp_btf` `sock_recv_length(struct sock *sk, int ret, int flags)`, fired by
/// `sock_recvmsg_nosec()` for every receive on any socket.
#[btf_tracepoint(function = "sock_recv_length")]
pub fn tracer_sock_recv(ctx: BtfTracePointContext) -> i32 {
    mark_socket(&ctx);
    0
}

/// Records the socket in the thread's in-flight syscall, if any: only a
/// syscall marked here is a socket syscall worth emitting.
#[inline(always)]
fn mark_socket(ctx: &BtfTracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(in_flight) = IN_FLIGHT.get_ptr_mut(pid_tgid) {
        let sk: u64 = ctx.arg(0);
        // SAFETY: the entry belongs to this thread, which is running here.
        unsafe { (*in_flight).sock = sk };
    }
}

/// tracepoint `syscalls/sys_enter_connect(int fd, struct sockaddr *uservaddr, int addrlen)`.
#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn tracer_enter_connect(ctx: TracePointContext) -> u32 {
    let Some(_) = traced_current() else { return 0 };
    let Some(slot) = in_flight_slot(bpf_get_current_pid_tgid()) else {
        return 0;
    };
    // SAFETY: the slot belongs to the calling thread, which is running here.
    unsafe {
        (*slot).fd = syscall_arg::<0>(&ctx) as u32;
        (*slot).sock = 0;
        (*slot).syscall = SYSCALL_CONNECT;
    }
    0
}

/// tracepoint `syscalls/sys_exit_connect`: the socket is ours as a client.
#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn tracer_exit_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(in_flight) = finish_in_flight(pid_tgid) else {
        return 0;
    };
    if in_flight.syscall != SYSCALL_CONNECT {
        return 0;
    }
    let ret = syscall_ret(&ctx);
    if ret == 0 || ret == EINPROGRESS {
        remember_role((pid_tgid >> 32) as u32, in_flight.fd, Role::Client);
    }
    0
}

/// tracepoint `syscalls/sys_exit_accept4`: the returned fd is ours as a server.
#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn tracer_exit_accept4(ctx: TracePointContext) -> u32 {
    on_accept(&ctx);
    0
}

/// tracepoint `syscalls/sys_exit_accept`.
#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn tracer_exit_accept(ctx: TracePointContext) -> u32 {
    on_accept(&ctx);
    0
}

#[inline(always)]
fn on_accept(ctx: &TracePointContext) {
    let Some((tgid, _)) = traced_current() else {
        return;
    };
    let ret = syscall_ret(ctx);
    if ret >= 0 {
        remember_role(tgid, ret as u32, Role::Server);
    }
}

#[inline(always)]
fn remember_role(tgid: u32, fd: u32, role: Role) {
    let state = SocketState {
        sock: 0,
        role: role as u8,
        ignored: 0,
        tls: 0,
        _pad: [0; 5],
    };
    if SOCKETS.insert(socket_key(tgid, fd), state, 0).is_err() {
        count(Counter::SocketTableFull);
    }
}

/// tracepoint `syscalls/sys_enter_close(unsigned int fd)`: a traced socket ends.
#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn tracer_enter_close(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid)) = traced_current() else {
        return 0;
    };
    let fd = syscall_arg::<0>(&ctx) as u32;
    let key = socket_key(tgid, fd);
    // SAFETY: plain lookup; copied before removal.
    let Some(state) = (unsafe { SOCKETS.get(key) }).copied() else {
        return 0;
    };
    let _ = SOCKETS.remove(key);
    if state.ignored != 0 || state.sock == 0 {
        return 0;
    }
    let mut event = empty_conn_event(EventKind::ConnClose, tgid, tid, fd, state.sock);
    event.role = state.role;
    output_record(&event);
    0
}

/// What [`ensure_connection`] found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// Not worth emitting (not IPv4/IPv6).
    No,
    Plain,
    /// Decrypted by a hooked TLS library: emit plaintext only.
    Tls,
}

/// Makes sure user space knows the connection behind `(tgid, fd)` is `sock`,
/// emitting its addresses the first time.
#[inline(always)]
pub fn ensure_connection(tgid: u32, tid: u32, fd: u32, sock: u64) -> Tracked {
    let key = socket_key(tgid, fd);
    let mut role = Role::Unknown as u8;
    // SAFETY: plain lookup.
    if let Some(state) = unsafe { SOCKETS.get(key) } {
        if state.sock == sock {
            return if state.ignored != 0 {
                Tracked::No
            } else if state.tls != 0 {
                Tracked::Tls
            } else {
                Tracked::Plain
            };
        }
        if state.sock == 0 {
            role = state.role; // connect/accept seen, first data now
        }
    }
    let cfg = config();
    let sk = sock as *const u8;
    // SAFETY: `sk` came from the sock tp_btf hook of this very syscall; offsets from BTF.
    let family: u16 =
        unsafe { bpf_probe_read_kernel(sk.add(cfg.sock_family as usize).cast()) }.unwrap_or(0);
    let ignored = family != AF_INET && family != AF_INET6;
    let state = SocketState {
        sock,
        role,
        ignored: u8::from(ignored),
        tls: 0,
        _pad: [0; 5],
    };
    if SOCKETS.insert(key, state, 0).is_err() {
        count(Counter::SocketTableFull);
    }
    if ignored {
        return Tracked::No;
    }
    let mut event = empty_conn_event(EventKind::ConnOpen, tgid, tid, fd, sock);
    event.role = role;
    event.family = family;
    // SAFETY: (all reads) kernel memory of a live sock at BTF offsets; a
    // failed read leaves zeros, which user space shows as unknown.
    unsafe {
        event.protocol =
            bpf_probe_read_kernel(sk.add(cfg.sock_protocol as usize).cast::<u16>()).unwrap_or(0);
        event.local_port =
            bpf_probe_read_kernel(sk.add(cfg.sock_num as usize).cast::<u16>()).unwrap_or(0);
        let dport: u16 = bpf_probe_read_kernel(sk.add(cfg.sock_dport as usize).cast()).unwrap_or(0);
        event.remote_port = u16::from_be(dport);
        if family == AF_INET {
            let local: [u8; 4] =
                bpf_probe_read_kernel(sk.add(cfg.sock_rcv_saddr as usize).cast()).unwrap_or([0; 4]);
            let remote: [u8; 4] =
                bpf_probe_read_kernel(sk.add(cfg.sock_daddr as usize).cast()).unwrap_or([0; 4]);
            event.local_addr[..4].copy_from_slice(&local);
            event.remote_addr[..4].copy_from_slice(&remote);
        } else {
            event.local_addr = bpf_probe_read_kernel(sk.add(cfg.sock_v6_rcv_saddr as usize).cast())
                .unwrap_or([0; 16]);
            event.remote_addr =
                bpf_probe_read_kernel(sk.add(cfg.sock_v6_daddr as usize).cast()).unwrap_or([0; 16]);
        }
    }
    output_record(&event);
    Tracked::Plain
}

/// From now on the socket's ciphertext is not emitted.
#[inline(always)]
pub fn mark_tls(tgid: u32, fd: u32) {
    if let Some(state) = SOCKETS.get_ptr_mut(socket_key(tgid, fd)) {
        // SAFETY: the entry is only written by this process's threads; a
        // racing writer would set the same flag.
        unsafe { (*state).tls = 1 };
    }
}

#[inline(always)]
fn empty_conn_event(kind: EventKind, tgid: u32, tid: u32, fd: u32, sock: u64) -> ConnEvent {
    ConnEvent {
        kind: kind as u8,
        role: 0,
        family: 0,
        pid: tgid,
        tid,
        fd,
        // SAFETY: no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        sock,
        local_addr: [0; 16],
        remote_addr: [0; 16],
        local_port: 0,
        remote_port: 0,
        protocol: 0,
        _pad: 0,
    }
}
