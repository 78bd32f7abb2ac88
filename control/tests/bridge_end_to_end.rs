//! Real TCP through the bridge: two Linux network namespaces joined only through sheetcake on
//! `net_af_packet`, with iperf3 (congestion control cubic) for load and ping for latency.
//! Nothing on the traffic side is written by us.

mod common;

use common::{assert_clean_shutdown, config, scratch, serial, Appliance, Host};
use std::process::Stdio;
use std::time::Duration;

/// Parses ping's summary: (transmitted, received).
fn ping_counts(output: &str) -> (u32, u32) {
    let line = output
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in:\n{output}"));
    let mut numbers = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse::<u32>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[test]
fn tcp_transfer_completes_and_ping_works_under_load() {
    let _serial = serial();
    let dir = scratch("bridge_e2e");
    // "The internet" behind the core port, a subscriber behind the access port.
    let net = Host::new("scbn", "10.78.0.1/24");
    let sub = Host::new("scbs", "10.78.0.2/24");
    let app = Appliance::start(&dir, &config("bridge-e2e", &net.vdev(0), &sub.vdev(1), ""));

    // Idle reachability first: ARP and ICMP cross the bridge.
    let idle = sub
        .command("ping")
        .args(["-c", "5", "-i", "0.2", "-W", "2", &net.address])
        .output()
        .expect("ping");
    let idle_out = String::from_utf8_lossy(&idle.stdout);
    assert_eq!(
        ping_counts(&idle_out),
        (5, 5),
        "idle ping:\n{idle_out}\n{}",
        app.output()
    );

    let mut server = net
        .command("iperf3")
        .args(["-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(500));
    let client = sub
        .command("iperf3")
        .args([
            "-c",
            &net.address,
            "-p",
            "5201",
            "-t",
            "6",
            "-C",
            "cubic",
            "-R",
            "-J",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("iperf3 client");
    std::thread::sleep(Duration::from_secs(1));
    let loaded = sub
        .command("ping")
        .args(["-c", "20", "-i", "0.2", "-W", "2", &net.address])
        .output()
        .expect("ping under load");
    let report = client.wait_with_output().expect("iperf3 client finishes");
    let _ = server.wait();

    let json = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "iperf3 failed:\n{json}");
    let received = json_number(&json, "sum_received", "bytes");
    let rate = json_number(&json, "sum_received", "bits_per_second");
    // 6 s of TCP through two veths and a DPDK bridge: far more than 10 Mbit/s on any machine
    // this runs on; the point is that the connection was established and carried data.
    assert!(
        rate > 10e6,
        "iperf3 received {received} bytes at {rate} bit/s:\n{json}"
    );

    let loaded_out = String::from_utf8_lossy(&loaded.stdout);
    let (sent, got) = ping_counts(&loaded_out);
    assert!(
        got * 10 >= sent * 9,
        "ping under load lost more than 10 %:\n{loaded_out}"
    );

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
    eprintln!(
        "bridge end to end: iperf3 cubic {:.0} Mbit/s, ping under load {got}/{sent} replies",
        rate / 1e6
    );
}

/// Reads `"key": number` from the object named `section` of iperf3's JSON report.
fn json_number(json: &str, section: &str, key: &str) -> f64 {
    let at = json
        .find(&format!("\"{section}\""))
        .unwrap_or_else(|| panic!("no {section} in iperf3 output:\n{json}"));
    let rest = &json[at..];
    let k = rest
        .find(&format!("\"{key}\""))
        .unwrap_or_else(|| panic!("no {section}.{key} in iperf3 output"));
    rest[k + key.len() + 2..]
        .trim_start_matches([':', ' '])
        .split([',', '\n', '}'])
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{section}.{key} is not a number"))
}
