//! The tracer's own health, as metrics: what the run loop read, lost and
//! emitted, and what each sink delivered. The run loop publishes its
//! numbers here once per housekeeping tick; scrapes read them.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use tracer_common::maps::Counter;

use super::exposition::Exposition;
use crate::sinks::SinkCounters;

/// The run loop's own numbers, as of one housekeeping tick.
#[derive(Clone, Copy, Debug, Default)]
pub struct HealthStats {
    pub events_read: u64,
    pub malformed_events: u64,
    pub spans_emitted: u64,
    pub parser_desyncs: u64,
    pub connections_over_limit: u64,
}

#[derive(Default)]
pub struct Health {
    events_read: AtomicU64,
    malformed_events: AtomicU64,
    spans_emitted: AtomicU64,
    parser_desyncs: AtomicU64,
    connections_over_limit: AtomicU64,
    /// Per entry of [`Counter::LOSSES`].
    lost: [AtomicU64; Counter::LOSSES.len()],
    processes_untraced: AtomicU64,
    sinks: Mutex<Vec<(&'static str, Arc<SinkCounters>)>>,
}

impl Health {
    /// The run loop's numbers as of now.
    pub fn publish(&self, stats: HealthStats, kernel: &HashMap<Counter, u64>) {
        self.events_read.store(stats.events_read, Ordering::Relaxed);
        self.malformed_events
            .store(stats.malformed_events, Ordering::Relaxed);
        self.spans_emitted
            .store(stats.spans_emitted, Ordering::Relaxed);
        self.parser_desyncs
            .store(stats.parser_desyncs, Ordering::Relaxed);
        self.connections_over_limit
            .store(stats.connections_over_limit, Ordering::Relaxed);
        let count = |counter: Counter| kernel.get(&counter).copied().unwrap_or(0);
        for (slot, counter) in self.lost.iter().zip(Counter::LOSSES) {
            slot.store(count(counter), Ordering::Relaxed);
        }
        self.processes_untraced
            .store(count(Counter::PidTableFull), Ordering::Relaxed);
    }

    /// The sinks whose delivery is reported.
    pub fn set_sinks(&self, sinks: Vec<(&'static str, Arc<SinkCounters>)>) {
        if let Ok(mut slot) = self.sinks.lock() {
            *slot = sinks;
        }
    }

    pub fn write(&self, out: &mut Exposition) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let single = |out: &mut Exposition, name: &str, help: &str, value: &AtomicU64| {
            out.family(name, help, "counter");
            out.sample(name, &[], load(value));
        };
        single(
            out,
            "tracer_events_read_total",
            "Kernel events read from the ring buffer.",
            &self.events_read,
        );
        out.family(
            "tracer_events_lost_total",
            "Events lost before reaching user space, by reason.",
            "counter",
        );
        for (value, counter) in self.lost.iter().zip(Counter::LOSSES) {
            out.sample(
                "tracer_events_lost_total",
                &[("reason", counter.label())],
                load(value),
            );
        }
        out.sample(
            "tracer_events_lost_total",
            &[("reason", "malformed")],
            load(&self.malformed_events),
        );
        single(
            out,
            "tracer_spans_emitted_total",
            "Spans built and handed to the sinks.",
            &self.spans_emitted,
        );
        single(
            out,
            "tracer_parser_desyncs_total",
            "Times a protocol parser lost its place in a stream.",
            &self.parser_desyncs,
        );
        single(
            out,
            "tracer_processes_untraced_total",
            "Processes (children, --comm matches) not traced because the traced-process table was full.",
            &self.processes_untraced,
        );
        single(
            out,
            "tracer_connections_over_limit_total",
            "Connections not tracked because the table was full.",
            &self.connections_over_limit,
        );
        let Ok(sinks) = self.sinks.lock() else { return };
        let per_sink = |out: &mut Exposition,
                        name: &str,
                        help: &str,
                        kind: &str,
                        get: &dyn Fn(&SinkCounters) -> u64| {
            out.family(name, help, kind);
            for (sink, counters) in sinks.iter() {
                out.sample(name, &[("sink", sink)], get(counters) as f64);
            }
        };
        let relaxed = |a: &AtomicU64| a.load(Ordering::Relaxed);
        per_sink(
            out,
            "tracer_sink_spans_written_total",
            "Spans a sink delivered (written, exported).",
            "counter",
            &|c| relaxed(&c.written),
        );
        per_sink(
            out,
            "tracer_export_failures_total",
            "Spans a sink took but could not deliver (after retries).",
            "counter",
            &|c| relaxed(&c.failed),
        );
        per_sink(
            out,
            "tracer_sink_queue_full_total",
            "Spans dropped because a sink's queue was full.",
            "counter",
            &|c| relaxed(&c.queue_full),
        );
        per_sink(
            out,
            "tracer_sink_queue_depth",
            "Span batches waiting in a sink's queue.",
            "gauge",
            &|c| relaxed(&c.queued),
        );
    }
}
