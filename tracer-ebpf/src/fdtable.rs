//! The socket behind a file descriptor, found through the current task's
//! file table: the way to tell socket I/O from file I/O on kernels without
//! the `sock_send_length`/`sock_recv_length` tracepoints (before 6.3), with
//! no kprobes or fentry, so it also works under lockdown.
//!
//! `task->files->fdt->fd[fd]` is the `struct file`; its inode's mode says
//! whether it is a socket; a socket file's `private_data` is the `struct
//! socket`, whose `sk` is the `struct sock`. Field offsets come from the
//! running kernel's BTF (see `KernelConfig`). Resolved at every payload
//! syscall's exit instead of cached per fd: a cache would have to follow
//! every way an fd changes its file (close, dup2/dup3, `close_range`, exec,
//! `io_uring`), and a stale entry would attribute a file's bytes to a socket.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};

use crate::maps::config;

/// `S_IFMT` and `S_IFSOCK` of `inode.i_mode`.
const S_IFMT: u16 = 0o170_000;
const S_IFSOCK: u16 = 0o140_000;

/// The `struct sock *` behind `fd` of the current task, or 0 when `fd` is
/// not an open socket (or a read failed: the syscall is then not emitted).
#[inline(always)]
pub fn socket_of_fd(fd: u32) -> u64 {
    try_socket_of_fd(fd).unwrap_or(0)
}

#[inline(always)]
fn try_socket_of_fd(fd: u32) -> Result<u64, i32> {
    let cfg = config();
    // SAFETY: no preconditions; the task is the running one.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files: *const u8 = read_field(task, cfg.task_files)?;
    let fdt: *const u8 = read_field(files, cfg.files_fdt)?;
    let max_fds: u32 = read_field(fdt, cfg.fdtable_max_fds)?;
    if fd >= max_fds {
        return Ok(0);
    }
    let fd_array: *const u64 = read_field(fdt, cfg.fdtable_fd)?;
    // SAFETY: `fd < max_fds`, the length of the array; a racing resize
    // leaves a stale but readable array, and a failed read is an error.
    let file = unsafe { bpf_probe_read_kernel(fd_array.add(fd as usize)) }? as *const u8;
    if file.is_null() {
        return Ok(0);
    }
    let inode: *const u8 = read_field(file, cfg.file_inode)?;
    let mode: u16 = read_field(inode, cfg.inode_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return Ok(0);
    }
    let socket: *const u8 = read_field(file, cfg.file_private_data)?;
    read_field(socket, cfg.socket_sk)
}

/// The `T` at byte `offset` of the kernel struct at `base`.
#[inline(always)]
fn read_field<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    if base.is_null() {
        return Err(0);
    }
    // SAFETY: a fault-checked read of kernel memory; offsets from BTF.
    unsafe { bpf_probe_read_kernel(base.add(offset as usize).cast::<T>()) }
}
