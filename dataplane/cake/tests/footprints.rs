//! The footprints a worker prefetches name what the next enqueue, dequeue or overflow drop
//! reads: the flow that holds the packets, and the stamps of the packets at its tail and head. A footprint
//! pointing elsewhere would cost nothing but speed, so nothing else would notice.

use sheetcake_cake::sim::{ipv4_frame, FrameSpec, TestPacket};
use sheetcake_cake::{Cake, CakeConfig, CakePacket, FlowPool, InstanceSetup, PacketQueue};

/// Start addresses a footprint reported.
fn touched(report: impl FnOnce(&mut dyn FnMut(*const u8, usize))) -> Vec<usize> {
    let mut at = Vec::new();
    report(&mut |p, len| {
        assert!(len > 0, "an empty range");
        at.push(p as usize);
    });
    at
}

fn address<T>(value: &T) -> usize {
    value as *const T as usize
}

#[test]
fn footprints_name_the_flow_and_the_packets_at_its_ends() {
    let mut pool: FlowPool<TestPacket> = FlowPool::new(16);
    let mut cake = Cake::new(
        CakeConfig::parse("bandwidth 20mbit besteffort").unwrap(),
        InstanceSetup::new(0, 1),
    );
    let spec = FrameSpec::udp(100, 0);
    let (first, meta) = ipv4_frame(&spec, 0, 0);
    let at = cake.placing(&meta);

    // Nothing placed, nothing queued: nothing to name.
    assert!(touched(|t| cake.flow_footprint(&pool, &at, t)).is_empty());
    assert!(touched(|t| cake.tail_footprint(&pool, &at, t)).is_empty());
    assert!(touched(|t| cake.head_flow_footprint(&pool, t)).is_empty());
    assert!(touched(|t| cake.head_packet_footprint(&pool, t)).is_empty());
    assert!(!touched(|t| cake.tins_footprint(t)).is_empty());

    for p in [first, ipv4_frame(&spec, 0, 0).0] {
        cake.enqueue_placed(&mut pool, p, &meta, at, 0, &mut |_, _| panic!("no drop"));
    }
    let f = (0..pool.capacity() as u32)
        .find(|&f| pool.flow(f).packets > 0)
        .expect("the flow holding the packets");
    let flow = pool.flow(f);
    assert_eq!(flow.packets, 2);
    let head = address(flow.queue.front().unwrap().stamp());
    let tail = address(flow.queue.back().unwrap().stamp());
    assert_ne!(head, tail);

    assert_eq!(
        touched(|t| cake.flow_footprint(&pool, &at, t)),
        [address(flow)]
    );
    assert_eq!(touched(|t| cake.tail_footprint(&pool, &at, t)), [tail]);
    assert_eq!(
        touched(|t| cake.head_flow_footprint(&pool, t)),
        [address(flow)]
    );
    assert_eq!(touched(|t| cake.head_packet_footprint(&pool, t)), [head]);

    // Before any overflow there is no victim heap; after one, the next victim is the head of
    // the fattest flow: the frame left at its head.
    assert!(touched(|t| cake.victim_footprint(&pool, t)).is_empty());
    assert!(cake.drop_from_fattest(&mut pool, 0, &mut |_, _| {}));
    let flow = pool.flow(f);
    assert_eq!(flow.packets, 1);
    let next = address(flow.queue.front().unwrap().stamp());
    assert_eq!(touched(|t| cake.victim_footprint(&pool, t)), [next]);
}
