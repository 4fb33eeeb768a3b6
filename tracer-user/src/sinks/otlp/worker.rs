//! The OTLP sink's loop: take batches off the queue into a bounded buffer,
//! export by size or age, back off while the collector fails, and count
//! every span as exported or dropped.
//!
//! The buffer keeps taking batches while an export is being retried, so the
//! sink's queue stays short and capture never waits; when the buffer is
//! full the oldest spans go first (and are counted).

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering, mpsc::RecvTimeoutError},
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{wire::WireEncoder, Transport};
use crate::sinks::{resource::ResourceConfig, SinkCounters, SinkQueue, SpanBatch};

/// The sink's knobs (tests shrink them).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Spans per export request.
    pub max_batch: usize,
    /// How long a span may wait for a batch to fill.
    pub batch_timeout: Duration,
    /// Spans held while the collector is unreachable.
    pub max_pending: usize,
    /// First retry delay; doubled each attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long one request is retried before its spans are dropped.
    pub retry_budget: Duration,
    /// Time one attempt may take.
    pub request_timeout: Duration,
    /// Time left to deliver what is buffered when tracing stops.
    pub flush_deadline: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            max_batch: 512,
            batch_timeout: Duration::from_secs(1),
            max_pending: 32_768,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            retry_budget: Duration::from_mins(1),
            request_timeout: Duration::from_secs(10),
            flush_deadline: Duration::from_secs(5),
        }
    }
}

/// Spans waiting for export, as cheap references into shared batches.
#[derive(Default)]
struct Pending {
    spans: VecDeque<(SpanBatch, usize)>,
    /// When the oldest span still waiting arrived.
    since: Option<Instant>,
}

impl Pending {
    fn len(&self) -> usize {
        self.spans.len()
    }

    /// Adds `batch`; returns how many of the oldest spans were dropped to
    /// stay within `max`.
    fn push(&mut self, batch: &SpanBatch, max: usize, now: Instant) -> usize {
        if self.spans.is_empty() {
            self.since = Some(now);
        }
        self.spans
            .extend((0..batch.len()).map(|i| (batch.clone(), i)));
        let over = self.spans.len().saturating_sub(max);
        self.spans.drain(..over);
        over
    }

    /// The first `n` spans as an encoded export request.
    fn request(&self, n: usize, resource: &ResourceConfig, encoder: &mut WireEncoder) -> Bytes {
        encoder.encode(
            self.spans.iter().take(n).map(|(batch, i)| &batch[*i]),
            resource,
        )
    }

    fn consume(&mut self, n: usize, now: Instant) {
        self.spans.drain(..n.min(self.spans.len()));
        // What is left waited at most as long; restarting its clock only
        // delays it by one batch timeout.
        self.since = if self.spans.is_empty() {
            None
        } else {
            Some(now)
        };
    }
}

#[derive(Clone, Copy, Debug)]
struct Retry {
    attempts: u32,
    first_failure: Instant,
    next_at: Instant,
}

struct Worker<'a, T: Transport> {
    transport: &'a mut T,
    resource: &'a ResourceConfig,
    timing: &'a Timing,
    counters: &'a SinkCounters,
    pending: Pending,
    /// Its buffer is reused from one request to the next.
    encoder: WireEncoder,
    retry: Option<Retry>,
    /// Spans dropped for lack of room since the last warning.
    overflowed: u64,
}

pub(crate) fn run(
    queue: &SinkQueue,
    transport: &mut impl Transport,
    resource: &ResourceConfig,
    timing: &Timing,
) {
    let mut worker = Worker {
        transport,
        resource,
        timing,
        counters: queue.counters(),
        pending: Pending::default(),
        encoder: WireEncoder::new(),
        retry: None,
        overflowed: 0,
    };
    loop {
        let now = Instant::now();
        let received = match worker.next_wake(now) {
            None => queue.recv().ok_or(RecvTimeoutError::Disconnected),
            Some(at) => queue.recv_timeout(at.saturating_duration_since(now)),
        };
        match received {
            Ok(batch) => worker.push(&batch),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        worker.export_ready(Instant::now(), None);
    }
    worker.flush();
}

impl<T: Transport> Worker<'_, T> {
    fn push(&mut self, batch: &SpanBatch) {
        let dropped = self
            .pending
            .push(batch, self.timing.max_pending, Instant::now());
        if dropped > 0 {
            self.counters
                .failed
                .fetch_add(dropped as u64, Ordering::Relaxed);
            if self.overflowed == 0 {
                log::warn!(
                    "otlp: collector unreachable and {} spans buffered: dropping the oldest (counted)",
                    self.timing.max_pending
                );
            }
            self.overflowed += dropped as u64;
        }
    }

    /// When something is due: a retry, or the oldest span's batch timeout.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        if self.pending.len() == 0 {
            return None;
        }
        if let Some(retry) = self.retry {
            return Some(retry.next_at);
        }
        if self.pending.len() >= self.timing.max_batch {
            return Some(now);
        }
        self.pending
            .since
            .map(|since| since + self.timing.batch_timeout)
    }

    fn due(&self, now: Instant) -> bool {
        self.next_wake(now).is_some_and(|at| at <= now)
    }

    /// Exports while something is due. `deadline` (on exit) bounds each
    /// attempt and ends retrying.
    fn export_ready(&mut self, mut now: Instant, deadline: Option<Instant>) {
        while self.due(now)
            || (deadline.is_some() && self.pending.len() > 0 && self.retry.is_none())
        {
            let n = self.pending.len().min(self.timing.max_batch);
            let request = self.pending.request(n, self.resource, &mut self.encoder);
            let mut timeout = self.timing.request_timeout;
            if let Some(deadline) = deadline {
                timeout = timeout.min(deadline.saturating_duration_since(now));
                if timeout.is_zero() {
                    return;
                }
            }
            let result = self.transport.export(request, timeout);
            now = Instant::now();
            match result {
                Ok(rejected) => {
                    let rejected = rejected.min(n as u64);
                    self.counters
                        .written
                        .fetch_add(n as u64 - rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        self.counters.failed.fetch_add(rejected, Ordering::Relaxed);
                        log::warn!("otlp: the collector rejected {rejected} of {n} spans (counted as dropped)");
                    }
                    if let Some(retry) = self.retry.take() {
                        log::warn!(
                            "otlp: export recovered after {:.1} s",
                            now.duration_since(retry.first_failure).as_secs_f64()
                        );
                    }
                    if self.overflowed > 0 {
                        log::warn!(
                            "otlp: {} spans were dropped while the collector was unreachable",
                            self.overflowed
                        );
                        self.overflowed = 0;
                    }
                    self.pending.consume(n, now);
                }
                Err(err) if err.retryable => match self.next_retry(now, err.retry_after) {
                    Some(retry) => {
                        if self.retry.is_none() {
                            log::warn!(
                                "otlp: export failed ({}); retrying for up to {} s",
                                err.message,
                                self.timing.retry_budget.as_secs()
                            );
                        }
                        self.retry = Some(retry);
                        if deadline.is_some_and(|d| retry.next_at >= d) {
                            return;
                        }
                        if deadline.is_some() {
                            std::thread::sleep(retry.next_at.saturating_duration_since(now));
                            now = Instant::now();
                        }
                    }
                    None => self.drop_chunk(
                        n,
                        &format!("still failing after retries: {}", err.message),
                        now,
                    ),
                },
                Err(err) => self.drop_chunk(n, &err.message, now),
            }
        }
    }

    fn drop_chunk(&mut self, n: usize, why: &str, now: Instant) {
        self.counters.failed.fetch_add(n as u64, Ordering::Relaxed);
        log::warn!("otlp: dropped {n} spans ({why})");
        self.retry = None;
        self.pending.consume(n, now);
    }

    /// The next attempt's time, or `None` once the retry budget is spent.
    fn next_retry(&self, now: Instant, retry_after: Option<Duration>) -> Option<Retry> {
        let (attempts, first_failure) = match self.retry {
            Some(r) => (r.attempts + 1, r.first_failure),
            None => (1, now),
        };
        let exp = self
            .timing
            .initial_backoff
            .saturating_mul(1u32 << (attempts - 1).min(16))
            .min(self.timing.max_backoff);
        // ±25% jitter keeps many tracers from retrying in step.
        let jittered = exp.mul_f64(0.75 + fastrand::f64() * 0.5);
        let delay = retry_after.map_or(jittered, |after| after.max(jittered));
        let next_at = now + delay;
        (next_at.duration_since(first_failure) <= self.timing.retry_budget).then_some(Retry {
            attempts,
            first_failure,
            next_at,
        })
    }

    /// On exit: deliver what is buffered before the deadline, count the rest.
    fn flush(&mut self) {
        let now = Instant::now();
        // A pending retry is tried at once: there is no later.
        if let Some(retry) = &mut self.retry {
            retry.next_at = now;
        }
        self.export_ready(now, Some(now + self.timing.flush_deadline));
        let left = self.pending.len();
        if left > 0 {
            self.counters
                .failed
                .fetch_add(left as u64, Ordering::Relaxed);
            log::warn!(
                "otlp: {left} spans not exported before the exit deadline (counted as dropped)"
            );
            self.pending.consume(left, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{mpsc, Arc},
        thread,
    };

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;

    use super::*;
    use crate::sinks::{json::tests::sample_span, otlp::ExportError, Batch, SinkHandle, Sinks};

    /// A collector that is down while `down` says so and counts what it got.
    struct FakeCollector {
        down: Arc<std::sync::atomic::AtomicBool>,
        received: Arc<std::sync::atomic::AtomicU64>,
        permanent_error: bool,
    }

    impl Transport for FakeCollector {
        fn export(&mut self, request: Bytes, _timeout: Duration) -> Result<u64, ExportError> {
            if self.permanent_error {
                return Err(ExportError {
                    retryable: false,
                    retry_after: None,
                    message: "400".into(),
                });
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(ExportError {
                    retryable: true,
                    retry_after: None,
                    message: "refused".into(),
                });
            }
            let request = ExportTraceServiceRequest::decode(request).unwrap();
            let n: usize = request
                .resource_spans
                .iter()
                .map(|r| r.scope_spans[0].spans.len())
                .sum();
            self.received.fetch_add(n as u64, Ordering::SeqCst);
            Ok(0)
        }
    }

    fn fast() -> Timing {
        Timing {
            max_batch: 4,
            batch_timeout: Duration::from_millis(20),
            max_pending: 50,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            retry_budget: Duration::from_secs(2),
            request_timeout: Duration::from_millis(100),
            flush_deadline: Duration::from_millis(300),
        }
    }

    fn batch(n: usize) -> SpanBatch {
        Batch::new((0..n).map(|_| sample_span()).collect())
    }

    fn sink(collector: FakeCollector, timing: Timing) -> Sinks {
        let mut sinks = Sinks::default();
        let mut collector = collector;
        let resource = ResourceConfig::default();
        sinks.add(
            SinkHandle::spawn("otlp", 1024, move |queue| {
                run(&queue, &mut collector, &resource, &timing);
            })
            .unwrap(),
        );
        sinks
    }

    fn collector(
        permanent_error: bool,
    ) -> (
        FakeCollector,
        Arc<std::sync::atomic::AtomicBool>,
        Arc<std::sync::atomic::AtomicU64>,
    ) {
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        (
            FakeCollector {
                down: down.clone(),
                received: received.clone(),
                permanent_error,
            },
            down,
            received,
        )
    }

    #[test]
    fn everything_arrives_when_the_collector_is_up() {
        let (c, _down, received) = collector(false);
        let mut sinks = sink(c, fast());
        for n in [1, 3, 10, 2] {
            sinks.send(batch(n));
        }
        let reports = sinks.finish();
        assert_eq!(received.load(Ordering::SeqCst), 16);
        assert_eq!(
            (reports[0].written, reports[0].failed, reports[0].queue_full),
            (16, 0, 0)
        );
    }

    #[test]
    fn a_short_outage_is_ridden_out() {
        let (c, down, received) = collector(false);
        down.store(true, Ordering::SeqCst);
        let mut sinks = sink(c, fast());
        for _ in 0..5 {
            sinks.send(batch(3));
            thread::sleep(Duration::from_millis(30));
        }
        down.store(false, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(200));
        assert_eq!(received.load(Ordering::SeqCst), 15, "delivered before exit");
        let reports = sinks.finish();
        assert_eq!((reports[0].written, reports[0].failed), (15, 0));
    }

    #[test]
    fn a_long_outage_drops_the_oldest_and_counts_everything() {
        let (c, down, received) = collector(false);
        down.store(true, Ordering::SeqCst);
        let timing = Timing {
            retry_budget: Duration::from_millis(100),
            ..fast()
        };
        let mut sinks = sink(c, timing);
        for _ in 0..40 {
            sinks.send(batch(5));
            thread::sleep(Duration::from_millis(5));
        }
        let reports = sinks.finish();
        let r = &reports[0];
        assert_eq!(received.load(Ordering::SeqCst), 0);
        assert_eq!(r.written + r.failed + r.queue_full, 200, "{r:?}");
        assert_eq!(r.written, 0);
    }

    #[test]
    fn permanent_errors_drop_at_once() {
        let (c, _down, _received) = collector(true);
        let mut sinks = sink(c, fast());
        sinks.send(batch(6));
        let reports = sinks.finish();
        assert_eq!((reports[0].written, reports[0].failed), (0, 6));
    }

    #[test]
    fn exit_flush_waits_for_a_collector_that_comes_back() {
        let (c, down, received) = collector(false);
        down.store(true, Ordering::SeqCst);
        let mut sinks = sink(c, fast());
        sinks.send(batch(7));
        let (done_tx, done_rx) = mpsc::channel();
        let revive = down.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            revive.store(false, Ordering::SeqCst);
            let _ = done_tx.send(());
        });
        let reports = sinks.finish();
        done_rx.recv().unwrap();
        assert_eq!(received.load(Ordering::SeqCst), 7);
        assert_eq!((reports[0].written, reports[0].failed), (7, 0));
    }

    #[test]
    fn pending_drops_oldest_beyond_its_bound() {
        let mut pending = Pending::default();
        let now = Instant::now();
        assert_eq!(pending.push(&batch(3), 5, now), 0);
        assert_eq!(pending.push(&batch(4), 5, now), 2);
        assert_eq!(pending.len(), 5);
        pending.consume(2, now);
        assert_eq!(pending.len(), 3);
        pending.consume(10, now);
        assert_eq!(pending.len(), 0);
        assert!(pending.since.is_none());
    }
}
