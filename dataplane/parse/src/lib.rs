//! Zero-copy parsing of the frames a bump in the wire sees.
//!
//! A transparent bridge between a core router and a head-end meets Ethernet frames carrying
//! 802.1Q and 802.1ad (QinQ) tags, PPPoE sessions, IPv4 with options and fragments, IPv6 with
//! extension-header chains, and everything else a LAN carries (ARP, ND, LLDP, STP, LACP). The
//! workers need, per frame and without copying: where the IP header starts, the addresses, the
//! DSCP and ECN bits, and for TCP and UDP the ports (and TCP's flags). This crate finds them.
//!
//! What it must never do: panic, read out of bounds, or allocate, whatever the bytes. Every
//! length field is checked against the bytes present before it is used. Frames that are not IP
//! are not errors (the bridge forwards them); only IP headers that are truncated or
//! inconsistent are, each with a [`ParseError`] that says which layer and why.
//!
//! Layout follows the protocols: [`ethernet`] (with VLAN tags and PPPoE), [`ipv4`], [`ipv6`],
//! [`l4`] (TCP and UDP), and [`checksum`] for the in-place rewrites CAKE does (ECN marks,
//! DSCP wash).

#![forbid(unsafe_code)]
#![no_std]

pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod l4;

use core::fmt;

pub use ethernet::{EtherType, L2Header, MAX_VLAN_TAGS};
pub use ipv4::Ipv4Header;
pub use ipv6::{Ipv6Header, MAX_IPV6_EXTENSION_HEADERS};
pub use l4::{TcpFlags, Transport};

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
    /// IPv6 header or one of its extension headers.
    Ipv6,
    /// TCP header.
    Tcp,
    /// UDP header.
    Udp,
}

/// Why a frame could not be parsed. Frames that are simply not IP are not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The frame ends before the header does.
    Truncated {
        /// The layer whose header is cut short.
        layer: Layer,
        /// Bytes that header needs from its start.
        needed: usize,
        /// Bytes present from its start.
        available: usize,
    },
    /// A header field contradicts the header or the frame.
    Malformed {
        /// The layer.
        layer: Layer,
        /// What is wrong.
        reason: &'static str,
    },
    /// More VLAN tags than [`MAX_VLAN_TAGS`].
    TooManyVlanTags,
    /// More IPv6 extension headers than [`MAX_IPV6_EXTENSION_HEADERS`].
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
                "{layer:?} header truncated: needs {needed} bytes, {available} present"
            ),
            ParseError::Malformed { layer, reason } => {
                write!(f, "{layer:?} header malformed: {reason}")
            }
            ParseError::TooManyVlanTags => {
                write!(f, "more than {MAX_VLAN_TAGS} VLAN tags")
            }
            ParseError::TooManyExtensionHeaders => write!(
                f,
                "more than {MAX_IPV6_EXTENSION_HEADERS} IPv6 extension headers"
            ),
        }
    }
}

/// Checks that `buf` holds `needed` bytes for `layer`.
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

/// The network layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// IPv4.
    Ipv4(Ipv4Header),
    /// IPv6.
    Ipv6(Ipv6Header),
    /// ARP (CAKE counts it as CS7).
    Arp,
    /// Anything else: LLDP, STP (802.3 with LLC), LACP, PPPoE discovery, PPP control
    /// protocols, unknown EtherTypes. Forwarded untouched.
    Other,
}

/// What a frame contains, as offsets into it and decoded fields. `Copy`, no references: it
/// can be kept beside the frame (for instance in a packet's metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The layer-2 headers: tags, PPPoE, and where they end.
    pub l2: L2Header,
    /// The network layer.
    pub network: Network,
    /// TCP or UDP, when the frame is IP, not a non-first fragment, and carries one of them.
    pub transport: Option<Transport>,
}

impl Frame {
    /// Offset of the network header (the end of Ethernet, tags and PPPoE).
    #[inline]
    pub fn l3_offset(&self) -> usize {
        self.l2.l3_offset as usize
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

    /// ECN (2 bits) of an IP frame.
    #[inline]
    pub fn ecn(&self) -> Option<u8> {
        match &self.network {
            Network::Ipv4(h) => Some(h.ecn),
            Network::Ipv6(h) => Some(h.ecn),
            _ => None,
        }
    }
}

/// Parses a whole frame: Ethernet, VLAN tags, PPPoE, IPv4 or IPv6, then TCP or UDP.
///
/// Non-IP frames parse to [`Network::Arp`] or [`Network::Other`]. IP headers that are
/// truncated or inconsistent, and TCP or UDP headers cut short, are errors. Other transport
/// protocols (ICMP, GRE, ESP, ...) give no [`Transport`].
#[inline]
pub fn parse_frame(frame: &[u8]) -> Result<Frame, ParseError> {
    let l2 = L2Header::parse(frame)?;
    let rest = &frame[l2.l3_offset as usize..];
    let (network, l4) = match l2.ethertype {
        EtherType::Ipv4 => {
            let h = Ipv4Header::parse(rest)?;
            let l4 = h
                .transport_offset()
                .map(|o| (h.protocol, o, h.payload_end()));
            (Network::Ipv4(h), l4)
        }
        EtherType::Ipv6 => {
            let h = Ipv6Header::parse(rest)?;
            let l4 = h
                .transport_offset()
                .map(|o| (h.next_header, o, h.payload_end()));
            (Network::Ipv6(h), l4)
        }
        EtherType::Arp => (Network::Arp, None),
        EtherType::Other(_) => (Network::Other, None),
    };
    let transport = match l4 {
        Some((protocol, offset, end)) => {
            // Ports and flags are read within the IP packet's own length, not the frame's
            // (Ethernet padding is not part of the packet).
            let packet = &rest[..end];
            Transport::parse(protocol, packet, offset)?.map(|t| t.shifted(l2.l3_offset))
        }
        None => None,
    };
    Ok(Frame {
        l2,
        network,
        transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + one 802.1Q tag + IPv4 (TOS 0x02, ECT(0)) + TCP ACK, padded to 64 bytes the
    /// way Ethernet pads short frames.
    fn vlan_tcp_ack() -> [u8; 64] {
        let mut f = [0u8; 64];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        f[12..18].copy_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
        f[18..38].copy_from_slice(&[
            0x45, 0x02, 0x00, 0x28, 0, 0, 0x40, 0, 64, 6, 0, 0, 100, 64, 0, 7, 198, 18, 0, 1,
        ]);
        f[38..42].copy_from_slice(&[0xc3, 0x50, 0x01, 0xbb]);
        f[50] = 5 << 4;
        f[51] = l4::TcpFlags::ACK;
        f
    }

    #[test]
    fn tagged_tcp_frame_gives_offsets_addresses_and_ports() {
        let frame = parse_frame(&vlan_tcp_ack()).unwrap();
        assert_eq!(frame.l3_offset(), 18);
        assert_eq!(frame.l2.vlan_tags(), &[100]);
        assert_eq!((frame.dscp(), frame.ecn()), (Some(0), Some(2)));
        let Network::Ipv4(ip) = frame.network else {
            panic!("not IPv4")
        };
        assert_eq!(ip.src, [100, 64, 0, 7]);
        let t = frame.transport.unwrap();
        assert_eq!(t.offset, 38, "offset counted from the frame start");
        assert_eq!((t.src_port, t.dst_port), (50000, 443));
        // 40-byte IP packet: the TCP payload ends there, not at the 64-byte padded frame.
        assert_eq!(t.payload_len, 0);
        assert!(t.tcp_flags.unwrap().contains(l4::TcpFlags::ACK));
    }

    #[test]
    fn icmp_has_no_transport_and_arp_is_not_an_error() {
        let mut f = vlan_tcp_ack();
        f[27] = 1; // ICMP
        let frame = parse_frame(&f).unwrap();
        assert!(frame.transport.is_none());
        let mut arp = [0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse_frame(&arp).unwrap().network, Network::Arp);
        assert_eq!(parse_frame(&arp).unwrap().dscp(), None);
    }

    #[test]
    fn errors_say_which_layer() {
        let mut f = vlan_tcp_ack();
        f[50] = 2 << 4;
        let err = parse_frame(&f).unwrap_err();
        assert!(matches!(
            err,
            ParseError::Malformed {
                layer: Layer::Tcp,
                ..
            }
        ));
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            err.to_string(),
            "Tcp header malformed: data offset below 5 words"
        );
    }

    /// A small deterministic generator, so this test needs no dependency and never flakes.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Whatever the bytes, parsing returns, and what it returns points inside the frame.
    fn check_invariants(bytes: &[u8]) {
        if let Ok(frame) = parse_frame(bytes) {
            assert!(frame.l3_offset() <= bytes.len());
            if let Some(t) = frame.transport {
                assert!(usize::from(t.offset) > frame.l3_offset());
                assert!(usize::from(t.offset) + usize::from(t.header_len) <= bytes.len());
            }
        }
    }

    #[test]
    fn never_panics_on_random_bytes_or_mutated_frames() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 128];
        for _ in 0..200_000 {
            let len = (rng.next() % 129) as usize;
            for b in buf.iter_mut().take(len) {
                *b = rng.next() as u8;
            }
            // Bias towards the EtherTypes that lead somewhere.
            if len >= 14 {
                let types: [[u8; 2]; 6] = [
                    [8, 0],
                    [0x86, 0xdd],
                    [0x81, 0],
                    [0x88, 0xa8],
                    [0x88, 0x64],
                    [8, 6],
                ];
                buf[12..14].copy_from_slice(&types[(rng.next() % 6) as usize]);
            }
            check_invariants(&buf[..len]);
        }
        let valid = vlan_tcp_ack();
        for _ in 0..200_000 {
            let mut f = valid;
            for _ in 0..(1 + rng.next() % 4) {
                let at = (rng.next() % 64) as usize;
                f[at] = rng.next() as u8;
            }
            let len = 12 + (rng.next() % 53) as usize;
            check_invariants(&f[..len]);
        }
    }
}
