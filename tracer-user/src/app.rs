//! A tracing run from start to summary: checks, attach, event loop, exit.

pub mod summary;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracer_common::maps::{Counter, MAX_TRACED_CGROUPS};

use crate::{
    cli::Args,
    clock,
    kernel::{
        capabilities::{self, Capability, CapabilitySet},
        gotls::GoTlsHooks,
        openssl::{self, OpensslHooks},
        preflight, AttachedKernel, KernelError, KernelOptions,
    },
    linking::LinkConfig,
    pipeline::{Pipeline, PipelineConfig},
    process::{
        self,
        cgroup::{Cgroup2, CgroupTargets},
    },
    protocols::{self, ParserOptions},
    sinks::{
        self,
        metrics::{Health, HealthStats},
        setup::SinkConfig,
        summary::FinalTable,
        Sinks,
    },
    source::EventRing,
};

use summary::AttachSummary;
pub use summary::Summary;

/// Records handled between two hand-offs to the sinks. Small enough that a
/// batch's spans are still in cache when the sinks encode them and when
/// their memory comes back for reuse: at 4,096 a Redis `-P 16` batch held
/// ~26,000 spans (~19 MB) and the tracer spent 1.04-1.14 µs of CPU per
/// command on this machine, at 256 0.79-0.87 µs (`cargo xtask bench --only
/// redis`, A/B in one sitting; 64 was no better).
const DRAIN_BATCH: usize = 256;
/// How long events may wait in the ring buffer on a quiet system. Each
/// wake-up costs the tracer about 60 µs of CPU on a VM whatever it finds
/// (measured idle: 3.8 ms/s at 50 ms, 8.8 ms/s at 10 ms), and at a moderate
/// rate fewer, larger batches cost less per span (4,000 req/s: 4.4 µs per
/// span at 50 ms, 3.2 µs at 200 ms; BENCHMARKS.md). Busy systems are woken
/// by the kernel once `WAKEUP_BYTES` are queued, long before this.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Bytes queued in the ring buffer that make the kernel wake the reader.
const WAKEUP_BYTES: u32 = 256 * 1024;
/// Span batches a sink may have queued before further ones are dropped.
const SINK_QUEUE_BATCHES: usize = 1024;
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
const IDLE_CONNECTION_TIMEOUT_NS: u64 = 300 * 1_000_000_000;

pub async fn run(args: Args) -> anyhow::Result<Summary> {
    let mut run = attach(&args)?;
    run.event_loop().await;
    Ok(run.shutdown())
}

/// Everything a run holds between attach and shutdown.
struct Run {
    kernel: AttachedKernel,
    ring: EventRing,
    pipeline: Pipeline,
    sinks: Sinks,
    /// The latency table, once the sinks are finished.
    latency: FinalTable,
    health: Arc<Health>,
    tls_hooks: OpensslHooks,
    go_tls: GoTlsHooks,
    /// Traced processes still alive at the last housekeeping, and new ones.
    traced_now: Vec<u32>,
    /// The `--cgroup` / `--container` subtrees, listed at each housekeeping.
    cgroups: CgroupTargets,
    /// A failure to list them is reported once, not every second.
    cgroup_error_reported: bool,
    sigint: Signal,
    sigterm: Signal,
    deadline: Option<tokio::time::Instant>,
    last_housekeeping: Instant,
    lost_reported: u64,
    /// Failures after attach, each logged; the run went on.
    hook_errors: u64,
    attach_times: AttachSummary,
}

/// Checks, sinks, kernel programs, the processes to trace and their TLS
/// libraries; an error here ends the run before anything was traced.
fn attach(args: &Args) -> anyhow::Result<Run> {
    let started = Instant::now();
    let duration = args.duration().map_err(anyhow::Error::msg)?;
    if args.pids.is_empty()
        && args.comms.is_empty()
        && args.cgroups.is_empty()
        && args.containers.is_empty()
    {
        bail!("nothing to trace: give --pid PID, --comm NAME, --cgroup PATH or --container ID");
    }
    let mut cgroups = CgroupTargets::new(cgroup_roots(args)?);
    let held = preflight::check()?;
    let pids = process::with_descendants(&args.pids)?;
    for comm in &args.comms {
        if comm.len() > 15 {
            // The kernel keeps 15 bytes, which may end inside a character.
            log::warn!(
                "--comm {comm}: the kernel keeps 15 bytes of a name; matching {:?}",
                String::from_utf8_lossy(&comm.as_bytes()[..15])
            );
        }
    }
    // Sinks before the kernel: a bad export setting fails before attaching.
    let health = Arc::new(Health::default());
    let (sinks, latency) = sinks::setup::start(&sink_config(args), SINK_QUEUE_BATCHES, &health)?;

    let mut kernel = AttachedKernel::load(&KernelOptions {
        max_payload: args.max_payload,
        ring_buffer_bytes: args.ring_buffer_mib * 1024 * 1024,
        wakeup_bytes: WAKEUP_BYTES,
        socket_lookup: args.socket_hooks.forced(),
        trace_cgroups: !cgroups.is_empty(),
    })?;
    return_freed_heap();
    let ring = kernel.take_events()?;
    let ring = EventRing::new(ring, POLL_INTERVAL).context("watching the ring buffer")?;
    let traced_now = trace_targets(args, &pids, &mut kernel, &mut cgroups)?;
    let tls_hooks = hook_tls(&mut kernel, traced_now.iter().copied(), held)?;
    let mut go_tls = GoTlsHooks::new(!held.has(Capability::SysAdmin));
    for &pid in &traced_now {
        go_tls.hook_process(&mut kernel, pid)?;
    }
    let attach_times = AttachSummary::new(
        started.elapsed(),
        kernel.load_times(),
        kernel.iovec_walker().walk,
    );
    log::debug!("attach times: {attach_times:?}");
    eprintln!(
        "tracer: attached; tracing {} process(es){}; Ctrl-C to stop",
        traced_now.len(),
        also_traced(args, &cgroups)
    );

    let enabled = if args.protocols.is_empty() {
        protocols::default_enabled()
    } else {
        args.protocols.clone()
    };
    let mut pipeline = Pipeline::new(PipelineConfig {
        enabled,
        options: ParserOptions {
            include_query: args.include_query,
            raw_statements: args.raw_statements,
        },
        max_connections: args.max_connections,
        wall_offset_ns: clock::wall_offset_ns(),
        link: LinkConfig {
            window_ns: args.link_window_ms * 1_000_000,
            max_spans: usize::try_from(args.link_max_spans).unwrap_or(usize::MAX),
        },
    });
    // Names now: a short-lived process may be gone by the time its first
    // span is built.
    for &pid in &traced_now {
        pipeline.know_process(pid);
    }
    for pid in go_tls.take_go_processes() {
        pipeline.schedules_goroutines(pid);
    }

    let sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(Run {
        kernel,
        ring,
        pipeline,
        sinks,
        latency,
        health,
        tls_hooks,
        go_tls,
        traced_now,
        cgroups,
        cgroup_error_reported: false,
        sigint,
        sigterm,
        deadline: duration.map(|d| tokio::time::Instant::now() + d),
        last_housekeeping: Instant::now(),
        lost_reported: 0,
        hook_errors: 0,
        attach_times,
    })
}

/// Puts the processes to trace in the kernel's table: `pids`, the ones named
/// by `--comm` and the ones in the `--cgroup` subtrees, with their
/// descendants; returns them all.
fn trace_targets(
    args: &Args,
    pids: &[u32],
    kernel: &mut AttachedKernel,
    cgroups: &mut CgroupTargets,
) -> anyhow::Result<Vec<u32>> {
    // Names first, then the scan: a process exec'd in between is caught by
    // the kernel, one exec'd before by the scan.
    for comm in &args.comms {
        kernel.trace_comm(comm)?;
    }
    let by_comm = process::pids_with_comm(&args.comms)?;
    let by_comm = process::with_descendants(&by_comm).unwrap_or(by_comm);
    // cgroups first, then their processes: one that joins after the listing
    // is caught by the kernel at its first hooked call.
    let mut by_cgroup = Vec::new();
    if !cgroups.is_empty() {
        let listed = cgroups.refresh(MAX_TRACED_CGROUPS as usize)?;
        for (id, path) in listed.added {
            log::debug!("tracing cgroup {} (id {id})", path.display());
            kernel.trace_cgroup(id)?;
        }
        by_cgroup = cgroups.processes();
    }
    let mut traced: Vec<u32> = Vec::with_capacity(pids.len() + by_comm.len() + by_cgroup.len());
    for pid in pids.iter().chain(&by_comm).chain(&by_cgroup) {
        if !traced.contains(pid) {
            kernel.trace_pid(*pid)?;
            traced.push(*pid);
        }
    }
    Ok(traced)
}

/// What the attach line says is traced besides the processes found now.
fn also_traced(args: &Args, cgroups: &CgroupTargets) -> String {
    let mut also = Vec::new();
    if !args.comms.is_empty() {
        also.push(format!("new ones named {}", args.comms.join(",")));
    }
    if !cgroups.is_empty() {
        let roots: Vec<String> = cgroups
            .roots()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        also.push(format!("new ones in {}", roots.join(", ")));
    }
    if also.is_empty() {
        String::new()
    } else {
        format!(" and {}", also.join(" and "))
    }
}

/// The cgroups of `--cgroup` and `--container`, as directories of the
/// cgroup v2 hierarchy.
fn cgroup_roots(args: &Args) -> anyhow::Result<Vec<PathBuf>> {
    if args.cgroups.is_empty() && args.containers.is_empty() {
        return Ok(Vec::new());
    }
    let hierarchy = Cgroup2::find()?;
    let mut roots = Vec::new();
    for path in &args.cgroups {
        roots.push(hierarchy.resolve(path)?);
    }
    for id in &args.containers {
        let root = hierarchy.find_container(id)?;
        log::info!("container {id}: cgroup {}", root.display());
        roots.push(root);
    }
    Ok(roots)
}

/// Hooks OpenSSL for TLS plaintext; where the kernel refuses uprobes for
/// lack of `CAP_SYS_ADMIN`, hooks nothing, says so, and tracing goes on.
fn hook_tls(
    kernel: &mut AttachedKernel,
    pids: impl Iterator<Item = u32>,
    held: CapabilitySet,
) -> Result<OpensslHooks, KernelError> {
    let mut tls_hooks = OpensslHooks::new(!held.has(Capability::SysAdmin));
    // The system's libssl whatever is traced, not only what the maps show
    // now: a traced process may load it later (dlopen, e.g. Python's
    // `import ssl` at its first HTTPS call; a child exec'd after attach;
    // `--comm`), and a library found in the maps is hooked only at the next
    // housekeeping, after its first calls went by undecrypted. Uprobes
    // belong to the file, so these are in place from the first call on.
    for lib in openssl::system_libssl() {
        tls_hooks.hook(kernel, &lib)?;
    }
    for pid in pids {
        tls_hooks.hook_process(kernel, pid)?;
    }
    if held.has(Capability::SysAdmin) && !held.has(Capability::SysPtrace) {
        log::warn!("{}", capabilities::no_ptrace_message());
    }
    Ok(tls_hooks)
}

fn sink_config(args: &Args) -> SinkConfig {
    let export = &args.export;
    SinkConfig {
        output: args.output,
        otlp_endpoint: export.otlp_endpoint.clone(),
        otlp_protocol: export.otlp_protocol,
        otlp_compression: export.otlp_compression,
        otlp_headers: export.otlp_headers.clone(),
        service_name: export.service_name.clone(),
        output_file: export.output_file.clone(),
        output_file_max_mib: export.output_file_max_mib,
        metrics_addr: export.metrics_addr,
        summary_every: export.summary_every.map(Duration::from_secs),
        summary_format: export.summary_format,
    }
}

/// What the event loop drives: a [`Run`], or a fake in tests.
trait Turns {
    /// Waits for events; false once the run is to stop.
    async fn wait(&mut self) -> bool;
    /// Moves queued events through the pipeline and the spans to the sinks.
    fn drain(&mut self);
    /// Hooks new processes and keeps things tidy; every failure is returned,
    /// the rest of the work is still done.
    fn housekeeping(&mut self) -> Vec<anyhow::Error>;
}

/// Turns until told to stop. A failure never ends the loop: it is logged
/// and counted, and the count returned, so that the spans already captured
/// still reach the sinks at shutdown.
async fn turn_until_stopped(turns: &mut impl Turns) -> u64 {
    let mut errors = 0;
    while turns.wait().await {
        turns.drain();
        for err in turns.housekeeping() {
            log::warn!("{err:#}; tracing goes on");
            errors += 1;
        }
    }
    errors
}

impl Turns for Run {
    async fn wait(&mut self) -> bool {
        tokio::select! {
            () = self.ring.wait() => true,
            _ = self.sigint.recv() => false,
            _ = self.sigterm.recv() => false,
            () = sleep_until(self.deadline) => false,
        }
    }

    fn drain(&mut self) {
        drain(
            &mut self.ring,
            &mut self.pipeline,
            &mut self.sinks,
            &mut self.kernel,
        );
    }

    fn housekeeping(&mut self) -> Vec<anyhow::Error> {
        let mut errors = Vec::new();
        let mut new_processes = Vec::new();
        for pid in self.pipeline.take_new_processes() {
            if let Err(err) = self.tls_hooks.hook_process(&mut self.kernel, pid) {
                errors.push(
                    anyhow::Error::new(err).context(format!("hooking TLS in new process {pid}")),
                );
            }
            // Forked or exec'd: maybe another executable than before.
            self.go_tls.forget(pid);
            if let Err(err) = self.go_tls.hook_process(&mut self.kernel, pid) {
                errors.push(
                    anyhow::Error::new(err).context(format!("hooking Go TLS in new process {pid}")),
                );
            }
            self.traced_now.push(pid);
            new_processes.push(pid);
        }
        let go = self.go_tls.take_go_processes();
        for pid in new_processes {
            self.pipeline.settle_executors(pid, go.contains(&pid));
        }
        if self.last_housekeeping.elapsed() < HOUSEKEEPING_EVERY {
            return errors;
        }
        self.last_housekeeping = Instant::now();
        // cgroups made or removed in the traced subtrees.
        if !self.cgroups.is_empty() {
            if let Err(err) = self.refresh_cgroups() {
                if !self.cgroup_error_reported {
                    self.cgroup_error_reported = true;
                    errors.push(err.context("updating the traced cgroups"));
                }
            }
        }
        // Libraries loaded later (dlopen, e.g. Python's `import ssl`).
        let go_tls = &mut self.go_tls;
        self.traced_now.retain(|&pid| {
            let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
            if !alive {
                go_tls.forget(pid);
            }
            alive
        });
        for &pid in &self.traced_now {
            if let Err(err) = self.tls_hooks.hook_process(&mut self.kernel, pid) {
                errors
                    .push(anyhow::Error::new(err).context(format!("hooking TLS in process {pid}")));
            }
        }
        self.kernel.flush_kernel_logs();
        self.pipeline
            .evict_idle(clock::monotonic_ns().saturating_sub(IDLE_CONNECTION_TIMEOUT_NS));
        let kernel_counters = counters(&self.kernel, &self.pipeline);
        let stats = self.pipeline.stats();
        let conn_stats = self.pipeline.connection_stats();
        self.health.publish(
            HealthStats {
                events_read: stats.records,
                malformed_events: stats.malformed_records,
                spans_emitted: stats.spans,
                parser_desyncs: conn_stats.desyncs,
                connections_over_limit: conn_stats.table_full,
            },
            &kernel_counters,
        );
        let lost = kernel_counters
            .get(&Counter::RingBufFull)
            .copied()
            .unwrap_or(0);
        if lost > self.lost_reported {
            eprintln!(
                "tracer: {} events lost: ring buffer full (raise --ring-buffer-mib or lower --max-payload)",
                lost - self.lost_reported
            );
            self.lost_reported = lost;
        }
        errors
    }
}

impl Run {
    fn refresh_cgroups(&mut self) -> anyhow::Result<()> {
        let changes = self.cgroups.refresh(MAX_TRACED_CGROUPS as usize)?;
        for (id, path) in changes.added {
            log::debug!("tracing cgroup {} (id {id})", path.display());
            self.kernel.trace_cgroup(id)?;
        }
        for id in changes.removed {
            self.kernel.untrace_cgroup(id)?;
        }
        Ok(())
    }

    /// Until Ctrl-C, SIGTERM or `--duration`; never fails.
    async fn event_loop(&mut self) {
        let errors = turn_until_stopped(self).await;
        self.hook_errors += errors;
    }

    /// Drains what is left, sends what waits for linking, detaches and
    /// finishes the sinks; on every way out of the event loop.
    fn shutdown(self) -> Summary {
        let Run {
            mut kernel,
            mut ring,
            mut pipeline,
            mut sinks,
            latency,
            hook_errors,
            attach_times,
            ..
        } = self;
        drain(&mut ring, &mut pipeline, &mut sinks, &mut kernel);
        // What still waits for a parent goes out as it stands.
        pipeline.flush_linking();
        if let Some(batch) = pipeline.take_batch() {
            sinks.send(batch);
        }
        let kernel_counters = counters(&kernel, &pipeline);
        // Detaches and unloads every program and map.
        drop(ring);
        drop(kernel);

        let sink_reports = sinks.finish();
        let stats = pipeline.stats();
        let conn_stats = pipeline.connection_stats();
        let mut summary = Summary {
            spans: stats.spans,
            events_read: stats.records,
            parser_desyncs: conn_stats.desyncs,
            connections_over_limit: conn_stats.table_full,
            tls_undecrypted: conn_stats.tls_undecrypted,
            connections_open: pipeline.connections_open() as u64,
            hook_errors,
            linking: (&pipeline.link_stats()).into(),
            latency: latency.take(),
            attach: attach_times,
            ..Summary::default()
        };
        summary.set_losses(&kernel_counters, stats.malformed_records);
        summary.set_sinks(&sink_reports);
        summary
    }
}

/// The kernel's loss counters, with the TLS calls user space could not tie
/// to a socket counted where the kernel counts its own.
fn counters(
    kernel: &AttachedKernel,
    pipeline: &Pipeline,
) -> std::collections::HashMap<Counter, u64> {
    let mut counters = kernel.counters();
    *counters.entry(Counter::TlsSocketUnknown).or_default() +=
        pipeline.tls_binding_stats().unbound_calls;
    counters
}

fn drain(
    ring: &mut EventRing,
    pipeline: &mut Pipeline,
    sinks: &mut Sinks,
    kernel: &mut AttachedKernel,
) {
    loop {
        let handled = ring.drain(DRAIN_BATCH, |record| pipeline.handle_record(record));
        if let Some(batch) = pipeline.take_batch() {
            sinks.send(batch);
        }
        for binding in pipeline.take_tls_bindings() {
            // Without it the kernel goes on handing that SSL *'s calls
            // on unbound, which user space still ties: only slower.
            if let Err(err) = kernel.bind_ssl(&binding) {
                log::debug!("SSL * of process {} in the kernel: {err}", binding.pid);
            }
        }
        if handled < DRAIN_BATCH {
            break;
        }
    }
}

/// Loading parses the kernel's BTF (several MiB, tens of MiB of heap while
/// parsing); glibc keeps that freed heap mapped unless asked to return it,
/// and it would count in the tracer's RSS for the whole run.
fn return_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run whose events are numbers: `drain` delivers what arrived,
    /// housekeeping fails on the turns listed.
    struct Fake {
        turns_left: u32,
        turn: u32,
        failing_turns: Vec<u32>,
        queued: Vec<u32>,
        delivered: Vec<u32>,
    }

    impl Turns for Fake {
        async fn wait(&mut self) -> bool {
            if self.turns_left == 0 {
                return false;
            }
            self.turns_left -= 1;
            self.turn += 1;
            self.queued.push(self.turn);
            true
        }

        fn drain(&mut self) {
            self.delivered.append(&mut self.queued);
        }

        fn housekeeping(&mut self) -> Vec<anyhow::Error> {
            if self.failing_turns.contains(&self.turn) {
                vec![
                    anyhow::anyhow!("hooking TLS in process 42"),
                    anyhow::anyhow!("hooking TLS in process 43"),
                ]
            } else {
                Vec::new()
            }
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn a_housekeeping_failure_is_counted_and_the_loop_goes_on() {
        let mut fake = Fake {
            turns_left: 5,
            turn: 0,
            failing_turns: vec![2, 4],
            queued: Vec::new(),
            delivered: Vec::new(),
        };
        let errors = block_on(turn_until_stopped(&mut fake));
        assert_eq!(errors, 4);
        // Every turn's events reached the sinks, those after the failures too.
        assert_eq!(fake.delivered, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_loop_without_failures_counts_none() {
        let mut fake = Fake {
            turns_left: 3,
            turn: 0,
            failing_turns: Vec::new(),
            queued: Vec::new(),
            delivered: Vec::new(),
        };
        assert_eq!(block_on(turn_until_stopped(&mut fake)), 0);
        assert_eq!(fake.delivered, [1, 2, 3]);
    }
}
