//! A tracing run from start to summary: checks, attach, event loop, exit.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use tokio::signal::unix::{signal, SignalKind};
use tracer_common::maps::Counter;

use crate::{
    cli::Args,
    clock,
    kernel::{
        openssl::{self, OpensslHooks},
        preflight, AttachedKernel, KernelOptions,
    },
    linking::{LinkConfig, LinkStats},
    pipeline::{Pipeline, PipelineConfig},
    process,
    protocols::{self, ParserOptions},
    sinks::{self, metrics::Health, SinkReport, Sinks},
    source::EventRing,
};

/// Records handled between two hand-offs to the sinks.
const DRAIN_BATCH: usize = 4096;
/// How long events may wait in the ring buffer on a quiet system.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes queued in the ring buffer that make the kernel wake the reader.
const WAKEUP_BYTES: u32 = 256 * 1024;
/// Span batches a sink may have queued before further ones are dropped.
const SINK_QUEUE_BATCHES: usize = 1024;
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
const IDLE_CONNECTION_TIMEOUT_NS: u64 = 300 * 1_000_000_000;

/// What a run did, for the summary line.
#[derive(Debug, Default)]
pub struct Summary {
    pub spans: u64,
    pub records: u64,
    pub kernel: HashMap<Counter, u64>,
    pub spans_dropped: u64,
    pub desyncs: u64,
    pub connections_table_full: u64,
    pub tls_undecrypted: u64,
    pub connections_open: usize,
    /// What each sink did.
    pub sinks: Vec<SinkReport>,
    pub linking: LinkStats,
}

impl Summary {
    pub fn events_lost(&self) -> u64 {
        [
            Counter::RingBufFull,
            Counter::InFlightFull,
            Counter::SocketTableFull,
            Counter::PayloadReadFailed,
            Counter::TlsSocketUnknown,
        ]
        .iter()
        .map(|c| self.kernel.get(c).copied().unwrap_or(0))
        .sum()
    }

    pub fn line(&self) -> String {
        let get = |c: Counter| self.kernel.get(&c).copied().unwrap_or(0);
        let link = &self.linking;
        format!(
            "tracer: {} spans emitted, {} events read, {} events lost (ring buffer full {}, in-flight table full {}, socket table full {}, unreadable payload {}, TLS call without socket {}), {} spans dropped by sinks, {} parser desyncs, {} connections over the table limit, {} TLS connections not decrypted, {} connections still tracked, {} spans held for linking (mean {:.3} ms, max {:.3} ms), {} spans linked to a parent, {} traces expired unlinked ({} over --link-max-spans)",
            self.spans,
            self.records,
            self.events_lost(),
            get(Counter::RingBufFull),
            get(Counter::InFlightFull),
            get(Counter::SocketTableFull),
            get(Counter::PayloadReadFailed),
            get(Counter::TlsSocketUnknown),
            self.spans_dropped,
            self.desyncs,
            self.connections_table_full,
            self.tls_undecrypted,
            self.connections_open,
            link.held,
            link.hold_ms_mean(),
            link.hold_ms_max(),
            link.linked,
            link.expired,
            link.over_limit,
        ) + &sink_reports(&self.sinks)
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "attach, event loop and shutdown are still one function; splitting them is issue #13 part 2"
)]
pub async fn run(args: Args) -> anyhow::Result<Summary> {
    let duration = args.duration().map_err(anyhow::Error::msg)?;
    if args.pids.is_empty() && args.comms.is_empty() {
        bail!("nothing to trace: give --pid PID or --comm NAME");
    }
    preflight::check()?;
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
    let sinks = sinks::setup::start(&args, SINK_QUEUE_BATCHES, &health)?;

    let mut kernel = AttachedKernel::load(&KernelOptions {
        max_payload: args.max_payload,
        ring_buffer_bytes: args.ring_buffer_mib * 1024 * 1024,
        wakeup_bytes: WAKEUP_BYTES,
        socket_lookup: args.socket_hooks.forced(),
    })?;
    return_freed_heap();
    let ring = kernel.take_events()?;
    let mut ring = EventRing::new(ring, POLL_INTERVAL).context("watching the ring buffer")?;
    // Names first, then the scan: a process exec'd in between is caught by
    // the kernel, one exec'd before by the scan.
    for comm in &args.comms {
        kernel.trace_comm(comm)?;
    }
    let by_comm = process::pids_with_comm(&args.comms)?;
    let by_comm = process::with_descendants(&by_comm).unwrap_or(by_comm);
    for &pid in pids.iter().chain(&by_comm) {
        kernel.trace_pid(pid)?;
    }
    let mut tls_hooks = OpensslHooks::default();
    if !args.comms.is_empty() {
        for lib in openssl::system_libssl() {
            tls_hooks.hook(&mut kernel, &lib)?;
        }
    }
    for &pid in pids.iter().chain(&by_comm) {
        tls_hooks.hook_process(&mut kernel, pid)?;
    }
    let mut traced_now: Vec<u32> = pids.iter().chain(&by_comm).copied().collect();
    eprintln!(
        "tracer: attached; tracing {} process(es){}; Ctrl-C to stop",
        pids.len() + by_comm.len(),
        if args.comms.is_empty() {
            String::new()
        } else {
            format!(" and new ones named {}", args.comms.join(","))
        }
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

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut last_housekeeping = Instant::now();
    let mut lost_reported = 0;
    loop {
        tokio::select! {
            () = ring.wait() => {}
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            () = sleep_until(deadline) => break,
        }
        drain(&mut ring, &mut pipeline, &sinks);
        for pid in pipeline.take_new_processes() {
            tls_hooks.hook_process(&mut kernel, pid)?;
            traced_now.push(pid);
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
            last_housekeeping = Instant::now();
            // Libraries loaded later (dlopen, e.g. Python's `import ssl`).
            traced_now.retain(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
            for &pid in &traced_now {
                tls_hooks.hook_process(&mut kernel, pid)?;
            }
            kernel.flush_kernel_logs();
            pipeline.evict_idle(clock::monotonic_ns().saturating_sub(IDLE_CONNECTION_TIMEOUT_NS));
            let kernel_counters = kernel.counters();
            health.publish(
                pipeline.stats(),
                pipeline.connection_stats(),
                &kernel_counters,
            );
            let lost = kernel_counters
                .get(&Counter::RingBufFull)
                .copied()
                .unwrap_or(0);
            if lost > lost_reported {
                eprintln!(
                    "tracer: {} events lost: ring buffer full (raise --ring-buffer-mib or lower --max-payload)",
                    lost - lost_reported
                );
                lost_reported = lost;
            }
        }
    }
    drain(&mut ring, &mut pipeline, &sinks);
    // What still waits for a parent goes out as it stands.
    pipeline.flush_linking();
    if let Some(batch) = pipeline.take_batch() {
        sinks.send(batch);
    }
    let kernel_counters = kernel.counters();
    // Detaches and unloads every program and map.
    drop(ring);
    drop(kernel);

    let sink_reports = sinks.finish();
    let spans_dropped = sink_reports.iter().map(SinkReport::dropped).sum();
    let stats = pipeline.stats();
    let conn_stats = pipeline.connection_stats();
    Ok(Summary {
        spans: stats.spans,
        records: stats.records,
        kernel: kernel_counters,
        spans_dropped,
        desyncs: conn_stats.desyncs,
        connections_table_full: conn_stats.table_full,
        tls_undecrypted: conn_stats.tls_undecrypted,
        connections_open: pipeline.connections_open(),
        sinks: sink_reports,
        linking: pipeline.link_stats(),
    })
}

/// `; otlp: 10 spans exported, 0 dropped after retries, 0 dropped on full queue`
/// per exporting sink, and any other that lost spans.
fn sink_reports(reports: &[SinkReport]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for r in reports.iter().filter(|r| r.reported || r.dropped() > 0) {
        let _ = write!(
            text,
            "; {}: {} spans {}, {} {}, {} dropped on full queue",
            r.name, r.written, r.verbs.written, r.failed, r.verbs.failed, r.queue_full
        );
    }
    text
}

fn drain(ring: &mut EventRing, pipeline: &mut Pipeline, sinks: &Sinks) {
    loop {
        let handled = ring.drain(DRAIN_BATCH, |record| pipeline.handle_record(record));
        if let Some(batch) = pipeline.take_batch() {
            sinks.send(batch);
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
