//! Any bytes: `parse_frame` returns, and what it returns points inside the frame and agrees
//! with the typed views. On IP frames, the in-place DSCP/ECN rewrite changes only the traffic
//! class (and, for IPv4, the checksum), and keeps a valid IPv4 checksum valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sheetcake_parse::{ip, parse_frame, Ipv4Packet, Ipv6Packet, Network, TcpPacket, UdpPacket};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = parse_frame(data) else {
        return;
    };
    let l3 = usize::from(frame.l3_offset);
    assert!(l3 <= data.len(), "l3 offset beyond the frame");
    assert!(frame.vlan_tags().len() <= sheetcake_parse::MAX_VLAN_TAGS);
    if let Some(len) = frame.l3_len() {
        assert!(l3 + len <= data.len(), "IP packet beyond the frame");
    }
    if let Some(l4) = frame.l4 {
        let at = usize::from(l4.offset);
        let l3_len = frame.l3_len().expect("L4 only inside IP");
        assert!(at > l3, "l4 offset not after l3 offset");
        let end = at + usize::from(l4.header_len) + usize::from(l4.payload_len);
        assert_eq!(
            end,
            l3 + l3_len,
            "L4 header and payload end where the IP packet does"
        );
        let segment = &data[at..end];
        match l4.protocol {
            ip::protocol::TCP => {
                let tcp = TcpPacket::new_checked(segment).expect("parsed TCP header re-checks");
                assert_eq!(tcp.header_len(), usize::from(l4.header_len));
                assert_eq!(Some(tcp.flags()), l4.tcp_flags);
            }
            _ => {
                let udp = UdpPacket::new_checked_header(segment).expect("UDP header re-checks");
                assert_eq!((udp.src_port(), udp.dst_port()), (l4.src_port, l4.dst_port));
            }
        }
    }

    let mut copy = data.to_vec();
    match frame.network {
        Network::Ipv4(h) => {
            let mut packet =
                Ipv4Packet::new_checked(&mut copy[l3..]).expect("parsed IPv4 header re-checks");
            assert_eq!(h.header_len, packet.header_len());
            let valid_before = packet.verify_checksum();
            packet.set_ecn(ip::ecn::CE);
            packet.set_dscp(0);
            assert_eq!((packet.dscp(), packet.ecn()), (0, ip::ecn::CE));
            if valid_before {
                assert!(
                    packet.verify_checksum(),
                    "incremental update broke the checksum"
                );
            }
            // Only the TOS byte (l3 + 1) and the checksum (l3 + 10, + 11) may change.
            for (i, (a, b)) in data.iter().zip(&copy).enumerate() {
                if a != b {
                    assert!([l3 + 1, l3 + 10, l3 + 11].contains(&i), "byte {i} changed");
                }
            }
        }
        Network::Ipv6(_) => {
            let mut packet =
                Ipv6Packet::new_checked(&mut copy[l3..]).expect("parsed IPv6 header re-checks");
            let flow = packet.flow_label();
            packet.set_dscp_ecn(0, ip::ecn::CE);
            assert_eq!((packet.flow_label(), packet.version()), (flow, 6));
        }
        Network::Arp | Network::PppControl { .. } | Network::Llc { .. } | Network::Other { .. } => {
        }
    }
});
