//! Any bytes: parsing returns, and what it returns points inside the frame. The DSCP/ECN
//! rewrite on a parsed IP header keeps an IPv4 checksum valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sheetcake_parse::{checksum, ipv4, ipv6, parse_frame, Network};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = parse_frame(data) else {
        return;
    };
    let l3 = frame.l3_offset();
    assert!(l3 <= data.len());
    if let Some(t) = frame.transport {
        assert!(usize::from(t.offset) > l3);
        assert!(usize::from(t.offset) + usize::from(t.header_len) <= data.len());
    }
    let mut copy = data.to_vec();
    match frame.network {
        Network::Ipv4(h) => {
            let header = &mut copy[l3..l3 + usize::from(h.header_len)];
            let valid_before = checksum::ones_complement_sum(header) == 0xffff;
            ipv4::set_dscp_ecn(header, h.dscp, 3).expect("parsed header is long enough");
            if valid_before {
                assert_eq!(checksum::ones_complement_sum(header), 0xffff);
            }
        }
        Network::Ipv6(h) => {
            ipv6::set_dscp_ecn(&mut copy[l3..], h.dscp, 3).expect("parsed header is long enough");
        }
        Network::Arp | Network::Other => {}
    }
});
