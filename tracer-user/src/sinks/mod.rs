//! Sinks: where finished spans go. Each sink runs on its own thread or task
//! behind a bounded queue of span batches, so a slow sink never stalls
//! capture; a batch that finds a sink's queue full is dropped and counted.

mod batch;
pub mod file;
pub(crate) mod json;
pub mod latency_table;
pub mod metrics;
pub mod otlp;
pub mod resource;
pub mod setup;
pub mod summary;
mod text;

use std::{
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread,
    time::Duration,
};

use crate::spans::Span;

pub use json::write_json_line;
pub use text::write_text_line;

pub use batch::{Batch, BatchRecycler, SpanBatch};

/// Spans a sink could not take or could not deliver.
#[derive(Default, Debug)]
pub struct SinkCounters {
    pub queue_full: AtomicU64,
    pub failed: AtomicU64,
    pub written: AtomicU64,
    /// Batches waiting in the queue.
    pub queued: AtomicU64,
}

/// What one sink did over a run, for the summary line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkReport {
    pub name: &'static str,
    /// Spans delivered (written, exported).
    pub written: u64,
    /// Spans the sink took but could not deliver.
    pub failed: u64,
    /// Spans dropped because the sink's queue was full.
    pub queue_full: u64,
    /// How the summary line words `written` and `failed` for this sink.
    pub verbs: SinkVerbs,
    /// Whether the summary line lists it even when it lost nothing.
    pub reported: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkVerbs {
    pub written: &'static str,
    pub failed: &'static str,
}

impl SinkVerbs {
    pub const WRITE: SinkVerbs = SinkVerbs {
        written: "written",
        failed: "failed",
    };
}

impl Default for SinkVerbs {
    fn default() -> Self {
        SinkVerbs::WRITE
    }
}

impl SinkReport {
    pub fn dropped(&self) -> u64 {
        self.failed + self.queue_full
    }
}

/// The receiving end of a sink's queue, for sinks that run their own loop
/// (to batch by time, print periodically, retry).
pub struct SinkQueue {
    batches: mpsc::Receiver<SpanBatch>,
    counters: Arc<SinkCounters>,
}

impl SinkQueue {
    /// The next batch; `None` once the queue is closed and empty.
    pub fn recv(&self) -> Option<SpanBatch> {
        let batch = self.batches.recv().ok()?;
        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        Some(batch)
    }

    /// The next batch within `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<SpanBatch, mpsc::RecvTimeoutError> {
        let batch = self.batches.recv_timeout(timeout)?;
        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        Ok(batch)
    }

    pub fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }
}

/// One running sink: a queue and whoever drains it.
pub struct SinkHandle {
    name: &'static str,
    queue: mpsc::SyncSender<SpanBatch>,
    counters: Arc<SinkCounters>,
    worker: thread::JoinHandle<()>,
    verbs: SinkVerbs,
    /// Whether the summary line lists this sink (stdout ones it does not:
    /// the spans are right there).
    reported: bool,
}

impl SinkHandle {
    /// Runs `work` on its own thread; it drains the queue and updates the
    /// counters itself.
    pub fn spawn(
        name: &'static str,
        capacity: usize,
        work: impl FnOnce(SinkQueue) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, batches) = mpsc::sync_channel::<SpanBatch>(capacity);
        let counters = Arc::new(SinkCounters::default());
        let sink_queue = SinkQueue {
            batches,
            counters: counters.clone(),
        };
        let worker = thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || work(sink_queue))?;
        Ok(SinkHandle {
            name,
            queue,
            counters,
            worker,
            verbs: SinkVerbs::WRITE,
            reported: true,
        })
    }

    /// Runs `write` on its own thread for every batch queued.
    pub fn spawn_blocking(
        name: &'static str,
        capacity: usize,
        mut write: impl FnMut(&[Span]) -> std::io::Result<()> + Send + 'static,
    ) -> std::io::Result<Self> {
        Self::spawn(name, capacity, move |batches| {
            let worker_counters = batches.counters().clone();
            while let Some(batch) = batches.recv() {
                match write(&batch) {
                    Ok(()) => {
                        worker_counters
                            .written
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    Err(err) => {
                        worker_counters
                            .failed
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        if err.kind() == std::io::ErrorKind::BrokenPipe {
                            // The reader went away (e.g. `| head`): nothing
                            // more can be written; keep draining to count.
                            continue;
                        }
                        log::warn!("sink {name}: {err}");
                    }
                }
            }
        })
    }

    /// Queues `batch` unless the queue is full; then its spans count as
    /// lost to a full queue.
    fn offer(&self, batch: SpanBatch) {
        // Counted before the send so the worker never sees it negative.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::TrySendError::Full(batch) | mpsc::TrySendError::Disconnected(batch)) =
            self.queue.try_send(batch)
        {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            self.counters
                .queue_full
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }

    /// Words for the summary line, e.g. "exported" / "dropped after retries".
    #[must_use]
    pub fn with_verbs(mut self, verbs: SinkVerbs) -> Self {
        self.verbs = verbs;
        self
    }

    /// Leaves this sink out of the summary line.
    #[must_use]
    pub fn unreported(mut self) -> Self {
        self.reported = false;
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }
}

/// Every configured sink; spans are fanned out to all of them.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<SinkHandle>,
}

impl Sinks {
    pub fn add(&mut self, sink: SinkHandle) {
        self.sinks.push(sink);
    }

    pub fn send(&self, batch: SpanBatch) {
        // The last sink takes the caller's reference, the others a clone.
        if let Some((last, others)) = self.sinks.split_last() {
            for sink in others {
                sink.offer(Arc::clone(&batch));
            }
            last.offer(batch);
        }
    }

    /// Every sink's name and counters, for the health metrics.
    pub fn counters(&self) -> Vec<(&'static str, Arc<SinkCounters>)> {
        self.sinks
            .iter()
            .map(|s| (s.name, s.counters.clone()))
            .collect()
    }

    /// Spans lost by any sink so far.
    pub fn dropped(&self) -> u64 {
        self.sinks
            .iter()
            .map(|s| {
                s.counters.queue_full.load(Ordering::Relaxed)
                    + s.counters.failed.load(Ordering::Relaxed)
            })
            .sum()
    }

    /// Closes every queue and waits for the sinks to write what they hold;
    /// returns what each did. All queues close first so the sinks flush in
    /// parallel (an OTLP flush may take seconds).
    pub fn finish(self) -> Vec<SinkReport> {
        let mut workers = Vec::with_capacity(self.sinks.len());
        for sink in self.sinks {
            let SinkHandle {
                name,
                queue,
                worker,
                counters,
                verbs,
                reported,
            } = sink;
            drop(queue);
            workers.push((name, worker, counters, verbs, reported));
        }
        let mut reports = Vec::new();
        for (name, worker, counters, verbs, reported) in workers {
            if worker.join().is_err() {
                log::error!("sink {name} panicked");
            }
            reports.push(SinkReport {
                name,
                written: counters.written.load(Ordering::Relaxed),
                failed: counters.failed.load(Ordering::Relaxed),
                queue_full: counters.queue_full.load(Ordering::Relaxed),
                verbs,
                reported,
            });
        }
        reports
    }
}

/// Bytes of stdout lines written at once (whole lines only).
const STDOUT_CHUNK: usize = 64 * 1024;

/// A sink writing one line per span to stdout; `None` for `--output none`.
pub fn stdout_sink(format: OutputFormat, capacity: usize) -> std::io::Result<Option<SinkHandle>> {
    if format == OutputFormat::None {
        return Ok(None);
    }
    // Lines are gathered and written a chunk at a time: stdout is line
    // buffered, so writing each line on its own cost a write(2) per span.
    let mut lines = Vec::with_capacity(STDOUT_CHUNK + 1024);
    let sink = SinkHandle::spawn_blocking(format.name(), capacity, move |spans| {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        lines.clear();
        for span in spans {
            match format {
                OutputFormat::Text => write_text_line(&mut lines, span),
                OutputFormat::Json => write_json_line(&mut lines, span),
                OutputFormat::None => {}
            }
            if lines.len() >= STDOUT_CHUNK {
                out.write_all(&lines)?;
                lines.clear();
            }
        }
        out.write_all(&lines)?;
        out.flush()
    })?;
    Ok(Some(sink.unreported()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One readable line per span.
    Text,
    /// One JSON object per line per span.
    Json,
    /// No spans on stdout (when exporting only).
    None,
}

impl OutputFormat {
    fn name(self) -> &'static str {
        match self {
            OutputFormat::Text => "stdout-text",
            OutputFormat::Json => "stdout-json",
            OutputFormat::None => "none",
        }
    }
}
