//! Node ids filed under a key (a connection, a process, a pair of
//! addresses). Ids are filed and removed mostly in arrival order, so each
//! list is a queue and removal is usually a pop from its front.

use std::{collections::VecDeque, hash::Hash};

// Looked up several times per span; keys include peer-chosen addresses, so
// a seeded hasher, but a much cheaper one than std's SipHash.
use foldhash::HashMap;

use super::store::NodeId;

/// Emptied lists kept for reuse, at most: a key's list is emptied and
/// filled again on every request of a keep-alive connection, and freeing
/// and allocating it each time showed in profiles. Past this many keys an
/// emptied list is dropped at once; `prune` drops the rest periodically.
const KEEP_EMPTIED_UP_TO: usize = 4096;

/// An empty list under a key means the same as no entry.
pub struct MultiIndex<K> {
    map: HashMap<K, VecDeque<NodeId>>,
}

impl<K> Default for MultiIndex<K> {
    fn default() -> Self {
        MultiIndex {
            map: HashMap::default(),
        }
    }
}

impl<K: Hash + Eq + Copy> MultiIndex<K> {
    pub fn insert(&mut self, key: K, id: NodeId) {
        self.map.entry(key).or_default().push_back(id);
    }

    pub fn remove(&mut self, key: K, id: NodeId) {
        let Some(ids) = self.map.get_mut(&key) else {
            return;
        };
        if ids.front() == Some(&id) {
            ids.pop_front();
        } else if let Some(at) = ids.iter().position(|i| *i == id) {
            ids.remove(at);
        }
        if ids.is_empty() && self.map.len() > KEEP_EMPTIED_UP_TO {
            self.map.remove(&key);
        }
    }

    /// Drops the emptied lists kept for reuse.
    pub fn prune(&mut self) {
        self.map.retain(|_, ids| !ids.is_empty());
    }

    /// Copies the ids under `key` into `out` (cleared first), so the caller
    /// may change the index while going through them.
    pub fn copy_into(&self, key: K, out: &mut Vec<NodeId>) {
        out.clear();
        if let Some(ids) = self.map.get(&key) {
            out.extend(ids.iter().copied());
        }
    }

    /// Copies the newest `limit` ids under `key` into `out` (cleared
    /// first, oldest first); true when older ones were left out. Keeps the
    /// work per span bounded on a busy connection or process.
    pub fn copy_recent_into(&self, key: K, limit: usize, out: &mut Vec<NodeId>) -> bool {
        out.clear();
        let Some(ids) = self.map.get(&key) else {
            return false;
        };
        let skip = ids.len().saturating_sub(limit);
        out.extend(ids.iter().skip(skip).copied());
        skip > 0
    }

    /// The keys with ids filed under them.
    pub fn keys_into(&self, out: &mut Vec<K>) {
        out.clear();
        out.extend(
            self.map
                .iter()
                .filter(|(_, ids)| !ids.is_empty())
                .map(|(key, _)| *key),
        );
    }
}
