//! Payload syscalls: `sys_enter_*` remembers the arguments, `sys_exit_*`
//! copies what moved if the syscall reached a traced IPv4/IPv6 socket.
//!
//! Every hook here is a `syscalls/sys_{enter,exit}_<name>` tracepoint (record
//! layout in [`crate::ctx`]).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated::bpf_loop,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    maps::{Counter, TRACED_GO},
    DataEvent, Direction, EventKind, IovecWalk, SocketLookup, Syscall, MAX_IOVECS, MAX_MMSG,
    MAX_MMSG_IOVECS,
};

use crate::{
    ctx::{syscall_arg, syscall_ret},
    emit::{emit_flat, DataBuilder},
    fdtable::socket_of_fd,
    goroutine::current_goroutine,
    maps::{config, count, finish_in_flight, in_flight_slot, traced_current_with_flags, InFlight},
    socket::{ensure_connection, Tracked},
    tls::note_socket_of_ssl_call,
};

/// `struct iovec` as user space lays it out.
#[repr(C)]
#[derive(Clone, Copy)]
struct IoVec {
    base: u64,
    len: u64,
}

/// The part of `struct msghdr` (user layout) the capture needs.
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;
/// `struct mmsghdr`: a msghdr (56 bytes) then `unsigned int msg_len`, padded to 64.
const MMSGHDR_SIZE: u64 = 64;
const MMSGHDR_LEN: u64 = 56;

#[inline(always)]
fn on_enter(ctx: &TracePointContext, syscall: Syscall) {
    let Some((_, _, traced)) = traced_current_with_flags() else {
        return;
    };
    let Some(slot) = in_flight_slot(bpf_get_current_pid_tgid()) else {
        return;
    };
    // Only sends are stamped at entry (a request or response starts when
    // the process hands it over); receives are stamped at exit.
    let enter_ns = match syscall.direction() {
        // SAFETY: no preconditions.
        Direction::Egress => unsafe { bpf_ktime_get_ns() },
        Direction::Ingress => 0,
    };
    // SAFETY: the slot belongs to the calling thread, which is running here.
    // `in_tls_call` is left as the TLS hooks set it.
    unsafe {
        (*slot).fd = syscall_arg::<0>(ctx) as u32;
        (*slot).buf = syscall_arg::<1>(ctx);
        (*slot).count = syscall_arg::<2>(ctx) as u32;
        (*slot).sock = 0;
        (*slot).enter_ns = enter_ns;
        (*slot).syscall = syscall as u8;
        (*slot).go = u8::from(traced & TRACED_GO != 0);
    }
}

/// `walk`: how readv/writev/recvmsg/sendmsg walk their iovecs (a constant
/// per program; the other syscalls have no iovec array of their own).
#[inline(always)]
fn on_exit(ctx: &TracePointContext, syscall: Syscall, walk: IovecWalk) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(in_flight) = finish_in_flight(pid_tgid) else {
        return;
    };
    if in_flight.syscall != syscall as u8 {
        return; // a mismatched pair
    }
    let ret = syscall_ret(ctx);
    if ret <= 0 {
        return;
    }
    let sock = socket_of_syscall(&in_flight);
    if sock == 0 {
        return; // not a socket: file, pipe, ...
    }
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    match ensure_connection(tgid, tid, in_flight.fd, sock) {
        // Not IPv4/IPv6; or ciphertext, whose plaintext the TLS hooks emit.
        Tracked::No | Tracked::Tls => return,
        Tracked::Plain => {}
    }
    if in_flight.in_tls_call != 0 && note_socket_of_ssl_call(pid_tgid, tgid, in_flight.fd, sock) {
        return;
    }
    let direction = syscall.direction();
    let timestamp_ns = match direction {
        Direction::Egress => in_flight.enter_ns,
        // SAFETY: no preconditions.
        Direction::Ingress => unsafe { bpf_ktime_get_ns() },
    };
    let header = DataEvent {
        kind: EventKind::Data as u8,
        direction: direction as u8,
        syscall: syscall as u8,
        flags: 0,
        pid: tgid,
        tid,
        fd: in_flight.fd,
        timestamp_ns,
        sock,
        goroutine: if in_flight.go == 0 {
            0
        } else {
            current_goroutine(tgid)
        },
        total_len: 0,
        captured_len: 0,
    };
    match syscall {
        Syscall::Read | Syscall::Write | Syscall::Recvfrom | Syscall::Sendto => {
            emit_flat(header, in_flight.buf, ret as u64);
        }
        Syscall::Readv | Syscall::Writev => {
            emit_iovecs::<MAX_IOVECS>(header, in_flight.buf, in_flight.count, ret as u64, walk);
        }
        Syscall::Recvmsg | Syscall::Sendmsg => {
            emit_msghdr(header, in_flight.buf, ret as u64, walk);
        }
        Syscall::Recvmmsg | Syscall::Sendmmsg => emit_mmsghdrs(header, in_flight.buf, ret as u64),
        Syscall::Sendfile => emit_size_only(header, ret as u64),
        Syscall::SslRead | Syscall::SslWrite | Syscall::GoTlsRead | Syscall::GoTlsWrite => {}
    }
}

/// The `struct sock` the finished syscall moved data through, 0 if none.
#[inline(always)]
fn socket_of_syscall(in_flight: &InFlight) -> u64 {
    if config().socket_lookup == SocketLookup::FdTable as u32 {
        socket_of_fd(in_flight.fd)
    } else {
        in_flight.sock // set by the sock tp_btf hooks inside the syscall
    }
}

#[inline(always)]
fn emit_size_only(mut header: DataEvent, moved: u64) {
    let Some(data) = DataBuilder::new(0) else {
        return;
    };
    header.total_len = moved as u32;
    data.submit(header);
}

#[inline(always)]
fn emit_iovecs<const MAX: u32>(
    mut header: DataEvent,
    iov: u64,
    iov_count: u32,
    moved: u64,
    walk: IovecWalk,
) {
    let Some(mut data) = DataBuilder::new(moved as usize) else {
        return;
    };
    header.total_len = moved as u32;
    match walk {
        IovecWalk::Unrolled => copy_iovecs::<MAX>(&mut data, iov, iov_count),
        IovecWalk::BpfLoop => data = copy_iovecs_bpf_loop::<MAX>(data, iov, iov_count),
    }
    data.submit(header);
}

#[inline(always)]
fn emit_msghdr(header: DataEvent, msg: u64, moved: u64, walk: IovecWalk) {
    // SAFETY: user pointers; a failed read drops the event.
    let (Ok(iov), Ok(iov_count)) = (unsafe {
        (
            bpf_probe_read_user((msg + MSGHDR_IOV) as *const u64),
            bpf_probe_read_user((msg + MSGHDR_IOVLEN) as *const u64),
        )
    }) else {
        count(Counter::PayloadReadFailed);
        return;
    };
    emit_iovecs::<MAX_IOVECS>(header, iov, iov_count as u32, moved, walk);
}

/// One event per message: each datagram of `sendmmsg`/`recvmmsg` is a
/// message of its own (e.g. glibc's A and AAAA DNS queries).
#[inline(always)]
fn emit_mmsghdrs(header: DataEvent, mmsg: u64, messages: u64) {
    for i in 0..MAX_MMSG {
        if u64::from(i) >= messages {
            break;
        }
        let entry = mmsg + u64::from(i) * MMSGHDR_SIZE;
        // SAFETY: user pointers; a failed read ends the loop.
        let (Ok(iov), Ok(iov_count), Ok(len)) = (unsafe {
            (
                bpf_probe_read_user((entry + MSGHDR_IOV) as *const u64),
                bpf_probe_read_user((entry + MSGHDR_IOVLEN) as *const u64),
                bpf_probe_read_user((entry + MMSGHDR_LEN) as *const u32),
            )
        }) else {
            count(Counter::PayloadReadFailed);
            return;
        };
        // Few iovecs per message: unrolled on every kernel.
        emit_iovecs::<MAX_MMSG_IOVECS>(
            header,
            iov,
            iov_count as u32,
            u64::from(len),
            IovecWalk::Unrolled,
        );
    }
}

#[inline(always)]
fn copy_iovecs<const MAX: u32>(data: &mut DataBuilder, iov: u64, iov_count: u32) {
    for i in 0..MAX {
        if i >= iov_count || data.captured >= data.limit {
            break;
        }
        // SAFETY: user pointer; a failed read ends the copy.
        let Ok(vec) = (unsafe { bpf_probe_read_user((iov + u64::from(i) * 16) as *const IoVec) })
        else {
            count(Counter::PayloadReadFailed);
            break;
        };
        data.append_user(vec.base, vec.len as usize);
    }
}

/// An iovec walk in progress under `bpf_loop`: on the program's stack, and
/// handed to [`copy_iovec_at`] at each step.
struct LoopWalk {
    data: DataBuilder,
    iov: u64,
    iov_count: u32,
}

/// [`copy_iovecs`] with the helper `bpf_loop` (Linux 5.17+) as the loop: the
/// verifier checks [`copy_iovec_at`] once instead of `MAX` unrolled copies,
/// which cuts its time on each iovec program from ~1 s to a few ms. The
/// program holding it cannot load on older kernels (the callback's address
/// is a `BPF_PSEUDO_FUNC` load, 5.13+, and the helper 5.17+): user space
/// loads the [`IovecWalk::Unrolled`] program there.
#[inline(always)]
fn copy_iovecs_bpf_loop<const MAX: u32>(
    data: DataBuilder,
    iov: u64,
    iov_count: u32,
) -> DataBuilder {
    let mut walk = LoopWalk {
        data,
        iov,
        iov_count,
    };
    let steps = if iov_count < MAX { iov_count } else { MAX };
    // SAFETY: `copy_iovec_at` takes `walk` as its context, which lives on
    // this stack frame until the helper returns.
    unsafe {
        bpf_loop(
            steps,
            copy_iovec_at as *mut c_void,
            (&raw mut walk).cast::<c_void>(),
            0,
        );
    }
    walk.data
}

/// `bpf_loop` callback: copies iovec `index` of the [`LoopWalk`] at `ctx`.
/// Returns 1 to end the loop (the cap is reached or a read failed), 0 to go on.
///
/// A subprogram of its own, not inlined: `bpf_loop` takes its address.
#[inline(never)]
extern "C" fn copy_iovec_at(index: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: `bpf_loop` passes the context `copy_iovecs_bpf_loop` gave it,
    // a live `LoopWalk` on the caller's stack.
    let walk = unsafe { &mut *ctx.cast::<LoopWalk>() };
    if index >= walk.iov_count || walk.data.captured >= walk.data.limit {
        return 1;
    }
    // SAFETY: user pointer; a failed read ends the copy.
    let Ok(vec) =
        (unsafe { bpf_probe_read_user((walk.iov + u64::from(index) * 16) as *const IoVec) })
    else {
        count(Counter::PayloadReadFailed);
        return 1;
    };
    walk.data.append_user(vec.base, vec.len as usize);
    0
}

macro_rules! syscall_hooks {
    ($($syscall:ident => $enter:ident, $exit:ident, $enter_tp:literal, $exit_tp:literal;)*) => {$(
        #[doc = concat!("tracepoint `syscalls/", $enter_tp, "`.")]
        #[tracepoint(category = "syscalls", name = $enter_tp)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            on_enter(&ctx, Syscall::$syscall);
            0
        }

        #[doc = concat!("tracepoint `syscalls/", $exit_tp, "`.")]
        #[tracepoint(category = "syscalls", name = $exit_tp)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            on_exit(&ctx, Syscall::$syscall, IovecWalk::Unrolled);
            0
        }
    )*};
}

/// The exits that walk an iovec array, again with [`IovecWalk::BpfLoop`]:
/// user space loads these instead of the unrolled ones where the kernel has
/// `bpf_loop` (5.17+).
macro_rules! bpf_loop_exits {
    ($($syscall:ident => $exit:ident, $exit_tp:literal;)*) => {$(
        #[doc = concat!("tracepoint `syscalls/", $exit_tp, "`, iovecs walked with `bpf_loop` (5.17+).")]
        #[tracepoint(category = "syscalls", name = $exit_tp)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            on_exit(&ctx, Syscall::$syscall, IovecWalk::BpfLoop);
            0
        }
    )*};
}

bpf_loop_exits! {
    Readv => tracer_exit_readv_loop, "sys_exit_readv";
    Writev => tracer_exit_writev_loop, "sys_exit_writev";
    Recvmsg => tracer_exit_recvmsg_loop, "sys_exit_recvmsg";
    Sendmsg => tracer_exit_sendmsg_loop, "sys_exit_sendmsg";
}

syscall_hooks! {
    Read => tracer_enter_read, tracer_exit_read, "sys_enter_read", "sys_exit_read";
    Write => tracer_enter_write, tracer_exit_write, "sys_enter_write", "sys_exit_write";
    Readv => tracer_enter_readv, tracer_exit_readv, "sys_enter_readv", "sys_exit_readv";
    Writev => tracer_enter_writev, tracer_exit_writev, "sys_enter_writev", "sys_exit_writev";
    Recvfrom => tracer_enter_recvfrom, tracer_exit_recvfrom, "sys_enter_recvfrom", "sys_exit_recvfrom";
    Sendto => tracer_enter_sendto, tracer_exit_sendto, "sys_enter_sendto", "sys_exit_sendto";
    Recvmsg => tracer_enter_recvmsg, tracer_exit_recvmsg, "sys_enter_recvmsg", "sys_exit_recvmsg";
    Sendmsg => tracer_enter_sendmsg, tracer_exit_sendmsg, "sys_enter_sendmsg", "sys_exit_sendmsg";
    Recvmmsg => tracer_enter_recvmmsg, tracer_exit_recvmmsg, "sys_enter_recvmmsg", "sys_exit_recvmmsg";
    Sendmmsg => tracer_enter_sendmmsg, tracer_exit_sendmmsg, "sys_enter_sendmmsg", "sys_exit_sendmmsg";
    Sendfile => tracer_enter_sendfile, tracer_exit_sendfile, "sys_enter_sendfile64", "sys_exit_sendfile64";
}
