//! Kernel programs of the tracer.
//!
//! The capture stands on syscall tracepoints, BTF tracepoints (`tp_btf`) and
//! scheduler tracepoints only, because kprobes and fentry are missing on many
//! kernels (and on our CI machines). `sys_enter_*` remembers the in-flight
//! syscall of the thread; the matching `sys_exit_*` emits the payload only if
//! the syscall moved data through a socket. Which socket, one of two ways
//! chosen by user space per kernel (`tracer_common::SocketLookup`):
//! - Linux 6.3+: the `sock_send_length`/`sock_recv_length` `tp_btf` hooks fire
//!   inside the syscall only when it reaches a socket and record the
//!   `struct sock` in the in-flight slot;
//! - older kernels: [`fdtable`] resolves the fd through the task's file table
//!   at the syscall's exit.
//!
//! One file per hook family: [`process`] (which processes are traced),
//! [`socket`] (sock `tp_btf` hooks, connect/accept/close), [`data`] (payload
//! syscalls), [`tls`] (OpenSSL uprobes: plaintext of TLS connections),
//! [`gotls`] (Go `crypto/tls` uprobes), [`golink`] (Go uprobes for linking:
//! HTTP client hand-offs, goroutine creation). [`goroutine`] reads a Go thread's running goroutine.
//! [`emit`] assembles events; [`maps`] holds the shared state; [`ctx`] reads
//! tracepoint records; [`fdtable`] finds the socket of an fd.
//!
//! A program added, renamed or moved to another hook here must be changed in
//! `tracer_common::programs::PROGRAMS` too (a map: `tracer_common::maps::names`),
//! which user space loads from; tracer-user's `kernel::object_tests` fails
//! until both agree.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(
    target_arch = "bpf",
    expect(
        clippy::needless_pass_by_value,
        reason = "aya's program macros hand each program its context by value"
    )
)]
#![cfg_attr(
    target_arch = "bpf",
    expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "syscall arguments and results arrive as 64-bit registers and are read as the C \
                  types they are (fd as u32, a checked non-negative ret as u64); pid_tgid is split \
                  in halves"
    )
)]
#![cfg_attr(
    target_arch = "bpf",
    expect(
        clippy::cast_ptr_alignment,
        reason = "tracepoint records are 8-byte aligned; kernel reads go through \
                  bpf_probe_read_kernel, which copies bytes"
    )
)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod ctx;
#[cfg(target_arch = "bpf")]
mod data;
#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod fdtable;
#[cfg(target_arch = "bpf")]
mod golink;
#[cfg(target_arch = "bpf")]
mod goroutine;
#[cfg(target_arch = "bpf")]
mod gotls;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod process;
#[cfg(target_arch = "bpf")]
mod socket;
#[cfg(target_arch = "bpf")]
mod tls;

/// Host builds (e.g. `cargo check --workspace`) compile to an empty binary.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // Unreachable in a loaded program: the verifier rejects any program
    // with a reachable panic path, so none can run.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
