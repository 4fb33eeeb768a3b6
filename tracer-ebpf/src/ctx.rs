//! Fields of a `syscalls/sys_{enter,exit}_*` tracepoint record, loaded
//! straight from the context: the verifier lets a tracepoint program read
//! its own record, which is several times cheaper than a
//! `bpf_probe_read_kernel` call per field.
//!
//! Layout (`/sys/kernel/tracing/events/syscalls/*/format`): 8 bytes of common
//! fields, the syscall number, then the arguments from offset 16, 8 bytes
//! each; on exit `long ret` at offset 16.

use aya_ebpf::{programs::TracePointContext, EbpfContext as _};

/// Offset of the first syscall argument, and of `ret` on exit.
const FIRST_FIELD: usize = 16;

/// Syscall argument `index` (0-based) of a `sys_enter_*` record.
#[inline(always)]
pub fn syscall_arg<const INDEX: usize>(ctx: &TracePointContext) -> u64 {
    // SAFETY: every sys_enter record holds its syscall's arguments, 8 bytes
    // each from FIRST_FIELD; the verifier checks the constant offset
    // against the record size.
    unsafe {
        ctx.as_ptr()
            .cast::<u8>()
            .add(FIRST_FIELD + INDEX * 8)
            .cast::<u64>()
            .read()
    }
}

/// The `ret` field of a `sys_exit_*` record.
#[inline(always)]
pub fn syscall_ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: every sys_exit record holds `long ret` at FIRST_FIELD.
    unsafe {
        ctx.as_ptr()
            .cast::<u8>()
            .add(FIRST_FIELD)
            .cast::<i64>()
            .read()
    }
}
