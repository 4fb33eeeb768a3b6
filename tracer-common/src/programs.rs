//! Every kernel program of the tracer, defined once: its name in the eBPF
//! object, what it attaches to, its hook family and the socket path it
//! belongs to.
//!
//! User space loads and attaches from [`PROGRAMS`] (tracer-user's loader),
//! the bench takes its bpftrace floor and its program cost table from it
//! (xtask), and the docs point here. The programs themselves are Rust
//! functions in tracer-ebpf: aya's macros need the function name and the
//! attach point as literals, so they cannot read this table. A tracer-user
//! unit test (`kernel::object_tests`) parses the built object and fails when
//! the two disagree, in either direction.

use crate::{IovecWalk, SocketLookup};

/// What a program attaches to; the kind of hook is its program type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// The tracefs tracepoint `category/name`: a `tracepoint` program.
    TracePoint {
        category: &'static str,
        name: &'static str,
    },
    /// The BTF tracepoint `name` (`btf_trace_<name>` in the kernel's BTF):
    /// a `tp_btf` program.
    BtfTracePoint(&'static str),
    /// The entry of this function of a TLS library: a uprobe, loaded at
    /// start and attached per library as traced processes map one.
    UProbe(&'static str),
    /// The return of every function an [`Hook::UProbe`] was attached to: a
    /// uretprobe, attached alongside each of them.
    URetProbe,
    /// A uprobe in Go executables at an offset user space computes (a
    /// function's entry or one of its return instructions).
    GoProbe,
}

impl Hook {
    /// The syscall of a `syscalls/sys_{enter,exit}_<syscall>` tracepoint.
    pub fn syscall(self) -> Option<&'static str> {
        match self {
            Hook::TracePoint {
                category: "syscalls",
                name,
            } => name
                .strip_prefix("sys_enter_")
                .or_else(|| name.strip_prefix("sys_exit_")),
            _ => None,
        }
    }
}

/// The hook family: the file of tracer-ebpf/src that holds the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `data.rs`: payload syscalls, arguments at entry, payload at exit.
    Data,
    /// `socket.rs`: which syscalls reach a socket, connections' start and end.
    Socket,
    /// `process.rs`: which processes are traced.
    Process,
    /// `tls.rs`: OpenSSL plaintext.
    Tls,
    /// `gotls.rs`: Go `crypto/tls` plaintext.
    GoTls,
    /// `golink.rs`: which goroutine Go's HTTP client sends a request for,
    /// and which goroutine made which.
    GoLink,
}

/// One program of the eBPF object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    /// The function name in tracer-ebpf, which is the program's name in
    /// the object (and, cut to 15 bytes, in the kernel).
    pub name: &'static str,
    pub hook: Hook,
    pub family: Family,
    /// The only socket path ([`SocketLookup`]) it is loaded for; `None`:
    /// every path.
    pub only_on: Option<SocketLookup>,
    /// The only iovec walk ([`IovecWalk`]) it is loaded for; `None`: every
    /// walk (the programs that walk no iovec array).
    pub only_with: Option<IovecWalk>,
}

impl Program {
    /// Whether the program is loaded when syscalls' sockets are found
    /// `lookup`'s way and iovec arrays are walked `walk`'s way.
    pub fn runs_with(&self, lookup: SocketLookup, walk: IovecWalk) -> bool {
        self.only_on.is_none_or(|only| only == lookup)
            && self.only_with.is_none_or(|only| only == walk)
    }

    /// The program, loaded only for the socket path `lookup`.
    const fn only_on(self, lookup: SocketLookup) -> Program {
        Program {
            only_on: Some(lookup),
            ..self
        }
    }

    /// The program, loaded only when iovec arrays are walked `walk`'s way.
    const fn only_with(self, walk: IovecWalk) -> Program {
        Program {
            only_with: Some(walk),
            ..self
        }
    }
}

const fn program(name: &'static str, hook: Hook, family: Family) -> Program {
    Program {
        name,
        hook,
        family,
        only_on: None,
        only_with: None,
    }
}

const fn syscall(name: &'static str) -> Hook {
    Hook::TracePoint {
        category: "syscalls",
        name,
    }
}

const fn sched(name: &'static str) -> Hook {
    Hook::TracePoint {
        category: "sched",
        name,
    }
}

const fn tp_btf(name: &'static str) -> Hook {
    Hook::BtfTracePoint(name)
}

const fn uprobe(function: &'static str) -> Hook {
    Hook::UProbe(function)
}

/// The shared return probe of the TLS entry probes, which the loader
/// attaches next to each of them.
pub const TLS_RETURN: Program = program("tracer_ssl_ret", Hook::URetProbe, Family::Tls);

/// Every program of the eBPF object, by family. The loader loads and
/// attaches them in this order.
#[rustfmt::skip] // a table: one program a line, in columns
pub const PROGRAMS: &[Program] = &[
    program("tracer_enter_read",     syscall("sys_enter_read"),       Family::Data),
    program("tracer_exit_read",      syscall("sys_exit_read"),        Family::Data),
    program("tracer_enter_write",    syscall("sys_enter_write"),      Family::Data),
    program("tracer_exit_write",     syscall("sys_exit_write"),       Family::Data),
    // Each iovec walker twice: the `bpf_loop` one (5.17+) where the
    // kernel has the helper, else the unrolled one.
    program("tracer_enter_readv",    syscall("sys_enter_readv"),      Family::Data),
    program("tracer_exit_readv",     syscall("sys_exit_readv"),       Family::Data)
        .only_with(IovecWalk::Unrolled),
    program("tracer_exit_readv_loop", syscall("sys_exit_readv"),       Family::Data)
        .only_with(IovecWalk::BpfLoop),
    program("tracer_enter_writev",   syscall("sys_enter_writev"),     Family::Data),
    program("tracer_exit_writev",    syscall("sys_exit_writev"),      Family::Data)
        .only_with(IovecWalk::Unrolled),
    program("tracer_exit_writev_loop", syscall("sys_exit_writev"),      Family::Data)
        .only_with(IovecWalk::BpfLoop),
    program("tracer_enter_recvfrom", syscall("sys_enter_recvfrom"),   Family::Data),
    program("tracer_exit_recvfrom",  syscall("sys_exit_recvfrom"),    Family::Data),
    program("tracer_enter_sendto",   syscall("sys_enter_sendto"),     Family::Data),
    program("tracer_exit_sendto",    syscall("sys_exit_sendto"),      Family::Data),
    program("tracer_enter_recvmsg",  syscall("sys_enter_recvmsg"),    Family::Data),
    program("tracer_exit_recvmsg",   syscall("sys_exit_recvmsg"),     Family::Data)
        .only_with(IovecWalk::Unrolled),
    program("tracer_exit_recvmsg_loop", syscall("sys_exit_recvmsg"),     Family::Data)
        .only_with(IovecWalk::BpfLoop),
    program("tracer_enter_sendmsg",  syscall("sys_enter_sendmsg"),    Family::Data),
    program("tracer_exit_sendmsg",   syscall("sys_exit_sendmsg"),     Family::Data)
        .only_with(IovecWalk::Unrolled),
    program("tracer_exit_sendmsg_loop", syscall("sys_exit_sendmsg"),     Family::Data)
        .only_with(IovecWalk::BpfLoop),
    program("tracer_enter_recvmmsg", syscall("sys_enter_recvmmsg"),   Family::Data),
    program("tracer_exit_recvmmsg",  syscall("sys_exit_recvmmsg"),    Family::Data),
    program("tracer_enter_sendmmsg", syscall("sys_enter_sendmmsg"),   Family::Data),
    program("tracer_exit_sendmmsg",  syscall("sys_exit_sendmmsg"),    Family::Data),
    program("tracer_enter_sendfile", syscall("sys_enter_sendfile64"), Family::Data),
    program("tracer_exit_sendfile",  syscall("sys_exit_sendfile64"),  Family::Data),
    // Linux 6.3+ only; the file-table path finds the socket at the
    // syscall's exit instead.
    program("tracer_sock_send",      tp_btf("sock_send_length"),      Family::Socket)
        .only_on(SocketLookup::Tracepoint),
    program("tracer_sock_recv",      tp_btf("sock_recv_length"),      Family::Socket)
        .only_on(SocketLookup::Tracepoint),
    program("tracer_enter_connect",  syscall("sys_enter_connect"),    Family::Socket),
    program("tracer_exit_connect",   syscall("sys_exit_connect"),     Family::Socket),
    program("tracer_exit_accept",    syscall("sys_exit_accept"),      Family::Socket),
    program("tracer_exit_accept4",   syscall("sys_exit_accept4"),     Family::Socket),
    program("tracer_enter_close",    syscall("sys_enter_close"),      Family::Socket),
    program("tracer_process_fork",   tp_btf("sched_process_fork"),    Family::Process),
    program("tracer_process_exec",   sched("sched_process_exec"),     Family::Process),
    program("tracer_process_exit",   sched("sched_process_exit"),     Family::Process),
    program("tracer_ssl_write",      uprobe("SSL_write"),             Family::Tls),
    program("tracer_ssl_write_ex",   uprobe("SSL_write_ex"),          Family::Tls),
    program("tracer_ssl_read",       uprobe("SSL_read"),              Family::Tls),
    program("tracer_ssl_read_ex",    uprobe("SSL_read_ex"),           Family::Tls),
    TLS_RETURN,
    GO_TLS_WRITE,
    GO_TLS_READ,
    GO_TLS_READ_RETURN,
    GO_ROUND_TRIP,
    GO_REQUEST_WRITE,
    GO_NEWPROC,
    GO_NEWPROC_RETURN,
];

/// At the entry of Go's `crypto/tls.(*Conn).Write`.
pub const GO_TLS_WRITE: Program = program("tracer_go_tls_write", Hook::GoProbe, Family::GoTls);
/// At the entry of Go's `crypto/tls.(*Conn).Read`.
pub const GO_TLS_READ: Program = program("tracer_go_tls_read", Hook::GoProbe, Family::GoTls);
/// At each return instruction of Go's `crypto/tls.(*Conn).Read`.
pub const GO_TLS_READ_RETURN: Program =
    program("tracer_go_tls_read_ret", Hook::GoProbe, Family::GoTls);

/// At the entry of Go's `net/http.(*Transport).roundTrip`.
pub const GO_ROUND_TRIP: Program = program("tracer_go_round_trip", Hook::GoProbe, Family::GoLink);
/// At the entry of Go's `net/http.(*Request).write`.
pub const GO_REQUEST_WRITE: Program =
    program("tracer_go_request_write", Hook::GoProbe, Family::GoLink);
/// At the entry of Go's `runtime.newproc1`.
pub const GO_NEWPROC: Program = program("tracer_go_newproc", Hook::GoProbe, Family::GoLink);
/// At each return instruction of Go's `runtime.newproc1`.
pub const GO_NEWPROC_RETURN: Program =
    program("tracer_go_newproc_ret", Hook::GoProbe, Family::GoLink);

#[cfg(test)]
mod tests {
    use super::{Hook, PROGRAMS};
    use crate::{IovecWalk, SocketLookup};

    #[test]
    fn names_are_unique() {
        for (i, a) in PROGRAMS.iter().enumerate() {
            assert!(
                PROGRAMS[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
        }
    }

    /// Tests and the bench pick our programs out of `bpftool prog show` by
    /// this prefix.
    #[test]
    fn names_start_with_tracer() {
        assert!(PROGRAMS.iter().all(|p| p.name.starts_with("tracer_")));
    }

    #[test]
    fn only_the_sock_hooks_depend_on_the_socket_path() {
        let tracepoint_only: usize = PROGRAMS
            .iter()
            .filter(|p| {
                p.only_with.is_none() && !p.runs_with(SocketLookup::FdTable, IovecWalk::Unrolled)
            })
            .count();
        assert_eq!(tracepoint_only, 2);
        assert!(PROGRAMS
            .iter()
            .filter(|p| p.only_with.is_none())
            .all(|p| p.runs_with(SocketLookup::Tracepoint, IovecWalk::Unrolled)));
    }

    /// Each program that belongs to one iovec walk has a twin on the same
    /// hook for the other walk, and each walk loads one program per
    /// tracepoint.
    #[test]
    fn each_iovec_walk_has_one_program_per_hook() {
        let walkers = PROGRAMS.iter().filter(|p| p.only_with.is_some());
        assert_eq!(walkers.clone().count(), 8);
        for program in walkers {
            let twins = PROGRAMS
                .iter()
                .filter(|p| {
                    p.hook == program.hook
                        && p.only_with.is_some()
                        && p.only_with != program.only_with
                })
                .count();
            assert_eq!(twins, 1, "{}", program.name);
        }
        for walk in [IovecWalk::Unrolled, IovecWalk::BpfLoop] {
            let loaded = || {
                PROGRAMS
                    .iter()
                    .filter(move |p| p.runs_with(SocketLookup::Tracepoint, walk))
                    .filter(|p| matches!(p.hook, Hook::TracePoint { .. }))
            };
            for program in loaded() {
                let same_hook = loaded().filter(|p| p.hook == program.hook).count();
                assert_eq!(same_hook, 1, "{} with {walk:?}", program.name);
            }
        }
    }

    #[test]
    fn syscall_of_a_tracepoint() {
        let hook = |name| Hook::TracePoint {
            category: "syscalls",
            name,
        };
        assert_eq!(hook("sys_enter_sendfile64").syscall(), Some("sendfile64"));
        assert_eq!(hook("sys_exit_read").syscall(), Some("read"));
        let sched = Hook::TracePoint {
            category: "sched",
            name: "sched_process_exit",
        };
        assert_eq!(sched.syscall(), None);
        assert_eq!(Hook::UProbe("SSL_read").syscall(), None);
    }
}
