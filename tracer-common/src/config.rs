//! Settings user space hands to the kernel programs before loading them.

/// Written into the `CONFIG` global of the eBPF object at load time.
///
/// aya cannot apply CO-RE relocations to Rust programs, so the offsets of the
/// kernel struct fields the programs read are looked up in the running
/// kernel's BTF by user space and passed here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelConfig {
    /// Payload bytes copied per event, at most [`crate::MAX_PAYLOAD`].
    pub max_payload: u32,
    /// `struct sock_common` field offsets inside `struct sock`.
    pub sock_family: u32,
    pub sock_daddr: u32,
    pub sock_rcv_saddr: u32,
    pub sock_dport: u32,
    pub sock_num: u32,
    pub sock_v6_daddr: u32,
    pub sock_v6_rcv_saddr: u32,
    /// `struct sock::sk_protocol` (a `u16`).
    pub sock_protocol: u32,
    /// `struct task_struct::tgid`.
    pub task_tgid: u32,
    /// Bytes of unread events in the ring buffer above which a submit wakes
    /// the reader; below it, events are batched without a wake-up.
    pub wakeup_bytes: u32,
    /// How a syscall's socket is found: one of [`SocketLookup`], as a `u32`.
    pub socket_lookup: u32,
    /// Offsets for [`SocketLookup::FdTable`] (0 with the tracepoint path):
    /// `task_struct.files`, `files_struct.fdt`, `fdtable.max_fds`,
    /// `fdtable.fd`, `file.f_inode`, `file.private_data`, `inode.i_mode`,
    /// `socket.sk`.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_inode: u32,
    pub file_private_data: u32,
    pub inode_mode: u32,
    pub socket_sk: u32,
    /// Non-zero when `TRACED_CGROUPS` is in use: a process not yet traced
    /// is looked up by its cgroup at its hooked calls.
    pub trace_cgroups: u32,
    /// `task_struct.thread.fsbase` (x86-64): where a Go thread's TLS, and
    /// in it the running goroutine, is. 0 when the BTF lacks it: no
    /// goroutine is read.
    pub task_fsbase: u32,
}

/// How the kernel programs learn that a syscall touched a socket, and which
/// `struct sock` it is. Chosen by user space per kernel at load time.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketLookup {
    /// The `sock_send_length`/`sock_recv_length` `tp_btf` hooks (Linux 6.3+)
    /// fire inside the syscall with the `struct sock`.
    Tracepoint = 0,
    /// At the syscall's exit, the fd is resolved through the task's file
    /// table (`task->files->fdt->fd[fd]` → `file` → `socket` → `sk`): works
    /// on every kernel with BTF, no kprobes needed.
    FdTable = 1,
}

/// How the readv/writev/recvmsg/sendmsg exits walk their iovec array: each
/// has a program per way, and user space loads one of them per kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IovecWalk {
    /// A loop the compiler unrolls: loads on every kernel (bounded loops,
    /// 5.3), but the verifier walks all [`crate::MAX_IOVECS`] copies with
    /// their branches, ~1 s of verifier time per program.
    Unrolled,
    /// The `bpf_loop` helper (Linux 5.17+) calls a callback once per iovec:
    /// the verifier checks the callback's body once, not once per iovec.
    BpfLoop,
}

impl IovecWalk {
    pub fn name(self) -> &'static str {
        match self {
            IovecWalk::Unrolled => "unrolled",
            IovecWalk::BpfLoop => "bpf_loop",
        }
    }
}

impl KernelConfig {
    /// The value compiled into the object; user space always overrides it.
    pub const UNSET: KernelConfig = KernelConfig {
        max_payload: 0,
        sock_family: 0,
        sock_daddr: 0,
        sock_rcv_saddr: 0,
        sock_dport: 0,
        sock_num: 0,
        sock_v6_daddr: 0,
        sock_v6_rcv_saddr: 0,
        sock_protocol: 0,
        task_tgid: 0,
        wakeup_bytes: 0,
        socket_lookup: SocketLookup::Tracepoint as u32,
        task_files: 0,
        files_fdt: 0,
        fdtable_max_fds: 0,
        fdtable_fd: 0,
        file_inode: 0,
        file_private_data: 0,
        inode_mode: 0,
        socket_sk: 0,
        trace_cgroups: 0,
        task_fsbase: 0,
    };
}

#[cfg(feature = "user")]
// SAFETY: repr(C), padding-free, valid for any bit pattern.
unsafe impl aya::Pod for KernelConfig {}
