//! Traced sockets by address, so a server span can tell whether the other
//! end of its connection is a socket the tracer sees too (and so whether a
//! client span may still come to be its parent).

use std::net::SocketAddr;

// Keyed by addresses peers choose: foldhash is seeded per process.
use foldhash::HashMap;

use super::{AddrPair, ConnKey};

#[derive(Debug, Default)]
pub struct PeerIndex {
    by_addr: HashMap<AddrPair, ConnKey>,
}

impl PeerIndex {
    pub fn insert(&mut self, local: Option<SocketAddr>, remote: Option<SocketAddr>, key: ConnKey) {
        if let (Some(local), Some(remote)) = (local, remote) {
            self.by_addr.insert(AddrPair(local, remote), key);
        }
    }

    pub fn remove(&mut self, local: Option<SocketAddr>, remote: Option<SocketAddr>, key: ConnKey) {
        if let (Some(local), Some(remote)) = (local, remote) {
            // A newer socket may have taken the addresses over.
            if self.by_addr.get(&AddrPair(local, remote)) == Some(&key) {
                self.by_addr.remove(&AddrPair(local, remote));
            }
        }
    }

    /// The traced socket bound to `local` and connected to `remote`.
    pub fn get(&self, local: SocketAddr, remote: SocketAddr) -> Option<ConnKey> {
        self.by_addr.get(&AddrPair(local, remote)).copied()
    }
}
