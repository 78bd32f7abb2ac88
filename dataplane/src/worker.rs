//! The run-to-completion worker loop.
//!
//! One worker runs on one core and owns one RX and one TX queue of every port. Its loop is the
//! whole packet path: read the time, receive a burst from each port, forward it toward the
//! other port of the pair, transmit, and every [`PUBLISH_INTERVAL_US`] publish its counters.
//! It never blocks, never allocates and never takes a lock.
//!
//! Frames the TX queue refuses stay in a small per-direction pending buffer and are retried on
//! the next loop; while that buffer cannot take a full burst the worker simply does not receive
//! from the opposite port, so back-pressure ends in the NIC's RX ring (counted by the port as
//! `rx_missed`) rather than in a silent drop here.

use crate::dpdk::{tsc, MbufBuffer, RxQueue, TxQueue};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Frames asked of an RX queue per call, as in DPDK's l2fwd and testpmd.
pub const BURST_SIZE: usize = 32;

/// Frames that may wait for one TX queue: two bursts, so a fresh RX burst still fits while the
/// NIC has taken only part of the previous one.
pub const TX_PENDING: usize = 2 * BURST_SIZE;

/// How often a worker copies its counters to where the control thread reads them, in
/// microseconds. Often enough for a live status line, rare enough to cost nothing.
pub const PUBLISH_INTERVAL_US: u64 = 1_000;

/// Why a worker dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// The frame was still waiting for a TX queue when the worker stopped.
    Shutdown = 0,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 1] = [DropReason::Shutdown];

    /// Stable lower-case name, for status lines and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Shutdown => "shutdown",
        }
    }
}

const DROP_REASONS: usize = DropReason::ALL.len();

/// A worker's counters at one moment. Plain numbers, monotonic since the worker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Frames received from all ports.
    pub rx_packets: u64,
    /// Frames handed to TX queues.
    pub tx_packets: u64,
    /// Frames dropped, by [`DropReason`].
    pub dropped: [u64; DROP_REASONS],
    /// Loop iterations.
    pub iterations: u64,
    /// TSC cycles spent in iterations that moved at least one frame.
    pub busy_cycles: u64,
    /// TSC cycles since the worker started.
    pub total_cycles: u64,
}

impl WorkerCounters {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Frames dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Where a worker publishes its counters for the control thread: one writer, any number of
/// readers, no locks. Each field is updated with a relaxed store of a monotonic value, so a
/// reader may see fields from two neighbouring publications, never a torn number.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct PublishedCounters {
    rx_packets: AtomicU64,
    tx_packets: AtomicU64,
    dropped: [AtomicU64; DROP_REASONS],
    iterations: AtomicU64,
    busy_cycles: AtomicU64,
    total_cycles: AtomicU64,
}

impl PublishedCounters {
    fn publish(&self, c: &WorkerCounters) {
        self.rx_packets.store(c.rx_packets, Ordering::Relaxed);
        self.tx_packets.store(c.tx_packets, Ordering::Relaxed);
        for (slot, value) in self.dropped.iter().zip(c.dropped) {
            slot.store(value, Ordering::Relaxed);
        }
        self.iterations.store(c.iterations, Ordering::Relaxed);
        self.busy_cycles.store(c.busy_cycles, Ordering::Relaxed);
        self.total_cycles.store(c.total_cycles, Ordering::Relaxed);
    }

    /// The latest published counters.
    pub fn read(&self) -> WorkerCounters {
        let mut dropped = [0; DROP_REASONS];
        for (value, slot) in dropped.iter_mut().zip(&self.dropped) {
            *value = slot.load(Ordering::Relaxed);
        }
        WorkerCounters {
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            dropped,
            iterations: self.iterations.load(Ordering::Relaxed),
            busy_cycles: self.busy_cycles.load(Ordering::Relaxed),
            total_cycles: self.total_cycles.load(Ordering::Relaxed),
        }
    }
}

/// One port as a worker sees it: its own RX and TX queue.
#[derive(Debug)]
pub struct PortQueues<'port> {
    /// The worker's RX queue on this port.
    pub rx: RxQueue<'port>,
    /// The worker's TX queue on this port.
    pub tx: TxQueue<'port>,
}

/// A bridged pair of ports as a worker sees it. Index 0 is the core-facing port, 1 the
/// access-facing port.
#[derive(Debug)]
pub struct PairQueues<'port> {
    /// `[core, access]`.
    pub ports: [PortQueues<'port>; 2],
}

/// Per pair: frames waiting for the TX queue of `[core, access]`.
type Pending = [MbufBuffer<TX_PENDING>; 2];

/// A worker: its queues, its pending frames, its counters.
pub struct Worker<'port, 'shared> {
    pairs: Vec<PairQueues<'port>>,
    pending: Vec<Pending>,
    counters: WorkerCounters,
    published: &'shared PublishedCounters,
    publish_every_cycles: u64,
}

impl<'port, 'shared> Worker<'port, 'shared> {
    /// A worker over `pairs`, publishing to `published`. `tsc_hz` converts the publication
    /// interval to TSC cycles.
    pub fn new(
        pairs: Vec<PairQueues<'port>>,
        published: &'shared PublishedCounters,
        tsc_hz: u64,
    ) -> Self {
        let pending = pairs.iter().map(|_| Pending::default()).collect();
        Worker {
            pairs,
            pending,
            counters: WorkerCounters::default(),
            published,
            publish_every_cycles: (tsc_hz / 1_000_000).max(1) * PUBLISH_INTERVAL_US,
        }
    }

    /// Runs the loop until `stop` is set, then frees what is still pending and publishes the
    /// counters. The worker keeps its queues and counters: it may be run again (the benchmark
    /// does, between reference runs).
    pub fn run(&mut self, stop: &AtomicBool) -> WorkerCounters {
        let started = tsc();
        let cycles_before = self.counters.total_cycles;
        let mut next_publish = started;
        let mut iteration_start = started;
        let mut previous_moved = false;
        while !stop.load(Ordering::Relaxed) {
            // The one clock read of the loop: it ends the previous iteration (whose cycles count
            // as busy if it moved frames) and starts this one.
            let now = tsc();
            if previous_moved {
                self.counters.busy_cycles += now - iteration_start;
            }
            iteration_start = now;
            if now >= next_publish {
                self.counters.total_cycles = cycles_before + (now - started);
                self.published.publish(&self.counters);
                next_publish = now + self.publish_every_cycles;
            }
            previous_moved = self.poll_once() > 0;
            self.counters.iterations += 1;
        }
        for pending in &mut self.pending {
            for buffer in pending.iter_mut() {
                while buffer.pop().is_some() {
                    self.counters.dropped[DropReason::Shutdown as usize] += 1;
                }
            }
        }
        self.counters.total_cycles = cycles_before + (tsc() - started);
        self.published.publish(&self.counters);
        self.counters
    }

    /// One pass over every port: receive, forward, transmit. Returns the frames moved.
    #[inline]
    fn poll_once(&mut self) -> usize {
        let mut moved = 0;
        for (pair, pending) in self.pairs.iter_mut().zip(self.pending.iter_mut()) {
            for from in 0..2 {
                let to = 1 - from;
                let out = &mut pending[to];
                if out.spare() >= BURST_SIZE {
                    let received = pair.ports[from].rx.rx_burst(out, BURST_SIZE);
                    self.counters.rx_packets += received as u64;
                    moved += received;
                }
                if !out.is_empty() {
                    let sent = pair.ports[to].tx.tx_burst(out);
                    self.counters.tx_packets += sent as u64;
                    moved += sent;
                }
            }
        }
        moved
    }
}
