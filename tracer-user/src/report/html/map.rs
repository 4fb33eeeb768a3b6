//! The service map as an SVG graph: callers left of callees (columns by
//! longest call path), one arrow per edge labelled with its protocol,
//! requests, error rate and p99.

use std::{collections::BTreeMap, fmt::Write as _};

use super::escape;
use crate::{
    report::service_map::{Edge, Seen},
    sinks::latency_table::format_duration,
};

const NODE_W: f64 = 170.0;
const NODE_H: f64 = 44.0;
const COLUMN: f64 = 340.0;
const ROW: f64 = 96.0;
const MARGIN: f64 = 30.0;

struct Node {
    /// Not traced: named by its address.
    peer: bool,
    column: usize,
    row: usize,
}

impl Node {
    fn x(&self) -> f64 {
        MARGIN + self.column as f64 * COLUMN
    }

    fn y(&self) -> f64 {
        MARGIN + 20.0 + self.row as f64 * ROW
    }
}

fn layout(edges: &[Edge]) -> BTreeMap<&str, Node> {
    let mut nodes: BTreeMap<&str, Node> = BTreeMap::new();
    for edge in edges {
        for (name, peer) in [
            (&edge.key.client, edge.seen == Seen::ClientUntraced),
            (&edge.key.server, edge.seen == Seen::ServerUntraced),
        ] {
            let node = nodes.entry(name.as_str()).or_insert(Node {
                peer: true,
                column: 0,
                row: 0,
            });
            // A name traced on any edge is a traced process.
            node.peer &= peer;
        }
    }
    // Longest path from a caller nobody calls; bounded, so cycles end.
    let most = nodes.len().saturating_sub(1);
    for _ in 0..nodes.len() {
        let mut changed = false;
        for edge in edges {
            if edge.key.client == edge.key.server {
                continue;
            }
            let from = nodes.get(edge.key.client.as_str()).map_or(0, |n| n.column);
            if let Some(to) = nodes.get_mut(edge.key.server.as_str()) {
                let column = (from + 1).min(most);
                if to.column < column {
                    to.column = column;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut next_row: BTreeMap<usize, usize> = BTreeMap::new();
    for node in nodes.values_mut() {
        let row = next_row.entry(node.column).or_insert(0);
        node.row = *row;
        *row += 1;
    }
    nodes
}

/// The graph.
pub fn svg(edges: &[Edge]) -> String {
    let nodes = layout(edges);
    let columns = nodes.values().map(|n| n.column + 1).max().unwrap_or(1);
    let rows = nodes.values().map(|n| n.row + 1).max().unwrap_or(1);
    let width = 2.0 * MARGIN + (columns - 1) as f64 * COLUMN + NODE_W + 60.0;
    let height = 2.0 * MARGIN + 20.0 + rows as f64 * ROW;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg class=\"map\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"service map\">"
    );
    out.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker>\
         <marker id=\"arrow-err\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#c0392b\"/></marker></defs>\n",
    );
    for edge in edges {
        let (Some(from), Some(to)) = (
            nodes.get(edge.key.client.as_str()),
            nodes.get(edge.key.server.as_str()),
        ) else {
            continue;
        };
        let class = if edge.errors > 0 { "edge err" } else { "edge" };
        let marker = if edge.errors > 0 {
            "arrow-err"
        } else {
            "arrow"
        };
        let (path, lx, ly) = if edge.key.client == edge.key.server {
            // A process calling itself: a loop above its box.
            let (x, y) = (from.x() + NODE_W / 2.0, from.y());
            (
                format!(
                    "M{:.1},{y:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{y:.1}",
                    x - 20.0,
                    x - 40.0,
                    y - 50.0,
                    x + 40.0,
                    y - 50.0,
                    x + 20.0
                ),
                x,
                y - 46.0,
            )
        } else if to.column > from.column {
            let (x0, y0) = (from.x() + NODE_W, from.y() + NODE_H / 2.0);
            let (x1, y1) = (to.x(), to.y() + NODE_H / 2.0);
            let dx = (x1 - x0) / 2.0;
            (
                format!(
                    "M{x0:.1},{y0:.1} C{:.1},{y0:.1} {:.1},{y1:.1} {x1:.1},{y1:.1}",
                    x0 + dx,
                    x1 - dx
                ),
                f64::midpoint(x0, x1),
                f64::midpoint(y0, y1) - 6.0,
            )
        } else {
            // Back or same-column edge: an arc below the boxes.
            let (x0, y0) = (from.x() + NODE_W / 2.0, from.y() + NODE_H);
            let (x1, y1) = (to.x() + NODE_W / 2.0 + 10.0, to.y() + NODE_H);
            let low = y0.max(y1) + 50.0;
            (
                format!("M{x0:.1},{y0:.1} C{x0:.1},{low:.1} {x1:.1},{low:.1} {x1:.1},{y1:.1}"),
                f64::midpoint(x0, x1),
                low - 6.0,
            )
        };
        let first = format!("{} · {} req", edge.key.protocol, edge.requests);
        let second = format!(
            "{:.1}% err · p99 {}",
            edge.error_percent(),
            format_duration(edge.percentile_ns(99.0))
        );
        let _ = writeln!(
            out,
            "<g class=\"{class}\"><title>{} → {}: {first}, {second}</title><path d=\"{path}\" marker-end=\"url(#{marker})\"/><text x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g>",
            escape(&edge.key.client),
            escape(&edge.key.server),
            ly - 13.0,
            escape(&first),
            ly,
            escape(&second),
        );
    }
    for (name, node) in &nodes {
        let class = if node.peer { "node peer" } else { "node" };
        let _ = writeln!(
            out,
            "<g class=\"{class}\"><title>{}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g>",
            escape(name),
            node.x(),
            node.y(),
            node.x() + NODE_W / 2.0,
            node.y() + NODE_H / 2.0 + 5.0,
            escape(&super::super::waterfall::truncate(name, 22)),
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The same edges as a table.
pub fn table(edges: &[Edge]) -> String {
    let mut out = String::from(
        "<table class=\"edges\"><thead><tr><th>Client</th><th>Server</th><th>Protocol</th>\
         <th>Requests</th><th>Errors</th><th>p50</th><th>p99</th></tr></thead><tbody>\n",
    );
    for edge in edges {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&edge.key.client),
            escape(&edge.key.server),
            escape(&edge.key.protocol),
            edge.requests,
            edge.error_percent(),
            format_duration(edge.percentile_ns(50.0)),
            format_duration(edge.percentile_ns(99.0)),
        );
    }
    out.push_str("</tbody></table>\n");
    out
}
