//! The safe DPDK layer against a real EAL (`--no-huge --no-pci`, `net_ring` loopback ports):
//! buffers go back to their pool when their owner drops them, bursts keep what the NIC did not
//! take, and frames come back byte for byte.
//!
//! DPDK allows one EAL per process, so every test here shares it and takes the lock.

use sheetcake_dataplane::dpdk::{
    mbuf_ring, Eal, Mbuf, MbufBuffer, Mempool, MempoolConfig, Port, PortConfig,
};
use std::sync::{Mutex, MutexGuard, OnceLock};

struct Fixture {
    eal: &'static Eal,
    pool: Mempool,
}

fn fixture() -> (MutexGuard<'static, ()>, &'static Fixture) {
    static LOCK: Mutex<()> = Mutex::new(());
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let fixture = FIXTURE.get_or_init(|| {
        let args: Vec<String> = [
            "-l",
            "0",
            "--no-huge",
            "-m",
            "256",
            "--no-pci",
            "--file-prefix=sc-dataplane-test",
            // A net_ring port with one ring per queue pair: what is sent on it comes back.
            "--vdev=net_ring0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let eal = Eal::init(&args).expect("EAL starts with --no-huge");
        let pool = Mempool::new(
            eal,
            &MempoolConfig {
                name: "test_mbufs".into(),
                mbufs: 2047,
                cache: 0,
                data_room: 2176,
            },
        )
        .expect("pool");
        Fixture { eal, pool }
    });
    (guard, fixture)
}

#[test]
fn dropping_an_mbuf_returns_it_to_its_pool() {
    let (_g, f) = fixture();
    let before = f.pool.in_use();
    let frames: Vec<Mbuf> = (0..100)
        .map(|i| Mbuf::from_bytes(f.pool, &[i as u8; 60]).expect("pool has room"))
        .collect();
    assert_eq!(f.pool.in_use(), before + 100);
    assert_eq!(frames[7].data(), &[7u8; 60][..]);
    drop(frames);
    assert_eq!(f.pool.in_use(), before);
}

#[test]
fn an_exhausted_pool_says_none_instead_of_failing() {
    let (_g, f) = fixture();
    let mut held = Vec::new();
    while let Some(m) = Mbuf::alloc(f.pool) {
        held.push(m);
    }
    // No per-core cache in this pool: every buffer can be allocated.
    assert_eq!(held.len() as u32, f.pool.size());
    assert!(Mbuf::alloc(f.pool).is_none());
    drop(held);
    assert_eq!(f.pool.in_use(), 0);
}

#[test]
fn a_frame_too_large_for_one_buffer_is_refused() {
    let (_g, f) = fixture();
    // 2176-byte data room minus the 128-byte headroom leaves 2048 bytes.
    assert!(Mbuf::from_bytes(f.pool, &[0; 2048]).is_some());
    assert!(Mbuf::from_bytes(f.pool, &[0; 2049]).is_none());
    assert_eq!(f.pool.in_use(), 0);
}

#[test]
fn buffer_keeps_order_and_frees_what_it_holds() {
    let (_g, f) = fixture();
    let mut buf: MbufBuffer<4> = MbufBuffer::new();
    for i in 0..4u8 {
        buf.push(Mbuf::from_bytes(f.pool, &[i; 64]).unwrap())
            .unwrap();
    }
    let refused = buf.push(Mbuf::from_bytes(f.pool, &[9; 64]).unwrap());
    assert_eq!(refused.expect_err("full").data()[0], 9);
    assert_eq!(buf.pop().unwrap().data()[0], 0);
    buf.push(Mbuf::from_bytes(f.pool, &[4; 64]).unwrap())
        .unwrap();
    let order: Vec<u8> = std::iter::from_fn(|| buf.pop())
        .map(|m| m.data()[0])
        .collect();
    assert_eq!(order, [1, 2, 3, 4]);
    for i in 0..3u8 {
        buf.push(Mbuf::from_bytes(f.pool, &[i; 64]).unwrap())
            .unwrap();
    }
    drop(buf);
    assert_eq!(f.pool.in_use(), 0);
}

#[test]
fn frames_sent_on_a_ring_port_come_back_unchanged_and_all_buffers_return() {
    let (_g, f) = fixture();
    let config = PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_descriptors: 256,
        tx_descriptors: 256,
        mtu: 1500,
        rss_hash: 0,
    };
    let port = Port::start(f.eal, "net_ring0", &config, f.pool).expect("net_ring0 starts");
    {
        let (mut rx, mut tx) = port.take_queues().expect("first take");
        assert!(port.take_queues().is_none(), "queues are handed out once");
        let (rx, tx) = (&mut rx[0], &mut tx[0]);
        let mut out: MbufBuffer<64> = MbufBuffer::new();
        for i in 0..40u8 {
            let frame: Vec<u8> = (0..(60 + i as usize)).map(|b| b as u8 ^ i).collect();
            out.push(Mbuf::from_bytes(f.pool, &frame).unwrap()).unwrap();
        }
        let sent = tx.tx_burst(&mut out);
        assert_eq!(sent, 40);
        assert!(out.is_empty());
        let mut back: MbufBuffer<64> = MbufBuffer::new();
        let mut received = 0;
        while received < 40 {
            let n = rx.rx_burst(&mut back, 32);
            assert!(n > 0, "the ring returned only {received} of 40 frames");
            received += n;
        }
        for i in 0..40u8 {
            let m = back.pop().expect("40 frames");
            let expected: Vec<u8> = (0..(60 + i as usize)).map(|b| b as u8 ^ i).collect();
            assert_eq!(m.data(), &expected[..], "frame {i}");
        }
    }
    drop(port);
    assert_eq!(f.pool.in_use(), 0, "closing the port returns every buffer");
}

#[test]
fn a_full_handoff_ring_refuses_without_waiting_and_frees_leftovers_on_drop() {
    let (_g, f) = fixture();
    let (mut tx, mut rx) = mbuf_ring(f.eal, "test_handoff", 32).expect("ring");
    let mut out: MbufBuffer<64> = MbufBuffer::new();
    for i in 0..40u8 {
        out.push(Mbuf::from_bytes(f.pool, &[i; 64]).unwrap())
            .unwrap();
    }
    // An exact-size ring of 32 takes 32 and leaves the rest with the sender.
    assert_eq!(tx.send(&mut out), 32);
    assert_eq!(out.len(), 8);
    assert_eq!(rx.len(), 32);
    let mut got: MbufBuffer<64> = MbufBuffer::new();
    assert_eq!(rx.receive(&mut got, 10), 10);
    assert_eq!(got.pop().unwrap().data()[0], 0);
    drop(got);
    drop(out);
    assert_eq!(f.pool.in_use(), 22, "22 frames still in the ring");
    drop(tx);
    drop(rx);
    assert_eq!(
        f.pool.in_use(),
        0,
        "dropping both ends frees what the ring held"
    );
}

#[test]
fn an_intrusive_queue_keeps_order_removes_from_the_middle_and_frees_on_drop() {
    use sheetcake_dataplane::dpdk::MbufQueue;
    let (_g, f) = fixture();
    let mut q = MbufQueue::default();
    for i in 0..6u8 {
        let mut m = Mbuf::from_bytes(f.pool, &[i; 64]).unwrap();
        m.info_mut().instance = u32::from(i);
        q.push_back(m);
    }
    let order: Vec<u8> = q.iter().map(|m| m.data()[0]).collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 5]);
    assert_eq!(q.remove(2).unwrap().info().instance, 2);
    assert_eq!(q.remove(4).unwrap().data()[0], 5, "removing the tail");
    q.push_back(Mbuf::from_bytes(f.pool, &[9; 64]).unwrap());
    let order: Vec<u8> = q.iter().map(|m| m.data()[0]).collect();
    assert_eq!(order, [0, 1, 3, 4, 9]);
    assert_eq!(q.pop_front().unwrap().data()[0], 0);
    assert_eq!(f.pool.in_use(), 4);
    drop(q);
    assert_eq!(
        f.pool.in_use(),
        0,
        "dropping the queue frees every mbuf in it"
    );
}
