//! PPPoE session headers (RFC 2516) and the PPP protocol field behind them (RFC 1661). Owns the
//! 6-byte PPPoE header and the 1- or 2-byte PPP protocol; what the PPP payload is, IPv4, IPv6 or
//! PPP's own control protocols, is for the caller to act on. Discovery frames (EtherType
//! 0x8863) never reach this module: they are not IP.

use crate::{malformed, need, octets, Layer, Malformation, ParseError};

/// The PPPoE header: version/type, code, session id, length.
pub const HEADER_LEN: usize = 6;

/// PPP protocol numbers (IANA "PPP DLL protocol numbers").
pub mod ppp_protocol {
    /// IPv4.
    pub const IPV4: u16 = 0x0021;
    /// IPv6.
    pub const IPV6: u16 = 0x0057;
    /// IP control protocol.
    pub const IPCP: u16 = 0x8021;
    /// IPv6 control protocol.
    pub const IPV6CP: u16 = 0x8057;
    /// Link control protocol (echo requests keep sessions alive).
    pub const LCP: u16 = 0xc021;
}

mod field {
    use core::ops::Range;
    pub const VERSION_TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const SESSION_ID: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    /// The PPP protocol field, the first bytes of the PPPoE payload.
    pub const PPP_PROTOCOL: usize = 6;
}

/// Version 1, type 1, the only values RFC 2516 defines, packed in one byte.
const VERSION_TYPE: u8 = 0x11;
/// The code of every session frame (RFC 2516 section 6).
const SESSION_DATA: u8 = 0x00;

/// A view of a PPPoE session header at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PppoeSession<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PppoeSession<T> {
    /// A view without checks. Getters read zeros for bytes the buffer does not have.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> PppoeSession<T> {
        PppoeSession { buffer }
    }

    /// A view of a session frame whose header is version 1 type 1 with code 0, whose length
    /// covers the PPP protocol field, and whose payload is all present.
    pub fn new_checked(buffer: T) -> Result<PppoeSession<T>, ParseError> {
        let session = PppoeSession { buffer };
        let buf = session.buffer.as_ref();
        need(buf, HEADER_LEN, Layer::Pppoe)?;
        if session.version_type() != VERSION_TYPE {
            return Err(malformed(
                Layer::Pppoe,
                Malformation::PppoeVersionType {
                    found: session.version_type(),
                },
            ));
        }
        if session.code() != SESSION_DATA {
            return Err(malformed(
                Layer::Pppoe,
                Malformation::PppoeCode {
                    found: session.code(),
                },
            ));
        }
        need(buf, session.ppp_payload_offset(), Layer::Pppoe)?;
        let length = session.length();
        if usize::from(length) < session.protocol_field_len() {
            return Err(malformed(
                Layer::Pppoe,
                Malformation::PppoeLength { length },
            ));
        }
        need(buf, session.end(), Layer::Pppoe)?;
        Ok(session)
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (high nibble) and type (low nibble): 0x11.
    #[inline]
    pub fn version_type(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::VERSION_TYPE)
    }

    /// Code: 0 for session data.
    #[inline]
    pub fn code(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// The session id the access concentrator assigned.
    #[inline]
    pub fn session_id(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::SESSION_ID.start)
    }

    /// Length of the PPPoE payload (PPP protocol field and PPP payload) in bytes.
    #[inline]
    pub fn length(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// 1 when the PPP protocol field is compressed (RFC 1661 section 6.5: its first byte is
    /// odd, which no uncompressed protocol number's is), else 2.
    #[inline]
    pub fn protocol_field_len(&self) -> usize {
        if octets::u8_at(self.buffer.as_ref(), field::PPP_PROTOCOL) & 1 == 1 {
            1
        } else {
            2
        }
    }

    /// The PPP protocol number, expanded if it was compressed.
    #[inline]
    pub fn ppp_protocol(&self) -> u16 {
        let buf = self.buffer.as_ref();
        if self.protocol_field_len() == 1 {
            u16::from(octets::u8_at(buf, field::PPP_PROTOCOL))
        } else {
            octets::u16_at(buf, field::PPP_PROTOCOL)
        }
    }

    /// Offset of the PPP payload (the IP header, for IP) from the PPPoE header.
    #[inline]
    pub fn ppp_payload_offset(&self) -> usize {
        field::PPP_PROTOCOL.saturating_add(self.protocol_field_len())
    }

    /// End of the PPPoE payload, from the PPPoE header: what the length field covers.
    #[inline]
    pub fn end(&self) -> usize {
        HEADER_LEN.saturating_add(usize::from(self.length()))
    }

    /// The PPP payload: from after the protocol field to the end the length gives (Ethernet
    /// padding after it is excluded).
    #[inline]
    pub fn ppp_payload(&self) -> &[u8] {
        octets::range(self.buffer.as_ref(), self.ppp_payload_offset(), self.end())
    }
}

impl<'a> PppoeSession<&'a [u8]> {
    /// The PPP payload, borrowed for as long as the frame.
    #[inline]
    pub fn into_ppp_payload(self) -> &'a [u8] {
        octets::range(self.buffer, self.ppp_payload_offset(), self.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session 0x1234, length 6: PPP protocol IPv4 and four bytes of (pretend) IP, then two
    /// bytes of Ethernet padding.
    const SESSION_IPV4: [u8; 14] = [
        0x11, 0x00, 0x12, 0x34, 0x00, 0x06, 0x00, 0x21, 0x45, 0x00, 0x00, 0x14, 0xee, 0xee,
    ];

    #[test]
    fn deconstruct() {
        let s = PppoeSession::new_checked(&SESSION_IPV4[..]).unwrap();
        assert_eq!((s.version_type(), s.code()), (0x11, 0));
        assert_eq!(s.session_id(), 0x1234);
        assert_eq!(s.length(), 6);
        assert_eq!(s.ppp_protocol(), ppp_protocol::IPV4);
        assert_eq!(s.ppp_payload_offset(), 8);
        assert_eq!(
            s.ppp_payload(),
            &[0x45, 0x00, 0x00, 0x14],
            "padding excluded"
        );
        assert_eq!(s.into_ppp_payload().len(), 4);
    }

    #[test]
    fn ipv6_and_control_protocols() {
        let mut v6 = SESSION_IPV4;
        v6[7] = 0x57;
        let s = PppoeSession::new_checked(&v6[..]).unwrap();
        assert_eq!(s.ppp_protocol(), ppp_protocol::IPV6);
        let mut lcp = SESSION_IPV4;
        lcp[6..8].copy_from_slice(&[0xc0, 0x21]);
        let s = PppoeSession::new_checked(&lcp[..]).unwrap();
        assert_eq!(s.ppp_protocol(), ppp_protocol::LCP);
    }

    #[test]
    fn compressed_protocol_field_is_one_byte() {
        // 0x21 alone: IPv4 with protocol field compression; the IP header starts at 7.
        let frame = [0x11, 0x00, 0x00, 0x01, 0x00, 0x03, 0x21, 0x45, 0x00];
        let s = PppoeSession::new_checked(&frame[..]).unwrap();
        assert_eq!(s.protocol_field_len(), 1);
        assert_eq!(s.ppp_protocol(), ppp_protocol::IPV4);
        assert_eq!(s.ppp_payload(), &[0x45, 0x00]);
    }

    #[test]
    fn wrong_version_type_or_code_is_malformed() {
        let mut bad = SESSION_IPV4;
        bad[0] = 0x21;
        assert_eq!(
            PppoeSession::new_checked(&bad[..]),
            Err(ParseError::Malformed {
                layer: Layer::Pppoe,
                reason: Malformation::PppoeVersionType { found: 0x21 }
            })
        );
        let mut padt = SESSION_IPV4;
        padt[1] = 0xa7;
        assert_eq!(
            PppoeSession::new_checked(&padt[..]),
            Err(ParseError::Malformed {
                layer: Layer::Pppoe,
                reason: Malformation::PppoeCode { found: 0xa7 }
            })
        );
    }

    #[test]
    fn length_must_cover_the_protocol_and_fit_the_frame() {
        let mut short = SESSION_IPV4;
        short[5] = 1;
        assert_eq!(
            PppoeSession::new_checked(&short[..]),
            Err(ParseError::Malformed {
                layer: Layer::Pppoe,
                reason: Malformation::PppoeLength { length: 1 }
            })
        );
        let mut long = SESSION_IPV4;
        long[4..6].copy_from_slice(&1492u16.to_be_bytes());
        assert_eq!(
            PppoeSession::new_checked(&long[..]),
            Err(ParseError::Truncated {
                layer: Layer::Pppoe,
                needed: 1498,
                available: 14
            })
        );
    }

    #[test]
    fn cut_headers_are_truncated() {
        for len in 0..8 {
            assert!(
                matches!(
                    PppoeSession::new_checked(&SESSION_IPV4[..len]),
                    Err(ParseError::Truncated {
                        layer: Layer::Pppoe,
                        ..
                    })
                ),
                "{len} bytes"
            );
        }
    }
}
