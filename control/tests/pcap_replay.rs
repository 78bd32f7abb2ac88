//! Transparency, proven on recorded traffic: frames replayed into one port of a pair with
//! DPDK's `net_pcap` driver must leave the other port byte for byte unchanged, in order, in
//! both directions. The captures are real ones shipped by Debian packages (fetched by
//! `make test-captures`) plus generated frames for every encapsulation a head-end uses and for
//! frames that are not IP or not well formed.

mod common;

use common::{assert_clean_shutdown, pcap, scratch, serial, Appliance};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_DST);
    f.extend_from_slice(&MAC_SRC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn tagged(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_DST);
    f.extend_from_slice(&MAC_SRC);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header (checksum left zero: the bridge must not care) followed by `payload`.
fn ipv4(protocol: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    let mut p = vec![
        (0x40 | ihl) as u8,
        0xb8,
        0,
        0,
        0x12,
        0x34,
        0x40,
        0,
        64,
        protocol,
        0,
        0,
    ];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[100, 64, 0, 1, 100, 64, 0, 2]);
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(payload);
    p
}

fn udp(len: usize) -> Vec<u8> {
    let mut u = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0];
    u[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    u.extend((0..len).map(|i| i as u8));
    u
}

fn tcp_syn() -> Vec<u8> {
    vec![
        0xc3, 0x50, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]
}

fn pppoe_session(protocol: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x11, 0x00, 0x12, 0x34];
    p.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    p.extend_from_slice(&protocol.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Frames covering what a bump in the wire meets, each labelled for failure messages.
fn generated_frames() -> Vec<(&'static str, Vec<u8>)> {
    let arp = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 100, 64, 0, 1, 0, 0, 0, 0, 0, 0, 100, 64, 0, 2,
    ];
    // ICMPv6 neighbour solicitation (type 135), to the solicited-node multicast group.
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    // Hop-by-hop (8 bytes) -> routing (8 bytes, type 4 segments-left 0) -> fragment -> UDP.
    let mut ext = vec![43, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[44, 0, 4, 0, 0, 0, 0, 0]);
    ext.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 7]);
    ext.extend(udp(24));
    let lldp = [
        0x02, 0x07, 0x04, 2, 0, 0, 0, 0, 1, 0x04, 0x02, 0x07, 0x31, 0x06, 0x02, 0, 120, 0, 0,
    ];
    // 802.3 frame with an LLC header (STP BPDU): the "ethertype" field is a length.
    let mut stp = Vec::new();
    stp.extend_from_slice(&[0x01, 0x80, 0xc2, 0, 0, 0]);
    stp.extend_from_slice(&MAC_SRC);
    stp.extend_from_slice(&38u16.to_be_bytes());
    stp.extend_from_slice(&[0x42, 0x42, 0x03, 0, 0, 0, 0]);
    stp.extend_from_slice(&[0; 31]);
    let mut bad_ihl = ipv4(17, &[], &udp(8));
    bad_ihl[0] = 0x43;
    let mut long_total = ipv4(6, &[], &tcp_syn());
    long_total[2..4].copy_from_slice(&1400u16.to_be_bytes());
    let mut jumbo = ethernet(0x0800, &ipv4(17, &[], &udp(8972 - 8 - 20 + 20)));
    jumbo.truncate(14 + 8972);
    vec![
        ("arp request", ethernet(0x0806, &arp)),
        (
            "ipv6 neighbour solicitation",
            ethernet(0x86dd, &ipv6(58, &ns)),
        ),
        ("lldp", ethernet(0x88cc, &lldp)),
        ("stp bpdu (802.3 + llc)", stp),
        ("ipv4 tcp syn", ethernet(0x0800, &ipv4(6, &[], &tcp_syn()))),
        (
            "ipv4 with options",
            ethernet(0x0800, &ipv4(17, &[0x94, 0x04, 0, 0], &udp(16))),
        ),
        (
            "802.1q ipv4 udp",
            tagged(&[(0x8100, 100)], 0x0800, &ipv4(17, &[], &udp(32))),
        ),
        (
            "qinq 88a8/8100 ipv4 tcp",
            tagged(
                &[(0x88a8, 10), (0x8100, 200)],
                0x0800,
                &ipv4(6, &[], &tcp_syn()),
            ),
        ),
        (
            "pppoe session ipv4",
            ethernet(0x8864, &pppoe_session(0x0021, &ipv4(17, &[], &udp(40)))),
        ),
        (
            "pppoe session ipv6",
            ethernet(0x8864, &pppoe_session(0x0057, &ipv6(17, &udp(40)))),
        ),
        (
            "pppoe discovery padi",
            ethernet(0x8863, &[0x11, 0x09, 0, 0, 0, 4, 0x01, 0x01, 0, 0]),
        ),
        (
            "qinq pppoe ipv6",
            tagged(
                &[(0x88a8, 7), (0x8100, 8)],
                0x8864,
                &pppoe_session(0x0057, &ipv6(6, &tcp_syn())),
            ),
        ),
        (
            "ipv6 extension header chain",
            ethernet(0x86dd, &ipv6(0, &ext)),
        ),
        ("runt (20 bytes)", ethernet(0x0800, &[0x45, 0, 0, 20, 0, 0])),
        (
            "ipv4 header length 3 (malformed)",
            ethernet(0x0800, &bad_ihl),
        ),
        (
            "ipv4 total length beyond frame",
            ethernet(0x0800, &long_total),
        ),
        ("unknown ethertype", ethernet(0x1234, &[0xab; 50])),
        ("jumbo 8986-byte frame", jumbo),
    ]
}

fn captures_dir() -> PathBuf {
    std::env::var_os("SHEETCAKE_CAPTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/captures"))
}

/// The Debian-shipped captures `make test-captures` extracts. Missing captures fail the test:
/// a skipped check is a check that cannot fail.
fn debian_captures() -> Vec<(String, Vec<Vec<u8>>)> {
    let dir = captures_dir();
    let names = [
        "http.pcap",
        "nb6-http.pcap",
        "dns_icmp.pcap",
        "truncated_dns.pcap",
        "g711a.pcap",
    ];
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            assert!(
                path.exists(),
                "{} is missing: run `make test-captures` (it extracts captures from Debian's \
                 python3-dpkt and sip-tester packages)",
                path.display()
            );
            (name.to_string(), pcap::read(&path))
        })
        .collect()
}

/// Replays `into_core` into the core port and `into_access` into the access port, and returns
/// what left (access, core), after a clean shutdown.
fn replay(
    name: &str,
    mtu: u16,
    into_core: &[Vec<u8>],
    into_access: &[Vec<u8>],
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let _serial = serial();
    let dir = scratch(name);
    let in_core = dir.join("in_core.pcap");
    let in_access = dir.join("in_access.pcap");
    let out_core = dir.join("out_core.pcap");
    let out_access = dir.join("out_access.pcap");
    pcap::write(&in_core, into_core);
    pcap::write(&in_access, into_access);
    let config = format!(
        r#"
[eal]
file_prefix = "sc-{name}"
args = ["--no-huge", "-m", "256"]
[control]
status_interval_seconds = 0.2
[workers]
cores = [1]
[ports]
mtu = {mtu}
[[pairs]]
name = "replay"
core = "net_pcap0,rx_pcap={},tx_pcap={}"
access = "net_pcap1,rx_pcap={},tx_pcap={}"
"#,
        in_core.display(),
        out_core.display(),
        in_access.display(),
        out_access.display()
    );
    let app = Appliance::start(&dir, &config);
    let expected = (into_core.len() + into_access.len()) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.worker_rx() != Some(expected) {
        assert!(
            Instant::now() < deadline,
            "the worker did not receive all {expected} frames:\n{}",
            app.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
    assert!(
        output.contains(&format!(
            "workers received {expected} frames, sent {expected}, dropped 0"
        )),
        "{output}"
    );
    (pcap::read(&out_access), pcap::read(&out_core))
}

fn assert_same_frames(direction: &str, sent: &[(String, Vec<u8>)], received: &[Vec<u8>]) {
    assert_eq!(
        sent.len(),
        received.len(),
        "{direction}: {} frames in, {} out",
        sent.len(),
        received.len()
    );
    for (i, ((label, frame), got)) in sent.iter().zip(received).enumerate() {
        assert!(
            frame == got,
            "{direction}: frame {i} ({label}) changed crossing the bridge: {} bytes in, {} out",
            frame.len(),
            got.len()
        );
    }
}

#[test]
fn generated_frames_cross_unchanged_in_both_directions() {
    let frames: Vec<(String, Vec<u8>)> = generated_frames()
        .into_iter()
        .map(|(l, f)| (l.to_owned(), f))
        .collect();
    // The same frames go each way, reversed on the way back, so order is checked too.
    let back: Vec<(String, Vec<u8>)> = frames.iter().rev().cloned().collect();
    let plain = |v: &[(String, Vec<u8>)]| v.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>();
    let (at_access, at_core) = replay("generated", 9000, &plain(&frames), &plain(&back));
    assert_same_frames("core -> access", &frames, &at_access);
    assert_same_frames("access -> core", &back, &at_core);
}

#[test]
fn debian_captures_cross_unchanged() {
    let captures = debian_captures();
    let mut down = Vec::new();
    let mut up = Vec::new();
    for (i, (name, frames)) in captures.iter().enumerate() {
        let labelled = frames
            .iter()
            .enumerate()
            .map(|(n, f)| (format!("{name} #{n}"), f.clone()));
        // Alternate files between directions so both carry real traffic.
        if i % 2 == 0 {
            down.extend(labelled);
        } else {
            up.extend(labelled);
        }
    }
    assert!(down.len() > 100 && !up.is_empty(), "captures too small");
    let plain = |v: &[(String, Vec<u8>)]| v.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>();
    let (at_access, at_core) = replay("debian", 1500, &plain(&down), &plain(&up));
    assert_same_frames("core -> access", &down, &at_access);
    assert_same_frames("access -> core", &up, &at_core);
}
