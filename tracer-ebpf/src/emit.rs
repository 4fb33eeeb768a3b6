//! Writing records into the ring buffer: wake-up batching, loss counting and
//! payload copying with lengths the verifier can bound.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::bpf_probe_read_user,
};
use tracer_common::{maps::Counter, DataEvent, MAX_PAYLOAD, SCRATCH_SIZE};

use crate::maps::{config, count, Scratch, EVENTS, SCRATCH};

const HEADER: usize = size_of::<DataEvent>();

/// Wake the reader only once enough is queued: a wake-up per event costs more
/// than the event. User space also polls on a short timer, so a quiet
/// connection's last events are never stranded.
#[inline(always)]
fn wakeup_flags() -> u64 {
    if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= u64::from(config().wakeup_bytes) {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// Copies a fixed-size record into the ring buffer, counting a full buffer.
#[inline(always)]
pub fn output_record<T>(record: &T) {
    if EVENTS.output::<T>(record, wakeup_flags()).is_err() {
        count(Counter::RingBufFull);
    }
}

/// `value & mask`, computed so that the compiler cannot drop the mask: it
/// may prove the value already in range, but the verifier cannot follow
/// that proof and needs to see the mask.
#[inline(always)]
fn verifier_bound(value: usize, mask: usize) -> usize {
    core::hint::black_box(value) & mask
}

/// A data event being assembled in the per-CPU scratch buffer.
pub struct DataBuilder {
    scratch: *mut Scratch,
    /// Payload bytes copied so far.
    pub captured: usize,
    /// Payload bytes this event may carry: the configured cap, at most
    /// [`MAX_PAYLOAD`], and at most what the syscall moved.
    pub limit: usize,
}

impl DataBuilder {
    #[inline(always)]
    pub fn new(moved: usize) -> Option<Self> {
        // SAFETY: no preconditions; programs run with migration disabled, so
        // the CPU id stays valid for the whole program run.
        let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() };
        let scratch = SCRATCH.get_ptr_mut(cpu)?;
        let mut limit = config().max_payload as usize;
        if limit > MAX_PAYLOAD {
            limit = MAX_PAYLOAD;
        }
        if limit > moved {
            limit = moved;
        }
        Some(DataBuilder {
            scratch,
            captured: 0,
            limit,
        })
    }

    /// Appends up to `len` bytes from user memory at `src`; returns how many
    /// were taken (0 when the cap is reached or the read failed).
    #[inline(always)]
    pub fn append_user(&mut self, src: u64, len: usize) -> usize {
        if self.captured >= self.limit {
            return 0;
        }
        let mut n = self.limit - self.captured;
        if n > len {
            n = len;
        }
        // Masks the verifier can follow: offset and length each below
        // MAX_PAYLOAD, and the scratch buffer holds twice that after the header.
        let offset = verifier_bound(self.captured, MAX_PAYLOAD - 1);
        let n = verifier_bound(n, (MAX_PAYLOAD - 1) | MAX_PAYLOAD);
        if n == 0 || n > MAX_PAYLOAD {
            return 0;
        }
        // SAFETY: HEADER + offset + n <= SCRATCH_SIZE by the masks above.
        let ret = unsafe {
            let dst = (*self.scratch).bytes.as_mut_ptr().add(HEADER + offset);
            bpf_probe_read_user(dst.cast::<c_void>(), n as u32, src as *const c_void)
        };
        if ret != 0 {
            count(Counter::PayloadReadFailed);
            return 0;
        }
        self.captured += n;
        n
    }

    /// Writes the header and submits the event.
    #[inline(always)]
    pub fn submit(self, mut header: DataEvent) {
        header.captured_len = self.captured as u32;
        if self.captured < header.total_len as usize {
            header.flags |= tracer_common::DATA_FLAG_TRUNCATED;
        }
        let size = HEADER + verifier_bound(self.captured, (MAX_PAYLOAD - 1) | MAX_PAYLOAD);
        if size > SCRATCH_SIZE {
            return;
        }
        // SAFETY: the scratch buffer is at least `size` bytes and per-CPU.
        let record = unsafe {
            let base = (*self.scratch).bytes.as_mut_ptr();
            core::ptr::write_unaligned(base.cast::<DataEvent>(), header);
            core::slice::from_raw_parts(base, size)
        };
        if EVENTS.output::<[u8]>(record, wakeup_flags()).is_err() {
            count(Counter::RingBufFull);
        } else {
            count(Counter::DataEvents);
        }
    }
}

/// A data event whose payload is one contiguous user buffer.
#[inline(always)]
pub fn emit_flat(mut header: DataEvent, buf: u64, moved: u64) {
    let Some(mut data) = DataBuilder::new(moved as usize) else {
        return;
    };
    header.total_len = moved as u32;
    data.append_user(buf, moved as usize);
    data.submit(header);
}
