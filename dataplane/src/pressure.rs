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
//! The instances that hold frames sit in one array sorted by the frames they hold, most first,
//! with the index where each frame count's block ends: the fattest is the first entry. Counts
//! change by a frame at a time (an enqueue, a dequeue, a drop), and a change of one frame
//! swaps the instance with the first or last of its block and moves that block's boundary by
//! one: O(1), a few loads, whatever the number of instances and however many share a count.
//! An instance that empties leaves from the array's end (the one-frame block), and one that
//! receives its first frame joins there, so the array never holds more entries than the
//! worker holds frames, and empty instances cost nothing. (It replaced a binary heap: with
//! thousands of instances holding the same few frames, each change walked up or down most of
//! the heap's depth, 9 % of the worker's time at 10,000 shaped subscribers.) A change of k
//! frames at once costs k such steps; only removing a subscriber or a CAKE memory-limit purge
//! does that. Never allocates after [`FattestInstance::new`].

/// Marks an instance that is not in the array (it holds no frame).
const ABSENT: u32 = u32::MAX;

/// The most frames the sort tells apart: counts above it tie with it. The worker's budget
/// (`shaping.queued_per_worker`, at most 4,194,304 frames) is at most that, and no instance holds
/// more than the budget, so in the appliance the order is exact.
const MAX_LEVEL: u32 = 1 << 22;

/// The sorted array.
#[derive(Debug, Clone)]
pub struct FattestInstance {
    /// The instances holding frames, sorted by their (capped) frame count, most first.
    order: Vec<u32>,
    /// Where each instance sits in `order`, or [`ABSENT`].
    position: Vec<u32>,
    /// Frames each instance holds.
    frames: Vec<u32>,
    /// `ends[c]`: how many instances hold `c` frames or more, which is where the block of
    /// count `c` ends in `order`, for `c` in `2..=top + 1` (`ends[top + 1]` stays 0, so a
    /// block's start is always the next one's end). The one-frame block ends where the array
    /// does, so `ends[0]` and `ends[1]` are unused: see [`Self::end`].
    ends: Vec<u32>,
    /// The highest count told apart: `min(budget, MAX_LEVEL)`.
    top: u32,
}

impl FattestInstance {
    /// Instances `0..capacity`, all empty, whose counts are told apart up to `budget` frames
    /// (the worker's budget: no instance holds more). Allocates once.
    pub fn new(capacity: usize, budget: u64) -> Self {
        let top = u32::try_from(budget)
            .unwrap_or(u32::MAX)
            .clamp(1, MAX_LEVEL);
        FattestInstance {
            order: Vec::with_capacity(capacity),
            position: vec![ABSENT; capacity],
            frames: vec![0; capacity],
            ends: vec![0; top as usize + 2],
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
        self.order.first().copied()
    }

    /// Frames instance `id` holds, as last recorded.
    pub fn frames(&self, id: u32) -> u32 {
        self.frames[id as usize]
    }

    /// Moves `id` from the block of `level` frames to the block of `level + 1`: it trades
    /// places with the first of its block, and that slot becomes the last of the block above.
    /// An empty instance joins the array at its end, the one-frame block.
    #[inline]
    fn step_up(&mut self, id: u32, level: u32) {
        if level == 0 {
            self.position[id as usize] = self.order.len() as u32;
            self.order.push(id);
            return;
        }
        let next = level as usize + 1;
        let head = self.ends[next];
        self.swap(id, head);
        self.ends[next] = head + 1;
    }

    /// Moves `id` from the block of `level` frames (at least 1) to the block of `level - 1`:
    /// it trades places with the last of its block, and that slot becomes the first of the
    /// block below. From the one-frame block, that slot is the array's last, and `id` leaves
    /// the array.
    #[inline]
    fn step_down(&mut self, id: u32, level: u32) {
        let last = self.end(level) - 1;
        self.swap(id, last);
        if level == 1 {
            self.order.pop();
            self.position[id as usize] = ABSENT;
        } else {
            self.ends[level as usize] = last;
        }
    }

    /// Where the block of `level` frames (at least 1) ends in the order.
    #[inline]
    fn end(&self, level: u32) -> u32 {
        if level == 1 {
            self.order.len() as u32
        } else {
            self.ends[level as usize]
        }
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
        /// Every instance holding frames once, in order of its capped count, most first, at
        /// the position and within the block boundaries that order gives it; no empty one.
        fn check_sorted(&self) {
            let level = |id: u32| self.frames[id as usize].min(self.top);
            let mut seen = vec![false; self.position.len()];
            for (at, &id) in self.order.iter().enumerate() {
                assert_eq!(self.position[id as usize] as usize, at);
                assert!(
                    !std::mem::replace(&mut seen[id as usize], true),
                    "{id} twice"
                );
                assert!(level(id) > 0, "{id} is empty");
                if at > 0 {
                    assert!(level(self.order[at - 1]) >= level(id), "unsorted at {at}");
                }
            }
            for (id, &at) in self.position.iter().enumerate() {
                assert_eq!(at == ABSENT, !seen[id], "position of {id}");
            }
            // Instances at or above each count, from a histogram of the counts.
            let mut at_least = vec![0usize; self.top as usize + 2];
            for &id in &self.order {
                at_least[level(id) as usize] += 1;
            }
            for c in (1..=self.top as usize).rev() {
                at_least[c] += at_least[c + 1];
            }
            for (c, &count) in at_least.iter().enumerate().skip(1) {
                assert_eq!(self.end(c as u32) as usize, count, "block {c}");
            }
        }
    }
}
