//! What traced threads and processes are serving right now: the server
//! requests each thread (in Go, each goroutine) has read and not yet
//! answered, and when each process's oldest unanswered request started.
//! The linking stage's clue for which request a client call was made for
//! comes from here.

use std::collections::VecDeque;

// Looked up on every record: seeded foldhash, much cheaper than SipHash.
use foldhash::HashMap;

use super::{requests::Cause, ConnRef};

/// What reads requests and makes calls: a thread, or in a Go process a
/// goroutine (Go's scheduler moves goroutines between threads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Executor {
    pub pid: u32,
    /// A thread id (unique machine-wide while the thread lives), or a
    /// goroutine's `g` address (unique in its process while it lives).
    pub id: u64,
    pub goroutine: bool,
}

impl Executor {
    pub fn thread(pid: u32, tid: u32) -> Self {
        Executor {
            pid,
            id: u64::from(tid),
            goroutine: false,
        }
    }

    pub fn goroutine(pid: u32, g: u64) -> Self {
        Executor {
            pid,
            id: g,
            goroutine: true,
        }
    }
}

/// Unanswered requests remembered per thread; an event loop rarely has
/// more between reading a request and starting its upstream call.
const MAX_UNCLAIMED: usize = 64;

#[derive(Debug, Default)]
pub struct Activity {
    /// Per executor: the server request it read from last.
    last_read: HashMap<Executor, Cause>,
    /// Per executor: requests it read, not yet answered and not yet
    /// claimed by a client request, oldest first.
    unclaimed: HashMap<Executor, VecDeque<Cause>>,
    /// Per process: server connections with an unanswered request, and
    /// when that request's first byte was read.
    open: HashMap<u32, Vec<(ConnRef, u64)>>,
    /// Per server connection of a Go process: the goroutine that read from
    /// it last.
    goroutine_readers: HashMap<ConnRef, Executor>,
    /// Per goroutine: what its creator claimed when it made it.
    inherited: HashMap<Executor, Cause>,
    // An emptied list in `unclaimed` or `open` stays, as an empty one means
    // the same as none: a busy thread or process would otherwise allocate
    // and free its list on every request. `prune` drops them periodically.
}

impl Activity {
    /// `reader` read request bytes from server connection `conn`.
    pub fn read_request(&mut self, reader: Executor, conn: ConnRef, ts_ns: u64) {
        self.last_read.insert(reader, Cause { conn, at_ns: ts_ns });
        if reader.goroutine {
            self.goroutine_readers.insert(conn, reader);
        }
    }

    /// A new request on server connection `conn`, read at `ts_ns` by
    /// `reader` (`None`: a goroutine that could not be told); `first` when
    /// the connection had no unanswered one.
    pub fn request_opened(
        &mut self,
        reader: Option<Executor>,
        conn: ConnRef,
        ts_ns: u64,
        first: bool,
    ) {
        if first {
            self.open.entry(conn.pid).or_default().push((conn, ts_ns));
        }
        // A goroutine serves one request at a time: its claim is the last
        // one it read. (Go's server also reads ahead a byte from another
        // goroutine, which then ends: a queue would keep the request for
        // that goroutine's `g`, and hand it to the next goroutine reusing it.)
        let Some(reader) = reader.filter(|reader| !reader.goroutine) else {
            return;
        };
        let queue = self.unclaimed.entry(reader).or_default();
        queue.retain(|cause| cause.conn != conn);
        if queue.len() == MAX_UNCLAIMED {
            queue.pop_front();
        }
        queue.push_back(Cause { conn, at_ns: ts_ns });
    }

    /// `caller` starts a client request: what it is for. The oldest
    /// request it read and has neither answered nor made a call for (an
    /// event loop starts upstream calls in the order it read the requests,
    /// also when the connection for one is only ready a loop later); else
    /// the request it read from last (a second call for the same request).
    ///
    /// A goroutine's is the request it read last, while it is still the
    /// goroutine reading that connection: a `g` that read a byte ahead and
    /// ended, reused by another goroutine, claims nothing.
    pub fn claim(&mut self, caller: Executor) -> Option<Cause> {
        if caller.goroutine {
            let reading = self
                .last_read
                .get(&caller)
                .copied()
                .filter(|cause| self.goroutine_readers.get(&cause.conn) == Some(&caller));
            return reading.or_else(|| self.inherited.get(&caller).copied());
        }
        let claimed = self
            .unclaimed
            .get_mut(&caller)
            .and_then(VecDeque::pop_front);
        claimed.or_else(|| self.last_read.get(&caller).copied())
    }

    /// Goroutine `parent` made `child`: a call `child` makes is for what
    /// `parent` served at that moment (a handler's `go f()`), also through
    /// generations. Every goroutine is made this way, so a reused `g`
    /// never keeps its last life's.
    pub fn spawned(&mut self, child: Executor, parent: Executor) {
        match self.claim(parent) {
            Some(cause) => {
                self.inherited.insert(child, cause);
            }
            None => {
                self.inherited.remove(&child);
            }
        }
    }

    /// The request on `conn`, read by `reader`, was answered or ended.
    pub fn request_closed(&mut self, conn: ConnRef, reader: Option<Executor>) {
        if let Some(open) = self.open.get_mut(&conn.pid) {
            open.retain(|(c, _)| *c != conn);
        }
        if let Some(queue) = reader.and_then(|reader| self.unclaimed.get_mut(&reader)) {
            queue.retain(|cause| cause.conn != conn);
        }
    }

    /// The connection ended: forget it, also as the last read of `reader`.
    pub fn connection_closed(&mut self, conn: ConnRef, reader: Option<Executor>) {
        self.request_closed(conn, reader);
        self.goroutine_readers.remove(&conn);
        if let Some(reader) = reader {
            if self
                .last_read
                .get(&reader)
                .is_some_and(|cause| cause.conn == conn)
            {
                self.last_read.remove(&reader);
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
        self.last_read.retain(|reader, _| reader.pid != pid);
        self.unclaimed.retain(|reader, _| reader.pid != pid);
        self.goroutine_readers.retain(|conn, _| conn.pid != pid);
        self.inherited.retain(|goroutine, _| goroutine.pid != pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T7: Executor = Executor {
        pid: 1,
        id: 7,
        goroutine: false,
    };

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
            a.read_request(T7, conn(fd), ts);
            a.request_opened(Some(T7), conn(fd), ts, true);
        }
        assert_eq!(a.serving_since(1), Some(10));
        assert_eq!(
            a.claim(T7),
            Some(Cause {
                conn: conn(5),
                at_ns: 10
            })
        );
        assert_eq!(
            a.claim(T7),
            Some(Cause {
                conn: conn(6),
                at_ns: 20
            })
        );
        assert_eq!(
            a.claim(T7),
            Some(Cause {
                conn: conn(6),
                at_ns: 20
            }),
            "then the last read"
        );
        a.request_closed(conn(5), Some(T7));
        assert_eq!(a.serving_since(1), Some(20));
    }

    #[test]
    fn an_answered_request_is_not_claimed() {
        let mut a = Activity::default();
        a.read_request(T7, conn(5), 10);
        a.request_opened(Some(T7), conn(5), 10, true);
        a.request_closed(conn(5), Some(T7));
        a.read_request(T7, conn(6), 20);
        a.request_opened(Some(T7), conn(6), 20, true);
        assert_eq!(
            a.claim(T7),
            Some(Cause {
                conn: conn(6),
                at_ns: 20
            })
        );
        a.process_exited(1);
        assert_eq!(a.claim(T7), None);
        assert_eq!(a.serving_since(1), None);
    }

    #[test]
    fn a_goroutine_claims_the_request_it_reads_while_it_reads_it() {
        let serve = Executor::goroutine(1, 0x00c0_0001_0000);
        let read_ahead = Executor::goroutine(1, 0x00c0_0002_0000);
        let mut a = Activity::default();
        // The first byte of the request on 5 read ahead by a goroutine that
        // then ends; the rest by the connection's goroutine.
        a.read_request(read_ahead, conn(5), 10);
        a.request_opened(Some(read_ahead), conn(5), 10, true);
        a.read_request(serve, conn(5), 11);
        a.request_opened(Some(serve), conn(6), 12, true);
        assert_eq!(
            a.claim(serve),
            Some(Cause {
                conn: conn(5),
                at_ns: 11
            })
        );
        assert_eq!(a.claim(serve), a.claim(serve), "every call of the request");
        // The ended goroutine's `g`, reused, inherits nothing.
        assert_eq!(a.claim(read_ahead), None);
        assert_eq!(a.serving_since(1), Some(10));
        a.connection_closed(conn(5), Some(serve));
        assert_eq!(a.claim(serve), None);
    }

    #[test]
    fn a_goroutine_made_while_serving_claims_its_makers_request() {
        let serve = Executor::goroutine(1, 0x00c0_0001_0000);
        let child = Executor::goroutine(1, 0x00c0_0002_0000);
        let grandchild = Executor::goroutine(1, 0x00c0_0003_0000);
        let mut a = Activity::default();
        a.read_request(serve, conn(5), 10);
        a.request_opened(Some(serve), conn(5), 10, true);
        a.spawned(child, serve);
        a.spawned(grandchild, child);
        let served = Some(Cause {
            conn: conn(5),
            at_ns: 10,
        });
        assert_eq!(a.claim(child), served);
        assert_eq!(a.claim(grandchild), served);
        // The maker reads its next request: the child's stays its own.
        a.read_request(serve, conn(5), 20);
        assert_eq!(a.claim(child), served);
        // The child's `g`, reused by a goroutine made by one serving nothing.
        let idle = Executor::goroutine(1, 0x00c0_0004_0000);
        a.spawned(child, idle);
        assert_eq!(a.claim(child), None);
    }
}
