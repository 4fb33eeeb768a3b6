//! Maps and configuration shared by every hook family.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use tracer_common::{
    maps::{
        Counter, GoProcess, SslKey, SslSocket, COUNTER_COUNT, MAX_COMMS, MAX_IN_FLIGHT,
        MAX_SOCKETS, MAX_TRACED_CGROUPS, MAX_TRACED_PIDS,
    },
    KernelConfig, SCRATCH_SIZE, TASK_COMM_LEN,
};

/// Set by user space at load time.
#[unsafe(no_mangle)]
pub static CONFIG: Global<KernelConfig> = Global::new(KernelConfig::UNSET);

/// Every record user space reads. Sized by user space at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Processes (thread-group ids) being traced → `TRACED_BY_*`.
#[map]
pub static TRACED_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TRACED_PIDS, 0);

/// Executable names (`comm`, NUL padded) whose processes are traced on exec.
#[map]
pub static TRACED_COMMS: HashMap<[u8; TASK_COMM_LEN], u8> = HashMap::with_max_entries(MAX_COMMS, 0);

/// cgroup v2 ids (as `bpf_get_current_cgroup_id` returns them) whose
/// processes are traced: every cgroup of the `--cgroup` subtrees, kept
/// current by user space as cgroups come and go.
#[map]
pub static TRACED_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(MAX_TRACED_CGROUPS, 0);

/// The syscall a thread is in, keyed by `pid_tgid`: one slot per thread of
/// a traced process, see [`in_flight_slot`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InFlight {
    /// buf, iovec array, msghdr or mmsghdr array, by syscall.
    pub buf: u64,
    /// Set by the sock `tp_btf` hooks when the syscall reached a socket.
    pub sock: u64,
    pub enter_ns: u64,
    pub fd: u32,
    /// iovcnt or vlen, by syscall.
    pub count: u32,
    /// `tracer_common::Syscall`, [`SYSCALL_CONNECT`], or [`SYSCALL_NONE`]
    /// between syscalls.
    pub syscall: u8,
    /// Set while the thread is inside a hooked TLS library call, so a
    /// syscall exit looks for that call only when there may be one.
    pub in_tls_call: u8,
    /// The process is a registered Go process (`TRACED_GO`): the syscall's
    /// event carries its goroutine.
    pub go: u8,
    pub _pad: [u8; 5],
}

/// `InFlight::syscall` for connect, which carries no payload.
pub const SYSCALL_CONNECT: u8 = 100;
/// `InFlight::syscall` of a thread outside any hooked syscall.
pub const SYSCALL_NONE: u8 = 0xff;

#[map]
pub static IN_FLIGHT: HashMap<u64, InFlight> = HashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// The calling thread's in-flight slot, created on its first hooked call.
///
/// Slots are overwritten in place and kept between syscalls (a hash insert
/// and delete per syscall cost several times a lookup); the thread's exit
/// removes its slot (`sched_process_exit`).
#[inline(always)]
pub fn in_flight_slot(pid_tgid: u64) -> Option<*mut InFlight> {
    if let Some(slot) = IN_FLIGHT.get_ptr_mut(pid_tgid) {
        return Some(slot);
    }
    let idle = InFlight {
        buf: 0,
        sock: 0,
        enter_ns: 0,
        fd: 0,
        count: 0,
        syscall: SYSCALL_NONE,
        in_tls_call: 0,
        go: 0,
        _pad: [0; 5],
    };
    if IN_FLIGHT.insert(pid_tgid, idle, 0).is_err() {
        count(Counter::InFlightFull);
        return None;
    }
    IN_FLIGHT.get_ptr_mut(pid_tgid)
}

/// Ends the calling thread's syscall: returns what its entry recorded, if
/// the thread has a slot, and marks the slot idle.
#[inline(always)]
pub fn finish_in_flight(pid_tgid: u64) -> Option<InFlight> {
    let slot = IN_FLIGHT.get_ptr_mut(pid_tgid)?;
    // SAFETY: the slot belongs to the calling thread, which is running here;
    // only its own programs write it.
    unsafe {
        let in_flight = *slot;
        (*slot).syscall = SYSCALL_NONE;
        Some(in_flight)
    }
}

/// What the kernel side remembers of a traced socket, keyed by `tgid << 32 | fd`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SocketState {
    /// The `struct sock` last seen behind the fd; 0 when only connect/accept
    /// was seen so far.
    pub sock: u64,
    /// `tracer_common::Role`.
    pub role: u8,
    /// Not an IPv4/IPv6 socket (e.g. a Unix socket): never emitted.
    pub ignored: u8,
    /// Carries TLS that a hooked library decrypts: its ciphertext is never
    /// emitted, only the plaintext from the library hooks.
    pub tls: u8,
    pub _pad: [u8; 5],
}

#[map]
pub static SOCKETS: LruHashMap<u64, SocketState> = LruHashMap::with_max_entries(MAX_SOCKETS, 0);

/// A TLS library call (`SSL_read`/`SSL_write` and `_ex`) between its entry
/// and return, keyed by `pid_tgid`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslCall {
    /// The `SSL *`.
    pub ssl: u64,
    pub buf: u64,
    /// `size_t *` where the `_ex` variants store the byte count; 0 otherwise.
    pub count_out: u64,
    /// Set by the socket syscall the library makes inside the call.
    pub sock: u64,
    pub enter_ns: u64,
    pub fd: u32,
    /// `Syscall::SslRead` or `Syscall::SslWrite`.
    pub syscall: u8,
    pub _pad: [u8; 3],
}

#[map]
pub static SSL_IN_FLIGHT: HashMap<u64, SslCall> = HashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// The socket behind an `SSL *`: learnt from a socket syscall made inside
/// one of its calls, or written by user space for event loops; used when a
/// later call makes no syscall (served from OpenSSL's buffers, or an event
/// loop's memory BIO).
#[map]
pub static SSL_SOCKETS: LruHashMap<SslKey, SslSocket> =
    LruHashMap::with_max_entries(MAX_SOCKETS, 0);

/// Go processes whose `crypto/tls` is hooked, written by user space.
#[map]
pub static GO_PROCESSES: HashMap<u32, GoProcess> = HashMap::with_max_entries(MAX_TRACED_PIDS, 0);

/// A goroutine of one process: `R14` (the `g`) and the tgid.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoroutineKey {
    pub g: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// A `crypto/tls.(*Conn).Read` between its entry and a return instruction.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoRead {
    pub buf: u64,
    pub sock: u64,
    pub fd: u32,
    pub _pad: u32,
}

/// LRU: a goroutine that never returns (its program exits) leaves an entry.
#[map]
pub static GO_TLS_READS: LruHashMap<GoroutineKey, GoRead> =
    LruHashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// `runtime.newproc1` between its entry and return, keyed by `pid_tgid`:
/// the creating goroutine. LRU: a thread that dies inside leaves an entry.
#[map]
pub static GO_SPAWNS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// Where events are assembled before they are copied into the ring buffer
/// (the BPF stack is only 512 bytes). One slot per possible CPU, indexed by
/// CPU id: a per-CPU array cannot hold values over 32 KiB. User space sizes
/// it to the number of possible CPUs at load time.
#[repr(C)]
pub struct Scratch {
    pub bytes: [u8; SCRATCH_SIZE],
}

#[map]
pub static SCRATCH: Array<Scratch> = Array::with_max_entries(1, 0);

/// Loss and activity counters, see [`Counter`].
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; programs do not preempt each other on one CPU.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn config() -> KernelConfig {
    CONFIG.load()
}

/// The current thread's `(tgid, tid)` if its process is traced, or joins
/// the traced set now by its cgroup (see [`crate::process::join_by_cgroup`]).
#[inline(always)]
pub fn traced_current() -> Option<(u32, u32)> {
    traced_current_with_flags().map(|(tgid, tid, _)| (tgid, tid))
}

/// [`traced_current`] with the process's `TRACED_PIDS` value.
#[inline(always)]
pub fn traced_current_with_flags() -> Option<(u32, u32, u8)> {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: the value is a plain u8 read once.
    if let Some(&value) = unsafe { TRACED_PIDS.get(tgid) } {
        return Some((tgid, pid_tgid as u32, value));
    }
    if config().trace_cgroups != 0 && crate::process::join_by_cgroup(tgid) {
        return Some((tgid, pid_tgid as u32, tracer_common::maps::TRACED_BY_CGROUP));
    }
    None
}

#[inline(always)]
pub fn socket_key(tgid: u32, fd: u32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(fd)
}
