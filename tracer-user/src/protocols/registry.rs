//! Which protocols exist, how a connection's first bytes select one, and
//! making its parser.

use super::{dns, http1, memcached, mysql, postgresql, redis, Parser, ParserOptions, Protocol, Side};

/// The transport a connection runs on, as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Order of detection on a stream: the most specific first, so that a
/// looser pattern (memcached's lowercase words) cannot claim another
/// protocol's bytes.
const STREAM_ORDER: [Protocol; 6] = [
    Protocol::Http,
    Protocol::Postgresql,
    Protocol::Mysql,
    Protocol::Redis,
    Protocol::Memcached,
    Protocol::Dns,
];

/// The protocol whose client or server bytes `data` starts with, among
/// `enabled`, and which side sent them.
pub fn detect(enabled: &[Protocol], transport: Transport, data: &[u8]) -> Option<(Protocol, Side)> {
    if transport == Transport::Udp {
        return enabled
            .contains(&Protocol::Dns)
            .then(|| dns::detect(data).map(|side| (Protocol::Dns, side)))
            .flatten();
    }
    STREAM_ORDER
        .into_iter()
        .filter(|p| enabled.contains(p))
        .find_map(|protocol| {
            let side = match protocol {
                Protocol::Http => http1::detect(data),
                Protocol::Redis => redis::detect(data),
                Protocol::Memcached => memcached::detect(data),
                Protocol::Postgresql => postgresql::detect(data),
                Protocol::Mysql => mysql::detect(data),
                Protocol::Dns => dns::detect_tcp(data),
                _ => None,
            }?;
            Some((protocol, side))
        })
}

/// A fresh parser for `protocol`; `None` for protocols detected but not
/// parsed on their own (gRPC rides on HTTP/2).
pub fn new_parser(protocol: Protocol, transport: Transport, options: ParserOptions) -> Option<Box<dyn Parser>> {
    Some(match (protocol, transport) {
        (Protocol::Http, _) => Box::new(http1::Http1Parser::new(options)),
        (Protocol::Redis, _) => Box::new(redis::RedisParser::new(options)),
        (Protocol::Memcached, _) => Box::new(memcached::MemcachedParser::new(options)),
        (Protocol::Postgresql, _) => Box::new(postgresql::PostgresParser::new(options)),
        (Protocol::Mysql, _) => Box::new(mysql::MysqlParser::new(options)),
        (Protocol::Dns, Transport::Udp) => Box::new(dns::DnsParser::new(options)),
        (Protocol::Dns, Transport::Tcp) => Box::new(dns::DnsParser::new_tcp(options)),
        _ => return None,
    })
}

/// Protocols tried when the user restricts nothing.
pub fn default_enabled() -> Vec<Protocol> {
    Protocol::ALL
        .into_iter()
        .filter(|&p| new_parser(p, Transport::Tcp, ParserOptions::default()).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_picks_the_right_protocol_and_side() {
        let all = default_enabled();
        let tcp = |data: &[u8]| detect(&all, Transport::Tcp, data);
        assert_eq!(tcp(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some((Protocol::Http, Side::Client)));
        assert_eq!(tcp(b"HTTP/1.1 200 OK\r\n"), Some((Protocol::Http, Side::Server)));
        assert_eq!(tcp(b"*1\r\n$4\r\nPING\r\n"), Some((Protocol::Redis, Side::Client)));
        assert_eq!(tcp(b"get foo\r\n"), Some((Protocol::Memcached, Side::Client)));
        assert_eq!(tcp(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), None, "TLS is not a protocol we parse");
        let only_http = [Protocol::Http];
        assert_eq!(detect(&only_http, Transport::Tcp, b"*1\r\n$4\r\nPING\r\n"), None);
    }
}
