//! The linker's trees: attaching a span under its parent, and emitting a
//! tree once its trace id is final.

use super::{
    store::{NodeId, State, Waiting},
    Linker, MAX_DEPTH,
};
use crate::spans::{Span, TraceId};

impl Linker {
    /// Makes open `child` a child of `parent`; false if that cannot be.
    pub(super) fn attach(
        &mut self,
        child: NodeId,
        parent: NodeId,
        now_ns: u64,
        out: &mut Vec<Span>,
    ) -> bool {
        if !self
            .store
            .get(child)
            .is_some_and(|n| n.state == State::Open)
        {
            return false;
        }
        // No cycles: the parent's ancestors must not include the child.
        let mut at = Some(parent);
        for _ in 0..MAX_DEPTH {
            match at {
                Some(a) if a == child => return false,
                Some(a) => at = self.store.get(a).and_then(|n| n.parent),
                None => break,
            }
        }
        let Some(parent_node) = self.store.get_mut(parent) else {
            return false;
        };
        let parent_span_id = parent_node.facts.span_id;
        let parent_state = parent_node.state;
        let sibling = parent_node.first_child;
        if !matches!(parent_state, State::Final(_)) {
            parent_node.first_child = Some(child);
        }
        let Some(node) = self.store.get_mut(child) else {
            return false;
        };
        node.parent = Some(parent);
        node.state = State::Attached;
        if !matches!(parent_state, State::Final(_)) {
            node.next_sibling = sibling;
        }
        let waiting = std::mem::replace(&mut node.waiting, Waiting::No);
        let facts = node.facts;
        if let Some(span) = node.span.as_mut() {
            span.parent_span_id = Some(parent_span_id);
        }
        self.unwait(child, waiting, &facts);
        self.stats.linked += 1;
        if let State::Final(trace_id) = parent_state {
            self.finalize(child, trace_id, now_ns, out);
        }
        true
    }

    /// Open `id` gets no parent: it is a root, its trace id is its own.
    pub(super) fn settle(&mut self, id: NodeId, now_ns: u64, out: &mut Vec<Span>) {
        let Some(node) = self.store.get_mut(id) else {
            return;
        };
        if node.state != State::Open {
            return;
        }
        let Some(trace_id) = node.span.as_ref().map(|s| s.trace_id) else {
            return;
        };
        let waiting = std::mem::replace(&mut node.waiting, Waiting::No);
        let facts = node.facts;
        self.unwait(id, waiting, &facts);
        self.finalize(id, trace_id, now_ns, out);
    }

    /// Emits `root` and its held subtree with `trace_id`.
    pub(super) fn finalize(
        &mut self,
        root: NodeId,
        trace_id: TraceId,
        now_ns: u64,
        out: &mut Vec<Span>,
    ) {
        self.stack.clear();
        self.stack.push(root);
        while let Some(id) = self.stack.pop() {
            let Some(node) = self.store.get_mut(id) else {
                continue;
            };
            node.state = State::Final(trace_id);
            if let Some(mut span) = node.span.take() {
                let held_ns = now_ns.saturating_sub(node.arrived_ns);
                self.stats.hold_ns_total += held_ns;
                self.stats.hold_ns_max = self.stats.hold_ns_max.max(held_ns);
                span.trace_id = trace_id;
                out.push(span);
            }
            let mut child = node.first_child;
            while let Some(c) = child {
                self.stack.push(c);
                child = self.store.get(c).and_then(|n| n.next_sibling);
            }
        }
    }

    pub(super) fn top(&self, id: NodeId) -> NodeId {
        let mut top = id;
        for _ in 0..MAX_DEPTH {
            match self.store.get(top).and_then(|n| n.parent) {
                Some(parent) => top = parent,
                None => break,
            }
        }
        top
    }
}
