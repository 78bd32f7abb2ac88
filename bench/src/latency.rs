//! What one cache miss costs on this machine: the latency of a dependent load at working sets
//! from the L2 cache's size to a million subscribers' state, on 4 KiB pages and on
//! transparent 2 MiB pages.
//!
//! The shaped cases are chains of such loads (a subscriber's instance, its tin, its flow, the
//! queued frame), so these figures say how far their cycles per packet can fall on this
//! machine, and why the same code runs at another speed on a server whose last-level cache
//! holds the working set. A virtual machine whose last-level cache is small or shared shows
//! it here: the latency at 16 MiB is then already the latency of memory.

use serde::Serialize;
use std::alloc::{alloc, dealloc, Layout};
use std::time::Instant;

/// One working set's load latency.
#[derive(Debug, Clone, Serialize)]
pub struct LoadLatency {
    pub working_set_bytes: u64,
    /// The page size asked for: 4096, or 2 MiB through `madvise(MADV_HUGEPAGE)`.
    pub page_bytes: u64,
    /// Nanoseconds per load, each load's address coming from the one before.
    pub ns: f64,
}

const LINE: usize = 64;
const HUGE_PAGE: usize = 2 << 20;
/// Lines the chain visits: enough to defeat every cache and TLB at the largest working set,
/// few enough that building the chain takes well under a second.
const MAX_LINES: usize = 1 << 20;
const LOADS: usize = 1 << 20;
/// Loads before the timed ones: enough to bring a cache-sized working set in.
const WARM_LOADS: usize = 1 << 16;
/// `madvise` advice asking the kernel for transparent hugepages (Linux `MADV_HUGEPAGE`).
const MADV_HUGEPAGE: i32 = 14;

extern "C" {
    fn madvise(addr: *mut std::ffi::c_void, length: usize, advice: i32) -> i32;
}

/// The working sets measured: within L2, past a typical VM's share of L3, and about what a
/// million subscribers' instances and flows occupy.
pub const WORKING_SETS: [usize; 3] = [1 << 20, 16 << 20, 2 << 30];

/// Measures every working set on 4 KiB pages, and the largest on 2 MiB pages when the kernel
/// offers transparent hugepages; with `quick`, only the working sets below 2 GiB (faulting
/// 2 GiB in takes seconds of kernel time on a virtual machine). Returns nothing for a working
/// set the allocator refuses.
pub fn measure(quick: bool) -> Vec<LoadLatency> {
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| !s.contains("[never]"));
    let largest = WORKING_SETS[WORKING_SETS.len() - 1];
    let mut points: Vec<LoadLatency> = WORKING_SETS
        .iter()
        .filter(|&&bytes| !quick || bytes < largest)
        .filter_map(|&bytes| measure_one(bytes, false))
        .collect();
    if thp && !quick {
        points.extend(measure_one(largest, true));
    }
    points
}

/// One line-sized cell per chunk of the working set, at a random line of its chunk, linked in
/// one random cycle: every load lands on a line (and, past the TLB's reach, a page) the
/// hardware could not have guessed.
fn measure_one(bytes: usize, huge: bool) -> Option<LoadLatency> {
    let layout = Layout::from_size_align(bytes, HUGE_PAGE).ok()?;
    // Not zeroed: zeroing would fault every page in before the advice below could apply.
    // Only the cells written below are ever read.
    // SAFETY: the layout has a non-zero size.
    let base = unsafe { alloc(layout) }.cast::<u64>();
    if base.is_null() {
        return None;
    }
    if huge {
        // SAFETY: `base..base + bytes` is one allocation of ours. Advice only: the kernel may
        // decline it, and the measurement then shows 4 KiB pages.
        unsafe { madvise(base.cast(), bytes, MADV_HUGEPAGE) };
    }
    let lines = (bytes / LINE).min(MAX_LINES);
    let chunk_lines = bytes / LINE / lines;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next_random = |bound: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % bound as u64) as usize
    };
    // Sattolo's shuffle: a random permutation that is a single cycle through every chunk.
    let mut order: Vec<u32> = (0..lines as u32).collect();
    for i in (1..lines).rev() {
        order.swap(i, next_random(i));
    }
    let cell: Vec<usize> = (0..lines)
        .map(|chunk| (chunk * chunk_lines + next_random(chunk_lines)) * LINE / 8)
        .collect();
    for (chunk, &to) in order.iter().enumerate() {
        // SAFETY: every cell index is below `bytes / 8` (chunk and line within the chunk are
        // both in range).
        unsafe { base.add(cell[chunk]).write(cell[to as usize] as u64) };
    }
    let chase = |mut at: usize, loads: usize| {
        for _ in 0..loads {
            // SAFETY: `at` is always a cell, written above with the index of another cell.
            at = unsafe { base.add(at).read() } as usize;
        }
        at
    };
    // A lap of a cache-sized working set (the pages are all in: the cells were written), to
    // warm what can be warmed, then the timed loads.
    let at = chase(cell[0], lines.min(WARM_LOADS));
    let started = Instant::now();
    let at = chase(at, LOADS);
    let ns = started.elapsed().as_secs_f64() * 1e9 / LOADS as f64;
    std::hint::black_box(at);
    // SAFETY: allocated above with this layout, and not used past this point.
    unsafe { dealloc(base.cast(), layout) };
    Some(LoadLatency {
        working_set_bytes: bytes as u64,
        page_bytes: if huge { HUGE_PAGE as u64 } else { 4096 },
        ns,
    })
}

/// "1 MiB 9 ns, 16 MiB 120 ns, 2 GiB 380 ns; on 2 MiB pages 2 GiB 240 ns".
pub fn summary(points: &[LoadLatency]) -> String {
    let list = |huge: bool| {
        points
            .iter()
            .filter(|p| (p.page_bytes > 4096) == huge)
            .map(|p| format!("{} {:.0} ns", size_text(p.working_set_bytes), p.ns))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (small, huge) = (list(false), list(true));
    if huge.is_empty() {
        small
    } else {
        format!("{small}; on 2 MiB pages {huge}")
    }
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_working_set_within_the_caches_loads_faster_than_one_beyond_them() {
        // Physics, not a speed target: 256 KiB fits every L2 of the last decade, 256 MiB no
        // cache at all, so the chase through the second must be slower per load.
        let small = measure_one(256 << 10, false).unwrap();
        let large = measure_one(256 << 20, false).unwrap();
        assert!(
            large.ns > 2.0 * small.ns,
            "{} ns at 256 KiB, {} ns at 256 MiB",
            small.ns,
            large.ns
        );
    }

    #[test]
    fn the_summary_names_sizes_and_pages() {
        let p = |bytes: u64, page_bytes: u64, ns: f64| LoadLatency {
            working_set_bytes: bytes,
            page_bytes,
            ns,
        };
        assert_eq!(
            summary(&[
                p(1 << 20, 4096, 9.2),
                p(2 << 30, 4096, 380.4),
                p(2 << 30, 2 << 20, 240.0)
            ]),
            "1 MiB 9 ns, 2 GiB 380 ns; on 2 MiB pages 2 GiB 240 ns"
        );
    }
}
