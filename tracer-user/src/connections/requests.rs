//! Who sent the requests on one connection: the thread that moved a
//! request's first byte and the server request that thread had read last.
//! The linking stage uses them to tell which request a process was serving
//! when it made a client call.

use super::ConnRef;

/// The server request a thread read bytes of most recently: on a thread
/// that serves one request at a time, or an event loop that sends its
/// upstream request in the same callback that read the downstream one, the
/// request a client call is made for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cause {
    /// The server connection the thread read from.
    pub conn: ConnRef,
    /// When (`CLOCK_MONOTONIC` ns).
    pub at_ns: u64,
}

/// The thread that sent a request and what it was serving then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sender {
    pub tid: u32,
    /// Only for requests the traced process sent (client connections).
    pub cause: Option<Cause>,
}

/// Changes of sender kept per connection: one per request on a busy
/// keep-alive connection of an event loop, one in all on a connection
/// owned by one thread. Pipelined requests older than this lose their
/// sender (the span is then linked on time and thread alone).
const ENTRIES: usize = 4;

/// The last few changes of sender on a connection's request side, so each
/// exchange can be given the sender in effect when its first byte moved.
/// Fixed-size: copied into every [`Origin`](super::Origin) without allocating.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestLog {
    entries: [Option<(u64, Sender)>; ENTRIES],
    next: usize,
}

impl RequestLog {
    /// Request bytes sent by `sender` moved at `ts_ns`.
    pub fn record(&mut self, ts_ns: u64, sender: Sender) {
        let last = self.entries[(self.next + ENTRIES - 1) % ENTRIES];
        if last.is_some_and(|(_, s)| s == sender) {
            return; // same sender since an earlier timestamp: keep that one
        }
        self.entries[self.next] = Some((ts_ns, sender));
        self.next = (self.next + 1) % ENTRIES;
    }

    /// The sender in effect at `ts_ns`: the latest change at or before it.
    pub fn at(&self, ts_ns: u64) -> Option<Sender> {
        self.entries
            .iter()
            .flatten()
            .filter(|(ts, _)| *ts <= ts_ns)
            .max_by_key(|(ts, _)| *ts)
            .map(|(_, sender)| *sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(tid: u32) -> Sender {
        Sender { tid, cause: None }
    }

    #[test]
    fn the_sender_in_effect_at_a_time() {
        let mut log = RequestLog::default();
        assert_eq!(log.at(5), None);
        log.record(10, sender(1));
        log.record(15, sender(1));
        log.record(20, sender(2));
        assert_eq!(log.at(9), None);
        assert_eq!(log.at(10), Some(sender(1)));
        assert_eq!(log.at(17), Some(sender(1)), "a repeat keeps the first time");
        assert_eq!(log.at(20), Some(sender(2)));
    }

    #[test]
    fn only_the_last_few_changes_are_kept() {
        let mut log = RequestLog::default();
        for tid in 0..6u32 {
            log.record(u64::from(tid) * 10, sender(tid));
        }
        assert_eq!(log.at(15), None, "forgotten");
        assert_eq!(log.at(25), Some(sender(2)));
        assert_eq!(log.at(55), Some(sender(5)));
    }
}
