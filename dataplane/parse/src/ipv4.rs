//! IPv4 headers (RFC 791): options, fragments, DSCP and ECN (RFC 2474, RFC 3168).

use crate::ethernet::be16;
use crate::{checksum, need, Layer, ParseError};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    /// Header without options.
    pub const MIN_LEN: usize = 20;
}

/// "More fragments" flag in the flags/fragment-offset word.
const MORE_FRAGMENTS: u16 = 0x2000;
/// Fragment offset bits (in 8-byte units).
const FRAGMENT_OFFSET: u16 = 0x1fff;

/// The fields of an IPv4 header the dataplane uses.
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
    /// Payload protocol (6 TCP, 17 UDP, ...).
    pub protocol: u8,
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Fragment offset in bytes (0 for unfragmented packets and first fragments).
    pub fragment_offset: u16,
    /// More fragments follow.
    pub more_fragments: bool,
}

impl Ipv4Header {
    /// Parses the header at the start of `packet` (the bytes from the IP header to the end of
    /// the frame), checking its lengths against each other and against the bytes present.
    pub fn parse(packet: &[u8]) -> Result<Ipv4Header, ParseError> {
        need(packet, field::MIN_LEN, Layer::Ipv4)?;
        let ver_ihl = packet[field::VER_IHL];
        if ver_ihl >> 4 != 4 {
            return Err(ParseError::Malformed {
                layer: Layer::Ipv4,
                reason: "version is not 4",
            });
        }
        let header_len = usize::from(ver_ihl & 0x0f) * 4;
        if header_len < field::MIN_LEN {
            return Err(ParseError::Malformed {
                layer: Layer::Ipv4,
                reason: "header length below 20 bytes",
            });
        }
        need(packet, header_len, Layer::Ipv4)?;
        let total_len = be16(packet, field::TOTAL_LEN.start);
        if usize::from(total_len) < header_len {
            return Err(ParseError::Malformed {
                layer: Layer::Ipv4,
                reason: "total length shorter than the header",
            });
        }
        need(packet, usize::from(total_len), Layer::Ipv4)?;
        let flags_frag = be16(packet, field::FLAGS_FRAG.start);
        let tos = packet[field::TOS];
        let mut src = [0; 4];
        src.copy_from_slice(&packet[field::SRC]);
        let mut dst = [0; 4];
        dst.copy_from_slice(&packet[field::DST]);
        Ok(Ipv4Header {
            header_len: header_len as u8,
            total_len,
            dscp: tos >> 2,
            ecn: tos & 0x03,
            protocol: packet[field::PROTOCOL],
            src,
            dst,
            fragment_offset: (flags_frag & FRAGMENT_OFFSET) * 8,
            more_fragments: flags_frag & MORE_FRAGMENTS != 0,
        })
    }

    /// Where the transport header starts (from the IP header), or `None` for non-first
    /// fragments, which carry no transport header.
    #[inline]
    pub fn transport_offset(&self) -> Option<usize> {
        (self.fragment_offset == 0).then_some(usize::from(self.header_len))
    }

    /// End of the IP packet, from the IP header (excludes Ethernet padding).
    #[inline]
    pub fn payload_end(&self) -> usize {
        usize::from(self.total_len)
    }
}

/// Rewrites the DSCP and ECN bits of the IPv4 header at the start of `header`, updating the
/// header checksum incrementally. `header` must hold at least 20 bytes of a header that
/// [`Ipv4Header::parse`] accepted.
pub fn set_dscp_ecn(header: &mut [u8], dscp: u8, ecn: u8) -> Result<(), ParseError> {
    need(header, field::MIN_LEN, Layer::Ipv4)?;
    let old_word = be16(header, 0);
    header[field::TOS] = ((dscp & 0x3f) << 2) | (ecn & 0x03);
    let new_word = be16(header, 0);
    let old_sum = be16(header, field::CHECKSUM.start);
    let new_sum = checksum::update(old_sum, old_word, new_word);
    header[field::CHECKSUM].copy_from_slice(&new_sum.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20-byte header, TOS 0xb8 (EF, not-ECT), total 40, DF, TTL 64, TCP, 10.0.0.1 -> 10.0.0.2.
    fn header() -> [u8; 40] {
        let mut p = [0u8; 40];
        p[..20].copy_from_slice(&[
            0x45, 0xb8, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 0, 0, 1,
            10, 0, 0, 2,
        ]);
        let sum = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p
    }

    #[test]
    fn fields_are_decoded() {
        let h = Ipv4Header::parse(&header()).unwrap();
        assert_eq!(h.header_len, 20);
        assert_eq!(h.total_len, 40);
        assert_eq!((h.dscp, h.ecn), (46, 0));
        assert_eq!(h.protocol, 6);
        assert_eq!(h.src, [10, 0, 0, 1]);
        assert_eq!(h.dst, [10, 0, 0, 2]);
        assert_eq!(h.transport_offset(), Some(20));
    }

    #[test]
    fn options_move_the_transport_header() {
        let mut p = [0u8; 48];
        p[..20].copy_from_slice(&header()[..20]);
        p[0] = 0x47; // IHL 7: 8 bytes of options
        p[2..4].copy_from_slice(&48u16.to_be_bytes());
        p[20..24].copy_from_slice(&[0x94, 0x04, 0, 0]); // router alert
        p[24..28].copy_from_slice(&[1, 1, 1, 0]); // NOPs and end of options
        let h = Ipv4Header::parse(&p).unwrap();
        assert_eq!(h.header_len, 28);
        assert_eq!(h.transport_offset(), Some(28));
    }

    #[test]
    fn only_first_fragments_have_a_transport_header() {
        let mut first = header();
        first[6] = 0x20; // MF, offset 0
        let h = Ipv4Header::parse(&first).unwrap();
        assert!(h.more_fragments);
        assert_eq!(h.transport_offset(), Some(20));
        let mut later = header();
        later[6..8].copy_from_slice(&(185u16).to_be_bytes()); // offset 185 * 8 = 1480
        let h = Ipv4Header::parse(&later).unwrap();
        assert_eq!(h.fragment_offset, 1480);
        assert_eq!(h.transport_offset(), None);
    }

    #[test]
    fn inconsistent_lengths_are_rejected_with_a_reason() {
        let mut p = header();
        p[0] = 0x43;
        assert_eq!(
            Ipv4Header::parse(&p),
            Err(ParseError::Malformed {
                layer: Layer::Ipv4,
                reason: "header length below 20 bytes"
            })
        );
        let mut p = header();
        p[0] = 0x65;
        assert!(matches!(
            Ipv4Header::parse(&p),
            Err(ParseError::Malformed { .. })
        ));
        let mut p = header();
        p[2..4].copy_from_slice(&16u16.to_be_bytes());
        assert!(matches!(
            Ipv4Header::parse(&p),
            Err(ParseError::Malformed { .. })
        ));
        let mut p = header();
        p[2..4].copy_from_slice(&1400u16.to_be_bytes());
        assert_eq!(
            Ipv4Header::parse(&p),
            Err(ParseError::Truncated {
                layer: Layer::Ipv4,
                needed: 1400,
                available: 40
            })
        );
        let mut p = header();
        p[0] = 0x4f; // 60-byte header in a 40-byte packet
        assert!(matches!(
            Ipv4Header::parse(&p),
            Err(ParseError::Truncated { needed: 60, .. })
        ));
        assert!(matches!(
            Ipv4Header::parse(&header()[..19]),
            Err(ParseError::Truncated {
                needed: 20,
                available: 19,
                ..
            })
        ));
    }

    #[test]
    fn marking_ce_keeps_the_checksum_valid() {
        let mut p = header();
        set_dscp_ecn(&mut p, 46, 3).unwrap();
        let h = Ipv4Header::parse(&p).unwrap();
        assert_eq!((h.dscp, h.ecn), (46, 3));
        assert_eq!(checksum::ones_complement_sum(&p[..20]), 0xffff);
        set_dscp_ecn(&mut p, 0, 3).unwrap();
        assert_eq!(p[1], 0x03);
        assert_eq!(checksum::ones_complement_sum(&p[..20]), 0xffff);
    }
}
