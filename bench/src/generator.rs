//! The traffic generator: frames for N subscribers times M flows, fed to a worker's ring ports
//! from the benchmark's own core, with the worker's output recycled as the next frames.
//!
//! Frames are Ethernet + IPv4 + UDP, 64 bytes (the smallest Ethernet frame, without FCS:
//! the most work per bit). Subscriber `s` is address `10.0.0.0 + s`, flow `f` its UDP
//! source port `1024 + f`; frames go round the subscribers first, then the flows, so every
//! subscriber receives one frame in `N` and every flow one in `N * M`. Download direction:
//! frames enter the core port, and the subscriber is their destination.

use sheetcake_dataplane::dpdk::{tsc, Mbuf, MbufBuffer, Mempool, RingPortEnds};

/// Frame size, bytes.
pub const FRAME_BYTES: usize = 64;

/// Bytes of the Ethernet header, and where the IPv4 header's fields sit after it.
const ETHERNET: usize = 14;
const IP_DST: usize = ETHERNET + 16;
const IP_CHECKSUM: usize = ETHERNET + 10;
const UDP_SRC_PORT: usize = ETHERNET + 20;
/// Where a probe carries its send time (TSC), in the UDP payload.
const PROBE_STAMP: usize = ETHERNET + 28;

/// Returned frames kept for reuse between rounds: one burst. The rest are freed as they come
/// back, so the worker's TX rings never fill while a paced generator makes few frames.
const REUSE_KEPT: usize = 32;

/// The first subscriber address: 10.0.0.0, so a million subscribers fit in 10.0.0.0/12.
pub const FIRST_ADDRESS: u32 = 0x0a00_0000;

/// The address of subscriber `s`.
pub fn subscriber_address(s: u32) -> [u8; 4] {
    (FIRST_ADDRESS + s).to_be_bytes()
}

/// The template every frame starts from: addresses and port filled in per frame.
fn template() -> [u8; FRAME_BYTES] {
    let mut f = [0u8; FRAME_BYTES];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[ETHERNET..ETHERNET + 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((FRAME_BYTES - ETHERNET) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
    let udp = &mut f[UDP_SRC_PORT..UDP_SRC_PORT + 8];
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&((FRAME_BYTES - ETHERNET - 20) as u16).to_be_bytes());
    f
}

/// Writes subscriber `s`'s address and flow `flow`'s port into `frame`, with a valid header
/// checksum.
fn address(frame: &mut [u8], s: u32, flow: u32) {
    frame[IP_DST..IP_DST + 4].copy_from_slice(&subscriber_address(s));
    frame[UDP_SRC_PORT..UDP_SRC_PORT + 2].copy_from_slice(&((1024 + flow) as u16).to_be_bytes());
    frame[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&[0, 0]);
    let sum: u32 = frame[ETHERNET..ETHERNET + 20]
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    frame[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
}

/// What the generator did over a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Generated {
    /// Frames the worker's RX ring accepted.
    pub offered: u64,
    /// Frames that came back out of the worker.
    pub returned: u64,
}

/// The generator for one worker's pair of ring ports.
pub struct Generator {
    pool: Mempool,
    subscribers: u32,
    flows: u32,
    next: u64,
    burst: MbufBuffer<64>,
    back: MbufBuffer<64>,
    template: [u8; FRAME_BYTES],
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
            burst: MbufBuffer::new(),
            back: MbufBuffer::new(),
            template: template(),
            probe: None,
            pace: None,
        }
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
        self.probe = Some(Probe {
            subscriber,
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

    /// One round: takes back what the worker sent on `access`, readdresses it (or allocates
    /// new frames while under the limit), and offers a burst on `core`. Returns what moved.
    #[inline]
    pub fn round(&mut self, core: &mut RingPortEnds, access: &mut RingPortEnds) -> Generated {
        let mut done = Generated::default();
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
                done.returned += n as u64;
                if let Some(probe) = &mut self.probe {
                    let now = tsc();
                    let address = subscriber_address(probe.subscriber);
                    for m in self.back.iter().skip(before) {
                        let d = m.data();
                        if d.len() >= PROBE_STAMP + 8 && d[IP_DST..IP_DST + 4] == address {
                            let sent = u64::from_be_bytes(
                                d[PROBE_STAMP..PROBE_STAMP + 8].try_into().expect("8 bytes"),
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
        let mut room = self.burst.spare();
        if let Some(pace) = &mut self.pace {
            let due = ((tsc() - pace.start) as f64 * pace.frames_per_cycle) as u64;
            room = room.min(due.saturating_sub(pace.made) as usize);
            pace.made += room as u64;
        }
        for _ in 0..room {
            let mut m = match self.back.pop() {
                Some(m) => m,
                None => match Mbuf::from_bytes(self.pool, &self.template) {
                    Some(m) => m,
                    None => break,
                },
            };
            let data = m.data_mut();
            data.copy_from_slice(&self.template[..data.len().min(FRAME_BYTES)]);
            match &mut self.probe {
                Some(probe) if tsc() >= probe.next => {
                    // From now, not from when it was due: a late round never sends a burst
                    // of probes.
                    probe.next = tsc() + probe.interval;
                    address(data, probe.subscriber, 0);
                    data[PROBE_STAMP..PROBE_STAMP + 8].copy_from_slice(&tsc().to_be_bytes());
                }
                _ => {
                    let s = (self.next % u64::from(self.subscribers)) as u32;
                    let flow =
                        ((self.next / u64::from(self.subscribers)) % u64::from(self.flows)) as u32;
                    self.next += 1;
                    address(data, s, flow);
                }
            }
            self.burst.push(m).expect("room checked");
        }
        // What the ring refuses stays in the burst and goes first next round.
        for inject in core.inject.iter_mut() {
            done.offered += inject.send(&mut self.burst) as u64;
        }
        done
    }
}
