//! Linking: the spans of one request, across threads and processes, become
//! one trace. Between span building and the sinks.
//!
//! - A client span's parent is the server span its process was serving when
//!   it made the call (same process, time containment, the thread's clue).
//! - A server span's parent is the client span at the other end of its
//!   connection, when that end is traced too (addresses and the n-th
//!   exchange on the connection).
//! - A span is held until its trace id is final: a tree is emitted when its
//!   root can get no parent any more; late children of an emitted span are
//!   emitted at once with its trace id. Nothing waits longer than the
//!   window; nothing is re-written after it is emitted.
//!
//! The rules and their limits: docs/linking.md.

mod index;
mod observed;
mod rules;
mod stats;
mod store;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::VecDeque;

pub use observed::Observed;
pub use stats::LinkStats;

use crate::{
    connections::{Cause, ConnRef},
    spans::{LinkKeys, Span, SpanKind},
};
use index::MultiIndex;
use store::{Facts, Node, NodeId, State, Store, Tuple, Waiting};

/// Longest chain of parents followed; real chains are a few links long.
const MAX_DEPTH: usize = 64;
/// Spans of one connection looked at when pairing or following a clue:
/// the counterpart is among the newest unless more than this many
/// (pipelined) exchanges completed on the connection in between.
const RECENT_ON_CONN: usize = 64;
/// Server spans of one process looked at for a client span without a clue;
/// when there are more, no parent is chosen (one might be left out).
const RECENT_IN_PROCESS: usize = 4096;

#[derive(Clone, Copy, Debug)]
pub struct LinkConfig {
    /// How long a span may wait for a parent (ns); 0 turns linking off.
    pub window_ns: u64,
    /// Most spans known at once: held ones and emitted ones whose facts are
    /// kept for late children.
    pub max_spans: usize,
}

pub struct Linker {
    config: LinkConfig,
    store: Store,
    /// Every node once, in the order it arrived or was last kept on, for
    /// expiry; entries of removed nodes are skipped.
    queue: VecDeque<(u64, NodeId)>,
    servers_by_conn: MultiIndex<ConnRef>,
    servers_by_pid: MultiIndex<u32>,
    servers_by_tuple: MultiIndex<Tuple>,
    clients_by_tuple: MultiIndex<Tuple>,
    /// Client spans waiting for the server span of the request their
    /// thread read last, by that request's connection.
    waiting_on_conn: MultiIndex<ConnRef>,
    /// Client spans waiting for their process to finish the server requests
    /// that might contain them.
    waiting_unhinted: Vec<NodeId>,
    stats: LinkStats,
    // Reused buffers: no allocation per span.
    scratch: Vec<NodeId>,
    stack: Vec<NodeId>,
    conns: Vec<ConnRef>,
}

impl Linker {
    pub fn new(config: LinkConfig) -> Self {
        Linker {
            config,
            store: Store::default(),
            queue: VecDeque::new(),
            servers_by_conn: MultiIndex::default(),
            servers_by_pid: MultiIndex::default(),
            servers_by_tuple: MultiIndex::default(),
            clients_by_tuple: MultiIndex::default(),
            waiting_on_conn: MultiIndex::default(),
            waiting_unhinted: Vec::new(),
            stats: LinkStats::default(),
            scratch: Vec::new(),
            stack: Vec::new(),
            conns: Vec::new(),
        }
    }

    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Spans held now.
    pub fn held(&self) -> usize {
        self.store.held().count()
    }

    /// A span was built at `now_ns`; spans whose trace is now final go to `out`.
    /// `keys` stay in the linker's own bookkeeping; sinks never see them.
    pub fn push(
        &mut self,
        span: Span,
        keys: LinkKeys,
        now_ns: u64,
        observed: &impl Observed,
        out: &mut Vec<Span>,
    ) {
        if self.config.window_ns == 0 {
            out.push(span);
            return;
        }
        if span.kind == SpanKind::Server && !keys.peer_traced && !observed.makes_calls(span.pid) {
            // No parent can come (the caller is not traced) and no child
            // (the process makes no calls): final as it is, and nothing
            // needs its facts later.
            self.stats.unlinkable += 1;
            out.push(span);
            return;
        }
        let facts = Facts::of(&span, keys);
        let id = self.store.insert(span, facts, now_ns);
        self.queue.push_back((now_ns, id));
        self.file(id, &facts);
        match facts.kind {
            SpanKind::Server => self.server_arrived(id, &facts, now_ns, out),
            SpanKind::Client => self.client_arrived(id, &facts, now_ns, observed, out),
        }
        if self.store.get(id).is_some_and(Node::is_held) {
            self.stats.held += 1;
        }
        while self.store.len() > self.config.max_spans {
            let Some((_, oldest)) = self.queue.pop_front() else {
                break;
            };
            self.expire(oldest, now_ns, true, out);
        }
    }

    /// Decides what the passing of time decided: client spans whose possible
    /// parents have all come, and spans whose window ran out.
    pub fn release(&mut self, now_ns: u64, observed: &impl Observed, out: &mut Vec<Span>) {
        if self.config.window_ns == 0 {
            return;
        }
        // The request a client span's thread read last ended without a
        // span (lost response, desync): look for a parent on time alone.
        let mut conns = std::mem::take(&mut self.conns);
        self.waiting_on_conn.keys_into(&mut conns);
        for &conn in &conns {
            let mut ids = std::mem::take(&mut self.scratch);
            self.waiting_on_conn.copy_into(conn, &mut ids);
            for &id in &ids {
                let Some(cause) = self.store.get(id).and_then(|n| n.facts.cause()) else {
                    self.waiting_on_conn.remove(conn, id);
                    continue;
                };
                if observed
                    .open_request_since(conn)
                    .is_none_or(|since| since > cause.at_ns)
                {
                    self.waiting_on_conn.remove(conn, id);
                    if let Some(node) = self.store.get_mut(id) {
                        node.waiting = Waiting::No;
                    }
                    self.decide_unhinted(id, now_ns, observed, out);
                }
            }
            self.scratch = ids;
        }
        self.conns = conns;

        let waiting = std::mem::take(&mut self.waiting_unhinted);
        for &id in &waiting {
            let Some(node) = self.store.get_mut(id) else {
                continue;
            };
            if node.state != State::Open || node.waiting != Waiting::Unhinted {
                continue;
            }
            node.waiting = Waiting::No;
            self.decide_unhinted(id, now_ns, observed, out);
        }
        // decide_unhinted refiled the undecided ones; reuse the buffer.
        let mut waiting = waiting;
        waiting.clear();
        waiting.append(&mut self.waiting_unhinted);
        self.waiting_unhinted = waiting;

        while let Some(&(since, id)) = self.queue.front() {
            if since.saturating_add(self.config.window_ns) > now_ns {
                break;
            }
            self.queue.pop_front();
            self.expire(id, now_ns, false, out);
        }
    }

    /// Drops the indexes' emptied lists (kept meanwhile for reuse).
    pub fn prune(&mut self) {
        self.servers_by_conn.prune();
        self.servers_by_pid.prune();
        self.servers_by_tuple.prune();
        self.clients_by_tuple.prune();
        self.waiting_on_conn.prune();
    }

    /// Emits everything held (at exit), each tree as it stands.
    pub fn flush(&mut self, now_ns: u64, out: &mut Vec<Span>) {
        let held: Vec<NodeId> = self.store.held().collect();
        for id in held {
            if self.store.get(id).is_some_and(Node::is_held) {
                let top = self.top(id);
                self.settle(top, now_ns, out);
            }
        }
    }

    fn file(&mut self, id: NodeId, facts: &Facts) {
        match facts.kind {
            SpanKind::Server => {
                self.servers_by_conn.insert(facts.keys.conn, id);
                self.servers_by_pid.insert(facts.pid, id);
                if let Some(tuple) = facts.tuple {
                    self.servers_by_tuple.insert(tuple, id);
                }
            }
            SpanKind::Client => {
                if let Some(tuple) = facts.tuple {
                    self.clients_by_tuple.insert(tuple, id);
                }
            }
        }
    }

    fn remove_node(&mut self, id: NodeId) {
        let Some((facts, waiting)) = self.store.remove(id) else {
            return;
        };
        match facts.kind {
            SpanKind::Server => {
                self.servers_by_conn.remove(facts.keys.conn, id);
                self.servers_by_pid.remove(facts.pid, id);
                if let Some(tuple) = facts.tuple {
                    self.servers_by_tuple.remove(tuple, id);
                }
            }
            SpanKind::Client => {
                if let Some(tuple) = facts.tuple {
                    self.clients_by_tuple.remove(tuple, id);
                }
            }
        }
        self.unwait(id, waiting, &facts);
    }

    fn unwait(&mut self, id: NodeId, waiting: Waiting, facts: &Facts) {
        if waiting == Waiting::OnConn {
            if let Some(cause) = facts.cause() {
                self.waiting_on_conn.remove(cause.conn, id);
            }
        }
        // `waiting_unhinted` is cleaned lazily by `release`.
    }

    fn server_arrived(&mut self, id: NodeId, facts: &Facts, now_ns: u64, out: &mut Vec<Span>) {
        // Client spans whose thread read this very request.
        let mut ids = std::mem::take(&mut self.scratch);
        self.waiting_on_conn.copy_into(facts.keys.conn, &mut ids);
        for &client in &ids {
            let Some(node) = self.store.get_mut(client) else {
                continue;
            };
            let Some(cause) = node.facts.cause() else {
                continue;
            };
            if !rules::covers(facts, cause.at_ns) {
                continue;
            }
            let client_facts = node.facts;
            node.waiting = Waiting::No;
            self.waiting_on_conn.remove(facts.keys.conn, client);
            if !(rules::contains(facts, &client_facts) && self.attach(client, id, now_ns, out)) {
                // A stale clue: the thread has served this request already.
                self.wait_unhinted(client);
            }
        }
        // Its own parent: the client span at the other end of the connection.
        if let Some(tuple) = facts.tuple {
            let partial = self
                .clients_by_tuple
                .copy_recent_into(tuple, RECENT_ON_CONN, &mut ids);
            let store = &self.store;
            let parent = rules::best_fit(ids.iter().filter_map(|&client| {
                let node = store.get(client).filter(|n| !n.paired)?;
                Some((client, rules::fit(&node.facts, facts).trusted(partial)))
            }));
            if let Some(parent) = parent {
                self.pair(id, parent, now_ns, out);
            }
        }
        self.scratch = ids;
        let open = self.store.get(id).is_some_and(|n| n.state == State::Open);
        if open && !facts.keys.peer_traced {
            // The caller is not traced: no parent can come.
            self.settle(id, now_ns, out);
        }
    }

    fn client_arrived(
        &mut self,
        id: NodeId,
        facts: &Facts,
        now_ns: u64,
        observed: &impl Observed,
        out: &mut Vec<Span>,
    ) {
        // Its child at the other end, if that came first.
        if let Some(tuple) = facts.tuple {
            let mut ids = std::mem::take(&mut self.scratch);
            let partial = self
                .servers_by_tuple
                .copy_recent_into(tuple, RECENT_ON_CONN, &mut ids);
            let store = &self.store;
            let child = rules::best_fit(ids.iter().filter_map(|&server| {
                let node = store
                    .get(server)
                    .filter(|n| n.state == State::Open && !n.paired)?;
                Some((server, rules::fit(facts, &node.facts).trusted(partial)))
            }));
            self.scratch = ids;
            if let Some(child) = child {
                self.pair(child, id, now_ns, out);
            }
        }
        // Its parent in its own process.
        match facts.cause() {
            Some(cause) => self.follow_cause(id, facts, cause, now_ns, observed, out),
            None => self.decide_unhinted(id, now_ns, observed, out),
        }
    }

    /// A cross-process link: `server`'s request came from `client`.
    fn pair(&mut self, server: NodeId, client: NodeId, now_ns: u64, out: &mut Vec<Span>) {
        if self.attach(server, client, now_ns, out) {
            for id in [server, client] {
                if let Some(node) = self.store.get_mut(id) {
                    node.paired = true;
                }
            }
        }
    }

    /// The client span's thread last read a request on `cause.conn`: its
    /// server span is the parent if it contains the client span.
    fn follow_cause(
        &mut self,
        id: NodeId,
        facts: &Facts,
        cause: Cause,
        now_ns: u64,
        observed: &impl Observed,
        out: &mut Vec<Span>,
    ) {
        let mut ids = std::mem::take(&mut self.scratch);
        self.servers_by_conn
            .copy_recent_into(cause.conn, RECENT_ON_CONN, &mut ids);
        let served = ids.iter().rev().copied().find(|&s| {
            self.store
                .get(s)
                .is_some_and(|n| rules::covers(&n.facts, cause.at_ns))
        });
        self.scratch = ids;
        match served {
            Some(server) => {
                let contains = self
                    .store
                    .get(server)
                    .is_some_and(|n| rules::contains(&n.facts, facts));
                let linked = contains && self.attach(id, server, now_ns, out);
                if !linked {
                    if facts.keys.goroutines {
                        // A goroutine's clue is not a guess: the call was
                        // made for that request (e.g. by a goroutine it
                        // started that outlived it), so no other request
                        // is its parent.
                        self.settle(id, now_ns, out);
                    } else {
                        self.decide_unhinted(id, now_ns, observed, out);
                    }
                }
            }
            None if observed
                .open_request_since(cause.conn)
                .is_some_and(|since| since <= cause.at_ns) =>
            {
                self.waiting_on_conn.insert(cause.conn, id);
                if let Some(node) = self.store.get_mut(id) {
                    node.waiting = Waiting::OnConn;
                }
            }
            None => self.decide_unhinted(id, now_ns, observed, out),
        }
    }

    fn wait_unhinted(&mut self, id: NodeId) {
        if let Some(node) = self.store.get_mut(id) {
            if node.state == State::Open && node.waiting != Waiting::Unhinted {
                node.waiting = Waiting::Unhinted;
                self.waiting_unhinted.push(id);
            }
        }
    }

    /// A client span without a usable clue: once every server request of
    /// its process that could contain it has ended, pick among their spans.
    fn decide_unhinted(
        &mut self,
        id: NodeId,
        now_ns: u64,
        observed: &impl Observed,
        out: &mut Vec<Span>,
    ) {
        let Some(node) = self.store.get(id) else {
            return;
        };
        if node.state != State::Open {
            return;
        }
        let facts = node.facts;
        if observed
            .serving_since(facts.pid)
            .is_some_and(|since| since <= facts.keys.start_ns)
        {
            self.wait_unhinted(id);
            return;
        }
        let mut ids = std::mem::take(&mut self.scratch);
        let partial = self
            .servers_by_pid
            .copy_recent_into(facts.pid, RECENT_IN_PROCESS, &mut ids);
        let store = &self.store;
        let parent = if partial {
            None
        } else {
            rules::pick_server(
                &facts,
                ids.iter()
                    .filter_map(|&s| store.get(s).map(|n| (s, &n.facts))),
            )
        };
        self.scratch = ids;
        let linked = parent.is_some_and(|parent| self.attach(id, parent, now_ns, out));
        if !linked {
            self.settle(id, now_ns, out);
        }
    }

    /// `id`'s time is up: a held node's tree is emitted as it stands (its
    /// facts kept one window more for late children, unless over the
    /// limit); an emitted node is forgotten.
    fn expire(&mut self, id: NodeId, now_ns: u64, over_limit: bool, out: &mut Vec<Span>) {
        let Some(node) = self.store.get(id) else {
            return;
        };
        if node.is_held() {
            let top = self.top(id);
            self.settle(top, now_ns, out);
            self.stats.expired += 1;
            if over_limit {
                self.stats.over_limit += 1;
            } else {
                self.queue.push_back((now_ns, id));
                return;
            }
        }
        self.remove_node(id);
    }
}
