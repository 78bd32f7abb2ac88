//! Classification and in-place rewrites: tins by DSCP and by mark, wash, ECN marks with valid
//! checksums, isolation modes, memory limits, and the flow debug view.

use sheetcake_cake::sim::{
    ipv4_frame, ipv4_header_checksum, FrameSpec, TestPacket, TEST_FOOTPRINT,
};
use sheetcake_cake::tins::{tin_class_name, TIN_CLASSES};
use sheetcake_cake::{Cake, CakeConfig, CakePacket, Dequeued, FlowPool, FlowState, InstanceSetup};

fn frame(src: u8, dst: u8, port: u16, dscp: u8, ecn: u8) -> FrameSpec {
    FrameSpec {
        src: [10, 0, 0, src],
        dst: [10, 1, 0, dst],
        protocol: 17,
        src_port: port,
        dst_port: 53,
        dscp,
        ecn,
        len: 200,
    }
}

fn cake(words: &str) -> (Cake, FlowPool<TestPacket>) {
    (
        Cake::new(CakeConfig::parse(words).unwrap(), InstanceSetup::new(0, 9)),
        FlowPool::new(256),
    )
}

fn enqueue(cake: &mut Cake, pool: &mut FlowPool<TestPacket>, spec: &FrameSpec, mark: u8, now: u64) {
    let (p, mut meta) = ipv4_frame(spec, 0, now);
    meta.mark = mark;
    cake.enqueue(pool, p, &meta, now, &mut |_, _| {
        panic!("nothing is dropped here")
    });
}

/// Packets per tin, in tin order.
fn per_tin(cake: &Cake) -> Vec<u64> {
    cake.tin_reports().map(|t| t.stats.packets).collect()
}

#[test]
fn dscp_picks_the_tin_and_a_mark_overrides_it() {
    let (mut c, mut pool) = cake("bandwidth 10mbit diffserv4 fwmark 0xff");
    enqueue(&mut c, &mut pool, &frame(1, 1, 1, 46, 0), 0, 0); // EF -> Voice
    enqueue(&mut c, &mut pool, &frame(1, 1, 2, 8, 0), 0, 0); // CS1 -> Bulk
    enqueue(&mut c, &mut pool, &frame(1, 1, 3, 0, 0), 0, 0); // Best Effort
                                                             // Tin order of diffserv4 is Bulk, Best Effort, Video, Voice; mark 3 means Video.
    enqueue(&mut c, &mut pool, &frame(1, 1, 4, 0, 0), 3, 0);
    assert_eq!(per_tin(&c), [1, 1, 1, 1]);
    // A mark beyond the tins is ignored: DSCP decides.
    enqueue(&mut c, &mut pool, &frame(1, 1, 5, 46, 0), 9, 0);
    assert_eq!(per_tin(&c), [1, 1, 1, 2]);
}

/// The stamp names the tin class a packet went through, so a worker can count per tin across
/// instances of different modes: tc's names, Voice in diffserv3 and diffserv4 alike.
#[test]
fn stamps_name_the_tin_by_the_class_tc_gives_it() {
    let cases: [(&str, u8, &str); 7] = [
        ("diffserv4", 46, "Voice"),
        ("diffserv4", 8, "Bulk"),
        ("diffserv4", 0, "Best Effort"),
        ("diffserv4", 34, "Video"), // AF41
        ("diffserv3", 46, "Voice"),
        ("diffserv3", 8, "Bulk"),
        ("besteffort", 46, "Tin 0"),
    ];
    for (mode, dscp, name) in cases {
        let (mut c, mut pool) = cake(&format!("unlimited {mode}"));
        enqueue(&mut c, &mut pool, &frame(1, 1, 1, dscp, 0), 0, 0);
        let Dequeued::Packet(p) = c.dequeue(&mut pool, 0, &mut |_, _| {}) else {
            panic!("a packet")
        };
        let class = usize::from(p.stamp().tin_class);
        assert_eq!(tin_class_name(class), name, "{mode}, DSCP {dscp}");
        assert!(!p.stamp().marked);
    }
    // The numbered modes: the class is the tin the packet was counted in.
    for mode in ["diffserv8", "precedence"] {
        for dscp in [0u8, 8, 10, 18, 26, 34, 46, 48, 56] {
            let (mut c, mut pool) = cake(&format!("unlimited {mode}"));
            enqueue(&mut c, &mut pool, &frame(1, 1, 1, dscp, 0), 0, 0);
            let tin = per_tin(&c).iter().position(|&n| n == 1).unwrap();
            let Dequeued::Packet(p) = c.dequeue(&mut pool, 0, &mut |_, _| {}) else {
                panic!("a packet")
            };
            let class = usize::from(p.stamp().tin_class);
            assert_eq!(
                tin_class_name(class),
                format!("Tin {tin}"),
                "{mode}, DSCP {dscp}"
            );
            assert!(class < TIN_CLASSES);
        }
    }
}

#[test]
fn wash_clears_dscp_after_classifying_keeping_ecn_and_the_checksum() {
    let (mut c, mut pool) = cake("unlimited diffserv4 wash");
    enqueue(&mut c, &mut pool, &frame(1, 1, 1, 46, 2), 0, 0);
    assert_eq!(
        per_tin(&c),
        [0, 0, 0, 1],
        "classified as Voice before washing"
    );
    let Dequeued::Packet(p) = c.dequeue(&mut pool, 0, &mut |_, _| {}) else {
        panic!("a packet")
    };
    assert_eq!(p.bytes[15], 2, "DSCP cleared, ECT(0) kept");
    assert_eq!(
        ipv4_header_checksum(&p.bytes[14..34]),
        u16::from_be_bytes([p.bytes[24], p.bytes[25]])
    );
}

#[test]
fn ce_marks_keep_the_ipv4_checksum_valid() {
    let (mut c, mut pool) = cake("bandwidth 1mbit besteffort");
    let spec = FrameSpec {
        len: 1514,
        ..frame(1, 1, 1, 0, 1)
    };
    for i in 0..200 {
        enqueue(&mut c, &mut pool, &spec, 0, i * 1_000_000);
    }
    let mut now = 0;
    let mut marked = 0;
    while let Some(p) = loop {
        match c.dequeue(&mut pool, now, &mut |_, _| {
            panic!("ECT packets are marked, not dropped")
        }) {
            Dequeued::Packet(p) => break Some(p),
            Dequeued::WaitUntil(t) => now = t,
            Dequeued::Empty => break None,
        }
    } {
        if p.bytes[15] & 3 == 3 {
            marked += 1;
        }
        // The frames arrived ECT(0): CE on the way out is CAKE's mark, and the stamp says so.
        assert_eq!(p.stamp().marked, p.bytes[15] & 3 == 3);
        let stored = u16::from_be_bytes([p.bytes[24], p.bytes[25]]);
        assert_eq!(ipv4_header_checksum(&p.bytes[14..34]), stored);
    }
    assert!(marked > 0);
    assert_eq!(c.stats().ecn_marks, marked);
}

#[test]
fn isolation_modes_decide_what_is_one_flow() {
    let count_flows = |words: &str, specs: &[FrameSpec]| {
        let (mut c, mut pool) = cake(words);
        for s in specs {
            enqueue(&mut c, &mut pool, s, 0, 0);
        }
        c.flow_reports(&pool).count()
    };
    // Four packets: two source hosts, two destination hosts, distinct ports.
    let specs = [
        frame(1, 1, 1, 0, 0),
        frame(1, 2, 2, 0, 0),
        frame(2, 1, 3, 0, 0),
        frame(2, 2, 4, 0, 0),
    ];
    assert_eq!(count_flows("besteffort flowblind", &specs), 1);
    assert_eq!(count_flows("besteffort srchost", &specs), 2);
    assert_eq!(count_flows("besteffort dsthost", &specs), 2);
    assert_eq!(count_flows("besteffort hosts", &specs), 4);
    assert_eq!(count_flows("besteffort flows", &specs), 4);
    assert_eq!(count_flows("besteffort triple-isolate", &specs), 4);
    let same_hosts = [frame(1, 1, 1, 0, 0), frame(1, 1, 2, 0, 0)];
    assert_eq!(count_flows("besteffort hosts", &same_hosts), 1);
    assert_eq!(count_flows("besteffort dual-dsthost", &same_hosts), 2);
}

#[test]
fn memory_limit_follows_the_spec_formula() {
    let limit = |words: &str| cake(words).0.memory().2;
    // 4 x rate x interval, at least 4 MiB, at most 10240 MTUs (spec 5.3).
    assert_eq!(limit("bandwidth 20mbit"), 4 << 20);
    assert_eq!(limit("bandwidth 100mbit"), 4 * 12_500_000 / 10);
    assert_eq!(limit("bandwidth 1gbit"), 10_240 * 1514);
    assert_eq!(limit("bandwidth 10gbit"), 10_240 * 1514);
    assert_eq!(limit("unlimited"), 10_240 * 1514);
    assert_eq!(limit("bandwidth 1gbit rtt 10ms"), 4 * 125_000_000 / 100);
    assert_eq!(limit("bandwidth 100mbit rtt 10ms"), 4 << 20);
    assert_eq!(limit("bandwidth 20mbit memlimit 1mb"), 1 << 20);
    // Counted in buffer footprint: 64-byte packets hit it by count.
    let (mut c, mut pool) = cake("bandwidth 1mbit besteffort flows memlimit 64kb");
    let mut dropped = 0;
    for port in 0..100u16 {
        let (p, meta) = ipv4_frame(
            &FrameSpec {
                len: 64,
                ..frame(1, 1, port, 0, 0)
            },
            0,
            0,
        );
        c.enqueue(&mut pool, p, &meta, 0, &mut |_, _| dropped += 1);
    }
    assert_eq!(c.backlog_packets(), 64 * 1024 / TEST_FOOTPRINT);
    assert_eq!(dropped, 100 - c.backlog_packets());
}

#[test]
fn a_late_poll_releases_back_to_back_until_the_clock_catches_up() {
    let (mut c, mut pool) = cake("bandwidth 12mbit besteffort");
    let spec = FrameSpec {
        len: 1500,
        ..frame(1, 1, 1, 0, 0)
    };
    for _ in 0..20 {
        enqueue(&mut c, &mut pool, &spec, 0, 0);
    }
    // 1500 bytes at 12 Mbit/s take 1 ms. Polled 5 ms late: 5 (and the first) go at once.
    let mut sent = 0;
    while let Dequeued::Packet(_) = c.dequeue(&mut pool, 5_000_000, &mut |_, _| {}) {
        sent += 1;
    }
    assert_eq!(sent, 6);
    // And then one per millisecond again (to the fixed-point time-per-byte's nanosecond).
    match c.dequeue(&mut pool, 5_500_000, &mut |_, _| {}) {
        Dequeued::WaitUntil(t) => assert!(t.abs_diff(6_000_000) < 100, "next at {t}"),
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn the_flow_view_shows_state_and_queue() {
    let (mut c, mut pool) = cake("bandwidth 1mbit besteffort flows");
    for _ in 0..3 {
        enqueue(&mut c, &mut pool, &frame(1, 1, 7, 0, 0), 0, 0);
    }
    let flows: Vec<_> = c.flow_reports(&pool).collect();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].state, FlowState::Sparse);
    assert_eq!((flows[0].packets, flows[0].backlog), (3, 600));
    assert_eq!(flows[0].count, 0);
}

/// An IPv6 UDP frame with traffic class `tc`, and its metadata.
fn ipv6_frame(tc: u8, port: u16) -> (TestPacket, sheetcake_cake::PacketMeta) {
    let mut b = vec![0u8; 14 + 40 + 8 + 1000];
    b[12..14].copy_from_slice(&[0x86, 0xdd]);
    b[14] = 0x60 | (tc >> 4);
    b[15] = (tc << 4) | 0x05; // low nibble: flow label bits, must survive
    b[18..20].copy_from_slice(&1008u16.to_be_bytes());
    b[20] = 17;
    b[21] = 64;
    b[22..38].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    b[38..54].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    b[54..56].copy_from_slice(&port.to_be_bytes());
    let mut meta = sheetcake_cake::PacketMeta {
        l3_offset: 14,
        network: sheetcake_cake::NetworkKind::Ipv6,
        dscp: tc >> 2,
        ecn: tc & 3,
        protocol: 17,
        l4_offset: 54,
        src_port: port,
        dst_port: 0,
        ..Default::default()
    };
    meta.src.copy_from_slice(&b[22..38]);
    meta.dst.copy_from_slice(&b[38..54]);
    let p = TestPacket {
        bytes: b,
        stamp: Default::default(),
        source: 0,
        created_at: 0,
    };
    (p, meta)
}

#[test]
fn ipv6_packets_are_marked_in_the_traffic_class_keeping_the_flow_label() {
    let (mut c, mut pool) = cake("bandwidth 1mbit besteffort");
    for i in 0..200u64 {
        let (p, meta) = ipv6_frame(2, 7); // ECT(0)
        c.enqueue(&mut pool, p, &meta, i * 1_000_000, &mut |_, _| {
            panic!("no drops")
        });
    }
    let mut now = 0;
    let mut marked = 0;
    loop {
        match c.dequeue(&mut pool, now, &mut |_, _| panic!("ECT packets are marked")) {
            Dequeued::Packet(p) => {
                let tc = (p.bytes[14] << 4) | (p.bytes[15] >> 4);
                assert_eq!(p.bytes[14] >> 4, 6, "version kept");
                assert_eq!(p.bytes[15] & 0x0f, 0x05, "flow label kept");
                if tc & 3 == 3 {
                    marked += 1;
                }
            }
            Dequeued::WaitUntil(t) => now = t,
            Dequeued::Empty => break,
        }
    }
    assert!(marked > 0);
    assert_eq!(c.stats().ecn_marks, marked);
}

/// Unlimited: tins share by weighted round robin with spec 2's weights, in bytes. diffserv3
/// weights Best Effort 1024, Bulk 64, Voice 256: with all three backlogged, bytes leave in
/// the ratio 1024 : 64 : 256 (76.2 %, 4.8 %, 19.0 %).
#[test]
fn unlimited_tins_share_by_their_weights() {
    let (mut c, mut pool) = cake("unlimited diffserv3 flows");
    for _ in 0..1500 {
        for dscp in [0, 8, 46] {
            enqueue(
                &mut c,
                &mut pool,
                &frame(1, 1, 1000 + u16::from(dscp), dscp, 0),
                0,
                0,
            );
        }
    }
    // 1500 packets out: every tin stays backlogged (Best Effort sends about 1143 of its 1500).
    let mut bytes = [0u64; 3]; // Best Effort, Bulk, Voice by internal index
    for _ in 0..1500 {
        let Dequeued::Packet(p) = c.dequeue(&mut pool, 0, &mut |_, _| {}) else {
            panic!("unlimited: every dequeue gives a packet")
        };
        let tin = match p.bytes[15] >> 2 {
            0 => 0,
            8 => 1,
            _ => 2,
        };
        bytes[tin] += p.bytes.len() as u64;
    }
    let total: u64 = bytes.iter().sum();
    for (tin, weight) in [(0, 1024.0), (1, 64.0), (2, 256.0)] {
        let share = bytes[tin] as f64 / total as f64;
        let expected = weight / 1344.0;
        assert!(
            (share - expected).abs() < 0.01,
            "tin {tin}: {share:.4} of the bytes, weight says {expected:.4}"
        );
    }
}

/// Spec 3's set-associative placement, counted per tin: with 8 queues (one set of 8 ways),
/// 8 flows take the 8 ways (8 misses); a 9th takes over its start way (a collision); a flow
/// found away from its start way is an indirect hit.
#[test]
fn a_ninth_flow_in_a_set_of_eight_ways_collides() {
    let mut setup = InstanceSetup::new(0, 9);
    setup.flow_queues = 8;
    let mut c = Cake::new(
        CakeConfig::parse("unlimited besteffort flows").unwrap(),
        setup,
    );
    let mut pool = FlowPool::new(64);
    for port in 0..8 {
        enqueue(&mut c, &mut pool, &frame(1, 1, port, 0, 0), 0, 0);
    }
    let stats = |c: &Cake| c.tin_reports().next().unwrap().stats;
    assert_eq!((stats(&c).way_misses, stats(&c).way_collisions), (8, 0));
    assert_eq!(c.flow_reports(&pool).count(), 8);
    // Again: every flow is found (at its start way, or as an indirect hit); nothing new.
    for port in 0..8 {
        enqueue(&mut c, &mut pool, &frame(1, 1, port, 0, 0), 0, 0);
    }
    assert_eq!((stats(&c).way_misses, stats(&c).way_collisions), (8, 0));
    let indirect = stats(&c).way_indirect_hits;
    assert!(indirect <= 8);
    enqueue(&mut c, &mut pool, &frame(1, 1, 99, 0, 0), 0, 0);
    assert_eq!((stats(&c).way_misses, stats(&c).way_collisions), (8, 1));
    assert_eq!(c.flow_reports(&pool).count(), 8, "the 9th shares a queue");
    assert_eq!(c.backlog_packets(), 17, "nothing was lost");
}
