//! tracer: zero-instrumentation request tracing with eBPF.
//!
//! The pipeline, one module per stage:
//! [`source`] (ring buffer) → [`connections`] (per-connection byte streams) →
//! [`protocols`] (pure parsers) → [`spans`] → [`linking`] → [`sinks`].

pub mod protocols;
pub mod spans;
