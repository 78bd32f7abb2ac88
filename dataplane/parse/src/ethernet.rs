//! Ethernet II, 802.3 length frames, 802.1Q/802.1ad tags and PPPoE sessions: everything in
//! front of the IP header.

use crate::{need, Layer, ParseError};

/// Most VLAN tags accepted in front of the payload. QinQ uses two; four leaves room for a
/// provider's extra stacking without letting a crafted frame make the parser loop long.
pub const MAX_VLAN_TAGS: usize = 4;

mod field {
    use core::ops::Range;
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Ethernet header without tags.
    pub const HEADER_LEN: usize = 14;
    /// One VLAN tag: TCI then the next EtherType.
    pub const TAG_LEN: usize = 4;
    /// PPPoE session header: version/type, code, session, length.
    pub const PPPOE_LEN: usize = 6;
    /// PPP protocol field after the PPPoE header.
    pub const PPP_PROTOCOL_LEN: usize = 2;
}

/// EtherType values this parser distinguishes.
mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag still found on older switches.
    pub const QINQ_LEGACY: u16 = 0x9100;
    pub const PPPOE_SESSION: u16 = 0x8864;
    /// Values below this are 802.3 lengths, not EtherTypes.
    pub const MIN_ETHERTYPE: u16 = 0x0600;
}

/// PPP protocol numbers carried in PPPoE sessions.
mod ppp {
    pub const IPV4: u16 = 0x0021;
    pub const IPV6: u16 = 0x0057;
}

/// PPPoE version 1, type 1 (RFC 2516), packed into one byte.
const PPPOE_VERSION_TYPE: u8 = 0x11;

/// What follows the layer-2 headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherType {
    /// IPv4 (directly or inside PPPoE).
    Ipv4,
    /// IPv6 (directly or inside PPPoE).
    Ipv6,
    /// ARP.
    Arp,
    /// Anything else; the value is the EtherType (or the 802.3 length, or the PPP protocol
    /// inside a PPPoE session).
    Other(u16),
}

/// The layer-2 headers of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Header {
    /// What the payload after all layer-2 headers is.
    pub ethertype: EtherType,
    /// Offset of the payload (the IP header, for IP frames).
    pub l3_offset: u16,
    /// The VLAN tags' TCI values, outermost first; `vlan_count` of them are valid.
    pub vlan_tci: [u16; MAX_VLAN_TAGS],
    /// Number of VLAN tags.
    pub vlan_count: u8,
    /// The PPPoE session id, for frames inside a PPPoE session.
    pub pppoe_session: Option<u16>,
}

impl L2Header {
    /// The VLAN tags' TCI values, outermost first.
    pub fn vlan_tags(&self) -> &[u16] {
        &self.vlan_tci[..self.vlan_count as usize]
    }

    /// Parses the Ethernet header, any VLAN tags and a PPPoE session header.
    pub fn parse(frame: &[u8]) -> Result<L2Header, ParseError> {
        need(frame, field::HEADER_LEN, Layer::Ethernet)?;
        let mut header = L2Header {
            ethertype: EtherType::Other(0),
            l3_offset: 0,
            vlan_tci: [0; MAX_VLAN_TAGS],
            vlan_count: 0,
            pppoe_session: None,
        };
        let mut offset = field::HEADER_LEN;
        let mut ethertype = be16(frame, field::ETHERTYPE.start);
        while matches!(
            ethertype,
            ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY
        ) {
            if header.vlan_count as usize == MAX_VLAN_TAGS {
                return Err(ParseError::TooManyVlanTags);
            }
            let tag = frame.get(offset..).unwrap_or_default();
            need(tag, field::TAG_LEN, Layer::Vlan)?;
            header.vlan_tci[header.vlan_count as usize] = be16(tag, 0);
            header.vlan_count += 1;
            ethertype = be16(tag, 2);
            offset += field::TAG_LEN;
        }
        let ethertype = if ethertype == ethertype::PPPOE_SESSION {
            let pppoe = frame.get(offset..).unwrap_or_default();
            need(
                pppoe,
                field::PPPOE_LEN + field::PPP_PROTOCOL_LEN,
                Layer::Pppoe,
            )?;
            if pppoe[0] != PPPOE_VERSION_TYPE {
                return Err(ParseError::Malformed {
                    layer: Layer::Pppoe,
                    reason: "version/type is not 1/1",
                });
            }
            if pppoe[1] != 0 {
                return Err(ParseError::Malformed {
                    layer: Layer::Pppoe,
                    reason: "session data must have code 0",
                });
            }
            let length = usize::from(be16(pppoe, 4));
            if length < field::PPP_PROTOCOL_LEN {
                return Err(ParseError::Malformed {
                    layer: Layer::Pppoe,
                    reason: "length is shorter than the PPP protocol field",
                });
            }
            if field::PPPOE_LEN + length > pppoe.len() {
                return Err(ParseError::Truncated {
                    layer: Layer::Pppoe,
                    needed: field::PPPOE_LEN + length,
                    available: pppoe.len(),
                });
            }
            header.pppoe_session = Some(be16(pppoe, 2));
            offset += field::PPPOE_LEN + field::PPP_PROTOCOL_LEN;
            match be16(pppoe, field::PPPOE_LEN) {
                ppp::IPV4 => EtherType::Ipv4,
                ppp::IPV6 => EtherType::Ipv6,
                other => EtherType::Other(other),
            }
        } else {
            match ethertype {
                ethertype::IPV4 => EtherType::Ipv4,
                ethertype::IPV6 => EtherType::Ipv6,
                ethertype::ARP => EtherType::Arp,
                // 802.3 frames (STP, some LLC protocols) carry a length here.
                t if t < ethertype::MIN_ETHERTYPE => EtherType::Other(t),
                other => EtherType::Other(other),
            }
        };
        header.ethertype = ethertype;
        // At most 14 + 4 * 4 + 8 bytes: always fits.
        header.l3_offset = offset as u16;
        Ok(header)
    }
}

/// A big-endian u16 at `at`; callers have checked the bounds.
#[inline]
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACS: [u8; 12] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1];

    fn frame(rest: &[u8]) -> [u8; 64] {
        let mut f = [0u8; 64];
        f[..12].copy_from_slice(&MACS);
        f[12..12 + rest.len()].copy_from_slice(rest);
        f
    }

    #[test]
    fn plain_ipv4_starts_after_14_bytes() {
        let h = L2Header::parse(&frame(&[0x08, 0x00])).unwrap();
        assert_eq!(h.ethertype, EtherType::Ipv4);
        assert_eq!(h.l3_offset, 14);
        assert!(h.vlan_tags().is_empty());
    }

    #[test]
    fn qinq_tags_are_kept_outermost_first() {
        let h = L2Header::parse(&frame(&[
            0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x20, 0xc8, 0x86, 0xdd,
        ]))
        .unwrap();
        assert_eq!(h.ethertype, EtherType::Ipv6);
        assert_eq!(h.vlan_tags(), &[10, 0x20c8]);
        assert_eq!(h.l3_offset, 22);
    }

    #[test]
    fn legacy_9100_outer_tag_is_a_tag() {
        let h = L2Header::parse(&frame(&[0x91, 0x00, 0, 5, 0x08, 0x00])).unwrap();
        assert_eq!(h.vlan_tags(), &[5]);
        assert_eq!(h.ethertype, EtherType::Ipv4);
    }

    #[test]
    fn five_tags_are_too_many() {
        let mut rest = [0u8; 22];
        for i in 0..5 {
            rest[i * 4..i * 4 + 2].copy_from_slice(&[0x81, 0x00]);
        }
        rest[20..22].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(
            L2Header::parse(&frame(&rest)),
            Err(ParseError::TooManyVlanTags)
        );
    }

    #[test]
    fn pppoe_session_ipv4_and_ipv6() {
        let v4 = frame(&[0x88, 0x64, 0x11, 0x00, 0x12, 0x34, 0x00, 0x16, 0x00, 0x21]);
        let h = L2Header::parse(&v4).unwrap();
        assert_eq!(h.ethertype, EtherType::Ipv4);
        assert_eq!(h.pppoe_session, Some(0x1234));
        assert_eq!(h.l3_offset, 22);
        let v6 = frame(&[0x88, 0x64, 0x11, 0x00, 0, 1, 0x00, 0x2a, 0x00, 0x57]);
        assert_eq!(L2Header::parse(&v6).unwrap().ethertype, EtherType::Ipv6);
    }

    #[test]
    fn pppoe_control_protocols_and_discovery_are_not_ip() {
        let lcp = frame(&[0x88, 0x64, 0x11, 0x00, 0, 1, 0x00, 0x06, 0xc0, 0x21]);
        assert_eq!(
            L2Header::parse(&lcp).unwrap().ethertype,
            EtherType::Other(0xc021)
        );
        let padi = frame(&[0x88, 0x63, 0x11, 0x09, 0, 0, 0, 4]);
        assert_eq!(
            L2Header::parse(&padi).unwrap().ethertype,
            EtherType::Other(0x8863)
        );
    }

    #[test]
    fn pppoe_errors_name_the_problem() {
        let bad_version = frame(&[0x88, 0x64, 0x21, 0x00, 0, 1, 0, 2, 0x00, 0x21]);
        assert!(matches!(
            L2Header::parse(&bad_version),
            Err(ParseError::Malformed {
                layer: Layer::Pppoe,
                ..
            })
        ));
        let long = frame(&[0x88, 0x64, 0x11, 0x00, 0, 1, 0x05, 0xdc, 0x00, 0x21]);
        assert!(matches!(
            L2Header::parse(&long),
            Err(ParseError::Truncated {
                layer: Layer::Pppoe,
                needed: 1506,
                ..
            })
        ));
        let short = [&MACS[..], &[0x88, 0x64, 0x11, 0x00, 0, 1]].concat();
        assert!(matches!(
            L2Header::parse(&short),
            Err(ParseError::Truncated {
                layer: Layer::Pppoe,
                ..
            })
        ));
    }

    #[test]
    fn arp_lldp_and_8023_frames_are_not_errors() {
        assert_eq!(
            L2Header::parse(&frame(&[0x08, 0x06])).unwrap().ethertype,
            EtherType::Arp
        );
        assert_eq!(
            L2Header::parse(&frame(&[0x88, 0xcc])).unwrap().ethertype,
            EtherType::Other(0x88cc)
        );
        // STP BPDU: 802.3 length 38, then LLC 42 42 03.
        assert_eq!(
            L2Header::parse(&frame(&[0x00, 0x26, 0x42, 0x42, 0x03]))
                .unwrap()
                .ethertype,
            EtherType::Other(38)
        );
    }

    #[test]
    fn runts_and_cut_tags_are_truncated() {
        assert_eq!(
            L2Header::parse(&MACS),
            Err(ParseError::Truncated {
                layer: Layer::Ethernet,
                needed: 14,
                available: 12
            })
        );
        let cut = [&MACS[..], &[0x81, 0x00, 0x00]].concat();
        assert!(matches!(
            L2Header::parse(&cut),
            Err(ParseError::Truncated {
                layer: Layer::Vlan,
                ..
            })
        ));
    }
}
