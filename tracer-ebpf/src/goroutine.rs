//! The goroutine running on the current thread of a Go process, for the
//! events of its syscalls: Go's scheduler moves goroutines between
//! threads, so in Go processes the linking stage follows goroutines, not
//! threads.
//!
//! Go keeps the running `g` in a thread-local slot (the register ABI also
//! holds it in `R14`, which a tracepoint does not see): at
//! `GoProcess::g_tls_offset` from the thread's FS base, which the kernel
//! keeps in `task_struct.thread.fsbase` (written by `arch_prctl(ARCH_SET_FS)`
//! or `clone(CLONE_SETTLS)`, the only ways Go and libc threads set it).
//! A goroutine stays on its thread for the whole syscall.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_user};

use crate::maps::{config, GO_PROCESSES};

/// The current goroutine if `tgid` is a registered Go process, else 0
/// (also when a read fails: the event then has no goroutine, never a
/// wrong one).
#[inline(always)]
pub fn current_goroutine(tgid: u32) -> u64 {
    // SAFETY: plain lookup.
    let Some(process) = (unsafe { GO_PROCESSES.get(tgid) }) else {
        return 0;
    };
    let fsbase_offset = config().task_fsbase;
    if process.g_tls_offset == 0 || fsbase_offset == 0 {
        return 0;
    }
    // SAFETY: no preconditions; the task is the running one.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: a fault-checked read of the running task; offset from BTF.
    let Ok(fsbase) =
        (unsafe { bpf_probe_read_kernel(task.add(fsbase_offset as usize).cast::<u64>()) })
    else {
        return 0;
    };
    if fsbase == 0 {
        return 0;
    }
    let slot = fsbase.wrapping_add_signed(process.g_tls_offset);
    // SAFETY: user memory of the running thread, read with the helper that
    // fails instead of faulting.
    unsafe { bpf_probe_read_user(slot as *const u64) }.unwrap_or(0)
}
