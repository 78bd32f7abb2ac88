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
//! An indexed binary max-heap of the instances that hold frames, keyed by their frame count.
//! A change of one instance's count moves it along one path of the heap: O(log active), and
//! in practice a comparison or two, since counts change by a frame at a time. Instances
//! without frames are not in it, so the cost never depends on the number of subscribers, and
//! the heap never holds more entries than the worker holds frames. Never allocates after
//! [`FattestInstance::new`].

/// Marks an instance that is not in the heap.
const ABSENT: u32 = u32::MAX;

/// The heap.
#[derive(Debug, Clone)]
pub struct FattestInstance {
    /// Instance numbers, heap-ordered by `frames` (largest first).
    heap: Vec<u32>,
    /// Where each instance sits in `heap`, or [`ABSENT`].
    position: Vec<u32>,
    /// Frames each instance holds.
    frames: Vec<u32>,
}

impl FattestInstance {
    /// A heap for instances `0..capacity`, all empty. Allocates once.
    pub fn new(capacity: usize) -> Self {
        FattestInstance {
            heap: Vec::with_capacity(capacity),
            position: vec![ABSENT; capacity],
            frames: vec![0; capacity],
        }
    }

    /// Records that instance `id` now holds `frames` frames.
    #[inline]
    pub fn set(&mut self, id: u32, frames: u32) {
        let i = id as usize;
        let before = std::mem::replace(&mut self.frames[i], frames);
        let at = self.position[i];
        match (at == ABSENT, frames) {
            (true, 0) => {}
            (true, _) => {
                let at = self.heap.len();
                self.heap.push(id);
                self.position[i] = at as u32;
                self.sift_up(at);
            }
            (false, 0) => self.remove_at(at as usize),
            (false, _) if frames > before => self.sift_up(at as usize),
            (false, _) => self.sift_down(at as usize),
        }
    }

    /// The instance holding the most frames (any of them on a tie), if any holds frames.
    #[inline]
    pub fn fattest(&self) -> Option<u32> {
        self.heap.first().copied()
    }

    /// Frames instance `id` holds, as last recorded.
    pub fn frames(&self, id: u32) -> u32 {
        self.frames[id as usize]
    }

    fn key(&self, at: usize) -> u32 {
        self.frames[self.heap[at] as usize]
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a] as usize] = a as u32;
        self.position[self.heap[b] as usize] = b as u32;
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.key(parent) >= self.key(at) {
                break;
            }
            self.swap(parent, at);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let mut largest = at;
            for child in [2 * at + 1, 2 * at + 2] {
                if child < self.heap.len() && self.key(child) > self.key(largest) {
                    largest = child;
                }
            }
            if largest == at {
                return;
            }
            self.swap(at, largest);
            at = largest;
        }
    }

    fn remove_at(&mut self, at: usize) {
        let last = self.heap.len() - 1;
        self.swap(at, last);
        let id = self.heap.pop().expect("the heap holds the entry removed");
        self.position[id as usize] = ABSENT;
        if at < self.heap.len() {
            // The entry moved into the hole may belong above or below it.
            self.sift_up(at);
            self.sift_down(at);
        }
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
        let mut heap = FattestInstance::new(64);
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
            heap.set(id, frames);
            let most = *truth.iter().max().unwrap();
            match heap.fattest() {
                None => assert_eq!(most, 0, "step {step}"),
                Some(f) => assert_eq!(truth[f as usize], most, "step {step}"),
            }
            assert_eq!(heap.frames(id), frames);
        }
    }

    #[test]
    fn empty_instances_are_not_held() {
        let mut heap = FattestInstance::new(4);
        assert_eq!(heap.fattest(), None);
        heap.set(2, 5);
        heap.set(3, 7);
        assert_eq!(heap.fattest(), Some(3));
        heap.set(3, 0);
        assert_eq!(heap.fattest(), Some(2));
        heap.set(2, 0);
        assert_eq!(heap.fattest(), None);
        assert!(heap.heap.is_empty());
    }
}
