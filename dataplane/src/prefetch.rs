//! Asking the CPU to start loading memory that is about to be read.
//!
//! A worker at tens of thousands of subscribers finds most of a frame's state (its instance,
//! tin, flow set) outside the caches, and each of those loads waits for the one before it.
//! Frames of one burst are independent, so asking for every frame's next lines before using
//! any of them overlaps the waits instead of adding them up.

/// Starts loading every cache line of `*value`.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    prefetch_bytes((value as *const T).cast(), core::mem::size_of::<T>());
}

/// Starts loading every cache line of `len` bytes at `start`. Only a hint: it reads nothing
/// architecturally and never faults, whatever the address.
#[inline(always)]
pub fn prefetch_bytes(start: *const u8, len: usize) {
    let end = start as usize + len.max(1);
    let mut line = start as usize & !63;
    while line < end {
        prefetch_line(line as *const u8);
        line += 64;
    }
}

#[inline(always)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is part of SSE, which every x86_64 CPU has; it reads nothing
    // architecturally and never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
