//! The linking rules as pure predicates over [`Facts`]; the linker decides
//! when to apply them. See docs/linking.md.

use super::store::{Facts, NodeId};

/// `inner` ran within `outer`. Exact on one host: egress is stamped at
/// syscall entry and ingress at exit, so a request is written before it is
/// read and a response written before it is read, whatever the processes.
pub fn contains(outer: &Facts, inner: &Facts) -> bool {
    outer.keys.start_ns <= inner.keys.start_ns && inner.keys.end_ns <= outer.keys.end_ns
}

/// `ts_ns` falls within the span.
pub fn covers(span: &Facts, ts_ns: u64) -> bool {
    span.keys.start_ns <= ts_ns && ts_ns <= span.keys.end_ns
}

fn overlap(a: &Facts, b: &Facts) -> bool {
    a.keys.start_ns <= b.keys.end_ns && b.keys.start_ns <= a.keys.end_ns
}

/// How well a client span and a server span on the same pair of addresses
/// fit as the two ends of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fit {
    No,
    /// The server span lies within the client span.
    Timed,
    /// Same place on the connection (the n-th exchange at both ends) and
    /// overlapping times.
    Exact,
}

impl Fit {
    /// A timed fit proves nothing when some candidates were not looked at.
    pub fn trusted(self, partial: bool) -> Fit {
        if partial && self == Fit::Timed {
            Fit::No
        } else {
            self
        }
    }
}

pub fn fit(client: &Facts, server: &Facts) -> Fit {
    if client.tuple.is_none() || client.tuple != server.tuple {
        Fit::No
    } else if client.keys.seq == server.keys.seq && overlap(client, server) {
        Fit::Exact
    } else if contains(client, server) {
        Fit::Timed
    } else {
        Fit::No
    }
}

/// The one best fit: the only exact one, else the only timed one. Several
/// equally good ones (e.g. pipelined requests on a connection whose counts
/// disagree) give none: never guess.
pub fn best_fit(fits: impl IntoIterator<Item = (NodeId, Fit)>) -> Option<NodeId> {
    let mut best: Option<(NodeId, Fit)> = None;
    let mut tied = false;
    for (id, fit) in fits {
        if fit == Fit::No {
            continue;
        }
        match best {
            Some((_, b)) if b > fit => {}
            Some((_, b)) if b == fit => tied = true,
            _ => {
                best = Some((id, fit));
                tied = false;
            }
        }
    }
    best.filter(|_| !tied).map(|(id, _)| id)
}

/// The parent of a client span with no usable clue among server spans of
/// its process: the only one containing it that shares a thread with it
/// (the thread that read the request, or wrote its response, made the
/// call); failing that the only one containing it at all (a hand-off to
/// another thread). Several: none. In a Go process threads say nothing:
/// only the one containing it at all.
pub fn pick_server<'a>(
    client: &Facts,
    servers: impl IntoIterator<Item = (NodeId, &'a Facts)>,
) -> Option<NodeId> {
    let threads = client.threads();
    let mut same_thread = None;
    let mut same_thread_count = 0;
    let mut any = None;
    let mut any_count = 0;
    for (id, server) in servers {
        if server.pid != client.pid || !contains(server, client) {
            continue;
        }
        any = Some(id);
        any_count += 1;
        if !client.keys.goroutines && server.threads().iter().any(|t| threads.contains(t)) {
            same_thread = Some(id);
            same_thread_count += 1;
        }
    }
    match (same_thread_count, any_count) {
        (1, _) => same_thread,
        (0, 1) => any,
        _ => None,
    }
}
