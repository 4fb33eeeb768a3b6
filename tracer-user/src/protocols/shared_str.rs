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
}

impl SharedStr {
    pub fn as_str(&self) -> &str {
        match self {
            SharedStr::Static(s) => s,
            SharedStr::Shared(s) => s,
            SharedStr::Owned(s) => s,
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
}
