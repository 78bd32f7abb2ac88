//! Single-producer, single-consumer rings of mbufs (DPDK `rte_ring`), for handing frames from
//! one worker to another, and ports made of rings for the tests and the benchmark's generator.

use super::{DpdkError, Eal, MbufBuffer, Mempool, Port, PortConfig};
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

    /// A read-only view of how full the ring is, for another thread to sample while a worker
    /// owns this end: it reads the ring's two indices and nothing else, so it never waits and
    /// never moves a frame.
    pub fn gauge(&self) -> RingGauge {
        RingGauge {
            ring: Arc::clone(&self.ring),
        }
    }
}

/// How many frames wait in a ring, seen from outside its producer and consumer (the control
/// thread's metrics). Keeps the ring alive, not its frames: whatever the ring still holds when
/// the last handle goes is freed as usual.
pub struct RingGauge {
    ring: Arc<RingInner>,
}

impl RingGauge {
    /// Frames waiting in the ring now (a snapshot: the workers keep moving them).
    pub fn len(&self) -> usize {
        // SAFETY: reading the count of a valid ring is allowed from any thread.
        unsafe { dpdk_sys::rte_ring_count(self.ring.raw.as_ptr()) as usize }
    }

    /// True when no frame waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The caller's ends of a [`RingPort`]: what is sent into `inject[q]` arrives on the port's RX
/// queue `q`; what the port's TX queue `q` sends comes out of `collect[q]`.
pub struct RingPortEnds {
    /// One producer per RX queue.
    pub inject: Vec<RingProducer>,
    /// One consumer per TX queue.
    pub collect: Vec<RingConsumer>,
}

/// A port made of rings (DPDK's ring PMD, `rte_eth_from_rings`): a worker polls it exactly as
/// it polls a NIC, while a test or a traffic generator holds the other ends of its rings. It
/// only passes pointers, so it measures the worker, not a driver.
pub struct RingPort {
    // Declared first so it is closed first: the PMD stops using the rings before they can go.
    port: Port,
    /// The ends the PMD uses (RX consumers, TX producers), held so nobody else can.
    _pmd_ends: (Vec<RingConsumer>, Vec<RingProducer>),
}

impl RingPort {
    /// Creates the ring port `name` with `config.rx_queues` RX and `config.tx_queues` TX
    /// queues of `frames` frames each, and starts it.
    pub fn start(
        eal: &Eal,
        name: &str,
        frames: u32,
        config: &PortConfig,
        pool: Mempool,
    ) -> Result<(RingPort, RingPortEnds), DpdkError> {
        let mut inject = Vec::new();
        let mut pmd_rx = Vec::new();
        for q in 0..config.rx_queues {
            let (producer, consumer) = mbuf_ring(eal, &format!("{name}_r{q}"), frames)?;
            inject.push(producer);
            pmd_rx.push(consumer);
        }
        let mut collect = Vec::new();
        let mut pmd_tx = Vec::new();
        for q in 0..config.tx_queues {
            let (producer, consumer) = mbuf_ring(eal, &format!("{name}_t{q}"), frames)?;
            pmd_tx.push(producer);
            collect.push(consumer);
        }
        let rx: Vec<*mut dpdk_sys::rte_ring> = pmd_rx.iter().map(|c| c.ring.raw.as_ptr()).collect();
        let tx: Vec<*mut dpdk_sys::rte_ring> = pmd_tx.iter().map(|p| p.ring.raw.as_ptr()).collect();
        let cname = CString::new(name).map_err(|_| DpdkError {
            context: format!("naming ring port {name:?}"),
            call: "rte_eth_from_rings",
            errno: 22,
        })?;
        // SAFETY: EAL initialised; the ring pointers are valid and stay valid for as long as
        // the port exists (the RingPort holds the PMD's ends and closes the port first).
        let ret = unsafe {
            dpdk_sys::rte_eth_from_rings(
                cname.as_ptr(),
                rx.as_ptr(),
                rx.len() as u32,
                tx.as_ptr(),
                tx.len() as u32,
                dpdk_sys::rte_socket_id(),
            )
        };
        if ret < 0 {
            return Err(DpdkError::from_errno(
                "rte_eth_from_rings",
                format!("creating ring port {name:?}"),
            ));
        }
        // The PMD names the device after `name` its own way: ask it.
        let mut device = [0 as std::os::raw::c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: `ret` is the id of the port just created; `device` has the documented size.
        let named =
            unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(ret as u16, device.as_mut_ptr()) };
        if named != 0 {
            return Err(DpdkError::from_ret(
                "rte_eth_dev_get_name_by_port",
                named,
                format!("naming ring port {name:?}"),
            ));
        }
        // SAFETY: DPDK wrote a NUL-terminated name into `device`.
        let device = unsafe { std::ffi::CStr::from_ptr(device.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let port = Port::start(eal, &device, config, pool)?;
        Ok((
            RingPort {
                port,
                _pmd_ends: (pmd_rx, pmd_tx),
            },
            RingPortEnds { inject, collect },
        ))
    }

    /// The port, for its queues and statistics.
    pub fn port(&self) -> &Port {
        &self.port
    }
}
