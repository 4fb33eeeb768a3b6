//! Sinks: where finished spans go. Each sink runs on its own thread or task
//! behind a bounded queue of span batches, so a slow sink never stalls
//! capture; a batch that finds a sink's queue full is dropped and counted.

mod json;
mod text;

use std::{
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread,
};

use crate::spans::Span;

pub use json::write_json_line;
pub use text::write_text_line;

/// A batch of spans shared by every sink.
pub type SpanBatch = Arc<[Span]>;

/// Spans a sink could not take or could not deliver.
#[derive(Default, Debug)]
pub struct SinkCounters {
    pub queue_full: AtomicU64,
    pub failed: AtomicU64,
    pub written: AtomicU64,
}

/// One running sink: a queue and whoever drains it.
pub struct SinkHandle {
    name: &'static str,
    queue: mpsc::SyncSender<SpanBatch>,
    counters: Arc<SinkCounters>,
    worker: thread::JoinHandle<()>,
}

impl SinkHandle {
    /// Runs `write` on its own thread for every batch queued.
    pub fn spawn_blocking(
        name: &'static str,
        capacity: usize,
        mut write: impl FnMut(&[Span]) -> std::io::Result<()> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, batches) = mpsc::sync_channel::<SpanBatch>(capacity);
        let counters = Arc::new(SinkCounters::default());
        let worker_counters = counters.clone();
        let worker = thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                for batch in batches {
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
            })?;
        Ok(SinkHandle { name, queue, counters, worker })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn counters(&self) -> &SinkCounters {
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
        for sink in &self.sinks {
            if let Err(mpsc::TrySendError::Full(batch) | mpsc::TrySendError::Disconnected(batch)) =
                sink.queue.try_send(batch.clone())
            {
                sink.counters
                    .queue_full
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Spans lost by any sink so far.
    pub fn dropped(&self) -> u64 {
        self.sinks
            .iter()
            .map(|s| {
                s.counters.queue_full.load(Ordering::Relaxed) + s.counters.failed.load(Ordering::Relaxed)
            })
            .sum()
    }

    /// Closes every queue and waits for the sinks to write what they hold.
    pub fn finish(self) {
        for sink in self.sinks {
            let SinkHandle { name, queue, worker, .. } = sink;
            drop(queue);
            if worker.join().is_err() {
                log::error!("sink {name} panicked");
            }
        }
    }
}

/// A sink writing one line per span to stdout.
pub fn stdout_sink(format: OutputFormat, capacity: usize) -> std::io::Result<SinkHandle> {
    let mut line = Vec::with_capacity(512);
    SinkHandle::spawn_blocking(format.name(), capacity, move |spans| {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for span in spans {
            line.clear();
            match format {
                OutputFormat::Text => write_text_line(&mut line, span),
                OutputFormat::Json => write_json_line(&mut line, span),
            }
            out.write_all(&line)?;
        }
        out.flush()
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One readable line per span.
    Text,
    /// One JSON object per line per span.
    Json,
}

impl OutputFormat {
    fn name(self) -> &'static str {
        match self {
            OutputFormat::Text => "stdout-text",
            OutputFormat::Json => "stdout-json",
        }
    }
}
