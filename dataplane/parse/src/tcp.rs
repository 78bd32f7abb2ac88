//! TCP headers (RFC 9293 section 3.1): ports, sequence and acknowledgment numbers, flags, data
//! offset. Owns the header's consistency with the bytes present; reads options only as bytes
//! (CAKE's ACK filter interprets the few it needs).

use crate::{malformed, need, octets, Layer, Malformation, ParseError};

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// The eight flag bits of byte 13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronise sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// The raw bits.
    #[inline]
    pub fn bits(self) -> u8 {
        self.0
    }

    /// True when every flag of `other` is set.
    #[inline]
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when any flag of `other` is set.
    #[inline]
    pub fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
}

/// A view of a TCP segment at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// A view without checks. Getters read zeros for bytes the buffer does not have.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// A view of a buffer holding a whole TCP header: data offset at least 5 words, and that
    /// many bytes present.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, ParseError> {
        let packet = TcpPacket { buffer };
        need(packet.buffer.as_ref(), MIN_HEADER_LEN, Layer::Tcp)?;
        let words = packet.data_offset();
        if usize::from(words) < MIN_HEADER_LEN / 4 {
            return Err(malformed(Layer::Tcp, Malformation::TcpDataOffset { words }));
        }
        need(packet.buffer.as_ref(), packet.header_len(), Layer::Tcp)?;
        Ok(packet)
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        octets::u32_at(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        octets::u32_at(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Data offset: header length in 32-bit words.
    #[inline]
    pub fn data_offset(&self) -> u8 {
        octets::u8_at(self.buffer.as_ref(), field::DATA_OFFSET) >> 4
    }

    /// Header length in bytes, options included (data offset times 4, at most 60).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset() << 2)
    }

    /// Flags.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(octets::u8_at(self.buffer.as_ref(), field::FLAGS))
    }

    /// Receive window (unscaled).
    #[inline]
    pub fn window(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::WINDOW.start)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        octets::u16_at(self.buffer.as_ref(), field::URGENT.start)
    }

    /// The options: the header after its first 20 bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        octets::range(self.buffer.as_ref(), MIN_HEADER_LEN, self.header_len())
    }

    /// The data after the header, up to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        octets::rest(self.buffer.as_ref(), self.header_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 50000 -> 443, seq 1, ack 0x01020304, data offset 6 (one option word: MSS 1460), SYN|ACK,
    /// window 65535, then 4 bytes of data.
    const SYN_ACK: [u8; 28] = [
        0xc3, 0x50, 0x01, 0xbb, 0, 0, 0, 1, 1, 2, 3, 4, 0x60, 0x12, 0xff, 0xff, 0x12, 0x34, 0, 0,
        0x02, 0x04, 0x05, 0xb4, 0xa, 0xb, 0xc, 0xd,
    ];

    #[test]
    fn deconstruct() {
        let tcp = TcpPacket::new_checked(&SYN_ACK[..]).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (50000, 443));
        assert_eq!((tcp.seq_number(), tcp.ack_number()), (1, 0x0102_0304));
        assert_eq!((tcp.data_offset(), tcp.header_len()), (6, 24));
        assert_eq!(tcp.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert!(tcp.flags().contains(TcpFlags::SYN));
        assert!(!tcp.flags().intersects(TcpFlags::FIN | TcpFlags::RST));
        assert_eq!(
            (tcp.window(), tcp.checksum(), tcp.urgent()),
            (0xffff, 0x1234, 0)
        );
        assert_eq!(tcp.options(), &[0x02, 0x04, 0x05, 0xb4]);
        assert_eq!(tcp.payload(), &[0xa, 0xb, 0xc, 0xd]);
        assert_eq!(tcp.flags().bits(), 0x12);
    }

    #[test]
    fn data_offset_below_five_is_malformed() {
        for words in 0..5u8 {
            let mut seg = SYN_ACK;
            seg[12] = words << 4;
            assert_eq!(
                TcpPacket::new_checked(&seg[..]),
                Err(ParseError::Malformed {
                    layer: Layer::Tcp,
                    reason: Malformation::TcpDataOffset { words }
                })
            );
        }
    }

    #[test]
    fn data_offset_beyond_the_segment_is_truncated() {
        let mut seg = SYN_ACK;
        seg[12] = 15 << 4;
        assert_eq!(
            TcpPacket::new_checked(&seg[..]),
            Err(ParseError::Truncated {
                layer: Layer::Tcp,
                needed: 60,
                available: 28
            })
        );
    }

    #[test]
    fn a_cut_fixed_header_is_truncated() {
        assert_eq!(
            TcpPacket::new_checked(&SYN_ACK[..19]),
            Err(ParseError::Truncated {
                layer: Layer::Tcp,
                needed: 20,
                available: 19
            })
        );
    }
}
