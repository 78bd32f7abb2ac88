//! Ethernet II and IEEE 802.3 headers: two addresses and the EtherType (or, below 0x0600, the
//! 802.3 length). Owns the first 14 bytes of a frame and nothing after them: VLAN tags are
//! [`crate::vlan`], PPPoE is [`crate::pppoe`].

use crate::{need, octets, Layer, ParseError};

/// Ethernet header length without tags: two 6-byte addresses and the EtherType.
pub const HEADER_LEN: usize = 14;

/// EtherType values this crate acts on, and a few it names so that callers can.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (the outer tag of QinQ).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag, still sent by older switches.
    pub const QINQ_LEGACY: u16 = 0x9100;
    /// PPPoE discovery (PADI, PADO, PADR, PADS, PADT): not IP.
    pub const PPPOE_DISCOVERY: u16 = 0x8863;
    /// PPPoE session: PPP frames, IP among them.
    pub const PPPOE_SESSION: u16 = 0x8864;
    /// IEEE 802.3 slow protocols (LACP, marker).
    pub const SLOW_PROTOCOLS: u16 = 0x8809;
    /// LLDP.
    pub const LLDP: u16 = 0x88cc;
    /// Values below this are IEEE 802.3 lengths (at most 1500), not EtherTypes; an LLC header
    /// follows (STP BPDUs, for one).
    pub const MIN_ETHERTYPE: u16 = 0x0600;
}

mod field {
    use core::ops::Range;
    pub const DESTINATION: usize = 0;
    pub const SOURCE: usize = 6;
    pub const ETHERTYPE: Range<usize> = 12..14;
}

/// A view of an Ethernet header at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// A view without checks. Getters read zeros for bytes the buffer does not have.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// A view of a buffer that holds at least the 14-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>, ParseError> {
        need(buffer.as_ref(), HEADER_LEN, Layer::Ethernet)?;
        Ok(EthernetFrame { buffer })
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        octets::array(self.buffer.as_ref(), field::DESTINATION)
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        octets::array(self.buffer.as_ref(), field::SOURCE)
    }

    /// The EtherType, or the 802.3 length when below [`ethertype::MIN_ETHERTYPE`].
    #[inline]
    pub fn ethertype(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// True for an IEEE 802.3 frame (a length where the EtherType would be).
    #[inline]
    pub fn is_8023(&self) -> bool {
        self.ethertype() < ethertype::MIN_ETHERTYPE
    }

    /// Everything after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        octets::rest(self.buffer.as_ref(), HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broadcast ARP request's Ethernet header and the first bytes of ARP.
    const ARP_REQUEST: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00,
    ];

    #[test]
    fn deconstruct() {
        let frame = EthernetFrame::new_checked(&ARP_REQUEST[..]).unwrap();
        assert_eq!(frame.dst_addr(), [0xff; 6]);
        assert_eq!(frame.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(frame.ethertype(), ethertype::ARP);
        assert!(!frame.is_8023());
        assert_eq!(frame.payload(), &[0x00, 0x01, 0x08, 0x00]);
    }

    #[test]
    fn stp_length_field_is_8023() {
        // STP BPDU to 01:80:c2:00:00:00: length 38, LLC 42 42 03.
        let bpdu = [
            0x01, 0x80, 0xc2, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0x00, 0x26, 0x42, 0x42, 0x03,
        ];
        let frame = EthernetFrame::new_checked(&bpdu[..]).unwrap();
        assert!(frame.is_8023());
        assert_eq!(frame.ethertype(), 38);
    }

    #[test]
    fn runt_is_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&ARP_REQUEST[..13]),
            Err(ParseError::Truncated {
                layer: Layer::Ethernet,
                needed: 14,
                available: 13
            })
        );
    }

    #[test]
    fn unchecked_view_of_a_runt_reads_zeros_instead_of_panicking() {
        let frame = EthernetFrame::new_unchecked(&ARP_REQUEST[..8]);
        assert_eq!(frame.ethertype(), 0);
        assert_eq!(frame.src_addr(), [0; 6]);
        assert!(frame.payload().is_empty());
    }
}
