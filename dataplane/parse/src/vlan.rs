//! IEEE 802.1Q and 802.1ad VLAN tags (and the pre-standard 0x9100 QinQ tag), stacked to any
//! depth up to [`MAX_VLAN_TAGS`]. Owns the 4-byte tags between the Ethernet header and the
//! payload's EtherType; reports their TCI values and never rewrites them (the bridge is
//! invisible).

use crate::ethernet::ethertype;
use crate::{need, octets, Layer, ParseError};

/// Most VLAN tags accepted in front of the payload. QinQ uses two; four leaves room for a
/// provider's further stacking while bounding the loop a crafted frame can make the parser run,
/// and the size of [`VlanStack`].
pub const MAX_VLAN_TAGS: usize = 4;

/// One tag: TCI, then the EtherType of what follows.
pub const TAG_LEN: usize = 4;

mod field {
    use core::ops::Range;
    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
}

/// True for the EtherTypes that announce a VLAN tag: 0x8100, 0x88a8, 0x9100.
#[inline]
pub fn is_tag_protocol(ethertype: u16) -> bool {
    matches!(
        ethertype,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY
    )
}

/// A view of one VLAN tag (the 4 bytes after its tag protocol identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// A view without checks. Getters read zeros for bytes the buffer does not have.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> VlanTag<T> {
        VlanTag { buffer }
    }

    /// A view of a buffer that holds the 4-byte tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<VlanTag<T>, ParseError> {
        need(buffer.as_ref(), TAG_LEN, Layer::Vlan)?;
        Ok(VlanTag { buffer })
    }

    /// Tag control information: PCP (3 bits), DEI (1), VID (12).
    #[inline]
    pub fn tci(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::TCI.start)
    }

    /// Priority code point (802.1p).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier.
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType of what follows the tag (possibly another tag).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::ETHERTYPE.start)
    }
}

/// The VLAN tags of a frame, outermost first: a fixed array, so a [`crate::Frame`] stays `Copy`
/// and allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VlanStack {
    tci: [u16; MAX_VLAN_TAGS],
    count: u8,
}

impl VlanStack {
    /// The tags' TCI values, outermost first.
    #[inline]
    pub fn tags(&self) -> &[u16] {
        self.tci.get(..usize::from(self.count)).unwrap_or_default()
    }

    /// Number of tags.
    #[inline]
    pub fn len(&self) -> usize {
        self.tags().len()
    }

    /// True for an untagged frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The outermost tag's TCI (the service tag, for QinQ).
    #[inline]
    pub fn outer(&self) -> Option<u16> {
        self.tags().first().copied()
    }

    /// The innermost tag's TCI (the customer tag, for QinQ).
    #[inline]
    pub fn inner(&self) -> Option<u16> {
        self.tags().last().copied()
    }

    /// Reads the tags of `frame` starting at `offset`, where `ethertype` (the one just read)
    /// says whether a tag follows. Returns the tags, the offset after them, and the EtherType
    /// of the payload.
    #[inline]
    pub fn parse(
        frame: &[u8],
        mut offset: usize,
        mut ethertype: u16,
    ) -> Result<(VlanStack, usize, u16), ParseError> {
        let mut stack = VlanStack::default();
        while is_tag_protocol(ethertype) {
            let slot = stack
                .tci
                .get_mut(usize::from(stack.count))
                .ok_or(ParseError::TooManyVlanTags)?;
            let tag = VlanTag::new_checked(octets::rest(frame, offset))?;
            *slot = tag.tci();
            ethertype = tag.ethertype();
            // count < MAX_VLAN_TAGS here (the slot existed); offset < frame.len() (the tag did).
            stack.count = stack.count.saturating_add(1);
            offset = offset.saturating_add(TAG_LEN);
        }
        Ok((stack, offset, ethertype))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn deconstruct_a_tag() {
        // PCP 5, DEI 1, VID 0x123, then IPv4.
        let tag = VlanTag::new_checked(&[0xb1, 0x23, 0x08, 0x00][..]).unwrap();
        assert_eq!(tag.tci(), 0xb123);
        assert_eq!((tag.pcp(), tag.dei(), tag.vid()), (5, true, 0x123));
        assert_eq!(tag.ethertype(), ethertype::IPV4);
    }

    #[test]
    fn all_three_tag_protocols_stack() {
        // After the addresses: 9100 outer, 88a8 middle, 8100 inner, then IPv6.
        let frame = [
            0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x91, 0x00, 0x00, 0x01, 0x88, 0xa8, 0x00, 0x02,
            0x81, 0x00, 0x00, 0x03, 0x86, 0xdd,
        ];
        let (stack, offset, next) = VlanStack::parse(&frame, 14, 0x9100).unwrap();
        assert_eq!(stack.tags(), &[1, 2, 3]);
        assert_eq!(
            (stack.outer(), stack.inner(), stack.len()),
            (Some(1), Some(3), 3)
        );
        assert_eq!((offset, next), (26, ethertype::IPV6));
    }

    #[test]
    fn untagged_passes_through() {
        let (stack, offset, next) = VlanStack::parse(&[0; 14], 14, 0x0800).unwrap();
        assert!(stack.is_empty());
        assert_eq!((offset, next), (14, 0x0800));
    }

    #[test]
    fn more_than_the_bound_is_an_error() {
        // Five tags of 8100, each followed by 8100 again.
        let tags = [0x00u8, 0x01, 0x81, 0x00].repeat(5);
        assert_eq!(
            VlanStack::parse(&tags, 0, ethertype::VLAN),
            Err(ParseError::TooManyVlanTags)
        );
        // Exactly four is fine.
        let mut four = [0x00u8, 0x01, 0x81, 0x00].repeat(4);
        four[14..16].copy_from_slice(&[0x08, 0x00]);
        let (stack, offset, next) = VlanStack::parse(&four, 0, ethertype::VLAN).unwrap();
        assert_eq!((stack.len(), offset, next), (MAX_VLAN_TAGS, 16, 0x0800));
    }

    #[test]
    fn a_cut_tag_is_truncated() {
        assert_eq!(
            VlanStack::parse(&[0, 0, 0, 0, 0x00, 0x64, 0x08], 4, ethertype::VLAN),
            Err(ParseError::Truncated {
                layer: Layer::Vlan,
                needed: 4,
                available: 3
            })
        );
        // An offset past the end is a truncation too, not a panic.
        assert!(VlanStack::parse(&[0; 4], 9, ethertype::QINQ).is_err());
    }
}
