//! Test support: an in-memory packet, and frame builders for it.
//!
//! Public so the dataplane's tests and the benchmark can drive CAKE without DPDK. The queue
//! type is a `VecDeque`; pre-size it ([`TestQueue::with_capacity`] with
//! `FlowPool::with_queues`) where a test must see no allocation at all.

use crate::packet::{CakePacket, NetworkKind, PacketMeta, PacketQueue, PacketStamp};
use std::collections::VecDeque;

/// A packet held in ordinary memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPacket {
    /// The frame.
    pub bytes: Vec<u8>,
    /// CAKE's stamp.
    pub stamp: PacketStamp,
    /// Who sent it (the simulation's flow number), for bookkeeping in tests.
    pub source: u32,
    /// When the source created it, ns.
    pub created_at: u64,
}

/// FIFO of test packets.
#[derive(Debug, Default)]
pub struct TestQueue(VecDeque<TestPacket>);

impl TestQueue {
    /// A queue that holds `packets` before it needs to grow.
    pub fn with_capacity(packets: usize) -> TestQueue {
        TestQueue(VecDeque::with_capacity(packets))
    }
}

impl PacketQueue<TestPacket> for TestQueue {
    fn push_back(&mut self, packet: TestPacket) {
        self.0.push_back(packet);
    }
    fn pop_front(&mut self) -> Option<TestPacket> {
        self.0.pop_front()
    }
    fn front(&self) -> Option<&TestPacket> {
        self.0.front()
    }
    fn back(&self) -> Option<&TestPacket> {
        self.0.back()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn iter<'a>(&'a self) -> impl Iterator<Item = &'a TestPacket>
    where
        TestPacket: 'a,
    {
        self.0.iter()
    }
    fn remove(&mut self, index: usize) -> Option<TestPacket> {
        self.0.remove(index)
    }
}

/// What a test packet counts against the memory limit: like a DPDK mbuf of the default 2 KiB
/// data room plus its 128-byte header and headroom, so floods of small packets hit the limit
/// by count, as in production.
pub const TEST_FOOTPRINT: u32 = 2048 + 128 + 128;

impl CakePacket for TestPacket {
    type Queue = TestQueue;
    fn frame_len(&self) -> u32 {
        self.bytes.len() as u32
    }
    fn footprint(&self) -> u32 {
        TEST_FOOTPRINT
    }
    fn data(&self) -> &[u8] {
        &self.bytes
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    fn stamp(&self) -> &PacketStamp {
        &self.stamp
    }
    fn stamp_mut(&mut self) -> &mut PacketStamp {
        &mut self.stamp
    }
}

/// What a frame is, for the builders.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpec {
    /// Source IPv4 address.
    pub src: [u8; 4],
    /// Destination IPv4 address.
    pub dst: [u8; 4],
    /// 6 TCP or 17 UDP.
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub dscp: u8,
    pub ecn: u8,
    /// Frame length in bytes (at least 54 for TCP, 42 for UDP).
    pub len: usize,
}

impl FrameSpec {
    /// A best-effort UDP frame of `len` bytes from 198.18.0.1 port 1 to 100.64.0.1 port 2
    /// with the ECN bits `ecn`: one flow's frame, for tests that drive an instance by hand.
    pub fn udp(len: usize, ecn: u8) -> FrameSpec {
        FrameSpec {
            src: [198, 18, 0, 1],
            dst: [100, 64, 0, 1],
            protocol: 17,
            src_port: 1,
            dst_port: 2,
            dscp: 0,
            ecn,
            len,
        }
    }
}

/// Builds an Ethernet + IPv4 + TCP/UDP frame (valid IPv4 checksum) and the metadata the
/// dataplane would give CAKE for it.
pub fn ipv4_frame(spec: &FrameSpec, source: u32, now: u64) -> (TestPacket, PacketMeta) {
    let l4_len = if spec.protocol == 6 { 20 } else { 8 };
    let len = spec.len.max(14 + 20 + l4_len);
    let mut b = vec![0u8; len];
    b[12] = 0x08;
    b[14] = 0x45;
    b[15] = (spec.dscp << 2) | (spec.ecn & 3);
    b[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    b[22] = 64;
    b[23] = spec.protocol;
    b[26..30].copy_from_slice(&spec.src);
    b[30..34].copy_from_slice(&spec.dst);
    let sum = ipv4_header_checksum(&b[14..34]);
    b[24..26].copy_from_slice(&sum.to_be_bytes());
    b[34..36].copy_from_slice(&spec.src_port.to_be_bytes());
    b[36..38].copy_from_slice(&spec.dst_port.to_be_bytes());
    if spec.protocol == 6 {
        b[46] = 5 << 4;
        b[47] = 0x10; // ACK
    }
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&spec.src);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&spec.dst);
    let meta = PacketMeta {
        l3_offset: 14,
        network: NetworkKind::Ipv4,
        dscp: spec.dscp,
        ecn: spec.ecn,
        src,
        dst,
        protocol: spec.protocol,
        l4_offset: 34,
        src_port: spec.src_port,
        dst_port: spec.dst_port,
        mark: 0,
    };
    (
        TestPacket {
            bytes: b,
            stamp: PacketStamp::default(),
            source,
            created_at: now,
        },
        meta,
    )
}

/// The IPv4 header checksum of `header` (checksum field included as it is).
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, w) in header.chunks(2).enumerate() {
        if i != 5 {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
