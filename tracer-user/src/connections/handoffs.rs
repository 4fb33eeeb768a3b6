//! Go's HTTP client sends a request from another goroutine than the one
//! that made the call: `Transport.roundTrip(req)` runs in the caller (a
//! handler), `req.write` in the connection's `writeLoop` goroutine, which
//! the kernel sees writing. The two calls name the same `*http.Request`
//! (tracer-ebpf `golink.rs`), so the writer's next request counts as the
//! caller's. Nothing found → the writer sends for nobody: no clue, never
//! another caller's (nor the request it inherited when it was made: a
//! pooled connection's writer outlives the call that dialled it).

// Looked up on client requests of Go processes: seeded foldhash.
use foldhash::HashMap;

use tracer_common::{GoCall, GoCallEvent};

/// How long a round trip waits for its request to be written (a dial that
/// never succeeds leaves one behind), and a hand-off for its writer's next
/// request (a writer is handed its caller again with every request).
const KEEP_NS: u64 = 60_000_000_000;

#[derive(Debug, Default)]
pub struct Handoffs {
    /// (pid, `*http.Request`) → the goroutine whose round trip it is,
    /// and when it started.
    round_trips: HashMap<(u32, u64), (u64, u64)>,
    /// (pid, writer goroutine) → the goroutine it writes for (`None`:
    /// unknown), and when it was told.
    writers: HashMap<(u32, u64), (Option<u64>, u64)>,
}

impl Handoffs {
    pub fn on_call(&mut self, event: &GoCallEvent) {
        let (pid, goroutine, request, ts) =
            (event.pid, event.goroutine, event.object, event.timestamp_ns);
        match GoCall::from_u8(event.call) {
            Some(GoCall::RoundTrip) => {
                self.round_trips.insert((pid, request), (goroutine, ts));
            }
            Some(GoCall::RequestWrite) => {
                let caller = self
                    .round_trips
                    .remove(&(pid, request))
                    .map(|(caller, _)| caller);
                self.writers.insert((pid, goroutine), (caller, ts));
            }
            Some(GoCall::Spawn) | None => {}
        }
    }

    /// The goroutine `sender` of `pid` sends for now: itself if it writes
    /// no HTTP client requests, else the caller its last hand-off named
    /// (`None` if none did).
    pub fn caller_of(&self, pid: u32, sender: u64) -> Option<u64> {
        self.writers
            .get(&(pid, sender))
            .map_or(Some(sender), |&(caller, _)| caller)
    }

    pub fn process_exited(&mut self, pid: u32) {
        self.round_trips.retain(|&(p, _), _| p != pid);
        self.writers.retain(|&(p, _), _| p != pid);
    }

    /// Forgets what is older than [`KEEP_NS`] at `now_ns`.
    pub fn prune(&mut self, now_ns: u64) {
        let cutoff = now_ns.saturating_sub(KEEP_NS);
        self.round_trips.retain(|_, &mut (_, ts)| ts >= cutoff);
        self.writers.retain(|_, &mut (_, ts)| ts >= cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::EventKind;

    fn call(call: GoCall, pid: u32, goroutine: u64, request: u64, ts: u64) -> GoCallEvent {
        GoCallEvent {
            kind: EventKind::GoCall as u8,
            call: call as u8,
            _pad: [0; 2],
            pid,
            goroutine,
            object: request,
            timestamp_ns: ts,
        }
    }

    const HANDLER: u64 = 0x00c0_0001_0000;
    const OTHER_HANDLER: u64 = 0x00c0_0002_0000;
    const WRITER: u64 = 0x00c0_0003_0000;

    #[test]
    fn the_writer_writes_for_the_round_trip_of_the_same_request() {
        let mut h = Handoffs::default();
        assert_eq!(h.caller_of(1, WRITER), Some(WRITER));
        h.on_call(&call(GoCall::RoundTrip, 1, HANDLER, 0xa0, 10));
        h.on_call(&call(GoCall::RoundTrip, 1, OTHER_HANDLER, 0xb0, 11));
        h.on_call(&call(GoCall::RequestWrite, 1, WRITER, 0xa0, 12));
        assert_eq!(h.caller_of(1, WRITER), Some(HANDLER));
        // The same connection's next request, for the other handler.
        h.on_call(&call(GoCall::RequestWrite, 1, WRITER, 0xb0, 13));
        assert_eq!(h.caller_of(1, WRITER), Some(OTHER_HANDLER));
        // Another process with the same addresses is another goroutine.
        assert_eq!(h.caller_of(2, WRITER), Some(WRITER));
    }

    #[test]
    fn a_write_without_its_round_trip_is_for_nobody() {
        let mut h = Handoffs::default();
        h.on_call(&call(GoCall::RoundTrip, 1, HANDLER, 0xa0, 10));
        h.on_call(&call(GoCall::RequestWrite, 1, WRITER, 0xa0, 12));
        // A request whose round trip started before the tracer did.
        h.on_call(&call(GoCall::RequestWrite, 1, WRITER, 0xc0, 14));
        assert_eq!(h.caller_of(1, WRITER), None, "not the last caller");
        // The request of another process does not match.
        h.on_call(&call(GoCall::RoundTrip, 2, HANDLER, 0xd0, 15));
        h.on_call(&call(GoCall::RequestWrite, 1, WRITER, 0xd0, 16));
        assert_eq!(h.caller_of(1, WRITER), None);
    }

    #[test]
    fn old_and_exited_entries_are_forgotten() {
        let mut h = Handoffs::default();
        h.on_call(&call(GoCall::RoundTrip, 1, HANDLER, 0xa0, 10));
        h.on_call(&call(GoCall::RequestWrite, 1, WRITER, 0xa0, 12));
        h.on_call(&call(GoCall::RoundTrip, 1, HANDLER, 0xb0, 12));
        h.prune(12 + KEEP_NS);
        assert_eq!(h.caller_of(1, WRITER), Some(HANDLER));
        h.prune(13 + KEEP_NS);
        assert_eq!(h.caller_of(1, WRITER), Some(WRITER));
        assert!(h.round_trips.is_empty());
        h.on_call(&call(GoCall::RoundTrip, 1, HANDLER, 0xa0, 20));
        h.on_call(&call(GoCall::RequestWrite, 1, WRITER, 0xa0, 21));
        h.process_exited(1);
        assert_eq!(h.caller_of(1, WRITER), Some(WRITER));
    }
}
