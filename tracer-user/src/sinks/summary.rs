//! The latency table on stderr: on exit, and every `--summary-every`
//! seconds while tracing (cumulative since the start).

use std::{
    io::Write as _,
    sync::{atomic::Ordering, mpsc::RecvTimeoutError, Arc},
    time::{Duration, Instant},
};

use crate::{
    sinks::{latency_table::LatencyTable, resource::ResourceConfig, SinkHandle},
    spans::{Span, SpanStatus},
};

/// Rows printed on stderr; the rest are summed up in one line.
const MAX_PRINTED_ROWS: usize = 40;

pub fn spawn(
    resource: Arc<ResourceConfig>,
    every: Option<Duration>,
    capacity: usize,
) -> std::io::Result<SinkHandle> {
    let sink = SinkHandle::spawn("summary", capacity, move |queue| {
        let mut table = LatencyTable::default();
        let mut next_print = every.map(|every| Instant::now() + every);
        // A quiet period repeats nothing.
        let mut printed_spans = 0;
        loop {
            let received = match next_print {
                None => queue.recv().ok_or(RecvTimeoutError::Disconnected),
                Some(at) => queue.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match received {
                Ok(batch) => {
                    add(&mut table, &batch, &resource);
                    queue
                        .counters()
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let (Some(at), Some(every)) = (next_print, every) {
                if Instant::now() >= at {
                    if table.spans() != printed_spans {
                        print(&table, "so far");
                        printed_spans = table.spans();
                    }
                    next_print = Some(Instant::now() + every);
                }
            }
        }
        print(&table, "this run");
    })?;
    Ok(sink.unreported())
}

pub fn add(table: &mut LatencyTable, spans: &[Span], resource: &ResourceConfig) {
    for span in spans {
        table.record(
            resource.service_name_str(&span.process),
            span.kind.as_str(),
            &span.name,
            span.duration_ns(),
            span.status == SpanStatus::Error,
        );
    }
}

fn print(table: &LatencyTable, when: &str) {
    if table.is_empty() {
        return;
    }
    let text = format!(
        "tracer: latency by service and operation, {when} ({} spans):\n{}",
        table.spans(),
        table.render(MAX_PRINTED_ROWS)
    );
    // One write so the table is not interleaved with other stderr lines.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
