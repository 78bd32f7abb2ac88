//! UDP headers (RFC 768), and UDP-Lite's (RFC 3828), which share the port layout and put a
//! checksum coverage where UDP has its length. Owns the 8-byte header and, for whole datagrams,
//! the length's consistency with the bytes present.

use crate::{malformed, need, octets, Layer, Malformation, ParseError};

/// The header: two ports, length, checksum.
pub const HEADER_LEN: usize = 8;

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// A view of a UDP datagram at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// A view without checks. Getters read zeros for bytes the buffer does not have.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// A view of a whole datagram: the header present, its length at least 8 and no more than
    /// the bytes present.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, ParseError> {
        let packet = UdpPacket::new_checked_header(buffer)?;
        let length = packet.len();
        if usize::from(length) < HEADER_LEN {
            return Err(malformed(Layer::Udp, Malformation::UdpLength { length }));
        }
        need(packet.buffer.as_ref(), usize::from(length), Layer::Udp)?;
        Ok(packet)
    }

    /// A view of a buffer holding at least the 8-byte header, with no check of the length
    /// field: for the first fragment of a datagram (its length counts bytes in later
    /// fragments) and for UDP-Lite (where the field is a checksum coverage).
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<UdpPacket<T>, ParseError> {
        need(buffer.as_ref(), HEADER_LEN, Layer::Udp)?;
        Ok(UdpPacket { buffer })
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Length field: header and data in bytes (UDP-Lite: checksum coverage).
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Checksum field (0: none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The data: after the header, up to the length field's end (or the buffer's, if that is
    /// sooner).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        let end = usize::from(self.len()).min(buf.len());
        octets::range(buf, HEADER_LEN, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DNS query's first bytes: 12345 -> 53, length 12, checksum 0xabcd, 4 bytes of data.
    const DNS: [u8; 12] = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0xab, 0xcd, 1, 2, 3, 4];

    #[test]
    fn deconstruct() {
        let udp = UdpPacket::new_checked(&DNS[..]).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (12345, 53));
        assert_eq!((udp.len(), udp.checksum()), (12, 0xabcd));
        assert_eq!(udp.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn trailing_bytes_beyond_the_length_are_not_payload() {
        let mut longer = [0u8; 16];
        longer[..12].copy_from_slice(&DNS);
        assert_eq!(
            UdpPacket::new_checked(&longer[..]).unwrap().payload().len(),
            4
        );
    }

    #[test]
    fn length_below_the_header_is_malformed() {
        let mut short = DNS;
        short[5] = 4;
        assert_eq!(
            UdpPacket::new_checked(&short[..]),
            Err(ParseError::Malformed {
                layer: Layer::Udp,
                reason: Malformation::UdpLength { length: 4 }
            })
        );
    }

    #[test]
    fn length_beyond_the_bytes_present_is_truncated_unless_only_the_header_is_checked() {
        let mut long = DNS;
        long[5] = 40;
        assert_eq!(
            UdpPacket::new_checked(&long[..]),
            Err(ParseError::Truncated {
                layer: Layer::Udp,
                needed: 40,
                available: 12
            })
        );
        let first_fragment = UdpPacket::new_checked_header(&long[..]).unwrap();
        assert_eq!(first_fragment.dst_port(), 53);
        assert_eq!(first_fragment.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn a_cut_header_is_truncated() {
        assert_eq!(
            UdpPacket::new_checked_header(&DNS[..7]),
            Err(ParseError::Truncated {
                layer: Layer::Udp,
                needed: 8,
                available: 7
            })
        );
    }
}
