//! Which protocols exist, how a connection's first bytes select one, and
//! making its parser.

use super::{http1, Parser, ParserOptions, Protocol, Side};

/// The protocol whose client or server bytes `data` starts with, among
/// `enabled`, and which side sent them.
pub fn detect(enabled: &[Protocol], data: &[u8]) -> Option<(Protocol, Side)> {
    enabled.iter().find_map(|&protocol| {
        let side = match protocol {
            Protocol::Http => http1::detect(data),
            _ => None,
        }?;
        Some((protocol, side))
    })
}

/// A fresh parser for `protocol`; `None` for protocols detected but not
/// parsed on their own (gRPC rides on HTTP/2).
pub fn new_parser(protocol: Protocol, options: ParserOptions) -> Option<Box<dyn Parser>> {
    match protocol {
        Protocol::Http => Some(Box::new(http1::Http1Parser::new(options))),
        _ => None,
    }
}

/// Protocols tried when the user restricts nothing.
pub fn default_enabled() -> Vec<Protocol> {
    Protocol::ALL
        .into_iter()
        .filter(|&p| new_parser(p, ParserOptions::default()).is_some())
        .collect()
}
