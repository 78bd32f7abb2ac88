//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624), for rewriting
//! header fields in place without summing the whole header again: CAKE marks ECN CE and
//! washes DSCP on the packet path, where a full recomputation per packet would be waste.

/// The ones'-complement sum of `data` as 16-bit big-endian words (an odd last byte is padded
/// with zero), folded to 16 bits. Not complemented.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    // A u64 cannot carry out: that would take 2^48 words of 0xffff.
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        if let [high, low] = *word {
            sum = sum.wrapping_add(u64::from(u16::from_be_bytes([high, low])));
        }
    }
    if let [last] = *words.remainder() {
        sum = sum.wrapping_add(u64::from(last) << 8);
    }
    fold(sum)
}

/// The checksum field value for `data` (with its checksum field zeroed).
pub fn checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

/// The new checksum after one 16-bit word of the covered data changes from `old` to `new`:
/// HC' = ~(~HC + ~m + m') (RFC 1624, eqn. 3), which agrees with a full recomputation in every
/// case, unlike RFC 1141's older formula (which can leave 0x0000 where 0xffff belongs).
#[inline]
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    // Three u16 values: the sum fits a u64 with room to spare.
    let sum = u64::from(!checksum)
        .wrapping_add(u64::from(!old))
        .wrapping_add(u64::from(new));
    !fold(sum)
}

/// Folds the carries of a ones'-complement sum back into 16 bits.
#[inline]
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff).wrapping_add(sum >> 16);
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
    fn incremental_update_matches_recomputation_for_every_word_pair_sample() {
        // All old/new pairs of a stride through the 16-bit space, in the header's first word.
        for old in (0..=u16::MAX).step_by(257) {
            for new in (0..=u16::MAX).step_by(263) {
                let mut h = HEADER;
                h[0..2].copy_from_slice(&old.to_be_bytes());
                h[10] = 0;
                h[11] = 0;
                let before = checksum(&h);
                h[0..2].copy_from_slice(&new.to_be_bytes());
                assert_eq!(
                    update(before, old, new),
                    checksum(&h),
                    "{old:#06x} -> {new:#06x}"
                );
            }
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(ones_complement_sum(&[0x01]), 0x0100);
    }
}
