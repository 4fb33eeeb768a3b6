//! IP addresses as attribute text, formatted once per address rather than
//! once per span: every span of a connection carries the same two.

use std::{net::IpAddr, sync::Arc};

use crate::protocols::SharedStr;

/// Addresses remembered; past this the cache starts over, so a server
/// seeing many peers keeps a bounded table.
const MAX_ADDRESSES: usize = 4096;

#[derive(Default)]
pub struct AddrText {
    known: foldhash::HashMap<IpAddr, Arc<str>>,
}

impl AddrText {
    /// `ip` as `IpAddr`'s `Display` writes it.
    pub fn get(&mut self, ip: IpAddr) -> SharedStr {
        if let Some(text) = self.known.get(&ip) {
            return SharedStr::Shared(text.clone());
        }
        if self.known.len() >= MAX_ADDRESSES {
            self.known.clear();
        }
        let text: Arc<str> = Arc::from(ip.to_string());
        self.known.insert(ip, text.clone());
        SharedStr::Shared(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_displayed_and_bounded() {
        let mut cache = AddrText::default();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(cache.get(v6).as_str(), "2001:db8::1");
        assert_eq!(cache.get(v6).as_str(), "2001:db8::1");
        for i in 0..=u32::try_from(MAX_ADDRESSES).unwrap() {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(cache.get(ip).as_str(), ip.to_string());
        }
        assert!(cache.known.len() <= MAX_ADDRESSES);
    }
}
