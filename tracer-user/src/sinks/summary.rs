//! The latency table: kept by this sink from every span, printed on stderr
//! every `--summary-every` seconds while tracing (cumulative since the
//! start), and handed to the exit summary when the run ends.

use std::{
    io::Write as _,
    sync::{atomic::Ordering, mpsc::RecvTimeoutError, Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    sinks::{
        latency_table::{self, LatencyTable, RowStats},
        resource::ResourceConfig,
        SinkHandle,
    },
    spans::{Span, SpanStatus},
};

/// Rows printed on stderr as text; the rest are summed up in one line.
pub const MAX_PRINTED_ROWS: usize = 40;

/// How the summaries on stderr are written (`--summary-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    /// For people: a few lines, one per topic.
    #[default]
    Text,
    /// For programs: one JSON object per line.
    Json,
}

/// The table's rows as they stood when the sink finished: filled when its
/// queue closes, read by the exit summary once the sinks are joined.
#[derive(Clone, Debug, Default)]
pub struct FinalTable(Arc<Mutex<Vec<RowStats>>>);

impl FinalTable {
    /// The rows, ordered as [`LatencyTable::rows`]; empty before the sink
    /// finished (or if it could not).
    pub fn take(&self) -> Vec<RowStats> {
        self.0
            .lock()
            .map(|mut rows| std::mem::take(&mut *rows))
            .unwrap_or_default()
    }

    fn put(&self, rows: Vec<RowStats>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = rows;
        }
    }
}

/// The periodic table with `--summary-format json`: one line, told apart
/// from the exit summary (`tracer_summary`) by its first key.
#[derive(Debug, Serialize)]
struct PeriodicTable<'a> {
    /// Version of this line's layout.
    tracer_latency: u32,
    spans: u64,
    latency: &'a [RowStats],
}

pub fn spawn(
    resource: Arc<ResourceConfig>,
    every: Option<Duration>,
    format: SummaryFormat,
    capacity: usize,
) -> std::io::Result<(SinkHandle, FinalTable)> {
    let final_table = FinalTable::default();
    let slot = final_table.clone();
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
                        print_periodic(&table, format);
                        printed_spans = table.spans();
                    }
                    next_print = Some(Instant::now() + every);
                }
            }
        }
        slot.put(table.rows());
    })?;
    Ok((sink.unreported(), final_table))
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

/// The table as the text summaries show it, with its heading; empty for
/// no rows.
pub fn table_text(rows: &[RowStats], when: &str) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let spans: u64 = rows.iter().map(|r| r.count).sum();
    format!(
        "tracer: latency by service and operation, {when} ({spans} spans):\n{}",
        latency_table::render_rows(rows, MAX_PRINTED_ROWS)
    )
}

fn print_periodic(table: &LatencyTable, format: SummaryFormat) {
    let rows = table.rows();
    let text = match format {
        SummaryFormat::Text => table_text(&rows, "so far"),
        SummaryFormat::Json => {
            let line = PeriodicTable {
                tracer_latency: 1,
                spans: table.spans(),
                latency: &rows,
            };
            match serde_json::to_string(&line) {
                Ok(json) => json + "\n",
                Err(err) => {
                    log::warn!("latency table as JSON: {err}");
                    return;
                }
            }
        }
    };
    // One write so the table is not interleaved with other stderr lines.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_periodic_json_line_has_the_rows() {
        let mut table = LatencyTable::default();
        table.record("nginx", "server", "GET /", 2_000_000, false);
        let rows = table.rows();
        let line = serde_json::to_value(PeriodicTable {
            tracer_latency: 1,
            spans: 1,
            latency: &rows,
        })
        .unwrap();
        assert_eq!(line["tracer_latency"], 1);
        assert_eq!(line["latency"][0]["operation"], "GET /");
        assert_eq!(line["latency"][0]["count"], 1);
        assert!(line["latency"][0]["p99_ns"].as_u64().unwrap() > 1_000_000);
    }

    #[test]
    fn the_text_table_has_a_heading_and_nothing_for_no_rows() {
        assert_eq!(table_text(&[], "this run"), "");
        let mut table = LatencyTable::default();
        table.record("nginx", "server", "GET /", 2_000_000, false);
        table.record("nginx", "server", "GET /", 4_000_000, true);
        let text = table_text(&table.rows(), "this run");
        assert!(
            text.starts_with(
                "tracer: latency by service and operation, this run (2 spans):\nSERVICE"
            ),
            "{text}"
        );
    }
}
