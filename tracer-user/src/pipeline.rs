//! The in-process pipeline stage: decoded records → connections →
//! protocol parsers → spans → linking, handed on in batches.

use tracer_common::{DataEvent, EventKind, ProcessEvent};

use crate::{
    clock,
    connections::{
        Binding, ConnectionStats, ConnectionTable, Origin, Routed, TlsBinder, TlsBindingStats,
    },
    linking::{LinkConfig, LinkStats, Linker},
    process::ProcessNames,
    protocols::{Exchange, ParseOutput, ParserOptions, Protocol},
    sinks::{BatchRecycler, SpanBatch},
    source::{decode, Event},
    spans::{LinkKeys, Span, SpanBuilder, SpanContext, SpanKind},
};

pub struct PipelineConfig {
    pub enabled: Vec<Protocol>,
    pub options: ParserOptions,
    pub max_connections: usize,
    /// `CLOCK_REALTIME` - `CLOCK_MONOTONIC`.
    pub wall_offset_ns: i128,
    pub link: LinkConfig,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PipelineStats {
    pub records: u64,
    pub malformed_records: u64,
    pub spans: u64,
}

pub struct Pipeline {
    tls: TlsBinder,
    /// Events [`TlsBinder::route`] released, kept for its room.
    released: Vec<(DataEvent, Vec<u8>)>,
    connections: ConnectionTable,
    builder: SpanBuilder,
    names: ProcessNames,
    parsed: ParseOutput,
    linker: Linker,
    ready: Vec<Span>,
    batches: BatchRecycler,
    stats: PipelineStats,
    /// Processes that started being traced (fork, exec) since last asked.
    new_processes: Vec<u32>,
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        Pipeline {
            tls: TlsBinder::default(),
            released: Vec::new(),
            connections: ConnectionTable::new(
                config.enabled,
                config.options,
                config.max_connections,
            ),
            builder: SpanBuilder::new(config.wall_offset_ns),
            names: ProcessNames::default(),
            parsed: ParseOutput::default(),
            linker: Linker::new(config.link),
            ready: Vec::new(),
            batches: BatchRecycler::default(),
            stats: PipelineStats::default(),
            new_processes: Vec::new(),
        }
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    pub fn connections_open(&self) -> usize {
        self.connections.len()
    }

    pub fn connection_stats(&self) -> ConnectionStats {
        self.connections.stats()
    }

    pub fn link_stats(&self) -> LinkStats {
        self.linker.stats()
    }

    pub fn tls_binding_stats(&self) -> TlsBindingStats {
        self.tls.stats()
    }

    /// `SSL *`s tied to their sockets since the last call, for the kernel.
    pub fn take_tls_bindings(&mut self) -> Vec<Binding> {
        self.tls.take_learnt()
    }

    /// One ring-buffer record.
    pub fn handle_record(&mut self, record: &[u8]) {
        self.stats.records += 1;
        let event = match decode(record) {
            Ok(event) => event,
            Err(err) => {
                self.stats.malformed_records += 1;
                log::debug!("dropping ring-buffer record: {err}");
                return;
            }
        };
        if log::log_enabled!(log::Level::Trace) {
            log::trace!("{event:?}");
        }
        match event {
            Event::Data(header, payload) => {
                let mut released = std::mem::take(&mut self.released);
                let routed = self.tls.route(&header, payload, &mut released);
                for (header, payload) in released.drain(..) {
                    self.on_data(&header, &payload);
                }
                self.released = released;
                if let Routed::Event(header) = routed {
                    self.on_data(&header, payload);
                }
            }
            Event::ConnOpen(conn) => {
                let origin = self.connections.on_open(&conn, &mut self.parsed);
                self.finish_exchanges(origin.as_ref(), conn.pid, conn.tid);
            }
            Event::ConnClose(conn) => {
                self.tls.on_close(conn.pid, conn.fd, conn.sock);
                let origin = self.connections.on_close(&conn, &mut self.parsed);
                self.finish_exchanges(origin.as_ref(), conn.pid, conn.tid);
            }
            Event::Process(process) => self.on_process(&process),
            Event::GoCall(call) => self.connections.on_go_call(&call),
        }
    }

    fn on_data(&mut self, header: &DataEvent, payload: &[u8]) {
        // A reused fd: what the old connection held is its own.
        let replaced = self.connections.close_replaced(header, &mut self.parsed);
        self.finish_exchanges(replaced.as_ref(), header.pid, header.tid);
        let origin = self.connections.on_data(header, payload, &mut self.parsed);
        self.finish_exchanges(origin.as_ref(), header.pid, header.tid);
    }

    fn on_process(&mut self, event: &ProcessEvent) {
        let comm_len = event
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(event.comm.len());
        let comm = String::from_utf8_lossy(&event.comm[..comm_len]);
        match EventKind::from_u8(event.kind) {
            Some(EventKind::ProcessFork) => {
                log::debug!(
                    "tracing process {} ({comm}), forked by {}",
                    event.pid,
                    event.parent_pid
                );
                self.names.set(event.pid, &comm);
                self.connections.executors_unknown(event.pid);
                self.new_processes.push(event.pid);
            }
            Some(EventKind::ProcessExec) => {
                log::debug!("tracing process {} ({comm}) after exec", event.pid);
                self.names.set(event.pid, &comm);
                self.connections.executors_unknown(event.pid);
                self.new_processes.push(event.pid);
            }
            Some(EventKind::ProcessJoin) => {
                log::debug!("tracing process {} ({comm}) of a traced cgroup", event.pid);
                self.names.set(event.pid, &comm);
                self.connections.executors_unknown(event.pid);
                self.new_processes.push(event.pid);
            }
            Some(EventKind::ProcessExit) => {
                log::debug!("process {} ({comm}) exited", event.pid);
                self.tls.on_process_exit(event.pid);
                let origins = self.connections.on_process_exit(
                    event.pid,
                    event.timestamp_ns,
                    &mut self.parsed,
                );
                let exchanges: Vec<_> = self.parsed.exchanges.drain(..).collect();
                let now_ns = clock::monotonic_ns();
                for (exchange, origin) in exchanges.into_iter().zip(origins) {
                    let ctx = self.context(&origin, event.pid, event.pid);
                    let facts = self.origin_facts(&origin, event.pid);
                    let (span, keys) = self.span(exchange, &ctx, &origin, 0, facts);
                    self.linker
                        .push(span, keys, now_ns, &self.connections, &mut self.ready);
                }
                self.names.remove(event.pid);
                self.connections.forget_calls(event.pid);
            }
            _ => {}
        }
    }

    fn context(&mut self, origin: &Origin, pid: u32, tid: u32) -> SpanContext {
        SpanContext {
            pid,
            tid,
            process: self.names.get(pid),
            kind: origin.kind,
            local: origin.local,
            remote: origin.remote,
            tls: origin.tls,
        }
    }

    fn finish_exchanges(&mut self, origin: Option<&Origin>, pid: u32, tid: u32) {
        if self.parsed.exchanges.is_empty() {
            return;
        }
        let Some(origin) = origin else {
            self.parsed.exchanges.clear();
            return;
        };
        let ctx = self.context(origin, pid, tid);
        let now_ns = clock::monotonic_ns();
        // What linking needs to know of the origin's connection and process
        // is the same for every exchange of one call: asked once.
        let facts = self.origin_facts(origin, pid);
        // Taken out to be drained, then put back: its room is reused by
        // the next record instead of allocated anew.
        let mut exchanges = std::mem::take(&mut self.parsed.exchanges);
        for (i, exchange) in exchanges.drain(..).enumerate() {
            let (span, keys) = self.span(exchange, &ctx, origin, i as u64, facts);
            self.linker
                .push(span, keys, now_ns, &self.connections, &mut self.ready);
        }
        self.parsed.exchanges = exchanges;
    }

    fn origin_facts(&self, origin: &Origin, pid: u32) -> OriginFacts {
        OriginFacts {
            goroutines: self.connections.runs_goroutines(pid),
            peer_traced: origin.kind == SpanKind::Server
                && match (origin.local, origin.remote) {
                    (Some(local), Some(remote)) => self.connections.peer_is_traced(local, remote),
                    _ => false,
                },
        }
    }

    /// The `nth` exchange completed by one call on `origin`'s connection.
    #[inline]
    fn span(
        &mut self,
        exchange: Exchange,
        ctx: &SpanContext,
        origin: &Origin,
        nth: u64,
        facts: OriginFacts,
    ) -> (Span, LinkKeys) {
        let sender = origin.requests.at(exchange.start_ns);
        let (span, mut keys) = self.builder.build(exchange, ctx);
        keys.conn = origin.conn;
        keys.seq = origin.seq + nth;
        keys.sender = sender;
        keys.goroutines = facts.goroutines;
        keys.peer_traced = facts.peer_traced;
        (span, keys)
    }

    /// Emits every span still held for linking (at exit).
    pub fn flush_linking(&mut self) {
        self.linker
            .release(clock::monotonic_ns(), &self.connections, &mut self.ready);
        self.linker.flush(clock::monotonic_ns(), &mut self.ready);
    }

    /// Spans finished since the last call, as one batch.
    pub fn take_batch(&mut self) -> Option<SpanBatch> {
        self.linker
            .release(clock::monotonic_ns(), &self.connections, &mut self.ready);
        if self.ready.is_empty() {
            return None;
        }
        let n = self.ready.len();
        self.stats.spans += n as u64;
        // The gathered vector itself becomes the batch (no copy of the
        // spans); the next one starts in a vector the sinks are done with,
        // or with room for as many.
        let next = self.batches.next_vector(n, &mut self.parsed.spare);
        let batch = std::mem::replace(&mut self.ready, next);
        Some(self.batches.batch(batch))
    }

    /// `pid` is a Go program: its calls are tied to requests by goroutine.
    pub fn schedules_goroutines(&mut self, pid: u32) {
        self.connections.schedules_goroutines(pid);
    }

    /// A process new since [`Self::take_new_processes`] was looked at:
    /// whether it runs goroutines.
    pub fn settle_executors(&mut self, pid: u32, goroutines: bool) {
        self.connections.settle_executors(pid, goroutines);
    }

    /// Remembers the name of a process traced from the start.
    pub fn know_process(&mut self, pid: u32) {
        let _ = self.names.get(pid);
    }

    /// Processes traced since the last call (their libraries may need hooks).
    pub fn take_new_processes(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.new_processes)
    }

    /// Forgets connections idle since before `cutoff_ns` (monotonic), and
    /// the emptied per-key lists kept for reuse between these calls.
    pub fn evict_idle(&mut self, cutoff_ns: u64) {
        self.connections.evict_idle(cutoff_ns);
        self.tls.prune(clock::monotonic_ns());
        self.linker.prune();
    }
}

/// What linking needs to know of a span's connection and process beyond
/// the span itself.
#[derive(Clone, Copy)]
struct OriginFacts {
    /// The process ties calls to requests by goroutine.
    goroutines: bool,
    /// A server span whose client is a traced socket of this host.
    peer_traced: bool,
}
