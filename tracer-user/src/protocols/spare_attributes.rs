//! Attribute vectors of spans the sinks are done with, kept for the next
//! exchanges.
//!
//! Every span carries one vector of attributes. Allocating it per exchange
//! and freeing it per span was a malloc and a free per span, freed in
//! batches too large for glibc's per-thread cache (callgrind on the replay:
//! ~355 of 5,250 instructions per Redis span, ~290 of 12,400 per HTTP
//! span). The pipeline gives the vectors of spent batches back here
//! (see `sinks::batch`), and parsers take their next vector from here.

use super::{Attributes, SPAN_ATTRIBUTES};

/// Room kept at most, in attributes (48 bytes each): 12 MiB, the vectors of
/// about 24,000 Redis or 16,000 HTTP spans, near what one drain of the ring
/// makes at saturation (the replay's 3,328 records of pipelined Redis make
/// 26,624 spans); beyond it vectors are freed. It never holds more than the
/// spans in flight held.
const MAX_KEPT_ROOM: usize = 1 << 18;
/// A vector grown past this (an unusual span) is freed rather than kept.
const MAX_CAPACITY: usize = 32;

/// Emptied attribute vectors waiting for an exchange.
#[derive(Debug, Default)]
pub struct SpareAttributes {
    vectors: Vec<Attributes>,
    /// The vectors' capacities summed.
    room: usize,
}

impl SpareAttributes {
    /// An empty vector with room for `own` attributes of the parser and
    /// those the span stage adds after it.
    pub fn take(&mut self, own: usize) -> Attributes {
        let room = own + SPAN_ATTRIBUTES;
        match self.vectors.pop() {
            Some(mut attributes) => {
                self.room -= attributes.capacity();
                attributes.reserve(room);
                attributes
            }
            None => Vec::with_capacity(room),
        }
    }

    /// Keeps `attributes`' room for a later [`Self::take`] (its values are
    /// dropped now), unless enough are kept already.
    pub fn give_back(&mut self, mut attributes: Attributes) {
        let capacity = attributes.capacity();
        if capacity > 0 && capacity <= MAX_CAPACITY && self.room + capacity <= MAX_KEPT_ROOM {
            attributes.clear();
            self.room += capacity;
            self.vectors.push(attributes);
        }
    }

    /// Vectors waiting.
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::AttrValue;

    #[test]
    fn a_vector_given_back_is_taken_again_emptied_with_its_room() {
        let mut spare = SpareAttributes::default();
        let mut first = spare.take(4);
        assert!(first.capacity() >= 4 + SPAN_ATTRIBUTES);
        first.push(("db.system.name", AttrValue::fixed("redis")));
        first.push(("db.query.text", AttrValue::from("GET ?")));
        let address = first.as_ptr();
        spare.give_back(first);
        assert_eq!(spare.len(), 1);
        let again = spare.take(4);
        assert!(again.is_empty());
        assert_eq!(
            again.as_ptr(),
            address,
            "the same allocation, not a new one"
        );
        assert!(spare.is_empty());
    }

    #[test]
    fn a_small_vector_taken_again_grows_to_the_room_asked() {
        let mut spare = SpareAttributes::default();
        spare.give_back(Vec::with_capacity(2));
        let attributes = spare.take(9);
        assert!(attributes.capacity() >= 9 + SPAN_ATTRIBUTES);
    }

    #[test]
    fn unusual_vectors_and_those_beyond_the_bound_are_freed() {
        let mut spare = SpareAttributes::default();
        spare.give_back(Vec::new());
        spare.give_back(Vec::with_capacity(MAX_CAPACITY + 1));
        assert!(spare.is_empty());
        for _ in 0..MAX_KEPT_ROOM / 8 + 10 {
            spare.give_back(Vec::with_capacity(8));
        }
        assert_eq!(spare.len(), MAX_KEPT_ROOM / 8);
        // Room taken out makes room for more.
        let taken = spare.take(1);
        spare.give_back(Vec::with_capacity(taken.capacity()));
        assert_eq!(spare.len(), MAX_KEPT_ROOM / 8);
    }
}
