//! The timer wheel of active CAKE instances.
//!
//! A worker may own 100,000 instances, almost all idle. Those with packets wait here, keyed by
//! the time their shaper next allows a packet; the worker asks the wheel which are due and
//! never scans instances. Every operation costs O(1) per instance scheduled or fired, plus a
//! few bitmap probes per 262 µs of time advanced: the cost per packet does not grow with the
//! number of subscribers.
//!
//! Three hashed levels of 256 buckets (Varghese and Lauck's hierarchical timing wheel):
//! level 0 buckets are one tick ([`TICK_NS`], about 1 µs) wide, level 1 buckets 256 ticks
//! (262 µs), level 2 buckets 65,536 ticks (67 ms); together they cover 17 s. A deadline further
//! away waits in the last level-2 bucket and is re-filed when it comes round. Entries move down
//! a level when their bucket's time arrives ("cascading"), and fire from level 0.
//!
//! Deadlines are rounded up to the next tick, so an instance is never woken before its
//! deadline, and at most one tick after it once the worker polls.
//!
//! Entries are intrusive doubly-linked lists over one preallocated array indexed by instance
//! number, so scheduling, cancelling and rescheduling never allocate.

/// Width of a level-0 bucket: 2^10 ns = 1.024 µs, below the serialisation time of a 1500-byte
/// frame at 10 Gbit/s (1.2 µs), so a fast subscriber is not held back by the wheel's grain.
pub const TICK_NS: u64 = 1 << TICK_SHIFT;
const TICK_SHIFT: u32 = 10;
/// Buckets per level.
const BUCKETS: usize = 256;
const BUCKET_BITS: u32 = 8;
const LEVELS: usize = 3;
/// Ticks one level-`l` bucket spans: 1, 256, 65536.
const fn span(level: usize) -> u64 {
    1 << (BUCKET_BITS as usize * level)
}
/// Farthest distance the wheel files exactly, in ticks (2^24 ticks, about 17 s).
const HORIZON: u64 = span(LEVELS);

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    next: u32,
    prev: u32,
    /// Deadline in ticks (rounded up).
    tick: u64,
    /// `level * BUCKETS + index`, or `NONE` when not scheduled.
    bucket: u32,
}

/// The wheel. Instance numbers are `0..capacity`.
#[derive(Debug, Clone)]
pub struct TimerWheel {
    entries: Vec<Entry>,
    heads: Vec<u32>,
    /// One bit per bucket: set when the bucket holds an entry.
    occupied: [[u64; BUCKETS / 64]; LEVELS],
    /// Ticks up to and including `current` have been processed.
    current: u64,
    scheduled: usize,
}

impl TimerWheel {
    /// A wheel for instances `0..capacity`, starting at time `now` (ns). Allocates once.
    pub fn new(capacity: usize, now: u64) -> Self {
        TimerWheel {
            entries: vec![
                Entry {
                    next: NONE,
                    prev: NONE,
                    tick: 0,
                    bucket: NONE,
                };
                capacity
            ],
            heads: vec![NONE; LEVELS * BUCKETS],
            occupied: [[0; BUCKETS / 64]; LEVELS],
            current: now >> TICK_SHIFT,
            scheduled: 0,
        }
    }

    /// Instances the wheel can hold.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Instances currently scheduled.
    pub fn len(&self) -> usize {
        self.scheduled
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.scheduled == 0
    }

    /// True when `id` is scheduled.
    pub fn is_scheduled(&self, id: u32) -> bool {
        self.entries[id as usize].bucket != NONE
    }

    /// Schedules `id` to fire once time reaches `deadline_ns` (replacing any earlier schedule).
    /// A deadline already past fires at the next [`advance`](Self::advance).
    ///
    /// # Panics
    /// If `id` is not below the capacity (a bug in the caller, not an input error).
    pub fn schedule(&mut self, id: u32, deadline_ns: u64) {
        self.cancel(id);
        let tick = deadline_ns.div_ceil(TICK_NS).max(self.current + 1);
        self.entries[id as usize].tick = tick;
        self.file(id);
        self.scheduled += 1;
    }

    /// Removes `id` from the wheel if it is scheduled.
    pub fn cancel(&mut self, id: u32) {
        if self.entries[id as usize].bucket != NONE {
            self.unlink(id);
            self.scheduled -= 1;
        }
    }

    /// Processes time up to `now_ns`, calling `fire(id)` for every instance whose deadline has
    /// come, in deadline order (ties in any order). Fired instances are no longer scheduled.
    pub fn advance(&mut self, now_ns: u64, mut fire: impl FnMut(u32)) {
        let target = now_ns >> TICK_SHIFT;
        while self.current < target {
            if self.scheduled == 0 {
                self.current = target;
                return;
            }
            // Fire what is due in the rest of this level-0 revolution, up to the target.
            let block_end = (self.current | (span(1) - 1)) + 1;
            let last = target.min(block_end - 1);
            if last > self.current {
                let from = (self.current + 1) as usize & (BUCKETS - 1);
                let to = last as usize & (BUCKETS - 1);
                let mut index = from;
                while let Some(i) = next_set(&self.occupied[0], index, to) {
                    self.fire_bucket(i, &mut fire);
                    index = i + 1;
                    if index > to {
                        break;
                    }
                }
                self.current = last;
            }
            if target < block_end {
                return;
            }
            // Crossing into a new level-0 revolution: bring down what it holds.
            self.current = block_end;
            if self.current & (span(2) - 1) == 0 {
                self.cascade(
                    2,
                    (self.current >> (2 * BUCKET_BITS)) as usize & (BUCKETS - 1),
                );
            }
            self.cascade(1, (self.current >> BUCKET_BITS) as usize & (BUCKETS - 1));
            self.fire_bucket(self.current as usize & (BUCKETS - 1), &mut fire);
        }
    }

    fn file(&mut self, id: u32) {
        let tick = self.entries[id as usize].tick;
        let delta = tick - self.current;
        let (level, index) = if delta < span(1) {
            (0, tick as usize & (BUCKETS - 1))
        } else if delta < span(2) {
            (1, (tick >> BUCKET_BITS) as usize & (BUCKETS - 1))
        } else {
            // Beyond the horizon: file at the farthest level-2 bucket and re-file on arrival.
            let filed = if delta < HORIZON {
                tick
            } else {
                self.current + HORIZON - 1
            };
            (2, (filed >> (2 * BUCKET_BITS)) as usize & (BUCKETS - 1))
        };
        let bucket = level * BUCKETS + index;
        let head = self.heads[bucket];
        let e = &mut self.entries[id as usize];
        e.bucket = bucket as u32;
        e.prev = NONE;
        e.next = head;
        if head != NONE {
            self.entries[head as usize].prev = id;
        }
        self.heads[bucket] = id;
        self.occupied[level][index / 64] |= 1 << (index % 64);
    }

    fn unlink(&mut self, id: u32) {
        let Entry {
            next, prev, bucket, ..
        } = self.entries[id as usize];
        if prev != NONE {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[bucket as usize] = next;
            if next == NONE {
                let (level, index) = (bucket as usize / BUCKETS, bucket as usize % BUCKETS);
                self.occupied[level][index / 64] &= !(1 << (index % 64));
            }
        }
        if next != NONE {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[id as usize];
        e.bucket = NONE;
        e.next = NONE;
        e.prev = NONE;
    }

    /// Takes a whole bucket's list off the wheel, returning its first entry.
    fn take_bucket(&mut self, level: usize, index: usize) -> u32 {
        let bucket = level * BUCKETS + index;
        let head = self.heads[bucket];
        self.heads[bucket] = NONE;
        self.occupied[level][index / 64] &= !(1 << (index % 64));
        head
    }

    fn cascade(&mut self, level: usize, index: usize) {
        let mut id = self.take_bucket(level, index);
        while id != NONE {
            let next = self.entries[id as usize].next;
            self.file(id);
            id = next;
        }
    }

    fn fire_bucket(&mut self, index: usize, fire: &mut impl FnMut(u32)) {
        let mut id = self.take_bucket(0, index);
        while id != NONE {
            let e = &mut self.entries[id as usize];
            let next = e.next;
            e.bucket = NONE;
            e.next = NONE;
            e.prev = NONE;
            self.scheduled -= 1;
            fire(id);
            id = next;
        }
    }
}

/// The first set bit of a 256-bit map in `from..=to`.
#[inline]
fn next_set(bits: &[u64; BUCKETS / 64], from: usize, to: usize) -> Option<usize> {
    let mut word = from / 64;
    let mut mask = bits[word] & (u64::MAX << (from % 64));
    loop {
        if mask != 0 {
            let i = word * 64 + mask.trailing_zeros() as usize;
            return (i <= to).then_some(i);
        }
        word += 1;
        if word * 64 > to {
            return None;
        }
        mask = bits[word];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;

    fn fired(wheel: &mut TimerWheel, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        wheel.advance(now, |id| out.push(id));
        out
    }

    #[test]
    fn never_fires_early_and_at_most_one_tick_late() {
        let mut w = TimerWheel::new(4, 0);
        w.schedule(0, 12 * US + 1);
        assert!(fired(&mut w, 12 * US).is_empty());
        // 12001 ns rounds up to tick 12 (12288 ns): due once the clock reaches that tick.
        assert!(fired(&mut w, 12_287).is_empty());
        assert_eq!(fired(&mut w, 12_288), [0]);
        assert!(w.is_empty());
    }

    #[test]
    fn deadlines_across_every_level_fire_in_order() {
        let mut w = TimerWheel::new(8, 5 * MS);
        let deadlines = [
            5 * MS + 3 * US,
            5 * MS + 200 * US,
            5 * MS + 900 * US,
            5 * MS + 40 * MS,
            5 * MS + 2_000 * MS,
            5 * MS + 30_000 * MS, // beyond the 17 s horizon
        ];
        for (id, d) in deadlines.iter().enumerate() {
            w.schedule(id as u32, *d);
        }
        let mut order = Vec::new();
        let mut now = 5 * MS;
        while !w.is_empty() {
            now += 37 * US;
            w.advance(now, |id| {
                assert!(now >= deadlines[id as usize], "instance {id} fired early");
                assert!(
                    now - deadlines[id as usize] < 37 * US + TICK_NS,
                    "instance {id} fired late"
                );
                order.push(id);
            });
        }
        assert_eq!(order, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_long_jump_fires_everything_due() {
        let mut w = TimerWheel::new(3, 0);
        w.schedule(0, 10 * US);
        w.schedule(1, 10 * MS);
        w.schedule(2, 10_000 * MS);
        let mut got = fired(&mut w, 20 * MS);
        got.sort();
        assert_eq!(got, [0, 1]);
        assert_eq!(fired(&mut w, 10_001 * MS), [2]);
    }

    #[test]
    fn rescheduling_and_cancelling_move_the_entry() {
        let mut w = TimerWheel::new(2, 0);
        w.schedule(0, 100 * US);
        w.schedule(0, 5 * MS);
        w.schedule(1, 50 * US);
        w.cancel(1);
        assert_eq!(w.len(), 1);
        assert!(fired(&mut w, MS).is_empty());
        assert_eq!(fired(&mut w, 6 * MS), [0]);
        assert!(!w.is_scheduled(0));
    }

    #[test]
    fn past_deadlines_fire_at_the_next_tick() {
        let mut w = TimerWheel::new(1, 50 * MS);
        w.schedule(0, MS);
        assert_eq!(fired(&mut w, 50 * MS + TICK_NS), [0]);
    }

    /// Random schedules, cancels and advances against a plain list: same instances fire, none
    /// early, none more than a tick late.
    #[test]
    fn matches_a_reference_under_random_operations() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        const N: usize = 64;
        let mut w = TimerWheel::new(N, 0);
        let mut reference: Vec<Option<u64>> = vec![None; N];
        let mut now = 0u64;
        for _ in 0..200_000 {
            let id = (next() % N as u64) as u32;
            match next() % 8 {
                0..=3 => {
                    // Mostly near deadlines, sometimes far ones, like shapers at many rates.
                    let d = match next() % 10 {
                        0 => now + next() % (20_000 * MS),
                        1..=3 => now + next() % (50 * MS),
                        _ => now + next() % (300 * US),
                    };
                    w.schedule(id, d);
                    reference[id as usize] = Some(d.div_ceil(TICK_NS).max((now >> 10) + 1) << 10);
                }
                4 => {
                    w.cancel(id);
                    reference[id as usize] = None;
                }
                _ => {
                    now += next()
                        % (if next() % 50 == 0 {
                            5_000 * MS
                        } else {
                            200 * US
                        });
                    let mut got = Vec::new();
                    w.advance(now, |id| got.push(id));
                    got.sort();
                    let mut want: Vec<u32> = reference
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.is_some_and(|d| d <= now))
                        .map(|(i, _)| i as u32)
                        .collect();
                    want.sort();
                    assert_eq!(got, want, "at {now} ns");
                    for id in want {
                        reference[id as usize] = None;
                    }
                }
            }
            assert_eq!(w.len(), reference.iter().filter(|d| d.is_some()).count());
        }
    }
}
