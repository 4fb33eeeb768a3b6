//! The latency table: kept by this sink from every span, printed on stderr
//! every `--summary-every` seconds while tracing (cumulative since the
//! start), and handed to the exit summary when the run ends.

use std::{
    io::Write as _,
    sync::{mpsc::RecvTimeoutError, Arc, Mutex},
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

/// The latency table is kept on the thread that hands spans over, while
/// they are in its cache (on the sink's own thread it cost 0.2 µs per HTTP
/// span of another core's cache misses); the sink's thread only prints it
/// every `every` and hands it over at the end.
pub fn spawn(
    resource: Arc<ResourceConfig>,
    every: Option<Duration>,
    format: SummaryFormat,
) -> std::io::Result<(SinkHandle, FinalTable)> {
    let final_table = FinalTable::default();
    let slot = final_table.clone();
    let table = Arc::new(Mutex::new(LatencyTable::default()));
    let recorded = table.clone();
    let record = Box::new(move |spans: &[Span]| {
        if let Ok(mut table) = recorded.lock() {
            add(&mut table, spans, &resource);
        }
    });
    let sink = SinkHandle::spawn_recorded("summary", record, move |stop| {
        let mut next_print = every.map(|every| Instant::now() + every);
        // A quiet period repeats nothing.
        let mut printed_spans = 0;
        loop {
            let stopped = match next_print {
                None => stop.recv().is_err(),
                Some(at) => matches!(
                    stop.recv_timeout(at.saturating_duration_since(Instant::now())),
                    Err(RecvTimeoutError::Disconnected)
                ),
            };
            if stopped {
                break;
            }
            if let (Some(at), Some(every)) = (next_print, every) {
                if Instant::now() >= at {
                    let rows = table.lock().map(|t| (t.spans(), t.rows()));
                    if let Ok((spans, rows)) = rows {
                        if spans != printed_spans {
                            print_periodic(spans, &rows, format);
                            printed_spans = spans;
                        }
                    }
                    next_print = Some(Instant::now() + every);
                }
            }
        }
        if let Ok(table) = table.lock() {
            slot.put(table.rows());
        }
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

fn print_periodic(spans: u64, rows: &[RowStats], format: SummaryFormat) {
    let text = match format {
        SummaryFormat::Text => table_text(rows, "so far"),
        SummaryFormat::Json => {
            let line = PeriodicTable {
                tracer_latency: 1,
                spans,
                latency: rows,
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
    use crate::sinks::{json::tests::sample_span, Batch, Sinks};

    #[test]
    fn every_span_sent_is_in_the_final_table() {
        for every in [None, Some(Duration::from_millis(1))] {
            let (sink, table) = spawn(
                Arc::new(ResourceConfig::default()),
                every,
                SummaryFormat::Json,
            )
            .unwrap();
            let mut sinks = Sinks::default();
            sinks.add(sink);
            for n in [3, 1, 4] {
                sinks.send(Batch::new((0..n).map(|_| sample_span()).collect()));
                std::thread::sleep(Duration::from_millis(2));
            }
            let reports = sinks.finish();
            assert_eq!((reports[0].written, reports[0].dropped()), (8, 0));
            let rows = table.take();
            assert_eq!(rows.len(), 1, "{every:?}");
            assert_eq!(rows[0].operation, "GET /index.html");
            assert_eq!(rows[0].count, 8, "{every:?}");
        }
    }

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
