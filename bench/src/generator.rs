//! The traffic generator: frames for N subscribers times M flows, fed to the workers' ring
//! ports from the benchmark's own core (each frame on the RX queue of the worker its
//! steering picks), with the workers' output recycled as the next frames.
//!
//! Subscriber `s` is IPv4 `10.0.0.0 + s` and IPv6 `2001:db8:<s>::1` (in its /64); flow `f` is
//! source port `1024 + f`. Frames go round the subscribers first, then the flows, so every
//! subscriber receives one frame in `N` and every flow one in `N * M`. Downloads enter the
//! core port with the subscriber as destination, uploads the access port with the subscriber
//! as source. A [`Traffic`] says what the frames look like: sizes (64 bytes, 1518, or IMIX: 7 x
//! 64, 4 x 576, 1 x 1500 in every 12), IPv4 or IPv6, bare or under 802.1Q, QinQ or a PPPoE
//! session header, the transport (UDP, TCP or a mix) and the DSCP class (one, or a mix). A
//! mix goes by flow, the way a subscriber's traffic mixes: flow `f % 4` is UDP best effort,
//! TCP AF11, UDP EF (voice) and TCP CS1 (bulk), so a subscriber's first flow is UDP best
//! effort; one transport or class puts every flow in it.

use sheetcake_dataplane::dpdk::{tsc, Mbuf, MbufBuffer, Mempool, RingPortEnds};

/// The smallest frame, bytes: the most work per bit.
pub const FRAME_BYTES: usize = 64;

/// Frame sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sizes {
    /// 64 bytes without FCS (IPv6 under tags needs up to 90 for its headers)
    #[value(name = "64")]
    Min,
    /// 1518 bytes
    #[value(name = "1518")]
    Max,
    /// 7 x 64, 4 x 576, 1 x 1500 bytes in every 12 frames
    Imix,
}

impl Sizes {
    /// The size of the `k`th frame.
    fn nth(self, k: u64) -> usize {
        match self {
            Sizes::Min => FRAME_BYTES,
            Sizes::Max => 1518,
            Sizes::Imix => match k % 12 {
                0..=6 => 64,
                7..=10 => 576,
                _ => 1500,
            },
        }
    }
}

/// The IP version of the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IpVersion {
    #[value(name = "4")]
    V4,
    #[value(name = "6")]
    V6,
}

impl serde::Serialize for IpVersion {
    /// As a number: 4 or 6.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        })
    }
}

/// What wraps the IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// Ethernet alone
    Bare,
    /// an 802.1Q tag
    Vlan,
    /// an 802.1ad tag over an 802.1Q tag
    #[value(name = "qinq")]
    QinQ,
    /// a PPPoE session header
    Pppoe,
}

/// Which way the frames go through the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// into the core port, the subscriber their destination
    Download,
    /// into the access port, the subscriber their source
    Upload,
}

/// The transport header of the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP datagrams
    Udp,
    /// TCP ACK segments without payload
    Tcp,
    /// by flow: flows 0 and 2 of every 4 of a subscriber UDP, 1 and 3 TCP (one flow per
    /// subscriber is UDP)
    Mix,
}

/// The DSCP class of the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dscp {
    /// by flow: best effort, AF11, EF, CS1 for flows 0 to 3 of every 4 of a subscriber (one
    /// flow per subscriber is best effort)
    Mix,
    /// best effort (DSCP 0)
    Be,
    /// CS1, bulk (8)
    Cs1,
    /// AF11 (10)
    Af11,
    /// EF, voice (46)
    Ef,
}

impl Dscp {
    /// The code point of a single class.
    fn code_point(self, flow: u32) -> u8 {
        match self {
            Dscp::Mix => MIX[(flow % 4) as usize].1,
            Dscp::Be => 0,
            Dscp::Cs1 => 8,
            Dscp::Af11 => 10,
            Dscp::Ef => 46,
        }
    }
}

/// The mix by flow `f % 4`: IP protocol and DSCP.
const MIX: [(u8, u8); 4] = [(UDP, 0), (TCP, 10), (UDP, 46), (TCP, 8)];
const UDP: u8 = 17;
const TCP: u8 = 6;

/// A knob's value as the command line spells it.
pub fn knob_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned())
}

/// What the generated frames look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// In the results as `packet_size`.
    #[serde(skip)]
    pub sizes: Sizes,
    pub ip: IpVersion,
    pub encap: Encap,
    pub direction: Direction,
    pub transport: Transport,
    pub dscp: Dscp,
}

impl Traffic {
    /// 64-byte IPv4 downloads, no tags, the mix by flow: what the `rte_sched` reference
    /// classifies unless told otherwise, and the tests' frames.
    pub const MIN_IPV4: Traffic = Traffic {
        sizes: Sizes::Min,
        ip: IpVersion::V4,
        encap: Encap::Bare,
        direction: Direction::Download,
        transport: Transport::Mix,
        dscp: Dscp::Mix,
    };

    pub fn ipv6(&self) -> bool {
        self.ip == IpVersion::V6
    }

    pub fn upload(&self) -> bool {
        self.direction == Direction::Upload
    }

    /// A short name for tables: "ipv4", "ipv6 qinq", "ipv4 pppoe up" and so on (the
    /// transport and class are [`Traffic::classes`]).
    pub fn name(&self) -> String {
        let ip = if self.ipv6() { "ipv6" } else { "ipv4" };
        let name = match self.encap {
            Encap::Bare => ip.to_owned(),
            Encap::Vlan => format!("{ip} vlan"),
            Encap::QinQ => format!("{ip} qinq"),
            Encap::Pppoe => format!("{ip} pppoe"),
        };
        if self.upload() {
            format!("{name} up")
        } else {
            name
        }
    }

    /// The transport and class for tables: "mix/mix", "tcp/ef".
    pub fn classes(&self) -> String {
        format!("{}/{}", knob_name(self.transport), knob_name(self.dscp))
    }

    /// Flow `flow`'s IP protocol and DSCP.
    fn class(&self, flow: u32) -> (u8, u8) {
        let protocol = match self.transport {
            Transport::Udp => UDP,
            Transport::Tcp => TCP,
            Transport::Mix => MIX[(flow % 4) as usize].0,
        };
        (protocol, self.dscp.code_point(flow))
    }

    /// Bytes before the IP header.
    fn l2_len(&self) -> usize {
        14 + match self.encap {
            Encap::Bare => 0,
            Encap::Vlan => 4,
            Encap::QinQ => 8,
            Encap::Pppoe => 8,
        }
    }

    fn ip_len(&self) -> usize {
        if self.ipv6() {
            40
        } else {
            20
        }
    }

    /// Where the subscriber's address sits (destination for downloads, source for
    /// uploads), and how long it is.
    fn subscriber_field(&self) -> (usize, usize) {
        match (self.ipv6(), self.upload()) {
            (true, false) => (self.l2_len() + 24, 16),
            (true, true) => (self.l2_len() + 8, 16),
            (false, false) => (self.l2_len() + 16, 4),
            (false, true) => (self.l2_len() + 12, 4),
        }
    }

    /// Where a probe carries its send time: past the largest transport header.
    fn stamp(&self) -> usize {
        self.l2_len() + self.ip_len() + 20
    }

    /// The `k`th frame's length: its size, or its headers and a probe stamp where they need
    /// more.
    fn frame_len(&self, k: u64) -> usize {
        self.sizes.nth(k).max(self.stamp() + 8)
    }

    /// The mean frame length, bytes.
    pub fn mean_len(&self) -> f64 {
        (0..12).map(|k| self.frame_len(k) as f64).sum::<f64>() / 12.0
    }

    /// The mean length CAKE's shaper charges for a frame with its default overhead (none):
    /// the IP packet, without the Ethernet header, tags and PPPoE header.
    pub fn mean_shaped_len(&self) -> f64 {
        self.mean_len() - self.l2_len() as f64
    }
}

/// Returned frames kept for reuse between rounds: one burst. The rest are freed as they come
/// back, so the worker's TX rings never fill while a paced generator makes few frames.
const REUSE_KEPT: usize = 32;

/// The first subscriber address: 10.0.0.0, so a million subscribers fit in 10.0.0.0/12.
pub const FIRST_ADDRESS: u32 = 0x0a00_0000;

/// Subscriber `s`'s IPv4 address.
pub fn subscriber_address(s: u32) -> [u8; 4] {
    (FIRST_ADDRESS + s).to_be_bytes()
}

/// Subscriber `s`'s IPv6 /64 prefix (its address there is `::1`).
pub fn subscriber_prefix_v6(s: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[4..8].copy_from_slice(&s.to_be_bytes());
    a
}

/// Writes a whole frame of `traffic`'s shape into `f` (already `len` bytes long): subscriber
/// `s`, flow `flow`, and a send time when it is a probe.
fn write_frame(f: &mut [u8], traffic: &Traffic, s: u32, flow: u32, stamp: Option<u64>) {
    let len = f.len();
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    let ether_ip: [u8; 2] = if traffic.ipv6() {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    };
    let mut at = 12;
    match traffic.encap {
        Encap::Bare => {}
        Encap::Vlan => {
            f[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 100]);
            at = 16;
        }
        Encap::QinQ => {
            f[12..20].copy_from_slice(&[0x88, 0xa8, 0x00, 10, 0x81, 0x00, 0x00, 100]);
            at = 20;
        }
        Encap::Pppoe => {}
    }
    if traffic.encap == Encap::Pppoe {
        // Session stage: version/type 0x11, code 0, session id, length (PPP protocol + IP).
        let ppp_len = (len - 14 - 6) as u16;
        f[12..14].copy_from_slice(&[0x88, 0x64]);
        f[14..16].copy_from_slice(&[0x11, 0x00]);
        f[16..18].copy_from_slice(&(s as u16).to_be_bytes());
        f[18..20].copy_from_slice(&ppp_len.to_be_bytes());
        f[20..22].copy_from_slice(if traffic.ipv6() {
            &[0x00, 0x57]
        } else {
            &[0x00, 0x21]
        });
    } else {
        f[at..at + 2].copy_from_slice(&ether_ip);
    }
    let ip = traffic.l2_len();
    let l4 = ip + traffic.ip_len();
    let (protocol, dscp) = traffic.class(flow);
    let payload = (len - l4) as u16;
    if traffic.ipv6() {
        let h = &mut f[ip..l4];
        h[0] = 0x60 | (dscp >> 2);
        h[1] = dscp << 6;
        h[2..4].copy_from_slice(&[0, 0]);
        h[4..6].copy_from_slice(&payload.to_be_bytes());
        h[6] = protocol;
        h[7] = 64;
        let mut far = [0u8; 16];
        far[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        far[15] = 1;
        let mut own = subscriber_prefix_v6(s);
        own[15] = 1;
        let (src, dst) = if traffic.upload() {
            (own, far)
        } else {
            (far, own)
        };
        h[8..24].copy_from_slice(&src);
        h[24..40].copy_from_slice(&dst);
    } else {
        let h = &mut f[ip..l4];
        h[0] = 0x45;
        h[1] = dscp << 2;
        h[2..4].copy_from_slice(&((len - ip) as u16).to_be_bytes());
        h[4..8].copy_from_slice(&[0, 0, 0, 0]);
        h[8] = 64;
        h[9] = protocol;
        h[10..12].copy_from_slice(&[0, 0]);
        let (src, dst) = if traffic.upload() {
            (subscriber_address(s), [192, 0, 2, 1])
        } else {
            ([192, 0, 2, 1], subscriber_address(s))
        };
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        let sum = sheetcake_parse::checksum::checksum(h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    let t = &mut f[l4..];
    t[0..2].copy_from_slice(&((1024 + flow) as u16).to_be_bytes());
    t[2..4].copy_from_slice(&9u16.to_be_bytes());
    if protocol == UDP {
        t[4..6].copy_from_slice(&payload.to_be_bytes());
        t[6..8].copy_from_slice(&[0, 0]);
    } else {
        // A TCP segment with ACK set, header only (data offset 5).
        t[4..12].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        t[12] = 0x50;
        t[13] = 0x10;
        t[14..20].copy_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    }
    if let Some(time) = stamp {
        let at = traffic.stamp();
        f[at..at + 8].copy_from_slice(&time.to_be_bytes());
    }
}

/// The generator for a pair of ring ports, with one RX queue per worker.
pub struct Generator {
    pool: Mempool,
    subscribers: u32,
    flows: u32,
    next: u64,
    /// The next burst of each RX queue (worker).
    bursts: Vec<MbufBuffer<64>>,
    /// The RX queue of each subscriber's frames (all on queue 0 when empty).
    queue_of: Vec<u16>,
    back: MbufBuffer<64>,
    traffic: Traffic,
    /// Frames made (for the size pattern).
    made: u64,
    probe: Option<Probe>,
    pace: Option<Pace>,
}

/// An offered rate: frames are made only as time allows.
struct Pace {
    start: u64,
    frames_per_cycle: f64,
    made: u64,
}

/// A sparse probe flow through the loaded worker: one frame to its own subscriber every
/// `interval` TSC cycles, stamped with its send time.
struct Probe {
    subscriber: u32,
    /// Its destination address as frames carry it (IPv4 in the first 4 bytes).
    address: [u8; 16],
    interval: u64,
    next: u64,
    /// One-way delays seen, TSC cycles.
    delays: Vec<u64>,
}

impl Generator {
    /// A generator for `subscribers` times `flows`, allocating from `pool` whatever the
    /// worker's output does not give back (the frames its queues hold or dropped).
    pub fn new(pool: Mempool, subscribers: u32, flows: u32) -> Generator {
        Generator {
            pool,
            subscribers: subscribers.max(1),
            flows: flows.max(1),
            next: 0,
            bursts: vec![MbufBuffer::new()],
            queue_of: Vec::new(),
            back: MbufBuffer::new(),
            traffic: Traffic::MIN_IPV4,
            made: 0,
            probe: None,
            pace: None,
        }
    }

    /// Makes frames of `traffic`'s shape instead of 64-byte IPv4 ones.
    pub fn with_traffic(mut self, traffic: Traffic) -> Generator {
        self.traffic = traffic;
        self
    }

    /// Feeds `queues` RX queues (one per worker) instead of one, putting subscriber `s`'s
    /// frames on queue `queue_of[s]`, as a NIC's steering would.
    pub fn steered(mut self, queues: usize, queue_of: Vec<u16>) -> Generator {
        self.bursts = (0..queues.max(1)).map(|_| MbufBuffer::new()).collect();
        self.queue_of = queue_of;
        self
    }

    /// Offers `frames_per_second` at most (at the TSC rate `hz`), instead of as many as the
    /// worker takes.
    pub fn paced(mut self, frames_per_second: f64, hz: u64) -> Generator {
        self.pace = Some(Pace {
            start: tsc(),
            frames_per_cycle: frames_per_second / hz as f64,
            made: 0,
        });
        self
    }

    /// Adds a probe flow to `subscriber` (outside the generated ones), one frame every
    /// `interval` TSC cycles.
    pub fn with_probe(mut self, subscriber: u32, interval: u64) -> Generator {
        let mut address = [0u8; 16];
        if self.traffic.ipv6() {
            address = subscriber_prefix_v6(subscriber);
            address[15] = 1;
        } else {
            address[..4].copy_from_slice(&subscriber_address(subscriber));
        }
        self.probe = Some(Probe {
            subscriber,
            address,
            interval,
            next: tsc(),
            delays: Vec::with_capacity(1 << 20),
        });
        self
    }

    /// The probe's delays so far (TSC cycles), emptied.
    pub fn take_probe_delays(&mut self) -> Vec<u64> {
        self.probe
            .as_mut()
            .map(|p| std::mem::take(&mut p.delays))
            .unwrap_or_default()
    }

    /// One round: takes back what the worker sent, rewrites it (or allocates new frames) as
    /// the next frames, and offers a burst on the core port (downloads) or the access port
    /// (uploads), as the pace allows.
    #[inline]
    pub fn round(&mut self, core: &mut RingPortEnds, access: &mut RingPortEnds) {
        // Everything the worker sent is taken off its TX rings at once, so the worker never
        // waits for the generator: what is not reused this round is kept up to a burst and
        // the rest freed.
        for collect in access.collect.iter_mut().chain(core.collect.iter_mut()) {
            loop {
                // Room first: frames kept for reuse beyond one burst are freed.
                while self.back.len() > REUSE_KEPT {
                    drop(self.back.pop());
                }
                let before = self.back.len();
                let n = collect.receive(&mut self.back, 64);
                if let Some(probe) = &mut self.probe {
                    let now = tsc();
                    let (at, len) = self.traffic.subscriber_field();
                    let stamp = self.traffic.stamp();
                    for m in self.back.iter().skip(before) {
                        let d = m.data();
                        if d.len() >= stamp + 8 && d[at..at + len] == probe.address[..len] {
                            let sent = u64::from_be_bytes(
                                d[stamp..stamp + 8].try_into().expect("8 bytes"),
                            );
                            probe.delays.push(now.saturating_sub(sent));
                        }
                    }
                }
                if n == 0 || collect.is_empty() {
                    break;
                }
            }
        }
        let mut room: usize = self.bursts.iter().map(|b| b.spare()).sum();
        if let Some(pace) = &mut self.pace {
            let due = ((tsc() - pace.start) as f64 * pace.frames_per_cycle) as u64;
            room = room.min(due.saturating_sub(pace.made) as usize);
            pace.made += room as u64;
        }
        for _ in 0..room {
            let probe_due = matches!(&self.probe, Some(p) if tsc() >= p.next);
            let (s, flow) = match &self.probe {
                Some(probe) if probe_due => (probe.subscriber, 0),
                _ => (
                    (self.next % u64::from(self.subscribers)) as u32,
                    ((self.next / u64::from(self.subscribers)) % u64::from(self.flows)) as u32,
                ),
            };
            let queue = self.queue_of.get(s as usize).map_or(0, |&q| usize::from(q));
            if self.bursts[queue].spare() == 0 {
                if probe_due {
                    // The probe waits for room on its queue, next round.
                    break;
                }
                // A worker whose RX ring is full is passed over, as a NIC drops at a full
                // queue: a slow worker does not hold back what the others are offered.
                self.next += 1;
                continue;
            }
            let mut m = match self.back.pop() {
                Some(m) => m,
                None => match Mbuf::alloc(self.pool) {
                    Some(m) => m,
                    None => break,
                },
            };
            let len = self.traffic.frame_len(self.made);
            self.made += 1;
            if !m.set_len(len as u16) {
                break;
            }
            let traffic = self.traffic;
            match &mut self.probe {
                Some(probe) if probe_due => {
                    // From now, not from when it was due: a late round never sends a burst
                    // of probes.
                    probe.next = tsc() + probe.interval;
                    write_frame(m.data_mut(), &traffic, s, flow, Some(tsc()));
                }
                _ => {
                    self.next += 1;
                    write_frame(m.data_mut(), &traffic, s, flow, None);
                }
            }
            self.bursts[queue].push(m).expect("room checked");
        }
        // What the ring refuses stays in the burst and goes first next round.
        let port = if self.traffic.upload() { access } else { core };
        for (inject, burst) in port.inject.iter_mut().zip(&mut self.bursts) {
            inject.send(burst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-byte IPv4 frame of `traffic` for subscriber 7, flow `flow`.
    fn frame(traffic: Traffic, flow: u32) -> Vec<u8> {
        let mut f = vec![0u8; traffic.frame_len(0)];
        write_frame(&mut f, &traffic, 7, flow, None);
        f
    }

    /// IPv4 without tags: the protocol is byte 23, the DSCP the top six bits of byte 15.
    fn protocol_and_dscp(f: &[u8]) -> (u8, u8) {
        (f[23], f[15] >> 2)
    }

    #[test]
    fn the_mix_goes_by_flow_so_a_first_flow_is_udp_best_effort() {
        let mix = Traffic::MIN_IPV4;
        let seen: Vec<(u8, u8)> = (0..4).map(|f| protocol_and_dscp(&frame(mix, f))).collect();
        assert_eq!(seen, vec![(UDP, 0), (TCP, 10), (UDP, 46), (TCP, 8)]);
    }

    #[test]
    fn one_transport_and_class_put_every_flow_there() {
        let tcp_ef = Traffic {
            transport: Transport::Tcp,
            dscp: Dscp::Ef,
            ..Traffic::MIN_IPV4
        };
        for f in 0..4 {
            assert_eq!(protocol_and_dscp(&frame(tcp_ef, f)), (TCP, 46), "flow {f}");
        }
        assert_eq!(tcp_ef.classes(), "tcp/ef");
    }

    #[test]
    fn cake_is_charged_for_the_ip_packet_of_the_mean_frame() {
        // 64-byte frames less the 14-byte Ethernet header. Under an 802.1Q tag a 64-byte
        // frame grows to 66, its headers (18 + 20 + 20) and a probe stamp (8), so IMIX's mean
        // is (7 x 66 + 4 x 576 + 1500) / 12 = 355.5 bytes, less the 18 before the IP header.
        assert_eq!(Traffic::MIN_IPV4.mean_shaped_len(), 50.0);
        let imix_vlan = Traffic {
            sizes: Sizes::Imix,
            encap: Encap::Vlan,
            ..Traffic::MIN_IPV4
        };
        assert!((imix_vlan.mean_shaped_len() - (4266.0 / 12.0 - 18.0)).abs() < 1e-9);
    }
}
