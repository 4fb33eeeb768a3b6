//! Names, keys and values of the maps shared by kernel and user space.

/// The maps of the eBPF object by name: the `#[map]` statics of
/// tracer-ebpf/src/maps.rs (and aya-log's), which user space sizes and opens
/// by these names. A tracer-user unit test (`kernel::object_tests`) checks
/// [`names::ALL`] against the built object.
pub mod names {
    /// The ring buffer of every record; sized at load.
    pub const EVENTS: &str = "EVENTS";
    /// Processes being traced; user space adds `--pid`s.
    pub const TRACED_PIDS: &str = "TRACED_PIDS";
    /// Executable names traced on exec; user space adds `--comm`s.
    pub const TRACED_COMMS: &str = "TRACED_COMMS";
    /// cgroup v2 ids whose processes are traced; user space keeps the
    /// `--cgroup` subtrees in it.
    pub const TRACED_CGROUPS: &str = "TRACED_CGROUPS";
    /// See [`super::Counter`]; read for the summary and `/metrics`.
    pub const COUNTERS: &str = "COUNTERS";
    /// One event assembly slot per possible CPU; sized at load.
    pub const SCRATCH: &str = "SCRATCH";
    /// State the programs keep to themselves; user space never opens them.
    pub const IN_FLIGHT: &str = "IN_FLIGHT";
    pub const SOCKETS: &str = "SOCKETS";
    pub const SSL_IN_FLIGHT: &str = "SSL_IN_FLIGHT";
    /// The socket behind each `SSL *` ([`super::SslKey`] →
    /// [`super::SslSocket`]): the programs learn it from a syscall inside an
    /// SSL call; user space adds what it learns for event loops, whose SSL
    /// calls make no syscall.
    pub const SSL_SOCKETS: &str = "SSL_SOCKETS";
    /// Go processes ([`super::GoProcess`] by tgid); user space adds each
    /// one it finds, the programs drop it at exec and exit.
    pub const GO_PROCESSES: &str = "GO_PROCESSES";
    /// `crypto/tls.(*Conn).Read` calls between entry and return, by goroutine.
    pub const GO_TLS_READS: &str = "GO_TLS_READS";
    /// `runtime.newproc1` calls between entry and return, by thread.
    pub const GO_SPAWNS: &str = "GO_SPAWNS";
    /// aya-log's record buffer, opened by `aya_log::EbpfLogger`.
    pub const AYA_LOGS: &str = "AYA_LOGS";

    /// Every map of the object.
    pub const ALL: [&str; 14] = [
        EVENTS,
        TRACED_PIDS,
        TRACED_COMMS,
        TRACED_CGROUPS,
        COUNTERS,
        SCRATCH,
        IN_FLIGHT,
        SOCKETS,
        SSL_IN_FLIGHT,
        SSL_SOCKETS,
        GO_PROCESSES,
        GO_TLS_READS,
        GO_SPAWNS,
        AYA_LOGS,
    ];

    /// Not a map: the [`crate::KernelConfig`] global, written before load.
    pub const CONFIG: &str = "CONFIG";
}

/// `COUNTERS` per-CPU array indices: every loss on the kernel side is counted.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// An event could not be written: the ring buffer was full.
    RingBufFull = 0,
    /// A syscall could not be remembered between entry and exit: map full.
    InFlightFull = 1,
    /// A socket could not be remembered: map full.
    SocketTableFull = 2,
    /// A payload could not be read from user memory.
    PayloadReadFailed = 3,
    /// Data events written.
    DataEvents = 4,
    /// A process could not be added to the traced set: map full.
    PidTableFull = 5,
    /// A TLS library call whose socket could not be found: its plaintext
    /// was dropped. Counted by user space, which ties the calls of event
    /// loops to their sockets (the kernel hands those calls on unbound).
    TlsSocketUnknown = 6,
}

pub const COUNTER_COUNT: u32 = 7;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::RingBufFull,
        Counter::InFlightFull,
        Counter::SocketTableFull,
        Counter::PayloadReadFailed,
        Counter::DataEvents,
        Counter::PidTableFull,
        Counter::TlsSocketUnknown,
    ];

    /// Kernel counters of events (or TLS plaintext) that never reached user
    /// space: summed as "events lost" in the exit summary, and each one a
    /// `reason` of `tracer_events_lost_total`.
    pub const LOSSES: [Counter; 5] = [
        Counter::RingBufFull,
        Counter::InFlightFull,
        Counter::SocketTableFull,
        Counter::PayloadReadFailed,
        Counter::TlsSocketUnknown,
    ];

    /// Machine name: the metrics' `reason` label, log lines.
    pub fn label(self) -> &'static str {
        match self {
            Counter::RingBufFull => "ring_buffer_full",
            Counter::InFlightFull => "in_flight_table_full",
            Counter::SocketTableFull => "socket_table_full",
            Counter::PayloadReadFailed => "payload_unreadable",
            Counter::DataEvents => "data_events",
            Counter::PidTableFull => "pid_table_full",
            Counter::TlsSocketUnknown => "tls_socket_unknown",
        }
    }

    /// Human words: the exit summary.
    pub fn words(self) -> &'static str {
        match self {
            Counter::RingBufFull => "ring buffer full",
            Counter::InFlightFull => "in-flight table full",
            Counter::SocketTableFull => "socket table full",
            Counter::PayloadReadFailed => "unreadable payload",
            Counter::DataEvents => "data events",
            Counter::PidTableFull => "processes not traced: traced-process table full",
            Counter::TlsSocketUnknown => "TLS call without socket",
        }
    }
}

/// `SSL_SOCKETS` key: an `SSL *` of one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SslKey {
    pub ssl: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// `SSL_SOCKETS` value: the socket an `SSL *` reads and writes through. The
/// programs use it only while the process still has `sock` open as `fd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SslSocket {
    pub sock: u64,
    pub fd: u32,
    pub _pad: u32,
}

/// `GO_PROCESSES` value: what the programs need to know of a Go process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoProcess {
    /// Run-time address of the itab `*net.TCPConn` implementing `net.Conn`:
    /// a `tls.Conn` over anything else is not followed to a socket. 0 when
    /// the executable has no `crypto/tls` hooked.
    pub tcp_conn_itab: u64,
    /// Where the running goroutine's `g` is, relative to the thread's FS
    /// base (Go's TLS slot: -8 in executables with only Go's TLS); 0 when
    /// unknown, then no goroutine is read.
    pub g_tls_offset: i64,
}

/// Where a `crypto/tls.Conn`'s socket is, for Go 1.17 and later (unchanged
/// since; the register ABI came with 1.17): `tls.Conn.conn` is its first
/// field, a `net.Conn` interface (itab, data); a `*net.TCPConn`'s first
/// word is its `*netFD`, whose `poll.FD` comes first and holds `Sysfd`
/// after its 16-byte `fdMutex`.
pub mod go_offsets {
    /// `tls.Conn.conn`'s itab word.
    pub const TLS_CONN_ITAB: u64 = 0;
    /// `tls.Conn.conn`'s data word: the `*net.TCPConn`.
    pub const TLS_CONN_DATA: u64 = 8;
    /// `net.TCPConn.conn.fd`: the `*netFD`.
    pub const TCP_CONN_NETFD: u64 = 0;
    /// `netFD.pfd.Sysfd`.
    pub const NETFD_SYSFD: u64 = 16;
}

#[cfg(feature = "user")]
mod user {
    use super::{GoProcess, SslKey, SslSocket};
    // SAFETY: repr(C), two 8-byte fields.
    unsafe impl aya::Pod for GoProcess {}
    // SAFETY: repr(C), explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for SslKey {}
    // SAFETY: repr(C), explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for SslSocket {}
}

/// `TRACED_PIDS` value: why a process is traced.
pub const TRACED_BY_PID: u8 = 1;
pub const TRACED_BY_FORK: u8 = 2;
pub const TRACED_BY_COMM: u8 = 3;
pub const TRACED_BY_CGROUP: u8 = 4;
/// Bit of a `TRACED_PIDS` value: a Go process registered in
/// `GO_PROCESSES`, whose syscalls carry their goroutine (so other
/// processes' syscalls never look it up). Set by user space, cleared at
/// exec.
pub const TRACED_GO: u8 = 0x80;

/// Capacity of the traced-process map.
pub const MAX_TRACED_PIDS: u32 = 16384;
/// Capacity of the per-socket map (LRU).
pub const MAX_SOCKETS: u32 = 65536;
/// Capacity of the in-flight syscall map (one entry per thread in a syscall).
pub const MAX_IN_FLIGHT: u32 = 16384;
/// Executable names `--comm` can ask for.
pub const MAX_COMMS: u32 = 64;
/// cgroups (all `--cgroup` subtrees together) whose processes are traced.
pub const MAX_TRACED_CGROUPS: u32 = 4096;
