//! The exit summary: what a run did, as a few lines for people or as one
//! JSON object on one line for programs (`--summary-format`).

use std::{collections::BTreeMap, collections::HashMap, fmt};

use serde::{Deserialize, Serialize};
use tracer_common::maps::Counter;

use crate::{
    linking::LinkStats,
    sinks::{
        latency_table::RowStats,
        summary::{table_text, SummaryFormat},
        SinkReport, SinkVerbs,
    },
};

/// Version of the JSON layout, the value of its first key
/// (`"tracer_summary"`, by which a reader finds the line): raised when a key
/// is renamed, removed or changes meaning; new keys may come without it.
pub const JSON_VERSION: u32 = 1;

/// The loss reason of ring-buffer records user space could not decode (the
/// others are the kernel's, [`Counter::LOSSES`]).
pub const MALFORMED: &str = "malformed";
const MALFORMED_WORDS: &str = "malformed records";

/// What a run did. Serialized as is for `--summary-format json`; every key
/// is `snake_case` and stays (see [`JSON_VERSION`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`JSON_VERSION`], under the key `tracer_summary`.
    #[serde(rename = "tracer_summary")]
    pub version: u32,
    /// Spans built and handed to the sinks.
    pub spans: u64,
    /// Ring-buffer records read.
    pub events_read: u64,
    /// Every event lost, the sum of `lost`.
    pub events_lost: u64,
    /// Events lost by reason: each of [`Counter::LOSSES`] by its
    /// [`Counter::label`] (as the metrics' `reason`), and [`MALFORMED`].
    pub lost: BTreeMap<String, u64>,
    /// Spans some sink could not take or deliver (see `sinks`).
    pub spans_dropped: u64,
    /// Times a protocol parser lost its place in a stream.
    pub parser_desyncs: u64,
    /// Connections not tracked because `--max-connections` were.
    pub connections_over_limit: u64,
    /// TLS connections through a library that is not hooked.
    pub tls_undecrypted: u64,
    /// Connections still tracked at exit.
    pub connections_open: u64,
    /// Processes not traced: the kernel's traced-process table was full.
    pub processes_untraced: u64,
    /// Failures after attach (TLS hooks, housekeeping), logged as they
    /// happened; the run went on.
    pub hook_errors: u64,
    pub linking: LinkingSummary,
    /// Every sink, in the order they were started.
    pub sinks: Vec<SinkSummary>,
    /// The latency table, every row ([`crate::sinks::latency_table::LatencyTable::rows`]
    /// order); the text shows the first
    /// [`MAX_PRINTED_ROWS`](crate::sinks::summary::MAX_PRINTED_ROWS).
    pub latency: Vec<RowStats>,
    /// How long attaching took, and where the time went.
    #[serde(default)]
    pub attach: AttachSummary,
}

/// Where the time from start to "attached" went, in ms (to the µs; the unit
/// is in every key, as readers of the summary rely on it), and the path the
/// loading took where it depends on the kernel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachSummary {
    /// From start to the "attached" line: checks, sinks, kernel, processes.
    pub total_ms: f64,
    /// Reading the kernel's BTF for struct offsets.
    pub offsets_ms: f64,
    /// Parsing our object and the kernel's BTF for aya, creating the maps.
    pub object_ms: f64,
    /// Loading (verifying) and attaching each program, by name.
    pub programs_ms: BTreeMap<String, f64>,
    /// How the readv/writev/recvmsg/sendmsg programs walk their iovecs on
    /// this kernel: `bpf_loop` (5.17+) or `unrolled`. Empty in summaries
    /// written before the key existed.
    #[serde(default)]
    pub iovec_walk: String,
}

impl AttachSummary {
    pub fn new(
        total: std::time::Duration,
        times: &crate::kernel::LoadTimes,
        iovec_walk: tracer_common::IovecWalk,
    ) -> Self {
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        AttachSummary {
            total_ms: ms(total),
            offsets_ms: ms(times.offsets),
            object_ms: ms(times.object),
            programs_ms: times
                .programs
                .iter()
                .map(|&(name, took)| (name.to_owned(), ms(took)))
                .collect(),
            iovec_walk: iovec_walk.name().to_owned(),
        }
    }
}

/// What linking did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkingSummary {
    /// Spans not emitted the moment they were built.
    pub held: u64,
    /// How long a held span waited, in ms (to the µs).
    pub hold_mean_ms: f64,
    pub hold_max_ms: f64,
    /// Spans given a parent.
    pub linked: u64,
    /// Traces emitted unlinked when the window ran out or the span limit
    /// was reached.
    pub expired: u64,
    /// Of those, emitted early for `--link-max-spans`.
    pub over_limit: u64,
}

impl From<&LinkStats> for LinkingSummary {
    fn from(stats: &LinkStats) -> Self {
        let to_us = |ms: f64| (ms * 1000.0).round() / 1000.0;
        LinkingSummary {
            held: stats.held,
            hold_mean_ms: to_us(stats.hold_ms_mean()),
            hold_max_ms: to_us(stats.hold_ms_max()),
            linked: stats.linked,
            expired: stats.expired,
            over_limit: stats.over_limit,
        }
    }
}

/// What one sink did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkSummary {
    pub name: String,
    /// Spans delivered (written, exported).
    pub written: u64,
    /// Spans the sink took but could not deliver.
    pub failed: u64,
    /// Spans dropped because the sink's queue was full.
    pub queue_full: u64,
    /// The text's words for `written` and `failed`.
    #[serde(skip)]
    pub verbs: SinkVerbs,
    /// Whether the text lists the sink when it lost nothing.
    #[serde(skip)]
    pub reported: bool,
}

impl SinkSummary {
    pub fn dropped(&self) -> u64 {
        self.failed + self.queue_full
    }
}

impl From<&SinkReport> for SinkSummary {
    fn from(report: &SinkReport) -> Self {
        SinkSummary {
            name: report.name.to_owned(),
            written: report.written,
            failed: report.failed,
            queue_full: report.queue_full,
            verbs: report.verbs,
            reported: report.reported,
        }
    }
}

impl Default for Summary {
    fn default() -> Self {
        let mut summary = Summary {
            version: JSON_VERSION,
            spans: 0,
            events_read: 0,
            events_lost: 0,
            lost: BTreeMap::new(),
            spans_dropped: 0,
            parser_desyncs: 0,
            connections_over_limit: 0,
            tls_undecrypted: 0,
            connections_open: 0,
            processes_untraced: 0,
            hook_errors: 0,
            linking: LinkingSummary::default(),
            sinks: Vec::new(),
            latency: Vec::new(),
            attach: AttachSummary::default(),
        };
        summary.set_losses(&HashMap::new(), 0);
        summary
    }
}

impl Summary {
    /// The losses and the traced-process overflow from the kernel's
    /// counters, and the records user space could not decode.
    pub fn set_losses(&mut self, kernel: &HashMap<Counter, u64>, malformed: u64) {
        let count = |c: Counter| kernel.get(&c).copied().unwrap_or(0);
        self.lost = Counter::LOSSES
            .iter()
            .map(|&c| (c.label().to_owned(), count(c)))
            .chain([(MALFORMED.to_owned(), malformed)])
            .collect();
        self.events_lost = self.lost.values().sum();
        self.processes_untraced = count(Counter::PidTableFull);
    }

    /// What each sink did, and the spans they dropped between them.
    pub fn set_sinks(&mut self, reports: &[SinkReport]) {
        self.sinks = reports.iter().map(SinkSummary::from).collect();
        self.spans_dropped = self.sinks.iter().map(SinkSummary::dropped).sum();
    }

    /// The summary as `format` asks: text lines, or one JSON line. Neither
    /// ends with a newline.
    pub fn render(&self, format: SummaryFormat) -> String {
        match format {
            SummaryFormat::Text => self.to_string(),
            SummaryFormat::Json => self.json().unwrap_or_else(|err| {
                log::warn!("the summary as JSON: {err}; as text instead");
                self.to_string()
            }),
        }
    }

    /// One line of JSON.
    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// `ring buffer full 3, malformed records 1`: the reasons that lost
    /// something, in [`Counter::LOSSES`] order.
    fn losses_text(&self) -> String {
        let mut known: Vec<(&str, &str)> = Counter::LOSSES
            .iter()
            .map(|c| (c.label(), c.words()))
            .collect();
        known.push((MALFORMED, MALFORMED_WORDS));
        let words = |label: &str| {
            known
                .iter()
                .find(|(l, _)| *l == label)
                .map_or(label.to_owned(), |(_, w)| (*w).to_owned())
        };
        let order = |label: &str| {
            known
                .iter()
                .position(|(l, _)| *l == label)
                .unwrap_or(known.len())
        };
        let mut lost: Vec<(&String, &u64)> = self.lost.iter().filter(|(_, &n)| n > 0).collect();
        lost.sort_by_key(|(label, _)| order(label));
        lost.iter()
            .map(|(label, n)| format!("{} {n}", words(label)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `otlp: 229 spans exported, 0 dropped after retries, 0 dropped on
    /// full queue` for each sink that exports (when it did anything) or
    /// lost spans.
    fn sinks_text(&self) -> Option<String> {
        let shown: Vec<String> = self
            .sinks
            .iter()
            .filter(|s| s.dropped() > 0 || (s.reported && s.written + s.failed + s.queue_full > 0))
            .map(|s| {
                format!(
                    "{}: {} spans {}, {} {}, {} dropped on full queue",
                    s.name, s.written, s.verbs.written, s.failed, s.verbs.failed, s.queue_full
                )
            })
            .collect();
        if shown.is_empty() && self.spans_dropped == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if self.spans_dropped > 0 {
            parts.push(format!("{} spans dropped", self.spans_dropped));
        }
        parts.extend(shown);
        Some(parts.join("; "))
    }
}

/// The text summary: the latency table, then one line per topic; a topic
/// whose numbers are all zero is left out, except the first line.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&table_text(&self.latency, "this run"))?;
        write!(
            f,
            "tracer: {} spans emitted, {} events read, {} events lost",
            self.spans, self.events_read, self.events_lost
        )?;
        if self.events_lost > 0 {
            write!(f, "\n  events lost: {}", self.losses_text())?;
        }
        let link = &self.linking;
        if link.held + link.linked + link.expired + link.over_limit > 0 {
            write!(
                f,
                "\n  linking: {} spans held (mean {:.3} ms, max {:.3} ms), {} linked to a parent, {} traces expired unlinked ({} over --link-max-spans)",
                link.held, link.hold_mean_ms, link.hold_max_ms, link.linked, link.expired, link.over_limit
            )?;
        }
        if self.connections_open
            + self.connections_over_limit
            + self.tls_undecrypted
            + self.parser_desyncs
            > 0
        {
            write!(
                f,
                "\n  connections: {} still tracked, {} over --max-connections, {} TLS not decrypted, {} parser desyncs",
                self.connections_open,
                self.connections_over_limit,
                self.tls_undecrypted,
                self.parser_desyncs
            )?;
        }
        if let Some(sinks) = self.sinks_text() {
            write!(f, "\n  sinks: {sinks}")?;
        }
        if self.processes_untraced > 0 {
            write!(
                f,
                "\n  processes: {} {}",
                self.processes_untraced,
                Counter::PidTableFull.words()
            )?;
        }
        if self.hook_errors > 0 {
            write!(
                f,
                "\n  hook errors: {} (each logged above; tracing went on)",
                self.hook_errors
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otlp(written: u64, failed: u64, queue_full: u64) -> SinkReport {
        SinkReport {
            name: "otlp",
            written,
            failed,
            queue_full,
            verbs: SinkVerbs {
                written: "exported",
                failed: "dropped after retries",
            },
            reported: true,
        }
    }

    fn stdout_sink(written: u64, queue_full: u64) -> SinkReport {
        SinkReport {
            name: "stdout-json",
            written,
            failed: 0,
            queue_full,
            verbs: SinkVerbs::WRITE,
            reported: false,
        }
    }

    fn row(operation: &str, count: u64) -> RowStats {
        RowStats {
            service: "nginx".to_owned(),
            kind: "server".to_owned(),
            operation: operation.to_owned(),
            count,
            errors: 1,
            p50_ns: 1_200_000,
            p90_ns: 2_000_000,
            p99_ns: 3_500_000,
        }
    }

    /// A run where something happened in every topic.
    fn busy() -> Summary {
        let mut summary = Summary {
            spans: 1234,
            events_read: 2468,
            parser_desyncs: 1,
            connections_over_limit: 2,
            tls_undecrypted: 3,
            connections_open: 4,
            hook_errors: 5,
            linking: LinkingSummary {
                held: 40,
                hold_mean_ms: 0.2,
                hold_max_ms: 1.1,
                linked: 38,
                expired: 2,
                over_limit: 1,
            },
            latency: vec![row("GET /", 1200), row("GET /health", 34)],
            ..Summary::default()
        };
        let kernel = HashMap::from([
            (Counter::RingBufFull, 3),
            (Counter::TlsSocketUnknown, 2),
            (Counter::PidTableFull, 7),
            (Counter::DataEvents, 2000),
        ]);
        summary.set_losses(&kernel, 1);
        summary.set_sinks(&[stdout_sink(1230, 4), otlp(1200, 30, 0)]);
        summary
    }

    #[test]
    fn a_quiet_run_is_one_line() {
        let summary = Summary::default();
        assert_eq!(
            summary.to_string(),
            "tracer: 0 spans emitted, 0 events read, 0 events lost"
        );
        // Sinks that did nothing, or print to stdout, are not listed.
        let mut summary = Summary {
            spans: 5,
            events_read: 10,
            ..Summary::default()
        };
        summary.set_sinks(&[stdout_sink(5, 0), otlp(0, 0, 0)]);
        assert_eq!(
            summary.to_string(),
            "tracer: 5 spans emitted, 10 events read, 0 events lost"
        );
    }

    #[test]
    fn every_non_zero_counter_is_in_the_text() {
        let text = busy().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "tracer: latency by service and operation, this run (1234 spans):"
        );
        assert!(lines[1].starts_with("SERVICE"), "{text}");
        assert!(
            lines[2].contains("GET /") && lines[2].contains("1200"),
            "{text}"
        );
        assert_eq!(
            lines[4..],
            [
                "tracer: 1234 spans emitted, 2468 events read, 6 events lost",
                "  events lost: ring buffer full 3, TLS call without socket 2, malformed records 1",
                "  linking: 40 spans held (mean 0.200 ms, max 1.100 ms), 38 linked to a parent, 2 traces expired unlinked (1 over --link-max-spans)",
                "  connections: 4 still tracked, 2 over --max-connections, 3 TLS not decrypted, 1 parser desyncs",
                "  sinks: 34 spans dropped; stdout-json: 1230 spans written, 0 failed, 4 dropped on full queue; otlp: 1200 spans exported, 30 dropped after retries, 0 dropped on full queue",
                "  processes: 7 processes not traced: traced-process table full",
                "  hook errors: 5 (each logged above; tracing went on)",
            ],
            "{text}"
        );
    }

    #[test]
    fn topics_with_only_zeros_are_left_out() {
        let mut summary = Summary {
            spans: 3,
            events_read: 9,
            connections_open: 1,
            ..Summary::default()
        };
        summary.set_losses(&HashMap::from([(Counter::SocketTableFull, 2)]), 0);
        summary.set_sinks(&[otlp(3, 0, 0)]);
        assert_eq!(
            summary.to_string(),
            "tracer: 3 spans emitted, 9 events read, 2 events lost\n\
             \x20 events lost: socket table full 2\n\
             \x20 connections: 1 still tracked, 0 over --max-connections, 0 TLS not decrypted, 0 parser desyncs\n\
             \x20 sinks: otlp: 3 spans exported, 0 dropped after retries, 0 dropped on full queue"
        );
    }

    #[test]
    fn the_json_is_one_line_with_every_key() {
        let summary = busy();
        let line = summary.render(SummaryFormat::Json);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with(r#"{"tracer_summary":1,"#), "{line}");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "spans",
            "events_read",
            "events_lost",
            "spans_dropped",
            "parser_desyncs",
            "connections_over_limit",
            "tls_undecrypted",
            "connections_open",
            "processes_untraced",
            "hook_errors",
        ] {
            assert!(json[key].is_u64(), "{key}: {line}");
        }
        assert_eq!(json["events_lost"], 6);
        // Every loss reason, zero or not, by its metrics label.
        let lost = json["lost"].as_object().unwrap();
        let mut reasons: Vec<&str> = lost.keys().map(String::as_str).collect();
        reasons.sort_unstable();
        assert_eq!(
            reasons,
            [
                "in_flight_table_full",
                "malformed",
                "payload_unreadable",
                "ring_buffer_full",
                "socket_table_full",
                "tls_socket_unknown",
            ]
        );
        assert_eq!(lost["ring_buffer_full"], 3);
        assert_eq!(lost["socket_table_full"], 0);
        assert_eq!(json["processes_untraced"], 7);
        assert_eq!(
            json["linking"],
            serde_json::json!({"held": 40, "hold_mean_ms": 0.2, "hold_max_ms": 1.1,
                               "linked": 38, "expired": 2, "over_limit": 1})
        );
        assert_eq!(
            json["sinks"][1],
            serde_json::json!({"name": "otlp", "written": 1200, "failed": 30, "queue_full": 0})
        );
        assert_eq!(json["spans_dropped"], 34);
        assert_eq!(
            json["latency"][0],
            serde_json::json!({"service": "nginx", "kind": "server", "operation": "GET /",
                               "count": 1200, "errors": 1, "p50_ns": 1_200_000,
                               "p90_ns": 2_000_000, "p99_ns": 3_500_000})
        );
        assert_eq!(json["latency"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_json_reads_back_the_same() {
        let summary = busy();
        let line = summary.json().unwrap();
        let back: Summary = serde_json::from_str(&line).unwrap();
        // The text-only wording of the sinks is not in the JSON.
        let mut expected = summary.clone();
        for sink in &mut expected.sinks {
            sink.verbs = SinkVerbs::default();
            sink.reported = false;
        }
        assert_eq!(back, expected);
        assert_eq!(back.json().unwrap(), line);
    }

    #[test]
    fn hold_times_are_kept_to_the_microsecond() {
        let stats = LinkStats {
            held: 3,
            linked: 2,
            expired: 1,
            over_limit: 0,
            unlinkable: 0,
            hold_ns_total: 1_000_000,
            hold_ns_max: 612_345,
        };
        let link = LinkingSummary::from(&stats);
        assert!((link.hold_mean_ms - 0.333).abs() < 1e-9, "{link:?}");
        assert!((link.hold_max_ms - 0.612).abs() < 1e-9, "{link:?}");
    }
}
