//! The length a packet is charged (spec 1.2): what the link below really carries.

use crate::config::{Framing, Overhead};

/// ATM cells: 48 bytes of payload in 53 bytes of cell.
const ATM_PAYLOAD: u32 = 48;
const ATM_CELL: u32 = 53;
/// PTM (64b/65b): one byte of encoding per started 64 bytes.
const PTM_BLOCK: u32 = 64;

/// The adjusted length of a frame of `frame_len` bytes whose IP header starts at `l3_offset`.
#[inline]
pub fn adjusted_len(overhead: &Overhead, frame_len: u32, l3_offset: u16) -> u32 {
    let mut len = if overhead.raw {
        frame_len
    } else {
        let l3 = i64::from(frame_len.saturating_sub(u32::from(l3_offset)));
        let with_overhead = (l3 + i64::from(overhead.bytes)).max(1) as u32;
        with_overhead.max(u32::from(overhead.mpu))
    };
    match overhead.framing {
        Framing::None => {}
        Framing::Atm => len = len.div_ceil(ATM_PAYLOAD) * ATM_CELL,
        Framing::Ptm => len += len.div_ceil(PTM_BLOCK),
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CakeConfig;

    fn adj(words: &str, frame_len: u32, l3_offset: u16) -> u32 {
        adjusted_len(
            &CakeConfig::parse(words).unwrap().overhead,
            frame_len,
            l3_offset,
        )
    }

    #[test]
    fn raw_charges_the_frame() {
        assert_eq!(adj("", 1514, 14), 1514);
        assert_eq!(adj("raw", 60, 14), 60);
    }

    #[test]
    fn atm_rounds_up_to_whole_cells() {
        // 1500-byte IP packet + pppoe-llcsnap 40 = 1540 bytes: 33 cells (32.08 rounded up),
        // 33 * 53 = 1749.
        assert_eq!(adj("pppoe-llcsnap", 1514, 14), 1749);
        // 40-byte ACK + 40 = 80 bytes: 2 cells = 106 bytes.
        assert_eq!(adj("pppoe-llcsnap", 54, 14), 106);
        // Exactly 48 bytes is one cell.
        assert_eq!(adj("overhead 8 atm", 54, 14), 53);
    }

    #[test]
    fn ptm_adds_one_byte_per_started_64() {
        // 1500 + bridged-ptm 22 = 1522; ceil(1522 / 64) = 24; 1546.
        assert_eq!(adj("bridged-ptm", 1514, 14), 1546);
        assert_eq!(adj("overhead 0 ptm", 78, 14), 65);
    }

    #[test]
    fn docsis_raises_small_packets_to_its_mpu() {
        // 40-byte packet + 18 = 58 < mpu 64.
        assert_eq!(adj("docsis", 54, 14), 64);
        assert_eq!(adj("docsis", 1514, 14), 1518);
        // ethernet: 38 bytes, mpu 84: a 46-byte IP packet is charged 84.
        assert_eq!(adj("ethernet", 60, 14), 84);
    }

    #[test]
    fn overhead_subtracts_vlan_and_pppoe_headers_first() {
        // QinQ + PPPoE: IP at offset 30; a 1530-byte frame carries 1500 bytes of IP.
        assert_eq!(adj("overhead 26", 1530, 30), 1526);
        assert_eq!(adj("overhead -64", 60, 14), 1);
    }
}
