//! IPv4 headers (RFC 791): options, fragments, DSCP and ECN (RFC 2474, RFC 3168). Owns the
//! header and its consistency with the bytes present; rewrites only the DSCP/ECN byte, and then
//! keeps the header checksum right (RFC 1624).

use crate::ip::{self, IpAddress};
use crate::{checksum, malformed, need, octets, Layer, Malformation, ParseError};

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Header length with the most options IHL can express (15 words).
pub const MAX_HEADER_LEN: usize = 60;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// "Don't fragment" in the flags/fragment-offset word.
const DONT_FRAGMENT: u16 = 0x4000;
/// "More fragments" in the flags/fragment-offset word.
const MORE_FRAGMENTS: u16 = 0x2000;
/// Fragment offset bits, in 8-byte units.
const FRAGMENT_OFFSET: u16 = 0x1fff;

/// A view of an IPv4 packet at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without checks. Getters read zeros for bytes the buffer does not have; setters
    /// drop writes to them.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// A view of a buffer holding a consistent IPv4 packet: version 4, IHL at least 5, the
    /// whole header present, a total length at least the header's and no more than the bytes
    /// present (more bytes may follow: Ethernet padding).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, ParseError> {
        let packet = Ipv4Packet { buffer };
        packet.check_len()?;
        Ok(packet)
    }

    /// The checks of [`Ipv4Packet::new_checked`].
    pub fn check_len(&self) -> Result<(), ParseError> {
        let buf = self.buffer.as_ref();
        need(buf, MIN_HEADER_LEN, Layer::Ipv4)?;
        if self.version() != 4 {
            return Err(malformed(
                Layer::Ipv4,
                Malformation::Ipv4Version {
                    found: self.version(),
                },
            ));
        }
        let header_len = self.header_len();
        if usize::from(header_len) < MIN_HEADER_LEN {
            return Err(malformed(
                Layer::Ipv4,
                Malformation::Ipv4HeaderLength { ihl: self.ihl() },
            ));
        }
        need(buf, usize::from(header_len), Layer::Ipv4)?;
        let total_len = self.total_len();
        if total_len < u16::from(header_len) {
            return Err(malformed(
                Layer::Ipv4,
                Malformation::Ipv4TotalLength {
                    total_len,
                    header_len,
                },
            ));
        }
        need(buf, usize::from(total_len), Layer::Ipv4)
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version: 4.
    #[inline]
    pub fn version(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Internet header length in 32-bit words.
    #[inline]
    pub fn ihl(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::VER_IHL) & 0x0f
    }

    /// Header length in bytes, options included (IHL times 4, at most 60).
    #[inline]
    pub fn header_len(&self) -> u8 {
        self.ihl() << 2
    }

    /// The DSCP/ECN byte (formerly TOS).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::TOS)
    }

    /// Differentiated services code point.
    #[inline]
    pub fn dscp(&self) -> u8 {
        ip::dscp_of(self.traffic_class())
    }

    /// ECN field.
    #[inline]
    pub fn ecn(&self) -> u8 {
        ip::ecn_of(self.traffic_class())
    }

    /// Total length of the packet, header included.
    #[inline]
    pub fn total_len(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::TOTAL_LEN.start)
    }

    /// Identification (shared by a datagram's fragments).
    #[inline]
    pub fn ident(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::IDENT.start)
    }

    fn flags_frag(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::FLAGS_FRAG.start)
    }

    /// Don't fragment.
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        self.flags_frag() & DONT_FRAGMENT != 0
    }

    /// More fragments follow.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        self.flags_frag() & MORE_FRAGMENTS != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units; 13 bits * 8 fits a u16).
    #[inline]
    pub fn fragment_offset(&self) -> u16 {
        (self.flags_frag() & FRAGMENT_OFFSET) << 3
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::TTL)
    }

    /// Payload protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        octets::array(self.buffer.as_ref(), field::SRC.start)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        octets::array(self.buffer.as_ref(), field::DST.start)
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        octets::range(self.buffer.as_ref(), 0, usize::from(self.header_len()))
    }

    /// The options: the header after its first 20 bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        octets::rest(self.header(), MIN_HEADER_LEN)
    }

    /// The payload: after the header, up to the total length (Ethernet padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        octets::range(
            self.buffer.as_ref(),
            usize::from(self.header_len()),
            usize::from(self.total_len()),
        )
    }

    /// True when the header checksum is valid.
    pub fn verify_checksum(&self) -> bool {
        checksum::ones_complement_sum(self.header()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Rewrites DSCP and ECN together and updates the header checksum incrementally. Bits
    /// beyond each field's width are ignored.
    #[inline]
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        let buf = self.buffer.as_ref();
        // The checksummed 16-bit word holding the TOS byte is the header's first.
        let old_word = octets::u16_at(buf, field::VER_IHL);
        let new_word = u16::from_be_bytes([
            octets::u8_at(buf, field::VER_IHL),
            ip::traffic_class(dscp, ecn),
        ]);
        if old_word == new_word {
            return;
        }
        let sum = checksum::update(self.checksum(), old_word, new_word);
        let buf = self.buffer.as_mut();
        octets::set_u16(buf, field::VER_IHL, new_word);
        octets::set_u16(buf, field::CHECKSUM.start, sum);
    }

    /// Rewrites the DSCP (a wash sets 0), keeping ECN and the checksum right.
    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let ecn = self.ecn();
        self.set_dscp_ecn(dscp, ecn);
    }

    /// Rewrites the ECN field (CAKE marks [`ip::ecn::CE`]), keeping DSCP and the checksum right.
    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let dscp = self.dscp();
        self.set_dscp_ecn(dscp, ecn);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        octets::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, 0);
        let sum = checksum::checksum(self.header());
        octets::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, sum);
    }
}

/// The fields of an IPv4 header the dataplane uses, decoded: `Copy`, no borrow of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Header length in bytes, options included (20..=60).
    pub header_len: u8,
    /// Total length of the packet in bytes (header and payload).
    pub total_len: u16,
    /// Differentiated services code point.
    pub dscp: u8,
    /// ECN field: 0 not-ECT, 1 ECT(1), 2 ECT(0), 3 CE.
    pub ecn: u8,
    /// Time to live.
    pub ttl: u8,
    /// Payload protocol (6 TCP, 17 UDP, 1 ICMP, ...).
    pub protocol: u8,
    /// Identification.
    pub ident: u16,
    /// Fragment offset in bytes (0 for unfragmented packets and first fragments).
    pub fragment_offset: u16,
    /// More fragments follow.
    pub more_fragments: bool,
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
}

impl Ipv4Header {
    /// Decodes a checked packet.
    #[inline]
    pub fn from_packet<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Ipv4Header {
        Ipv4Header {
            header_len: packet.header_len(),
            total_len: packet.total_len(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ttl: packet.ttl(),
            protocol: packet.protocol(),
            ident: packet.ident(),
            fragment_offset: packet.fragment_offset(),
            more_fragments: packet.more_fragments(),
            src: packet.src_addr(),
            dst: packet.dst_addr(),
        }
    }

    /// Checks and decodes the packet at the start of `packet`.
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<Ipv4Header, ParseError> {
        Ipv4Packet::new_checked(packet).map(|p| Ipv4Header::from_packet(&p))
    }

    /// True for any fragment of a larger datagram, the first included.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.fragment_offset != 0
    }

    /// Where the transport header starts, from the IP header; `None` for non-first fragments,
    /// whose payload continues the datagram and carries no transport header.
    #[inline]
    pub fn transport_offset(&self) -> Option<usize> {
        (self.fragment_offset == 0).then_some(usize::from(self.header_len))
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> IpAddress {
        IpAddress::V4(self.src)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> IpAddress {
        IpAddress::V4(self.dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20-byte header: TOS 0xb8 (EF, not-ECT), total 40, ident 0x1234, DF, TTL 64, TCP,
    /// 10.0.0.1 -> 10.0.0.2, checksum 0x13e2 (the ones'-complement sum of the other words is
    /// 0xec1d), then 20 bytes of payload.
    const PACKET: [u8; 40] = [
        0x45, 0xb8, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x13, 0xe2, 10, 0, 0, 1, 10, 0,
        0, 2, 0xc3, 0x50, 0x01, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn deconstruct() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!((p.version(), p.ihl(), p.header_len()), (4, 5, 20));
        assert_eq!((p.dscp(), p.ecn()), (46, 0));
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_fragment() && !p.more_fragments());
        assert_eq!(p.fragment_offset(), 0);
        assert_eq!((p.ttl(), p.protocol()), (64, 6));
        assert_eq!(p.src_addr(), [10, 0, 0, 1]);
        assert_eq!(p.dst_addr(), [10, 0, 0, 2]);
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 20);
        assert!(p.verify_checksum(), "literal checksum 0x13e2 is right");
        let h = Ipv4Header::from_packet(&p);
        assert_eq!(h.transport_offset(), Some(20));
        assert!(!h.is_fragment());
        assert_eq!(h.src_addr(), IpAddress::V4([10, 0, 0, 1]));
    }

    #[test]
    fn padding_after_the_total_length_is_not_payload() {
        let mut padded = [0u8; 46];
        padded[..40].copy_from_slice(&PACKET);
        let p = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload().len(), 20);
    }

    #[test]
    fn options_move_the_transport_header() {
        // IHL 7: router alert (94 04 00 00), then NOP NOP NOP and end of options.
        let mut p = [0u8; 48];
        p[..20].copy_from_slice(&PACKET[..20]);
        p[0] = 0x47;
        p[2..4].copy_from_slice(&48u16.to_be_bytes());
        p[20..28].copy_from_slice(&[0x94, 0x04, 0, 0, 1, 1, 1, 0]);
        let view = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(view.options(), &[0x94, 0x04, 0, 0, 1, 1, 1, 0]);
        assert_eq!(view.payload().len(), 20);
        let h = Ipv4Header::parse(&p).unwrap();
        assert_eq!(h.header_len, 28);
        assert_eq!(h.transport_offset(), Some(28));
    }

    #[test]
    fn first_and_later_fragments() {
        let mut first = PACKET;
        first[6] = 0x20; // MF, offset 0
        let h = Ipv4Header::parse(&first).unwrap();
        assert!(h.more_fragments && h.is_fragment());
        assert_eq!(h.transport_offset(), Some(20));
        let mut last = PACKET;
        last[6..8].copy_from_slice(&185u16.to_be_bytes()); // MF clear, offset 185 * 8 = 1480
        let h = Ipv4Header::parse(&last).unwrap();
        assert_eq!(h.fragment_offset, 1480);
        assert!(h.is_fragment() && !h.more_fragments);
        assert_eq!(h.transport_offset(), None);
        let mut max = PACKET;
        max[6..8].copy_from_slice(&0x3fffu16.to_be_bytes());
        assert_eq!(Ipv4Header::parse(&max).unwrap().fragment_offset, 0xfff8);
    }

    #[test]
    fn ihl_below_five_is_malformed() {
        for ihl in 0..5u8 {
            let mut p = PACKET;
            p[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Header::parse(&p),
                Err(ParseError::Malformed {
                    layer: Layer::Ipv4,
                    reason: Malformation::Ipv4HeaderLength { ihl }
                })
            );
        }
    }

    #[test]
    fn wrong_version_is_malformed() {
        let mut p = PACKET;
        p[0] = 0x65;
        assert_eq!(
            Ipv4Header::parse(&p),
            Err(ParseError::Malformed {
                layer: Layer::Ipv4,
                reason: Malformation::Ipv4Version { found: 6 }
            })
        );
    }

    #[test]
    fn total_length_below_the_header_is_malformed() {
        let mut p = PACKET;
        p[2..4].copy_from_slice(&16u16.to_be_bytes());
        assert_eq!(
            Ipv4Header::parse(&p),
            Err(ParseError::Malformed {
                layer: Layer::Ipv4,
                reason: Malformation::Ipv4TotalLength {
                    total_len: 16,
                    header_len: 20
                }
            })
        );
    }

    #[test]
    fn total_length_beyond_the_bytes_present_is_truncated() {
        let mut p = PACKET;
        p[2..4].copy_from_slice(&1400u16.to_be_bytes());
        assert_eq!(
            Ipv4Header::parse(&p),
            Err(ParseError::Truncated {
                layer: Layer::Ipv4,
                needed: 1400,
                available: 40
            })
        );
    }

    #[test]
    fn header_beyond_the_bytes_present_is_truncated() {
        let mut p = PACKET;
        p[0] = 0x4f; // a 60-byte header in a 40-byte packet
        assert_eq!(
            Ipv4Header::parse(&p),
            Err(ParseError::Truncated {
                layer: Layer::Ipv4,
                needed: 60,
                available: 40
            })
        );
        assert_eq!(
            Ipv4Header::parse(&PACKET[..19]),
            Err(ParseError::Truncated {
                layer: Layer::Ipv4,
                needed: 20,
                available: 19
            })
        );
    }

    #[test]
    fn marking_ce_and_washing_dscp_keep_the_checksum_equal_to_a_recomputation() {
        for tos in 0..=255u8 {
            for (dscp, ecn) in [(0, 3), (46, 3), (0, 0), (63, 1), (tos >> 2, tos & 3)] {
                let mut p = PACKET;
                p[1] = tos;
                Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
                let mut view = Ipv4Packet::new_checked(&mut p[..]).unwrap();
                view.set_dscp_ecn(dscp, ecn);
                assert_eq!((view.dscp(), view.ecn()), (dscp, ecn));
                let incremental = view.checksum();
                view.fill_checksum();
                assert_eq!(
                    incremental,
                    view.checksum(),
                    "tos {tos:#04x} -> {dscp}/{ecn}"
                );
                assert!(view.verify_checksum());
            }
        }
    }

    #[test]
    fn set_ecn_keeps_dscp_and_set_dscp_keeps_ecn() {
        let mut p = PACKET;
        let mut view = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        view.set_ecn(ip::ecn::CE);
        assert_eq!((view.dscp(), view.ecn()), (46, 3));
        view.set_dscp(0);
        assert_eq!((view.dscp(), view.ecn()), (0, 3));
        assert!(view.verify_checksum());
        assert_eq!(p[1], 0x03);
        // Only the TOS byte and the checksum changed.
        assert_eq!(p[2..10], PACKET[2..10]);
        assert_eq!(p[12..], PACKET[12..]);
    }

    #[test]
    fn setters_on_a_short_unchecked_view_do_not_panic() {
        let mut short = [0x45u8, 0xb8, 0x00];
        let mut view = Ipv4Packet::new_unchecked(&mut short[..]);
        view.set_ecn(ip::ecn::CE);
        view.fill_checksum();
        assert_eq!(view.src_addr(), [0; 4]);
    }
}
