//! tracer: zero-instrumentation request tracing with eBPF.
//!
//! The pipeline, one module per stage:
//! [`source`] (ring buffer) → [`connections`] (per-connection byte streams) →
//! [`protocols`] (pure parsers) → [`spans`] → [`linking`] (traces across
//! threads and processes) → [`sinks`].
//! [`pipeline`] wires the in-process stages; [`app`] runs a whole session;
//! [`span_kind`] is shared by connections and spans;
//! [`kernel`] loads and steers the eBPF programs; [`report`] reads stored
//! spans back (`tracer report`).

pub mod app;
pub mod cli;
pub mod clock;
pub mod connections;
pub mod kernel;
pub mod linking;
pub mod pipeline;
pub mod process;
pub mod protocols;
pub mod report;
pub mod sinks;
pub mod source;
pub mod span_kind;
pub mod spans;
