//! What traced threads and processes are serving right now: the server
//! requests each thread has read and not yet answered, and when each
//! process's oldest unanswered request started. The linking stage's clue
//! for which request a client call was made for comes from here.

use std::collections::VecDeque;

// Looked up on every record: seeded foldhash, much cheaper than SipHash.
use foldhash::HashMap;

use super::{requests::Cause, ConnRef};

/// Unanswered requests remembered per thread; an event loop rarely has
/// more between reading a request and starting its upstream call.
const MAX_UNCLAIMED: usize = 64;

#[derive(Debug, Default)]
pub struct Activity {
    /// Per thread id (unique machine-wide while the thread lives): the
    /// server request it read from last.
    last_read: HashMap<u32, Cause>,
    /// Per thread id: requests it read, not yet answered and not yet
    /// claimed by a client request, oldest first.
    unclaimed: HashMap<u32, VecDeque<Cause>>,
    /// Per process: server connections with an unanswered request, and
    /// when that request's first byte was read.
    open: HashMap<u32, Vec<(ConnRef, u64)>>,
    // An emptied list in `unclaimed` or `open` stays, as an empty one means
    // the same as none: a busy thread or process would otherwise allocate
    // and free its list on every request. `prune` drops them periodically.
}

impl Activity {
    /// Thread `tid` read request bytes from server connection `conn`.
    pub fn read_request(&mut self, tid: u32, conn: ConnRef, ts_ns: u64) {
        self.last_read.insert(tid, Cause { conn, at_ns: ts_ns });
    }

    /// A new request on server connection `conn`, read by `tid` at `ts_ns`;
    /// `first` when the connection had no unanswered one.
    pub fn request_opened(&mut self, tid: u32, conn: ConnRef, ts_ns: u64, first: bool) {
        if first {
            self.open.entry(conn.pid).or_default().push((conn, ts_ns));
        }
        let queue = self.unclaimed.entry(tid).or_default();
        queue.retain(|cause| cause.conn != conn);
        if queue.len() == MAX_UNCLAIMED {
            queue.pop_front();
        }
        queue.push_back(Cause { conn, at_ns: ts_ns });
    }

    /// Thread `tid` starts a client request: what it is for. The oldest
    /// request the thread read and has neither answered nor made a call
    /// for (an event loop starts upstream calls in the order it read the
    /// requests, also when the connection for one is only ready a loop
    /// later); else the request it read from last (a second call for the
    /// same request).
    pub fn claim(&mut self, tid: u32) -> Option<Cause> {
        let claimed = self.unclaimed.get_mut(&tid).and_then(VecDeque::pop_front);
        claimed.or_else(|| self.last_read.get(&tid).copied())
    }

    /// The request on `conn`, read by `reader`, was answered or ended.
    pub fn request_closed(&mut self, conn: ConnRef, reader: Option<u32>) {
        if let Some(open) = self.open.get_mut(&conn.pid) {
            open.retain(|(c, _)| *c != conn);
        }
        if let Some(queue) = reader.and_then(|tid| self.unclaimed.get_mut(&tid)) {
            queue.retain(|cause| cause.conn != conn);
        }
    }

    /// The connection ended: forget it, also as the last read of `reader`.
    pub fn connection_closed(&mut self, conn: ConnRef, reader: Option<u32>) {
        self.request_closed(conn, reader);
        if let Some(tid) = reader {
            if self
                .last_read
                .get(&tid)
                .is_some_and(|cause| cause.conn == conn)
            {
                self.last_read.remove(&tid);
            }
        }
    }

    /// When the oldest request `pid` is serving started, if it serves any.
    pub fn serving_since(&self, pid: u32) -> Option<u64> {
        self.open.get(&pid)?.iter().map(|(_, ts)| *ts).min()
    }

    /// Drops the emptied lists (kept meanwhile for reuse), so threads and
    /// processes that stopped serving leave nothing behind.
    pub fn prune(&mut self) {
        self.unclaimed.retain(|_, queue| !queue.is_empty());
        self.open.retain(|_, open| !open.is_empty());
    }

    /// A process exited: its threads and requests are gone.
    pub fn process_exited(&mut self, pid: u32) {
        self.open.remove(&pid);
        self.last_read.retain(|_, cause| cause.conn.pid != pid);
        self.unclaimed.retain(|_, queue| {
            queue.retain(|cause| cause.conn.pid != pid);
            !queue.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(fd: u32) -> ConnRef {
        ConnRef {
            pid: 1,
            fd,
            sock: 1,
        }
    }

    #[test]
    fn calls_claim_requests_in_the_order_they_were_read() {
        let mut a = Activity::default();
        for (fd, ts) in [(5, 10), (6, 20)] {
            a.read_request(7, conn(fd), ts);
            a.request_opened(7, conn(fd), ts, true);
        }
        assert_eq!(a.serving_since(1), Some(10));
        assert_eq!(
            a.claim(7),
            Some(Cause {
                conn: conn(5),
                at_ns: 10
            })
        );
        assert_eq!(
            a.claim(7),
            Some(Cause {
                conn: conn(6),
                at_ns: 20
            })
        );
        assert_eq!(
            a.claim(7),
            Some(Cause {
                conn: conn(6),
                at_ns: 20
            }),
            "then the last read"
        );
        a.request_closed(conn(5), Some(7));
        assert_eq!(a.serving_since(1), Some(20));
    }

    #[test]
    fn an_answered_request_is_not_claimed() {
        let mut a = Activity::default();
        a.read_request(7, conn(5), 10);
        a.request_opened(7, conn(5), 10, true);
        a.request_closed(conn(5), Some(7));
        a.read_request(7, conn(6), 20);
        a.request_opened(7, conn(6), 20, true);
        assert_eq!(
            a.claim(7),
            Some(Cause {
                conn: conn(6),
                at_ns: 20
            })
        );
        a.process_exited(1);
        assert_eq!(a.claim(7), None);
        assert_eq!(a.serving_since(1), None);
    }
}
