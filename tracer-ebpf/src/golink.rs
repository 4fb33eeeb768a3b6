//! Go uprobes for linking by goroutine; nothing is read from the
//! process's memory (register ABI, Go ≥ 1.17: the goroutine is `R14`,
//! arguments in `RAX`, `RBX`, ...).
//!
//! - Go's HTTP client writes a request from the connection's own
//!   `writeLoop` goroutine, not from the goroutine that made the call (a
//!   handler's). Two uprobes name both goroutines with the same
//!   `*http.Request`; user space joins them, so the request's bytes count
//!   as sent by the caller.
//! - `runtime.newproc1` makes every new goroutine (a `go` statement): its
//!   entry has the creator (`callergp`, Go ≥ 1.18), each of its return
//!   instructions the new `g` (found by disassembling it; no uretprobes on
//!   Go stacks). It runs on the thread's system stack, which is never
//!   switched away, so entry and return meet by thread.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{EventKind, GoCall, GoCallEvent};

use crate::{
    emit::output_record,
    maps::{traced_current, GO_SPAWNS},
};

/// uprobe at the entry of
/// `func (t *Transport) roundTrip(req *Request) (*Response, error)`:
/// `req` in `RBX`.
#[uprobe]
pub fn tracer_go_round_trip(ctx: ProbeContext) -> u32 {
    let regs = regs(&ctx);
    emit(GoCall::RoundTrip, regs.r14, regs.rbx);
    0
}

/// uprobe at the entry of `func (r *Request) write(w io.Writer, ...)`
/// (called by `persistConn.writeLoop`): `r` in `RAX`.
#[uprobe]
pub fn tracer_go_request_write(ctx: ProbeContext) -> u32 {
    let regs = regs(&ctx);
    emit(GoCall::RequestWrite, regs.r14, regs.rax);
    0
}

/// uprobe at the entry of `func newproc1(fn *funcval, callergp *g, ...)
/// *g`: the creator in `RBX`, kept for the return.
#[uprobe]
pub fn tracer_go_newproc(ctx: ProbeContext) -> u32 {
    if traced_current().is_some() {
        let _ = GO_SPAWNS.insert(bpf_get_current_pid_tgid(), regs(&ctx).rbx, 0);
    }
    0
}

/// uprobe at each return instruction of `newproc1`: the new `g` in `RAX`.
#[uprobe]
pub fn tracer_go_newproc_ret(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: plain lookup, copied before removal.
    let Some(creator) = (unsafe { GO_SPAWNS.get(pid_tgid) }).copied() else {
        return 0;
    };
    let _ = GO_SPAWNS.remove(pid_tgid);
    emit(GoCall::Spawn, regs(&ctx).rax, creator);
    0
}

/// The registers of the probed instruction.
#[inline(always)]
fn regs(ctx: &ProbeContext) -> pt_regs {
    // SAFETY: `regs` is the probe's context, readable for the whole program.
    unsafe { *ctx.regs }
}

#[inline(always)]
fn emit(call: GoCall, goroutine: u64, object: u64) {
    let Some((tgid, _)) = traced_current() else {
        return;
    };
    if goroutine == 0 || object == 0 {
        return;
    }
    let event = GoCallEvent {
        kind: EventKind::GoCall as u8,
        call: call as u8,
        _pad: [0; 2],
        pid: tgid,
        goroutine,
        object,
        // SAFETY: no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    };
    output_record(&event);
}
