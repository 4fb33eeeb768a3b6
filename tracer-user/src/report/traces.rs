//! Spans grouped into traces and ordered as trees: parent before child,
//! siblings by start time. A span whose parent is not in the files is a
//! root of its trace, marked as such; it is never attached elsewhere.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::model::SpanRecord;

/// One trace, its spans in tree order.
#[derive(Debug)]
pub struct Trace<'a> {
    pub id: &'a str,
    pub start_ns: u64,
    pub end_ns: u64,
    pub rows: Vec<Row<'a>>,
}

/// One span of a trace, at its place in the tree.
#[derive(Debug)]
pub struct Row<'a> {
    pub span: &'a SpanRecord,
    pub depth: usize,
    /// It names a parent that is not in the files (or the parents form a
    /// cycle): shown as a root.
    pub parent_missing: bool,
}

impl Trace<'_> {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// Distinct processes (service and pid) with spans in the trace.
    pub fn processes(&self) -> usize {
        self.rows
            .iter()
            .map(|row| row.span.process())
            .collect::<HashSet<_>>()
            .len()
    }

    pub fn errors(&self) -> usize {
        self.rows.iter().filter(|row| row.span.error).count()
    }
}

/// Every trace in `spans`, slowest first (ties by id, so the order is
/// stable). `spans` must hold each span once.
pub fn traces(spans: &[SpanRecord]) -> Vec<Trace<'_>> {
    let mut by_trace: BTreeMap<&str, Vec<&SpanRecord>> = BTreeMap::new();
    for span in spans {
        by_trace.entry(&span.trace_id).or_default().push(span);
    }
    let mut traces: Vec<Trace<'_>> = by_trace
        .into_iter()
        .map(|(id, spans)| tree(id, spans))
        .collect();
    traces.sort_by(|a, b| {
        b.duration_ns()
            .cmp(&a.duration_ns())
            .then_with(|| a.id.cmp(b.id))
    });
    traces
}

fn tree<'a>(id: &'a str, mut spans: Vec<&'a SpanRecord>) -> Trace<'a> {
    spans.sort_by(|a, b| (a.start_ns, &a.span_id).cmp(&(b.start_ns, &b.span_id)));
    let present: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&'a SpanRecord>> = HashMap::new();
    let mut roots: Vec<(&'a SpanRecord, bool)> = Vec::new();
    for span in &spans {
        match span.parent_span_id.as_deref() {
            Some(parent) if present.contains(parent) => {
                children.entry(parent).or_default().push(span);
            }
            Some(_) => roots.push((span, true)),
            None => roots.push((span, false)),
        }
    }
    let mut rows = Vec::with_capacity(spans.len());
    let mut placed: HashSet<&str> = HashSet::new();
    for (root, parent_missing) in roots {
        place(root, parent_missing, &children, &mut placed, &mut rows);
    }
    // Only spans whose parents form a cycle are left: each shown as a root.
    for span in &spans {
        if !placed.contains(span.span_id.as_str()) {
            place(span, true, &children, &mut placed, &mut rows);
        }
    }
    Trace {
        id,
        start_ns: spans.iter().map(|s| s.start_ns).min().unwrap_or(0),
        end_ns: spans.iter().map(|s| s.end_ns).max().unwrap_or(0),
        rows,
    }
}

/// Adds `root` and its subtree, depth first, without recursion (a deep
/// trace must not overflow the stack).
fn place<'a>(
    root: &'a SpanRecord,
    parent_missing: bool,
    children: &HashMap<&str, Vec<&'a SpanRecord>>,
    placed: &mut HashSet<&'a str>,
    rows: &mut Vec<Row<'a>>,
) {
    let mut stack = vec![(root, 0, parent_missing)];
    while let Some((span, depth, parent_missing)) = stack.pop() {
        if !placed.insert(&span.span_id) {
            continue;
        }
        rows.push(Row {
            span,
            depth,
            parent_missing,
        });
        if let Some(kids) = children.get(span.span_id.as_str()) {
            // Reversed, so that the earliest child is popped first.
            for kid in kids.iter().rev() {
                if !placed.contains(kid.span_id.as_str()) {
                    stack.push((kid, depth + 1, false));
                }
            }
        }
    }
}

/// `spans` with each (trace id, span id) once, the first kept, and how
/// many repeats were dropped (the same file given twice, or a copy).
pub fn dedup(spans: Vec<SpanRecord>) -> (Vec<SpanRecord>, u64) {
    let mut seen = HashSet::new();
    let before = spans.len();
    let unique: Vec<SpanRecord> = spans
        .into_iter()
        .filter(|s| seen.insert((s.trace_id.clone(), s.span_id.clone())))
        .collect();
    let dropped = (before - unique.len()) as u64;
    (unique, dropped)
}
