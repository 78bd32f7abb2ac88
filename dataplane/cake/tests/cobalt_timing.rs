//! COBALT through a whole instance (spec 4.3): when the first signal comes, how the next ones
//! are spaced, and that the count decays, not resets, when the queue drains.

use sheetcake_cake::sim::{ipv4_frame, FrameSpec, TestPacket};
use sheetcake_cake::{Cake, CakeConfig, Dequeued, DropReason, FlowPool, InstanceSetup};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// 10 Mbit/s: one 1514-byte frame every 1.2112 ms (spec 2's worked values: target 5 ms,
/// interval 100 ms at this rate).
const RATE_BPS: u64 = 10_000_000;
const PACKET_TIME: u64 = 1514 * 8 * S / RATE_BPS;

struct Run {
    /// When the first packet with a sojourn over target left the queue.
    over_target_at: u64,
    /// When COBALT signalled (drop or mark), in order.
    signals: Vec<u64>,
    cake: Cake,
    pool: FlowPool<TestPacket>,
    now: u64,
}

/// One unresponsive UDP flow at 12 Mbit/s into a 10 Mbit/s instance, for `duration`, polled
/// like a worker polls: at every arrival and whenever the shaper says.
fn overload(ecn: u8, duration: u64) -> Run {
    let mut cake = Cake::new(
        CakeConfig::parse("bandwidth 10mbit besteffort flows").unwrap(),
        InstanceSetup::new(0, 3),
    );
    let mut pool = FlowPool::new(16);
    let spec = FrameSpec::udp(1514, ecn);
    let arrival_gap = 1514 * 8 * S / 12_000_000;
    let mut next_arrival = 0;
    let mut next_send = 0;
    let mut over_target_at = None;
    let mut signals = Vec::new();
    let mut now = 0;
    let mut id = 0;
    while now < duration {
        if now >= next_arrival {
            let (p, meta) = ipv4_frame(&spec, id, now);
            id += 1;
            cake.enqueue(&mut pool, p, &meta, now, &mut |_, _| panic!("no overflow"));
            next_arrival += arrival_gap;
        }
        if now >= next_send {
            loop {
                let mut dropped = false;
                let out = cake.dequeue(&mut pool, now, &mut |_, r| {
                    assert_eq!(r, DropReason::Aqm);
                    dropped = true;
                });
                if dropped {
                    signals.push(now);
                }
                match out {
                    Dequeued::Packet(p) => {
                        if now - p.created_at > 5 * MS {
                            over_target_at.get_or_insert(now);
                        }
                        if p.bytes[15] & 3 == 3 {
                            signals.push(now);
                        }
                    }
                    Dequeued::WaitUntil(t) => {
                        next_send = t;
                        break;
                    }
                    Dequeued::Empty => {
                        next_send = u64::MAX;
                        break;
                    }
                }
            }
        }
        now = next_arrival.min(next_send).min(duration);
        if next_send == u64::MAX {
            next_send = 0;
        }
    }
    Run {
        over_target_at: over_target_at.expect("the queue went over target"),
        signals,
        cake,
        pool,
        now,
    }
}

/// First signal one interval (100 ms) after the sojourn went over target (the RFC 8289 grace
/// this crate chose, see `cobalt`), then spaced by interval / sqrt(count): 70.7 ms, 57.7 ms,
/// 50 ms, 44.7 ms... Each signal can only happen at a dequeue, so each time is known to within
/// one packet time (1.21 ms).
#[test]
fn signals_come_one_interval_after_the_queue_goes_over_target_then_at_interval_over_sqrt_count() {
    for ecn in [0, 2] {
        let run = overload(ecn, 600 * MS);
        let first = run.signals[0];
        let grace = first - run.over_target_at;
        assert!(
            grace.abs_diff(100 * MS) <= PACKET_TIME,
            "ecn {ecn}: first signal {grace} ns after going over target"
        );
        for (i, pair) in run.signals.windows(2).take(8).enumerate() {
            let count = (i + 2) as f64; // the count in force when the next signal was timed
            let expected = 100e6 / count.sqrt();
            let gap = (pair[1] - pair[0]) as f64;
            assert!(
                (gap - expected).abs() <= 1.1 * PACKET_TIME as f64,
                "ecn {ecn}: gap {i} is {gap} ns, control law says {expected:.0}"
            );
        }
        let stats = run.cake.stats();
        let signals = run.signals.len() as u64;
        if ecn == 0 {
            assert_eq!((stats.drops, stats.ecn_marks), (signals, 0));
        } else {
            assert_eq!(
                (stats.drops, stats.ecn_marks),
                (0, signals),
                "marks, not drops"
            );
        }
    }
}

/// After the overload stops, the queue drains and the flow's count steps down one per
/// control-law interval instead of resetting (spec 4.3 step 4): a flow that returns soon
/// resumes near where it left off.
#[test]
fn the_signal_count_decays_step_by_step_after_the_queue_drains() {
    let mut run = overload(0, 800 * MS);
    let peak = run.cake.flow_reports(&run.pool).next().unwrap().count;
    assert!(peak >= 6, "count {peak} after 700 ms of overload");
    // A light flow of the same 5-tuple keeps the flow (and the decay) going: one small
    // packet every 10 ms, which never waits.
    let spec = FrameSpec::udp(100, 0);
    let mut now = run.now;
    let mut counts = Vec::new();
    for i in 0..400 {
        let (p, meta) = ipv4_frame(&spec, 100_000 + i, now);
        run.cake.enqueue(&mut run.pool, p, &meta, now, &mut |_, _| {
            panic!("no overflow")
        });
        loop {
            match run.cake.dequeue(&mut run.pool, now, &mut |_, _| {}) {
                Dequeued::Packet(_) => {}
                Dequeued::WaitUntil(t) => now = t,
                Dequeued::Empty => break,
            }
        }
        counts.push(run.cake.flow_reports(&run.pool).next().unwrap().count);
        now += 10 * MS;
    }
    // Steps of one: never a reset straight to zero from above 1.
    for pair in counts.windows(2) {
        assert!(
            pair[1] + 1 >= pair[0],
            "count fell from {} to {} at once",
            pair[0],
            pair[1]
        );
    }
    assert_eq!(
        counts.last(),
        Some(&0),
        "the count reaches zero: {counts:?}"
    );
    // From the count it had when the queue drained, down to 0, the control law spaces the
    // steps by interval / sqrt(count): the whole decay takes sum(100 ms / sqrt(k), k = 1..c)
    // (893 ms from 27, against a single interval for a reset), to within one step.
    let start = counts[0];
    let reached_zero_at = counts.iter().position(|&c| c == 0).unwrap() as f64 * 10e6;
    let expected: f64 = (1..=start).map(|k| 100e6 / f64::from(k).sqrt()).sum();
    assert!(
        (reached_zero_at - expected).abs() <= 0.1 * expected,
        "count went from {start} to 0 in {reached_zero_at} ns, the control law says {expected:.0}"
    );
    // At rest, the flow can be given back to the pool.
    assert_eq!(run.cake.release_rested_flows(&mut run.pool, now), 0);
    assert_eq!(run.pool.in_use(), 0);
}
