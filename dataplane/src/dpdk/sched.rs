//! DPDK's hierarchical scheduler (`rte_sched`, the library behind DPDK's `qos_sched` example),
//! as the benchmark's reference: what a DPDK shop would use instead of sheetcake. One port, one
//! subport, one pipe per subscriber with its own token bucket, all traffic in the best-effort
//! class: per-subscriber rate limiting with tail-drop FIFOs, no flow fairness, no AQM. The
//! appliance never uses it.

use super::{DpdkError, Eal, Mbuf, MbufBuffer};
use std::ffi::CString;
use std::ptr::NonNull;

/// rte_sched's best-effort traffic class (`RTE_SCHED_TRAFFIC_CLASS_BE`, the last of the 13;
/// a macro bindgen does not carry over).
const BEST_EFFORT_CLASS: u32 = 12;

/// Traffic classes per pipe (`RTE_SCHED_TRAFFIC_CLASSES_PER_PIPE`).
const CLASSES: usize = 13;

/// A scheduler's shape.
#[derive(Debug, Clone, Copy)]
pub struct SchedConfig {
    /// The port's rate, bytes per second (the link the pipes share).
    pub port_rate: u64,
    /// Pipes: one per subscriber, a power of two.
    pub pipes: u32,
    /// Every pipe's rate, bytes per second.
    pub pipe_rate: u64,
    /// Frames each queue holds (a power of two); a full queue drops what arrives.
    pub queue_frames: u16,
    /// Bytes a pipe's token bucket holds: the burst it may send at once.
    pub bucket_bytes: u64,
}

/// One `rte_sched` port. Frees its queued frames when dropped.
pub struct SchedPort {
    raw: NonNull<dpdk_sys::rte_sched_port>,
    pipes: u32,
}

// SAFETY: the port is plain memory used by one thread at a time (the owner holds &mut for
// every operation that touches it).
unsafe impl Send for SchedPort {}

impl SchedPort {
    /// Configures a port, its subport and every pipe.
    pub fn new(_eal: &Eal, name: &str, config: &SchedConfig) -> Result<SchedPort, DpdkError> {
        let fail = |call: &'static str, what: &str| DpdkError {
            context: format!("setting up rte_sched port {name:?}: {what}"),
            call,
            errno: 22,
        };
        let cname =
            CString::new(name).map_err(|_| fail("rte_sched_port_config", "naming the port"))?;
        let mut subport_profile = dpdk_sys::rte_sched_subport_profile_params {
            tb_rate: config.port_rate,
            tb_size: config.bucket_bytes.max(1_000_000),
            tc_rate: [config.port_rate; CLASSES],
            tc_period: 10,
        };
        let mut port_params = dpdk_sys::rte_sched_port_params {
            name: cname.as_ptr(),
            socket: 0,
            rate: config.port_rate,
            mtu: 1522,
            frame_overhead: 0,
            n_subports_per_port: 1,
            subport_profiles: &mut subport_profile,
            n_subport_profiles: 1,
            n_max_subport_profiles: 1,
            n_pipes_per_subport: config.pipes,
        };
        // SAFETY: EAL initialised; the parameters and what they point to live for the call.
        let raw = unsafe { dpdk_sys::rte_sched_port_config(&mut port_params) };
        let raw = NonNull::new(raw).ok_or_else(|| {
            fail(
                "rte_sched_port_config",
                "the port parameters were refused (pipes must be a power of two)",
            )
        })?;
        let port = SchedPort {
            raw,
            pipes: config.pipes,
        };
        // Profile 0 is the subscribers' rate; profile 1, the port's, lets `Drop` empty the
        // queues at once (rte_sched_port_free does not free the frames they hold).
        // A traffic class earns `tc_rate * tc_period` bytes of credit per period and cannot
        // send a frame larger than that: the period must hold two full-size frames at the
        // pipe's rate (rte_sched's usual 10 ms is too short below about 2.4 Mbit/s).
        let period_ms = |rate: u64| (2 * 1_522 * 1_000 / rate.max(1)).max(10);
        let profile = |rate: u64| dpdk_sys::rte_sched_pipe_params {
            tb_rate: rate,
            tb_size: config.bucket_bytes,
            tc_rate: [rate; CLASSES],
            tc_period: period_ms(rate),
            tc_ov_weight: 1,
            wrr_weights: [1; 4],
        };
        let mut profiles = [profile(config.pipe_rate), profile(config.port_rate)];
        let mut subport_params = dpdk_sys::rte_sched_subport_params {
            n_pipes_per_subport_enabled: config.pipes,
            qsize: [config.queue_frames; CLASSES],
            pipe_profiles: profiles.as_mut_ptr(),
            n_pipe_profiles: 2,
            n_max_pipe_profiles: 2,
            cman_params: std::ptr::null_mut(),
        };
        // SAFETY: the port is valid; the parameters live for the call.
        let ret =
            unsafe { dpdk_sys::rte_sched_subport_config(raw.as_ptr(), 0, &mut subport_params, 0) };
        if ret != 0 {
            return Err(DpdkError::from_ret(
                "rte_sched_subport_config",
                ret,
                format!("setting up rte_sched port {name:?}: its subport"),
            ));
        }
        for pipe in 0..config.pipes {
            // SAFETY: the port and subport 0 are configured; profile 0 exists.
            let ret = unsafe { dpdk_sys::rte_sched_pipe_config(raw.as_ptr(), 0, pipe, 0) };
            if ret != 0 {
                return Err(DpdkError::from_ret(
                    "rte_sched_pipe_config",
                    ret,
                    format!("setting up rte_sched port {name:?}: pipe {pipe}"),
                ));
            }
        }
        Ok(port)
    }

    /// Files `frame` under `pipe` (subport 0, best effort, first queue), for
    /// [`enqueue`](Self::enqueue). A pipe beyond the port's goes to the last one.
    #[inline]
    pub fn classify(&self, frame: &mut Mbuf, pipe: u32) {
        let pipe = pipe.min(self.pipes - 1);
        // SAFETY: the port is valid; the mbuf is ours (&mut) and only its scheduler metadata
        // is written.
        unsafe {
            dpdk_sys::rte_sched_port_pkt_write(
                self.raw.as_ptr(),
                frame.as_raw(),
                0,
                pipe,
                BEST_EFFORT_CLASS,
                0,
                dpdk_sys::rte_color_RTE_COLOR_GREEN,
            )
        }
    }

    /// Hands every frame of `frames` (classified) to the scheduler; it keeps what fits in
    /// their queues and frees the rest. Returns how many it kept.
    #[inline]
    pub fn enqueue<const N: usize>(&mut self, frames: &mut MbufBuffer<N>) -> usize {
        let held = frames.held_slots();
        let n = held.len();
        if n == 0 {
            return 0;
        }
        // SAFETY: the port is valid; `held` are owned mbufs, all of which the call takes
        // (queued or freed), so the buffer gives them up.
        let kept = unsafe {
            dpdk_sys::rte_sched_port_enqueue(self.raw.as_ptr(), held.as_ptr() as *mut _, n as u32)
        };
        // SAFETY: every frame was handed over.
        unsafe { frames.consumed(n) };
        kept.max(0) as usize
    }

    /// Moves up to `max` frames the pipes' buckets allow into `out` (bounded by its room).
    #[inline]
    pub fn dequeue<const N: usize>(&mut self, out: &mut MbufBuffer<N>, max: usize) -> usize {
        let slots = out.tail_slots();
        let want = slots.len().min(max);
        if want == 0 {
            return 0;
        }
        // SAFETY: the port is valid; `slots` has room for `want` pointers.
        let n = unsafe {
            dpdk_sys::rte_sched_port_dequeue(
                self.raw.as_ptr(),
                slots.as_mut_ptr().cast(),
                want as u32,
            )
        }
        .max(0) as usize;
        // SAFETY: n owned mbufs were stored in the first n slots.
        unsafe { out.filled(n) };
        n
    }
}

/// How long `Drop` keeps dequeuing after the last frame came out, TSC-free: consecutive empty
/// dequeues (each advances the scheduler's clock).
const DRAIN_EMPTY_POLLS: u32 = 100_000;

impl Drop for SchedPort {
    fn drop(&mut self) {
        // rte_sched_port_free releases the port's memory but not the frames in its queues:
        // open every pipe to the port's rate and dequeue until nothing is left.
        for pipe in 0..self.pipes {
            // SAFETY: the port is valid; profile 1 exists (see `new`).
            unsafe { dpdk_sys::rte_sched_pipe_config(self.raw.as_ptr(), 0, pipe, 1) };
        }
        let mut out: MbufBuffer<64> = MbufBuffer::new();
        let mut empty = 0;
        while empty < DRAIN_EMPTY_POLLS {
            if self.dequeue(&mut out, 64) == 0 {
                empty += 1;
            } else {
                empty = 0;
                while out.pop().is_some() {}
            }
        }
        // SAFETY: nobody else holds the port, and its queues are empty.
        unsafe { dpdk_sys::rte_sched_port_free(self.raw.as_ptr()) }
    }
}
