//! Who holds which addresses, for the overlap check: a frame must belong to one subscriber, so
//! no two subscribers' prefixes may share an address.
//!
//! A prefix is an interval of addresses. The prefixes in the space never overlap, so sorted by
//! their first address they are disjoint intervals in order: the one that could contain the
//! start of a new prefix is the last one starting at or before it, and any other overlapping
//! one starts inside the new prefix. Both are a single ordered-map lookup, so checking one
//! change against a million subscribers costs microseconds, not a scan.

use sheetcake_dataplane::classify::Prefix;
use std::collections::BTreeMap;

/// (is IPv6, first address) and (last address, the prefix, its holder): one interval.
type Entry<H> = ((bool, u128), (u128, Prefix, H));

/// The disjoint prefixes of all subscribers, each with its holder.
#[derive(Debug, Clone, Default)]
pub struct AddressSpace<H> {
    /// (is IPv6, first address) to (last address, the prefix, its holder).
    intervals: BTreeMap<(bool, u128), (u128, Prefix, H)>,
}

/// Two prefixes that share addresses, as [`AddressSpace::build`] found them: `later` sorts
/// after `earlier` (starts at or after its first address).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overlap<H> {
    pub later: (Prefix, H),
    pub earlier: (Prefix, H),
}

fn interval(p: &Prefix) -> (bool, u128, u128) {
    match *p {
        Prefix::V4(a, len) => {
            let start = u128::from(u32::from(a));
            (false, start, start + (1u128 << (32 - u32::from(len))) - 1)
        }
        Prefix::V6(a, len) => {
            let start = u128::from(a);
            // A /128 has no host bits (a shift by 128 is not defined, hence checked).
            (
                true,
                start,
                start | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0),
            )
        }
    }
}

impl<H: Copy + PartialEq> AddressSpace<H> {
    /// An empty space.
    pub fn new() -> Self {
        AddressSpace {
            intervals: BTreeMap::new(),
        }
    }

    /// The prefixes already held that share an address with `p`, with their holders. At most
    /// one contains `p`'s start; the others start inside `p`.
    pub fn overlapping(&self, p: &Prefix) -> impl Iterator<Item = (Prefix, H)> + '_ {
        let (v6, start, last) = interval(p);
        let before = self
            .intervals
            .range(..(v6, start))
            .next_back()
            .filter(|((fam, _), (end, ..))| *fam == v6 && *end >= start)
            .map(|(_, (_, q, h))| (*q, *h));
        let inside = self
            .intervals
            .range((v6, start)..=(v6, last))
            .map(|(_, (_, q, h))| (*q, *h));
        before.into_iter().chain(inside)
    }

    /// The first holder other than those `ignore` accepts whose prefix overlaps `p`.
    pub fn conflict(&self, p: &Prefix, ignore: impl Fn(H) -> bool) -> Option<(Prefix, H)> {
        self.overlapping(p).find(|(_, h)| !ignore(*h))
    }

    /// The space of `prefixes` built at once: sorted by first address, any prefix that shares
    /// an address with an earlier one also shares one with the earlier prefix that reaches
    /// furthest, so one pass finds every prefix that overlaps another, and the sorted
    /// intervals make the map without a search per insertion. A million subscribers are
    /// checked in a fraction of the time of one insertion each. When prefixes overlap, the
    /// pairs are returned instead: each prefix that overlaps one sorting before it, with that
    /// one.
    pub fn build(prefixes: Vec<(Prefix, H)>) -> Result<Self, Vec<Overlap<H>>> {
        let mut sorted: Vec<Entry<H>> = prefixes
            .into_iter()
            .map(|(p, h)| {
                let (v6, start, last) = interval(&p);
                ((v6, start), (last, p, h))
            })
            .collect();
        sorted.sort_unstable_by_key(|(at, _)| *at);
        let mut overlaps = Vec::new();
        // The earlier interval of this family that reaches furthest.
        let mut reach: Option<(bool, u128, Prefix, H)> = None;
        for ((v6, _), (last, p, h)) in &sorted {
            match reach {
                Some((fam, end, q, g)) if fam == *v6 && interval(p).1 <= end => {
                    overlaps.push(Overlap {
                        later: (*p, *h),
                        earlier: (q, g),
                    });
                    if *last > end {
                        reach = Some((*v6, *last, *p, *h));
                    }
                }
                _ => reach = Some((*v6, *last, *p, *h)),
            }
        }
        if !overlaps.is_empty() {
            return Err(overlaps);
        }
        Ok(AddressSpace {
            intervals: sorted.into_iter().collect(),
        })
    }

    /// Adds `p` for `holder`. The caller has checked it overlaps nothing.
    pub fn insert(&mut self, p: Prefix, holder: H) {
        let (v6, start, last) = interval(&p);
        debug_assert!(self.overlapping(&p).next().is_none(), "{p} overlaps");
        self.intervals.insert((v6, start), (last, p, holder));
    }

    /// Removes `p`, if present.
    pub fn remove(&mut self, p: &Prefix) {
        let (v6, start, _) = interval(p);
        self.intervals.remove(&(v6, start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> Prefix {
        Prefix::parse(t).unwrap()
    }

    #[test]
    fn overlaps_are_found_from_either_side() {
        let mut s = AddressSpace::new();
        s.insert(p("100.64.0.0/24"), 1);
        s.insert(p("100.64.1.7"), 2);
        s.insert(p("2001:db8::/56"), 3);
        // Inside, covering, and disjoint.
        assert_eq!(
            s.conflict(&p("100.64.0.9"), |_| false).map(|c| c.1),
            Some(1)
        );
        assert_eq!(
            s.conflict(&p("100.64.0.0/16"), |_| false).map(|c| c.1),
            Some(1)
        );
        let both: Vec<u32> = s.overlapping(&p("100.64.0.0/16")).map(|c| c.1).collect();
        assert_eq!(both, [1, 2]);
        assert_eq!(s.conflict(&p("100.64.2.0/24"), |_| false), None);
        assert_eq!(s.conflict(&p("100.64.1.6"), |_| false), None);
        // IPv4 and IPv6 never meet, however the numbers compare.
        assert_eq!(s.conflict(&p("::/0"), |_| false).map(|c| c.1), Some(3));
        assert_eq!(s.conflict(&p("0.0.0.0/0"), |h| h == 1 || h == 2), None);
        assert_eq!(
            s.conflict(&p("2001:db8:0:ff::/64"), |_| false).map(|c| c.1),
            Some(3)
        );
        assert_eq!(s.conflict(&p("2001:db8:0:100::/64"), |_| false), None);
        s.remove(&p("100.64.0.0/24"));
        assert_eq!(s.conflict(&p("100.64.0.9"), |_| false), None);
    }

    #[test]
    fn a_space_built_at_once_finds_what_insertion_would() {
        let held = ["2001:db8::/56", "100.64.1.7", "100.64.0.0/24", "10.0.0.0/8"];
        let built = AddressSpace::build(held.iter().map(|t| (p(t), *t)).collect()).unwrap();
        let mut inserted = AddressSpace::new();
        for t in held {
            inserted.insert(p(t), t);
        }
        for probe in [
            "100.64.0.9",
            "100.64.0.0/16",
            "10.1.2.3",
            "2001:db8:0:ff::/64",
            "::/0",
        ] {
            let a: Vec<_> = built.overlapping(&p(probe)).collect();
            let b: Vec<_> = inserted.overlapping(&p(probe)).collect();
            assert_eq!(a, b, "{probe}");
            assert!(!a.is_empty(), "{probe}");
        }
        assert_eq!(built.conflict(&p("100.64.2.0/24"), |_| false), None);
    }

    #[test]
    fn every_prefix_that_overlaps_an_earlier_one_is_reported() {
        // A /16 holding two others, one of them also covered by a /24; a host twice; a
        // neighbour that touches none; an IPv6 prefix at the same numbers as an IPv4 one.
        let held = [
            ("100.64.0.0/16", 1),
            ("100.64.0.5", 2),
            ("100.64.9.0/24", 3),
            ("100.64.9.1", 4),
            ("100.65.0.0/16", 5),
            ("10.0.0.1", 6),
            ("10.0.0.1", 7),
            ("::6440:0/112", 8),
        ];
        let overlaps =
            AddressSpace::build(held.iter().map(|(t, h)| (p(t), *h)).collect()).unwrap_err();
        let pairs: Vec<(u32, u32)> = overlaps.iter().map(|o| (o.later.1, o.earlier.1)).collect();
        // Each later one is named with the one that reaches furthest before it: the /16.
        assert_eq!(pairs.len(), 4, "{overlaps:?}");
        for (later, earlier) in [(2, 1), (3, 1), (4, 1)] {
            assert!(pairs.contains(&(later, earlier)), "{pairs:?}");
        }
        assert!(
            pairs.contains(&(7, 6)) || pairs.contains(&(6, 7)),
            "{pairs:?}"
        );
        assert!(
            AddressSpace::build(vec![(p("100.64.0.0/24"), 1), (p("100.64.1.0/24"), 2)]).is_ok()
        );
    }
}
