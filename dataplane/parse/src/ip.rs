//! What IPv4 and IPv6 share: protocol numbers, addresses, and the DSCP/ECN split of the traffic
//! class (RFC 2474, RFC 3168). Owns no parsing of its own.

/// IP protocol numbers (IPv4 "protocol", IPv6 "next header"), from the IANA registry. The
/// extension headers of IPv6 are here too, since they share the number space.
pub mod protocol {
    /// IPv6 hop-by-hop options (RFC 8200 section 4.3).
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 routing header (RFC 8200 section 4.4).
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header (RFC 8200 section 4.5).
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload: what follows it is encrypted, so a chain walk ends here.
    pub const ESP: u8 = 50;
    /// Authentication header (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const NO_NEXT_HEADER: u8 = 59;
    /// IPv6 destination options (RFC 8200 section 4.6).
    pub const DESTINATION_OPTIONS: u8 = 60;
    /// Mobility header (RFC 6275), an IPv6 extension header.
    pub const MOBILITY: u8 = 135;
    /// UDP-Lite (RFC 3828): UDP's port layout, a checksum coverage where UDP has a length.
    pub const UDP_LITE: u8 = 136;
    /// Host identity protocol (RFC 7401), an IPv6 extension header.
    pub const HIP: u8 = 139;
    /// Shim6 (RFC 5533), an IPv6 extension header.
    pub const SHIM6: u8 = 140;
}

/// The two-bit ECN field (RFC 3168 section 5).
pub mod ecn {
    /// Not ECN-capable transport.
    pub const NOT_ECT: u8 = 0b00;
    /// ECN-capable transport, codepoint 1 (also L4S, RFC 9331).
    pub const ECT1: u8 = 0b01;
    /// ECN-capable transport, codepoint 0.
    pub const ECT0: u8 = 0b10;
    /// Congestion experienced: what CAKE marks instead of dropping.
    pub const CE: u8 = 0b11;
}

/// Largest DSCP value: six bits.
pub const MAX_DSCP: u8 = 0x3f;

/// The traffic-class (IPv4 TOS) byte made of a DSCP and an ECN field. Bits beyond six and two
/// are ignored, so no caller can spill one field into the other.
#[inline]
pub fn traffic_class(dscp: u8, ecn: u8) -> u8 {
    ((dscp & MAX_DSCP) << 2) | (ecn & ecn::CE)
}

/// The DSCP of a traffic-class byte.
#[inline]
pub fn dscp_of(traffic_class: u8) -> u8 {
    traffic_class >> 2
}

/// The ECN field of a traffic-class byte.
#[inline]
pub fn ecn_of(traffic_class: u8) -> u8 {
    traffic_class & ecn::CE
}

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// An IP address as the bytes on the wire (network order), ready for a table lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpAddress {
    /// IPv4.
    V4([u8; 4]),
    /// IPv6.
    V6([u8; 16]),
}

impl IpAddress {
    /// The address's IP version.
    #[inline]
    pub fn version(&self) -> IpVersion {
        match self {
            IpAddress::V4(_) => IpVersion::V4,
            IpAddress::V6(_) => IpVersion::V6,
        }
    }

    /// The address bytes, 4 or 16 of them.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            IpAddress::V4(a) => a,
            IpAddress::V6(a) => a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_class_packs_dscp_above_ecn() {
        // EF (46) with CE: 46 << 2 | 3 = 0xbb (RFC 2474 section 3, RFC 3168 section 5).
        assert_eq!(traffic_class(46, ecn::CE), 0xbb);
        assert_eq!((dscp_of(0xbb), ecn_of(0xbb)), (46, 3));
        // Out-of-range inputs are masked, never carried into the neighbour field.
        assert_eq!(traffic_class(0xff, 0xff), 0xff);
        assert_eq!(traffic_class(0x40, 0x04), 0x00);
    }

    #[test]
    fn addresses_know_their_version() {
        assert_eq!(IpAddress::V4([10, 0, 0, 1]).version(), IpVersion::V4);
        assert_eq!(IpAddress::V6([0; 16]).as_bytes().len(), 16);
    }
}
