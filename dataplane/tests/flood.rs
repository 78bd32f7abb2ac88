//! A flood at one subscriber must not cost the others anything: the worker's own loop, on a
//! real EAL, fed through ring ports whose other ends this test holds.
//!
//! Subscriber "flooded" (a 10 Mbit/s plan) is sent UDP at up to 10 Gbit/s in 1514-byte
//! frames, far more than its plan, its CAKE memory limit and the worker's budget of queued
//! frames together. Subscriber "quiet" receives a 100-byte probe every millisecond. The probes
//! must all arrive, with the delay they have without the flood give or take the worker's
//! extra work per loop; the flooded subscriber must get its plan rate (for the time its
//! frames kept coming and the worker ran); the worker's budget is hit (so the test exercises
//! the budget's victim choice: without it the probes would be refused with the flood) and
//! every buffer comes back.

use sheetcake_cake::{CakeConfig, InstanceSetup};
use sheetcake_dataplane::dpdk::{tsc, Mbuf, MbufBuffer};
use sheetcake_dataplane::shaping::{instance_gauges, ControlChannel, LocalSubscriber, Owner};
use sheetcake_dataplane::worker::{
    placeholder_config, DropReason, Handoff, PublishedCounters, ShapingSetup, Worker,
    TIN_DROP_REASONS,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod common;
use common::{frame, tables, worker_pairs, Rig};

const FLOODED: [u8; 4] = [10, 99, 0, 1];
const QUIET: [u8; 4] = [10, 99, 0, 2];
const PLAN_BYTES_PER_SECOND: u64 = 10_000_000 / 8;
const FLOOD_FRAME: usize = 1514;
const FLOOD_BITS_PER_SECOND: f64 = 10e9;
const PROBE_FRAME: usize = 100;
const PROBE_INTERVAL_NS: u64 = 1_000_000;
/// Frames the worker may hold queued: less than the flooded subscriber's own CAKE limit (4 MiB
/// of buffer footprint, about 1,800 of these buffers), so the worker's budget is what binds.
const QUEUED_BUDGET: u64 = 1024;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What one phase of the test saw.
#[derive(Debug, Default)]
struct Phase {
    probes_sent: u64,
    probe_delays_us: Vec<f64>,
    flood_offered: u64,
    flood_out_bytes: u64,
    /// Spans of the measured window (TSC, from and to) in which the flooded flow may have run
    /// dry for want of a frame: the generator's pauses, and the worker's as its probes saw
    /// them (see the plan assertion). They overlap: a pause holds up every probe in it.
    absent: Vec<(u64, u64)>,
    /// The share of the measured window they cover.
    absent_share: f64,
}

/// How long the spans cover together, in TSC cycles, clipped to `from..to`.
fn covered(spans: &mut [(u64, u64)], from: u64, to: u64) -> u64 {
    spans.sort_unstable();
    let (mut total, mut reached) = (0, from);
    for &(a, b) in spans.iter() {
        let (a, b) = (a.max(reached), b.min(to));
        if b > a {
            total += b - a;
            reached = b;
        }
    }
    total
}

/// How long the flooded subscriber's plan takes to send one flood frame.
const FLOOD_FRAME_NS: u64 = FLOOD_FRAME as u64 * 1_000_000_000 / PLAN_BYTES_PER_SECOND;

#[test]
fn a_10_gbit_flood_at_one_subscriber_costs_another_no_probe_and_no_delay() {
    // The worker gets core 1 (below); the generator, this thread, keeps core 0.
    let Rig {
        eal,
        hz,
        pool,
        core,
        mut core_ends,
        access,
        mut access_ends,
    } = Rig::new("flood", "0", 16383, 1);

    let tables = Arc::new(tables(&[
        (
            FLOODED,
            Owner {
                worker: 0,
                local: 0,
            },
        ),
        (
            QUIET,
            Owner {
                worker: 0,
                local: 1,
            },
        ),
    ]));
    let plan = CakeConfig {
        bandwidth: Some(PLAN_BYTES_PER_SECOND),
        ..CakeConfig::default()
    };
    // The flooded subscriber's own limit is indeed above the worker's budget.
    let limit = sheetcake_cake::Cake::new(plan, InstanceSetup::new(0, 1))
        .memory()
        .2;
    assert!(limit / 2_500 > QUEUED_BUDGET, "CAKE limit {limit} bytes");
    let subscriber = |id: &str| LocalSubscriber {
        id: id.into(),
        download: plan,
        upload: plan,
    };
    let gauges = instance_gauges(4);
    let setup = ShapingSetup {
        tables,
        subscribers: vec![subscriber("flooded"), subscriber("quiet")],
        capacity: 4,
        channel: ControlChannel::new(16),
        worker: 0,
        flows: 4096,
        queued_budget: QUEUED_BUDGET,
        seed: 7,
        gauges,
        default_class: [None, None],
        idle: [placeholder_config(); 2],
    };

    let published = PublishedCounters::default();
    let stop = AtomicBool::new(false);
    let (phases, finals) = std::thread::scope(|scope| {
        let pairs = worker_pairs(&core, &access);
        let (published, stop) = (&published, &stop);
        let worker = scope.spawn(move || {
            // Threads inherit the EAL main thread's core (0); the worker needs its own, as in
            // the appliance, or it takes turns with the generator in scheduler slices.
            assert!(
                core_affinity::set_for_current(core_affinity::CoreId { id: 1 }),
                "the test needs a second core"
            );
            let _lcore = eal.register_thread().expect("lcore");
            let mut worker = Worker::new(pairs, published, hz).with_shaping(
                setup,
                Handoff {
                    to: vec![None],
                    from: Vec::new(),
                },
            );
            worker.run(stop);
            worker.drain_handoffs()
        });
        let ns = |cycles: u64| (u128::from(cycles) * 1_000_000_000 / u128::from(hz)) as u64;
        let flood_template = frame(FLOODED, FLOOD_FRAME, &[]);
        let mut run_phase = |seconds: f64, flood: bool, seq: &mut u64| -> Phase {
            let mut phase = Phase::default();
            let mut out: MbufBuffer<64> = MbufBuffer::new();
            let mut back: MbufBuffer<64> = MbufBuffer::new();
            let start = tsc();
            let end = start + (seconds * hz as f64) as u64;
            // The flood's rate is counted from half a second in, once CAKE has settled.
            let settled = start + hz / 2;
            let mut settled_bytes = None;
            let mut next_probe = start;
            let flood_frames_per_ns = FLOOD_BITS_PER_SECOND / 8.0 / FLOOD_FRAME as f64 / 1e9;
            // Keeps collecting for 50 ms after the last frame is offered, so probes in
            // flight arrive.
            let drain_until = end + hz / 20;
            let mut last_round = start;
            loop {
                let now = tsc();
                if now >= drain_until {
                    break;
                }
                // A pause longer than a frame time at the plan, within the measured window,
                // can leave the flooded flow empty when its next frame is due.
                let gap = ns(now - last_round);
                if flood && gap > FLOOD_FRAME_NS {
                    phase.absent.push((last_round, now));
                }
                last_round = now;
                if now < end {
                    // A probe goes first into an empty burst, so the ring takes it first.
                    let probe = now >= next_probe;
                    if probe {
                        let mut payload = [0u8; 16];
                        payload[..8].copy_from_slice(&seq.to_be_bytes());
                        payload[8..].copy_from_slice(&tsc().to_be_bytes());
                        *seq += 1;
                        let m = Mbuf::from_bytes(pool, &frame(QUIET, PROBE_FRAME, &payload))
                            .expect("the pool has room for a probe");
                        out.push(m).expect("the burst is empty");
                    }
                    if flood {
                        let due = (ns(now - start) as f64 * flood_frames_per_ns) as u64;
                        while phase.flood_offered + (out.len() as u64) < due && out.spare() > 0 {
                            match Mbuf::from_bytes(pool, &flood_template) {
                                Some(m) => out.push(m).expect("room checked"),
                                None => break,
                            }
                        }
                    }
                    let before = out.len();
                    core_ends.inject[0].send(&mut out);
                    let accepted = (before - out.len()) as u64;
                    if probe && accepted > 0 {
                        phase.probes_sent += 1;
                        next_probe += hz * PROBE_INTERVAL_NS / 1_000_000_000;
                        phase.flood_offered += accepted - 1;
                    } else {
                        // A probe the full ring refused is tried again next round.
                        phase.flood_offered += accepted;
                    }
                    // What the full ring refused is the generator's loss, not the worker's.
                    while out.pop().is_some() {}
                }
                while access_ends.collect[0].receive(&mut back, 64) > 0 {
                    let at = tsc();
                    while let Some(m) = back.pop() {
                        let data = m.data();
                        if data[30..34] == QUIET {
                            let sent = u64::from_be_bytes(data[50..58].try_into().unwrap());
                            let delay = ns(at.saturating_sub(sent));
                            phase.probe_delays_us.push(delay as f64 / 1e3);
                            // A probe held longer than a frame time means the worker (or
                            // this thread) did not run meanwhile.
                            if flood && delay > FLOOD_FRAME_NS {
                                phase.absent.push((sent, at));
                            }
                        } else if at < end {
                            phase.flood_out_bytes += m.pkt_len() as u64;
                        }
                    }
                    if at >= settled && settled_bytes.is_none() {
                        settled_bytes = Some(phase.flood_out_bytes);
                    }
                }
            }
            let measured = seconds - 0.5;
            phase.absent_share =
                ns(covered(&mut phase.absent, settled, end)) as f64 / (measured * 1e9);
            phase.flood_out_bytes -= settled_bytes.unwrap_or(0);
            phase.flood_out_bytes = (phase.flood_out_bytes as f64 / measured) as u64;
            phase
        };
        let mut seq = 0u64;
        let idle = run_phase(1.0, false, &mut seq);
        let flooded = run_phase(3.0, true, &mut seq);
        // The flood has stopped. The quiet subscriber's probe flow rests one second after its
        // last probe and goes back to the pool. The flood's flow keeps its state: every
        // budget drop ran BLUE's overflow step on it (spec 5.4), so its drop probability is
        // near 1, and BLUE relaxes by 1/4096 per target (5 ms) of rest: about 20 s.
        let flows_after_flood = published.read().flows_in_use;
        let rested = std::time::Instant::now();
        while published.read().flows_in_use > 1 && rested.elapsed().as_secs() < 5 {
            let mut back: MbufBuffer<64> = MbufBuffer::new();
            while access_ends.collect[0].receive(&mut back, 64) > 0 {
                while back.pop().is_some() {}
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let rest_seconds = rested.elapsed().as_secs_f64();
        let flows_at_rest = published.read().flows_in_use;
        stop.store(true, Ordering::Relaxed);
        let finals = worker.join().expect("the worker ran");
        (
            (
                idle,
                flooded,
                flows_after_flood,
                flows_at_rest,
                rest_seconds,
            ),
            finals,
        )
    });
    let (idle, flooded, flows_after_flood, flows_at_rest, rest_seconds) = phases;

    let mut idle_delays = idle.probe_delays_us.clone();
    let mut flood_delays = flooded.probe_delays_us.clone();
    idle_delays.sort_by(f64::total_cmp);
    flood_delays.sort_by(f64::total_cmp);
    let offered_gbps = flooded.flood_offered as f64 * FLOOD_FRAME as f64 * 8.0 / 3.0 / 1e9;
    let plan_share = flooded.flood_out_bytes as f64 / PLAN_BYTES_PER_SECOND as f64;
    let absent_share = flooded.absent_share;
    eprintln!(
        "probes: idle p50 {:.1} us p99 {:.1} us; under a {offered_gbps:.2} Gbit/s flood p50 {:.1} \
         us p99 {:.1} us max {:.1} us ({} of {} arrived); flooded subscriber got {:.3} of its plan; \
         {:.1} % of the window without the flood or the worker; worker budget drops {}, overflow \
         drops {}; flows in use {flows_after_flood} after the flood, {flows_at_rest} \
         {rest_seconds:.1} s later",
        percentile(&idle_delays, 0.5),
        percentile(&idle_delays, 0.99),
        percentile(&flood_delays, 0.5),
        percentile(&flood_delays, 0.99),
        flood_delays.last().copied().unwrap_or(0.0),
        flood_delays.len(),
        flooded.probes_sent,
        plan_share,
        100.0 * absent_share,
        finals.dropped(DropReason::Budget),
        finals.dropped(DropReason::Overflow),
    );

    // Every probe arrived, idle and flooded.
    assert_eq!(idle.probe_delays_us.len() as u64, idle.probes_sent);
    assert_eq!(flood_delays.len() as u64, flooded.probes_sent);
    // A flood it is: at least a hundred times the plan reached the worker.
    assert!(
        offered_gbps * 1e9 / 8.0 > 100.0 * PLAN_BYTES_PER_SECOND as f64,
        "only {offered_gbps} Gbit/s were offered"
    );
    // The probes waited no longer than the worker's extra work per loop allows: the flood adds
    // at most a burst of drops per loop, microseconds, not the flooded queue's milliseconds
    // (its CAKE target is 5 ms). Half a millisecond covers scheduling noise on a shared core.
    assert!(
        percentile(&flood_delays, 0.5) <= percentile(&idle_delays, 0.5) + 500.0,
        "median probe delay rose from {} to {} us",
        percentile(&idle_delays, 0.5),
        percentile(&flood_delays, 0.5)
    );
    assert!(
        percentile(&flood_delays, 0.99) < 5_000.0,
        "p99 probe delay {} us reached the flooded queue's target",
        percentile(&flood_delays, 0.99)
    );
    // The flooded subscriber gets its plan, no more (frames are counted whole, as `raw` does),
    // whenever a frame of the flood is there to send. Once BLUE has saturated, every dequeue
    // drops all of the flow's queue but the frame it sends (spec 4.3), so the flow is empty
    // until the next frame arrives; and a frame arriving after the shaper's next send time
    // finds no credit (spec 4.4). The plan is owed only for the time the generator kept the
    // frames coming and the worker ran: on a busy host either may pause for milliseconds.
    assert!(
        absent_share < 0.25,
        "the host paused the generator or the worker for {:.0} % of the window: too little \
         left to measure the plan",
        100.0 * absent_share
    );
    assert!(
        plan_share >= 0.97 * (1.0 - absent_share) && plan_share <= 1.01,
        "flooded subscriber got {plan_share} of its plan, with {:.1} % of the window without \
         the flood or the worker",
        100.0 * absent_share
    );
    // The worker's budget bound, and the room came from the flood.
    assert!(finals.dropped(DropReason::Budget) > 0);
    // Idle instances give their flows back: the probe's goes, the flood's is held for BLUE.
    assert_eq!(flows_after_flood, 2);
    assert_eq!(flows_at_rest, 1, "the idle probe instance kept its flow");
    // Every frame the worker received was sent or counted.
    assert_eq!(
        finals.rx_packets,
        finals.tx_packets + finals.dropped_total(),
        "{finals:?}"
    );
    // Per tin as well: every shaped frame was let out or dropped by a tin, or flushed at the
    // end; the budget's room came from queued frames, each counted in its tin.
    let tins = finals.tins.iter().flatten();
    let tin_sent: u64 = tins.clone().map(|t| t.sent_packets).sum();
    let tin_dropped: u64 = tins.clone().flat_map(|t| t.dropped).sum();
    let budget_index = TIN_DROP_REASONS
        .iter()
        .position(|&r| r == DropReason::Budget)
        .unwrap();
    let tin_budget: u64 = tins.map(|t| t.dropped[budget_index]).sum();
    assert_eq!(tin_budget, finals.dropped(DropReason::Budget));
    assert_eq!(
        tin_sent + tin_dropped + finals.dropped(DropReason::Flushed),
        finals.shaped_packets,
        "{finals:?}"
    );
    drop(core_ends);
    drop(access_ends);
    drop(core);
    drop(access);
    assert_eq!(pool.in_use(), 0, "every buffer went back to the pool");
}

#[test]
fn overlapping_pauses_count_once_and_only_inside_the_window() {
    let mut spans = vec![(5, 15), (10, 12), (11, 20), (30, 40), (95, 120)];
    // 10..20 (the first three, merged, clipped at 10), 30..40 and 95..100.
    assert_eq!(covered(&mut spans, 10, 100), 10 + 10 + 5);
    assert_eq!(covered(&mut [], 0, 100), 0);
}
