//! Traced sockets by address, so a server span can tell whether the other
//! end of its connection is a socket the tracer sees too (and so whether a
//! client span may still come to be its parent).

use std::{collections::VecDeque, net::SocketAddr};

// Keyed by addresses peers choose: foldhash is seeded per process.
use foldhash::HashMap;

use super::{AddrPair, ConnKey};

/// How long a traced socket that closed still counts as the other end of
/// its addresses. The client may read the response and close before the
/// server's write returns and its span is built: without this grace that
/// server span would take its caller for untraced and be final at once.
const CLOSED_GRACE_NS: u64 = 1_000_000_000;

/// Closed sockets remembered at most (oldest forgotten first): bounds the
/// memory under connection churn whatever the rate.
const MAX_RECENTLY_CLOSED: usize = 1 << 16;

#[derive(Debug, Default)]
pub struct PeerIndex {
    by_addr: HashMap<AddrPair, ConnKey>,
    /// Traced sockets (that spoke a known protocol) closed lately, and
    /// when; `closing` holds the same in order of closing.
    recently_closed: HashMap<AddrPair, u64>,
    closing: VecDeque<(u64, AddrPair)>,
}

impl PeerIndex {
    pub fn insert(&mut self, local: Option<SocketAddr>, remote: Option<SocketAddr>, key: ConnKey) {
        if let (Some(local), Some(remote)) = (local, remote) {
            self.by_addr.insert(AddrPair(local, remote), key);
        }
    }

    /// `key`'s socket is gone; if it `closed` at a time, it still counts as
    /// a traced peer for a little longer.
    pub fn remove(
        &mut self,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        key: ConnKey,
        closed: Option<u64>,
    ) {
        let (Some(local), Some(remote)) = (local, remote) else {
            return;
        };
        let pair = AddrPair(local, remote);
        // A newer socket may have taken the addresses over.
        if self.by_addr.get(&pair) != Some(&key) {
            return;
        }
        self.by_addr.remove(&pair);
        if let Some(ts_ns) = closed {
            self.forget_closed_before(ts_ns.saturating_sub(CLOSED_GRACE_NS));
            if self.closing.len() >= MAX_RECENTLY_CLOSED {
                self.forget_oldest();
            }
            self.recently_closed.insert(pair, ts_ns);
            self.closing.push_back((ts_ns, pair));
        }
    }

    /// The traced socket bound to `local` and connected to `remote`.
    pub fn get(&self, local: SocketAddr, remote: SocketAddr) -> Option<ConnKey> {
        self.by_addr.get(&AddrPair(local, remote)).copied()
    }

    /// Whether a traced socket bound to `local` and connected to `remote`
    /// closed lately.
    pub fn closed_lately(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        !self.recently_closed.is_empty()
            && self.recently_closed.contains_key(&AddrPair(local, remote))
    }

    fn forget_closed_before(&mut self, cutoff_ns: u64) {
        while self.closing.front().is_some_and(|&(ts, _)| ts < cutoff_ns) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((ts, pair)) = self.closing.pop_front() {
            // The same addresses may have closed again since.
            if self.recently_closed.get(&pair) == Some(&ts) {
                self.recently_closed.remove(&pair);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
    }

    const KEY: ConnKey = ConnKey { pid: 7, fd: 3 };

    #[test]
    fn a_closed_traced_socket_counts_for_a_second() {
        let mut peers = PeerIndex::default();
        peers.insert(Some(addr(40000)), Some(addr(80)), KEY);
        peers.remove(Some(addr(40000)), Some(addr(80)), KEY, Some(10_000_000_000));
        let (local, remote) = (addr(40000), addr(80));
        assert_eq!(peers.get(local, remote), None);
        assert!(peers.closed_lately(local, remote));
        // Another socket closing 1 s later pushes it out.
        peers.insert(Some(addr(40001)), Some(addr(80)), KEY);
        peers.remove(Some(addr(40001)), Some(addr(80)), KEY, Some(11_000_000_001));
        assert!(!peers.closed_lately(local, remote));
        assert!(peers.closed_lately(addr(40001), remote));
    }

    #[test]
    fn a_socket_not_remembered_or_taken_over_is_not_recorded() {
        let mut peers = PeerIndex::default();
        peers.insert(Some(addr(40000)), Some(addr(80)), KEY);
        peers.remove(Some(addr(40000)), Some(addr(80)), KEY, None);
        assert!(!peers.closed_lately(addr(40000), addr(80)));
        let newer = ConnKey { pid: 8, fd: 4 };
        peers.insert(Some(addr(40000)), Some(addr(80)), KEY);
        peers.insert(Some(addr(40000)), Some(addr(80)), newer);
        peers.remove(Some(addr(40000)), Some(addr(80)), KEY, Some(1));
        assert_eq!(peers.get(addr(40000), addr(80)), Some(newer));
        assert!(!peers.closed_lately(addr(40000), addr(80)));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut peers = PeerIndex::default();
        for i in 0..u32::try_from(MAX_RECENTLY_CLOSED + 10).unwrap() {
            let port = addr((i % 60000) as u16 + 1);
            let key = ConnKey { pid: i, fd: 3 };
            peers.insert(Some(port), Some(addr(80)), key);
            peers.remove(Some(port), Some(addr(80)), key, Some(5));
        }
        assert!(peers.closing.len() <= MAX_RECENTLY_CLOSED);
        assert!(peers.recently_closed.len() <= MAX_RECENTLY_CLOSED);
    }
}
