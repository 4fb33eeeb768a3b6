//! HPACK (RFC 7541): decoding header blocks, one decoder per direction.
//!
//! The decoder also works on a connection caught mid-stream, whose dynamic
//! table was filled before we looked. The rule:
//!
//! - The dynamic table is a list, newest entry first, and index 62 always
//!   names the newest entry. Entries we saw being added are therefore the
//!   first ones of the real table, at the indexes we give them, however
//!   many unknown entries sit behind them.
//! - While *unsynchronised* (the connection was caught mid-stream, or a
//!   header block was lost), an index past the entries we hold refers to an
//!   entry we never saw: that field is reported with an unknown name and
//!   value. A literal that names such an entry and asks to be indexed is
//!   still added, with an unknown name, so the indexes stay right.
//! - Losing a header block (a gap, a block too big to keep, a decoding
//!   error) drops the whole table: the entries it added are unknown, so
//!   every index after it is off by an unknown amount.
//! - A dynamic table size update to 0 empties the real table: from then on
//!   the decoder is synchronised again. Nothing else resynchronises it.
//! - Keeping an entry longer than the encoder does is harmless (an encoder
//!   never refers to an entry it evicted, and the newer entries keep their
//!   indexes), so the table is evicted no earlier than the largest size the
//!   encoder may be using: the last size update or the decoder's advertised
//!   `SETTINGS_HEADER_TABLE_SIZE`, whichever is larger, and up to
//!   [`MAX_TABLE_BYTES`] while unsynchronised.
//!
//! While synchronised, an index past the table is corruption: the block is
//! rejected and the decoder loses sync.

mod huffman;
mod table;

use std::borrow::Cow;

use table::{DynamicTable, Entry, STATIC_TABLE};

/// Most dynamic table bytes kept per direction (RFC sizes). An encoder
/// allowed more than this may refer to entries we evicted: those then read
/// as unknown.
pub(super) const MAX_TABLE_BYTES: usize = 64 * 1024;
/// The table size both ends start with (RFC 9113 6.5.2).
const DEFAULT_TABLE_SIZE: usize = 4096;
/// Integers longer than this many continuation bytes (2^28) are garbage.
const MAX_INTEGER_CONTINUATIONS: u32 = 4;

/// A decoded header field; `None` where it came from a table entry we never
/// saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Field<'a> {
    pub name: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Why a header block could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DecodeError {
    /// The block ends inside a representation.
    Truncated,
    IntegerOverflow,
    /// Index 0 is not a valid index (RFC 7541 6.1).
    ZeroIndex,
    /// Past the table while synchronised.
    IndexOutOfRange,
    Huffman,
}

/// The decoding state of one direction of a connection.
#[derive(Debug)]
pub(super) struct Decoder {
    table: DynamicTable,
    /// Every entry the encoder may refer to is in `table` (the connection
    /// was seen from its start and no block was lost).
    synchronised: bool,
    /// Set by the last dynamic table size update.
    size_update: usize,
    /// `SETTINGS_HEADER_TABLE_SIZE` last advertised by the decoding end.
    settings_limit: usize,
    /// Whether any block was decoded, which rules out starting synchronised.
    decoded_any: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder that knows nothing yet: unsynchronised until told the
    /// connection was seen from its start.
    pub fn new() -> Self {
        Decoder {
            table: DynamicTable::default(),
            synchronised: false,
            size_update: DEFAULT_TABLE_SIZE,
            settings_limit: DEFAULT_TABLE_SIZE,
            decoded_any: false,
        }
    }

    pub fn is_synchronised(&self) -> bool {
        self.synchronised
    }

    /// The connection's start was seen, so the encoder's table started
    /// empty. No effect once a block was decoded without that knowledge.
    pub fn start_synchronised(&mut self) {
        if !self.decoded_any {
            self.synchronised = true;
        }
    }

    /// A header block went missing: what it added is unknown.
    pub fn lose_sync(&mut self) {
        self.decoded_any = true;
        self.table.clear();
        self.synchronised = false;
    }

    /// The decoding end advertised `SETTINGS_HEADER_TABLE_SIZE`.
    pub fn set_settings_limit(&mut self, limit: u32) {
        self.settings_limit = usize::try_from(limit).unwrap_or(usize::MAX);
    }

    /// Decodes one complete header block, handing each field to `visit`.
    /// On error the fields already visited may be wrong (the block may be
    /// garbage) and the decoder has lost sync.
    pub fn decode<F>(&mut self, block: &[u8], mut visit: F) -> Result<(), DecodeError>
    where
        F: FnMut(Field<'_>),
    {
        self.decoded_any = true;
        let mut input = block;
        let mut scratch = Scratch::default();
        while !input.is_empty() {
            if let Err(error) = self.representation(&mut input, &mut scratch, &mut visit) {
                self.lose_sync();
                return Err(error);
            }
        }
        Ok(())
    }

    fn representation<F>(
        &mut self,
        input: &mut &[u8],
        scratch: &mut Scratch,
        visit: &mut F,
    ) -> Result<(), DecodeError>
    where
        F: FnMut(Field<'_>),
    {
        let first = input.first().copied().ok_or(DecodeError::Truncated)?;
        if first & 0x80 != 0 {
            // Indexed header field (6.1).
            let index = integer(input, 7)?;
            visit(self.lookup(index)?.as_field());
        } else if first & 0xc0 == 0x40 {
            // Literal with incremental indexing (6.2.1).
            let (name, value) = self.literal(input, 6, scratch)?;
            visit(Field {
                name: name.as_deref(),
                value: Some(value),
            });
            let entry = Entry {
                name: name.map(|n| n.into_owned().into_boxed_slice()),
                value: value.into(),
            };
            let bound = self.table_bound();
            if self.table.insert(entry, bound) {
                self.note_eviction();
            }
        } else if first & 0xe0 == 0x20 {
            // Dynamic table size update (6.3).
            let size = integer(input, 5)?;
            self.size_update = size;
            if size == 0 {
                // The encoder's table is now empty, like ours.
                self.table.clear();
                self.synchronised = true;
            } else if self.table.evict(self.table_bound()) {
                self.note_eviction();
            }
        } else {
            // Literal without indexing (6.2.2) or never indexed (6.2.3).
            let (name, value) = self.literal(input, 4, scratch)?;
            visit(Field {
                name: name.as_deref(),
                value: Some(value),
            });
        }
        Ok(())
    }

    /// The name and value of a literal representation whose name index has
    /// a `prefix_bits`-bit prefix. The name is `None` when it refers to an
    /// entry we never saw.
    fn literal<'b: 's, 's>(
        &self,
        input: &mut &'b [u8],
        prefix_bits: u8,
        scratch: &'s mut Scratch,
    ) -> Result<Literal<'s>, DecodeError> {
        let name_index = integer(input, prefix_bits)?;
        let name = if name_index == 0 {
            let raw = string(input)?;
            Some(Cow::Borrowed(text(raw, &mut scratch.name)?))
        } else {
            // Copied: inserting the new entry may evict the one named.
            self.lookup(name_index)?
                .name()
                .map(|n| Cow::Owned(n.to_vec()))
        };
        let value = text(string(input)?, &mut scratch.value)?;
        Ok((name, value))
    }

    /// The entry at `index` (1-based over static then dynamic entries).
    fn lookup(&self, index: usize) -> Result<Lookup<'_>, DecodeError> {
        if index == 0 {
            return Err(DecodeError::ZeroIndex);
        }
        if let Some((name, value)) = STATIC_TABLE.get(index - 1) {
            return Ok(Lookup::Known(name, value));
        }
        let dynamic_index = index - 1 - STATIC_TABLE.len();
        match self.table.get(dynamic_index) {
            Some(entry) => Ok(match &entry.name {
                Some(name) => Lookup::Known(name, &entry.value),
                None => Lookup::ValueOnly(&entry.value),
            }),
            None if self.synchronised => Err(DecodeError::IndexOutOfRange),
            None => Ok(Lookup::Unknown),
        }
    }

    /// Where eviction starts; see the module documentation.
    fn table_bound(&self) -> usize {
        if self.synchronised {
            self.size_update
                .max(self.settings_limit)
                .min(MAX_TABLE_BYTES)
        } else {
            MAX_TABLE_BYTES
        }
    }

    /// An eviction forced by our memory bound rather than the encoder's
    /// size may drop entries the encoder still refers to.
    fn note_eviction(&mut self) {
        if self.size_update.max(self.settings_limit) > MAX_TABLE_BYTES {
            self.synchronised = false;
        }
    }

    #[cfg(test)]
    fn table_len(&self) -> usize {
        self.table.len()
    }

    #[cfg(test)]
    fn table_size(&self) -> usize {
        self.table.size()
    }
}

/// A literal's name (`None`: an entry we never saw) and value.
type Literal<'s> = (Option<Cow<'s, [u8]>>, &'s [u8]);

/// A table entry found by index.
enum Lookup<'a> {
    Known(&'a [u8], &'a [u8]),
    /// Known value, unknown name (an entry added mid-stream).
    ValueOnly(&'a [u8]),
    /// An entry we never saw.
    Unknown,
}

impl<'a> Lookup<'a> {
    fn name(&self) -> Option<&'a [u8]> {
        match *self {
            Lookup::Known(name, _) => Some(name),
            Lookup::ValueOnly(_) | Lookup::Unknown => None,
        }
    }

    fn as_field(&self) -> Field<'a> {
        match *self {
            Lookup::Known(name, value) => Field {
                name: Some(name),
                value: Some(value),
            },
            Lookup::ValueOnly(value) => Field {
                name: None,
                value: Some(value),
            },
            Lookup::Unknown => Field {
                name: None,
                value: None,
            },
        }
    }
}

/// Buffers for Huffman-decoded strings of one representation.
#[derive(Default)]
struct Scratch {
    name: Vec<u8>,
    value: Vec<u8>,
}

/// An integer with an `prefix_bits`-bit prefix (RFC 7541 5.1).
fn integer(input: &mut &[u8], prefix_bits: u8) -> Result<usize, DecodeError> {
    let (&first, rest) = input.split_first().ok_or(DecodeError::Truncated)?;
    *input = rest;
    let max_prefix = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & max_prefix;
    if value < max_prefix {
        return Ok(value);
    }
    for step in 0..=MAX_INTEGER_CONTINUATIONS {
        let (&byte, rest) = input.split_first().ok_or(DecodeError::Truncated)?;
        *input = rest;
        value += usize::from(byte & 0x7f) << (7 * step);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::IntegerOverflow)
}

/// A string literal (RFC 7541 5.2), still Huffman coded if it was.
#[derive(Clone, Copy)]
struct RawString<'a> {
    huffman: bool,
    bytes: &'a [u8],
}

fn string<'a>(input: &mut &'a [u8]) -> Result<RawString<'a>, DecodeError> {
    let huffman = input.first().is_some_and(|b| b & 0x80 != 0);
    let len = integer(input, 7)?;
    let (bytes, rest) = input.split_at_checked(len).ok_or(DecodeError::Truncated)?;
    *input = rest;
    Ok(RawString { huffman, bytes })
}

/// The octets of a string literal, decoded into `scratch` when needed.
fn text<'a>(raw: RawString<'a>, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], DecodeError> {
    if !raw.huffman {
        return Ok(raw.bytes);
    }
    scratch.clear();
    huffman::decode(raw.bytes, scratch).map_err(|_| DecodeError::Huffman)?;
    Ok(scratch.as_slice())
}

#[cfg(test)]
mod tests;
