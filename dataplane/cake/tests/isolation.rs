//! Flow and host fairness, tins, overflow: who gets what when everyone is busy.

mod common;

use common::*;

/// N responsive bulk flows share the link equally: Jain's index at least 0.99 (spec 3, DRR++).
#[test]
fn bulk_flows_share_equally() {
    for (n, mbit) in [(2u8, 20u64), (8, 20), (64, 100)] {
        let mut sim = Sim::cake(&format!("bandwidth {mbit}mbit besteffort flows"));
        sim.add_bulk(n, server, |_| host(1), 6000, false);
        sim.warmup_until = 5 * S;
        sim.run_until(25 * S);
        let shares: Vec<f64> = sim
            .sources
            .iter()
            .map(|s| s.delivered_bytes as f64)
            .collect();
        let index = jain(&shares);
        assert!(
            index >= 0.99,
            "{n} flows at {mbit} Mbit/s: Jain {index:.4} {shares:?}"
        );
    }
}

/// An unresponsive flow cannot take more than its fair share, and BLUE engages on it only
/// through overflow.
#[test]
fn unresponsive_flow_gets_no_more_than_its_share_and_meets_blue_through_overflow() {
    let mut sim = Sim::cake("bandwidth 20mbit besteffort flows");
    sim.add_bulk(3, server, |_| host(1), 7000, false);
    let flood = sim.add(Source::udp(server(9), host(1), 9, 40_000_000, 1514));
    sim.warmup_until = 5 * S;
    sim.run_until(20 * S);
    let total: u64 = sim.sources.iter().map(|s| s.delivered_bytes).sum();
    let flood_share = sim.sources[flood].delivered_bytes as f64 / total as f64;
    assert!(
        flood_share <= 0.25 * 1.05,
        "flood took {flood_share:.3} of the link"
    );
    let stats = sim.cake_ref().stats();
    assert!(
        stats.overflow_drops > 0,
        "a 2x flood must overflow the buffer"
    );
    let tin = sim.cake_ref().tin_reports().next().unwrap();
    assert_eq!(tin.unresponsive_flows, 1, "BLUE engaged on the flood only");

    // Without overflow (the same responsive flows alone), BLUE never engages.
    let mut calm = Sim::cake("bandwidth 20mbit besteffort flows");
    calm.add_bulk(3, server, |_| host(1), 7000, false);
    calm.run_until(20 * S);
    assert_eq!(calm.cake_ref().stats().overflow_drops, 0);
    assert_eq!(
        calm.cake_ref()
            .tin_reports()
            .next()
            .unwrap()
            .unresponsive_flows,
        0
    );
}

/// Host A with 1 flow and host B with 16 flows get equal shares (spec 3, host fairness), in
/// the dual mode for their side and in triple-isolate.
#[test]
fn a_host_with_one_flow_gets_as_much_as_a_host_with_sixteen() {
    for mode in ["dual-srchost", "triple-isolate"] {
        let mut sim = Sim::cake(&format!("bandwidth 20mbit besteffort {mode}"));
        // Uploads: the subscriber's hosts are the sources; each flow to its own server.
        sim.add(Source::tcp(host(10), server(100), 8000, 20 * MS, false));
        sim.add_bulk(16, |_| host(20), server, 8100, false);
        sim.warmup_until = 5 * S;
        sim.run_until(25 * S);
        let a = sim.sources[0].delivered_bytes as f64;
        let b: f64 = sim.sources[1..]
            .iter()
            .map(|s| s.delivered_bytes as f64)
            .sum();
        let share = a / (a + b);
        assert!(
            (0.45..=0.55).contains(&share),
            "{mode}: host A got {share:.3}"
        );
    }
    // Downloads, fair between destination hosts: dual-dsthost.
    let mut sim = Sim::cake("bandwidth 20mbit besteffort dual-dsthost");
    sim.add(Source::tcp(server(100), host(10), 8000, 20 * MS, false));
    sim.add_bulk(16, server, |_| host(20), 8100, false);
    sim.warmup_until = 5 * S;
    sim.run_until(25 * S);
    let a = sim.sources[0].delivered_bytes as f64;
    let total: f64 = sim.sources.iter().map(|s| s.delivered_bytes as f64).sum();
    assert!(
        (0.45..=0.55).contains(&(a / total)),
        "dual-dsthost: host A got {:.3}",
        a / total
    );
    // Per-flow fairness alone gives host A about 1/17.
    let mut sim = Sim::cake("bandwidth 20mbit besteffort flows");
    sim.add(Source::tcp(host(10), server(100), 8000, 20 * MS, false));
    sim.add_bulk(16, |_| host(20), server, 8100, false);
    sim.warmup_until = 5 * S;
    sim.run_until(25 * S);
    let a = sim.sources[0].delivered_bytes as f64;
    let total: f64 = sim.sources.iter().map(|s| s.delivered_bytes as f64).sum();
    assert!(a / total < 0.1, "flows mode: host A got {:.3}", a / total);
}

/// diffserv4: a Voice flow keeps low delay under bulk load; Bulk keeps at least 1/16 when
/// everyone is busy; a tin above its threshold yields to the others.
#[test]
fn tins_give_voice_low_delay_bulk_its_minimum_and_cap_a_greedy_tin() {
    const EF: u8 = 46;
    const CS1: u8 = 8;
    let mut sim = Sim::cake("bandwidth 20mbit diffserv4 flows");
    sim.add_bulk(4, server, |_| host(1), 9000, false);
    for f in 0..4 {
        sim.add(
            Source::tcp(server(10 + f), host(1), 9100 + u16::from(f), 20 * MS, false)
                .with_dscp(CS1),
        );
    }
    let voice = sim.add(Source::sparse(server(30), host(1), 5060, 20 * MS, 200).with_dscp(EF));
    sim.warmup_until = 5 * S;
    sim.run_until(25 * S);
    let voice_p99 = sim.sources[voice].percentile_delay(0.99);
    assert!(voice_p99 < 2 * MS, "voice p99 {voice_p99} ns");
    let bulk: u64 = sim.sources[4..8].iter().map(|s| s.delivered_bytes).sum();
    let total: u64 = sim.sources.iter().map(|s| s.delivered_bytes).sum();
    let bulk_share = bulk as f64 / total as f64;
    assert!(bulk_share >= 1.0 / 16.0 * 0.95, "Bulk got {bulk_share:.4}");
    assert!(
        bulk_share < 0.25,
        "Bulk took {bulk_share:.4}: it should get little beyond 1/16"
    );

    // A flood marked EF (Voice, threshold 1/4) competing with best-effort TCP: above its
    // threshold Voice loses priority, and best effort still gets the larger part.
    let mut sim = Sim::cake("bandwidth 20mbit diffserv4 flows");
    let flood = sim.add(Source::udp(server(40), host(1), 40, 20_000_000, 1514).with_dscp(EF));
    sim.add_bulk(4, server, |_| host(1), 9200, false);
    sim.warmup_until = 5 * S;
    sim.run_until(25 * S);
    let total: u64 = sim.sources.iter().map(|s| s.delivered_bytes).sum();
    let flood_share = sim.sources[flood].delivered_bytes as f64 / total as f64;
    assert!(flood_share < 0.5, "an EF flood took {flood_share:.3}");
}

/// Over the memory limit, the packet dropped is the head of the fattest flow, never one of a
/// sparse flow (spec 5.4).
#[test]
fn overflow_drops_from_the_fattest_flow_never_a_sparse_one() {
    let mut sim = Sim::cake("bandwidth 10mbit besteffort flows memlimit 200kb");
    let fat = sim.add(Source::udp(server(1), host(1), 1, 50_000_000, 1514));
    // Below its fair share (5 Mbit/s of 10), so its queue stays short.
    let medium = sim.add(Source::udp(server(2), host(1), 2, 3_000_000, 1514));
    let sparse = sim.add(Source::sparse(server(3), host(1), 3, 10 * MS, 80));
    sim.run_until(5 * S);
    assert!(sim.cake_ref().stats().overflow_drops > 0);
    assert_eq!(
        sim.sources[sparse].drops, 0,
        "a sparse flow lost a packet to overflow"
    );
    assert_eq!(
        sim.sources[medium].drops, 0,
        "the smaller flow lost packets"
    );
    assert!(sim.sources[fat].drops > 0);
}

/// ECN-capable flows are marked, not dropped, and still settle near the target.
#[test]
fn ecn_capable_flows_get_marks_instead_of_drops() {
    let mut sim = Sim::cake("bandwidth 20mbit besteffort flows");
    sim.add_bulk(4, server, |_| host(1), 5000, true);
    sim.warmup_until = 5 * S;
    sim.run_until(20 * S);
    let marks: u64 = sim.sources.iter().map(|s| s.marks).sum();
    let drops: u64 = sim.sources.iter().map(|s| s.drops).sum();
    assert!(marks > 0);
    assert_eq!(drops, 0);
    // The instance counted every mark the receivers saw (and those before warm-up).
    assert!(sim.cake_ref().stats().ecn_marks >= marks);
    let median = sim.sources[0].percentile_delay(0.5);
    assert!(median < 12 * MS, "median {median}");
}
