//! Address to subscriber: the tables a worker consults for every IP frame.
//!
//! The control thread builds and edits an [`AddressTable`]; workers only read it. A worker holds
//! one immutable table at a time and switches to a newer one at a loop boundary, so a lookup
//! never sees a half-applied change and never takes a lock.
//!
//! Longest-prefix match with one hash map per prefix length present, probed from the longest
//! length down: a lookup costs at most one probe per distinct length configured (at most 33
//! for IPv4, 129 for IPv6; an ISP's plan typically uses two to four: /32 and /29 or /24 for
//! IPv4, /128, /64 and /56 for IPv6). The first hit is the longest match, so a host address
//! (an exact /32 or /128) always wins over a prefix containing it. Inserting or removing one
//! prefix touches one map, which is what lets a single change be applied in microseconds.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A subscriber's index in the worker-side tables: dense, assigned by the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberSlot(pub u32);

/// An IPv4 or IPv6 prefix (an address with a length). Host bits beyond the length must be 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// IPv4 address and length 0..=32.
    V4(Ipv4Addr, u8),
    /// IPv6 address and length 0..=128.
    V6(Ipv6Addr, u8),
}

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// The length is beyond the address size.
    Length { prefix: String, max: u8 },
    /// Bits are set beyond the prefix length (`10.0.0.1/24`): probably a typo for a host.
    HostBits { prefix: String, network: String },
    /// Not `address/length` or an address.
    Syntax { text: String },
}

impl std::fmt::Display for PrefixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrefixError::Length { prefix, max } => {
                write!(f, "{prefix}: the prefix length must be 0 to {max}")
            }
            PrefixError::HostBits { prefix, network } => write!(
                f,
                "{prefix}: bits are set beyond the prefix length (did you mean {network}?)"
            ),
            PrefixError::Syntax { text } => write!(
                f,
                "{text:?} is not an IPv4 or IPv6 address or prefix (like 100.64.0.7, \
                 100.64.8.0/29 or 2001:db8:100::/56)"
            ),
        }
    }
}

impl std::error::Error for PrefixError {}

impl Prefix {
    /// Parses `address` or `address/length`; an address alone is a host (/32 or /128).
    pub fn parse(text: &str) -> Result<Prefix, PrefixError> {
        let text = text.trim();
        let syntax = || PrefixError::Syntax { text: text.into() };
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| syntax())?)),
            None => (text, None),
        };
        let prefix = if let Ok(v4) = addr.parse::<Ipv4Addr>() {
            Prefix::V4(v4, len.unwrap_or(32))
        } else if let Ok(v6) = addr.parse::<Ipv6Addr>() {
            Prefix::V6(v6, len.unwrap_or(128))
        } else {
            return Err(syntax());
        };
        prefix.validate()?;
        Ok(prefix)
    }

    fn validate(&self) -> Result<(), PrefixError> {
        let (len, max) = match self {
            Prefix::V4(_, len) => (*len, 32),
            Prefix::V6(_, len) => (*len, 128),
        };
        if len > max {
            return Err(PrefixError::Length {
                prefix: self.to_string(),
                max,
            });
        }
        let network = self.network();
        if network != *self {
            return Err(PrefixError::HostBits {
                prefix: self.to_string(),
                network: network.to_string(),
            });
        }
        Ok(())
    }

    /// The prefix with host bits cleared.
    pub fn network(&self) -> Prefix {
        match *self {
            Prefix::V4(a, len) => Prefix::V4(Ipv4Addr::from(u32::from(a) & mask_v4(len)), len),
            Prefix::V6(a, len) => Prefix::V6(Ipv6Addr::from(u128::from(a) & mask_v6(len)), len),
        }
    }

    /// True when the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        match (*self, *other) {
            (Prefix::V4(a, la), Prefix::V4(b, lb)) => {
                let m = mask_v4(la.min(lb));
                u32::from(a) & m == u32::from(b) & m
            }
            (Prefix::V6(a, la), Prefix::V6(b, lb)) => {
                let m = mask_v6(la.min(lb));
                u128::from(a) & m == u128::from(b) & m
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prefix::V4(a, len) => write!(f, "{a}/{len}"),
            Prefix::V6(a, len) => write!(f, "{a}/{len}"),
        }
    }
}

#[inline]
fn mask_v4(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

#[inline]
fn mask_v6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// A multiplicative hash for integer keys (the keys are addresses, already well spread in their
/// low bits for hosts; the multiply spreads prefixes too). Not DoS-resistant, and need not be:
/// keys are the operator's own subscriber addresses, never chosen by traffic.
#[derive(Default, Clone, Copy)]
pub struct AddressHasher(u64);

/// A large odd constant with well-mixed bits (from the golden ratio).
const HASH_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for AddressHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(HASH_MULTIPLIER);
    }
    #[inline]
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
}

type AddressMap<K> = HashMap<K, SubscriberSlot, BuildHasherDefault<AddressHasher>>;

/// Prefixes of one address family: one map per length present, longest first.
#[derive(Debug, Clone)]
struct PrefixTable<K> {
    /// `(length, map from masked address to subscriber)`, sorted by length, longest first.
    by_length: Vec<(u8, AddressMap<K>)>,
}

impl<K> Default for PrefixTable<K> {
    fn default() -> Self {
        PrefixTable {
            by_length: Vec::new(),
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash> PrefixTable<K> {
    #[inline]
    fn lookup(&self, addr: K, mask: impl Fn(K, u8) -> K) -> Option<SubscriberSlot> {
        self.by_length
            .iter()
            .find_map(|(len, map)| map.get(&mask(addr, *len)).copied())
    }

    /// The map of prefixes of `len`, made if there is none.
    fn map_of(&mut self, len: u8) -> &mut AddressMap<K> {
        let at = match self.by_length.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(at) => at,
            Err(at) => {
                self.by_length.insert(at, (len, AddressMap::default()));
                at
            }
        };
        &mut self.by_length[at].1
    }

    fn insert(&mut self, key: K, len: u8, slot: SubscriberSlot) -> Option<SubscriberSlot> {
        self.map_of(len).insert(key, slot)
    }

    /// Room for `counts[len]` more prefixes of each length.
    fn reserve(&mut self, counts: &[usize]) {
        for (len, &n) in counts.iter().enumerate() {
            if n > 0 {
                self.map_of(len as u8).reserve(n);
            }
        }
    }

    fn remove(&mut self, key: K, len: u8) -> Option<SubscriberSlot> {
        let at = self.by_length.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        let removed = self.by_length[at].1.remove(&key);
        if self.by_length[at].1.is_empty() {
            self.by_length.remove(at);
        }
        removed
    }

    fn len(&self) -> usize {
        self.by_length.iter().map(|(_, m)| m.len()).sum()
    }
}

/// Which subscriber owns an address: longest prefix wins.
#[derive(Debug, Clone, Default)]
pub struct AddressTable {
    v4: PrefixTable<u32>,
    v6: PrefixTable<u128>,
}

impl AddressTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscriber owning an IPv4 address, if any.
    #[inline]
    pub fn lookup_v4(&self, addr: [u8; 4]) -> Option<SubscriberSlot> {
        self.v4
            .lookup(u32::from_be_bytes(addr), |a, len| a & mask_v4(len))
    }

    /// The subscriber owning an IPv6 address, if any.
    #[inline]
    pub fn lookup_v6(&self, addr: [u8; 16]) -> Option<SubscriberSlot> {
        self.v6
            .lookup(u128::from_be_bytes(addr), |a, len| a & mask_v6(len))
    }

    /// Makes room for `prefixes` at once, so a table built from a million subscribers grows
    /// each of its maps once instead of rehashing it at every doubling.
    pub fn reserve_for<'p>(&mut self, prefixes: impl Iterator<Item = &'p Prefix>) {
        let mut v4 = [0usize; 33];
        let mut v6 = [0usize; 129];
        for p in prefixes {
            match *p {
                Prefix::V4(_, len) => v4[usize::from(len).min(32)] += 1,
                Prefix::V6(_, len) => v6[usize::from(len).min(128)] += 1,
            }
        }
        self.v4.reserve(&v4);
        self.v6.reserve(&v6);
    }

    /// Maps `prefix` (host bits cleared) to `slot`; returns the slot it replaced.
    pub fn insert(&mut self, prefix: Prefix, slot: SubscriberSlot) -> Option<SubscriberSlot> {
        match prefix.network() {
            Prefix::V4(a, len) => self.v4.insert(u32::from(a), len, slot),
            Prefix::V6(a, len) => self.v6.insert(u128::from(a), len, slot),
        }
    }

    /// Unmaps `prefix`; returns the slot it pointed to.
    pub fn remove(&mut self, prefix: Prefix) -> Option<SubscriberSlot> {
        match prefix.network() {
            Prefix::V4(a, len) => self.v4.remove(u32::from(a), len),
            Prefix::V6(a, len) => self.v6.remove(u128::from(a), len),
        }
    }

    /// Number of prefixes mapped.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct prefix lengths present (IPv4, IPv6): the worst-case probes per lookup.
    pub fn lengths(&self) -> (usize, usize) {
        (self.v4.by_length.len(), self.v6.by_length.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Prefix {
        Prefix::parse(text).unwrap()
    }

    fn v4(text: &str) -> [u8; 4] {
        text.parse::<Ipv4Addr>().unwrap().octets()
    }

    fn v6(text: &str) -> [u8; 16] {
        text.parse::<Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn host_address_wins_over_the_prefix_containing_it() {
        let mut t = AddressTable::new();
        t.insert(p("100.64.8.0/24"), SubscriberSlot(1));
        t.insert(p("100.64.8.77"), SubscriberSlot(2));
        t.insert(p("100.64.8.64/29"), SubscriberSlot(3));
        assert_eq!(t.lookup_v4(v4("100.64.8.77")), Some(SubscriberSlot(2)));
        assert_eq!(t.lookup_v4(v4("100.64.8.70")), Some(SubscriberSlot(3)));
        assert_eq!(t.lookup_v4(v4("100.64.8.72")), Some(SubscriberSlot(1)));
        assert_eq!(t.lookup_v4(v4("100.64.9.1")), None);
        assert_eq!(t.lengths(), (3, 0));
    }

    #[test]
    fn ipv6_delegations_and_wan_addresses() {
        let mut t = AddressTable::new();
        // A /56 delegation and a WAN address from the ISP's /64 link prefix.
        t.insert(p("2001:db8:100:ab00::/56"), SubscriberSlot(7));
        t.insert(p("2001:db8:ffff:1::7"), SubscriberSlot(7));
        t.insert(p("2001:db8:100:ac00::/56"), SubscriberSlot(8));
        assert_eq!(
            t.lookup_v6(v6("2001:db8:100:abff::1")),
            Some(SubscriberSlot(7))
        );
        assert_eq!(
            t.lookup_v6(v6("2001:db8:100:ab00::dead")),
            Some(SubscriberSlot(7))
        );
        assert_eq!(
            t.lookup_v6(v6("2001:db8:ffff:1::7")),
            Some(SubscriberSlot(7))
        );
        assert_eq!(t.lookup_v6(v6("2001:db8:ffff:1::8")), None);
        assert_eq!(
            t.lookup_v6(v6("2001:db8:100:ac01::1")),
            Some(SubscriberSlot(8))
        );
        assert_eq!(t.lookup_v6(v6("2001:db8:100:ad00::1")), None);
    }

    #[test]
    fn removing_a_prefix_leaves_the_others() {
        let mut t = AddressTable::new();
        t.insert(p("10.0.0.0/8"), SubscriberSlot(1));
        t.insert(p("10.1.2.3"), SubscriberSlot(2));
        assert_eq!(t.remove(p("10.1.2.3")), Some(SubscriberSlot(2)));
        assert_eq!(t.lookup_v4(v4("10.1.2.3")), Some(SubscriberSlot(1)));
        assert_eq!(t.lengths(), (1, 0), "an emptied length is no longer probed");
        assert_eq!(t.remove(p("10.1.2.3")), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn default_route_prefixes_match_everything_of_their_family() {
        let mut t = AddressTable::new();
        t.insert(p("0.0.0.0/0"), SubscriberSlot(9));
        assert_eq!(t.lookup_v4(v4("203.0.113.5")), Some(SubscriberSlot(9)));
        assert_eq!(t.lookup_v6(v6("::1")), None);
    }

    #[test]
    fn prefixes_are_parsed_strictly() {
        assert_eq!(
            p("100.64.0.7"),
            Prefix::V4(Ipv4Addr::new(100, 64, 0, 7), 32)
        );
        assert!(matches!(
            Prefix::parse("10.0.0.1/24"),
            Err(PrefixError::HostBits { .. })
        ));
        assert!(matches!(
            Prefix::parse("10.0.0.0/33"),
            Err(PrefixError::Length { .. })
        ));
        assert!(matches!(
            Prefix::parse("2001:db8::/129"),
            Err(PrefixError::Length { .. })
        ));
        assert!(matches!(
            Prefix::parse("10.0.0.0/x"),
            Err(PrefixError::Syntax { .. })
        ));
        assert!(matches!(
            Prefix::parse("eth0"),
            Err(PrefixError::Syntax { .. })
        ));
        let msg = Prefix::parse("10.0.0.1/24").unwrap_err().to_string();
        assert!(msg.contains("did you mean 10.0.0.0/24"), "{msg}");
    }

    #[test]
    fn overlap_is_detected_across_lengths_only_within_a_family() {
        assert!(p("10.0.0.0/8").overlaps(&p("10.200.0.1")));
        assert!(!p("10.0.0.0/8").overlaps(&p("11.0.0.1")));
        assert!(p("2001:db8::/32").overlaps(&p("2001:db8:5::/48")));
        assert!(!p("0.0.0.0/0").overlaps(&p("::/0")));
    }
}
