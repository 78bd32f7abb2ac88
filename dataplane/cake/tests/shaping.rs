//! The shaper, on a virtual clock: rates and latency as the spec and physics say.

mod common;

use common::*;

/// Delivered adjusted rate within 1 % of the configured rate, from 1 Mbit/s to 10 Gbit/s,
/// for every overhead mode. The expected charge per 1514-byte frame (1500 bytes of IP) is
/// worked out here from spec 1.2, independently of the implementation.
#[test]
fn delivered_rate_is_within_one_percent_from_1_mbit_to_10_gbit_in_every_overhead_mode() {
    let modes: [(&str, u64); 7] = [
        ("raw", 1514),
        ("docsis", 1500 + 18),
        ("ethernet", 1500 + 38),
        ("overhead 0 noatm", 1500),
        // 1500 + 30 = 1530 bytes, plus one PTM byte per started 64: 24 -> 1554.
        ("pppoe-ptm", 1554),
        // 1500 + 40 = 1540 bytes in ATM cells: ceil(1540 / 48) = 33 cells of 53 bytes.
        ("pppoe-llcsnap", 33 * 53),
        // conservative: 1500 + 48 = 1548 -> 33 cells.
        ("conservative", 33 * 53),
    ];
    for mbit in [1u64, 10, 100, 1_000, 10_000] {
        for (words, charge) in modes {
            let rate = mbit * 1_000_000;
            let mut sim = Sim::cake(&format!("bandwidth {mbit}mbit besteffort flows {words}"));
            // Offer 1.5 times the rate in 1514-byte UDP frames from 4 flows.
            for f in 0..4 {
                sim.add(Source::udp(
                    host(1),
                    server(f),
                    1000 + u16::from(f),
                    rate * 3 / 8,
                    1514,
                ));
            }
            // Long enough for 4,000 frames, and at least 2 s.
            let frames_time = 4_000 * charge * 8 * S / rate;
            let duration = frames_time.max(2 * S);
            sim.warmup_until = duration / 4;
            sim.run_until(duration);
            let measured =
                sim.adjusted_bytes as f64 * 8.0 / ((duration - sim.warmup_until) as f64 / 1e9);
            let delivered: u64 = sim.sources.iter().map(|s| s.delivered_packets).sum();
            let expected_from_frames = delivered as f64 * charge as f64 * 8.0
                / ((duration - sim.warmup_until) as f64 / 1e9);
            assert!(
                (measured / rate as f64 - 1.0).abs() < 0.01,
                "{mbit} Mbit/s {words}: {measured:.0} bit/s charged"
            );
            assert!(
                (expected_from_frames / rate as f64 - 1.0).abs() < 0.01,
                "{mbit} Mbit/s {words}: frames x {charge} B = {expected_from_frames:.0} bit/s"
            );
        }
    }
}

/// Unlimited: nothing waits, every packet is delivered in order of arrival within its flow.
#[test]
fn unlimited_delivers_immediately() {
    let mut sim = Sim::cake("unlimited besteffort");
    sim.add(Source::udp(host(1), server(1), 1, 100_000_000, 1514));
    sim.run_until(100 * MS);
    assert_eq!(sim.dropped, 0);
    assert!(sim.sources[0].delays.iter().all(|&d| d == 0));
}

/// 4 responsive bulk flows at 20 Mbit/s and a sparse flow: the sparse flow's queueing delay
/// stays under one MTU time (0.6 ms at 20 Mbit/s) plus a few packet times; the bulk flows'
/// standing delay settles near the 5 ms target. A FIFO of the same rate and memory shows far
/// larger delays, which is what proves the AQM and the flow isolation at work.
#[test]
fn sparse_flow_skips_the_bulk_queue_and_bulk_delay_settles_near_target() {
    let mtu_time = 1514 * 8 * S / 20_000_000; // 605.6 µs
    let run = |mut sim: Sim| {
        for f in 0..4 {
            sim.add(Source::tcp(
                server(f),
                host(1),
                5000 + u16::from(f),
                20 * MS,
                false,
            ));
        }
        sim.add(Source::sparse(server(9), host(2), 53, 20 * MS, 100));
        sim.warmup_until = 5 * S;
        sim.run_until(20 * S);
        sim
    };
    let cake = run(Sim::cake("bandwidth 20mbit besteffort flows"));
    let sparse_p99 = cake.sources[4].percentile_delay(0.99);
    assert!(
        sparse_p99 < mtu_time + 3 * mtu_time,
        "sparse p99 {sparse_p99} ns, MTU time {mtu_time} ns"
    );
    let bulk_median: Vec<u64> = (0..4)
        .map(|f| cake.sources[f].percentile_delay(0.5))
        .collect();
    for d in &bulk_median {
        assert!(
            (2 * MS..=12 * MS).contains(d),
            "bulk median delays {bulk_median:?}"
        );
    }
    let goodput: u64 = (0..4).map(|f| cake.sources[f].delivered_bytes).sum();
    let utilisation = goodput as f64 * 8.0 / 15.0 / 20e6;
    assert!(utilisation > 0.95, "link only {utilisation:.3} used");

    // The same offered traffic through a FIFO with CAKE's memory limit (4 MiB at 20 Mbit/s).
    let (_, _, limit) = cake.cake_ref().memory();
    let fifo = run(Sim::fifo(20_000_000, limit));
    let fifo_sparse = fifo.sources[4].percentile_delay(0.5);
    let fifo_bulk = fifo.sources[0].percentile_delay(0.5);
    assert!(
        fifo_sparse > 50 * sparse_p99.max(MS / 10),
        "FIFO sparse median {fifo_sparse} ns"
    );
    assert!(
        fifo_bulk > 10 * bulk_median[0],
        "FIFO bulk median {fifo_bulk} ns"
    );
}

/// A rate change applies in place: queued packets stay, and the new rate holds from then on.
#[test]
fn live_rate_change_keeps_the_queue_and_applies_the_new_rate() {
    let mut sim = Sim::cake("bandwidth 10mbit besteffort");
    sim.add(Source::udp(host(1), server(1), 1, 40_000_000, 1514));
    // Count deliveries from 3 s on: one second after the change at 2 s.
    sim.warmup_until = 3 * S;
    sim.run_until(2 * S);
    let queued = sim.queued();
    assert!(queued > 100);
    let (cake, pool) = sim.cake_mut();
    let mut config = *cake.config();
    config.bandwidth = Some(30_000_000 / 8);
    cake.set_config(pool, config, 2 * S, &mut |_, _| {
        panic!("a rate change drops nothing")
    });
    assert_eq!(sim.queued(), queued);
    sim.run_until(6 * S);
    let rate = sim.adjusted_bytes as f64 * 8.0 / 3.0;
    assert!(
        (rate / 30e6 - 1.0).abs() < 0.01,
        "after the change: {rate:.0} bit/s"
    );
}
