//! Loading the eBPF object, attaching every program and steering its maps.

use std::{
    collections::HashMap as StdHashMap,
    time::{Duration, Instant},
};

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
    maps::{names, Counter, GoProcess, SslKey, SslSocket, TRACED_BY_PID, TRACED_GO},
    programs::{
        Hook, Program as ProgramSpec, GO_NEWPROC, GO_NEWPROC_RETURN, GO_REQUEST_WRITE,
        GO_ROUND_TRIP, GO_TLS_READ, GO_TLS_READ_RETURN, GO_TLS_WRITE, PROGRAMS, TLS_RETURN,
    },
    IovecWalk, KernelConfig, SocketLookup, MAX_PAYLOAD, TASK_COMM_LEN,
};

use super::btf::{BtfError, KernelBtf};
use super::gotls::GoProbes;
use crate::connections::Binding;

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
    #[error("a thread loading eBPF programs panicked")]
    LoaderThread,
    #[error("Go crypto/tls: {0}")]
    GoTls(Box<super::gotls::GoTlsError>),
    #[error("{program} at file offset {offset:#x} of {}: {source}", target.display())]
    GoTlsHook {
        program: &'static str,
        offset: u64,
        target: std::path::PathBuf,
        source: Box<ProgramError>,
    },
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

impl KernelError {
    /// Whether the kernel refused for lack of privilege (EPERM, EACCES)
    /// somewhere down the error's chain.
    pub fn is_permission_denied(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = cause {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                    return true;
                }
            }
            cause = err.source();
        }
        false
    }
}

/// What the user chose that the kernel side needs.
pub struct KernelOptions {
    pub max_payload: u32,
    pub ring_buffer_bytes: u32,
    pub wakeup_bytes: u32,
    /// How to find a syscall's socket; `None` picks the cheapest the kernel offers.
    pub socket_lookup: Option<SocketLookup>,
    /// Whether processes are looked up by cgroup (`--cgroup`, `--container`).
    pub trace_cgroups: bool,
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

/// How the readv/writev/recvmsg/sendmsg programs walk their iovec arrays on
/// this kernel, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovecWalker {
    pub walk: IovecWalk,
    pub reason: &'static str,
}

/// The loaded, attached programs. Dropping it detaches and unloads them all.
pub struct AttachedKernel {
    ebpf: Ebpf,
    traced_pids: HashMap<MapData, u32, u8>,
    traced_comms: HashMap<MapData, [u8; TASK_COMM_LEN], u8>,
    traced_cgroups: HashMap<MapData, u64, u8>,
    ssl_sockets: HashMap<MapData, SslKey, SslSocket>,
    go_processes: HashMap<MapData, u32, GoProcess>,
    counters: PerCpuArray<MapData, u64>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    socket_hooks: SocketHooks,
    iovec_walker: IovecWalker,
    load_times: LoadTimes,
}

/// Where the time to load went, for the exit summary: attach time is what
/// users wait for before the first span, and the verifier is most of it.
#[derive(Clone, Debug, Default)]
pub struct LoadTimes {
    /// Reading the kernel's BTF for struct offsets.
    pub offsets: Duration,
    /// Parsing our object, the kernel's BTF for aya, creating the maps.
    pub object: Duration,
    /// Each program loaded (verified) and, for tracepoints, attached.
    pub programs: ProgramTimes,
}

impl AttachedKernel {
    pub fn load(options: &KernelOptions) -> Result<Self, KernelError> {
        if EBPF_OBJECT.is_empty() {
            return Err(KernelError::NoObject);
        }
        let started = Instant::now();
        let kernel_btf = KernelBtf::from_sys_fs()?;
        let socket_hooks = choose_socket_hooks(&kernel_btf, options.socket_lookup)?;
        log::debug!(
            "socket hooks: {} ({})",
            socket_hooks.name(),
            socket_hooks.reason
        );
        let iovec_walker = choose_iovec_walker(&kernel_btf);
        log::debug!(
            "iovec walk: {} ({})",
            iovec_walker.walk.name(),
            iovec_walker.reason
        );
        let config = kernel_config(&kernel_btf, options, socket_hooks.lookup)?;
        drop(kernel_btf);
        let offsets = started.elapsed();
        let memlock = raise_memlock();
        let mut kernel =
            Self::load_with(options, &config, socket_hooks, iovec_walker).map_err(|err| {
                match memlock {
                    Err(rlimit) if is_permission_error(&err) => KernelError::Memlock {
                        source: Box::new(err),
                        rlimit,
                    },
                    _ => err,
                }
            })?;
        kernel.load_times.offsets = offsets;
        Ok(kernel)
    }

    /// Where the time to load went.
    pub fn load_times(&self) -> &LoadTimes {
        &self.load_times
    }

    fn load_with(
        options: &KernelOptions,
        config: &KernelConfig,
        socket_hooks: SocketHooks,
        iovec_walker: IovecWalker,
    ) -> Result<Self, KernelError> {
        let cpus =
            aya::util::nr_cpus().map_err(|(what, source)| KernelError::Cpus { what, source })?;
        let started = Instant::now();
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
        let object = started.elapsed();
        let (programs, iovec_walker) = load_programs(&mut ebpf, socket_hooks.lookup, iovec_walker)?;
        let traced_pids = take_typed_map(&mut ebpf, names::TRACED_PIDS)?;
        let traced_comms = take_typed_map(&mut ebpf, names::TRACED_COMMS)?;
        let traced_cgroups = take_typed_map(&mut ebpf, names::TRACED_CGROUPS)?;
        let ssl_sockets = take_typed_map(&mut ebpf, names::SSL_SOCKETS)?;
        let go_processes = take_typed_map(&mut ebpf, names::GO_PROCESSES)?;
        let counters = take_typed_map(&mut ebpf, names::COUNTERS)?;
        Ok(AttachedKernel {
            ebpf,
            traced_pids,
            traced_comms,
            traced_cgroups,
            ssl_sockets,
            go_processes,
            counters,
            logger,
            socket_hooks,
            iovec_walker,
            load_times: LoadTimes {
                offsets: Duration::ZERO,
                object,
                programs,
            },
        })
    }

    /// The ring buffer of events; call once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        take_typed_map(&mut self.ebpf, names::EVENTS)
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

    /// Traces the processes of the cgroup with this v2 id (not its
    /// descendants: user space adds each of them).
    pub fn trace_cgroup(&mut self, id: u64) -> Result<(), KernelError> {
        self.traced_cgroups
            .insert(id, 1, 0)
            .map_err(|source| KernelError::Map {
                map: names::TRACED_CGROUPS,
                source,
            })
    }

    /// Forgets a removed cgroup (its id is never reused while the kernel
    /// runs, but the map's room is).
    pub fn untrace_cgroup(&mut self, id: u64) -> Result<(), KernelError> {
        match self.traced_cgroups.remove(&id) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(KernelError::Map {
                map: names::TRACED_CGROUPS,
                source,
            }),
        }
    }

    /// Tells the TLS programs the socket of an `SSL *` that user space tied
    /// to it (an event loop's, whose calls make no syscall).
    pub fn bind_ssl(&mut self, binding: &Binding) -> Result<(), KernelError> {
        let key = SslKey {
            ssl: binding.ssl,
            tgid: binding.pid,
            _pad: 0,
        };
        let socket = SslSocket {
            sock: binding.sock,
            fd: binding.fd,
            _pad: 0,
        };
        self.ssl_sockets
            .insert(key, socket, 0)
            .map_err(|source| KernelError::Map {
                map: names::SSL_SOCKETS,
                source,
            })
    }

    /// Registers the Go process `pid`: the Go TLS probes follow its
    /// `tls.Conn`s to their sockets, its syscalls carry their goroutine.
    pub fn register_go_process(&mut self, pid: u32, process: GoProcess) -> Result<(), KernelError> {
        self.go_processes
            .insert(pid, process, 0)
            .map_err(|source| KernelError::Map {
                map: names::GO_PROCESSES,
                source,
            })?;
        // Only while it is traced (it may have exited meanwhile).
        if let Ok(traced) = self.traced_pids.get(&pid, 0) {
            // `BPF_EXIST`: update only, never re-add an exited process.
            const BPF_EXIST: u64 = 2;
            self.traced_pids
                .insert(pid, traced | TRACED_GO, BPF_EXIST)
                .map_err(|source| KernelError::Map {
                    map: names::TRACED_PIDS,
                    source,
                })?;
        }
        Ok(())
    }

    /// Hooks Go's `crypto/tls` and HTTP client in the executable `target`
    /// for every process running it. All or nothing, as
    /// [`Self::attach_openssl`].
    pub fn attach_go(
        &mut self,
        target: &std::path::Path,
        probes: &GoProbes,
    ) -> Result<(), KernelError> {
        let mut points = Vec::new();
        if let Some(tls) = &probes.tls {
            points.push((GO_TLS_WRITE.name, tls.write));
            points.push((GO_TLS_READ.name, tls.read));
            points.extend(
                tls.read_returns
                    .iter()
                    .map(|&offset| (GO_TLS_READ_RETURN.name, offset)),
            );
        }
        if let Some(http) = &probes.http_client {
            points.push((GO_ROUND_TRIP.name, http.round_trip));
            points.push((GO_REQUEST_WRITE.name, http.request_write));
        }
        if let Some(spawn) = &probes.spawn {
            // Returns first: an entry without its return would leave its
            // thread's slot behind (LRU, so harmless, but pointless).
            points.extend(
                spawn
                    .returns
                    .iter()
                    .map(|&offset| (GO_NEWPROC_RETURN.name, offset)),
            );
            points.push((GO_NEWPROC.name, spawn.entry));
        }
        let mut links = Vec::new();
        let mut result = Ok(());
        for (program, offset) in points {
            let attached = program_mut::<UProbe>(&mut self.ebpf, program).and_then(|p| {
                p.attach(offset, target, UProbeScope::AllProcesses)
                    .map_err(|source| KernelError::GoTlsHook {
                        program,
                        offset,
                        target: target.to_owned(),
                        source: Box::new(source),
                    })
            });
            match attached {
                Ok(link) => links.push((program, link)),
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        if result.is_err() {
            for (program, link) in links.into_iter().rev() {
                if let Err(err) = program_mut::<UProbe>(&mut self.ebpf, program).and_then(|p| {
                    p.detach(link)
                        .map_err(|source| KernelError::Program { program, source })
                }) {
                    log::warn!("detaching {program} from {}: {err}", target.display());
                }
            }
        }
        result
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
                if let Err(err) = program_mut::<UProbe>(&mut self.ebpf, program).and_then(|p| {
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
        for program in PROGRAMS {
            let Hook::UProbe(function) = program.hook else {
                continue;
            };
            let hook_error = |probe, source| KernelError::OpensslHook {
                function,
                target: target.to_owned(),
                probe,
                source: Box::new(source),
            };
            match program_mut::<UProbe>(&mut self.ebpf, program.name)?.attach(
                function,
                target,
                UProbeScope::AllProcesses,
            ) {
                Ok(link) => links.push((program.name, link)),
                // Missing symbols are normal (no `_ex` in OpenSSL 1.1.0,
                // no OpenSSL at all in most executables). aya reports a
                // file it cannot read or parse the same way.
                Err(err @ ProgramError::UProbeError(UProbeError::SymbolError { .. })) => {
                    log::debug!("no uprobe on {function} in {}: {err}", target.display());
                    continue;
                }
                Err(source) => return Err(hook_error("entry", source)),
            }
            let link = program_mut::<UProbe>(&mut self.ebpf, TLS_RETURN.name)?
                .attach(function, target, UProbeScope::AllProcesses)
                .map_err(|source| hook_error("return", source))?;
            links.push((TLS_RETURN.name, link));
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

    /// How the iovec programs walk their arrays on this kernel.
    pub fn iovec_walker(&self) -> IovecWalker {
        self.iovec_walker
    }

    /// Forwards log records the kernel programs wrote.
    pub fn flush_kernel_logs(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }
}

/// Loads every program of [`PROGRAMS`] the socket path and the iovec walk
/// need and attaches the tracepoints; uprobes are attached per library
/// later, as traced processes reveal them. Returns how long each took, and
/// the iovec walk in use: where a `bpf_loop` program is refused, its
/// unrolled twin is loaded instead, and the walk is reported as unrolled.
///
/// The verifier runs in the loading thread and is most of the time to
/// attach (the unrolled iovec walkers take the longest), so the programs are
/// loaded on as many threads as there are CPUs, up to [`LOAD_THREADS`].
fn load_programs(
    ebpf: &mut Ebpf,
    lookup: SocketLookup,
    walker: IovecWalker,
) -> Result<(ProgramTimes, IovecWalker), KernelError> {
    let btf = Btf::from_sys_fs()?;
    let mut objects: StdHashMap<&str, &mut aya::programs::Program> = ebpf.programs_mut().collect();
    let mut take = |spec: &'static ProgramSpec| {
        objects
            .remove(spec.name)
            .map(|object| (spec, object))
            .ok_or(KernelError::Missing(spec.name))
    };
    let mut jobs = Vec::with_capacity(PROGRAMS.len());
    for spec in PROGRAMS.iter().filter(|p| p.runs_with(lookup, walker.walk)) {
        let fallback = match unrolled_twin(spec) {
            Some(twin) => Some(take(twin)?),
            None => None,
        };
        jobs.push(Job {
            program: take(spec)?,
            fallback,
        });
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, LOAD_THREADS);
    // One queue that every thread takes from: a thread held up by a slow
    // program (the unrolled iovec walkers take the verifier up to a second
    // each) leaves the rest to the others.
    let queue = std::sync::Mutex::new(jobs.into_iter());
    let next = || queue.lock().ok().and_then(|mut jobs| jobs.next());
    let btf = &btf;
    let results: Vec<Result<Vec<Loaded>, KernelError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut loaded = Vec::new();
                    while let Some(job) = next() {
                        loaded.push(load_job(job, btf)?);
                    }
                    Ok(loaded)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or(Err(KernelError::LoaderThread)))
            .collect()
    });
    let mut times = Vec::with_capacity(PROGRAMS.len());
    let mut walker = walker;
    for lane in results {
        for loaded in lane? {
            if loaded.fell_back {
                walker = IovecWalker {
                    walk: IovecWalk::Unrolled,
                    reason: "the kernel refused the bpf_loop programs",
                };
            }
            times.push((loaded.name, loaded.took));
        }
    }
    Ok((times, walker))
}

/// How long each program took to load (and attach), by name.
type ProgramTimes = Vec<(&'static str, Duration)>;

/// A program to load, and the one to load in its place if the kernel
/// refuses it.
struct Job<'a> {
    program: (&'static ProgramSpec, &'a mut aya::programs::Program),
    fallback: Option<(&'static ProgramSpec, &'a mut aya::programs::Program)>,
}

/// A program loaded: its name, how long it took, and whether it is the
/// fallback of the one asked for.
struct Loaded {
    name: &'static str,
    took: Duration,
    fell_back: bool,
}

fn load_job(job: Job<'_>, btf: &Btf) -> Result<Loaded, KernelError> {
    let started = Instant::now();
    let (spec, object) = job.program;
    let err = match load_one(spec, object, btf) {
        Ok(()) => {
            return Ok(Loaded {
                name: spec.name,
                took: started.elapsed(),
                fell_back: false,
            })
        }
        Err(err) => err,
    };
    let Some((twin, object)) = job.fallback else {
        return Err(err);
    };
    log::warn!("{err}; loading {} instead", twin.name);
    let started = Instant::now();
    load_one(twin, object, btf)?;
    Ok(Loaded {
        name: twin.name,
        took: started.elapsed(),
        fell_back: true,
    })
}

/// The unrolled program on the hook of a `bpf_loop` program.
fn unrolled_twin(spec: &ProgramSpec) -> Option<&'static ProgramSpec> {
    if spec.only_with != Some(IovecWalk::BpfLoop) {
        return None;
    }
    PROGRAMS
        .iter()
        .find(|p| p.hook == spec.hook && p.only_with == Some(IovecWalk::Unrolled))
}

/// Most threads loading programs at once.
const LOAD_THREADS: usize = 4;

fn load_one(
    spec: &ProgramSpec,
    object: &mut aya::programs::Program,
    btf: &Btf,
) -> Result<(), KernelError> {
    let failed = |source| KernelError::Program {
        program: spec.name,
        source,
    };
    match spec.hook {
        Hook::TracePoint { category, name } => {
            let prog: &mut TracePoint = object.try_into().map_err(failed)?;
            prog.load().map_err(failed)?;
            prog.attach(category, name).map_err(failed)?;
        }
        Hook::BtfTracePoint(name) => {
            let prog: &mut BtfTracePoint = object.try_into().map_err(failed)?;
            prog.load(name, btf).map_err(failed)?;
            prog.attach().map_err(failed)?;
        }
        Hook::UProbe(_) | Hook::URetProbe | Hook::GoProbe => {
            let prog: &mut UProbe = object.try_into().map_err(failed)?;
            prog.load().map_err(failed)?;
        }
    }
    Ok(())
}

/// The program `name` of the object as its program type `P`.
fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, KernelError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
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

/// The map `name`, taken out of the object as the typed map `M`.
fn take_typed_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, KernelError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    M::try_from(take_map(ebpf, name)?).map_err(|source| KernelError::Map { map: name, source })
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

/// Picks how the iovec programs walk their arrays: with `bpf_loop` where the
/// kernel has it (5.17+; the verifier then checks one iovec copy instead of
/// [`tracer_common::MAX_IOVECS`]), else unrolled.
fn choose_iovec_walker(btf: &KernelBtf) -> IovecWalker {
    if btf.has_helper("loop") {
        IovecWalker {
            walk: IovecWalk::BpfLoop,
            reason: "the kernel has the bpf_loop helper (Linux 5.17+)",
        }
    } else {
        IovecWalker {
            walk: IovecWalk::Unrolled,
            reason: "no bpf_loop helper (Linux < 5.17): iovec loops unrolled",
        }
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
        trace_cgroups: u32::from(options.trace_cgroups),
        ..KernelConfig::UNSET
    };
    // The file table is also how the Go TLS probes find a socket, whatever
    // the syscalls' path.
    {
        config.task_files = btf.field_offset("task_struct", &["files"])?;
        config.files_fdt = btf.field_offset("files_struct", &["fdt"])?;
        config.fdtable_max_fds = btf.field_offset("fdtable", &["max_fds"])?;
        config.fdtable_fd = btf.field_offset("fdtable", &["fd"])?;
        config.file_inode = btf.field_offset("file", &["f_inode"])?;
        config.file_private_data = btf.field_offset("file", &["private_data"])?;
        config.inode_mode = btf.field_offset("inode", &["i_mode"])?;
        config.socket_sk = btf.field_offset("socket", &["sk"])?;
    }
    // x86-64 only; without it Go processes are simply not followed by
    // goroutine.
    config.task_fsbase = btf
        .field_offset("task_struct", &["thread", "fsbase"])
        .unwrap_or_else(|err| {
            log::debug!("{err}: goroutines of Go processes are not read");
            0
        });
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
