//! What the linker asks of the connection layer: which server requests a
//! process is serving right now, i.e. which parents may still come.

use crate::connections::{ConnRef, ConnectionTable};

pub trait Observed {
    /// When the oldest server request `pid` has read but not answered
    /// started (`CLOCK_MONOTONIC` ns), if it serves any.
    fn serving_since(&self, pid: u32) -> Option<u64>;
    /// When the unanswered request on server connection `conn` started.
    fn open_request_since(&self, conn: ConnRef) -> Option<u64>;
    /// Whether `pid` makes calls (client requests): if not, none of its
    /// server spans can get a child.
    fn makes_calls(&self, pid: u32) -> bool;
}

impl Observed for ConnectionTable {
    fn serving_since(&self, pid: u32) -> Option<u64> {
        ConnectionTable::serving_since(self, pid)
    }

    fn open_request_since(&self, conn: ConnRef) -> Option<u64> {
        ConnectionTable::open_request_since(self, conn)
    }

    fn makes_calls(&self, pid: u32) -> bool {
        ConnectionTable::makes_calls(self, pid)
    }
}

/// Nothing is being served: every parent that can come has come.
#[cfg(test)]
pub struct Idle;

#[cfg(test)]
impl Observed for Idle {
    fn serving_since(&self, _pid: u32) -> Option<u64> {
        None
    }

    fn open_request_since(&self, _conn: ConnRef) -> Option<u64> {
        None
    }

    /// Every process may: the linker's full path is what the tests see.
    fn makes_calls(&self, _pid: u32) -> bool {
        true
    }
}
