//! Records the kernel programs write into the `EVENTS` ring buffer.
//!
//! Every record starts with a one-byte [`EventKind`], so user space can tell
//! the records apart before it knows their size.

/// The first byte of every ring-buffer record.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// [`DataEvent`] followed by `captured_len` payload bytes.
    Data = 1,
    /// [`ConnEvent`]: a socket seen for the first time (or opened) by a traced process.
    ConnOpen = 2,
    /// [`ConnEvent`]: a traced socket closed.
    ConnClose = 3,
    /// [`ProcessEvent`]: a traced process forked a new process.
    ProcessFork = 4,
    /// [`ProcessEvent`]: a process started tracing because its executable name matched.
    ProcessExec = 5,
    /// [`ProcessEvent`]: a traced process exited.
    ProcessExit = 6,
    /// [`ProcessEvent`]: a process started tracing at its first hooked call
    /// because it runs in a traced cgroup (it was moved there, or started
    /// there by a parent outside it).
    ProcessJoin = 7,
    /// [`GoCallEvent`]: a goroutine of a traced Go process entered a
    /// function the linking stage follows.
    GoCall = 8,
}

impl EventKind {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Data,
            2 => Self::ConnOpen,
            3 => Self::ConnClose,
            4 => Self::ProcessFork,
            5 => Self::ProcessExec,
            6 => Self::ProcessExit,
            7 => Self::ProcessJoin,
            8 => Self::GoCall,
            _ => return None,
        })
    }
}

/// Direction of bytes relative to the traced process.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the traced process.
    Egress = 0,
    /// Received by the traced process.
    Ingress = 1,
}

/// The syscall that moved the bytes of a [`DataEvent`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Read = 0,
    Write = 1,
    Readv = 2,
    Writev = 3,
    Recvfrom = 4,
    Sendto = 5,
    Recvmsg = 6,
    Sendmsg = 7,
    Recvmmsg = 8,
    Sendmmsg = 9,
    Sendfile = 10,
    /// Plaintext returned by OpenSSL's `SSL_read`/`SSL_read_ex`.
    SslRead = 11,
    /// Plaintext handed to OpenSSL's `SSL_write`/`SSL_write_ex`.
    SslWrite = 12,
    /// Go's `crypto/tls.(*Conn).Read`.
    GoTlsRead = 13,
    /// Go's `crypto/tls.(*Conn).Write`.
    GoTlsWrite = 14,
}

impl Syscall {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Read,
            1 => Self::Write,
            2 => Self::Readv,
            3 => Self::Writev,
            4 => Self::Recvfrom,
            5 => Self::Sendto,
            6 => Self::Recvmsg,
            7 => Self::Sendmsg,
            8 => Self::Recvmmsg,
            9 => Self::Sendmmsg,
            10 => Self::Sendfile,
            11 => Self::SslRead,
            12 => Self::SslWrite,
            13 => Self::GoTlsRead,
            14 => Self::GoTlsWrite,
            _ => return None,
        })
    }

    pub fn direction(self) -> Direction {
        match self {
            Self::Read
            | Self::Readv
            | Self::Recvfrom
            | Self::Recvmsg
            | Self::Recvmmsg
            | Self::SslRead
            | Self::GoTlsRead => Direction::Ingress,
            Self::Write
            | Self::Writev
            | Self::Sendto
            | Self::Sendmsg
            | Self::Sendmmsg
            | Self::Sendfile
            | Self::SslWrite
            | Self::GoTlsWrite => Direction::Egress,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Readv => "readv",
            Self::Writev => "writev",
            Self::Recvfrom => "recvfrom",
            Self::Sendto => "sendto",
            Self::Recvmsg => "recvmsg",
            Self::Sendmsg => "sendmsg",
            Self::Recvmmsg => "recvmmsg",
            Self::Sendmmsg => "sendmmsg",
            Self::Sendfile => "sendfile",
            Self::SslRead => "SSL_read",
            Self::SslWrite => "SSL_write",
            Self::GoTlsRead => "crypto/tls.(*Conn).Read",
            Self::GoTlsWrite => "crypto/tls.(*Conn).Write",
        }
    }
}

/// [`DataEvent::flags`]: fewer bytes were copied than the syscall moved.
pub const DATA_FLAG_TRUNCATED: u8 = 1;
/// [`DataEvent::flags`]: plaintext of a TLS connection, read at the TLS
/// library's boundary (the socket itself carries ciphertext).
pub const DATA_FLAG_TLS: u8 = 2;

impl Syscall {
    /// For TLS plaintext: the library that decrypted it.
    pub fn tls_library(self) -> &'static str {
        match self {
            Self::GoTlsRead | Self::GoTlsWrite => "go",
            _ => "openssl",
        }
    }
}
/// [`DataEvent::flags`], with [`DATA_FLAG_TLS`]: plaintext of an SSL call
/// whose socket the kernel does not know (an event loop's: no syscall
/// inside the call names it). `fd` is 0 and `sock` holds the `SSL *`; user
/// space ties it to the socket whose ciphertext the thread moved next to it.
pub const DATA_FLAG_TLS_UNBOUND: u8 = 4;

/// Payload moved by one socket syscall (one message for `*mmsg`).
///
/// Followed in the ring buffer by `captured_len` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DataEvent {
    /// [`EventKind::Data`].
    pub kind: u8,
    /// [`Direction`].
    pub direction: u8,
    /// [`Syscall`].
    pub syscall: u8,
    /// `DATA_FLAG_*`.
    pub flags: u8,
    /// Process (thread-group) id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub fd: u32,
    /// `CLOCK_MONOTONIC` nanoseconds: syscall entry for egress (the bytes were
    /// handed over then), syscall exit for ingress (the bytes were there then).
    pub timestamp_ns: u64,
    /// Address of the kernel `struct sock`: with (pid, fd) it names a connection
    /// and tells a reused fd from the old one.
    pub sock: u64,
    /// In a Go process, the goroutine (its `g`) that made the call; 0
    /// elsewhere or when it could not be read.
    pub goroutine: u64,
    /// Bytes the syscall moved.
    pub total_len: u32,
    /// Bytes copied after this header (at most the configured payload cap).
    pub captured_len: u32,
}

/// [`ConnEvent::role`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Unknown = 0,
    /// The traced process called `connect`.
    Client = 1,
    /// The traced process got the socket from `accept`.
    Server = 2,
}

impl Role {
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Client,
            2 => Self::Server,
            _ => Self::Unknown,
        }
    }
}

/// Address families, as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// Transport protocols, as the kernel numbers them.
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;

/// A traced socket: its addresses when first seen, or its close.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnEvent {
    /// [`EventKind::ConnOpen`] or [`EventKind::ConnClose`].
    pub kind: u8,
    /// [`Role`].
    pub role: u8,
    /// `AF_INET` or `AF_INET6` (0 for a close).
    pub family: u16,
    pub pid: u32,
    pub tid: u32,
    pub fd: u32,
    pub timestamp_ns: u64,
    pub sock: u64,
    /// Local address: IPv4 in the first 4 bytes, network order.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// Host order.
    pub local_port: u16,
    pub remote_port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u16,
    pub _pad: u16,
}

pub const TASK_COMM_LEN: usize = 16;

/// Process lifecycle of traced processes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessEvent {
    /// [`EventKind::ProcessFork`], [`EventKind::ProcessExec`] or [`EventKind::ProcessExit`].
    pub kind: u8,
    pub _pad: [u8; 3],
    pub pid: u32,
    /// The parent for a fork, 0 otherwise.
    pub parent_pid: u32,
    pub _pad2: u32,
    pub timestamp_ns: u64,
    pub comm: [u8; TASK_COMM_LEN],
}

/// [`GoCallEvent::call`]: the function entered.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoCall {
    /// `net/http.(*Transport).roundTrip(req)`, in the goroutine that makes
    /// the HTTP call (a handler's).
    RoundTrip = 0,
    /// `net/http.(*Request).write(...)`, in the goroutine that writes the
    /// request to its connection (the connection's `writeLoop`).
    RequestWrite = 1,
    /// `runtime.newproc1` returned: [`GoCallEvent::goroutine`] is the new
    /// goroutine, [`GoCallEvent::object`] the one that made it.
    Spawn = 2,
}

impl GoCall {
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::RoundTrip),
            1 => Some(Self::RequestWrite),
            2 => Some(Self::Spawn),
            _ => None,
        }
    }
}

/// A goroutine entered a function of [`GoCall`]: Go's HTTP client writes
/// a request from another goroutine than the caller's, and two calls name
/// both goroutines with the same `*http.Request`; a goroutine was made.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GoCallEvent {
    /// [`EventKind::GoCall`].
    pub kind: u8,
    /// [`GoCall`].
    pub call: u8,
    pub _pad: [u8; 2],
    pub pid: u32,
    /// The goroutine (`g`, Go's `R14`; for a spawn the new one).
    pub goroutine: u64,
    /// The `*http.Request`; for a spawn the creating goroutine.
    pub object: u64,
    pub timestamp_ns: u64,
}

/// Largest payload one event can carry; `--max-payload` is clamped to it.
/// A power of two so that kernel code can bound offsets with a mask.
pub const MAX_PAYLOAD: usize = 16384;

/// Size of the per-CPU scratch buffer an event is assembled in: the header and
/// twice the payload cap, so a masked offset plus a masked length always fits.
pub const SCRATCH_SIZE: usize = size_of::<DataEvent>() + 2 * MAX_PAYLOAD;

/// Most iovec entries copied from one readv/writev/recvmsg/sendmsg. gRPC's
/// C core sends a response's first header block as one iovec per header
/// name and value: 8 cut its first response short (the rest a gap), and
/// with it the HPACK context of the whole connection.
pub const MAX_IOVECS: u32 = 32;
/// Most iovec entries copied per message of recvmmsg/sendmmsg (datagrams,
/// seldom scattered): the verifier walks `MAX_MMSG` times this many copies.
pub const MAX_MMSG_IOVECS: u32 = 8;
/// Most messages reported from one recvmmsg/sendmmsg.
pub const MAX_MMSG: u32 = 4;

#[cfg(feature = "user")]
mod user {
    use super::{ConnEvent, DataEvent, GoCallEvent, ProcessEvent};
    // SAFETY: repr(C), padding-free and valid for any bit pattern.
    unsafe impl aya::Pod for DataEvent {}
    // SAFETY: repr(C), padding-free and valid for any bit pattern.
    unsafe impl aya::Pod for ConnEvent {}
    // SAFETY: repr(C), padding-free and valid for any bit pattern.
    unsafe impl aya::Pod for ProcessEvent {}
    // SAFETY: repr(C), explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for GoCallEvent {}
}

const _: () = assert!(size_of::<DataEvent>() == 48);
const _: () = assert!(size_of::<GoCallEvent>() == 32);
const _: () = assert!(size_of::<ConnEvent>() == 72);
const _: () = assert!(size_of::<ProcessEvent>() == 40);
