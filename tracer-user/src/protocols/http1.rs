//! HTTP/1.x (placeholder, being written).
