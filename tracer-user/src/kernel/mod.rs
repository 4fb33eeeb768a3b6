//! The kernel side as user space sees it: checks that it can run here,
//! loading and attaching the programs, and the maps that steer them.

pub mod btf;
pub mod capabilities;
pub mod gosymbols;
pub mod gotls;
mod loader;
#[cfg(test)]
mod object_tests;
pub mod openssl;
pub mod preflight;

pub use loader::{AttachedKernel, IovecWalker, KernelError, KernelOptions, LoadTimes, SocketHooks};
