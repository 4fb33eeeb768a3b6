//! Go's HTTP client, for linking: `http.Client` writes a request from the
//! connection's own `writeLoop` goroutine, not from the goroutine that
//! made the call (a handler's). Two uprobes name both goroutines with the
//! same `*http.Request`; user space joins them, so the request's bytes
//! count as sent by the caller. Nothing is read from the process's memory:
//! the goroutine is `R14` and the request pointer an argument register
//! (register ABI, Go ≥ 1.17).

use aya_ebpf::{
    bindings::pt_regs, helpers::bpf_ktime_get_ns, macros::uprobe, programs::ProbeContext,
};
use tracer_common::{EventKind, GoCall, GoCallEvent};

use crate::{emit::output_record, maps::traced_current};

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

/// The registers of the probed instruction.
#[inline(always)]
fn regs(ctx: &ProbeContext) -> pt_regs {
    // SAFETY: `regs` is the probe's context, readable for the whole program.
    unsafe { *ctx.regs }
}

#[inline(always)]
fn emit(call: GoCall, goroutine: u64, request: u64) {
    let Some((tgid, _)) = traced_current() else {
        return;
    };
    if goroutine == 0 || request == 0 {
        return;
    }
    let event = GoCallEvent {
        kind: EventKind::GoCall as u8,
        call: call as u8,
        _pad: [0; 2],
        pid: tgid,
        goroutine,
        object: request,
        // SAFETY: no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    };
    output_record(&event);
}
