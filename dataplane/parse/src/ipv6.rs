//! IPv6 headers (RFC 8200) and their extension-header chain.

use crate::ethernet::be16;
use crate::{need, Layer, ParseError};

/// Most extension headers walked before the transport header. RFC 8200 recommends each type
/// at most once (destination options twice), about seven in all; eight bounds a crafted chain.
pub const MAX_IPV6_EXTENSION_HEADERS: usize = 8;

mod field {
    use core::ops::Range;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    pub const HEADER_LEN: usize = 40;
}

/// Next-header values of the extension headers the walk steps over, and "no next header".
/// Anything else ends the walk and is the upper layer (ESP among them: what follows it is
/// encrypted).
mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTH: u8 = 51;
    pub const NO_NEXT: u8 = 59;
    pub const DEST_OPTIONS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
}

/// The fields of an IPv6 header the dataplane uses, with the result of walking its extension
/// headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Differentiated services code point.
    pub dscp: u8,
    /// ECN field.
    pub ecn: u8,
    /// Payload length (extension headers and upper layer), bytes.
    pub payload_len: u16,
    /// The upper-layer protocol after the extension headers (6 TCP, 17 UDP, 58 ICMPv6, 50
    /// ESP, 59 none...).
    pub next_header: u8,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Offset of the upper-layer header from the IPv6 header.
    pub upper_offset: u16,
    /// Extension headers walked.
    pub extension_headers: u8,
    /// A fragment header with a non-zero offset was found: no upper-layer header here.
    pub later_fragment: bool,
}

impl Ipv6Header {
    /// Parses the header at the start of `packet` and walks its extension headers.
    pub fn parse(packet: &[u8]) -> Result<Ipv6Header, ParseError> {
        need(packet, field::HEADER_LEN, Layer::Ipv6)?;
        if packet[0] >> 4 != 6 {
            return Err(ParseError::Malformed {
                layer: Layer::Ipv6,
                reason: "version is not 6",
            });
        }
        let traffic_class = (packet[0] << 4) | (packet[1] >> 4);
        let payload_len = be16(packet, field::PAYLOAD_LEN.start);
        let mut next = packet[field::NEXT_HEADER];
        if payload_len == 0 && next == next_header::HOP_BY_HOP {
            return Err(ParseError::Malformed {
                layer: Layer::Ipv6,
                reason: "jumbograms (payload length 0) do not exist on Ethernet",
            });
        }
        let end = field::HEADER_LEN + usize::from(payload_len);
        need(packet, end, Layer::Ipv6)?;
        let packet = &packet[..end];

        let mut offset = field::HEADER_LEN;
        let mut count = 0u8;
        let mut later_fragment = false;
        loop {
            let len = match next {
                next_header::HOP_BY_HOP
                | next_header::ROUTING
                | next_header::DEST_OPTIONS
                | next_header::MOBILITY
                | next_header::HIP
                | next_header::SHIM6 => {
                    if next == next_header::HOP_BY_HOP && count != 0 {
                        return Err(ParseError::Malformed {
                            layer: Layer::Ipv6,
                            reason: "hop-by-hop options must come first",
                        });
                    }
                    // Length in 8-octet units, not counting the first 8 octets.
                    ext_len(packet, offset, |l| (l + 1) * 8)?
                }
                next_header::FRAGMENT => {
                    let ext = packet
                        .get(offset..offset + 8)
                        .ok_or(ParseError::Truncated {
                            layer: Layer::Ipv6,
                            needed: offset + 8,
                            available: packet.len(),
                        })?;
                    if be16(ext, 2) & 0xfff8 != 0 {
                        later_fragment = true;
                    }
                    8
                }
                // Length in 4-octet units, not counting the first 8 octets (RFC 4302).
                next_header::AUTH => ext_len(packet, offset, |l| (l + 2) * 4)?,
                _ => break,
            };
            count += 1;
            if usize::from(count) > MAX_IPV6_EXTENSION_HEADERS {
                return Err(ParseError::TooManyExtensionHeaders);
            }
            next = packet[offset];
            offset += len;
            if later_fragment {
                break;
            }
        }
        let mut src = [0; 16];
        src.copy_from_slice(&packet[field::SRC]);
        let mut dst = [0; 16];
        dst.copy_from_slice(&packet[field::DST]);
        Ok(Ipv6Header {
            dscp: traffic_class >> 2,
            ecn: traffic_class & 0x03,
            payload_len,
            next_header: next,
            src,
            dst,
            // At most 40 + 65535.
            upper_offset: offset.min(usize::from(u16::MAX)) as u16,
            extension_headers: count,
            later_fragment,
        })
    }

    /// Where the upper-layer header starts (from the IPv6 header), or `None` after a later
    /// fragment or when there is none.
    #[inline]
    pub fn transport_offset(&self) -> Option<usize> {
        (!self.later_fragment && self.next_header != next_header::NO_NEXT)
            .then_some(usize::from(self.upper_offset))
    }

    /// End of the IPv6 packet, from the IPv6 header.
    #[inline]
    pub fn payload_end(&self) -> usize {
        field::HEADER_LEN + usize::from(self.payload_len)
    }
}

/// The length of the extension header at `offset`, from its length byte, checked to fit.
fn ext_len(
    packet: &[u8],
    offset: usize,
    scale: impl Fn(usize) -> usize,
) -> Result<usize, ParseError> {
    let len_byte = packet.get(offset + 1).ok_or(ParseError::Truncated {
        layer: Layer::Ipv6,
        needed: offset + 2,
        available: packet.len(),
    })?;
    let len = scale(usize::from(*len_byte));
    if offset + len > packet.len() {
        return Err(ParseError::Truncated {
            layer: Layer::Ipv6,
            needed: offset + len,
            available: packet.len(),
        });
    }
    Ok(len)
}

/// Rewrites the DSCP and ECN bits of the IPv6 header at the start of `header` (IPv6 has no
/// header checksum).
pub fn set_dscp_ecn(header: &mut [u8], dscp: u8, ecn: u8) -> Result<(), ParseError> {
    need(header, 2, Layer::Ipv6)?;
    let tc = ((dscp & 0x3f) << 2) | (ecn & 0x03);
    header[0] = 0x60 | (tc >> 4);
    header[1] = (tc << 4) | (header[1] & 0x0f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, tc: u8, payload: &[u8]) -> [u8; 128] {
        let mut p = [0u8; 128];
        p[0] = 0x60 | (tc >> 4);
        p[1] = (tc << 4) | 0x0a; // flow label bits are kept
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p[8..24].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p[24..40].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p[40..40 + payload.len()].copy_from_slice(payload);
        p
    }

    #[test]
    fn plain_udp() {
        let p = packet(17, 0xb9, &[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        let h = Ipv6Header::parse(&p).unwrap();
        assert_eq!((h.dscp, h.ecn), (46, 1));
        assert_eq!(h.next_header, 17);
        assert_eq!(h.transport_offset(), Some(40));
        assert_eq!(h.src[15], 1);
        assert_eq!(h.dst[15], 2);
        assert_eq!(h.payload_end(), 48);
    }

    #[test]
    fn a_chain_of_every_kind_of_extension_header() {
        let mut payload = [0u8; 8 * 6];
        payload[0..8].copy_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop -> dest opts
        payload[8..16].copy_from_slice(&[43, 0, 1, 0, 0, 0, 0, 0]); // dest opts -> routing
        payload[16..24].copy_from_slice(&[51, 0, 4, 0, 0, 0, 0, 0]); // routing -> AH
        payload[24..40].copy_from_slice(&[44, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // AH (16) -> frag
        payload[40..48].copy_from_slice(&[6, 0, 0, 1, 0, 0, 0, 7]); // first fragment -> TCP
        let p = packet(0, 0, &payload);
        let h = Ipv6Header::parse(&p).unwrap();
        assert_eq!(h.extension_headers, 5);
        assert_eq!(h.next_header, 6);
        assert_eq!(h.transport_offset(), Some(88));
    }

    #[test]
    fn a_later_fragment_has_no_upper_layer() {
        let p = packet(44, 0, &[17, 0, 0x05, 0xc8, 0, 0, 0, 9, 0, 0, 0, 0]);
        let h = Ipv6Header::parse(&p).unwrap();
        assert!(h.later_fragment);
        assert_eq!(h.transport_offset(), None);
    }

    #[test]
    fn chains_too_long_or_cut_short_are_rejected() {
        let mut payload = [0u8; 80];
        for i in 0..10 {
            payload[i * 8] = 60; // destination options, chained ten times
        }
        let p = packet(60, 0, &payload);
        assert_eq!(
            Ipv6Header::parse(&p),
            Err(ParseError::TooManyExtensionHeaders)
        );
        // Routing header claiming 16 more octets than the payload has.
        let p = packet(43, 0, &[17, 2, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            Ipv6Header::parse(&p),
            Err(ParseError::Truncated {
                layer: Layer::Ipv6,
                ..
            })
        ));
        // Hop-by-hop anywhere but first.
        let p = packet(60, 0, &[0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            Ipv6Header::parse(&p),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn payload_length_beyond_the_frame_is_truncated() {
        let mut p = packet(17, 0, &[0; 8]);
        p[4..6].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(
            Ipv6Header::parse(&p),
            Err(ParseError::Truncated {
                layer: Layer::Ipv6,
                needed: 1040,
                available: 128
            })
        );
        assert!(matches!(
            Ipv6Header::parse(&p[..39]),
            Err(ParseError::Truncated { .. })
        ));
        let mut v4 = packet(17, 0, &[0; 8]);
        v4[0] = 0x45;
        assert!(matches!(
            Ipv6Header::parse(&v4),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn rewriting_the_traffic_class_keeps_the_flow_label() {
        let mut p = packet(17, 0x02, &[0; 8]);
        set_dscp_ecn(&mut p, 10, 3).unwrap();
        let h = Ipv6Header::parse(&p).unwrap();
        assert_eq!((h.dscp, h.ecn), (10, 3));
        assert_eq!(p[1] & 0x0f, 0x0a);
    }
}
