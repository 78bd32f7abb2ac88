//! Packet-buffer pools. A pool lives until the process exits, so no mbuf can outlive it.

use super::{DpdkError, Eal};
use std::ffi::CString;
use std::ptr::NonNull;

/// How to build a pool of packet buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Unique name (DPDK pools are looked up by name; at most 25 bytes).
    pub name: String,
    /// Number of mbufs. DPDK recommends a power of two minus one.
    pub mbufs: u32,
    /// Per-lcore cache size, in mbufs.
    pub cache: u32,
    /// Bytes of packet data room per mbuf, headroom included.
    pub data_room: u16,
}

/// A pool of packet buffers. Copyable handle; the pool itself is never freed.
#[derive(Debug, Clone, Copy)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: DPDK mempools are designed for concurrent use from many lcores; the handle is a pointer
// to memory that is never freed.
unsafe impl Send for Mempool {}
// SAFETY: as above; every operation on the pool is thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of mbufs on the caller's NUMA socket, each with sheetcake's private area
    /// (queue link and packet information) after its header.
    pub fn new(_eal: &Eal, config: &MempoolConfig) -> Result<Mempool, DpdkError> {
        let context = || {
            format!(
                "creating mempool {:?} of {} mbufs ({} bytes of data room each)",
                config.name, config.mbufs, config.data_room
            )
        };
        let name = CString::new(config.name.as_str()).map_err(|_| DpdkError {
            context: context(),
            call: "rte_pktmbuf_pool_create",
            errno: 22,
        })?;
        // SAFETY: the EAL is initialised; the name is a valid C string for the call's duration.
        // rte_pktmbuf_pool_create checks the remaining arguments itself.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                name.as_ptr(),
                config.mbufs,
                config.cache,
                super::mbuf::MBUF_PRIVATE_BYTES,
                config.data_room,
                dpdk_sys::rte_socket_id() as i32,
            )
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| DpdkError::from_errno("rte_pktmbuf_pool_create", context()))
    }

    /// Mbufs currently out of the pool (in queues, rings, NIC descriptors or in flight).
    /// Mbufs sitting in per-lcore caches count as available.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid for the process lifetime.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Mbufs available for allocation, caches included.
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for the process lifetime.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Total number of mbufs in the pool.
    pub fn size(&self) -> u32 {
        // SAFETY: the pool is valid; `size` is set at creation and never changes.
        unsafe { (*self.raw.as_ptr()).size }
    }

    /// Bytes each mbuf occupies in the pool's memory: the object (mbuf header, private area,
    /// headroom and data room) with the pool's own header and trailer.
    pub fn bytes_per_mbuf(&self) -> u32 {
        // SAFETY: the pool is valid; these sizes are set at creation and never change.
        unsafe {
            let mp = self.raw.as_ptr();
            (*mp).header_size + (*mp).elt_size + (*mp).trailer_size
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }
}
