//! Plaintext of Go's `crypto/tls`, read with uprobes in Go executables:
//! `(*Conn).Write` at its entry, `(*Conn).Read` at its entry and at each of
//! its return instructions (user space finds them by disassembling the
//! function: a uretprobe would rewrite a return address on a goroutine
//! stack, which Go moves when it grows).
//!
//! Go ≥ 1.17 passes arguments in registers (`RAX` the receiver, `RBX` and
//! `RCX` a slice's pointer and length; `RAX` the first result) and keeps the
//! running goroutine in `R14`: a `Read` is matched with its return by
//! goroutine, since the goroutine may resume on another thread after
//! waiting for data. The connection's fd is read from the `tls.Conn`
//! (`tracer_common::maps::go_offsets`) only when its `net.Conn` is a
//! `*net.TCPConn`; the socket behind it comes from the task's file table.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{maps::go_offsets, DataEvent, Direction, EventKind, Syscall, DATA_FLAG_TLS};

use crate::{
    emit::emit_flat,
    fdtable::socket_of_fd,
    maps::{traced_current, GoRead, GoroutineKey, GO_PROCESSES, GO_TLS_READS},
    socket::{ensure_connection, mark_tls, Tracked},
};

/// uprobe at the entry of `func (c *Conn) Write(b []byte) (int, error)`.
#[uprobe]
pub fn tracer_go_tls_write(ctx: ProbeContext) -> u32 {
    let _ = try_write(&ctx);
    0
}

/// uprobe at the entry of `func (c *Conn) Read(b []byte) (int, error)`.
#[uprobe]
pub fn tracer_go_tls_read(ctx: ProbeContext) -> u32 {
    let _ = try_read_entry(&ctx);
    0
}

/// uprobe at each return instruction of `(*Conn).Read`.
#[uprobe]
pub fn tracer_go_tls_read_ret(ctx: ProbeContext) -> u32 {
    let _ = try_read_return(&ctx);
    0
}

/// The registers of the probed instruction.
#[inline(always)]
fn regs(ctx: &ProbeContext) -> pt_regs {
    // SAFETY: `regs` is the probe's context, readable for the whole program.
    unsafe { *ctx.regs }
}

#[inline(always)]
fn try_write(ctx: &ProbeContext) -> Result<(), ()> {
    let (tgid, tid) = traced_current().ok_or(())?;
    let regs = regs(ctx);
    let (fd, sock) = socket_of_conn(tgid, tid, regs.rax)?;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    emit(
        Direction::Egress,
        Caller {
            tgid,
            tid,
            goroutine: regs.r14,
        },
        fd,
        sock,
        now,
        regs.rbx,
        regs.rcx,
    );
    Ok(())
}

#[inline(always)]
fn try_read_entry(ctx: &ProbeContext) -> Result<(), ()> {
    let (tgid, tid) = traced_current().ok_or(())?;
    let regs = regs(ctx);
    // Known before the call reads: its ciphertext is then not emitted.
    let (fd, sock) = socket_of_conn(tgid, tid, regs.rax)?;
    let key = GoroutineKey {
        g: regs.r14,
        tgid,
        _pad: 0,
    };
    let read = GoRead {
        buf: regs.rbx,
        sock,
        fd,
        _pad: 0,
    };
    GO_TLS_READS.insert(key, read, 0).map_err(|_| ())
}

#[inline(always)]
fn try_read_return(ctx: &ProbeContext) -> Result<(), ()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let regs = regs(ctx);
    let key = GoroutineKey {
        g: regs.r14,
        tgid,
        _pad: 0,
    };
    // SAFETY: plain lookup, copied before removal.
    let read = (unsafe { GO_TLS_READS.get(key) }).copied().ok_or(())?;
    let _ = GO_TLS_READS.remove(key);
    // `n int`: a negative count is no data.
    let moved = regs.rax;
    if moved == 0 || moved.cast_signed() < 0 {
        return Ok(());
    }
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    emit(
        Direction::Ingress,
        Caller {
            tgid,
            tid,
            goroutine: regs.r14,
        },
        read.fd,
        read.sock,
        now,
        read.buf,
        moved,
    );
    Ok(())
}

/// The fd and socket of the `*tls.Conn` at `conn`, made known to user
/// space and marked as carrying TLS.
#[inline(always)]
fn socket_of_conn(tgid: u32, tid: u32, conn: u64) -> Result<(u32, u64), ()> {
    // SAFETY: plain lookup.
    let process = unsafe { GO_PROCESSES.get(tgid) }.ok_or(())?;
    let itab = read_user(conn + go_offsets::TLS_CONN_ITAB)?;
    if itab != process.tcp_conn_itab {
        return Err(());
    }
    let tcp_conn = read_user(conn + go_offsets::TLS_CONN_DATA)?;
    let net_fd = read_user(tcp_conn + go_offsets::TCP_CONN_NETFD)?;
    let sysfd = read_user(net_fd + go_offsets::NETFD_SYSFD)?;
    let fd = u32::try_from(sysfd).map_err(|_| ())?;
    let sock = socket_of_fd(fd);
    if sock == 0 || ensure_connection(tgid, tid, fd, sock) == Tracked::No {
        return Err(());
    }
    mark_tls(tgid, fd);
    Ok((fd, sock))
}

/// A word of the traced process's memory.
#[inline(always)]
fn read_user(address: u64) -> Result<u64, ()> {
    // SAFETY: user memory of the traced process, read with the helper that
    // fails instead of faulting.
    unsafe { bpf_probe_read_user(address as *const u64) }.map_err(|_| ())
}

/// Who made a call: process, thread, goroutine.
struct Caller {
    tgid: u32,
    tid: u32,
    goroutine: u64,
}

#[inline(always)]
fn emit(
    direction: Direction,
    caller: Caller,
    fd: u32,
    sock: u64,
    timestamp_ns: u64,
    buf: u64,
    len: u64,
) {
    if len == 0 {
        return;
    }
    let syscall = match direction {
        Direction::Egress => Syscall::GoTlsWrite,
        Direction::Ingress => Syscall::GoTlsRead,
    };
    let header = DataEvent {
        kind: EventKind::Data as u8,
        direction: direction as u8,
        syscall: syscall as u8,
        flags: DATA_FLAG_TLS,
        pid: caller.tgid,
        tid: caller.tid,
        fd,
        timestamp_ns,
        sock,
        goroutine: caller.goroutine,
        total_len: 0,
        captured_len: 0,
    };
    emit_flat(header, buf, len);
}
