//! MySQL (being written).
