//! The `rte_sched` case: DPDK's own hierarchical scheduler on the same ring ports, the same
//! generated frames (the sweeps' traffic, 64-byte IPv4 downloads by default) and the same
//! per-subscriber rates as the `shaped` case, one pipe per subscriber. Its loop is what a DPDK application around `rte_sched` does (as DPDK's
//! `qos_sched` example): receive a burst, parse each frame and look its subscriber up (the
//! same parser and address table sheetcake uses, so classification costs the same), write the
//! pipe into the mbuf, enqueue, dequeue what the token buckets allow, transmit. One loop on
//! one core, whatever `--workers` says: the reference is DPDK's scheduler per core.

use crate::generator::{Generator, Traffic};
use crate::shaped::{subscribers, Rig, QUEUED_BUDGET, RING_FRAMES};
use crate::{run_pinned, CaseResult};
use sheetcake_dataplane::dpdk::{tsc, Eal, MbufBuffer, Mempool, SchedConfig, SchedPort};
use sheetcake_dataplane::shaping::SubscriberTables;
use sheetcake_dataplane::worker::PortQueues;
use sheetcake_parse::{parse_frame, Network};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// A pipe's token bucket: a few full-size frames of burst.
const BUCKET_BYTES: u64 = 4 * 1_518;
/// The port's rate: far above the pipes' sum, so the pipes alone bind.
const PORT_RATE: u64 = 100_000_000_000 / 8;
/// The port's rate at most, as a multiple of a pipe's. rte_sched keeps a pipe's rate as a
/// fraction of the port's, approximated to within 1e-7 (`RTE_SCHED_TB_RATE_CONFIG_ERR`); a
/// slow run's pipe rates (1.8 kB/s, a fraction of 1.4e-7 of 100 Gbit/s) killed the process
/// with SIGFPE inside rte_sched. A fraction of at least 1e-6 stays clear of that, and the port
/// still runs at 122 times the pipes' sum with 8,192 pipes.
const PORT_PER_PIPE_MAX: u64 = 1_000_000;

/// The loop's counters, stored by it, read by the measuring thread.
#[derive(Default)]
struct Counters {
    rx: AtomicU64,
    tx: AtomicU64,
    kept: AtomicU64,
    busy_cycles: AtomicU64,
}

/// The pipe of the subscriber a frame is for (its destination address, or its source for
/// uploads), if any.
#[inline]
fn pipe_of(tables: &SubscriberTables, frame: &[u8], upload: bool) -> Option<u32> {
    let parsed = parse_frame(frame).ok()?;
    let slot = match parsed.network {
        Network::Ipv4(h) => tables
            .addresses
            .lookup_v4(if upload { h.src } else { h.dst }),
        Network::Ipv6(h) => tables
            .addresses
            .lookup_v6(if upload { h.src } else { h.dst }),
        _ => None,
    };
    slot.map(|slot| slot.0)
}

/// The scheduler's loop on the worker's core, from `ingress` to `egress`: until `stop`.
fn forward(
    mut ingress: PortQueues<'_>,
    mut egress: PortQueues<'_>,
    upload: bool,
    sched: &mut SchedPort,
    tables: &SubscriberTables,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let mut burst: MbufBuffer<32> = MbufBuffer::new();
    let mut classified: MbufBuffer<32> = MbufBuffer::new();
    let mut out: MbufBuffer<64> = MbufBuffer::new();
    let (mut rx, mut tx, mut kept, mut busy) = (0u64, 0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let started = tsc();
        let n = ingress.rx.rx_burst(&mut burst, 32);
        while let Some(mut m) = burst.pop() {
            // Every generated frame is a subscriber's; a stray one goes to the last pipe.
            let pipe = pipe_of(tables, m.data(), upload).unwrap_or(u32::MAX);
            sched.classify(&mut m, pipe);
            let _ = classified.push(m);
        }
        kept += sched.enqueue(&mut classified) as u64;
        let got = sched.dequeue(&mut out, 32);
        let sent = egress.tx.tx_burst(&mut out);
        rx += n as u64;
        tx += sent as u64;
        if n + got + sent > 0 {
            busy += tsc() - started;
        }
        counters.rx.store(rx, Ordering::Relaxed);
        counters.tx.store(tx, Ordering::Relaxed);
        counters.kept.store(kept, Ordering::Relaxed);
        counters.busy_cycles.store(busy, Ordering::Relaxed);
    }
    // What the TX ring refused at the end is freed with `out`.
}

/// What the case shapes: `pipes` subscribers (a power of two) at `rate` bytes per second
/// each, one flow each of `traffic`.
#[derive(Debug, Clone, Copy)]
pub struct Pipes {
    pub pipes: u32,
    pub rate: u64,
    pub traffic: Traffic,
}

/// Runs the case on `worker_core`: a warm-up second and `seconds` measured. `name` names its
/// ports and scheduler, one per run in the process.
pub fn run(
    eal: &'static Eal,
    hz: u64,
    pool: Mempool,
    worker_core: usize,
    name: &str,
    case: Pipes,
    seconds: f64,
) -> CaseResult {
    let Pipes {
        pipes,
        rate,
        traffic,
    } = case;
    let (rig, mut ends) = Rig::new(eal, name, RING_FRAMES, 1, pool);
    let (tables, _) = subscribers(pipes, crate::shaped::Shaping::Rate(rate), 1);
    // The same buffer budget as sheetcake's worker: the pipes' queues together hold at most
    // QUEUED_BUDGET frames (rte_sched has no budget of its own, and with its default 64 frames
    // a queue, 8,192 pipes would hold the whole mempool and starve the generator).
    let queue_frames = 1u16 << (QUEUED_BUDGET / u64::from(pipes)).max(1).ilog2().min(15);
    let mut sched = SchedPort::new(
        eal,
        &format!("bench_{name}"),
        &SchedConfig {
            port_rate: PORT_RATE.min(rate.saturating_mul(PORT_PER_PIPE_MAX)),
            pipes,
            pipe_rate: rate,
            queue_frames,
            bucket_bytes: BUCKET_BYTES,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut generator = Generator::new(pool, pipes, 1).with_traffic(traffic);
    let counters = Counters::default();
    let stop = AtomicBool::new(false);
    let [core, access] = rig.pairs().remove(0).ports;
    let upload = traffic.upload();
    let (ingress, egress) = if upload {
        (access, core)
    } else {
        (core, access)
    };
    let read = |c: &Counters| {
        (
            c.rx.load(Ordering::Relaxed),
            c.tx.load(Ordering::Relaxed),
            c.kept.load(Ordering::Relaxed),
            c.busy_cycles.load(Ordering::Relaxed),
        )
    };
    let (before, after, elapsed) = std::thread::scope(|scope| {
        let (sched, tables, counters, stop) = (&mut sched, &tables, &counters, &stop);
        let runner = scope.spawn(move || {
            run_pinned(eal, worker_core, || {
                forward(ingress, egress, upload, sched, tables, counters, stop)
            })
        });
        let window_start = tsc() + hz;
        let window_end = window_start + (seconds * hz as f64) as u64;
        let mut before = None;
        let mut t0 = Instant::now();
        while tsc() < window_end {
            generator.round(&mut ends.core, &mut ends.access);
            if before.is_none() && tsc() >= window_start {
                before = Some(read(counters));
                t0 = Instant::now();
            }
        }
        let after = read(counters);
        let elapsed = t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        runner.join().expect("scheduler");
        (before.expect("the window started"), after, elapsed)
    });
    drop(sched);
    drop(generator);
    drop(ends);
    drop(rig);
    // rte_sched frees the frames it still queues when its port is freed: check it did.
    if pool.in_use() != 0 {
        eprintln!(
            "  rte_sched: {} buffers did not come back to the pool",
            pool.in_use()
        );
    }
    let rx = after.0 - before.0;
    let mpps = rx as f64 / elapsed / 1e6;
    let dropped = rx.saturating_sub(after.2 - before.2);
    CaseResult {
        case: "rte_sched",
        subscribers: u64::from(pipes),
        flows_per_subscriber: 1,
        packet_size: crate::PacketSize::of(traffic.sizes),
        traffic: traffic.name(),
        frames: Some(traffic),
        workers: 1,
        worker_cores: vec![worker_core],
        shared_cores: worker_core == crate::workers::GENERATOR_CORE,
        steering: None,
        mpps,
        gbps: mpps * traffic.mean_len() * 8.0 / 1e3,
        cycles_per_packet: Some((after.3 - before.3) as f64 / rx.max(1) as f64),
        seconds: elapsed,
        tx_mpps: Some((after.1 - before.1) as f64 / elapsed / 1e6),
        drops_mpps: [("queue_full", dropped as f64 / elapsed / 1e6)]
            .into_iter()
            .filter(|(_, d)| *d > 0.0)
            .collect(),
        probe_latency_us: None,
        per_worker: Vec::new(),
        ratio_to_bridge: None,
        ratio_to_rte_sched: None,
        rate_bytes_per_second: None,
        bound: None,
        binding: None,
        mempool: None,
    }
}
