//! Sinks: where finished spans go. Each sink runs on its own thread or task
//! behind a bounded queue, so a slow sink never stalls capture; a batch that
//! finds a sink's queue full is dropped and counted. Most sinks queue span
//! batches; a sink that only writes bytes (stdout) has its spans encoded on
//! the sending thread, where they were just built and are still in cache,
//! and queues the bytes: its thread only writes. The latency table is kept
//! on the sending thread too; its sink's thread only prints it.

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

/// Turns spans into the bytes a writing sink writes. Runs on the thread
/// that hands the spans over, while they are in its cache: encoded on the
/// sink's thread, they came from another core's cache, and the tracer used
/// 10% more CPU with stdout JSON (nginx at 8,000 req/s, 5 interleaved
/// pairs) and 25% more per Redis `-P 16` command (1.11-1.23 vs 0.85-0.98 µs).
pub type Encoder = Box<dyn FnMut(&[Span], &mut Vec<u8>) + Send>;

/// Encoded spans on their way to a writing sink's thread.
struct Encoded {
    bytes: Vec<u8>,
    spans: u64,
}

/// Byte buffers a writing sink's thread is done with, kept for the next
/// batches; larger ones (a huge batch at exit) are let go.
const SPARE_BUFFERS: usize = 4;
const MAX_SPARE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Takes a batch's spans on the sending thread, for a sink whose work per
/// span is small and whose thread only reports now and then.
pub type Recorder = Box<dyn FnMut(&[Span]) + Send>;

/// How spans reach a sink's thread.
enum Feed {
    /// As shared span batches.
    Spans(mpsc::SyncSender<SpanBatch>),
    /// Not at all: they are recorded on the sending thread; dropping `stop`
    /// tells the sink's thread to finish.
    Recorded {
        record: Recorder,
        #[expect(dead_code, reason = "held to be dropped: that ends the sink's thread")]
        stop: mpsc::Sender<()>,
    },
    /// Encoded here, as bytes.
    Bytes {
        encode: Encoder,
        queue: mpsc::SyncSender<Encoded>,
        spare: mpsc::Receiver<Vec<u8>>,
    },
}

/// One running sink: a queue and whoever drains it.
pub struct SinkHandle {
    name: &'static str,
    feed: Feed,
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
            feed: Feed::Spans(queue),
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

    /// Runs `write` on its own thread for the bytes `encode` makes of each
    /// batch on the sending thread; a write's spans count as written or
    /// failed as a whole.
    pub fn spawn_writer(
        name: &'static str,
        capacity: usize,
        encode: Encoder,
        mut write: impl FnMut(&[u8]) -> std::io::Result<()> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, chunks) = mpsc::sync_channel::<Encoded>(capacity);
        let (home, spare) = mpsc::sync_channel::<Vec<u8>>(SPARE_BUFFERS);
        let counters = Arc::new(SinkCounters::default());
        let worker_counters = counters.clone();
        let worker = thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                while let Ok(Encoded { mut bytes, spans }) = chunks.recv() {
                    worker_counters.queued.fetch_sub(1, Ordering::Relaxed);
                    let outcome = write(&bytes);
                    bytes.clear();
                    if bytes.capacity() <= MAX_SPARE_BUFFER_BYTES {
                        let _ = home.try_send(bytes);
                    }
                    let Err(err) = outcome else {
                        worker_counters.written.fetch_add(spans, Ordering::Relaxed);
                        continue;
                    };
                    worker_counters.failed.fetch_add(spans, Ordering::Relaxed);
                    // A reader that went away (e.g. `| head`) is not news
                    // each time; the rest is still drained to be counted.
                    if err.kind() != std::io::ErrorKind::BrokenPipe {
                        log::warn!("sink {name}: {err}");
                    }
                }
            })?;
        Ok(SinkHandle {
            name,
            feed: Feed::Bytes {
                encode,
                queue,
                spare,
            },
            counters,
            worker,
            verbs: SinkVerbs::WRITE,
            reported: true,
        })
    }

    /// Calls `record` with every batch on the sending thread, and runs
    /// `work` on its own thread until the sink is finished (its receiver
    /// then reports disconnection).
    pub fn spawn_recorded(
        name: &'static str,
        record: Recorder,
        work: impl FnOnce(mpsc::Receiver<()>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let worker = thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || work(stopped))?;
        Ok(SinkHandle {
            name,
            feed: Feed::Recorded { record, stop },
            counters: Arc::new(SinkCounters::default()),
            worker,
            verbs: SinkVerbs::WRITE,
            reported: true,
        })
    }

    /// Queues `batch` (or its encoding) unless the queue is full; then its
    /// spans count as lost to a full queue. A recording sink takes it here.
    fn offer(&mut self, batch: &SpanBatch) {
        let spans = batch.len() as u64;
        // `queued` is counted before the send so the worker never sees it
        // negative.
        let refused = match &mut self.feed {
            Feed::Recorded { record, .. } => {
                record(batch);
                self.counters.written.fetch_add(spans, Ordering::Relaxed);
                return;
            }
            Feed::Spans(queue) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                queue.try_send(Arc::clone(batch)).is_err()
            }
            Feed::Bytes {
                encode,
                queue,
                spare,
            } => {
                let mut bytes = spare.try_recv().unwrap_or_default();
                encode(batch, &mut bytes);
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                queue.try_send(Encoded { bytes, spans }).is_err()
            }
        };
        if refused {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            self.counters.queue_full.fetch_add(spans, Ordering::Relaxed);
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

    pub fn send(&mut self, batch: SpanBatch) {
        for sink in &mut self.sinks {
            sink.offer(&batch);
        }
        // Sinks that queue spans hold their own references; with none, the
        // batch's vector goes home from here.
        drop(batch);
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
                feed,
                worker,
                counters,
                verbs,
                reported,
            } = sink;
            drop(feed);
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

/// A sink writing one line per span to stdout; `None` for `--output none`.
pub fn stdout_sink(format: OutputFormat, capacity: usize) -> std::io::Result<Option<SinkHandle>> {
    if format == OutputFormat::None {
        return Ok(None);
    }
    let encode: Encoder = Box::new(move |spans, lines| {
        for span in spans {
            match format {
                OutputFormat::Text => write_text_line(lines, span),
                OutputFormat::Json => write_json_line(lines, span),
                OutputFormat::None => {}
            }
        }
    });
    // A batch's lines are written at once: stdout is line buffered, so
    // writing each line on its own cost a write(2) per span.
    let sink = SinkHandle::spawn_writer(format.name(), capacity, encode, |lines| {
        let mut out = std::io::stdout().lock();
        out.write_all(lines)?;
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

#[cfg(test)]
mod tests {
    use std::{fmt::Write as _, sync::Mutex};

    use super::*;
    use crate::{protocols::SharedStr, sinks::json::tests::sample_span};

    /// A writing sink over a shared buffer that fails the writes it is told to.
    fn writer(fail_at: &'static [usize]) -> (Sinks, Arc<Mutex<Vec<u8>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let into = written.clone();
        let mut writes = 0;
        let encode: Encoder = Box::new(|spans, out| {
            for span in spans {
                out.extend_from_slice(span.name.as_bytes());
                out.push(b'\n');
            }
        });
        let sink = SinkHandle::spawn_writer("test", 64, encode, move |bytes| {
            writes += 1;
            if fail_at.contains(&writes) {
                return Err(std::io::Error::other("refused"));
            }
            into.lock().unwrap().extend_from_slice(bytes);
            Ok(())
        })
        .unwrap();
        let mut sinks = Sinks::default();
        sinks.add(sink);
        (sinks, written)
    }

    fn named(names: &[&str]) -> SpanBatch {
        Batch::new(
            names
                .iter()
                .map(|name| {
                    let mut span = sample_span();
                    span.name = SharedStr::Owned((*name).to_owned());
                    span
                })
                .collect(),
        )
    }

    #[test]
    fn a_writing_sink_writes_each_batch_encoded_in_order() {
        let (mut sinks, written) = writer(&[]);
        for round in 0..20 {
            sinks.send(named(&[&format!("a{round}"), &format!("b{round}")]));
        }
        let reports = sinks.finish();
        let mut expected = String::new();
        for round in 0..20 {
            writeln!(expected, "a{round}\nb{round}").unwrap();
        }
        assert_eq!(
            String::from_utf8(written.lock().unwrap().clone()).unwrap(),
            expected
        );
        assert_eq!((reports[0].written, reports[0].failed), (40, 0));
    }

    #[test]
    fn a_failed_write_counts_its_batch_as_failed() {
        let (mut sinks, written) = writer(&[2]);
        sinks.send(named(&["one"]));
        sinks.send(named(&["two", "three"]));
        sinks.send(named(&["four"]));
        let reports = sinks.finish();
        assert_eq!(written.lock().unwrap().as_slice(), b"one\nfour\n");
        assert_eq!((reports[0].written, reports[0].failed), (2, 2));
    }
}
