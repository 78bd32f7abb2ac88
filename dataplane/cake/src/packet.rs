//! The packet boundary: what CAKE needs from a packet, and what it is told about one.
//!
//! CAKE owns a packet from enqueue until it hands it back (sent or dropped); it never copies
//! one and never allocates for one. A packet type supplies its own queue type, so that the
//! dataplane can link mbufs through their private area (intrusive lists, written with the
//! unsafe code that belongs in the dataplane), while this crate stays safe Rust.

/// Per-packet facts the dataplane found when it parsed the frame. CAKE classifies with these
/// and never parses headers itself, except TCP options for the ACK filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketMeta {
    /// Offset of the network (IP) header in the frame: the L2 headers' length.
    pub l3_offset: u16,
    /// The network layer.
    pub network: NetworkKind,
    /// DSCP (0 for non-IP).
    pub dscp: u8,
    /// ECN field (0 for non-IP).
    pub ecn: u8,
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address (IPv4 in the first 4 bytes).
    pub dst: [u8; 16],
    /// IP protocol of the transport header (0 when none).
    pub protocol: u8,
    /// Offset of the transport header in the frame (0 when none).
    pub l4_offset: u16,
    /// Source port (0 when none).
    pub src_port: u16,
    /// Destination port (0 when none).
    pub dst_port: u16,
    /// Operator mark selecting a tin (1-based, in tin order); 0 for none.
    pub mark: u8,
}

/// What kind of network header a frame has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkKind {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// ARP: classified as CS7.
    Arp,
    /// Anything else: classified as DSCP 0, one flow per host pair of nothing.
    #[default]
    Other,
}

/// What CAKE stores in a queued packet (in production, in the mbuf's private area). Everything
/// dequeue, the ACK filter and a re-filing (tin-mode change) need, so no header is parsed twice,
/// and the lengths removals account with, so a packet leaving its queue (sent, or dropped long
/// after it arrived, when its frame is cold) is accounted from the stamp alone. 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketStamp {
    /// Enqueue time, ns.
    pub enqueued_at: u64,
    /// Length charged to the shaper and DRR (spec 1.2).
    pub adjusted_len: u32,
    /// [`CakePacket::frame_len`] at enqueue: what backlogs and byte statistics count.
    pub frame_len: u32,
    /// [`CakePacket::footprint`] at enqueue: what the memory limit counts.
    pub footprint: u32,
    /// L3 offset, for ECN marking at dequeue without re-parsing.
    pub l3_offset: u16,
    /// Offset of the transport header when the dataplane found ports (TCP, UDP); 0 otherwise.
    pub l4_offset: u16,
    /// The network layer, for ECN marking.
    pub network: NetworkKind,
    /// IP protocol as the dataplane reported it (6 makes the packet a candidate for the ACK
    /// filter).
    pub protocol: u8,
    /// The ECN field at enqueue (non-zero: ECN-capable, so COBALT marks instead of dropping).
    /// Only CAKE changes it while the packet waits, and only on its way out.
    pub ecn: u8,
    /// DSCP as classified, before any `wash` (a tin-mode change re-files by it).
    pub dscp: u8,
    /// The operator mark given at enqueue.
    pub mark: u8,
    /// The class of the tin the packet was queued in ([`crate::tins::tin_class`]), set before
    /// CAKE hands the packet to any sink, so the caller can count sends and drops per tin.
    pub tin_class: u8,
    /// Set when CAKE marked the packet CE on its way out.
    pub marked: bool,
}
/// A packet CAKE can queue. Owned: moving it moves the ownership.
pub trait CakePacket: Sized {
    /// FIFO of packets of this type, for one flow. Must not allocate per packet.
    type Queue: PacketQueue<Self>;

    /// Frame length in bytes: what backlog and byte statistics count. Read once, at enqueue
    /// (the stamp keeps it).
    fn frame_len(&self) -> u32;

    /// Memory the packet occupies while queued (what `memlimit` counts; spec 5.3). Read once,
    /// at enqueue (the stamp keeps it).
    fn footprint(&self) -> u32;

    /// The frame's bytes.
    fn data(&self) -> &[u8];

    /// The frame's bytes, writable (ECN marks and DSCP wash are made in place).
    fn data_mut(&mut self) -> &mut [u8];

    /// What CAKE stored at enqueue.
    fn stamp(&self) -> &PacketStamp;

    /// Where CAKE stores what it needs until dequeue.
    fn stamp_mut(&mut self) -> &mut PacketStamp;
}

/// A FIFO of owned packets, for one flow.
pub trait PacketQueue<P>: Default {
    /// Appends at the tail.
    fn push_back(&mut self, packet: P);
    /// Takes the head.
    fn pop_front(&mut self) -> Option<P>;
    /// The head.
    fn front(&self) -> Option<&P>;
    /// The tail.
    fn back(&self) -> Option<&P>;
    /// True when empty.
    fn is_empty(&self) -> bool;
    /// The packets from head to tail, for the ACK filter's scan.
    fn iter<'a>(&'a self) -> impl Iterator<Item = &'a P>
    where
        P: 'a;
    /// Removes and returns the packet at `index` from the head.
    fn remove(&mut self, index: usize) -> Option<P>;
}

/// Why CAKE dropped a packet it hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// COBALT signalled congestion on a packet that is not ECN-capable, or BLUE dropped it.
    Aqm,
    /// The instance was over its memory limit; the packet was at the head of the fattest flow.
    Overflow,
    /// The ACK filter found it redundant.
    AckFilter,
    /// The instance was cleared (subscriber removed) or the caller asked for a drop.
    Flushed,
}
