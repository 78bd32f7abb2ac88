//! Zero-copy parsing of the frames a bump in the wire sees.
//!
//! A transparent bridge between a core router and a head-end meets Ethernet frames carrying
//! 802.1Q and 802.1ad (QinQ) tags, PPPoE sessions, IPv4 with options and fragments, IPv6 with
//! extension-header chains, and everything else a LAN carries (ARP, ND, LLDP, STP, LACP). The
//! workers need, per frame and without copying: where the IP header starts, the addresses, the
//! DSCP and ECN bits, and for TCP and UDP the ports (and TCP's flags). [`parse_frame`] finds
//! them and returns a small `Copy` [`Frame`] of offsets and decoded fields.
//!
//! What this crate must never do: panic, read out of bounds, or allocate, whatever the bytes.
//! Every length field is checked against the bytes present before it is used; every read goes
//! through bounds-checked accessors (the crate denies indexing, `unwrap` and unchecked
//! arithmetic outside its tests). Frames that are not IP are not errors (the bridge forwards
//! them); only headers that are truncated or inconsistent are, each with a [`ParseError`] that
//! names the layer and what is wrong.
//!
//! One file per protocol, smoltcp-style: [`ethernet`], [`vlan`], [`pppoe`], [`ipv4`], [`ipv6`],
//! [`tcp`], [`udp`], each with a typed view over a byte buffer (`Ipv4Packet<T: AsRef<[u8]>>`
//! and so on) with a checked constructor; [`ip`] holds what IPv4 and IPv6 share, and
//! [`checksum`] the incremental update (RFC 1624) behind the in-place rewrites CAKE does (ECN
//! CE marks, DSCP wash).
//!
//! ```
//! use sheetcake_parse::{ip, parse_frame, Ipv4Packet, Network};
//!
//! // Ethernet, IPv4 (ECT(0), UDP, 10.0.0.1 -> 10.0.0.2), UDP 1234 -> 53 with no data.
//! let mut frame = [
//!     2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
//!     0x45, 0x02, 0x00, 0x1c, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
//!     0x04, 0xd2, 0x00, 0x35, 0x00, 0x08, 0, 0, // UDP
//! ];
//! let parsed = parse_frame(&frame)?;
//! assert_eq!(parsed.ecn(), Some(ip::ecn::ECT0));
//! assert_eq!(parsed.l4.map(|l4| l4.dst_port), Some(53));
//!
//! // CAKE signals congestion: mark CE in place; the header checksum follows (RFC 1624).
//! if let Network::Ipv4(_) = parsed.network {
//!     let l3 = usize::from(parsed.l3_offset);
//!     let mut packet = Ipv4Packet::new_checked(&mut frame[l3..])?;
//!     packet.set_ecn(ip::ecn::CE);
//! }
//! assert_eq!(parse_frame(&frame)?.ecn(), Some(ip::ecn::CE));
//! # Ok::<(), sheetcake_parse::ParseError>(())
//! ```

#![forbid(unsafe_code)]
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod checksum;
pub mod ethernet;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod pppoe;
pub mod tcp;
pub mod udp;
pub mod vlan;

use core::fmt;

pub use ethernet::EthernetFrame;
pub use ip::{IpAddress, IpVersion};
pub use ipv4::{Ipv4Header, Ipv4Packet};
pub use ipv6::{Ipv6Header, Ipv6Packet, MAX_IPV6_EXT_HEADERS};
pub use pppoe::PppoeSession;
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;
pub use vlan::{VlanStack, VlanTag, MAX_VLAN_TAGS};

/// The protocol layer a parse error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Ethernet header.
    Ethernet,
    /// An 802.1Q or 802.1ad tag.
    Vlan,
    /// PPPoE session header and PPP protocol field.
    Pppoe,
    /// IPv4 header.
    Ipv4,
    /// IPv6 fixed header.
    Ipv6,
    /// One of the IPv6 extension headers.
    Ipv6Extension,
    /// TCP header.
    Tcp,
    /// UDP (or UDP-Lite) header.
    Udp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "Ethernet",
            Layer::Vlan => "VLAN tag",
            Layer::Pppoe => "PPPoE",
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::Ipv6Extension => "IPv6 extension",
            Layer::Tcp => "TCP",
            Layer::Udp => "UDP",
        })
    }
}

/// What is inconsistent in a header: one variant per rule, carrying the offending value, so
/// drops can be counted by reason without strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    /// PPPoE version/type byte other than 0x11 (RFC 2516 section 4).
    PppoeVersionType { found: u8 },
    /// PPPoE session frame with a code other than 0 (RFC 2516 section 6).
    PppoeCode { found: u8 },
    /// PPPoE length too short for the PPP protocol field it must hold.
    PppoeLength { length: u16 },
    /// EtherType or PPP protocol said IPv4, the version nibble did not.
    Ipv4Version { found: u8 },
    /// IHL below 5 words (RFC 791).
    Ipv4HeaderLength { ihl: u8 },
    /// Total length shorter than the header.
    Ipv4TotalLength { total_len: u16, header_len: u8 },
    /// EtherType or PPP protocol said IPv6, the version nibble did not.
    Ipv6Version { found: u8 },
    /// Payload length 0 with a hop-by-hop header: a jumbogram (RFC 2675), which needs a link
    /// MTU above 65,575 bytes and so never arrives over Ethernet.
    Ipv6Jumbogram,
    /// Hop-by-hop options anywhere but first (RFC 8200 section 4.1).
    HopByHopNotFirst,
    /// TCP data offset below 5 words (RFC 9293 section 3.1).
    TcpDataOffset { words: u8 },
    /// UDP length below its own 8-byte header (RFC 768).
    UdpLength { length: u16 },
}

impl fmt::Display for Malformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Malformation::PppoeVersionType { found } => {
                write!(f, "version/type {found:#04x}, expected 0x11")
            }
            Malformation::PppoeCode { found } => {
                write!(f, "session frame with code {found:#04x}, expected 0x00")
            }
            Malformation::PppoeLength { length } => {
                write!(f, "length {length} does not cover the PPP protocol field")
            }
            Malformation::Ipv4Version { found } => write!(f, "version {found}, expected 4"),
            Malformation::Ipv4HeaderLength { ihl } => {
                write!(f, "IHL {ihl} words, the minimum is 5 (20 bytes)")
            }
            Malformation::Ipv4TotalLength {
                total_len,
                header_len,
            } => write!(
                f,
                "total length {total_len} is shorter than the {header_len}-byte header"
            ),
            Malformation::Ipv6Version { found } => write!(f, "version {found}, expected 6"),
            Malformation::Ipv6Jumbogram => f.write_str(
                "payload length 0 with hop-by-hop options (a jumbogram, impossible on Ethernet)",
            ),
            Malformation::HopByHopNotFirst => {
                f.write_str("hop-by-hop options after another extension header, allowed only first")
            }
            Malformation::TcpDataOffset { words } => {
                write!(f, "data offset {words} words, the minimum is 5 (20 bytes)")
            }
            Malformation::UdpLength { length } => {
                write!(f, "length {length} is shorter than the 8-byte header")
            }
        }
    }
}

/// Why a frame could not be parsed. Frames that are simply not IP are not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The frame ends before a header (or the packet a length field announces) does.
    Truncated {
        /// The layer whose header is cut short.
        layer: Layer,
        /// Bytes that layer needs, counted from its first byte.
        needed: usize,
        /// Bytes present from its first byte.
        available: usize,
    },
    /// A header field contradicts the header, the protocol, or the frame.
    Malformed {
        /// The layer.
        layer: Layer,
        /// Which rule is broken, with the offending value.
        reason: Malformation,
    },
    /// More VLAN tags than [`MAX_VLAN_TAGS`].
    TooManyVlanTags,
    /// More IPv6 extension headers than [`MAX_IPV6_EXT_HEADERS`].
    TooManyExtensionHeaders,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated {
                layer,
                needed,
                available,
            } => write!(
                f,
                "{layer} header truncated: needs {needed} bytes from its start, {available} present"
            ),
            ParseError::Malformed { layer, reason } => {
                write!(f, "{layer} header malformed: {reason}")
            }
            ParseError::TooManyVlanTags => {
                write!(f, "more than {MAX_VLAN_TAGS} stacked VLAN tags")
            }
            ParseError::TooManyExtensionHeaders => {
                write!(f, "more than {MAX_IPV6_EXT_HEADERS} IPv6 extension headers")
            }
        }
    }
}

/// `Ok` when `buf` holds `needed` bytes for `layer`, else the [`ParseError::Truncated`] that
/// says so.
#[inline]
pub(crate) fn need(buf: &[u8], needed: usize, layer: Layer) -> Result<(), ParseError> {
    if buf.len() < needed {
        Err(ParseError::Truncated {
            layer,
            needed,
            available: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Shorthand for a [`ParseError::Malformed`].
#[inline]
pub(crate) fn malformed(layer: Layer, reason: Malformation) -> ParseError {
    ParseError::Malformed { layer, reason }
}

/// Big-endian reads and writes that cannot go out of bounds. The views check lengths once, in
/// their checked constructors; these accessors make a view built unchecked over a short buffer
/// read zeros and drop writes instead of panicking. On checked views the branch is never taken.
pub(crate) mod octets {
    /// The `N` bytes at `at`, or zeros when they are not all present.
    #[inline]
    pub fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
        buf.get(at..)
            .and_then(|rest| rest.get(..N))
            .and_then(|bytes| bytes.try_into().ok())
            .unwrap_or([0; N])
    }

    #[inline]
    pub fn u8_at(buf: &[u8], at: usize) -> u8 {
        buf.get(at).copied().unwrap_or(0)
    }

    #[inline]
    pub fn u16_at(buf: &[u8], at: usize) -> u16 {
        u16::from_be_bytes(array(buf, at))
    }

    #[inline]
    pub fn u32_at(buf: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(array(buf, at))
    }

    #[inline]
    pub fn set_u16(buf: &mut [u8], at: usize, value: u16) {
        if let Some(bytes) = buf.get_mut(at..).and_then(|rest| rest.get_mut(..2)) {
            bytes.copy_from_slice(&value.to_be_bytes());
        }
    }

    /// `buf[from..to]`, or the empty slice when that range is not inside `buf`.
    #[inline]
    pub fn range(buf: &[u8], from: usize, to: usize) -> &[u8] {
        buf.get(from..to).unwrap_or_default()
    }

    /// `buf[from..]`, or the empty slice.
    #[inline]
    pub fn rest(buf: &[u8], from: usize) -> &[u8] {
        buf.get(from..).unwrap_or_default()
    }
}

/// The network layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// IPv4, directly or inside PPPoE.
    Ipv4(Ipv4Header),
    /// IPv6, directly or inside PPPoE.
    Ipv6(Ipv6Header),
    /// ARP (CAKE puts it in the highest tin).
    Arp,
    /// A PPPoE session frame carrying PPP's own protocols (LCP, IPCP, IPv6CP, ...).
    PppControl {
        /// The PPP protocol number.
        protocol: u16,
    },
    /// An IEEE 802.3 frame: a length where the EtherType would be (below 0x0600), then LLC;
    /// STP BPDUs among them.
    Llc {
        /// The 802.3 length field.
        length: u16,
    },
    /// Any other EtherType: LLDP, LACP, PPPoE discovery, MPLS, unknown ones.
    Other {
        /// The EtherType after any VLAN tags.
        ethertype: u16,
    },
}

/// The transport header of a TCP, UDP or UDP-Lite packet: the fields CAKE's flow hash and ACK
/// filter start from. For more (sequence numbers, options), open a [`TcpPacket`] at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4 {
    /// IP protocol number ([`ip::protocol::TCP`], [`ip::protocol::UDP`] or
    /// [`ip::protocol::UDP_LITE`]).
    pub protocol: u8,
    /// Offset of the transport header from the start of the frame.
    pub offset: u16,
    /// Transport header length in bytes: TCP's data offset times 4, or 8.
    pub header_len: u8,
    /// Bytes after the transport header up to the end of the IP packet (Ethernet padding is not
    /// counted; for a first fragment, up to the end of the fragment).
    pub payload_len: u16,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP flags, `None` for UDP.
    pub tcp_flags: Option<TcpFlags>,
}

impl L4 {
    /// Reads the transport header at the start of `segment` (the IP payload after any
    /// extension headers, up to the end of the IP packet). `offset` is where `segment` starts
    /// in the frame. `first_fragment` says the IP packet is the first fragment of a larger
    /// datagram: UDP's length then covers bytes that are not here, and is not checked against
    /// them. `Ok(None)` for protocols without ports.
    #[inline]
    pub fn parse(
        protocol: u8,
        segment: &[u8],
        offset: usize,
        first_fragment: bool,
    ) -> Result<Option<L4>, ParseError> {
        let (header_len, src_port, dst_port, tcp_flags) = match protocol {
            ip::protocol::TCP => {
                let tcp = TcpPacket::new_checked(segment)?;
                (
                    tcp.header_len(),
                    tcp.src_port(),
                    tcp.dst_port(),
                    Some(tcp.flags()),
                )
            }
            ip::protocol::UDP if !first_fragment => {
                let udp = UdpPacket::new_checked(segment)?;
                (udp::HEADER_LEN, udp.src_port(), udp.dst_port(), None)
            }
            ip::protocol::UDP | ip::protocol::UDP_LITE => {
                let udp = UdpPacket::new_checked_header(segment)?;
                (udp::HEADER_LEN, udp.src_port(), udp.dst_port(), None)
            }
            _ => return Ok(None),
        };
        // Both fit in u16: the segment is part of an IP packet whose length is a u16 (IPv4
        // total length; IPv6 payload length), and the offset is at most 38 bytes of layer 2
        // plus 60 of IPv4 or 40 + 8 * 2048 of IPv6 headers.
        let payload_len = segment.len().saturating_sub(header_len);
        Ok(Some(L4 {
            protocol,
            offset: u16::try_from(offset).unwrap_or(u16::MAX),
            header_len: u8::try_from(header_len).unwrap_or(u8::MAX),
            payload_len: u16::try_from(payload_len).unwrap_or(u16::MAX),
            src_port,
            dst_port,
            tcp_flags,
        }))
    }
}

/// What a frame contains, as offsets into it and decoded fields. `Copy`, no references: it can
/// be kept beside the frame (in an mbuf's private area, for instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the network header: the end of Ethernet, VLAN tags and PPPoE.
    pub l3_offset: u16,
    /// The VLAN tags, outermost first.
    pub vlan: VlanStack,
    /// The PPPoE session id, for frames inside a PPPoE session.
    pub pppoe_session: Option<u16>,
    /// The network layer.
    pub network: Network,
    /// TCP or UDP: present when the frame is IP, not a non-first fragment, and carries one.
    pub l4: Option<L4>,
}

impl Frame {
    /// The VLAN tags' TCI values, outermost first.
    #[inline]
    pub fn vlan_tags(&self) -> &[u16] {
        self.vlan.tags()
    }

    /// IPv4 or IPv6, `None` for other frames.
    #[inline]
    pub fn ip_version(&self) -> Option<IpVersion> {
        match self.network {
            Network::Ipv4(_) => Some(IpVersion::V4),
            Network::Ipv6(_) => Some(IpVersion::V6),
            _ => None,
        }
    }

    /// The source address of an IP frame (the subscriber's, on upload).
    #[inline]
    pub fn src_addr(&self) -> Option<IpAddress> {
        match &self.network {
            Network::Ipv4(h) => Some(IpAddress::V4(h.src)),
            Network::Ipv6(h) => Some(IpAddress::V6(h.src)),
            _ => None,
        }
    }

    /// The destination address of an IP frame (the subscriber's, on download).
    #[inline]
    pub fn dst_addr(&self) -> Option<IpAddress> {
        match &self.network {
            Network::Ipv4(h) => Some(IpAddress::V4(h.dst)),
            Network::Ipv6(h) => Some(IpAddress::V6(h.dst)),
            _ => None,
        }
    }

    /// DSCP (6 bits) of an IP frame.
    #[inline]
    pub fn dscp(&self) -> Option<u8> {
        match &self.network {
            Network::Ipv4(h) => Some(h.dscp),
            Network::Ipv6(h) => Some(h.dscp),
            _ => None,
        }
    }

    /// ECN field (2 bits) of an IP frame.
    #[inline]
    pub fn ecn(&self) -> Option<u8> {
        match &self.network {
            Network::Ipv4(h) => Some(h.ecn),
            Network::Ipv6(h) => Some(h.ecn),
            _ => None,
        }
    }

    /// The upper-layer protocol of an IP frame: IPv4's protocol, or the next header that ends
    /// IPv6's extension chain.
    #[inline]
    pub fn ip_protocol(&self) -> Option<u8> {
        match &self.network {
            Network::Ipv4(h) => Some(h.protocol),
            Network::Ipv6(h) => Some(h.next_header),
            _ => None,
        }
    }

    /// Length of the IP packet in bytes (headers and payload, no Ethernet padding).
    #[inline]
    pub fn l3_len(&self) -> Option<usize> {
        match &self.network {
            Network::Ipv4(h) => Some(usize::from(h.total_len)),
            Network::Ipv6(h) => Some(h.packet_len()),
            _ => None,
        }
    }
}

/// What the layer-2 headers said comes next.
enum Payload {
    Ipv4,
    Ipv6,
    NotIp(Network),
}

/// Parses a whole frame: Ethernet, VLAN tags, PPPoE, IPv4 or IPv6 (with its extension
/// headers), then TCP or UDP.
///
/// Non-IP frames parse to [`Network::Arp`], [`Network::PppControl`], [`Network::Llc`] or
/// [`Network::Other`]. IP headers that are truncated or inconsistent, and TCP or UDP headers
/// that are, are errors. Other transport protocols (ICMP, GRE, ESP, ...) and non-first
/// fragments give no [`L4`].
#[inline]
pub fn parse_frame(frame: &[u8]) -> Result<Frame, ParseError> {
    let ethernet = EthernetFrame::new_checked(frame)?;
    let (vlan, mut offset, ethertype) =
        VlanStack::parse(frame, ethernet::HEADER_LEN, ethernet.ethertype())?;
    let mut pppoe_session = None;
    // The network packet: up to the end of the frame, or of the PPPoE payload.
    let mut l3 = octets::rest(frame, offset);
    let payload = match ethertype {
        ethernet::ethertype::IPV4 => Payload::Ipv4,
        ethernet::ethertype::IPV6 => Payload::Ipv6,
        ethernet::ethertype::ARP => Payload::NotIp(Network::Arp),
        ethernet::ethertype::PPPOE_SESSION => {
            let session = PppoeSession::new_checked(l3)?;
            pppoe_session = Some(session.session_id());
            offset = offset.saturating_add(session.ppp_payload_offset());
            let protocol = session.ppp_protocol();
            l3 = session.into_ppp_payload();
            match protocol {
                pppoe::ppp_protocol::IPV4 => Payload::Ipv4,
                pppoe::ppp_protocol::IPV6 => Payload::Ipv6,
                protocol => Payload::NotIp(Network::PppControl { protocol }),
            }
        }
        length if length < ethernet::ethertype::MIN_ETHERTYPE => {
            Payload::NotIp(Network::Llc { length })
        }
        ethertype => Payload::NotIp(Network::Other { ethertype }),
    };
    // At most 14 + 4 * MAX_VLAN_TAGS + 8 = 38 bytes.
    let l3_offset = u16::try_from(offset).unwrap_or(u16::MAX);
    let (network, l4) = match payload {
        Payload::Ipv4 => {
            let packet = Ipv4Packet::new_checked(l3)?;
            let header = Ipv4Header::from_packet(&packet);
            let l4 = match header.transport_offset() {
                Some(at) => L4::parse(
                    header.protocol,
                    packet.payload(),
                    offset.saturating_add(at),
                    header.more_fragments,
                )?,
                None => None,
            };
            (Network::Ipv4(header), l4)
        }
        Payload::Ipv6 => {
            let packet = Ipv6Packet::new_checked(l3)?;
            let header = Ipv6Header::from_packet(&packet)?;
            let l4 = match header.transport_offset() {
                Some(at) => L4::parse(
                    header.next_header,
                    octets::rest(packet.packet(), at),
                    offset.saturating_add(at),
                    header.is_first_fragment(),
                )?,
                None => None,
            };
            (Network::Ipv6(header), l4)
        }
        Payload::NotIp(network) => (network, None),
    };
    Ok(Frame {
        l3_offset,
        vlan,
        pppoe_session,
        network,
        l4,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    const MACS: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

    /// IPv4, 20-byte header, TOS 0x02 (ECT(0)), total length 40, DF, TTL 64, TCP,
    /// 100.64.0.7 -> 198.18.0.1, checksum left zero (the parser does not verify it).
    const IPV4_TCP: [u8; 20] = [
        0x45, 0x02, 0x00, 0x28, 0, 0, 0x40, 0, 64, 6, 0, 0, 100, 64, 0, 7, 198, 18, 0, 1,
    ];
    /// TCP 50000 -> 443, data offset 5, ACK.
    const TCP_ACK: [u8; 20] = [
        0xc3, 0x50, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
    ];
    /// UDP 12345 -> 53, length 12, 4 bytes of payload.
    const UDP_DNS: [u8; 12] = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0, 0, 1, 2, 3, 4];

    fn eth(parts: &[&[u8]]) -> Vec<u8> {
        let mut f = MACS.to_vec();
        for p in parts {
            f.extend_from_slice(p);
        }
        f
    }

    /// Ethernet + IPv4 + TCP ACK, padded to the 60-byte Ethernet minimum.
    fn ipv4_tcp_frame() -> Vec<u8> {
        let mut f = eth(&[&[0x08, 0x00], &IPV4_TCP, &TCP_ACK]);
        f.resize(60, 0);
        f
    }

    /// An IPv6 UDP packet (traffic class 0xb9: EF, ECT(1)), 2001:db8::1 -> 2001:db8::2.
    fn ipv6_udp() -> Vec<u8> {
        let mut p = std::vec![0x6b, 0x90, 0, 0, 0, 12, 17, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&UDP_DNS);
        p
    }

    fn ipv4(frame: &Frame) -> Ipv4Header {
        match frame.network {
            Network::Ipv4(h) => h,
            other => panic!("not IPv4: {other:?}"),
        }
    }

    #[test]
    fn plain_ipv4_tcp_gives_offsets_addresses_ports_and_flags() {
        let f = ipv4_tcp_frame();
        let frame = parse_frame(&f).unwrap();
        assert_eq!(frame.l3_offset, 14);
        assert!(frame.vlan_tags().is_empty());
        assert_eq!(frame.pppoe_session, None);
        assert_eq!(frame.ip_version(), Some(IpVersion::V4));
        assert_eq!(frame.src_addr(), Some(IpAddress::V4([100, 64, 0, 7])));
        assert_eq!(frame.dst_addr(), Some(IpAddress::V4([198, 18, 0, 1])));
        assert_eq!((frame.dscp(), frame.ecn()), (Some(0), Some(ip::ecn::ECT0)));
        assert_eq!(frame.ip_protocol(), Some(ip::protocol::TCP));
        // 40-byte IP packet in a 60-byte padded frame: the padding is not the packet's.
        assert_eq!(frame.l3_len(), Some(40));
        let l4 = frame.l4.unwrap();
        assert_eq!(
            l4.offset, 34,
            "14 Ethernet + 20 IPv4, counted from the frame start"
        );
        assert_eq!((l4.src_port, l4.dst_port), (50000, 443));
        assert_eq!(l4.header_len, 20);
        assert_eq!(l4.payload_len, 0);
        assert_eq!(l4.tcp_flags, Some(TcpFlags::ACK));
    }

    #[test]
    fn plain_ipv4_udp_has_ports_and_no_flags() {
        let mut ip = IPV4_TCP;
        ip[3] = 32; // 20 + 12
        ip[9] = ip::protocol::UDP;
        let f = eth(&[&[0x08, 0x00], &ip, &UDP_DNS]);
        let l4 = parse_frame(&f).unwrap().l4.unwrap();
        assert_eq!((l4.protocol, l4.src_port, l4.dst_port), (17, 12345, 53));
        assert_eq!((l4.offset, l4.header_len, l4.payload_len), (34, 8, 4));
        assert_eq!(l4.tcp_flags, None);
    }

    #[test]
    fn ipv6_udp_with_dscp_and_ecn() {
        let f = eth(&[&[0x86, 0xdd], &ipv6_udp()]);
        let frame = parse_frame(&f).unwrap();
        assert_eq!(frame.ip_version(), Some(IpVersion::V6));
        assert_eq!((frame.dscp(), frame.ecn()), (Some(46), Some(ip::ecn::ECT1)));
        let Some(IpAddress::V6(dst)) = frame.dst_addr() else {
            panic!("no IPv6 destination")
        };
        assert_eq!(dst[15], 2);
        let l4 = frame.l4.unwrap();
        assert_eq!((l4.offset, l4.src_port, l4.dst_port), (54, 12345, 53));
    }

    #[test]
    fn dot1q_tagged_tcp_moves_every_offset_by_four() {
        let mut f = eth(&[&[0x81, 0x00, 0x20, 0x64, 0x08, 0x00], &IPV4_TCP, &TCP_ACK]);
        f.resize(64, 0);
        let frame = parse_frame(&f).unwrap();
        // TCI 0x2064: PCP 1, VID 100.
        assert_eq!(frame.vlan_tags(), &[0x2064]);
        assert_eq!(frame.l3_offset, 18);
        assert_eq!(frame.l4.unwrap().offset, 38);
    }

    #[test]
    fn qinq_88a8_outer_8100_inner_ipv6() {
        let f = eth(&[
            &[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0xc8, 0x86, 0xdd],
            &ipv6_udp(),
        ]);
        let frame = parse_frame(&f).unwrap();
        assert_eq!(frame.vlan_tags(), &[10, 200]);
        assert_eq!(frame.l3_offset, 22);
        assert_eq!(frame.l4.unwrap().offset, 62);
    }

    #[test]
    fn five_stacked_tags_are_too_many() {
        let tag = [0x81, 0x00, 0x00, 0x01];
        let f = eth(&[&tag, &tag, &tag, &tag, &tag, &[0x08, 0x00], &IPV4_TCP]);
        assert_eq!(parse_frame(&f), Err(ParseError::TooManyVlanTags));
        let four = eth(&[&tag, &tag, &tag, &tag, &[0x08, 0x00], &IPV4_TCP, &TCP_ACK]);
        assert_eq!(parse_frame(&four).unwrap().vlan_tags().len(), 4);
    }

    #[test]
    fn pppoe_session_ipv4_and_ipv6() {
        // PPPoE length = 2 (PPP protocol) + 40 (IP packet).
        let f = eth(&[
            &[0x88, 0x64, 0x11, 0x00, 0x12, 0x34, 0x00, 42, 0x00, 0x21],
            &IPV4_TCP,
            &TCP_ACK,
        ]);
        let frame = parse_frame(&f).unwrap();
        assert_eq!(frame.pppoe_session, Some(0x1234));
        assert_eq!(frame.l3_offset, 22);
        assert_eq!(frame.l4.unwrap().offset, 42);

        let v6 = ipv6_udp();
        let f = eth(&[
            &[
                0x81, 0x00, 0x00, 0x07, 0x88, 0x64, 0x11, 0x00, 0x00, 0x01, 0x00, 54, 0x00, 0x57,
            ],
            &v6[..],
        ]);
        let frame = parse_frame(&f).unwrap();
        assert_eq!(frame.vlan_tags(), &[7]);
        assert_eq!(frame.pppoe_session, Some(1));
        assert_eq!(frame.ip_version(), Some(IpVersion::V6));
        assert_eq!(frame.l3_offset, 26);
    }

    #[test]
    fn an_ip_packet_longer_than_its_pppoe_payload_is_truncated() {
        // PPPoE says 30 bytes (2 + 28), the IPv4 header inside says 40.
        let f = eth(&[
            &[0x88, 0x64, 0x11, 0x00, 0x12, 0x34, 0x00, 30, 0x00, 0x21],
            &IPV4_TCP,
            &TCP_ACK,
        ]);
        assert_eq!(
            parse_frame(&f),
            Err(ParseError::Truncated {
                layer: Layer::Ipv4,
                needed: 40,
                available: 28
            })
        );
    }

    #[test]
    fn non_ip_frames_are_not_errors() {
        let arp = eth(&[&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1], &[0; 20]]);
        assert_eq!(parse_frame(&arp).unwrap().network, Network::Arp);
        // LLDP to the nearest-bridge group address.
        let lldp = eth(&[&[0x88, 0xcc, 0x02, 0x07, 0x04], &[0; 40]]);
        assert_eq!(
            parse_frame(&lldp).unwrap().network,
            Network::Other { ethertype: 0x88cc }
        );
        // STP configuration BPDU: 802.3 length 38, LLC DSAP/SSAP 0x42, control 0x03.
        let stp = eth(&[&[0x00, 0x26, 0x42, 0x42, 0x03], &[0; 38]]);
        let parsed = parse_frame(&stp).unwrap();
        assert_eq!(parsed.network, Network::Llc { length: 38 });
        assert_eq!(
            (parsed.ip_version(), parsed.l4, parsed.dscp()),
            (None, None, None)
        );
        // PPPoE discovery (PADI, code 0x09): EtherType 0x8863 is not a session.
        let padi = eth(&[&[0x88, 0x63, 0x11, 0x09, 0, 0, 0, 4, 1, 1, 0, 0]]);
        assert_eq!(
            parse_frame(&padi).unwrap().network,
            Network::Other { ethertype: 0x8863 }
        );
        // LCP echo request inside a session.
        let lcp = eth(&[
            &[0x88, 0x64, 0x11, 0x00, 0, 1, 0, 10, 0xc0, 0x21],
            &[9, 1, 0, 8, 0, 0, 0, 0],
        ]);
        let parsed = parse_frame(&lcp).unwrap();
        assert_eq!(parsed.network, Network::PppControl { protocol: 0xc021 });
        assert_eq!(parsed.pppoe_session, Some(1));
        // LACP (slow protocols), tagged.
        let lacp = eth(&[&[0x81, 0x00, 0, 5, 0x88, 0x09, 1, 1], &[0; 40]]);
        assert_eq!(
            parse_frame(&lacp).unwrap().network,
            Network::Other { ethertype: 0x8809 }
        );
    }

    #[test]
    fn runts_are_truncated_ethernet() {
        for len in 0..14 {
            assert_eq!(
                parse_frame(&ipv4_tcp_frame()[..len]),
                Err(ParseError::Truncated {
                    layer: Layer::Ethernet,
                    needed: 14,
                    available: len
                })
            );
        }
    }

    #[test]
    fn truncation_is_reported_at_the_layer_where_the_frame_ends() {
        let tagged = eth(&[&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00], &IPV4_TCP, &TCP_ACK]);
        let layer_at = |len: usize| match parse_frame(&tagged[..len]) {
            Err(ParseError::Truncated { layer, .. }) => layer,
            other => panic!("{len} bytes: {other:?}"),
        };
        assert_eq!(layer_at(15), Layer::Vlan);
        assert_eq!(layer_at(17), Layer::Vlan);
        assert_eq!(layer_at(18 + 19), Layer::Ipv4);
        // With the whole IP header present, the total length (40) still exceeds what is left.
        assert_eq!(layer_at(18 + 20 + 19), Layer::Ipv4);
        // A valid IPv4 packet whose TCP header is cut: total length says 30.
        let mut short = IPV4_TCP;
        short[3] = 30;
        let f = eth(&[&[0x08, 0x00], &short, &TCP_ACK[..10]]);
        assert_eq!(
            parse_frame(&f),
            Err(ParseError::Truncated {
                layer: Layer::Tcp,
                needed: 20,
                available: 10
            })
        );
        let pppoe = eth(&[&[0x88, 0x64, 0x11, 0x00, 0x12]]);
        assert!(matches!(
            parse_frame(&pppoe),
            Err(ParseError::Truncated {
                layer: Layer::Pppoe,
                ..
            })
        ));
        let v6 = eth(&[&[0x86, 0xdd], &ipv6_udp()[..39]]);
        assert!(matches!(
            parse_frame(&v6),
            Err(ParseError::Truncated {
                layer: Layer::Ipv6,
                needed: 40,
                available: 39
            })
        ));
    }

    #[test]
    fn only_the_first_ipv4_fragment_has_ports() {
        // First fragment of a 3000-byte UDP datagram: MF set, offset 0, UDP length 2980 is
        // longer than this fragment and must not be checked against it.
        let mut ip = IPV4_TCP;
        ip[3] = 32;
        ip[6] = 0x20;
        ip[9] = ip::protocol::UDP;
        let mut udp = UDP_DNS;
        udp[4..6].copy_from_slice(&2980u16.to_be_bytes());
        let first = eth(&[&[0x08, 0x00], &ip, &udp]);
        let parsed = parse_frame(&first).unwrap();
        assert!(ipv4(&parsed).more_fragments);
        assert_eq!(parsed.l4.unwrap().dst_port, 53);
        // The same datagram unfragmented is inconsistent: 2980 > 12 bytes present.
        ip[6] = 0;
        assert!(matches!(
            parse_frame(&eth(&[&[0x08, 0x00], &ip, &udp])),
            Err(ParseError::Truncated {
                layer: Layer::Udp,
                needed: 2980,
                available: 12
            })
        ));
        // A later fragment (offset 185 * 8 = 1480): its first bytes are data, not ports.
        ip[6..8].copy_from_slice(&185u16.to_be_bytes());
        let later = eth(&[&[0x08, 0x00], &ip, &udp]);
        let parsed = parse_frame(&later).unwrap();
        assert_eq!(ipv4(&parsed).fragment_offset, 1480);
        assert_eq!(parsed.l4, None);
    }

    #[test]
    fn only_the_first_ipv6_fragment_has_ports() {
        // Fragment header (next UDP, offset 0, M set, ident 7) before a UDP header whose
        // length (3000) covers later fragments too.
        let mut v6 = ipv6_udp();
        v6[6] = ip::protocol::FRAGMENT;
        v6[5] = 20;
        v6.truncate(40);
        v6.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 7]);
        let mut udp = UDP_DNS;
        udp[4..6].copy_from_slice(&3000u16.to_be_bytes());
        v6.extend_from_slice(&udp);
        let parsed = parse_frame(&eth(&[&[0x86, 0xdd], &v6])).unwrap();
        let l4 = parsed.l4.unwrap();
        assert_eq!((l4.offset, l4.dst_port), (14 + 48, 53));
        // Offset 1480 (0x05c8 with M clear): no ports, but still IPv6 with its addresses.
        v6[42..44].copy_from_slice(&[0x05, 0xc8]);
        let parsed = parse_frame(&eth(&[&[0x86, 0xdd], &v6])).unwrap();
        assert_eq!(parsed.l4, None);
        assert_eq!(parsed.ip_protocol(), Some(ip::protocol::UDP));
        assert!(parsed.src_addr().is_some());
    }

    #[test]
    fn icmp_has_no_ports() {
        let mut ip = IPV4_TCP;
        ip[3] = 28;
        ip[9] = ip::protocol::ICMP;
        let f = eth(&[&[0x08, 0x00], &ip, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]]);
        let parsed = parse_frame(&f).unwrap();
        assert_eq!(parsed.ip_protocol(), Some(1));
        assert_eq!(parsed.l4, None);
    }

    #[test]
    fn malformed_tcp_is_an_error_with_a_message_that_says_why() {
        let mut tcp = TCP_ACK;
        tcp[12] = 2 << 4;
        let f = eth(&[&[0x08, 0x00], &IPV4_TCP, &tcp]);
        let err = parse_frame(&f).unwrap_err();
        assert_eq!(
            err,
            ParseError::Malformed {
                layer: Layer::Tcp,
                reason: Malformation::TcpDataOffset { words: 2 }
            }
        );
        assert_eq!(
            err.to_string(),
            "TCP header malformed: data offset 2 words, the minimum is 5 (20 bytes)"
        );
        assert_eq!(
            parse_frame(&[0; 3]).unwrap_err().to_string(),
            "Ethernet header truncated: needs 14 bytes from its start, 3 present"
        );
        assert_eq!(
            ParseError::TooManyVlanTags.to_string(),
            "more than 4 stacked VLAN tags"
        );
    }

    /// A small deterministic generator, so the never-panics test needs no dependency and
    /// never flakes.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Whatever the bytes, parsing returns, and what it returns points inside the frame. The
    /// fuzz target checks the same.
    fn check_invariants(bytes: &[u8]) {
        let Ok(frame) = parse_frame(bytes) else {
            return;
        };
        let l3 = usize::from(frame.l3_offset);
        assert!(l3 <= bytes.len());
        if let Some(len) = frame.l3_len() {
            assert!(l3 + len <= bytes.len());
        }
        if let Some(l4) = frame.l4 {
            let at = usize::from(l4.offset);
            assert!(frame.ip_version().is_some());
            assert!(at > l3);
            let end = at + usize::from(l4.header_len) + usize::from(l4.payload_len);
            assert_eq!(end, l3 + frame.l3_len().unwrap());
        }
    }

    #[test]
    fn never_panics_on_random_bytes_or_mutated_frames() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 160];
        // Bias towards the EtherTypes and next headers that lead somewhere.
        let types: [[u8; 2]; 7] = [
            [0x08, 0x00],
            [0x86, 0xdd],
            [0x81, 0x00],
            [0x88, 0xa8],
            [0x88, 0x64],
            [0x91, 0x00],
            [0x08, 0x06],
        ];
        for _ in 0..100_000 {
            let len = (rng.next() % 161) as usize;
            for b in buf.iter_mut().take(len) {
                *b = rng.next() as u8;
            }
            let mut at = 12;
            while at + 2 <= len && rng.next() % 4 < 3 {
                buf[at..at + 2].copy_from_slice(&types[(rng.next() % 7) as usize]);
                at += 4;
            }
            check_invariants(&buf[..len]);
        }
        let valid: [Vec<u8>; 3] = [
            ipv4_tcp_frame(),
            eth(&[
                &[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0xc8, 0x86, 0xdd],
                &ipv6_udp(),
            ]),
            eth(&[
                &[0x88, 0x64, 0x11, 0x00, 0x12, 0x34, 0x00, 42, 0x00, 0x21],
                &IPV4_TCP,
                &TCP_ACK,
            ]),
        ];
        for _ in 0..100_000 {
            let mut f = valid[(rng.next() % 3) as usize].clone();
            for _ in 0..(1 + rng.next() % 4) {
                let at = (rng.next() % f.len() as u64) as usize;
                f[at] = rng.next() as u8;
            }
            let len = (rng.next() % (f.len() as u64 + 1)) as usize;
            check_invariants(&f[..len]);
        }
    }
}
