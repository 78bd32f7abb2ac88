//! `autorate-ingress` (spec 6): estimate the capacity of the link in front of us from how
//! packets arrive, for links whose rate changes (cable and radio links renegotiate).
//!
//! Packets that crossed a bottleneck back to back arrive spaced by that bottleneck's rate.
//! A run of arrivals with gaps no longer than the average gap is such a train; its bytes over
//! its duration measure the bottleneck. The estimate follows increases quickly and decreases
//! slowly, and the shaper is set just below it (15/16) so the queue stays here.

/// Weight of a new gap in the average gap: 1/8 (choice; the spec names no value).
const GAP_EWMA_SHIFT: u32 = 3;
/// The peak estimate rises with weight 1/4 and falls with weight 1/256 (spec 6).
const PEAK_RISE_SHIFT: u32 = 2;
const PEAK_FALL_SHIFT: u32 = 8;
/// The shaper is set to 15/16 of the estimate, at most every 250 ms (spec 6).
const RATE_NUMERATOR: u64 = 15;
const RATE_DENOMINATOR: u64 = 16;
const MIN_CHANGE_INTERVAL_NS: u64 = 250_000_000;

/// Arrival-train capacity estimator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Autorate {
    started: bool,
    avg_gap: u64,
    last_arrival: u64,
    train_start: u64,
    train_end: u64,
    /// Bytes that arrived after the train's first packet.
    train_bytes: u64,
    /// Peak rate estimate, bytes/s.
    peak: u64,
    last_change: u64,
}

fn ewma(avg: u64, sample: u64, shift: u32) -> u64 {
    avg - (avg >> shift) + (sample >> shift)
}

impl Autorate {
    /// The current capacity estimate (15/16 of the peak), bytes/s; 0 before the first train.
    pub fn estimate(&self) -> u64 {
        self.peak * RATE_NUMERATOR / RATE_DENOMINATOR
    }

    /// Records an arrival of `len` bytes; returns a new shaper rate when it is time to change.
    pub fn on_arrival(&mut self, len: u32, now: u64) -> Option<u64> {
        if !self.started {
            *self = Autorate {
                started: true,
                last_arrival: now,
                train_start: now,
                train_end: now,
                last_change: now,
                ..*self
            };
            return None;
        }
        let gap = now.saturating_sub(self.last_arrival);
        self.last_arrival = now;
        let mut change = None;
        if gap > self.avg_gap && self.train_end > self.train_start && self.train_bytes > 0 {
            let rate = (u128::from(self.train_bytes) * 1_000_000_000
                / u128::from(self.train_end - self.train_start)) as u64;
            let shift = if rate > self.peak {
                PEAK_RISE_SHIFT
            } else {
                PEAK_FALL_SHIFT
            };
            self.peak = ewma(self.peak, rate, shift);
            if now.saturating_sub(self.last_change) >= MIN_CHANGE_INTERVAL_NS && self.peak > 0 {
                self.last_change = now;
                change = Some(self.estimate());
            }
            self.train_start = now;
            self.train_end = now;
            self.train_bytes = 0;
        } else if gap > self.avg_gap {
            self.train_start = now;
            self.train_end = now;
            self.train_bytes = 0;
        } else {
            self.train_end = now;
            self.train_bytes += u64::from(len);
        }
        self.avg_gap = ewma(self.avg_gap, gap, GAP_EWMA_SHIFT);
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trains of 10 frames back to back at 40 Mbit/s, 10 ms apart: the estimate converges to
    /// 40 Mbit/s and the rate to 15/16 of it.
    #[test]
    fn trains_at_the_bottleneck_rate_set_the_shaper_just_below_it() {
        let mut a = Autorate::default();
        let spacing = 1514 * 8 * 1_000_000_000 / 40_000_000; // 302.8 µs
        let mut now = 0;
        let mut last_rate = None;
        for _ in 0..300 {
            for _ in 0..10 {
                if let Some(r) = a.on_arrival(1514, now) {
                    last_rate = Some(r);
                }
                now += spacing;
            }
            now += 10_000_000;
        }
        let expected = 5_000_000 * 15 / 16;
        let rate = last_rate.expect("the rate was set");
        assert!(
            rate.abs_diff(expected) * 100 < expected * 2,
            "{rate} vs {expected}"
        );
    }

    #[test]
    fn the_rate_changes_at_most_every_250_ms() {
        let mut a = Autorate::default();
        let mut changes = Vec::new();
        let mut now = 0;
        for _ in 0..2_000 {
            for _ in 0..4 {
                if a.on_arrival(1000, now).is_some() {
                    changes.push(now);
                }
                now += 100_000;
            }
            now += 1_000_000;
        }
        assert!(changes.len() >= 4);
        for w in changes.windows(2) {
            assert!(w[1] - w[0] >= MIN_CHANGE_INTERVAL_NS);
        }
    }
}
