//! Types shared by the kernel programs (tracer-ebpf) and user space (tracer-user).
//!
//! Every struct here is `#[repr(C)]` and free of implicit padding so that the
//! bytes the kernel writes into the ring buffer are exactly the bytes user space
//! reads. With the `user` feature the structs also implement `aya::Pod`.
//!
//! Also the one list of the kernel programs ([`programs`]) and of the maps'
//! names ([`maps::names`]).
#![no_std]

pub mod config;
pub mod event;
pub mod maps;
pub mod programs;

pub use config::{IovecWalk, KernelConfig, SocketLookup};
pub use event::*;
