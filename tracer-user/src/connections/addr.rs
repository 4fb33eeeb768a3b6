//! Socket addresses from a [`ConnEvent`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tracer_common::{ConnEvent, AF_INET, AF_INET6};

fn ip(family: u16, raw: [u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(raw);
            // Dual-stack sockets carry IPv4 peers as ::ffff:a.b.c.d.
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

/// (local, remote); an all-zero remote (unconnected UDP) is unknown.
pub fn socket_addrs(event: &ConnEvent) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let local = ip(event.family, event.local_addr).map(|ip| SocketAddr::new(ip, event.local_port));
    let remote = ip(event.family, event.remote_addr)
        .filter(|_| event.remote_port != 0)
        .map(|ip| SocketAddr::new(ip, event.remote_port));
    (local, remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::EventKind;

    fn event(family: u16, local: [u8; 16], remote: [u8; 16]) -> ConnEvent {
        ConnEvent {
            kind: EventKind::ConnOpen as u8,
            role: 0,
            family,
            pid: 1,
            tid: 1,
            fd: 3,
            timestamp_ns: 0,
            sock: 1,
            local_addr: local,
            remote_addr: remote,
            local_port: 8080,
            remote_port: 54321,
            protocol: 6,
            _pad: 0,
        }
    }

    #[test]
    fn ipv4_and_mapped_ipv6() {
        let mut v4 = [0; 16];
        v4[..4].copy_from_slice(&[127, 0, 0, 1]);
        let (local, remote) = socket_addrs(&event(AF_INET, v4, v4));
        assert_eq!(local.unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(remote.unwrap().to_string(), "127.0.0.1:54321");
        let mapped = Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets();
        let (local, _) = socket_addrs(&event(AF_INET6, mapped, Ipv6Addr::LOCALHOST.octets()));
        assert_eq!(local.unwrap().to_string(), "10.0.0.2:8080");
        let (_, remote) = socket_addrs(&event(AF_INET6, mapped, Ipv6Addr::LOCALHOST.octets()));
        assert_eq!(remote.unwrap().to_string(), "[::1]:54321");
        assert_eq!(socket_addrs(&event(1, v4, v4)), (None, None));
    }
}
