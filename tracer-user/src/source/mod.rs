//! The event source: records from the kernel's ring buffer, decoded in
//! place (no copy, no allocation per event).

mod decode;
mod ring;

pub use decode::{decode, DecodeError, Event};
pub use ring::EventRing;
