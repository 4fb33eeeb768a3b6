//! The spans the linker knows: held ones (not yet emitted) and, for one
//! window more, the facts of emitted ones that late children may still
//! need. A slab with generation-checked ids, so the indexes can hold plain
//! ids and find out when one went stale.

use crate::{
    connections::{AddrPair, Cause},
    spans::{LinkKeys, Span, SpanId, SpanKind, TraceId},
};

/// Both ends of a connection, as (client, server).
pub type Tuple = AddrPair;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeId {
    index: u32,
    generation: u32,
}

/// What the rules look at; kept after the span itself is emitted.
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    pub kind: SpanKind,
    pub pid: u32,
    pub tid: u32,
    pub span_id: SpanId,
    pub keys: LinkKeys,
    pub tuple: Option<Tuple>,
}

impl Facts {
    pub fn of(span: &Span, keys: LinkKeys) -> Facts {
        let tuple = match (span.kind, keys.local, keys.remote) {
            (SpanKind::Client, Some(local), Some(remote)) => Some(AddrPair(local, remote)),
            (SpanKind::Server, Some(local), Some(remote)) => Some(AddrPair(remote, local)),
            _ => None,
        };
        Facts {
            kind: span.kind,
            pid: span.pid,
            tid: span.tid,
            span_id: span.span_id,
            keys,
            tuple,
        }
    }

    /// The threads the exchange ran on: who sent the request, who finished it.
    pub fn threads(&self) -> [u32; 2] {
        [self.keys.sender.map_or(self.tid, |s| s.tid), self.tid]
    }

    /// What the sending thread of a client request was serving.
    pub fn cause(&self) -> Option<Cause> {
        match self.kind {
            SpanKind::Client => self.keys.sender.and_then(|s| s.cause),
            SpanKind::Server => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Held; whether it has a parent is still open.
    Open,
    /// Held under a parent that is itself held.
    Attached,
    /// Emitted with this trace id.
    Final(TraceId),
}

/// Where an open client span waits for a parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    No,
    /// For the server span of the request its thread read last.
    OnConn,
    /// For the server requests its process is serving to finish.
    Unhinted,
}

#[derive(Debug)]
pub struct Node {
    /// Until emitted.
    pub span: Option<Span>,
    pub facts: Facts,
    pub state: State,
    pub waiting: Waiting,
    /// Paired with a span of the other end of its connection.
    pub paired: bool,
    pub parent: Option<NodeId>,
    pub first_child: Option<NodeId>,
    pub next_sibling: Option<NodeId>,
    /// `CLOCK_MONOTONIC` ns the linker got it.
    pub arrived_ns: u64,
}

impl Node {
    pub fn new(span: Span, facts: Facts, arrived_ns: u64) -> Node {
        Node {
            facts,
            span: Some(span),
            state: State::Open,
            waiting: Waiting::No,
            paired: false,
            parent: None,
            first_child: None,
            next_sibling: None,
            arrived_ns,
        }
    }

    pub fn is_held(&self) -> bool {
        self.span.is_some()
    }
}

struct Slot {
    generation: u32,
    node: Option<Node>,
}

#[derive(Default)]
pub struct Store {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
}

impl Store {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Files `span`, built into its slot (a node is large: not built
    /// first and moved in).
    pub fn insert(&mut self, span: Span, facts: Facts, arrived_ns: u64) -> NodeId {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.node = Some(Node::new(span, facts, arrived_ns));
            return NodeId {
                index,
                generation: slot.generation,
            };
        }
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: 0,
            node: Some(Node::new(span, facts, arrived_ns)),
        });
        NodeId {
            index,
            generation: 0,
        }
    }

    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.slots
            .get(id.index as usize)
            .filter(|slot| slot.generation == id.generation)
            .and_then(|slot| slot.node.as_ref())
    }

    pub fn get_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|slot| slot.generation == id.generation)
            .and_then(|slot| slot.node.as_mut())
    }

    /// Forgets `id`; what the indexes need to let go of it. The node is
    /// dropped in its slot rather than moved out: it is large, and only
    /// these two small fields are wanted.
    pub fn remove(&mut self, id: NodeId) -> Option<(Facts, Waiting)> {
        let slot = self
            .slots
            .get_mut(id.index as usize)
            .filter(|slot| slot.generation == id.generation)?;
        let node = slot.node.as_ref()?;
        let removed = (node.facts, node.waiting);
        slot.node = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.len -= 1;
        Some(removed)
    }

    /// Ids of every held node.
    pub fn held(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            slot.node
                .as_ref()
                .filter(|node| node.is_held())
                .map(|_| NodeId {
                    // As `insert` numbers them.
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    generation: slot.generation,
                })
        })
    }
}
