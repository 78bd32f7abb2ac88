//! Tins: DiffServ classes, each with its share of the rate and its DRR weight (spec 2).

use crate::config::TinMode;
use core::num::NonZeroU64;

/// The largest number of tins any mode has (diffserv8, precedence).
pub const MAX_TINS: usize = 8;

/// Tin classes: every tin of every mode under the name tc gives it, so traffic can be
/// summed per tin across instances of different modes (diffserv3's and diffserv4's Voice are
/// one class; the numbered tins of besteffort, precedence and diffserv8 are "Tin 0" to "Tin 7").
pub const TIN_CLASSES: usize = 4 + MAX_TINS;

/// The class of internal tin `tin` of `mode` (below [`TIN_CLASSES`]).
pub fn tin_class(mode: TinMode, tin: usize) -> u8 {
    let class = match mode {
        TinMode::Diffserv3 => [1, 0, 3].get(tin).copied().unwrap_or(1),
        TinMode::Diffserv4 => [1, 0, 2, 3].get(tin).copied().unwrap_or(1),
        TinMode::Besteffort | TinMode::Precedence | TinMode::Diffserv8 => 4 + tin.min(MAX_TINS - 1),
    };
    class as u8
}

/// The name tc prints for a tin class.
pub fn tin_class_name(class: usize) -> &'static str {
    const NAMES: [&str; TIN_CLASSES] = [
        "Bulk",
        "Best Effort",
        "Video",
        "Voice",
        "Tin 0",
        "Tin 1",
        "Tin 2",
        "Tin 3",
        "Tin 4",
        "Tin 5",
        "Tin 6",
        "Tin 7",
    ];
    NAMES.get(class).copied().unwrap_or("Tin ?")
}

/// Ethernet MTU used for per-tin timing (frame without FCS), spec 2.
pub const MTU_BYTES: u64 = 1514;

/// Smallest and largest flow quantum, bytes (spec 2): below 300 bytes a DRR round would take
/// too many rounds for a full packet; above one MTU, sparse flows lose their edge.
pub const MIN_QUANTUM: u32 = 300;
pub const MAX_QUANTUM: u32 = 1514;
/// Rate to quantum: `rate >> 12`, about 4 ms of the tin's rate... per 16 flows.
const QUANTUM_RATE_SHIFT: u32 = 12;

/// Fixed-point scale of the time-per-byte: start at 2^34 and shrink until the factor fits in
/// 34 bits, so `len * rate_ns` cannot overflow 64 bits for any frame.
const RATE_SHIFT_START: u8 = 34;
/// Rates below 64 B/s are treated as 64 B/s (spec 2), bounding the time per byte.
pub const MIN_RATE: u64 = 64;

/// Time per byte at a rate, in fixed point: `duration(len) = (len * ns) >> shift`, with `ns`
/// below 2^34 (spec 2). Both live in one word (`ns` in the low 34 bits, `shift` in the top
/// byte) so a tin's parameters stay small: an instance carries up to eight of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimePerByte(u64);

/// Bits of the packed word holding the scaled nanoseconds per byte.
const NS_BITS: u32 = RATE_SHIFT_START as u32;
const NS_MASK: u64 = (1 << NS_BITS) - 1;
/// Where the shift sits in the packed word.
const SHIFT_POSITION: u32 = 56;

impl TimePerByte {
    /// The time per byte at `rate` bytes per second; `None` is unlimited (zero time).
    pub fn at(rate: Option<u64>) -> TimePerByte {
        let Some(rate) = rate else {
            return TimePerByte::default();
        };
        let mut shift = RATE_SHIFT_START;
        let mut ns = (1_000_000_000u64 << RATE_SHIFT_START) / rate.max(MIN_RATE);
        while ns >> RATE_SHIFT_START != 0 {
            ns >>= 1;
            shift -= 1;
        }
        TimePerByte(ns | (u64::from(shift) << SHIFT_POSITION))
    }

    /// Scaled nanoseconds per byte (below 2^34); 0 when unlimited.
    #[inline]
    pub fn ns(&self) -> u64 {
        self.0 & NS_MASK
    }

    /// The scale's shift.
    #[inline]
    pub fn shift(&self) -> u32 {
        (self.0 >> SHIFT_POSITION) as u32
    }

    /// Nanoseconds to send `len` bytes.
    #[inline]
    pub fn duration(&self, len: u32) -> u64 {
        (u64::from(len) * self.ns()) >> self.shift()
    }
}

/// A tin's parameters, recomputed whenever the rate or the RTT changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinParams {
    /// The tin's threshold rate (bytes/s), `None` when the instance is unlimited.
    pub rate: Option<NonZeroU64>,
    /// Its time per byte.
    pub time_per_byte: TimePerByte,
    /// WRR weight between tins when unlimited.
    pub weight: u16,
    /// DRR quantum of a flow, bytes.
    pub flow_quantum: u32,
    /// Time to send one MTU at the tin's rate, ns.
    pub mtu_time: u64,
    /// COBALT target, ns.
    pub target: u64,
    /// COBALT interval, ns.
    pub interval: u64,
}

impl TinParams {
    /// Parameters at `rate` with the configured target and interval (spec 2).
    pub fn new(rate: Option<u64>, weight: u16, target: u64, interval: u64) -> TinParams {
        let time_per_byte = TimePerByte::at(rate);
        let mtu_time = time_per_byte.duration(MTU_BYTES as u32);
        let tin_target = (mtu_time * 3 / 2).max(target);
        let tin_interval = (interval + tin_target - target).max(2 * tin_target);
        let flow_quantum = match rate {
            Some(r) => (r >> QUANTUM_RATE_SHIFT)
                .clamp(u64::from(MIN_QUANTUM), u64::from(MAX_QUANTUM))
                as u32,
            None => MAX_QUANTUM,
        };
        TinParams {
            rate: rate.and_then(NonZeroU64::new),
            time_per_byte,
            weight,
            flow_quantum,
            mtu_time,
            target: tin_target,
            interval: tin_interval,
        }
    }
}

/// Number of tins of a mode.
pub fn tin_count(mode: TinMode) -> usize {
    match mode {
        TinMode::Besteffort => 1,
        TinMode::Diffserv3 => 3,
        TinMode::Diffserv4 => 4,
        TinMode::Diffserv8 | TinMode::Precedence => 8,
    }
}

/// Threshold rates by internal tin index (spec 2).
pub fn tin_rates(mode: TinMode, rate: Option<u64>) -> [Option<u64>; MAX_TINS] {
    let mut rates = [None; MAX_TINS];
    let Some(r) = rate else {
        return rates;
    };
    match mode {
        TinMode::Besteffort => rates[0] = Some(r),
        TinMode::Diffserv3 => {
            rates[0] = Some(r);
            rates[1] = Some(r >> 4);
            rates[2] = Some(r >> 2);
        }
        TinMode::Diffserv4 => {
            rates[0] = Some(r);
            rates[1] = Some(r >> 4);
            rates[2] = Some(r >> 1);
            rates[3] = Some(r >> 2);
        }
        TinMode::Diffserv8 | TinMode::Precedence => {
            let mut tin_rate = r;
            for slot in rates.iter_mut() {
                *slot = Some(tin_rate.max(1));
                tin_rate = (tin_rate * 7) >> 3;
            }
        }
    }
    rates
}

/// DRR weights between tins by internal index (spec 2).
pub fn tin_weights(mode: TinMode) -> [u16; MAX_TINS] {
    match mode {
        TinMode::Besteffort => [65535, 0, 0, 0, 0, 0, 0, 0],
        TinMode::Diffserv3 => [1024, 64, 256, 0, 0, 0, 0, 0],
        TinMode::Diffserv4 => [1024, 64, 512, 256, 0, 0, 0, 0],
        TinMode::Diffserv8 | TinMode::Precedence => [256, 224, 196, 171, 149, 130, 113, 98],
    }
}

/// Display order of tins ("tin order"), by internal index: Bulk is shown first.
pub fn tin_order(mode: TinMode) -> &'static [usize] {
    match mode {
        TinMode::Besteffort => &[0],
        TinMode::Diffserv3 => &[1, 0, 2],
        TinMode::Diffserv4 => &[1, 0, 2, 3],
        TinMode::Diffserv8 | TinMode::Precedence => &[0, 1, 2, 3, 4, 5, 6, 7],
    }
}

/// DSCP value of class selector 7, which ARP counts as (spec 2).
pub const DSCP_CS7: u8 = 56;

/// The internal tin index for a DSCP (spec 2's table; unlisted codepoints are Best Effort).
pub fn tin_for_dscp(mode: TinMode, dscp: u8) -> usize {
    let dscp = dscp & 0x3f;
    match mode {
        TinMode::Besteffort => 0,
        TinMode::Precedence => usize::from(dscp >> 3),
        TinMode::Diffserv8 => match dscp {
            1 => 0,
            2 | 8 | 10 | 12 | 14 => 1,
            24 | 26 | 28 | 30 | 34 | 36 | 38 => 3,
            4 | 18 | 20 | 22 => 4,
            16 => 5,
            32 | 40 | 44 | 46 => 6,
            48 | 56 => 7,
            _ => 2,
        },
        TinMode::Diffserv4 => match dscp {
            1 | 8 => 1,
            4 | 16 | 18 | 20 | 22 | 24 | 26 | 28 | 30 | 34 | 36 | 38 => 2,
            32 | 40 | 44 | 46 | 48 | 56 => 3,
            _ => 0,
        },
        TinMode::Diffserv3 => match dscp {
            1 | 8 => 1,
            4 | 44 | 46 | 48 | 56 => 2,
            _ => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const US: u64 = 1_000;

    fn params(bits_per_second: Option<u64>) -> TinParams {
        TinParams::new(bits_per_second.map(|b| b / 8), 1024, 5 * MS, 100 * MS)
    }

    /// Spec 2, "Worked values (defaults 5 ms / 100 ms)".
    #[test]
    fn worked_values_of_the_spec() {
        let close = |a: u64, b: u64| a.abs_diff(b) <= 10 * US;
        let unlimited = params(None);
        assert_eq!((unlimited.flow_quantum, unlimited.mtu_time), (1514, 0));
        assert_eq!((unlimited.target, unlimited.interval), (5 * MS, 100 * MS));
        let p = params(Some(256_000));
        assert_eq!(p.flow_quantum, 300);
        assert!(close(p.mtu_time, 47_310 * US), "{}", p.mtu_time);
        assert!(close(p.target, 70_970 * US), "{}", p.target);
        assert!(close(p.interval, 165_970 * US), "{}", p.interval);
        let p = params(Some(1_000_000));
        assert_eq!(p.flow_quantum, 300);
        assert!(close(p.mtu_time, 12_112 * US));
        assert!(close(p.target, 18_168 * US));
        assert!(close(p.interval, 113_168 * US));
        let p = params(Some(10_000_000));
        assert_eq!(p.flow_quantum, 305);
        assert!(p.mtu_time.abs_diff(1_211_200) <= 100);
        assert_eq!((p.target, p.interval), (5 * MS, 100 * MS));
        let p = params(Some(100_000_000));
        assert_eq!(p.flow_quantum, 1514);
        assert!(p.mtu_time.abs_diff(121_120) <= 10);
    }

    #[test]
    fn time_per_byte_is_exact_to_a_nanosecond_per_kilobyte() {
        for bits in [
            1_000_000u64,
            20_000_000,
            1_000_000_000,
            10_000_000_000,
            100_000_000_000,
        ] {
            let t = TimePerByte::at(Some(bits / 8));
            let exact = 1500.0 * 8.0 * 1e9 / bits as f64;
            let got = t.duration(1500) as f64;
            assert!((got - exact).abs() <= 1.5, "{bits}: {got} vs {exact}");
            assert!(t.ns() >> 34 == 0 && t.ns() > 0);
        }
    }

    #[test]
    fn diffserv_shares_and_precedence_steps() {
        let r = Some(16_000_000);
        assert_eq!(
            &tin_rates(TinMode::Diffserv3, r)[..3],
            &[r, Some(1_000_000), Some(4_000_000)]
        );
        assert_eq!(
            &tin_rates(TinMode::Diffserv4, r)[..4],
            &[r, Some(1_000_000), Some(8_000_000), Some(4_000_000)]
        );
        let d8 = tin_rates(TinMode::Diffserv8, Some(1_000_000));
        assert_eq!(d8[1], Some(875_000));
        assert_eq!(d8[2], Some(765_625));
    }

    #[test]
    fn dscp_table_rows() {
        use TinMode::*;
        // (dscp, diffserv8, diffserv4, diffserv3) from spec 2.
        let rows = [
            (0, 2, 0, 0),
            (1, 0, 1, 1),
            (2, 1, 0, 0),
            (4, 4, 2, 2),
            (8, 1, 1, 1),
            (10, 1, 0, 0),
            (12, 1, 0, 0),
            (14, 1, 0, 0),
            (16, 5, 2, 0),
            (18, 4, 2, 0),
            (20, 4, 2, 0),
            (22, 4, 2, 0),
            (24, 3, 2, 0),
            (26, 3, 2, 0),
            (28, 3, 2, 0),
            (30, 3, 2, 0),
            (32, 6, 3, 0),
            (34, 3, 2, 0),
            (36, 3, 2, 0),
            (38, 3, 2, 0),
            (40, 6, 3, 0),
            (44, 6, 3, 2),
            (45, 2, 0, 0),
            (46, 6, 3, 2),
            (48, 7, 3, 2),
            (56, 7, 3, 2),
            (3, 2, 0, 0),
            (63, 2, 0, 0),
        ];
        for (dscp, d8, d4, d3) in rows {
            assert_eq!(tin_for_dscp(Diffserv8, dscp), d8, "diffserv8 {dscp}");
            assert_eq!(tin_for_dscp(Diffserv4, dscp), d4, "diffserv4 {dscp}");
            assert_eq!(tin_for_dscp(Diffserv3, dscp), d3, "diffserv3 {dscp}");
        }
        assert_eq!(tin_for_dscp(Precedence, 46), 5);
        assert_eq!(tin_for_dscp(Besteffort, 46), 0);
    }
}
