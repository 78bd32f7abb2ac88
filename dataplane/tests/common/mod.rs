//! What the worker tests share: frames to feed a worker with.

/// An Ethernet + IPv4 + UDP frame of `len` bytes to `dst`, with `payload` at the start of the
/// UDP payload and a valid IPv4 header checksum.
pub fn frame(dst: [u8; 4], len: usize, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
    ip[16..20].copy_from_slice(&dst);
    let sum = sheetcake_parse::checksum::checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f[42..42 + payload.len()].copy_from_slice(payload);
    f
}

use sheetcake_dataplane::classify::{AddressTable, Prefix, SubscriberSlot};
use sheetcake_dataplane::dpdk::{Eal, RingPort};
use sheetcake_dataplane::shaping::{Owner, SubscriberTables};
use sheetcake_dataplane::worker::PairQueues;
use std::net::Ipv4Addr;

/// Starts the EAL for a test binary (one per process), with `cpus` for the main thread's
/// affinity, which threads it starts inherit.
pub fn eal(file_prefix: &str, cpus: &str) -> &'static Eal {
    let args: Vec<String> = [
        format!("--lcores=0@({cpus})"),
        "--no-huge".into(),
        "-m".into(),
        "512".into(),
        "--no-pci".into(),
        format!("--file-prefix={file_prefix}"),
    ]
    .into();
    Eal::init(&args).expect("EAL starts with --no-huge")
}

/// Each worker's queues of one port pair made of ring ports: worker `w` gets queue `w` of
/// both ports.
pub fn worker_pairs<'p>(core: &'p RingPort, access: &'p RingPort) -> Vec<PairQueues<'p>> {
    PairQueues::of(core.port(), access.port()).expect("fresh ports")
}

/// Address tables where `subscribers[i]` (an IPv4 address) is slot `i`, owned as given.
pub fn tables(subscribers: &[([u8; 4], Owner)]) -> SubscriberTables {
    let mut addresses = AddressTable::new();
    for (i, (address, _)) in subscribers.iter().enumerate() {
        addresses.insert(
            Prefix::V4(Ipv4Addr::from(*address), 32),
            SubscriberSlot(i as u32),
        );
    }
    SubscriberTables {
        addresses,
        owners: subscribers.iter().map(|(_, owner)| *owner).collect(),
    }
}

/// A test's DPDK side: the EAL, a pool of `mbufs` buffers, and a pair of ring ports with
/// `queues` queue pairs each (1,024 frames per ring), with the test's ends of their rings.
pub struct Rig {
    pub eal: &'static Eal,
    pub hz: u64,
    pub pool: sheetcake_dataplane::dpdk::Mempool,
    pub core: RingPort,
    pub core_ends: sheetcake_dataplane::dpdk::RingPortEnds,
    pub access: RingPort,
    pub access_ends: sheetcake_dataplane::dpdk::RingPortEnds,
}

impl Rig {
    /// Starts everything for test `name` (which also names the EAL's files), the main
    /// thread's affinity on `cpus`.
    pub fn new(name: &str, cpus: &str, mbufs: u32, queues: u16) -> Rig {
        use sheetcake_dataplane::dpdk::{tsc_hz, Mempool, MempoolConfig, PortConfig};
        let eal = eal(&format!("sc-{name}-test"), cpus);
        let pool = Mempool::new(
            eal,
            &MempoolConfig {
                name: format!("{name}_mbufs"),
                mbufs,
                cache: 0,
                data_room: 2176,
            },
        )
        .expect("pool");
        let config = PortConfig {
            rx_queues: queues,
            tx_queues: queues,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mtu: 1500,
            rss_hash: 0,
        };
        let start = |side: &str| {
            RingPort::start(eal, &format!("{name}_{side}"), 1024, &config, pool).expect("ring port")
        };
        let (core, core_ends) = start("core");
        let (access, access_ends) = start("access");
        Rig {
            eal,
            hz: tsc_hz(eal),
            pool,
            core,
            core_ends,
            access,
            access_ends,
        }
    }
}
