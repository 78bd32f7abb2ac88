//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624), for rewriting
//! header fields in place without summing the whole header again.

/// The ones'-complement sum of `data` as 16-bit big-endian words (an odd last byte is padded
/// with zero), folded to 16 bits. Not complemented.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    fold(sum)
}

/// The checksum field value for `data` (with its checksum field zeroed).
pub fn checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

/// The new checksum after one 16-bit word of the covered data changes from `old` to `new`:
/// HC' = ~(~HC + ~m + m') (RFC 1624, eqn. 3), which agrees with a full recomputation in every
/// case, unlike RFC 1141's older formula.
#[inline]
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

#[inline]
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 header example of RFC 1071's era, checksum 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn a_valid_header_sums_to_all_ones() {
        assert_eq!(ones_complement_sum(&HEADER), 0xffff);
        let mut zeroed = HEADER;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }

    #[test]
    fn incremental_update_matches_recomputation_for_every_tos() {
        for tos in 0..=255u8 {
            let mut h = HEADER;
            let old = u16::from_be_bytes([h[0], h[1]]);
            h[1] = tos;
            let new = u16::from_be_bytes([h[0], h[1]]);
            let updated = update(0xb861, old, new);
            h[10] = 0;
            h[11] = 0;
            assert_eq!(updated, checksum(&h), "tos {tos:#04x}");
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(ones_complement_sum(&[0x01]), 0x0100);
    }
}
