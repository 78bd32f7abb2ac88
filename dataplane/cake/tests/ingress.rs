//! Ingress mode (spec 4.5) and autorate-ingress (spec 6): shaping traffic that has already
//! crossed its bottleneck.

use sheetcake_cake::sim::{ipv4_frame, FrameSpec, TestPacket, TEST_FOOTPRINT};
use sheetcake_cake::{Cake, CakeConfig, Dequeued, DropReason, FlowPool, InstanceSetup};

const US: u64 = 1_000;
const MS: u64 = 1_000_000;

fn cake(words: &str) -> (Cake, FlowPool<TestPacket>) {
    (
        Cake::new(CakeConfig::parse(words).unwrap(), InstanceSetup::new(0, 11)),
        FlowPool::new(64),
    )
}

/// A pure TCP ACK acknowledging `ack`, 54 bytes on the wire.
fn pure_ack(ack: u32) -> (TestPacket, sheetcake_cake::PacketMeta) {
    let spec = FrameSpec {
        src: [100, 64, 0, 1],
        dst: [198, 18, 0, 1],
        protocol: 6,
        src_port: 40_000,
        dst_port: 443,
        dscp: 0,
        ecn: 0,
        len: 54,
    };
    let (mut p, meta) = ipv4_frame(&spec, ack, 0);
    p.bytes[42..46].copy_from_slice(&ack.to_be_bytes());
    (p, meta)
}

/// Delivers one packet at `now` and returns the time the shaper names for the next one.
fn send_one_then_wait(c: &mut Cake, pool: &mut FlowPool<TestPacket>, now: u64) -> u64 {
    assert!(matches!(
        c.dequeue(pool, now, &mut |_, _| panic!("no AQM drop here")),
        Dequeued::Packet(_)
    ));
    match c.dequeue(pool, now, &mut |_, _| panic!("no AQM drop here")) {
        Dequeued::WaitUntil(t) => t,
        other => panic!("expected a wait, got {other:?}"),
    }
}

/// 54 bytes at 1 Mbit/s (125,000 B/s) take 432 µs. Three ACKs of one connection: the ACK
/// filter removes the first. Egress: one ACK sent, the next may go 432 µs later. Ingress: the
/// removed ACK is charged to the shaper too (864 µs of instance clock), but not to the failsafe
/// clock, which allows the next packet at 1.5 x 432 = 648 µs (spec 4.4, 4.5).
#[test]
fn ingress_charges_ack_filter_drops_to_the_shaper_not_the_failsafe() {
    for (words, expected) in [
        ("bandwidth 1mbit besteffort ack-filter egress", 432 * US),
        ("bandwidth 1mbit besteffort ack-filter ingress", 648 * US),
    ] {
        let (mut c, mut pool) = cake(words);
        let mut removed = 0;
        for ack in [1000, 2000, 3000] {
            let (p, meta) = pure_ack(ack);
            c.enqueue(&mut pool, p, &meta, 0, &mut |_, r| {
                assert_eq!(r, DropReason::AckFilter);
                removed += 1;
            });
        }
        assert_eq!(removed, 1);
        let next = send_one_then_wait(&mut c, &mut pool, 0);
        assert!(next.abs_diff(expected) <= 2, "{words}: next at {next} ns");
    }
}

/// A memory limit of two packet buffers; three 1000-byte frames of one flow: the third
/// overflows and the head goes. 1000 bytes at 1 Mbit/s take 8 ms. Egress: next packet 8 ms
/// after the first; ingress: the dropped one was charged too (16 ms) and the failsafe clock
/// (1.5 x 8 ms = 12 ms) decides.
#[test]
fn ingress_charges_overflow_drops_to_the_shaper_not_the_failsafe() {
    let limit = 2 * TEST_FOOTPRINT;
    for (mode, expected) in [("egress", 8 * MS), ("ingress", 12 * MS)] {
        let (mut c, mut pool) = cake(&format!(
            "bandwidth 1mbit besteffort {mode} memlimit {limit}"
        ));
        let spec = FrameSpec::udp(1000, 0);
        let mut overflowed = 0;
        for i in 0..3 {
            let (p, meta) = ipv4_frame(&spec, i, 0);
            c.enqueue(&mut pool, p, &meta, 0, &mut |p, r| {
                assert_eq!((r, p.source), (DropReason::Overflow, 0));
                overflowed += 1;
            });
        }
        assert_eq!(overflowed, 1);
        let next = send_one_then_wait(&mut c, &mut pool, 0);
        assert!(next.abs_diff(expected) <= 2, "{mode}: next at {next} ns");
    }
}

/// Packets arriving in back-to-back trains at 40 Mbit/s (a 1514-byte frame every 302.8 µs),
/// trains 10 ms apart: the instance sets its own rate to 15/16 of 40 Mbit/s = 37.5 Mbit/s
/// (spec 6), reports it as its capacity estimate, and shapes at it.
#[test]
fn autorate_ingress_sets_the_rate_to_fifteen_sixteenths_of_the_arrival_rate() {
    let (mut c, mut pool) = cake("autorate-ingress besteffort ingress");
    assert_eq!(c.config().bandwidth, None, "unlimited until measured");
    let spec = FrameSpec::udp(1514, 0);
    let spacing = 1514 * 8 * 1_000_000_000 / 40_000_000;
    let mut now = 0;
    for train in 0..300u32 {
        for i in 0..10 {
            let (p, meta) = ipv4_frame(&spec, train * 10 + i, now);
            c.enqueue(&mut pool, p, &meta, now, &mut |_, _| {});
            // Drain as the worker would, so the queue stays short.
            while let Dequeued::Packet(_) = c.dequeue(&mut pool, now, &mut |_, _| {}) {}
            now += spacing;
        }
        now += 10 * MS;
    }
    let expected = 37_500_000.0 / 8.0;
    let rate = c.config().bandwidth.expect("a rate was set") as f64;
    assert!(
        (rate / expected - 1.0).abs() < 0.02,
        "rate {rate} B/s, expected {expected}"
    );
    let estimate = c.stats().capacity_estimate as f64;
    assert!(
        (estimate / expected - 1.0).abs() < 0.02,
        "estimate {estimate}"
    );
}
