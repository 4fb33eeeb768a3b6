//! Attribute text that is usually not the span's own: a fixed word
//! (`http`, `1.1`, `GET`) or a string many spans of a connection share (an
//! address). Copying those into a new `String` for every span was a good
//! part of the per-span allocations.

use std::{fmt, ops::Deref, sync::Arc};

/// A string attribute value; compares, hashes and prints as its text,
/// whichever way it is held.
#[derive(Clone)]
pub enum SharedStr {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
    /// Short text held in place: no allocation, and nothing for the sink
    /// thread that drops the span to free.
    Inline(InlineStr),
}

/// Longest text [`SharedStr::Inline`] holds: the enum stays the size of
/// the `String` variant with its tag.
pub const INLINE_MAX: usize = 30;

/// Up to [`INLINE_MAX`] bytes of UTF-8, always copied whole from a `str`.
#[derive(Clone, Copy)]
pub struct InlineStr {
    len: u8,
    bytes: [u8; INLINE_MAX],
}

impl InlineStr {
    /// `parts` one after the other, if they fit.
    fn joined(parts: &[&str]) -> Option<InlineStr> {
        let mut inline = InlineStr {
            len: 0,
            bytes: [0; INLINE_MAX],
        };
        let mut at = 0;
        for part in parts {
            let end = at + part.len();
            inline
                .bytes
                .get_mut(at..end)?
                .copy_from_slice(part.as_bytes());
            at = end;
        }
        inline.len = u8::try_from(at).ok()?;
        Some(inline)
    }

    fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // SAFETY: `bytes` is the concatenation of whole `str`s (see
        // `joined`, the only constructor), so it is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

impl SharedStr {
    pub fn as_str(&self) -> &str {
        match self {
            SharedStr::Static(s) => s,
            SharedStr::Shared(s) => s,
            SharedStr::Owned(s) => s,
            SharedStr::Inline(s) => s.as_str(),
        }
    }

    /// A copy of `text`: in place when short, else on the heap.
    pub fn copied(text: &str) -> SharedStr {
        SharedStr::joined(&[text])
    }

    /// `parts` one after the other, copied: in place when short, else on
    /// the heap (one allocation).
    pub fn joined(parts: &[&str]) -> SharedStr {
        match InlineStr::joined(parts) {
            Some(inline) => SharedStr::Inline(inline),
            None => SharedStr::Owned(parts.concat()),
        }
    }
}

impl Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for SharedStr {}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}
impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for SharedStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// As a `String` would print, so debug output does not depend on how the
/// text is held.
impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        SharedStr::Owned(s)
    }
}
impl From<&'static str> for SharedStr {
    fn from(s: &'static str) -> Self {
        SharedStr::Static(s)
    }
}
impl From<Arc<str>> for SharedStr {
    fn from(s: Arc<str>) -> Self {
        SharedStr::Shared(s)
    }
}
impl From<SharedStr> for String {
    fn from(s: SharedStr) -> Self {
        match s {
            SharedStr::Owned(s) => s,
            other => other.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_and_printed_by_text_alone() {
        let held = [
            SharedStr::Static("GET"),
            SharedStr::Shared(Arc::from("GET")),
            SharedStr::Owned("GET".to_owned()),
            SharedStr::copied("GET"),
            SharedStr::joined(&["G", "", "ET"]),
        ];
        for a in &held {
            assert_eq!(format!("{a:?}"), format!("{:?}", "GET"));
            assert_eq!(a.to_string(), "GET");
            for b in &held {
                assert_eq!(a, b);
            }
        }
        assert_ne!(SharedStr::Static("GET"), SharedStr::Static("PUT"));
    }

    #[test]
    fn short_text_is_held_in_place_and_long_text_on_the_heap() {
        assert_eq!(size_of::<SharedStr>(), 32);
        let fits = "GET /api/v1/orders/12345/items"; // 30 bytes
        assert_eq!(fits.len(), INLINE_MAX);
        assert!(matches!(SharedStr::copied(fits), SharedStr::Inline(_)));
        assert_eq!(SharedStr::copied(fits), fits);
        let long = "GET /api/v1/orders/12345/items/";
        assert!(matches!(SharedStr::copied(long), SharedStr::Owned(_)));
        assert_eq!(SharedStr::copied(long), long);
        let joined = SharedStr::joined(&["GET", " ", "/ünïcödé"]);
        assert!(matches!(joined, SharedStr::Inline(_)));
        assert_eq!(joined, "GET /ünïcödé");
        assert_eq!(
            SharedStr::joined(&["POST", " ", long]).as_str(),
            format!("POST {long}")
        );
        assert_eq!(SharedStr::copied(""), "");
    }
}
