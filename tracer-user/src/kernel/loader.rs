//! Loading the eBPF object, attaching every program and steering its maps.

use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{uprobe::UProbeScope, BtfTracePoint, TracePoint, UProbe},
    Btf, Ebpf, EbpfLoader,
};
use thiserror::Error;
use tracer_common::{
    maps::{names, Counter, TRACED_BY_PID},
    programs::{Hook, PROGRAMS, TLS_RETURN},
    KernelConfig, SocketLookup, MAX_PAYLOAD, TASK_COMM_LEN,
};

use super::btf::{BtfError, KernelBtf};

/// The compiled kernel programs (built by build.rs from tracer-ebpf).
pub(super) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

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
        source: aya::programs::ProgramError,
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
            .override_global(names::CONFIG, config, true)
            .map_max_entries(names::EVENTS, options.ring_buffer_bytes)
            .map_max_entries(names::SCRATCH, u32::try_from(cpus).unwrap_or(u32::MAX))
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
        load_programs(&mut ebpf, socket_hooks.lookup)?;
        let traced_pids =
            HashMap::try_from(take_map(&mut ebpf, names::TRACED_PIDS)?).map_err(|source| {
                KernelError::Map {
                    map: names::TRACED_PIDS,
                    source,
                }
            })?;
        let traced_comms =
            HashMap::try_from(take_map(&mut ebpf, names::TRACED_COMMS)?).map_err(|source| {
                KernelError::Map {
                    map: names::TRACED_COMMS,
                    source,
                }
            })?;
        let counters =
            PerCpuArray::try_from(take_map(&mut ebpf, names::COUNTERS)?).map_err(|source| {
                KernelError::Map {
                    map: names::COUNTERS,
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
        RingBuf::try_from(take_map(&mut self.ebpf, names::EVENTS)?).map_err(|source| {
            KernelError::Map {
                map: names::EVENTS,
                source,
            }
        })
    }

    pub fn trace_pid(&mut self, pid: u32) -> Result<(), KernelError> {
        self.traced_pids
            .insert(pid, TRACED_BY_PID, 0)
            .map_err(|source| KernelError::Map {
                map: names::TRACED_PIDS,
                source,
            })
    }

    pub fn trace_comm(&mut self, comm: &str) -> Result<(), KernelError> {
        self.traced_comms
            .insert(comm_key(comm), 1, 0)
            .map_err(|source| KernelError::Map {
                map: names::TRACED_COMMS,
                source,
            })
    }

    /// Hooks OpenSSL's read/write functions in `target` (a libssl or an
    /// executable with OpenSSL linked in) for every process; the programs
    /// themselves ignore untraced processes. Returns how many functions were
    /// found; 0 means `target` has no OpenSSL.
    pub fn attach_openssl(&mut self, target: &std::path::Path) -> Result<usize, KernelError> {
        let mut attached = 0;
        for program in PROGRAMS {
            let Hook::UProbe(function) = program.hook else {
                continue;
            };
            let entry: &mut UProbe = program_mut(&mut self.ebpf, program.name)?;
            match entry.attach(function, target, UProbeScope::AllProcesses) {
                Ok(_) => {}
                Err(err) => {
                    // Missing symbols are normal (no `_ex` in OpenSSL 1.1.0,
                    // no OpenSSL at all in most executables).
                    log::debug!("no uprobe on {function} in {}: {err}", target.display());
                    continue;
                }
            }
            let ret: &mut UProbe = program_mut(&mut self.ebpf, TLS_RETURN.name)?;
            ret.attach(function, target, UProbeScope::AllProcesses)
                .map_err(|source| KernelError::Program {
                    program: TLS_RETURN.name,
                    source,
                })?;
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

/// Loads every program of [`PROGRAMS`] the socket path needs, in the
/// table's order, and attaches the tracepoints. Uprobes are attached per
/// library later, as traced processes reveal them.
fn load_programs(ebpf: &mut Ebpf, lookup: SocketLookup) -> Result<(), KernelError> {
    let btf = Btf::from_sys_fs()?;
    for program in PROGRAMS.iter().filter(|p| p.runs_with(lookup)) {
        let failed = |source| KernelError::Program {
            program: program.name,
            source,
        };
        match program.hook {
            Hook::TracePoint { category, name } => {
                let prog: &mut TracePoint = program_mut(ebpf, program.name)?;
                prog.load().map_err(failed)?;
                prog.attach(category, name).map_err(failed)?;
            }
            Hook::BtfTracePoint(name) => {
                let prog: &mut BtfTracePoint = program_mut(ebpf, program.name)?;
                prog.load(name, &btf).map_err(failed)?;
                prog.attach().map_err(failed)?;
            }
            Hook::UProbe(_) | Hook::URetProbe => {
                let prog: &mut UProbe = program_mut(ebpf, program.name)?;
                prog.load().map_err(failed)?;
            }
        }
    }
    Ok(())
}

/// The program `name` of the object as its program type `P`.
fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, KernelError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(KernelError::Missing(name))?
        .try_into()
        .map_err(|source| KernelError::Program {
            program: name,
            source,
        })
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
    // Every tp_btf hook of the tracepoint path exists in this kernel.
    let has_tracepoints = PROGRAMS
        .iter()
        .filter(|p| p.only_on == Some(SocketLookup::Tracepoint))
        .all(|p| match p.hook {
            Hook::BtfTracePoint(name) => btf.has_btf_tracepoint(name),
            _ => true,
        });
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
