//! IPv6 headers (RFC 8200) and their extension-header chain: hop-by-hop, routing, fragment,
//! destination options, AH (RFC 4302), and the mobility, HIP and shim6 headers that share their
//! layout. Owns the fixed header, the walk to the upper-layer header (bounded by
//! [`MAX_IPV6_EXT_HEADERS`]) and the traffic-class rewrite; IPv6 has no header checksum, and
//! the traffic class is not in TCP's or UDP's pseudo-header, so a rewrite touches nothing else.

use crate::ip::{self, protocol, IpAddress};
use crate::{malformed, need, octets, Layer, Malformation, ParseError};

/// Most extension headers walked before the upper-layer header. RFC 8200 section 4.1
/// recommends each at most once (destination options twice): seven in all. Eight admits every
/// legitimate chain and bounds the walk a crafted one can cause.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// The fixed header.
pub const HEADER_LEN: usize = 40;

/// The smallest extension header: every length is a multiple of 8 octets, at least 8.
pub const MIN_EXT_HEADER_LEN: usize = 8;

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;

    /// In every extension header.
    pub const EXT_NEXT_HEADER: usize = 0;
    pub const EXT_LENGTH: usize = 1;
    /// In the fragment header.
    pub const FRAG_OFFSET_FLAGS: Range<usize> = 2..4;
    pub const FRAG_IDENT: Range<usize> = 4..8;
}

/// Fragment offset bits of the fragment header's offset/flags word (8-byte units, already in
/// place: the word masked is the offset in bytes).
const FRAGMENT_OFFSET: u16 = 0xfff8;
/// "More fragments" in the same word.
const MORE_FRAGMENTS: u16 = 0x0001;

/// True for the next-header values whose header this walk steps over. Anything else ends the
/// chain and is the upper layer: TCP, UDP, ICMPv6, no-next-header, and ESP (what follows it is
/// encrypted).
#[inline]
pub fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        protocol::HOP_BY_HOP
            | protocol::ROUTING
            | protocol::FRAGMENT
            | protocol::DESTINATION_OPTIONS
            | protocol::AH
            | protocol::MOBILITY
            | protocol::HIP
            | protocol::SHIM6
    )
}

/// A view of an IPv6 packet at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// A view without checks. Getters read zeros for bytes the buffer does not have; setters
    /// drop writes to them.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// A view of a buffer holding a consistent IPv6 packet: version 6, not a jumbogram, and
    /// the whole payload present (more bytes may follow: Ethernet padding).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, ParseError> {
        let packet = Ipv6Packet { buffer };
        packet.check_len()?;
        Ok(packet)
    }

    /// The checks of [`Ipv6Packet::new_checked`].
    pub fn check_len(&self) -> Result<(), ParseError> {
        need(self.buffer.as_ref(), HEADER_LEN, Layer::Ipv6)?;
        if self.version() != 6 {
            return Err(malformed(
                Layer::Ipv6,
                Malformation::Ipv6Version {
                    found: self.version(),
                },
            ));
        }
        if self.payload_len() == 0 && self.next_header() == protocol::HOP_BY_HOP {
            return Err(malformed(Layer::Ipv6, Malformation::Ipv6Jumbogram));
        }
        need(self.buffer.as_ref(), self.packet_len(), Layer::Ipv6)
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn first_word(&self) -> u32 {
        octets::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }

    /// Version: 6.
    #[inline]
    pub fn version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    /// Traffic class: DSCP and ECN.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
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

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Payload length: extension headers and upper layer, in bytes.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::PAYLOAD_LEN.start)
    }

    /// The header after the fixed one: an extension header or the upper layer.
    #[inline]
    pub fn next_header(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::NEXT_HEADER)
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        octets::array(self.buffer.as_ref(), field::SRC.start)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        octets::array(self.buffer.as_ref(), field::DST.start)
    }

    /// Length of the whole packet, fixed header included.
    #[inline]
    pub fn packet_len(&self) -> usize {
        HEADER_LEN.saturating_add(usize::from(self.payload_len()))
    }

    /// The packet: fixed header and payload, Ethernet padding excluded.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        octets::range(self.buffer.as_ref(), 0, self.packet_len())
    }

    /// The payload: extension headers and upper layer, padding excluded.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        octets::range(self.buffer.as_ref(), HEADER_LEN, self.packet_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Rewrites the traffic class, keeping the version and the flow label.
    #[inline]
    pub fn set_traffic_class(&mut self, traffic_class: u8) {
        let word = self.first_word();
        let word = (word & 0xf00f_ffff) | (u32::from(traffic_class) << 20);
        if let Some(bytes) = self.buffer.as_mut().get_mut(field::VER_TC_FLOW) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
    }

    /// Rewrites DSCP and ECN together. Bits beyond each field's width are ignored.
    #[inline]
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.set_traffic_class(ip::traffic_class(dscp, ecn));
    }

    /// Rewrites the DSCP (a wash sets 0), keeping ECN.
    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let ecn = self.ecn();
        self.set_dscp_ecn(dscp, ecn);
    }

    /// Rewrites the ECN field (CAKE marks [`ip::ecn::CE`]), keeping DSCP.
    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let dscp = self.dscp();
        self.set_dscp_ecn(dscp, ecn);
    }
}

/// A view of one extension header, of the kind its predecessor's next-header field named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    kind: u8,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// A view without checks of an extension header of type `kind`.
    #[inline]
    pub const fn new_unchecked(buffer: T, kind: u8) -> Ipv6ExtHeader<T> {
        Ipv6ExtHeader { buffer, kind }
    }

    /// A view of an extension header of type `kind` whose whole length is present.
    #[inline]
    pub fn new_checked(buffer: T, kind: u8) -> Result<Ipv6ExtHeader<T>, ParseError> {
        let header = Ipv6ExtHeader { buffer, kind };
        need(
            header.buffer.as_ref(),
            MIN_EXT_HEADER_LEN,
            Layer::Ipv6Extension,
        )?;
        need(
            header.buffer.as_ref(),
            header.header_len(),
            Layer::Ipv6Extension,
        )?;
        Ok(header)
    }

    /// The next-header value this view was opened with.
    #[inline]
    pub fn kind(&self) -> u8 {
        self.kind
    }

    /// The header after this one.
    #[inline]
    pub fn next_header(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::EXT_NEXT_HEADER)
    }

    /// This header's length in bytes: (length + 1) * 8 for most, (length + 2) * 4 for AH (RFC
    /// 4302 section 2.2), always 8 for the fragment header (its second byte is reserved).
    #[inline]
    pub fn header_len(&self) -> usize {
        let length = usize::from(octets::u8_at(self.buffer.as_ref(), field::EXT_LENGTH));
        match self.kind {
            protocol::FRAGMENT => MIN_EXT_HEADER_LEN,
            // At most 257 * 4 = 1028: no overflow.
            protocol::AH => length.saturating_add(2).saturating_mul(4),
            // At most 256 * 8 = 2048.
            _ => length.saturating_add(1).saturating_mul(8),
        }
    }

    /// The header's bytes.
    #[inline]
    pub fn header(&self) -> &[u8] {
        octets::range(self.buffer.as_ref(), 0, self.header_len())
    }
}

/// What a fragment header says about its fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Fragment {
    /// Offset of this fragment's data in the datagram, in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// Identification, shared by the datagram's fragments.
    pub ident: u32,
}

impl Ipv6Fragment {
    /// Reads a fragment header (8 bytes, checked by the caller; missing bytes read as zero).
    #[inline]
    pub fn from_header(header: &[u8]) -> Ipv6Fragment {
        let word = octets::u16_at(header, field::FRAG_OFFSET_FLAGS.start);
        Ipv6Fragment {
            offset: word & FRAGMENT_OFFSET,
            more: word & MORE_FRAGMENTS != 0,
            ident: octets::u32_at(header, field::FRAG_IDENT.start),
        }
    }
}

/// The fields of an IPv6 header the dataplane uses, with the result of walking its extension
/// headers. `Copy`, no borrow of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Differentiated services code point.
    pub dscp: u8,
    /// ECN field.
    pub ecn: u8,
    /// Flow label.
    pub flow_label: u32,
    /// Hop limit.
    pub hop_limit: u8,
    /// Payload length (extension headers and upper layer), bytes.
    pub payload_len: u16,
    /// The upper-layer protocol that ends the extension chain (6 TCP, 17 UDP, 58 ICMPv6, 50
    /// ESP, 59 none, ...). After a non-first fragment, the protocol its fragment header names.
    pub next_header: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub upper_offset: u16,
    /// Extension headers walked.
    pub extension_headers: u8,
    /// The fragment header, if the chain has one.
    pub fragment: Option<Ipv6Fragment>,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
}

impl Ipv6Header {
    /// Decodes a checked packet, walking its extension headers: each must be whole within the
    /// payload length, hop-by-hop may only come first, and there may be at most
    /// [`MAX_IPV6_EXT_HEADERS`]. The walk stops early at a non-first fragment, whose payload
    /// continues the datagram.
    pub fn from_packet<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Header, ParseError> {
        let bytes = packet.packet();
        let mut next = packet.next_header();
        let mut offset = HEADER_LEN;
        let mut count: u8 = 0;
        let mut fragment = None;
        while is_extension_header(next) {
            if usize::from(count) >= MAX_IPV6_EXT_HEADERS {
                return Err(ParseError::TooManyExtensionHeaders);
            }
            if next == protocol::HOP_BY_HOP && count != 0 {
                return Err(malformed(
                    Layer::Ipv6Extension,
                    Malformation::HopByHopNotFirst,
                ));
            }
            let ext = Ipv6ExtHeader::new_checked(octets::rest(bytes, offset), next)?;
            count = count.saturating_add(1);
            next = ext.next_header();
            offset = offset.saturating_add(ext.header_len());
            if ext.kind() == protocol::FRAGMENT {
                let this = Ipv6Fragment::from_header(ext.header());
                fragment = Some(this);
                if this.offset != 0 {
                    break;
                }
            }
        }
        Ok(Ipv6Header {
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            flow_label: packet.flow_label(),
            hop_limit: packet.hop_limit(),
            payload_len: packet.payload_len(),
            next_header: next,
            // At most 40 + 8 * 2048 = 16,424 bytes.
            upper_offset: u16::try_from(offset).unwrap_or(u16::MAX),
            extension_headers: count,
            fragment,
            src: packet.src_addr(),
            dst: packet.dst_addr(),
        })
    }

    /// Checks and decodes the packet at the start of `packet`.
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<Ipv6Header, ParseError> {
        Ipv6Header::from_packet(&Ipv6Packet::new_checked(packet)?)
    }

    /// True for the first fragment of a larger datagram (offset 0, more to come). An atomic
    /// fragment (offset 0, no more) is a whole datagram.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| f.offset == 0 && f.more)
    }

    /// True for a fragment other than the first: no upper-layer header in it.
    #[inline]
    pub fn is_later_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| f.offset != 0)
    }

    /// Where the upper-layer header starts, from the IPv6 header; `None` in a later fragment.
    #[inline]
    pub fn transport_offset(&self) -> Option<usize> {
        (!self.is_later_fragment()).then_some(usize::from(self.upper_offset))
    }

    /// Length of the whole packet, fixed header included.
    #[inline]
    pub fn packet_len(&self) -> usize {
        HEADER_LEN.saturating_add(usize::from(self.payload_len))
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> IpAddress {
        IpAddress::V6(self.src)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> IpAddress {
        IpAddress::V6(self.dst)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A fixed header: traffic class `tc`, flow label 0xabcde, hop limit 64,
    /// 2001:db8::1 -> 2001:db8::2, then `payload`.
    fn packet(next: u8, tc: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = std::vec![
            0x60 | (tc >> 4),
            (tc << 4) | 0x0a,
            0xbc,
            0xde,
            0,
            0,
            next,
            64
        ];
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(payload);
        p
    }

    const UDP: [u8; 8] = [0x30, 0x39, 0, 53, 0, 8, 0, 0];

    #[test]
    fn deconstruct() {
        let p = packet(17, 0xb9, &UDP);
        let view = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(view.version(), 6);
        assert_eq!(view.traffic_class(), 0xb9);
        assert_eq!((view.dscp(), view.ecn()), (46, 1));
        assert_eq!(view.flow_label(), 0xabcde);
        assert_eq!(view.payload_len(), 8);
        assert_eq!((view.next_header(), view.hop_limit()), (17, 64));
        assert_eq!(view.src_addr()[15], 1);
        assert_eq!(view.dst_addr()[15], 2);
        assert_eq!(view.payload(), &UDP);
        let h = Ipv6Header::from_packet(&view).unwrap();
        assert_eq!((h.next_header, h.extension_headers), (17, 0));
        assert_eq!(h.transport_offset(), Some(40));
        assert_eq!(h.packet_len(), 48);
        assert_eq!(h.fragment, None);
    }

    /// One extension header of each kind in front of UDP: the upper layer is found after it.
    #[test]
    fn each_extension_header_kind_is_stepped_over() {
        let cases: [(u8, &[u8], usize); 5] = [
            // Hop-by-hop, length 0 (8 bytes): router alert option, PadN.
            (0, &[17, 0, 5, 2, 0, 0, 1, 0], 48),
            // Routing type 4 (segment routing) header, length 2: 24 bytes.
            (
                43,
                &[
                    17, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
                64,
            ),
            // Atomic fragment: offset 0, M clear.
            (44, &[17, 0, 0, 0, 0, 0, 0, 1], 48),
            // Destination options, length 0, PadN.
            (60, &[17, 0, 1, 4, 0, 0, 0, 0], 48),
            // AH, payload length 4: (4 + 2) * 4 = 24 bytes.
            (
                51,
                &[
                    17, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
                64,
            ),
        ];
        for (kind, ext, upper) in cases {
            let payload = [ext, &UDP[..]].concat();
            let p = packet(kind, 0, &payload);
            let h = Ipv6Header::parse(&p).unwrap();
            assert_eq!(h.extension_headers, 1, "kind {kind}");
            assert_eq!(h.next_header, 17, "kind {kind}");
            assert_eq!(h.transport_offset(), Some(upper), "kind {kind}");
        }
    }

    #[test]
    fn a_chain_of_every_kind() {
        let payload = [
            &[60u8, 0, 1, 4, 0, 0, 0, 0][..], // hop-by-hop -> dest opts
            &[43, 0, 1, 4, 0, 0, 0, 0],       // dest opts -> routing
            &[51, 0, 4, 0, 0, 0, 0, 0],       // routing -> AH
            &[44, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0], // AH (16 bytes) -> fragment
            &[6, 0, 0, 1, 0, 0, 0, 7],        // first fragment (M) -> TCP
            &[0; 20],
        ]
        .concat();
        let h = Ipv6Header::parse(&packet(0, 0, &payload)).unwrap();
        assert_eq!(h.extension_headers, 5);
        assert_eq!(h.next_header, 6);
        // 40 + 8 + 8 + 8 + 16 + 8.
        assert_eq!(h.transport_offset(), Some(88));
        assert_eq!(
            h.fragment,
            Some(Ipv6Fragment {
                offset: 0,
                more: true,
                ident: 7
            })
        );
        assert!(h.is_first_fragment());
    }

    #[test]
    fn a_later_fragment_has_no_upper_layer() {
        // Offset 0x05c8 & 0xfff8 = 1480 bytes, M clear.
        let p = packet(
            44,
            0,
            &[17, 0, 0x05, 0xc8, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef],
        );
        let h = Ipv6Header::parse(&p).unwrap();
        assert!(h.is_later_fragment() && !h.is_first_fragment());
        assert_eq!(h.fragment.unwrap().offset, 1480);
        assert_eq!(h.transport_offset(), None);
    }

    #[test]
    fn esp_and_no_next_header_end_the_chain() {
        let h = Ipv6Header::parse(&packet(50, 0, &[0; 16])).unwrap();
        assert_eq!((h.next_header, h.extension_headers), (protocol::ESP, 0));
        let h = Ipv6Header::parse(&packet(60, 0, &[59, 0, 1, 4, 0, 0, 0, 0])).unwrap();
        assert_eq!(
            (h.next_header, h.upper_offset),
            (protocol::NO_NEXT_HEADER, 48)
        );
    }

    #[test]
    fn a_chain_longer_than_the_bound_is_an_error() {
        // Ten destination options headers, each naming another.
        let payload = [60u8, 0, 1, 4, 0, 0, 0, 0].repeat(10);
        assert_eq!(
            Ipv6Header::parse(&packet(60, 0, &payload)),
            Err(ParseError::TooManyExtensionHeaders)
        );
        // Eight, then UDP: at the bound, accepted.
        let mut eight = [60u8, 0, 1, 4, 0, 0, 0, 0].repeat(8);
        eight[56] = 17;
        eight.extend_from_slice(&UDP);
        let h = Ipv6Header::parse(&packet(60, 0, &eight)).unwrap();
        assert_eq!(usize::from(h.extension_headers), MAX_IPV6_EXT_HEADERS);
        assert_eq!(h.transport_offset(), Some(40 + 64));
    }

    #[test]
    fn an_extension_header_beyond_the_payload_is_truncated() {
        // Routing header claiming 24 bytes in an 8-byte payload.
        assert_eq!(
            Ipv6Header::parse(&packet(43, 0, &[17, 2, 0, 0, 0, 0, 0, 0])),
            Err(ParseError::Truncated {
                layer: Layer::Ipv6Extension,
                needed: 24,
                available: 8
            })
        );
        // A fragment header cut to 4 bytes.
        assert_eq!(
            Ipv6Header::parse(&packet(44, 0, &[17, 0, 0, 0])),
            Err(ParseError::Truncated {
                layer: Layer::Ipv6Extension,
                needed: 8,
                available: 4
            })
        );
        // Bytes beyond the payload length (padding) do not count.
        let mut p = packet(43, 0, &[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        p[5] = 8;
        assert!(matches!(
            Ipv6Header::parse(&p),
            Err(ParseError::Truncated {
                layer: Layer::Ipv6Extension,
                ..
            })
        ));
    }

    #[test]
    fn hop_by_hop_after_another_header_is_malformed() {
        let p = packet(60, 0, &[0, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Header::parse(&p),
            Err(ParseError::Malformed {
                layer: Layer::Ipv6Extension,
                reason: Malformation::HopByHopNotFirst
            })
        );
    }

    #[test]
    fn payload_length_beyond_the_frame_is_truncated() {
        let mut p = packet(17, 0, &UDP);
        p[4..6].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(
            Ipv6Header::parse(&p),
            Err(ParseError::Truncated {
                layer: Layer::Ipv6,
                needed: 1040,
                available: 48
            })
        );
        assert_eq!(
            Ipv6Header::parse(&p[..39]),
            Err(ParseError::Truncated {
                layer: Layer::Ipv6,
                needed: 40,
                available: 39
            })
        );
    }

    #[test]
    fn wrong_version_and_jumbograms_are_malformed() {
        let mut v4 = packet(17, 0, &UDP);
        v4[0] = 0x45;
        assert_eq!(
            Ipv6Header::parse(&v4),
            Err(ParseError::Malformed {
                layer: Layer::Ipv6,
                reason: Malformation::Ipv6Version { found: 4 }
            })
        );
        let mut jumbo = packet(0, 0, &[17, 0, 0xc2, 4, 0, 1, 0, 0]);
        jumbo[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(
            Ipv6Header::parse(&jumbo),
            Err(ParseError::Malformed {
                layer: Layer::Ipv6,
                reason: Malformation::Ipv6Jumbogram
            })
        );
    }

    #[test]
    fn rewriting_the_traffic_class_keeps_version_and_flow_label() {
        let mut p = packet(17, 0x02, &UDP);
        let original = p.clone();
        let mut view = Ipv6Packet::new_checked(&mut p[..]).unwrap();
        view.set_ecn(ip::ecn::CE);
        assert_eq!((view.dscp(), view.ecn()), (0, 3));
        view.set_dscp(10);
        assert_eq!((view.dscp(), view.ecn()), (10, 3));
        assert_eq!((view.version(), view.flow_label()), (6, 0xabcde));
        // 10 << 2 | 3 = 0x2b: 0x62 0xba, the rest unchanged.
        assert_eq!(p[..2], [0x62, 0xba]);
        assert_eq!(p[2..], original[2..]);
    }
}
