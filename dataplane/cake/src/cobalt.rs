//! COBALT: CoDel and BLUE working together on one flow (spec 4.3).
//!
//! CoDel watches how long the packet at the head of the flow waited (its sojourn time). Once
//! sojourn times stay above `target` for `interval`, it signals congestion (an ECN mark, or a
//! drop for senders that cannot be marked), then signals again at intervals shrinking with the
//! square root of the signal count: the control law that lets a TCP sender's window settle at
//! the point where the queue stays near `target`. BLUE handles what CoDel cannot: a flow that
//! does not respond and fills the buffer. Only buffer overflow raises BLUE's drop probability,
//! so well-behaved flows never meet it.
//!
//! Choice (the spec leaves it open): a flow that has never signalled waits one full interval
//! before its first signal, as RFC 8289's CoDel does. The kernel leaves the inverse square
//! root at 0 for a fresh flow, which makes its first signal immediate; we keep the inverse
//! square root consistent with the count at every step, so the one-interval grace holds.

/// 1/sqrt(count) in Q0.32 for count 0..16 (0 and 1 both map to ~1.0); beyond, a Newton step
/// per change of count keeps the estimate (spec 4.3).
const INV_SQRT_TABLE: [u32; 16] = [
    0xFFFF_FFFF,
    0xFFFF_FFFF,
    3_037_000_500,
    2_479_700_525,
    2_147_483_647,
    1_920_767_767,
    1_753_413_056,
    1_623_345_051,
    1_518_500_250,
    1_431_655_765,
    1_358_187_914,
    1_294_981_364,
    1_239_850_263,
    1_191_209_601,
    1_147_878_294,
    1_108_955_788,
];

/// BLUE's step up on each overflow of the flow: 1/256 in Q0.32.
pub const BLUE_INCREMENT: u32 = 1 << 24;
/// BLUE's step down when the flow is found empty: 1/4096 in Q0.32.
pub const BLUE_DECREMENT: u32 = 1 << 20;

/// The per-flow AQM state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cobalt {
    /// CoDel's signal count.
    pub count: u32,
    /// 1/sqrt(count), Q0.32.
    pub inv_sqrt: u32,
    /// When the next signal is due, ns.
    pub drop_next: u64,
    /// CoDel is in its dropping state.
    pub dropping: bool,
    /// BLUE's drop probability, Q0.32.
    pub p_drop: u32,
    /// Last change of `p_drop`, ns.
    pub blue_timer: u64,
}

/// What to do with the packet at the head of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Deliver,
    /// Send it with ECN CE set (CoDel signalled and the packet is ECN-capable).
    Mark,
    /// Drop it (CoDel signalled on a non-ECN packet, or BLUE dropped it).
    Drop,
}

/// What CoDel needs to know of the tin.
#[derive(Debug, Clone, Copy)]
pub struct CobaltParams {
    /// Sojourn time above which the queue is too long, ns.
    pub target: u64,
    /// The control law's base interval, ns.
    pub interval: u64,
    /// Time to send one MTU at the tin's rate, ns.
    pub mtu_time: u64,
}

/// 1/sqrt(count) for a count reached by one step from `count_before` with estimate `inv`.
fn inv_sqrt_after(count: u32, inv: u32) -> u32 {
    if (count as usize) < INV_SQRT_TABLE.len() {
        return INV_SQRT_TABLE[count as usize];
    }
    // Newton: y' = y * (3 - count * y^2) / 2, all in Q0.32.
    let y = u128::from(inv);
    let y2 = (y * y) >> 32;
    let three = 3u128 << 32;
    let val = three.saturating_sub(u128::from(count) * y2);
    ((y * val) >> 33).min(u128::from(u32::MAX)) as u32
}

impl Cobalt {
    /// `t + interval / sqrt(count)`.
    #[inline]
    pub fn control_law(&self, t: u64, interval: u64) -> u64 {
        t + ((u128::from(interval) * u128::from(self.inv_sqrt)) >> 32) as u64
    }

    fn set_count(&mut self, count: u32) {
        self.count = count;
        self.inv_sqrt = inv_sqrt_after(count, self.inv_sqrt);
    }

    /// Judges the packet taken from the head of the flow (spec 4.3 steps 1 to 6).
    ///
    /// `bulk_flows` is `Some(n)` in ingress mode (the AQM then waits for two packets per bulk
    /// flow of queue). `ecn_capable` is whether the packet can carry a mark. `random` is a
    /// uniform 32-bit value for BLUE.
    pub fn judge(
        &mut self,
        p: &CobaltParams,
        sojourn: u64,
        now: u64,
        bulk_flows: Option<u32>,
        ecn_capable: bool,
        random: u32,
    ) -> Verdict {
        let mut over = sojourn > p.target && sojourn > 4 * p.mtu_time;
        if let Some(n) = bulk_flows {
            over &= sojourn > 2 * p.mtu_time * u64::from(n);
        }
        if over {
            if !self.dropping {
                self.dropping = true;
                if self.count == 0 {
                    self.set_count(1);
                }
                self.drop_next = self.control_law(now, p.interval);
            }
        } else if self.dropping {
            self.dropping = false;
        }

        let mut verdict = Verdict::Deliver;
        if self.dropping && self.count > 0 && now >= self.drop_next {
            verdict = if ecn_capable {
                Verdict::Mark
            } else {
                Verdict::Drop
            };
            self.set_count(self.count.saturating_add(1));
            self.drop_next = self.control_law(self.drop_next, p.interval);
        } else {
            while self.count > 0 && now >= self.drop_next {
                self.set_count(self.count - 1);
                self.drop_next = self.control_law(self.drop_next, p.interval);
            }
        }

        if verdict != Verdict::Drop && self.p_drop > 0 && random < self.p_drop {
            verdict = Verdict::Drop;
        }

        if self.count == 0 {
            self.drop_next = now + p.interval;
        } else if self.drop_next < now && verdict != Verdict::Drop {
            self.drop_next = now;
        }
        verdict
    }

    /// The flow was found empty: BLUE relaxes, CoDel leaves its dropping state and its count
    /// decays one step if due. Returns true if this made the flow responsive again (p reached 0).
    pub fn relax(&mut self, p: &CobaltParams, now: u64) -> bool {
        let mut became_responsive = false;
        if self.p_drop > 0 && now.saturating_sub(self.blue_timer) > p.target {
            self.p_drop = self.p_drop.saturating_sub(BLUE_DECREMENT);
            self.blue_timer = now;
            became_responsive = self.p_drop == 0;
        }
        self.dropping = false;
        if self.count > 0 && now >= self.drop_next {
            self.set_count(self.count - 1);
            self.drop_next = self.control_law(self.drop_next, p.interval);
        }
        became_responsive
    }

    /// The flow was the victim of a buffer overflow: BLUE steps up (at most once per `target`)
    /// and CoDel is forced to signal at the next packet. Returns true if the flow just became
    /// unresponsive (p left 0).
    pub fn overflowed(&mut self, p: &CobaltParams, now: u64) -> bool {
        let was_zero = self.p_drop == 0;
        if now.saturating_sub(self.blue_timer) > p.target {
            self.p_drop = self.p_drop.saturating_add(BLUE_INCREMENT);
            self.blue_timer = now;
        }
        self.dropping = true;
        self.drop_next = now;
        if self.count == 0 {
            self.set_count(1);
        }
        was_zero && self.p_drop > 0
    }

    /// Brings an empty flow's state forward to `now` as if it had been watched all along: the
    /// count steps down once per control-law interval (what [`Cobalt::judge`] step 4 would do
    /// at the flow's next packet anyway), and BLUE's probability falls 1/4096 per `target`
    /// elapsed since its last change (choice: as if the empty flow were visited every
    /// `target`; the kernel relaxes BLUE only at visits, which an idle instance never gets).
    /// Returns true if this made the flow responsive again (p reached 0).
    pub fn fast_forward(&mut self, p: &CobaltParams, now: u64) -> bool {
        self.dropping = false;
        while self.count > 0 && now >= self.drop_next {
            self.set_count(self.count - 1);
            self.drop_next = self.control_law(self.drop_next, p.interval);
        }
        if self.p_drop == 0 {
            return false;
        }
        let steps = now.saturating_sub(self.blue_timer) / p.target.max(1);
        if steps == 0 {
            return false;
        }
        let decrement = u64::from(BLUE_DECREMENT).saturating_mul(steps);
        self.p_drop = u64::from(self.p_drop).saturating_sub(decrement) as u32;
        self.blue_timer += steps * p.target.max(1);
        self.p_drop == 0
    }

    /// True when the state carries no information a fresh flow lacks: no count, BLUE off. The
    /// next-drop time of such a flow is never read (with count 0 the control law restarts
    /// from `now` when the queue next goes over target), so the flow can be forgotten.
    pub fn is_at_rest(&self) -> bool {
        self.count == 0 && self.p_drop == 0
    }

    /// True while the AQM still has state to relax (the flow must stay in the decaying list).
    pub fn is_active(&self, now: u64) -> bool {
        self.p_drop > 0 || self.count > 0 || now < self.drop_next
    }

    /// True while BLUE is engaged: the flow counts as unresponsive.
    pub fn is_unresponsive(&self) -> bool {
        self.p_drop > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const P: CobaltParams = CobaltParams {
        target: 5 * MS,
        interval: 100 * MS,
        mtu_time: 121_120,
    };

    /// Q0.32 fixed point: 1.0 is 2^32.
    const Q32: u64 = 1 << 32;

    #[test]
    fn table_values_are_inverse_square_roots() {
        for (count, &value) in INV_SQRT_TABLE.iter().enumerate().skip(2) {
            let exact = Q32 as f64 / (count as f64).sqrt();
            assert!((value as f64 - exact).abs() <= 1.0, "count {count}");
        }
    }

    #[test]
    fn newton_steps_track_the_inverse_square_root_beyond_the_table() {
        let mut c = Cobalt::default();
        for n in 1..=2_000u32 {
            c.set_count(n);
            let exact = Q32 as f64 / f64::from(n).sqrt();
            let rel = (f64::from(c.inv_sqrt) - exact).abs() / exact;
            assert!(rel < 0.01, "count {n}: {} vs {exact}", c.inv_sqrt);
        }
        for n in (1..2_000u32).rev() {
            c.set_count(n);
            let exact = Q32 as f64 / f64::from(n).sqrt();
            assert!(
                (f64::from(c.inv_sqrt) - exact).abs() / exact < 0.01,
                "down to {n}"
            );
        }
    }

    /// Sojourn always over target: the first signal one interval after the queue went over
    /// target, then at interval / sqrt(count).
    #[test]
    fn signals_follow_the_control_law() {
        let mut c = Cobalt::default();
        let start = 1_000 * MS;
        let mut signals = Vec::new();
        let mut now = start;
        while now < start + 1_000 * MS {
            if c.judge(&P, 20 * MS, now, None, false, u32::MAX) == Verdict::Drop {
                signals.push(now - start);
            }
            now += 100_000; // a packet every 100 µs
        }
        // First signal after one interval (RFC 8289 grace; see the module docs).
        assert!(signals[0].abs_diff(100 * MS) <= 100_000, "{signals:?}");
        // Then gaps of interval / sqrt(count) for count 2, 3, 4, ...
        for (i, pair) in signals.windows(2).enumerate().take(8) {
            let count = (i + 2) as f64;
            let expected = 100e6 / count.sqrt();
            let gap = (pair[1] - pair[0]) as f64;
            assert!(
                (gap - expected).abs() <= 100_000.0,
                "gap {i}: {gap} vs {expected}"
            );
        }
    }

    #[test]
    fn ecn_capable_packets_are_marked_not_dropped() {
        let mut c = Cobalt::default();
        let mut verdicts = Vec::new();
        for i in 0..3_000u64 {
            verdicts.push(c.judge(&P, 20 * MS, i * 100_000, None, true, u32::MAX));
        }
        assert!(verdicts.contains(&Verdict::Mark));
        assert!(!verdicts.contains(&Verdict::Drop));
    }

    #[test]
    fn below_target_or_below_four_mtu_times_never_signals() {
        let mut c = Cobalt::default();
        for i in 0..10_000u64 {
            assert_eq!(
                c.judge(&P, 4 * MS, i * 100_000, None, false, 0),
                Verdict::Deliver
            );
        }
        // At 1 Mbit/s an MTU takes 12.1 ms: 4 of them exceed a 20 ms sojourn's worth of target.
        let slow = CobaltParams {
            target: 18 * MS,
            interval: 113 * MS,
            mtu_time: 12_112_000,
        };
        let mut c = Cobalt::default();
        for i in 0..10_000u64 {
            assert_eq!(
                c.judge(&slow, 40 * MS, i * MS, None, false, 0),
                Verdict::Deliver
            );
        }
    }

    #[test]
    fn ingress_waits_for_two_packets_per_bulk_flow() {
        // 8 bulk flows: 2 * 121 µs * 8 = 1.94 ms < 20 ms, still over; 100 flows: 24 ms > 20 ms.
        let mut c = Cobalt::default();
        let mut signalled = false;
        for i in 0..5_000u64 {
            signalled |=
                c.judge(&P, 20 * MS, i * 100_000, Some(100), false, u32::MAX) != Verdict::Deliver;
        }
        assert!(!signalled);
    }

    #[test]
    fn count_decays_after_the_queue_drains() {
        let mut c = Cobalt::default();
        let mut now = 0;
        while c.count < 6 {
            c.judge(&P, 20 * MS, now, None, false, u32::MAX);
            now += 100_000;
        }
        // Good packets: count steps down one per control-law interval, not reset at once.
        let count = c.count;
        c.judge(&P, MS, now, None, false, u32::MAX);
        assert!(c.count >= count - 1 && !c.dropping);
        for _ in 0..100 {
            now += 50 * MS;
            c.judge(&P, MS, now, None, false, u32::MAX);
        }
        assert_eq!(c.count, 0);
    }

    /// Fast-forwarding an idle flow lands where judge's own catch-up (step 4) would.
    #[test]
    fn fast_forward_matches_the_catch_up_at_the_next_packet() {
        let mut c = Cobalt::default();
        let mut now = 0;
        while c.count < 10 {
            c.judge(&P, 20 * MS, now, None, false, u32::MAX);
            now += 100_000;
        }
        for later in [now + 50 * MS, now + 300 * MS, now + 2_000 * MS] {
            let mut forwarded = c;
            forwarded.fast_forward(&P, later);
            let mut judged = c;
            judged.judge(&P, 0, later, None, false, u32::MAX);
            assert_eq!(forwarded.count, judged.count, "at {later}");
            assert_eq!(forwarded.inv_sqrt, judged.inv_sqrt);
        }
        let mut rested = c;
        rested.fast_forward(&P, now + 10_000 * MS);
        assert!(rested.is_at_rest());
        // BLUE: 2/256 falls by 1/4096 per 5 ms target: 32 steps, 160 ms.
        let mut b = Cobalt::default();
        b.overflowed(&P, 10 * MS);
        b.overflowed(&P, 20 * MS);
        b.count = 0;
        assert!(!b.fast_forward(&P, 20 * MS + 155 * MS));
        assert_eq!(b.p_drop, BLUE_DECREMENT);
        assert!(b.fast_forward(&P, 20 * MS + 160 * MS));
        assert!(b.is_at_rest());
    }

    #[test]
    fn blue_engages_only_through_overflow_and_relaxes_when_empty() {
        let mut c = Cobalt::default();
        assert!(c.overflowed(&P, 10 * MS));
        assert_eq!(c.p_drop, BLUE_INCREMENT);
        // Within `target` of the last step: no second increment.
        c.overflowed(&P, 11 * MS);
        assert_eq!(c.p_drop, BLUE_INCREMENT);
        c.overflowed(&P, 17 * MS);
        assert_eq!(c.p_drop, 2 * BLUE_INCREMENT);
        // BLUE drops with probability p: a random value below p drops.
        let mut d = c;
        d.dropping = false;
        d.count = 0;
        assert_eq!(d.judge(&P, 0, 18 * MS, None, true, 0), Verdict::Drop);
        let mut d = c;
        d.dropping = false;
        d.count = 0;
        assert_eq!(
            d.judge(&P, 0, 18 * MS, None, true, u32::MAX),
            Verdict::Deliver
        );
        // Relaxing: 1/4096 per `target`, so 2/256 takes 32 steps.
        let mut now = 30 * MS;
        let mut steps = 0;
        while c.p_drop > 0 {
            now += 6 * MS;
            c.relax(&P, now);
            steps += 1;
        }
        assert_eq!(steps, 2 * (BLUE_INCREMENT / BLUE_DECREMENT));
    }
}
