//! The latency table: per service, span kind and operation, the count,
//! error rate and p50/p90/p99 latency (HDR histograms, 2 significant
//! digits). Shared by the on-exit summary and `tracer report`.

use std::{
    borrow::Borrow,
    fmt::Write as _,
    hash::{Hash, Hasher},
};

// Looked up once per span by the summary sink: seeded foldhash rather than
// SipHash (operation names come from traffic, so still seeded).
use foldhash::HashMap;
use hdrhistogram::Histogram;

/// Rows kept apart; later operations of any service share one `_other_` row
/// per service and kind, so memory stays bounded whatever the traffic.
pub const MAX_ROWS: usize = 1000;
/// The row name for operations past [`MAX_ROWS`].
pub const OTHER: &str = "_other_";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey {
    service: String,
    kind: String,
    operation: String,
}

/// A row's key as borrowed text, so a span finds its row without building
/// owned strings: `RowKey` borrows as `dyn KeyView`, and both hash and
/// compare through `parts`.
trait KeyView {
    fn parts(&self) -> (&str, &str, &str);
}

impl KeyView for RowKey {
    fn parts(&self) -> (&str, &str, &str) {
        (&self.service, &self.kind, &self.operation)
    }
}

impl KeyView for (&str, &str, &str) {
    fn parts(&self) -> (&str, &str, &str) {
        *self
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for RowKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyView + '_ {}

// Must hash as its borrowed form does (`Borrow`'s contract).
impl Hash for RowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

struct Row {
    count: u64,
    errors: u64,
    /// Nanoseconds; `None` only if the histogram could not be made (it
    /// cannot with these parameters, but the row still counts then).
    latency: Option<Histogram<u64>>,
}

impl Row {
    fn add(&mut self, duration_ns: u64, error: bool) {
        self.count += 1;
        self.errors += u64::from(error);
        if let Some(latency) = &mut self.latency {
            // `record` grows the histogram; `saturating_record` would clamp
            // to its current range, so it is only the fallback.
            let ns = duration_ns.max(1);
            if latency.record(ns).is_err() {
                latency.saturating_record(ns);
            }
        }
    }
}

#[derive(Default)]
pub struct LatencyTable {
    rows: HashMap<RowKey, Row>,
}

/// One row's numbers, for callers that compare rather than print (the
/// JSON exit summary has them as they are, latencies in nanoseconds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowStats {
    pub service: String,
    pub kind: String,
    pub operation: String,
    pub count: u64,
    pub errors: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
}

impl LatencyTable {
    pub fn record(
        &mut self,
        service: &str,
        kind: &str,
        operation: &str,
        duration_ns: u64,
        error: bool,
    ) {
        // A known row is found by the borrowed key; owned strings are made
        // only for a new row.
        if let Some(row) = self
            .rows
            .get_mut(&(service, kind, operation) as &dyn KeyView)
        {
            row.add(duration_ns, error);
            return;
        }
        let operation = if self.rows.len() >= MAX_ROWS {
            OTHER
        } else {
            operation
        };
        if let Some(row) = self
            .rows
            .get_mut(&(service, kind, operation) as &dyn KeyView)
        {
            row.add(duration_ns, error);
            return;
        }
        let key = RowKey {
            service: service.to_owned(),
            kind: kind.to_owned(),
            operation: operation.to_owned(),
        };
        let mut row = Row {
            count: 0,
            errors: 0,
            // Two significant digits; auto-resizing, so a row costs only
            // what its longest span needs.
            latency: Histogram::new(2).ok(),
        };
        row.add(duration_ns, error);
        self.rows.insert(key, row);
    }

    pub fn spans(&self) -> u64 {
        self.rows.values().map(|r| r.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows by service, then busiest first.
    pub fn rows(&self) -> Vec<RowStats> {
        let mut rows: Vec<RowStats> = self
            .rows
            .iter()
            .map(|(key, row)| RowStats {
                service: key.service.clone(),
                kind: key.kind.clone(),
                operation: key.operation.clone(),
                count: row.count,
                errors: row.errors,
                p50_ns: row
                    .latency
                    .as_ref()
                    .map_or(0, |h| h.value_at_quantile(0.50)),
                p90_ns: row
                    .latency
                    .as_ref()
                    .map_or(0, |h| h.value_at_quantile(0.90)),
                p99_ns: row
                    .latency
                    .as_ref()
                    .map_or(0, |h| h.value_at_quantile(0.99)),
            })
            .collect();
        rows.sort_by(|a, b| {
            (
                &a.service,
                std::cmp::Reverse(a.count),
                &a.kind,
                &a.operation,
            )
                .cmp(&(
                    &b.service,
                    std::cmp::Reverse(b.count),
                    &b.kind,
                    &b.operation,
                ))
        });
        rows
    }

    /// The table as text, at most `max_rows` rows (the rest summed up in
    /// one line).
    pub fn render(&self, max_rows: usize) -> String {
        render_rows(&self.rows(), max_rows)
    }
}

/// Rows (as [`LatencyTable::rows`] orders them) as a text table, at most
/// `max_rows` of them (the rest summed up in one line).
pub fn render_rows(rows: &[RowStats], max_rows: usize) -> String {
    const HEADER: [&str; 9] = [
        "SERVICE",
        "KIND",
        "OPERATION",
        "COUNT",
        "ERRORS",
        "ERR%",
        "P50",
        "P90",
        "P99",
    ];
    let shown = rows.len().min(max_rows);
    let cells: Vec<[String; 9]> = rows[..shown]
        .iter()
        .map(|r| {
            [
                truncate(&r.service, 32),
                r.kind.clone(),
                truncate(&r.operation, 60),
                r.count.to_string(),
                r.errors.to_string(),
                format!("{:.1}%", r.errors as f64 * 100.0 / r.count.max(1) as f64),
                format_duration(r.p50_ns),
                format_duration(r.p90_ns),
                format_duration(r.p99_ns),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Names left-aligned, numbers right-aligned.
            if i < 3 {
                let _ = write!(text, "{cell:<width$}  ");
            } else {
                let _ = write!(text, "{cell:>width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADER);
    for row in &cells {
        line(&row.each_ref().map(String::as_str));
    }
    if rows.len() > shown {
        let rest: u64 = rows[shown..].iter().map(|r| r.count).sum();
        let _ = writeln!(out, "... {} more rows ({rest} spans)", rows.len() - shown);
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// `1.23ms`-style, like the text output.
pub fn format_duration(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else {
        format!("{:.3}s", ns as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_counts_and_error_rate() {
        let mut table = LatencyTable::default();
        // 1..=100 ms: p50 = 50 ms, p90 = 90 ms, p99 = 99 ms (2 digits).
        for ms in 1..=100u64 {
            table.record("nginx", "server", "GET /a", ms * 1_000_000, ms % 10 == 0);
        }
        table.record("nginx", "server", "GET /b", 5_000, false);
        table.record("redis", "client", "GET", 20_000, true);
        let rows = table.rows();
        assert_eq!(rows.len(), 3);
        let a = &rows[0];
        assert_eq!(
            (a.service.as_str(), a.operation.as_str(), a.count, a.errors),
            ("nginx", "GET /a", 100, 10)
        );
        let close = |got: u64, want: u64| got.abs_diff(want) * 100 <= want;
        assert!(close(a.p50_ns, 50_000_000), "{}", a.p50_ns);
        assert!(close(a.p90_ns, 90_000_000), "{}", a.p90_ns);
        assert!(close(a.p99_ns, 99_000_000), "{}", a.p99_ns);
        assert_eq!(rows[1].operation, "GET /b");
        assert_eq!(rows[2].service, "redis");
        assert_eq!(table.spans(), 102);

        let text = table.render(10);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("SERVICE"));
        assert!(
            lines[1].contains("GET /a") && lines[1].contains("10.0%") && lines[1].contains("50."),
            "{text}"
        );
        assert!(lines[3].contains("100.0%"), "{text}");
        let short = table.render(1);
        assert!(short.ends_with("... 2 more rows (2 spans)\n"), "{short}");
    }

    #[test]
    fn operations_beyond_the_cap_share_one_row() {
        let mut table = LatencyTable::default();
        for i in 0..MAX_ROWS + 50 {
            table.record("svc", "server", &format!("GET /item/{i}"), 1_000, false);
        }
        let rows = table.rows();
        assert_eq!(rows.len(), MAX_ROWS + 1);
        let other = rows.iter().find(|r| r.operation == OTHER).unwrap();
        assert_eq!(other.count, 50);
        assert_eq!(table.spans(), (MAX_ROWS + 50) as u64);
    }

    #[test]
    fn durations_read_like_the_text_output() {
        assert_eq!(format_duration(999), "999ns");
        assert_eq!(format_duration(1_500), "1.5µs");
        assert_eq!(format_duration(1_230_000), "1.23ms");
        assert_eq!(format_duration(2_500_000_000), "2.500s");
    }
}
