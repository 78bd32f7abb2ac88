//! What the end-to-end tests share: starting the real `sheetcake` binary on a configuration,
//! reading its output, stopping it the way an operator would, network namespaces joined by
//! veth pairs, and classic pcap files.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Tests that start a DPDK process run one at a time: the machine has two cores and each
/// worker busy-polls one.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A scratch directory under the target directory, fresh for each name.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("target dir is writable");
    dir
}

/// A configuration for a test: one worker on core 1, no hugepages, status every second, one
/// pair of `core` and `access` ports, and `extra` (more sections) after it.
pub fn config(name: &str, core: &str, access: &str, extra: &str) -> String {
    format!(
        r#"
[eal]
file_prefix = "sc-{name}"
args = ["--no-huge", "-m", "1024"]
[control]
status_interval_seconds = 1
[workers]
cores = [1]
[[pairs]]
name = "e2e"
core = "{core}"
access = "{access}"
{extra}"#
    )
}

/// A running `sheetcake` process.
pub struct Appliance {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

/// What `child` prints on stdout and stderr (both piped), line by line as it comes, read by
/// a thread per stream so the child never blocks on a full pipe.
pub fn collect_lines(child: &mut std::process::Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }
    lines
}

impl Appliance {
    /// Starts `sheetcake --config <dir>/sheetcake.toml` with `config` as the file's text.
    pub fn start(dir: &Path, config: &str) -> Appliance {
        let path = dir.join("sheetcake.toml");
        std::fs::write(&path, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sheetcake"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sheetcake");
        let lines = collect_lines(&mut child);
        let app = Appliance { child, lines };
        app.wait_for("a worker to start", Duration::from_secs(30), |l| {
            l.contains("worker 0: running")
        });
        app
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until a printed line satisfies `pred`, returning it; panics with the output after
    /// `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return line.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; output so far:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (by name, e.g. "HUP") to the process.
    pub fn signal(&self, name: &str) {
        sh("kill", &[&format!("-{name}"), &self.child.id().to_string()]);
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status and full output.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "sheetcake did not stop within 30 s of SIGTERM:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let the reader threads drain the pipes.
        std::thread::sleep(Duration::from_millis(200));
        (status, self.output())
    }

    /// The worker counters from the latest status line of worker 0: (rx, tx).
    pub fn worker_rx(&self) -> Option<u64> {
        let lines = self.lines.lock().unwrap();
        let line = lines.iter().rev().find(|l| l.contains("] worker 0 "))?;
        let mut words = line.split_whitespace();
        words.find(|w| *w == "rx")?;
        words.next()?.parse().ok()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts a clean shutdown: exit status 0, the pool whole, every frame accounted for.
pub fn assert_clean_shutdown(status: ExitStatus, output: &str) {
    assert!(
        status.success(),
        "sheetcake exited with {status}:\n{output}"
    );
    assert!(
        output.contains("mempool: 0 of"),
        "pool not whole after shutdown:\n{output}"
    );
    assert!(
        output.contains("clean shutdown: every frame received was sent or counted as dropped"),
        "{output}"
    );
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a clean-up command whose failure means there was nothing to clean.
fn quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A network namespace with one end of a veth pair inside it (`<name>0`, with `address`), the
/// other end (`<name>r`) left in the root namespace for DPDK's af_packet driver. Removed on drop.
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// The root-side interface name, for `net_af_packet`.
    pub root_if: String,
    /// The host's IPv4 address.
    pub address: String,
}

impl Host {
    /// Creates the namespace and veth pair; `address` is `a.b.c.d/len`.
    pub fn new(name: &str, address: &str) -> Host {
        let mut host = Host::without_address(name);
        sh(
            "ip",
            &["-n", &host.ns, "addr", "add", address, "dev", &host.inner()],
        );
        host.address = address.split('/').next().unwrap_or_default().to_owned();
        host
    }

    /// The namespace and veth pair with no address on the inner end (`address` is empty), for
    /// a host that gets its address from DHCP.
    pub fn without_address(name: &str) -> Host {
        let ns = name.to_owned();
        let inner = format!("{name}0");
        let root_if = format!("{name}r");
        quiet("ip", &["netns", "del", &ns]);
        quiet("ip", &["link", "del", &root_if]);
        sh("ip", &["netns", "add", &ns]);
        sh(
            "ip",
            &[
                "link", "add", &root_if, "type", "veth", "peer", "name", &inner,
            ],
        );
        sh("ip", &["link", "set", &inner, "netns", &ns]);
        sh("ip", &["link", "set", &root_if, "up"]);
        // The root end must not answer anything itself: no IPv6 autoconfiguration on it.
        let _ = Command::new("sysctl")
            .args(["-qw", &format!("net.ipv6.conf.{root_if}.disable_ipv6=1")])
            .status();
        sh("ip", &["-n", &ns, "link", "set", &inner, "up"]);
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        // The veth leaves checksums to "hardware" that does not exist past the DPDK bridge.
        sh(
            "ip",
            &["netns", "exec", &ns, "ethtool", "-K", &inner, "tx", "off"],
        );
        Host {
            ns,
            root_if,
            address: String::new(),
        }
    }

    /// The interface inside the namespace.
    pub fn inner(&self) -> String {
        format!("{}0", self.ns)
    }

    /// The af_packet vdev string for the root-side end, with rings large enough not to drop.
    pub fn vdev(&self, index: usize) -> String {
        format!(
            "net_af_packet{index},iface={},blocksz=65536,framesz=2048,framecnt=32768,qdisc_bypass=1",
            self.root_if
        )
    }

    /// Runs a command inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it; the second call is for a
        // namespace that was never fully set up.
        quiet("ip", &["netns", "del", &self.ns]);
        if !self.root_if.is_empty() {
            quiet("ip", &["link", "del", &self.root_if]);
        }
    }
}

/// Classic pcap files (the format net_pcap reads and writes), microsecond timestamps.
pub mod pcap {
    use std::path::Path;

    const MAGIC_US: u32 = 0xa1b2_c3d4;
    const MAGIC_NS: u32 = 0xa1b2_3c4d;
    const LINKTYPE_ETHERNET: u32 = 1;

    /// Writes `frames` as an Ethernet capture.
    pub fn write(path: &Path, frames: &[Vec<u8>]) {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC_US.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        for (i, frame) in frames.iter().enumerate() {
            out.extend_from_slice(&(i as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(frame);
        }
        std::fs::write(path, out).expect("write pcap");
    }

    /// Reads the frames of a classic pcap file (either byte order, µs or ns timestamps).
    pub fn read(path: &Path) -> Vec<Vec<u8>> {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(data.len() >= 24, "{} is not a pcap file", path.display());
        let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
        let big_endian = match magic {
            MAGIC_US | MAGIC_NS => false,
            m if m.swap_bytes() == MAGIC_US || m.swap_bytes() == MAGIC_NS => true,
            _ => panic!("{} is not a classic pcap file", path.display()),
        };
        let u32_at = |at: usize| {
            let b: [u8; 4] = data[at..at + 4].try_into().unwrap();
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let mut frames = Vec::new();
        let mut at = 24;
        while at + 16 <= data.len() {
            let caplen = u32_at(at + 8) as usize;
            at += 16;
            assert!(at + caplen <= data.len(), "{} is truncated", path.display());
            frames.push(data[at..at + caplen].to_vec());
            at += caplen;
        }
        frames
    }
}

/// Several hosts behind one access port: a Linux bridge in its own namespace (a stand-in for
/// the head-end), with one veth to the root namespace for DPDK and one to each host namespace.
pub struct Hub {
    /// The bridge's namespace.
    pub ns: String,
    /// The root-side interface, for `net_af_packet`.
    pub root_if: String,
    /// The hosts behind it.
    pub hosts: Vec<Host>,
}

impl Hub {
    /// Creates the hub `name` and hosts `name1`, `name2`, ... with `addresses` (`a.b.c.d/len`).
    pub fn new(name: &str, addresses: &[&str]) -> Hub {
        let ns = format!("{name}h");
        let root_if = format!("{name}r");
        quiet("ip", &["netns", "del", &ns]);
        quiet("ip", &["link", "del", &root_if]);
        sh("ip", &["netns", "add", &ns]);
        sh(
            "ip",
            &[
                "link", "add", &root_if, "type", "veth", "peer", "name", "up0", "netns", &ns,
            ],
        );
        sh("ip", &["link", "set", &root_if, "up"]);
        let _ = Command::new("sysctl")
            .args(["-qw", &format!("net.ipv6.conf.{root_if}.disable_ipv6=1")])
            .status();
        sh("ip", &["-n", &ns, "link", "add", "br0", "type", "bridge"]);
        sh(
            "ip",
            &["-n", &ns, "link", "set", "up0", "master", "br0", "up"],
        );
        let mut hosts = Vec::new();
        for (i, address) in addresses.iter().enumerate() {
            let host_ns = format!("{name}{}", i + 1);
            let port = format!("p{}", i + 1);
            let inner = format!("{host_ns}0");
            quiet("ip", &["netns", "del", &host_ns]);
            sh("ip", &["netns", "add", &host_ns]);
            sh(
                "ip",
                &[
                    "-n", &ns, "link", "add", &port, "type", "veth", "peer", "name", &inner,
                    "netns", &host_ns,
                ],
            );
            sh(
                "ip",
                &["-n", &ns, "link", "set", &port, "master", "br0", "up"],
            );
            sh(
                "ip",
                &["-n", &host_ns, "addr", "add", address, "dev", &inner],
            );
            sh("ip", &["-n", &host_ns, "link", "set", &inner, "up"]);
            sh("ip", &["-n", &host_ns, "link", "set", "lo", "up"]);
            sh(
                "ip",
                &[
                    "netns", "exec", &host_ns, "ethtool", "-K", &inner, "tx", "off",
                ],
            );
            hosts.push(Host {
                ns: host_ns,
                root_if: String::new(),
                address: address.split('/').next().unwrap_or_default().to_owned(),
            });
        }
        sh("ip", &["-n", &ns, "link", "set", "br0", "up"]);
        Hub { ns, root_if, hosts }
    }

    /// The af_packet vdev string for the hub's root-side end.
    pub fn vdev(&self, index: usize) -> String {
        format!(
            "net_af_packet{index},iface={},blocksz=65536,framesz=2048,framecnt=32768,qdisc_bypass=1",
            self.root_if
        )
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        for host in &self.hosts {
            quiet("ip", &["netns", "del", &host.ns]);
        }
        quiet("ip", &["netns", "del", &self.ns]);
        quiet("ip", &["link", "del", &self.root_if]);
    }
}
