//! A cursor over a binary message that fails softly at the end: the part
//! of the MySQL and PostgreSQL readers that does not depend on the wire
//! format's byte order or integer encodings.

/// Every read returns `None` once the bytes run out, leaving the cursor
/// where it was only as far as the read got.
#[derive(Clone, Copy)]
pub struct ByteCursor<'a> {
    rest: &'a [u8],
}

impl<'a> ByteCursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        ByteCursor { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let taken = self.rest.get(..len)?;
        self.rest = self.rest.get(len..)?;
        Some(taken)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1)?.first().copied()
    }

    /// The next `N` bytes, for the caller to decode in its byte order.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// A NUL-terminated string, without its NUL.
    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        let len = self.rest.iter().position(|&b| b == 0)?;
        let text = self.bytes(len)?;
        self.bytes(1)?;
        Some(text)
    }
}
