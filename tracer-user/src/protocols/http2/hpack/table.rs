//! The HPACK indexing tables (RFC 7541 section 2.3): the static table and
//! a dynamic table that may hold entries whose name is unknown.

use std::collections::VecDeque;

/// RFC 7541 Appendix A, index 1 first.
pub(super) const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Per-entry overhead the size of a table counts (RFC 7541 4.1).
pub(super) const ENTRY_OVERHEAD: usize = 32;

/// A dynamic table entry. The name is unknown when the entry was added by
/// a literal whose name referred to an entry we never saw (a connection
/// caught mid-stream): the entry still takes its place, so the indexes of
/// the entries around it stay right.
#[derive(Debug)]
pub(super) struct Entry {
    pub name: Option<Box<[u8]>>,
    pub value: Box<[u8]>,
}

impl Entry {
    /// The RFC's size. For an unknown name it is an underestimate, which
    /// only ever keeps an entry longer than the encoder does: harmless, as
    /// an encoder never refers to an entry it evicted.
    fn size(&self) -> usize {
        self.name.as_ref().map_or(0, |n| n.len()) + self.value.len() + ENTRY_OVERHEAD
    }
}

/// The entries we know, newest first: index 62 is the front.
#[derive(Debug, Default)]
pub(super) struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
}

impl DynamicTable {
    pub fn get(&self, dynamic_index: usize) -> Option<&Entry> {
        self.entries.get(dynamic_index)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.size = 0;
    }

    /// Adds an entry, then evicts the oldest ones until the table fits
    /// `max_size`. Returns whether anything was evicted.
    pub fn insert(&mut self, entry: Entry, max_size: usize) -> bool {
        self.size += entry.size();
        self.entries.push_front(entry);
        self.evict(max_size)
    }

    /// Evicts the oldest entries until the table fits `max_size`; returns
    /// whether anything was evicted.
    pub fn evict(&mut self, max_size: usize) -> bool {
        let mut evicted = false;
        while self.size > max_size {
            let Some(oldest) = self.entries.pop_back() else {
                self.size = 0;
                break;
            };
            self.size = self.size.saturating_sub(oldest.size());
            evicted = true;
        }
        evicted
    }
}
