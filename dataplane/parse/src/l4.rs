//! TCP and UDP headers: ports, and for TCP the flags and header length.

use crate::ethernet::be16;
use crate::{Layer, ParseError};

/// IP protocol numbers with ports this parser reads.
mod protocol {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    /// UDP-Lite (RFC 3828): UDP's port layout, a coverage field instead of a length.
    pub const UDP_LITE: u8 = 136;
}

mod field {
    pub const TCP_MIN_LEN: usize = 20;
    pub const TCP_DATA_OFFSET: usize = 12;
    pub const TCP_FLAGS: usize = 13;
    pub const UDP_LEN: usize = 8;
}

/// TCP flag bits (the low byte of the flags field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// True when every bit of `mask` is set.
    #[inline]
    pub fn contains(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
}

/// A transport header with ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// IP protocol number (6 TCP, 17 UDP, 136 UDP-Lite).
    pub protocol: u8,
    /// Offset of the transport header in the frame.
    pub offset: u16,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP flags (`None` for UDP).
    pub tcp_flags: Option<TcpFlags>,
    /// Transport header length in bytes (TCP: data offset * 4; UDP: 8).
    pub header_len: u8,
    /// Bytes after the transport header, up to the end of the IP packet.
    pub payload_len: u16,
}

impl Transport {
    /// Parses the transport header at `offset` of `packet` (from the IP header to the end of
    /// the IP packet). `Ok(None)` for protocols without ports.
    pub fn parse(
        protocol: u8,
        packet: &[u8],
        offset: usize,
    ) -> Result<Option<Transport>, ParseError> {
        let segment = packet.get(offset..).unwrap_or_default();
        let (header_len, tcp_flags) = match protocol {
            protocol::TCP => {
                crate::need(segment, field::TCP_MIN_LEN, Layer::Tcp)?;
                let header_len = usize::from(segment[field::TCP_DATA_OFFSET] >> 4) * 4;
                if header_len < field::TCP_MIN_LEN {
                    return Err(ParseError::Malformed {
                        layer: Layer::Tcp,
                        reason: "data offset below 5 words",
                    });
                }
                crate::need(segment, header_len, Layer::Tcp)?;
                (header_len, Some(TcpFlags(segment[field::TCP_FLAGS])))
            }
            protocol::UDP | protocol::UDP_LITE => {
                crate::need(segment, field::UDP_LEN, Layer::Udp)?;
                if protocol == protocol::UDP {
                    let len = usize::from(be16(segment, 4));
                    if len < field::UDP_LEN {
                        return Err(ParseError::Malformed {
                            layer: Layer::Udp,
                            reason: "length below the 8-byte header",
                        });
                    }
                    crate::need(segment, len, Layer::Udp)?;
                }
                (field::UDP_LEN, None)
            }
            _ => return Ok(None),
        };
        Ok(Some(Transport {
            protocol,
            offset: offset.min(usize::from(u16::MAX)) as u16,
            src_port: be16(segment, 0),
            dst_port: be16(segment, 2),
            tcp_flags,
            header_len: header_len as u8,
            payload_len: (segment.len() - header_len).min(usize::from(u16::MAX)) as u16,
        }))
    }

    /// The same header with its offset moved by `by` bytes (from IP-relative to frame-relative).
    #[inline]
    pub(crate) fn shifted(mut self, by: u16) -> Transport {
        self.offset = self.offset.saturating_add(by);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_ports_flags_and_options_length() {
        // 24-byte header (one option word), SYN, then 4 bytes of payload.
        let mut seg = [0u8; 28];
        seg[..4].copy_from_slice(&[0xc3, 0x50, 0x01, 0xbb]);
        seg[12] = 6 << 4;
        seg[13] = TcpFlags::SYN;
        let t = Transport::parse(6, &seg, 0).unwrap().unwrap();
        assert_eq!((t.src_port, t.dst_port), (50000, 443));
        assert!(t.tcp_flags.unwrap().contains(TcpFlags::SYN));
        assert_eq!(t.header_len, 24);
        assert_eq!(t.payload_len, 4);
    }

    #[test]
    fn tcp_data_offset_must_be_sane() {
        let mut seg = [0u8; 20];
        seg[12] = 4 << 4;
        assert!(matches!(
            Transport::parse(6, &seg, 0),
            Err(ParseError::Malformed {
                layer: Layer::Tcp,
                ..
            })
        ));
        seg[12] = 15 << 4;
        assert_eq!(
            Transport::parse(6, &seg, 0),
            Err(ParseError::Truncated {
                layer: Layer::Tcp,
                needed: 60,
                available: 20
            })
        );
        assert!(matches!(
            Transport::parse(6, &seg[..19], 0),
            Err(ParseError::Truncated { .. })
        ));
    }

    #[test]
    fn udp_length_is_checked() {
        let seg = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0, 0, 1, 2, 3, 4];
        let t = Transport::parse(17, &seg, 0).unwrap().unwrap();
        assert_eq!((t.src_port, t.dst_port, t.payload_len), (12345, 53, 4));
        let mut short = seg;
        short[5] = 4;
        assert!(matches!(
            Transport::parse(17, &short, 0),
            Err(ParseError::Malformed { .. })
        ));
        let mut long = seg;
        long[5] = 40;
        assert!(matches!(
            Transport::parse(17, &long, 0),
            Err(ParseError::Truncated { .. })
        ));
    }

    #[test]
    fn other_protocols_have_no_ports() {
        assert_eq!(Transport::parse(1, &[8, 0, 0, 0], 0), Ok(None));
        assert_eq!(Transport::parse(58, &[], 0), Ok(None));
    }
}
