//! `tracer report FILE...`: what stored OTLP-JSON lines (what
//! `--output-file` writes, or the OpenTelemetry Collector's file exporter)
//! show: the latency table, the slowest traces as waterfalls
//! (`--traces`), who calls whom (`--service-map`), or all of it as one
//! HTML page (`--html`). One reader ([`read`]) and one span model
//! ([`model`]) behind all of them. Bad input is counted and reported,
//! never fatal to the rest.

pub mod html;
pub mod model;
pub mod read;
pub mod service_map;
pub mod traces;
pub mod waterfall;

use std::{
    fmt::Write as _,
    io::{self, Write},
    path::PathBuf,
};

use thiserror::Error;

pub use crate::sinks::latency_table::LatencyTable;
pub use read::{read, ReadStats};

use model::SpanRecord;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("no spans could be read from {0}")]
    NothingRead(String),
    #[error("{0:?} is not a trace id (32 hex digits)")]
    BadTraceId(String),
    #[error("trace {0} is not in {1}")]
    TraceNotFound(String, String),
    #[error("writing {0}: {1}")]
    WriteFile(PathBuf, io::Error),
    #[error("writing the report: {0}")]
    Output(#[from] io::Error),
}

/// What to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    /// The latency table per service and operation.
    LatencyTable,
    /// The `limit` slowest traces, or the one with `trace_id`.
    Traces {
        limit: usize,
        trace_id: Option<String>,
    },
    ServiceMap,
    /// The self-contained HTML page, written to this path.
    Html(PathBuf),
}

/// Reads `files`, prints `view` on `out` and a one-line account on `notes`
/// (with a line per unreadable file).
pub fn run(
    files: &[PathBuf],
    view: &View,
    out: &mut impl Write,
    notes: &mut impl Write,
) -> Result<ReadStats, ReportError> {
    // A bad id is refused before any file is read.
    let wanted = match view {
        View::Traces {
            trace_id: Some(id), ..
        } => Some(trace_id(id)?),
        _ => None,
    };
    let (spans, stats) = read::read_files(files, notes)?;
    let file_names = || {
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut duplicates = 0;
    match view {
        View::LatencyTable => {
            let mut table = LatencyTable::default();
            for s in &spans {
                table.record(
                    &s.service,
                    s.kind.as_str(),
                    &s.name,
                    s.duration_ns(),
                    s.error,
                );
            }
            out.write_all(table.render(usize::MAX).as_bytes())?;
        }
        View::Traces { limit, .. } => {
            let spans = unique(spans, &mut duplicates);
            let all = traces::traces(&spans);
            let shown: Vec<&traces::Trace<'_>> = match &wanted {
                Some(id) => {
                    let one: Vec<_> = all.iter().filter(|t| t.id == id).collect();
                    if one.is_empty() {
                        return Err(ReportError::TraceNotFound(id.clone(), file_names()));
                    }
                    one
                }
                None => all.iter().take(*limit).collect(),
            };
            out.write_all(waterfall::render(&shown).as_bytes())?;
            if wanted.is_none() && all.len() > shown.len() {
                writeln!(
                    notes,
                    "tracer: the {} slowest of {} traces shown (--limit)",
                    shown.len(),
                    all.len()
                )?;
            }
        }
        View::ServiceMap => {
            let spans = unique(spans, &mut duplicates);
            out.write_all(service_map::render(&service_map::edges(&spans)).as_bytes())?;
        }
        View::Html(path) => {
            let spans = unique(spans, &mut duplicates);
            let page = html::render(&spans, &file_names());
            std::fs::write(path, page).map_err(|err| ReportError::WriteFile(path.clone(), err))?;
            writeln!(out, "wrote {}", path.display())?;
        }
    }
    // The output first, then the account, even when both go to a terminal.
    out.flush()?;
    let mut account = format!(
        "tracer: {} spans from {} file(s); {} malformed lines and {} malformed spans skipped",
        stats.spans, stats.files, stats.malformed_lines, stats.malformed_spans
    );
    if duplicates > 0 {
        let _ = write!(account, "; {duplicates} repeated spans counted once");
    }
    writeln!(notes, "{account}")?;
    Ok(stats)
}

fn unique(spans: Vec<SpanRecord>, duplicates: &mut u64) -> Vec<SpanRecord> {
    let (spans, dropped) = traces::dedup(spans);
    *duplicates = dropped;
    spans
}

/// A trace id as the files write it: 32 hex digits, lower case.
fn trace_id(id: &str) -> Result<String, ReportError> {
    let id = id.trim();
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(ReportError::BadTraceId(id.to_owned()))
    }
}

#[cfg(test)]
mod tests;
