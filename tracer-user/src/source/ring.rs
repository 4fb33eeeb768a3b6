//! Waiting on the kernel's ring buffer.

use std::{io, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};

/// The ring buffer, readable from async code.
///
/// The kernel side wakes the reader only once a batch has queued (see
/// `wakeup_bytes`), so readiness alone could leave a few events waiting on
/// a quiet system: [`EventRing::wait`] also returns after `poll_interval`.
pub struct EventRing {
    fd: AsyncFd<RingBuf<MapData>>,
    poll_interval: Duration,
}

impl EventRing {
    pub fn new(ring: RingBuf<MapData>, poll_interval: Duration) -> io::Result<Self> {
        // SAFETY: the ring buffer's fd stays open as long as `ring`, which the
        // AsyncFd owns and drops after deregistering.
        let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)?;
        Ok(EventRing { fd, poll_interval })
    }

    /// Waits until events may be available: a wake-up or the poll interval.
    pub async fn wait(&mut self) {
        if let Ok(Ok(mut guard)) =
            tokio::time::timeout(self.poll_interval, self.fd.readable_mut()).await
        {
            // Edge-triggered: the caller drains everything before waiting again.
            guard.clear_ready();
        }
    }

    /// Hands up to `max` records to `handle`, in ring order; returns how many.
    pub fn drain(&mut self, max: usize, mut handle: impl FnMut(&[u8])) -> usize {
        let ring = self.fd.get_mut();
        let mut n = 0;
        while n < max {
            let Some(item) = ring.next() else { break };
            handle(&item);
            n += 1;
        }
        n
    }
}
