//! Single-producer, single-consumer rings of mbufs (DPDK `rte_ring`), for handing frames from
//! one worker to another.

use super::{DpdkError, Eal, MbufBuffer};
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

struct RingInner {
    raw: NonNull<dpdk_sys::rte_ring>,
}

// SAFETY: an rte_ring is shared memory designed for use from several lcores; which side may
// enqueue and which may dequeue is enforced by the unique producer and consumer handles.
unsafe impl Send for RingInner {}
// SAFETY: as above.
unsafe impl Sync for RingInner {}

impl Drop for RingInner {
    fn drop(&mut self) {
        // Both handles are gone: nobody else touches the ring. Free what it still holds.
        let mut leftovers: MbufBuffer<64> = MbufBuffer::new();
        loop {
            let slots = leftovers.tail_slots();
            // SAFETY: the ring holds owned mbuf pointers; we are its last user.
            let n = unsafe {
                dpdk_sys::rte_ring_sc_dequeue_burst(
                    self.raw.as_ptr(),
                    slots.as_mut_ptr().cast(),
                    slots.len() as u32,
                    std::ptr::null_mut(),
                )
            } as usize;
            if n == 0 {
                break;
            }
            // SAFETY: n owned mbufs were stored in the tail slots.
            unsafe { leftovers.filled(n) };
            while leftovers.pop().is_some() {}
        }
        // SAFETY: the ring was created by rte_ring_create and is empty and unused.
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) }
    }
}

/// The sending end of a ring: one per ring, owned by one worker.
pub struct RingProducer {
    ring: Arc<RingInner>,
}

/// The receiving end of a ring: one per ring, owned by one worker.
pub struct RingConsumer {
    ring: Arc<RingInner>,
}

/// Creates a ring of `capacity` mbufs (rounded up to a power of two by DPDK's rules when it is
/// not one) and returns its two ends. The ring frees whatever it still holds when both ends
/// are dropped.
pub fn mbuf_ring(
    _eal: &Eal,
    name: &str,
    capacity: u32,
) -> Result<(RingProducer, RingConsumer), DpdkError> {
    let context = || format!("creating ring {name:?} of {capacity} frames");
    let cname = CString::new(name).map_err(|_| DpdkError {
        context: context(),
        call: "rte_ring_create",
        errno: 22,
    })?;
    let flags = dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ | dpdk_sys::RING_F_EXACT_SZ;
    // SAFETY: EAL initialised; name valid for the call.
    let raw = unsafe {
        dpdk_sys::rte_ring_create(
            cname.as_ptr(),
            capacity,
            dpdk_sys::rte_socket_id() as i32,
            flags,
        )
    };
    let raw =
        NonNull::new(raw).ok_or_else(|| DpdkError::from_errno("rte_ring_create", context()))?;
    let ring = Arc::new(RingInner { raw });
    Ok((
        RingProducer {
            ring: Arc::clone(&ring),
        },
        RingConsumer { ring },
    ))
}

impl RingProducer {
    /// Moves as many of `buf`'s frames (oldest first) into the ring as fit; the rest stay in
    /// `buf`. Returns how many moved. Never waits.
    #[inline]
    pub fn send<const N: usize>(&mut self, buf: &mut MbufBuffer<N>) -> usize {
        let held = buf.held_slots();
        if held.is_empty() {
            return 0;
        }
        // SAFETY: we are the ring's only producer (unique handle); `held` are owned mbufs.
        let n = unsafe {
            dpdk_sys::rte_ring_sp_enqueue_burst(
                self.ring.raw.as_ptr(),
                held.as_ptr().cast(),
                held.len() as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        // SAFETY: the ring now owns the first n mbufs.
        unsafe { buf.consumed(n) };
        n
    }
}

impl RingConsumer {
    /// Moves up to `max` frames from the ring into `buf` (bounded by its spare room). Returns
    /// how many moved. Never waits.
    #[inline]
    pub fn receive<const N: usize>(&mut self, buf: &mut MbufBuffer<N>, max: usize) -> usize {
        let slots = buf.tail_slots();
        let want = slots.len().min(max);
        if want == 0 {
            return 0;
        }
        // SAFETY: we are the ring's only consumer; `slots` has room for `want` pointers.
        let n = unsafe {
            dpdk_sys::rte_ring_sc_dequeue_burst(
                self.ring.raw.as_ptr(),
                slots.as_mut_ptr().cast(),
                want as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        // SAFETY: n owned mbufs were stored in the first n slots.
        unsafe { buf.filled(n) };
        n
    }

    /// Frames waiting in the ring.
    pub fn len(&self) -> usize {
        // SAFETY: reading the count of a valid ring is allowed from any thread.
        unsafe { dpdk_sys::rte_ring_count(self.ring.raw.as_ptr()) as usize }
    }

    /// True when no frame waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
