//! Settings user space hands to the kernel programs before loading them.

/// Written into the `CONFIG` global of the eBPF object at load time.
///
/// aya cannot apply CO-RE relocations to Rust programs, so the offsets of the
/// kernel struct fields the programs read are looked up in the running
/// kernel's BTF by user space and passed here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelConfig {
    /// Payload bytes copied per event, at most [`crate::MAX_PAYLOAD`].
    pub max_payload: u32,
    /// `struct sock_common` field offsets inside `struct sock`.
    pub sock_family: u32,
    pub sock_daddr: u32,
    pub sock_rcv_saddr: u32,
    pub sock_dport: u32,
    pub sock_num: u32,
    pub sock_v6_daddr: u32,
    pub sock_v6_rcv_saddr: u32,
    /// `struct sock::sk_protocol` (a `u16`).
    pub sock_protocol: u32,
    /// `struct task_struct::tgid`.
    pub task_tgid: u32,
    /// Bytes of unread events in the ring buffer above which a submit wakes
    /// the reader; below it, events are batched without a wake-up.
    pub wakeup_bytes: u32,
    pub _pad: u32,
}

impl KernelConfig {
    /// The value compiled into the object; user space always overrides it.
    pub const UNSET: KernelConfig = KernelConfig {
        max_payload: 0,
        sock_family: 0,
        sock_daddr: 0,
        sock_rcv_saddr: 0,
        sock_dport: 0,
        sock_num: 0,
        sock_v6_daddr: 0,
        sock_v6_rcv_saddr: 0,
        sock_protocol: 0,
        task_tgid: 0,
        wakeup_bytes: 0,
        _pad: 0,
    };
}

#[cfg(feature = "user")]
// SAFETY: repr(C), padding-free, valid for any bit pattern.
unsafe impl aya::Pod for KernelConfig {}
