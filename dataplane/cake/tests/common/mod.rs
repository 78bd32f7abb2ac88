//! A deterministic discrete-event simulation on a virtual clock: traffic sources that behave
//! like real ones, and a link that polls a CAKE instance the way a worker does (dequeue what
//! the shaper allows; when it says "wait until t", come back at t).
#![allow(dead_code)] // each test file uses its own part

use sheetcake_cake::sim::{ipv4_frame, FrameSpec, TestPacket};
use sheetcake_cake::{Cake, CakeConfig, Dequeued, DropReason, FlowPool, InstanceSetup};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub const US: u64 = 1_000;
pub const MS: u64 = 1_000_000;
pub const S: u64 = 1_000_000_000;

/// How a source behaves.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Unresponsive constant rate: one packet every `interval` ns.
    ConstantRate { interval: u64 },
    /// A TCP-like sender: window of `cwnd` packets, +1/cwnd per ack, halved at most once per
    /// RTT on a loss or a CE mark; acks return `base_rtt` after delivery.
    Aimd {
        cwnd: f64,
        base_rtt: u64,
        last_cut: u64,
        inflight: u32,
    },
    /// A small request every `interval` (DNS, game, VoIP-like).
    Sparse { interval: u64 },
}

/// One traffic source: a flow with a fixed 5-tuple.
#[derive(Debug, Clone)]
pub struct Source {
    pub behaviour: Behaviour,
    pub frame: FrameSpec,
    /// Delivered packets and bytes, and queueing delays (creation to dequeue), after warm-up.
    pub delivered_packets: u64,
    pub delivered_bytes: u64,
    pub delays: Vec<u64>,
    pub marks: u64,
    pub drops: u64,
    pub sent: u64,
}

impl Source {
    pub fn new(behaviour: Behaviour, frame: FrameSpec) -> Source {
        Source {
            behaviour,
            frame,
            delivered_packets: 0,
            delivered_bytes: 0,
            delays: Vec::new(),
            marks: 0,
            drops: 0,
            sent: 0,
        }
    }

    /// A TCP-like bulk flow (ECN-capable when `ecn`) from `src` to `dst`.
    pub fn tcp(src: [u8; 4], dst: [u8; 4], port: u16, base_rtt: u64, ecn: bool) -> Source {
        Source::new(
            Behaviour::Aimd {
                cwnd: 2.0,
                base_rtt,
                last_cut: 0,
                inflight: 0,
            },
            FrameSpec {
                src,
                dst,
                protocol: 6,
                src_port: port,
                dst_port: 443,
                dscp: 0,
                ecn: if ecn { 2 } else { 0 },
                len: 1514,
            },
        )
    }

    /// A constant-rate UDP flow of `len`-byte frames at `bits_per_second`.
    pub fn udp(src: [u8; 4], dst: [u8; 4], port: u16, bits_per_second: u64, len: usize) -> Source {
        Source::new(
            Behaviour::ConstantRate {
                interval: (len as u64 * 8 * S) / bits_per_second,
            },
            FrameSpec {
                src,
                dst,
                protocol: 17,
                src_port: port,
                dst_port: 4500,
                dscp: 0,
                ecn: 0,
                len,
            },
        )
    }

    /// A sparse flow: one `len`-byte UDP packet every `interval`.
    pub fn sparse(src: [u8; 4], dst: [u8; 4], port: u16, interval: u64, len: usize) -> Source {
        Source::new(
            Behaviour::Sparse { interval },
            FrameSpec {
                src,
                dst,
                protocol: 17,
                src_port: port,
                dst_port: 53,
                dscp: 0,
                ecn: 0,
                len,
            },
        )
    }

    pub fn with_dscp(mut self, dscp: u8) -> Source {
        self.frame.dscp = dscp;
        self
    }

    pub fn percentile_delay(&self, p: f64) -> u64 {
        let mut d = self.delays.clone();
        d.sort_unstable();
        if d.is_empty() {
            return 0;
        }
        d[((d.len() - 1) as f64 * p) as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Send(usize),
    Ack { source: usize, marked: bool },
    Loss(usize),
}

/// The queue under test: CAKE, or a plain FIFO of the same rate and memory for comparison.
pub enum Queue {
    Cake {
        cake: Box<Cake>,
        pool: FlowPool<TestPacket>,
    },
    Fifo {
        queue: std::collections::VecDeque<TestPacket>,
        bytes: u64,
        limit: u64,
        rate: u64,
        next: u64,
    },
}

/// The simulation: sources, a queue, a clock.
pub struct Sim {
    pub queue: Queue,
    pub sources: Vec<Source>,
    pub now: u64,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    sequence: u64,
    /// Statistics count only after this time.
    pub warmup_until: u64,
    /// Every packet accounted for: enqueued = delivered + dropped + queued.
    pub enqueued: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// Delivered adjusted bytes (what the shaper charged), after warm-up.
    pub adjusted_bytes: u64,
}

impl Sim {
    /// A simulation of a CAKE instance configured with tc-cake `words`.
    pub fn cake(words: &str) -> Sim {
        let config = CakeConfig::parse(words).expect("test config parses");
        Sim::new(Queue::Cake {
            cake: Box::new(Cake::new(config, InstanceSetup::new(1, 42))),
            pool: FlowPool::new(4096),
        })
    }

    /// A FIFO at `bits_per_second` holding at most `limit` bytes of frames.
    pub fn fifo(bits_per_second: u64, limit: u64) -> Sim {
        Sim::new(Queue::Fifo {
            queue: Default::default(),
            bytes: 0,
            limit,
            rate: bits_per_second / 8,
            next: 0,
        })
    }

    fn new(queue: Queue) -> Sim {
        Sim {
            queue,
            sources: Vec::new(),
            now: 0,
            events: BinaryHeap::new(),
            sequence: 0,
            warmup_until: 0,
            enqueued: 0,
            delivered: 0,
            dropped: 0,
            adjusted_bytes: 0,
        }
    }

    /// Adds `n` responsive bulk TCP flows (20 ms base RTT), flow `f` from `src(f)` to
    /// `dst(f)` on port `base_port + f`: the load most fairness tests start from.
    pub fn add_bulk(
        &mut self,
        n: u8,
        src: impl Fn(u8) -> [u8; 4],
        dst: impl Fn(u8) -> [u8; 4],
        base_port: u16,
        ecn: bool,
    ) {
        for f in 0..n {
            self.add(Source::tcp(
                src(f),
                dst(f),
                base_port + u16::from(f),
                20 * MS,
                ecn,
            ));
        }
    }

    /// Adds a source; returns its index in `sources`.
    pub fn add(&mut self, source: Source) -> usize {
        self.sources.push(source);
        let i = self.sources.len() - 1;
        // Stagger starts a little so flows do not move in lock step.
        self.schedule(self.now + i as u64 * 37 * US, Event::Send(i));
        i
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.sequence += 1;
        self.events.push(Reverse((at, self.sequence, event)));
    }

    pub fn cake_mut(&mut self) -> (&mut Cake, &mut FlowPool<TestPacket>) {
        match &mut self.queue {
            Queue::Cake { cake, pool } => (cake, pool),
            Queue::Fifo { .. } => panic!("not a CAKE simulation"),
        }
    }

    pub fn cake_ref(&self) -> &Cake {
        match &self.queue {
            Queue::Cake { cake, .. } => cake,
            Queue::Fifo { .. } => panic!("not a CAKE simulation"),
        }
    }

    fn send(&mut self, i: usize) {
        let (mut packet, meta) = ipv4_frame(&self.sources[i].frame, i as u32, self.now);
        packet.source = i as u32;
        self.sources[i].sent += 1;
        self.enqueued += 1;
        let now = self.now;
        let mut dropped = Vec::new();
        match &mut self.queue {
            Queue::Cake { cake, pool } => {
                cake.enqueue(pool, packet, &meta, now, &mut |p, r| dropped.push((p, r)));
            }
            Queue::Fifo {
                queue,
                bytes,
                limit,
                next,
                ..
            } => {
                if *bytes + packet.bytes.len() as u64 > *limit {
                    dropped.push((packet, DropReason::Overflow));
                } else {
                    if queue.is_empty() && *next < now {
                        *next = now;
                    }
                    *bytes += packet.bytes.len() as u64;
                    queue.push_back(packet);
                }
            }
        }
        for (p, _) in dropped {
            self.on_drop(p);
        }
    }

    fn on_drop(&mut self, p: TestPacket) {
        self.dropped += 1;
        let i = p.source as usize;
        self.sources[i].drops += 1;
        if let Behaviour::Aimd { base_rtt, .. } = self.sources[i].behaviour {
            // The sender learns of the loss about one RTT later (duplicate acks).
            self.schedule(self.now + base_rtt, Event::Loss(i));
        }
    }

    fn deliver(&mut self, p: TestPacket) {
        self.delivered += 1;
        let i = p.source as usize;
        let marked = p.bytes[15] & 3 == 3;
        if self.now >= self.warmup_until {
            let s = &mut self.sources[i];
            s.delivered_packets += 1;
            s.delivered_bytes += p.bytes.len() as u64;
            s.delays.push(self.now - p.created_at);
            if marked {
                s.marks += 1;
            }
            self.adjusted_bytes += u64::from(p.stamp.adjusted_len);
        }
        if let Behaviour::Aimd { base_rtt, .. } = self.sources[i].behaviour {
            self.schedule(self.now + base_rtt, Event::Ack { source: i, marked });
        }
    }

    /// Dequeues everything the queue allows at `now`; returns when to come back.
    fn poll(&mut self) -> u64 {
        let now = self.now;
        loop {
            let mut dropped = Vec::new();
            let out = match &mut self.queue {
                Queue::Cake { cake, pool } => {
                    match cake.dequeue(pool, now, &mut |p, _| dropped.push(p)) {
                        Dequeued::Packet(p) => Ok(p),
                        Dequeued::WaitUntil(t) => Err(t),
                        Dequeued::Empty => Err(u64::MAX),
                    }
                }
                Queue::Fifo {
                    queue,
                    bytes,
                    rate,
                    next,
                    ..
                } => {
                    if queue.is_empty() {
                        Err(u64::MAX)
                    } else if *next > now {
                        Err(*next)
                    } else {
                        let p = queue.pop_front().expect("not empty");
                        *bytes -= p.bytes.len() as u64;
                        *next += p.bytes.len() as u64 * S / *rate;
                        Ok(p)
                    }
                }
            };
            for p in dropped {
                self.on_drop(p);
            }
            match out {
                Ok(p) => self.deliver(p),
                Err(t) => return t,
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Send(i) => match self.sources[i].behaviour.clone() {
                Behaviour::ConstantRate { interval } | Behaviour::Sparse { interval } => {
                    self.send(i);
                    self.schedule(self.now + interval, Event::Send(i));
                }
                Behaviour::Aimd { .. } => self.fill_window(i),
            },
            Event::Ack { source, marked } => {
                if let Behaviour::Aimd {
                    cwnd,
                    base_rtt,
                    last_cut,
                    inflight,
                } = &mut self.sources[source].behaviour
                {
                    *inflight = inflight.saturating_sub(1);
                    if marked && self.now > *last_cut + *base_rtt {
                        *cwnd = (*cwnd / 2.0).max(1.0);
                        *last_cut = self.now;
                    } else if !marked {
                        *cwnd += 1.0 / *cwnd;
                    }
                }
                self.fill_window(source);
            }
            Event::Loss(i) => {
                if let Behaviour::Aimd {
                    cwnd,
                    base_rtt,
                    last_cut,
                    inflight,
                } = &mut self.sources[i].behaviour
                {
                    *inflight = inflight.saturating_sub(1);
                    if self.now > *last_cut + *base_rtt {
                        *cwnd = (*cwnd / 2.0).max(1.0);
                        *last_cut = self.now;
                    }
                }
                self.fill_window(i);
            }
        }
    }

    fn fill_window(&mut self, i: usize) {
        loop {
            let Behaviour::Aimd { cwnd, inflight, .. } = &mut self.sources[i].behaviour else {
                return;
            };
            if f64::from(*inflight) >= cwnd.floor() {
                return;
            }
            *inflight += 1;
            self.send(i);
        }
    }

    /// Runs until `end` (ns of virtual time).
    pub fn run_until(&mut self, end: u64) {
        while self.now < end {
            while let Some(Reverse((at, _, event))) = self.events.peek().copied() {
                if at > self.now {
                    break;
                }
                self.events.pop();
                self.on_event(event);
            }
            let link = self.poll();
            let next_event = self.events.peek().map_or(u64::MAX, |Reverse((at, ..))| *at);
            self.now = link.min(next_event).min(end).max(self.now + 1);
        }
    }

    /// Packets still queued.
    pub fn queued(&self) -> u64 {
        match &self.queue {
            Queue::Cake { cake, .. } => u64::from(cake.backlog_packets()),
            Queue::Fifo { queue, .. } => queue.len() as u64,
        }
    }
}

/// Jain's fairness index of `x`: 1 when all equal, 1/n when one takes everything.
pub fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    sum * sum / (x.len() as f64 * squares)
}

/// Addresses for tests: host `n` of the subscriber side and server `n` of the internet side.
pub fn host(n: u8) -> [u8; 4] {
    [100, 64, 0, n]
}
pub fn server(n: u8) -> [u8; 4] {
    [198, 18, 0, n]
}
