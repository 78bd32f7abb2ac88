//! Which of a worker's instances holds the most frames: the victim when the worker's budget of
//! queued frames runs out.
//!
//! Every instance has its own CAKE memory limit, but a worker's instances together may be
//! allowed more than the worker can hold (thousands of subscribers, each with megabytes of
//! limit). When the worker's budget is used up, the frame to drop is the head of the fattest
//! flow of the fattest instance: the subscriber receiving the most is the one whose queue
//! shrinks, and everyone else keeps receiving, so a flood at one subscriber cannot starve the
//! others of buffers. That is CAKE's own overflow rule (spec 5.4) one level up.
//!
//! Every instance sits in one array sorted by the frames it holds, fewest first, with the
//! index where each frame count's block starts: the fattest is the last entry. Counts change
//! by a frame at a time (an enqueue, a dequeue, a drop), and a change of one frame swaps the
//! instance with the first or last of its block and moves that block's boundary by one:
//! O(1), a few loads, whatever the number of instances and however many share a count. (It
//! replaced a binary heap: with thousands of instances holding the same few frames, each
//! change walked up or down most of the heap's depth, 9 % of the worker's time at 10,000
//! shaped subscribers.) A change of k frames at once costs k such steps; only removing a
//! subscriber or a CAKE memory-limit purge does that. Never allocates after
//! [`FattestInstance::new`].

/// The most frames the sort tells apart: counts above it tie with it. The worker's budget
/// (`shaping.queued_per_worker`, at most 4,194,304 frames) is below it, and no instance holds
/// more than the budget, so in the appliance the order is exact.
const MAX_LEVEL: u32 = 1 << 22;

/// The sorted array.
#[derive(Debug, Clone)]
pub struct FattestInstance {
    /// Instance numbers, sorted by their (capped) frame count, fewest first.
    order: Vec<u32>,
    /// Where each instance sits in `order`.
    position: Vec<u32>,
    /// Frames each instance holds.
    frames: Vec<u32>,
    /// `first[c]`: where in `order` the instances holding `c` or more frames start, for `c` in
    /// `1..=top` (index 0 unused: the zero block starts at 0). `first[top + 1]` stays at the
    /// array's end, so a block's end is always the next block's start.
    first: Vec<u32>,
    /// The highest count told apart: `min(budget, MAX_LEVEL)`.
    top: u32,
}

impl FattestInstance {
    /// Instances `0..capacity`, all empty, whose counts are told apart up to `budget` frames
    /// (the worker's budget: no instance holds more). Allocates once.
    pub fn new(capacity: usize, budget: u64) -> Self {
        let capacity = u32::try_from(capacity).expect("instance numbers are u32");
        let top = u32::try_from(budget)
            .unwrap_or(u32::MAX)
            .clamp(1, MAX_LEVEL);
        FattestInstance {
            order: (0..capacity).collect(),
            position: (0..capacity).collect(),
            frames: vec![0; capacity as usize],
            first: vec![capacity; top as usize + 2],
            top,
        }
    }

    /// Records that instance `id` now holds `frames` frames.
    #[inline]
    pub fn set(&mut self, id: u32, frames: u32) {
        let i = id as usize;
        let before = std::mem::replace(&mut self.frames[i], frames).min(self.top);
        let after = frames.min(self.top);
        for level in (after + 1..=before).rev() {
            self.step_down(id, level);
        }
        for level in before..after {
            self.step_up(id, level);
        }
    }

    /// The instance holding the most frames (any of them on a tie), if any holds frames.
    #[inline]
    pub fn fattest(&self) -> Option<u32> {
        let id = *self.order.last()?;
        (self.frames[id as usize] > 0).then_some(id)
    }

    /// Frames instance `id` holds, as last recorded.
    pub fn frames(&self, id: u32) -> u32 {
        self.frames[id as usize]
    }

    /// Moves `id` from the block of `level` frames to the block of `level + 1`: it trades
    /// places with the last of its block, which then becomes the first of the next.
    #[inline]
    fn step_up(&mut self, id: u32, level: u32) {
        let next = level as usize + 1;
        let last = self.first[next] - 1;
        self.swap(id, last);
        self.first[next] = last;
    }

    /// Moves `id` from the block of `level` frames (at least 1) to the block of `level - 1`:
    /// it trades places with the first of its block, which then becomes the last of the one
    /// below.
    #[inline]
    fn step_down(&mut self, id: u32, level: u32) {
        let at = level as usize;
        let head = self.first[at];
        self.swap(id, head);
        self.first[at] = head + 1;
    }

    /// Puts `id` at `to` in the order, and whoever was there where `id` was.
    #[inline]
    fn swap(&mut self, id: u32, to: u32) {
        let from = self.position[id as usize];
        let other = self.order[to as usize];
        self.order[from as usize] = other;
        self.position[other as usize] = from;
        self.order[to as usize] = id;
        self.position[id as usize] = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the test needs no dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn the_fattest_is_the_instance_with_the_most_frames_after_any_changes() {
        let mut sort = FattestInstance::new(64, 1_000);
        let mut truth = [0u32; 64];
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000 {
            let id = (next(&mut state) % 64) as u32;
            // Mostly one frame at a time, as in the worker; sometimes a jump or an emptying.
            let frames = match next(&mut state) % 10 {
                0 => 0,
                1 => (next(&mut state) % 500) as u32,
                2..=5 => truth[id as usize].saturating_sub(1),
                _ => truth[id as usize] + 1,
            };
            truth[id as usize] = frames;
            sort.set(id, frames);
            let most = *truth.iter().max().unwrap();
            match sort.fattest() {
                None => assert_eq!(most, 0, "step {step}"),
                Some(f) => assert_eq!(truth[f as usize], most, "step {step}"),
            }
            assert_eq!(sort.frames(id), frames);
            sort.check_sorted();
        }
    }

    #[test]
    fn only_an_instance_holding_frames_is_the_fattest() {
        let mut sort = FattestInstance::new(4, 1_000);
        assert_eq!(sort.fattest(), None);
        sort.set(2, 5);
        sort.set(3, 7);
        assert_eq!(sort.fattest(), Some(3));
        sort.set(3, 0);
        assert_eq!(sort.fattest(), Some(2));
        sort.set(2, 0);
        assert_eq!(sort.fattest(), None);
        sort.check_sorted();
    }

    #[test]
    fn counts_above_the_budget_tie_with_it() {
        let mut sort = FattestInstance::new(3, 10);
        sort.set(0, 10);
        sort.set(1, 25);
        assert_eq!(sort.frames(1), 25);
        assert!(sort.fattest().is_some_and(|f| f <= 1));
        sort.set(0, 9);
        assert_eq!(sort.fattest(), Some(1));
        sort.set(1, 0);
        assert_eq!(sort.fattest(), Some(0));
        sort.check_sorted();
    }

    impl FattestInstance {
        /// Every instance once, in order of its capped count, and every block boundary and
        /// position where that order puts it.
        fn check_sorted(&self) {
            let level = |id: u32| self.frames[id as usize].min(self.top);
            let mut seen = vec![false; self.order.len()];
            for (at, &id) in self.order.iter().enumerate() {
                assert_eq!(self.position[id as usize] as usize, at);
                assert!(
                    !std::mem::replace(&mut seen[id as usize], true),
                    "{id} twice"
                );
                if at > 0 {
                    assert!(level(self.order[at - 1]) <= level(id), "unsorted at {at}");
                }
            }
            // Instances below each count, from a histogram of the counts.
            let mut below = vec![0usize; self.top as usize + 2];
            for &id in &self.order {
                below[level(id) as usize + 1] += 1;
            }
            for c in 1..below.len() {
                below[c] += below[c - 1];
                assert_eq!(self.first[c] as usize, below[c], "block {c}");
            }
        }
    }
}
