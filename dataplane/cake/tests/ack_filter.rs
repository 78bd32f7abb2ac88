//! The ACK filter inside an instance, and its point: on an asymmetric link, downloads go faster
//! when their redundant ACKs do not queue for the narrow upstream.

use sheetcake_cake::sim::{ipv4_frame, FrameSpec, TestPacket};
use sheetcake_cake::{Cake, CakeConfig, Dequeued, DropReason, FlowPool, InstanceSetup, PacketMeta};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// A pure ACK from subscriber port `port` acknowledging `ack` (ECE when `ece`).
fn pure_ack(port: u16, ack: u32, ece: bool, now: u64) -> (TestPacket, PacketMeta) {
    let spec = FrameSpec {
        src: [100, 64, 0, 1],
        dst: [198, 18, 0, 1],
        protocol: 6,
        src_port: port,
        dst_port: 443,
        dscp: 0,
        ecn: 0,
        len: 54,
    };
    let (mut p, meta) = ipv4_frame(&spec, u32::from(port), now);
    p.bytes[42..46].copy_from_slice(&ack.to_be_bytes());
    p.bytes[47] = 0x10 | if ece { 0x40 } else { 0 };
    (p, meta)
}

fn queue_acks(words: &str, acks: &[u32]) -> (Cake, FlowPool<TestPacket>, Vec<u32>) {
    let mut pool = FlowPool::new(64);
    let mut cake = Cake::new(CakeConfig::parse(words).unwrap(), InstanceSetup::new(0, 5));
    let mut removed = Vec::new();
    for &a in acks {
        let (p, meta) = pure_ack(1, a, false, 0);
        cake.enqueue(&mut pool, p, &meta, 0, &mut |p, r| {
            assert_eq!(r, DropReason::AckFilter);
            removed.push(u32::from_be_bytes([
                p.bytes[42],
                p.bytes[43],
                p.bytes[44],
                p.bytes[45],
            ]));
        });
    }
    (cake, pool, removed)
}

#[test]
fn conservative_mode_removes_the_oldest_only_when_two_are_redundant() {
    let (_, _, removed) = queue_acks("bandwidth 1mbit ack-filter", &[1000, 2000]);
    assert!(
        removed.is_empty(),
        "one candidate is not enough in conservative mode"
    );
    let (cake, _, removed) = queue_acks("bandwidth 1mbit ack-filter", &[1000, 2000, 3000]);
    assert_eq!(removed, [1000]);
    assert_eq!(cake.stats().ack_drops, 1);
    assert_eq!(cake.stats().drops, 0, "ACK drops are not AQM drops");
    // One removal per enqueue: a long run of ACKs thins out step by step.
    let (cake, _, removed) = queue_acks("bandwidth 1mbit ack-filter", &[1, 2, 3, 4, 5, 6]);
    assert_eq!(removed, [1, 2, 3, 4]);
    assert_eq!(cake.backlog_packets(), 2);
}

#[test]
fn aggressive_mode_also_removes_a_lone_ack_just_before_the_new_one() {
    let (_, _, removed) = queue_acks("bandwidth 1mbit ack-filter-aggressive", &[1000, 2000]);
    assert_eq!(removed, [1000]);
    let (_, _, removed) = queue_acks("bandwidth 1mbit", &[1, 2, 3, 4]);
    assert!(removed.is_empty(), "the filter is off by default");
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// An ACK reaches its sender.
    AckArrives {
        flow: usize,
        ack: u32,
        ece: bool,
    },
    /// A data packet reaches the receiver.
    DataArrives {
        flow: usize,
        seq: u32,
        ce: bool,
    },
    UploadTick(usize),
}

/// What the asymmetric run measured, after warm-up.
struct Asymmetric {
    download_bps: f64,
    upload_bps: f64,
    acks_sent_upstream: u64,
    ack_drops: u64,
}

/// Downloads over a 20 Mbit/s downstream whose ACKs share a 2 Mbit/s upstream (10:1) with
/// saturating uploads.
fn asymmetric(upstream_words: &str) -> Asymmetric {
    const DOWNLOADS: usize = 2;
    const UPLOADS: usize = 20;
    const ONE_WAY: u64 = 10 * MS;
    let mut pool_down: FlowPool<TestPacket> = FlowPool::new(256);
    let mut pool_up: FlowPool<TestPacket> = FlowPool::new(256);
    let mut down = Cake::new(
        CakeConfig::parse("bandwidth 20mbit besteffort flows").unwrap(),
        InstanceSetup::new(0, 1),
    );
    let mut up = Cake::new(
        CakeConfig::parse(upstream_words).unwrap(),
        InstanceSetup::new(1, 2),
    );
    // Sender state: cwnd (packets), next sequence (packet count), highest ack.
    let mut cwnd = [2.0f64; DOWNLOADS];
    let mut next_seq = [0u32; DOWNLOADS];
    let mut acked = [0u32; DOWNLOADS];
    let mut last_cut = [0u64; DOWNLOADS];
    let mut received = [0u32; DOWNLOADS];
    let mut events: BinaryHeap<Reverse<(u64, u64, Event)>> = BinaryHeap::new();
    let mut seq_no = 0u64;
    let mut push = |events: &mut BinaryHeap<Reverse<(u64, u64, Event)>>, at: u64, e: Event| {
        seq_no += 1;
        events.push(Reverse((at, seq_no, e)));
    };
    for u in 0..UPLOADS {
        push(&mut events, u as u64 * 1000, Event::UploadTick(u));
    }
    let mut now = 0u64;
    let warmup = 5 * S;
    let end = 25 * S;
    let mut goodput_bytes = 0u64;
    let mut upload_bytes = 0u64;
    let mut acks_sent = 0u64;
    let mut pending_sends: VecDeque<usize> = (0..DOWNLOADS).collect();
    while now < end {
        // Senders fill their windows.
        while let Some(f) = pending_sends.pop_front() {
            while f64::from(next_seq[f] - acked[f]) < cwnd[f].floor() {
                let spec = FrameSpec {
                    src: [198, 18, 0, 1],
                    dst: [100, 64, 0, 1],
                    protocol: 6,
                    src_port: 443,
                    dst_port: 2000 + f as u16,
                    dscp: 0,
                    ecn: 2,
                    len: 1514,
                };
                let (mut p, meta) = ipv4_frame(&spec, f as u32, now);
                p.bytes[38..42].copy_from_slice(&next_seq[f].to_be_bytes());
                next_seq[f] += 1;
                down.enqueue(&mut pool_down, p, &meta, now, &mut |_, _| {
                    panic!("ECN flows lose nothing downstream")
                });
            }
        }
        while let Some(Reverse((at, _, _))) = events.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, _, e)) = events.pop().unwrap();
            match e {
                Event::DataArrives { flow, seq, ce } => {
                    if seq == received[flow] {
                        received[flow] += 1;
                        if now >= warmup {
                            goodput_bytes += 1514;
                        }
                    }
                    let (p, meta) = pure_ack(2000 + flow as u16, received[flow], ce, now);
                    up.enqueue(&mut pool_up, p, &meta, now, &mut |_, _| {});
                }
                Event::AckArrives { flow, ack, ece } => {
                    if ack.wrapping_sub(acked[flow]) as i32 > 0 {
                        let newly = ack - acked[flow];
                        acked[flow] = ack;
                        // Byte counting (RFC 3465): growth per packet acknowledged.
                        cwnd[flow] += f64::from(newly) / cwnd[flow];
                    }
                    if ece && now > last_cut[flow] + 2 * ONE_WAY {
                        cwnd[flow] = (cwnd[flow] / 2.0).max(2.0);
                        last_cut[flow] = now;
                    }
                    pending_sends.push_back(flow);
                }
                Event::UploadTick(u) => {
                    let spec = FrameSpec {
                        src: [100, 64, 0, 1],
                        dst: [198, 18, 1, u as u8],
                        protocol: 17,
                        src_port: 5000 + u as u16,
                        dst_port: 4500,
                        dscp: 0,
                        ecn: 0,
                        len: 1514,
                    };
                    let (p, meta) = ipv4_frame(&spec, 1000 + u as u32, now);
                    up.enqueue(&mut pool_up, p, &meta, now, &mut |_, _| {});
                    // 1 Mbit/s each: 20 of them saturate the 2 Mbit/s upstream.
                    push(&mut events, now + 1514 * 8 * 1000, Event::UploadTick(u));
                }
            }
        }
        let mut wake = u64::MAX;
        loop {
            match down.dequeue(&mut pool_down, now, &mut |_, _| {}) {
                Dequeued::Packet(p) => {
                    let flow = p.source as usize;
                    let seq =
                        u32::from_be_bytes([p.bytes[38], p.bytes[39], p.bytes[40], p.bytes[41]]);
                    let ce = p.bytes[15] & 3 == 3;
                    push(
                        &mut events,
                        now + ONE_WAY,
                        Event::DataArrives { flow, seq, ce },
                    );
                }
                Dequeued::WaitUntil(t) => {
                    wake = wake.min(t);
                    break;
                }
                Dequeued::Empty => break,
            }
        }
        loop {
            match up.dequeue(&mut pool_up, now, &mut |_, _| {}) {
                Dequeued::Packet(p) => {
                    if now >= warmup {
                        if p.bytes[23] == 6 {
                            acks_sent += 1;
                        } else {
                            upload_bytes += p.bytes.len() as u64;
                        }
                    }
                    if p.bytes[23] == 6 {
                        let flow =
                            usize::from(u16::from_be_bytes([p.bytes[34], p.bytes[35]]) - 2000);
                        let ack = u32::from_be_bytes([
                            p.bytes[42],
                            p.bytes[43],
                            p.bytes[44],
                            p.bytes[45],
                        ]);
                        let ece = p.bytes[47] & 0x40 != 0;
                        push(
                            &mut events,
                            now + ONE_WAY,
                            Event::AckArrives { flow, ack, ece },
                        );
                    }
                }
                Dequeued::WaitUntil(t) => {
                    wake = wake.min(t);
                    break;
                }
                Dequeued::Empty => break,
            }
        }
        let next_event = events.peek().map_or(u64::MAX, |Reverse((at, ..))| *at);
        if !pending_sends.is_empty() {
            continue;
        }
        now = wake.min(next_event).max(now + 1);
    }
    let seconds = (end - warmup) as f64 / 1e9;
    Asymmetric {
        download_bps: goodput_bytes as f64 * 8.0 / seconds,
        upload_bps: upload_bytes as f64 * 8.0 / seconds,
        acks_sent_upstream: acks_sent,
        ack_drops: up.stats().ack_drops,
    }
}

/// On a 10:1 link with saturating uploads, downloads whose ACK streams queue for the narrow
/// upstream are held back by them; with the filter removing the redundant ACKs, the downloads
/// go faster (spec 5.2). With one ACK stream per 10 Mbit/s download, an ACK arrives every
/// 1.2 ms, far more often than the upstream's 6 ms per upload frame: the ACK flows are bulk
/// flows there, which is where the filter has something to remove.
#[test]
fn on_a_10_to_1_link_downloads_go_faster_with_the_ack_filter() {
    let without = asymmetric("bandwidth 2mbit besteffort flows");
    let with = asymmetric("bandwidth 2mbit besteffort flows ack-filter");
    for (label, run) in [("without", &without), ("with", &with)] {
        eprintln!(
            "{label} the filter: download {:.0} bit/s, upload {:.0} bit/s, {} ACKs upstream, {} removed",
            run.download_bps, run.upload_bps, run.acks_sent_upstream, run.ack_drops
        );
    }
    assert!(
        without.download_bps < 0.9 * 20e6,
        "the downloads must be ACK-limited without the filter"
    );
    assert_eq!(without.ack_drops, 0);
    assert!(with.ack_drops > 0);
    assert!(
        with.download_bps > 1.1 * without.download_bps,
        "with {:.0} vs without {:.0}",
        with.download_bps,
        without.download_bps
    );
}
