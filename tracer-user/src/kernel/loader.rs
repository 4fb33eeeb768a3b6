//! Loading the eBPF object, attaching every program and steering its maps.

use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeError, UProbeLinkId, UProbeScope},
        BtfTracePoint, ProgramError, TracePoint, UProbe,
    },
    Btf, Ebpf, EbpfLoader,
};
use thiserror::Error;
use tracer_common::{
    maps::{Counter, TRACED_BY_PID},
    KernelConfig, SocketLookup, MAX_PAYLOAD, TASK_COMM_LEN,
};

use super::btf::{BtfError, KernelBtf};

/// The compiled kernel programs (built by build.rs from tracer-ebpf).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("this tracer binary was built without its eBPF programs (AYA_BUILD_SKIP); rebuild without it")]
    NoObject,
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("cannot read the kernel's BTF for aya: {0}")]
    AyaBtf(#[from] aya::BtfError),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {program}: {source}")]
    Program {
        program: &'static str,
        source: ProgramError,
    },
    #[error("eBPF map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("cannot count CPUs ({what}): {source}")]
    Cpus {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("eBPF object has no {0}")]
    Missing(&'static str),
    #[error("{probe} probe on {function} in {}: {source}", target.display())]
    OpensslHook {
        function: &'static str,
        target: std::path::PathBuf,
        /// "entry" or "return".
        probe: &'static str,
        source: Box<ProgramError>,
    },
    #[error("--socket-hooks tracepoint: this kernel has no sock_send_length/sock_recv_length tracepoints (they appeared in Linux 6.3); use --socket-hooks auto or fd-table")]
    NoSocketTracepoints,
    #[error("{source}; kernels before 5.11 charge eBPF maps to RLIMIT_MEMLOCK, which could not be raised ({rlimit}): run as root or with CAP_SYS_RESOURCE, or raise `ulimit -l`")]
    Memlock {
        source: Box<KernelError>,
        rlimit: std::io::Error,
    },
}

/// What the user chose that the kernel side needs.
pub struct KernelOptions {
    pub max_payload: u32,
    pub ring_buffer_bytes: u32,
    pub wakeup_bytes: u32,
    /// How to find a syscall's socket; `None` picks the cheapest the kernel offers.
    pub socket_lookup: Option<SocketLookup>,
}

/// The way the kernel programs find a syscall's socket on this kernel, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketHooks {
    pub lookup: SocketLookup,
    pub reason: &'static str,
}

impl SocketHooks {
    pub fn name(self) -> &'static str {
        match self.lookup {
            SocketLookup::Tracepoint => "tracepoint",
            SocketLookup::FdTable => "fd-table",
        }
    }
}

/// Syscall tracepoints (category `syscalls`) and the programs that handle them.
const SYSCALL_TRACEPOINTS: &[(&str, &str)] = &[
    ("tracer_enter_read", "sys_enter_read"),
    ("tracer_exit_read", "sys_exit_read"),
    ("tracer_enter_write", "sys_enter_write"),
    ("tracer_exit_write", "sys_exit_write"),
    ("tracer_enter_readv", "sys_enter_readv"),
    ("tracer_exit_readv", "sys_exit_readv"),
    ("tracer_enter_writev", "sys_enter_writev"),
    ("tracer_exit_writev", "sys_exit_writev"),
    ("tracer_enter_recvfrom", "sys_enter_recvfrom"),
    ("tracer_exit_recvfrom", "sys_exit_recvfrom"),
    ("tracer_enter_sendto", "sys_enter_sendto"),
    ("tracer_exit_sendto", "sys_exit_sendto"),
    ("tracer_enter_recvmsg", "sys_enter_recvmsg"),
    ("tracer_exit_recvmsg", "sys_exit_recvmsg"),
    ("tracer_enter_sendmsg", "sys_enter_sendmsg"),
    ("tracer_exit_sendmsg", "sys_exit_sendmsg"),
    ("tracer_enter_recvmmsg", "sys_enter_recvmmsg"),
    ("tracer_exit_recvmmsg", "sys_exit_recvmmsg"),
    ("tracer_enter_sendmmsg", "sys_enter_sendmmsg"),
    ("tracer_exit_sendmmsg", "sys_exit_sendmmsg"),
    ("tracer_enter_sendfile", "sys_enter_sendfile64"),
    ("tracer_exit_sendfile", "sys_exit_sendfile64"),
    ("tracer_enter_connect", "sys_enter_connect"),
    ("tracer_exit_connect", "sys_exit_connect"),
    ("tracer_exit_accept", "sys_exit_accept"),
    ("tracer_exit_accept4", "sys_exit_accept4"),
    ("tracer_enter_close", "sys_enter_close"),
];

/// Scheduler tracepoints (category `sched`).
const SCHED_TRACEPOINTS: &[(&str, &str)] = &[
    ("tracer_process_exec", "sched_process_exec"),
    ("tracer_process_exit", "sched_process_exit"),
];

/// BTF tracepoints (`tp_btf`) every socket path uses.
const BTF_TRACEPOINTS: &[(&str, &str)] = &[("tracer_process_fork", "sched_process_fork")];

/// BTF tracepoints of [`SocketLookup::Tracepoint`] (Linux 6.3+).
const SOCKET_BTF_TRACEPOINTS: &[(&str, &str)] = &[
    ("tracer_sock_send", "sock_send_length"),
    ("tracer_sock_recv", "sock_recv_length"),
];

/// OpenSSL entry points and the uprobe program for each; every one also
/// gets the shared return probe.
const OPENSSL_FUNCTIONS: &[(&str, &str)] = &[
    ("SSL_write", "tracer_ssl_write"),
    ("SSL_write_ex", "tracer_ssl_write_ex"),
    ("SSL_read", "tracer_ssl_read"),
    ("SSL_read_ex", "tracer_ssl_read_ex"),
];
const OPENSSL_RETURN: &str = "tracer_ssl_ret";

/// The loaded, attached programs. Dropping it detaches and unloads them all.
pub struct AttachedKernel {
    ebpf: Ebpf,
    traced_pids: HashMap<MapData, u32, u8>,
    traced_comms: HashMap<MapData, [u8; TASK_COMM_LEN], u8>,
    counters: PerCpuArray<MapData, u64>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    socket_hooks: SocketHooks,
}

impl AttachedKernel {
    pub fn load(options: &KernelOptions) -> Result<Self, KernelError> {
        if EBPF_OBJECT.is_empty() {
            return Err(KernelError::NoObject);
        }
        let kernel_btf = KernelBtf::from_sys_fs()?;
        let socket_hooks = choose_socket_hooks(&kernel_btf, options.socket_lookup)?;
        log::debug!(
            "socket hooks: {} ({})",
            socket_hooks.name(),
            socket_hooks.reason
        );
        let config = kernel_config(&kernel_btf, options, socket_hooks.lookup)?;
        drop(kernel_btf);
        let memlock = raise_memlock();
        Self::load_with(options, &config, socket_hooks).map_err(|err| match memlock {
            Err(rlimit) if is_permission_error(&err) => KernelError::Memlock {
                source: Box::new(err),
                rlimit,
            },
            _ => err,
        })
    }

    fn load_with(
        options: &KernelOptions,
        config: &KernelConfig,
        socket_hooks: SocketHooks,
    ) -> Result<Self, KernelError> {
        let cpus =
            aya::util::nr_cpus().map_err(|(what, source)| KernelError::Cpus { what, source })?;
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", config, true)
            .map_max_entries("EVENTS", options.ring_buffer_bytes)
            .map_max_entries("SCRATCH", u32::try_from(cpus).unwrap_or(u32::MAX))
            .load(EBPF_OBJECT)?;
        // Kernel log records are rare (process events); a missing logger
        // only loses those debug lines.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                log::debug!("eBPF logger unavailable: {err}");
                None
            }
        };
        let btf = Btf::from_sys_fs()?;
        let socket_tracepoints = match socket_hooks.lookup {
            SocketLookup::Tracepoint => SOCKET_BTF_TRACEPOINTS,
            SocketLookup::FdTable => &[],
        };
        for &(program, tracepoint) in BTF_TRACEPOINTS.iter().chain(socket_tracepoints) {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(program)
                .ok_or(KernelError::Missing(program))?
                .try_into()
                .map_err(|source| KernelError::Program { program, source })?;
            prog.load(tracepoint, &btf)
                .map_err(|source| KernelError::Program { program, source })?;
            prog.attach()
                .map_err(|source| KernelError::Program { program, source })?;
        }
        for (category, list) in [
            ("syscalls", SYSCALL_TRACEPOINTS),
            ("sched", SCHED_TRACEPOINTS),
        ] {
            for &(program, tracepoint) in list {
                let prog: &mut TracePoint = ebpf
                    .program_mut(program)
                    .ok_or(KernelError::Missing(program))?
                    .try_into()
                    .map_err(|source| KernelError::Program { program, source })?;
                prog.load()
                    .map_err(|source| KernelError::Program { program, source })?;
                prog.attach(category, tracepoint)
                    .map_err(|source| KernelError::Program { program, source })?;
            }
        }
        // Uprobes are attached per library later, as traced processes reveal them.
        for program in OPENSSL_FUNCTIONS
            .iter()
            .map(|(_, p)| *p)
            .chain([OPENSSL_RETURN])
        {
            uprobe(&mut ebpf, program)?
                .load()
                .map_err(|source| KernelError::Program { program, source })?;
        }
        let traced_pids =
            HashMap::try_from(take_map(&mut ebpf, "TRACED_PIDS")?).map_err(|source| {
                KernelError::Map {
                    map: "TRACED_PIDS",
                    source,
                }
            })?;
        let traced_comms =
            HashMap::try_from(take_map(&mut ebpf, "TRACED_COMMS")?).map_err(|source| {
                KernelError::Map {
                    map: "TRACED_COMMS",
                    source,
                }
            })?;
        let counters =
            PerCpuArray::try_from(take_map(&mut ebpf, "COUNTERS")?).map_err(|source| {
                KernelError::Map {
                    map: "COUNTERS",
                    source,
                }
            })?;
        Ok(AttachedKernel {
            ebpf,
            traced_pids,
            traced_comms,
            counters,
            logger,
            socket_hooks,
        })
    }

    /// The ring buffer of events; call once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        RingBuf::try_from(take_map(&mut self.ebpf, "EVENTS")?).map_err(|source| KernelError::Map {
            map: "EVENTS",
            source,
        })
    }

    pub fn trace_pid(&mut self, pid: u32) -> Result<(), KernelError> {
        self.traced_pids
            .insert(pid, TRACED_BY_PID, 0)
            .map_err(|source| KernelError::Map {
                map: "TRACED_PIDS",
                source,
            })
    }

    pub fn trace_comm(&mut self, comm: &str) -> Result<(), KernelError> {
        self.traced_comms
            .insert(comm_key(comm), 1, 0)
            .map_err(|source| KernelError::Map {
                map: "TRACED_COMMS",
                source,
            })
    }

    /// Hooks OpenSSL's read/write functions in `target` (a libssl or an
    /// executable with OpenSSL linked in) for every process; the programs
    /// themselves ignore untraced processes. Returns how many functions were
    /// found; 0 means `target` has no OpenSSL.
    ///
    /// All or nothing: on an error every probe attached to `target` here is
    /// detached again. Half a library would decrypt writes without reads,
    /// and an entry probe without its return probe would leave every call
    /// of its function in flight, so that the calling thread's next socket
    /// syscalls were taken for that call's ciphertext and never emitted.
    pub fn attach_openssl(&mut self, target: &std::path::Path) -> Result<usize, KernelError> {
        let mut links = Vec::new();
        let result = self.attach_openssl_probes(target, &mut links);
        if result.is_err() {
            for (program, link) in links.into_iter().rev() {
                if let Err(err) = uprobe(&mut self.ebpf, program).and_then(|p| {
                    p.detach(link)
                        .map_err(|source| KernelError::Program { program, source })
                }) {
                    log::warn!("detaching {program} from {}: {err}", target.display());
                }
            }
        }
        result
    }

    /// [`Self::attach_openssl`] without the undoing: `links` gets every
    /// probe attached, with its program.
    fn attach_openssl_probes(
        &mut self,
        target: &std::path::Path,
        links: &mut Vec<(&'static str, UProbeLinkId)>,
    ) -> Result<usize, KernelError> {
        let mut attached = 0;
        for &(function, program) in OPENSSL_FUNCTIONS {
            let hook_error = |probe, source| KernelError::OpensslHook {
                function,
                target: target.to_owned(),
                probe,
                source: Box::new(source),
            };
            match uprobe(&mut self.ebpf, program)?.attach(
                function,
                target,
                UProbeScope::AllProcesses,
            ) {
                Ok(link) => links.push((program, link)),
                // Missing symbols are normal (no `_ex` in OpenSSL 1.1.0,
                // no OpenSSL at all in most executables). aya reports a
                // file it cannot read or parse the same way.
                Err(err @ ProgramError::UProbeError(UProbeError::SymbolError { .. })) => {
                    log::debug!("no uprobe on {function} in {}: {err}", target.display());
                    continue;
                }
                Err(source) => return Err(hook_error("entry", source)),
            }
            let link = uprobe(&mut self.ebpf, OPENSSL_RETURN)?
                .attach(function, target, UProbeScope::AllProcesses)
                .map_err(|source| hook_error("return", source))?;
            links.push((OPENSSL_RETURN, link));
            attached += 1;
        }
        Ok(attached)
    }

    /// Kernel-side counters summed over CPUs.
    pub fn counters(&self) -> StdHashMap<Counter, u64> {
        let mut totals = StdHashMap::new();
        for counter in Counter::ALL {
            let total = match self.counters.get(&(counter as u32), 0) {
                Ok(per_cpu) => per_cpu.iter().sum(),
                Err(err) => {
                    log::debug!("reading counter {}: {err}", counter.label());
                    0
                }
            };
            totals.insert(counter, total);
        }
        totals
    }

    /// How the kernel programs find a syscall's socket on this kernel.
    pub fn socket_hooks(&self) -> SocketHooks {
        self.socket_hooks
    }

    /// Forwards log records the kernel programs wrote.
    pub fn flush_kernel_logs(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, KernelError> {
    ebpf.take_map(name).ok_or(KernelError::Missing(name))
}

/// `comm` as the kernel stores it: at most 15 bytes and a NUL, NUL padded.
pub fn comm_key(comm: &str) -> [u8; TASK_COMM_LEN] {
    let mut key = [0; TASK_COMM_LEN];
    for (slot, byte) in key.iter_mut().zip(comm.bytes().take(TASK_COMM_LEN - 1)) {
        *slot = byte;
    }
    key
}

/// Picks how the programs find a syscall's socket: the forced way if the
/// kernel has it, else the sock tracepoints where they exist (cheapest: they
/// fire only on sockets), else the file-table walk.
fn choose_socket_hooks(
    btf: &KernelBtf,
    forced: Option<SocketLookup>,
) -> Result<SocketHooks, KernelError> {
    let has_tracepoints = SOCKET_BTF_TRACEPOINTS
        .iter()
        .all(|&(_, tracepoint)| btf.has_btf_tracepoint(tracepoint));
    let hooks = |lookup, reason| SocketHooks { lookup, reason };
    match (forced, has_tracepoints) {
        (Some(SocketLookup::Tracepoint), false) => Err(KernelError::NoSocketTracepoints),
        (Some(lookup), _) => Ok(hooks(lookup, "forced by --socket-hooks")),
        (None, true) => Ok(hooks(
            SocketLookup::Tracepoint,
            "the kernel has the sock_send_length/sock_recv_length tracepoints",
        )),
        (None, false) => Ok(hooks(
            SocketLookup::FdTable,
            "no sock_send_length/sock_recv_length tracepoints (Linux < 6.3): fds resolved through the task's file table",
        )),
    }
}

fn kernel_config(
    btf: &KernelBtf,
    options: &KernelOptions,
    socket_lookup: SocketLookup,
) -> Result<KernelConfig, KernelError> {
    let sock = |field: &str| btf.field_offset("sock", &["__sk_common", field]);
    let mut config = KernelConfig {
        max_payload: options
            .max_payload
            .min(u32::try_from(MAX_PAYLOAD).unwrap_or(u32::MAX)),
        sock_family: sock("skc_family")?,
        sock_daddr: sock("skc_daddr")?,
        sock_rcv_saddr: sock("skc_rcv_saddr")?,
        sock_dport: sock("skc_dport")?,
        sock_num: sock("skc_num")?,
        sock_v6_daddr: sock("skc_v6_daddr")?,
        sock_v6_rcv_saddr: sock("skc_v6_rcv_saddr")?,
        sock_protocol: btf.field_offset("sock", &["sk_protocol"])?,
        task_tgid: btf.field_offset("task_struct", &["tgid"])?,
        wakeup_bytes: options.wakeup_bytes,
        socket_lookup: socket_lookup as u32,
        ..KernelConfig::UNSET
    };
    if socket_lookup == SocketLookup::FdTable {
        config.task_files = btf.field_offset("task_struct", &["files"])?;
        config.files_fdt = btf.field_offset("files_struct", &["fdt"])?;
        config.fdtable_max_fds = btf.field_offset("fdtable", &["max_fds"])?;
        config.fdtable_fd = btf.field_offset("fdtable", &["fd"])?;
        config.file_inode = btf.field_offset("file", &["f_inode"])?;
        config.file_private_data = btf.field_offset("file", &["private_data"])?;
        config.inode_mode = btf.field_offset("inode", &["i_mode"])?;
        config.socket_sk = btf.field_offset("socket", &["sk"])?;
    }
    Ok(config)
}

/// Kernels before 5.11 charge eBPF maps to `RLIMIT_MEMLOCK` (64 KiB by
/// default on many); later ones charge the memory cgroup and ignore it, so a
/// refusal only matters if loading then fails.
fn raise_memlock() -> Result<(), std::io::Error> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct for the calling process.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    log::debug!("raising RLIMIT_MEMLOCK: {err} (harmless on Linux 5.11+)");
    Err(err)
}

/// The uprobe program `program` of the object.
fn uprobe<'a>(ebpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut UProbe, KernelError> {
    ebpf.program_mut(program)
        .ok_or(KernelError::Missing(program))?
        .try_into()
        .map_err(|source| KernelError::Program { program, source })
}

/// Whether a load failure looks like the memlock limit: EPERM from a map
/// or program creation.
fn is_permission_error(err: &KernelError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::EPERM) {
                return true;
            }
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::comm_key;

    #[test]
    fn comm_key_truncates_like_the_kernel() {
        assert_eq!(&comm_key("nginx")[..6], b"nginx\0");
        let long = comm_key("a-very-long-executable-name");
        assert_eq!(&long[..15], b"a-very-long-exe");
        assert_eq!(long[15], 0);
    }
}
