//! Which protocols exist, how a connection's first bytes select one, and
//! making its parser.

use super::{
    dns, http1, http2, memcached, mysql, postgresql, redis, Parser, ParserOptions, Protocol, Side,
};

/// The transport a connection runs on, as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Order of detection on a stream: the most specific first, so that a
/// looser pattern (memcached's lowercase words) cannot claim another
/// protocol's bytes. HTTP/2 comes right after HTTP/1.x: its preface and
/// frame checks are strict (see [`http2::detect`]).
const STREAM_ORDER: [Protocol; 7] = [
    Protocol::Http,
    Protocol::Http2,
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
        .filter_map(|p| stream_detection(enabled, p))
        .find_map(|protocol| {
            let side = match protocol {
                Protocol::Http => http1::detect(data),
                Protocol::Http2 | Protocol::Grpc => http2::detect(data),
                Protocol::Redis => redis::detect(data),
                Protocol::Memcached => memcached::detect(data),
                Protocol::Postgresql => postgresql::detect(data),
                Protocol::Mysql => mysql::detect(data),
                Protocol::Dns => dns::detect_tcp(data),
            }?;
            Some((protocol, side))
        })
}

/// The protocol to report when `protocol`'s detection matches, if enabled.
/// gRPC rides on HTTP/2 and has no detection of its own: with `http2`
/// enabled HTTP/2 is detected (and its gRPC calls reported as gRPC); with
/// only `grpc`, HTTP/2 is detected as [`Protocol::Grpc`], whose parser
/// reports gRPC calls only.
fn stream_detection(enabled: &[Protocol], protocol: Protocol) -> Option<Protocol> {
    match protocol {
        Protocol::Http2 if enabled.contains(&Protocol::Http2) => Some(Protocol::Http2),
        Protocol::Http2 if enabled.contains(&Protocol::Grpc) => Some(Protocol::Grpc),
        _ => enabled.contains(&protocol).then_some(protocol),
    }
}

/// A fresh parser for `protocol`, `None` for protocols not parsed (yet).
/// gRPC rides on HTTP/2: its parser is the HTTP/2 one, reporting only gRPC
/// calls.
pub fn new_parser(
    protocol: Protocol,
    transport: Transport,
    options: ParserOptions,
) -> Option<Box<dyn Parser>> {
    Some(match (protocol, transport) {
        (Protocol::Http, _) => Box::new(http1::Http1Parser::new(options)),
        (Protocol::Http2, Transport::Tcp) => Box::new(http2::Http2Parser::new(options)),
        (Protocol::Grpc, Transport::Tcp) => Box::new(http2::Http2Parser::grpc_only(options)),
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
        assert_eq!(
            tcp(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some((Protocol::Http, Side::Client))
        );
        assert_eq!(
            tcp(b"HTTP/1.1 200 OK\r\n"),
            Some((Protocol::Http, Side::Server))
        );
        assert_eq!(
            tcp(b"*1\r\n$4\r\nPING\r\n"),
            Some((Protocol::Redis, Side::Client))
        );
        assert_eq!(
            tcp(b"get foo\r\n"),
            Some((Protocol::Memcached, Side::Client))
        );
        assert_eq!(
            tcp(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            None,
            "TLS is not a protocol we parse"
        );
        let only_http = [Protocol::Http];
        assert_eq!(
            detect(&only_http, Transport::Tcp, b"*1\r\n$4\r\nPING\r\n"),
            None
        );
    }

    #[test]
    fn http2_detection_and_grpc() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64";
        let all = default_enabled();
        assert!(all.contains(&Protocol::Http2) && all.contains(&Protocol::Grpc));
        assert_eq!(
            detect(&all, Transport::Tcp, preface),
            Some((Protocol::Http2, Side::Client))
        );
        assert_eq!(
            detect(&all, Transport::Tcp, settings),
            Some((Protocol::Http2, Side::Server))
        );
        assert_eq!(detect(&all, Transport::Udp, preface), None);
        let grpc = [Protocol::Grpc];
        assert_eq!(
            detect(&grpc, Transport::Tcp, preface),
            Some((Protocol::Grpc, Side::Client))
        );
        assert!(new_parser(Protocol::Grpc, Transport::Tcp, ParserOptions::default()).is_some());
        let both = [Protocol::Grpc, Protocol::Http2];
        assert_eq!(
            detect(&both, Transport::Tcp, preface),
            Some((Protocol::Http2, Side::Client))
        );
        assert_eq!(detect(&[Protocol::Http], Transport::Tcp, preface), None);
        // HTTP/1.x keeps its bytes.
        assert_eq!(
            detect(&all, Transport::Tcp, b"GET / HTTP/1.1\r\n"),
            Some((Protocol::Http, Side::Client))
        );
    }
}
