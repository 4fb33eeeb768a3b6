//! What the linking stage needs to know about a span beyond what sinks
//! see: which connection and which request of it the span was, and which
//! thread sent that request. Built beside the [`Span`](super::Span), handed
//! to the linker with it and kept in the linker's own bookkeeping: sinks
//! never see it.

use std::net::SocketAddr;

use crate::connections::{ConnRef, Sender};

#[derive(Clone, Copy, Debug, Default)]
pub struct LinkKeys {
    /// The connection the exchange happened on.
    pub conn: ConnRef,
    /// The exchange's place on its connection, from 0; both traced ends of
    /// a connection count alike.
    pub seq: u64,
    /// `CLOCK_MONOTONIC` ns of the request's first byte and the response's
    /// last one: egress is stamped at syscall entry and ingress at exit, so
    /// a callee's times lie within its caller's, also across processes.
    pub start_ns: u64,
    pub end_ns: u64,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// The thread that sent the request, and what it was serving then.
    pub sender: Option<Sender>,
    /// A server span whose client end is a traced, parsed socket: a client
    /// span from it may become this span's parent.
    pub peer_traced: bool,
    /// The process runs goroutines (Go), which move between threads: a
    /// shared thread says nothing of which request a call is for.
    pub goroutines: bool,
}
