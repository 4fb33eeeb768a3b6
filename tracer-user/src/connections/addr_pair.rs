//! Two socket addresses as a hash-map key, hashed in three words.
//!
//! `SocketAddr`'s derived `Hash` feeds the hasher field by field (variant,
//! octets as a length-prefixed slice, port; for IPv6 also flow info and
//! scope), about ten writes per pair; pair keys are hashed several times
//! per span (peer lookup, the linker's indexes).

use std::{
    hash::{Hash, Hasher},
    net::{IpAddr, SocketAddr},
};

/// Equal exactly when both addresses are equal (all their fields); the
/// hash is a function of fewer fields, which keeps it consistent with
/// equality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrPair(pub SocketAddr, pub SocketAddr);

impl Hash for AddrPair {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(ip_bits(self.0.ip()));
        state.write_u128(ip_bits(self.1.ip()));
        state.write_u32(u32::from(self.0.port()) << 16 | u32::from(self.1.port()));
    }
}

fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashSet,
        hash::BuildHasher,
        net::{Ipv4Addr, Ipv6Addr, SocketAddrV6},
    };

    use super::*;

    fn pair(a: &str, b: &str) -> AddrPair {
        AddrPair(a.parse().unwrap(), b.parse().unwrap())
    }

    #[test]
    fn equal_pairs_hash_equal_and_distinct_pairs_stay_distinct() {
        let hasher = foldhash::fast::RandomState::default();
        let pairs = [
            pair("127.0.0.1:8080", "127.0.0.1:40000"),
            pair("127.0.0.1:40000", "127.0.0.1:8080"),
            pair("127.0.0.1:8080", "127.0.0.1:40001"),
            pair("10.0.0.1:8080", "127.0.0.1:40000"),
            pair("[::1]:8080", "[::1]:40000"),
            pair("[::ffff:127.0.0.1]:8080", "127.0.0.1:40000"),
            pair("[::7f00:1]:8080", "127.0.0.1:40000"),
            AddrPair(
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 8080, 0, 7)),
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 40000),
            ),
        ];
        for p in pairs {
            let copy = AddrPair(p.0, p.1);
            assert_eq!(hasher.hash_one(p), hasher.hash_one(copy));
        }
        // As map keys: every distinct pair its own entry, found again.
        let set: HashSet<AddrPair, _> = pairs.iter().copied().collect::<HashSet<_>>();
        assert_eq!(set.len(), pairs.len());
        let mut map = foldhash::HashMap::default();
        for (i, p) in pairs.iter().enumerate() {
            map.insert(*p, i);
        }
        for (i, p) in pairs.iter().enumerate() {
            assert_eq!(map.get(p), Some(&i));
        }
    }
}
