//! `sheetcake-bench`: the numbers behind every performance claim of sheetcake.
//!
//! Each case runs on the same kind of virtual devices in the same run, so the figures compare
//! as ratios even on a noisy machine:
//! - `bridge`: sheetcake's worker forwarding between two `net_null` ports (shaping off): our
//!   forwarding limit;
//! - `testpmd_io`: DPDK's own `dpdk-testpmd` in io-forward mode on the same devices;
//! - `bridge_ring`, `cake_unlimited`, `shaped`: one or more workers (`--workers`, see
//!   `workers.rs`) with N subscribers times M flows, fed by the benchmark's generator through
//!   ring ports (see `shaped.rs`), and the memory an idle subscriber costs, measured from the
//!   process. The references (`bridge`, `testpmd_io`, `rte_sched`) and the control plane run
//!   one loop on one core whatever `--workers` says.
//!
//! Results are printed as tables and written to `bench/results/latest.json` (and a dated copy).
//! `BENCHMARKS.md` explains the method.

mod control;
mod generator;
mod latency;
mod machine;
mod paired;
mod rte_sched;
mod shaped;
mod workers;

use clap::Parser;
use serde::Serialize;
use sheetcake_dataplane::dpdk::{tsc_hz, Eal, Mempool, MempoolConfig, Port, PortConfig, RSS_IP};
use sheetcake_dataplane::worker::{PairQueues, PublishedCounters, Worker};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use workers::{Steering, WorkerPlan, GENERATOR_CORE};

/// Frame size `net_null` generates by default (bytes).
const NULL_FRAME_BYTES: u64 = 64;
/// Bridge target: at least this share of testpmd io-forward (issue 2).
const BRIDGE_VS_TESTPMD_TARGET: f64 = 0.90;
/// Shaped at 10,000 subscribers: at least this share of the plain bridge's Mpps (issue 4).
const SHAPED_VS_BRIDGE_TARGET: f64 = 0.25;
/// Shaped at 10,000 subscribers: at least this many times `rte_sched` with 8,192 pipes (issue 6).
const SHAPED_VS_RTE_SCHED_TARGET: f64 = 1.5;
/// Pipes of the `rte_sched` case (a power of two, as rte_sched requires).
const SCHED_PIPES: u32 = 8_192;
/// Shaped runs at 10,000 subscribers taken in turns with `rte_sched` runs for the target
/// between them (one with `--quick`).
const SCHED_PAIRS: usize = 3;
/// Shaped at 1,000,000 subscribers: at least this share of the 1,000-subscriber figure.
const SHAPED_SCALE_TARGET: f64 = 0.80;
/// An idle subscriber, both directions: at most this many bytes (issue 6).
const IDLE_SUBSCRIBER_BYTES_TARGET: f64 = 4096.0;
/// The load of the latency case, as a share of the shaped case's throughput.
const LATENCY_LOAD: f64 = 0.5;
/// The active-flow measurement: this many subscribers with this many flows each, against one
/// flow each (issue 6's 10,000 x 64).
const ACTIVE_FLOW_SUBSCRIBERS: u32 = 10_000;
const ACTIVE_FLOWS: u32 = 64;
/// A million idle subscribers: at most this many GiB (issue 4).
const MILLION_IDLE_GIB_TARGET: f64 = 4.0;
/// Buffers of the `bridge` case's pool.
const BRIDGE_MBUFS: u32 = 16_383;
/// What one buffer of 2,176 bytes of data room takes in a pool with its header and private
/// area, rounded up (2,496 bytes measured), for sizing the EAL's memory.
const MBUF_BYTES_ESTIMATE: u64 = 2_560;
/// EAL memory beyond the pools: rings, ports, `rte_sched`'s 8,192 pipes, the EAL's own.
const EAL_OVERHEAD_MIB: u64 = 256;
/// EAL memory the benchmark asks for at least (`-m`), MiB: what it has always run with.
const EAL_MIB: u64 = 1_024;
/// EAL memory of the `testpmd_io` reference's own process, MiB (a pool of 16,383 buffers).
const TESTPMD_MIB: u64 = 256;

/// testpmd-style benchmark for sheetcake.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Seconds each case forwards after warm-up.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Rounds: every case runs once per round, alternating; each reports its best round.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Short runs (2 s per case, 2 rounds), for a quick look.
    #[arg(long)]
    quick: bool,
    /// Sheetcake workers of the shaping cases (bridge_ring, cake_unlimited, shaped and the
    /// sweeps), each on its own core with the shard of the subscribers the appliance would
    /// give it. The references (bridge, testpmd_io, rte_sched) and the control plane stay on
    /// one core, the first worker's.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Cores of the workers, one per worker, comma-separated [default: 1 to N, every core
    /// after the generator's core 0]. A core named twice, or core 0, is shared: allowed as a
    /// smoke test, with a warning, and marked `shared_cores` in the results.
    #[arg(long, value_delimiter = ',', visible_alias = "worker-core")]
    worker_cores: Option<Vec<usize>>,
    /// With several workers, which worker's RX queue the generator puts a frame on: its
    /// subscriber's owner (a NIC steering by owner: nothing is handed off), or a queue from
    /// the subscriber's address alone (plain RSS: frames for another worker's subscribers go
    /// through the handoff rings).
    #[arg(long, value_enum, default_value_t = Steering::Owner)]
    steering: Steering,
    /// Runs the EAL (and testpmd) on hugepages, as production does, instead of --no-huge:
    /// the mempools and rings sit on the default hugepage size (the Rust heap, with the CAKE
    /// instances and tables, does not). Needs a mounted hugetlbfs and enough free pages; the
    /// benchmark says what to run when they are missing.
    #[arg(long)]
    hugepages: bool,
    /// Directory for results JSON.
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
    /// The dpdk-testpmd binary for the reference case.
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: String,
    /// Subscriber counts of the shaping sweep (one flow each).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,10000,100000,1000000"
    )]
    subscribers: Vec<u32>,
    /// Flows per subscriber of the flow sweep, at 10,000 subscribers (1 is part of the
    /// subscriber sweep).
    #[arg(long, value_delimiter = ',', default_value = "8,64")]
    flows: Vec<u32>,
    /// Seconds each shaping case is measured, after a second of warm-up (a shaped case warms
    /// up until its rates bind, 30 s at most).
    #[arg(long, default_value_t = 3.0)]
    shaping_seconds: f64,
    /// Subscribers whose idle memory is measured.
    #[arg(long, default_value_t = 1_000_000)]
    idle_subscribers: u32,
    /// Runs the shaping cases only (no bridge or testpmd reference, so no ratio to them):
    /// for profiling one case with `perf record -C <worker core>`.
    #[arg(long)]
    shaping_only: bool,
    /// Shaping cases of the subscriber sweep. The traffic cases and the flow sweep are
    /// shaped, or unlimited when shaped is not listed.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "unlimited,shaped"
    )]
    shaping: Vec<ShapingCase>,
    /// Frame sizes. The first is the sweeps' (subscribers, flows); each other adds a case at
    /// 10,000 subscribers.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "64,1518,imix"
    )]
    sizes: Vec<generator::Sizes>,
    /// IP versions: 4, 6. The first is the sweeps'; the other adds a case at 10,000
    /// subscribers (every subscriber has an IPv4 address and an IPv6 /64).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "4,6")]
    ip: Vec<generator::IpVersion>,
    /// What wraps the IP header. The first is the sweeps'; each other adds a case at 10,000
    /// subscribers.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bare,vlan,qinq,pppoe"
    )]
    encap: Vec<generator::Encap>,
    /// Directions. The first is the sweeps'; the other adds a case at 10,000 subscribers.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "download,upload"
    )]
    direction: Vec<generator::Direction>,
    /// Transport of every frame.
    #[arg(long, value_enum, default_value = "mix")]
    transport: generator::Transport,
    /// DSCP class of every frame: one class, or a mix.
    #[arg(long, value_enum, default_value = "mix")]
    dscp: generator::Dscp,
}

/// The shaping cases of the subscriber sweep (`--shaping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ShapingCase {
    /// cake_unlimited: every subscriber's CAKE without a rate (CPU bound)
    Unlimited,
    /// shaped: every subscriber at a rate below what arrives for it, measured once the rates
    /// bind (after a calibrating run)
    Shaped,
}

/// A frame size as results give it: bytes, or "imix".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PacketSize {
    Bytes(u64),
    Imix,
}

impl PacketSize {
    fn of(sizes: generator::Sizes) -> PacketSize {
        match sizes {
            generator::Sizes::Min => PacketSize::Bytes(generator::FRAME_BYTES as u64),
            generator::Sizes::Max => PacketSize::Bytes(1518),
            generator::Sizes::Imix => PacketSize::Imix,
        }
    }
}

impl Serialize for PacketSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PacketSize::Bytes(b) => s.serialize_u64(*b),
            PacketSize::Imix => s.serialize_str("imix"),
        }
    }
}

impl std::fmt::Display for PacketSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so table widths apply.
        match self {
            PacketSize::Bytes(b) => f.pad(&b.to_string()),
            PacketSize::Imix => f.pad("imix"),
        }
    }
}

/// One measured case, in the stable results format.
#[derive(Debug, Clone, Serialize)]
struct CaseResult {
    case: &'static str,
    subscribers: u64,
    flows_per_subscriber: u64,
    packet_size: PacketSize,
    /// What the frames were: "ipv4", "ipv6 qinq", ...; "net_null" for that driver's frames.
    traffic: String,
    /// The generated frames knob by knob (cases on ring ports): `ip`, `encap`, `direction`,
    /// `transport`, `dscp`, as the command line spells them.
    #[serde(flatten)]
    frames: Option<generator::Traffic>,
    /// Workers (or single loops) that ran the case, and their cores.
    workers: u64,
    worker_cores: Vec<usize>,
    /// A core ran more than one of them, or the generator too: the figures mean little.
    shared_cores: bool,
    /// Which worker's queue the generator put each frame on (cases with several workers).
    #[serde(skip_serializing_if = "Option::is_none")]
    steering: Option<Steering>,
    /// Frames received per second, millions: all workers together.
    mpps: f64,
    gbps: f64,
    cycles_per_packet: Option<f64>,
    seconds: f64,
    /// Frames sent per second, millions (cases that shape, where it differs from `mpps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_mpps: Option<f64>,
    /// Frames dropped per second by reason, millions (reasons that happened).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    drops_mpps: std::collections::BTreeMap<&'static str, f64>,
    /// One-way delay of a sparse probe flow through the loaded worker (cases with a probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    probe_latency_us: Option<shaped::Percentiles>,
    /// Each worker's own figures (cases with several workers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    per_worker: Vec<WorkerRow>,
    /// Mpps over the `bridge` case's in the same run (none without it: --shaping-only).
    ratio_to_bridge: Option<f64>,
    /// Shaping cases: Mpps over the `rte_sched` case's in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_rte_sched: Option<f64>,
    /// Shaped cases: every subscriber's rate, bytes per second as CAKE counts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_bytes_per_second: Option<u64>,
    /// Shaped cases: whether the rates bound through the window (`binding` says how).
    #[serde(skip_serializing_if = "Option::is_none")]
    bound: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binding: Option<shaped::Binding>,
    /// Cases on ring ports: the buffers of their mempool in use during the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    mempool: Option<shaped::MempoolUse>,
}

impl CaseResult {
    /// "1.23" or "-".
    fn ratio(r: Option<f64>) -> String {
        r.map_or("-".to_owned(), |r| format!("{r:.3}"))
    }
}

/// Why a shaped case whose rates are at CAKE's floor or below could not bind: CAKE shapes nothing
/// slower than 64 bytes a second (spec 2), so where less than that arrives for each
/// subscriber (a million subscribers on a worker taking in about a million frames a second),
/// every frame leaves as it comes and no queue grows, however low the rate asked.
fn below_cake_floor(c: &CaseResult) -> Option<String> {
    let rate = c.rate_bytes_per_second?;
    let frames = c.frames?;
    (rate <= sheetcake_cake::tins::MIN_RATE).then(|| {
        let floor = sheetcake_cake::tins::MIN_RATE as f64;
        let arriving = c.mpps * 1e6 / c.subscribers.max(1) as f64 * frames.mean_shaped_len();
        let needed =
            floor / shaped::SHAPED_SHARE / frames.mean_shaped_len() * c.subscribers as f64 / 1e6;
        format!(
            ": its rate of {rate} B/s a subscriber is at or below CAKE's floor of {floor:.0} B/s \
             (spec 2), and {arriving:.0} B/s arrived for each, so no queue could grow; this \
             many subscribers bind only on a worker taking in about {needed:.1} Mpps or more"
        )
    })
}

/// One worker's part of a case, as testpmd reports each forwarding core.
#[derive(Debug, Clone, Serialize)]
struct WorkerRow {
    worker: usize,
    core: usize,
    /// Frames the worker received from its queues, and sent, per second, millions.
    rx_mpps: f64,
    tx_mpps: f64,
    /// Busy cycles over the frames it received (it also spends cycles on frames taken over).
    cycles_per_packet: f64,
    /// Frames it handed to other workers, and took over from them, per second, millions.
    handed_off_mpps: f64,
    taken_over_mpps: f64,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    drops_mpps: std::collections::BTreeMap<&'static str, f64>,
}

#[derive(Debug, Serialize)]
struct Results {
    machine: machine::Machine,
    command: String,
    cases: Vec<CaseResult>,
    /// The shaped case at 10,000 subscribers and `rte_sched` in turns: the target's figure.
    rte_sched_pairs: Option<SchedPairs>,
    memory: Option<Memory>,
    control: Option<ControlResults>,
    targets: Vec<Target>,
    /// Targets left out: a shaped figure is compared only where its rates bound.
    targets_not_compared: Vec<NotCompared>,
}

/// The shaped case at 10,000 subscribers run in turns with `rte_sched`, which runs first and
/// last: rte_sched, shaped, rte_sched, ... (see `paired.rs`).
#[derive(Debug, Serialize)]
struct SchedPairs {
    /// The shaped runs (Mpps per worker; none for a run whose rates did not bind), and the
    /// `rte_sched` runs around them, one more.
    shaped_mpps: Vec<Option<f64>>,
    rte_sched_mpps: Vec<f64>,
    /// Each shaped run over the mean of the `rte_sched` runs beside it; none when no shaped
    /// run bound.
    ratio: Option<paired::Paired>,
}

/// The control plane (see `control.rs`).
#[derive(Debug, Serialize)]
struct ControlResults {
    /// Seconds for a running worker to take in N subscribers, by N.
    load_seconds: std::collections::BTreeMap<u32, f64>,
    /// From a single rate change being pushed to the owner having applied it, microseconds.
    apply_p50_us: f64,
    apply_p99_us: f64,
    apply_max_us: f64,
    apply_samples: usize,
    /// Rate changes applied per second, pushed as fast as the ring takes them.
    changes_per_second: f64,
    /// The worker's receive rate meanwhile, and without changes (Mpps).
    forwarding_mpps_during: f64,
    forwarding_mpps_before: f64,
    /// The worker's receive rate at [`METRICS_SUBSCRIBERS`] subscribers while the control
    /// side does the metrics refresh's work once a second (as the appliance does), against
    /// the rate without; the same at ten times a second.
    metrics_refresh: control::RefreshCost,
    metrics_refresh_10x: control::RefreshCost,
    /// The ten-a-second median scaled to once a second: the target's figure.
    metrics_refresh_once_a_second_from_10x: f64,
}

/// Subscribers of the box whose metrics refresh is measured (issue 5: "a scrape of a box with
/// 100,000 subscribers costs the workers nothing measurable").
const METRICS_SUBSCRIBERS: u32 = 100_000;

/// Memory measured from the process's resident set.
#[derive(Debug, Serialize)]
struct Memory {
    /// Subscribers built for the measurement (two idle CAKE instances each, their table
    /// entries, gauges and timer slots).
    idle_subscribers: u64,
    idle_bytes_per_subscriber: f64,
    /// Resident growth with every flow of many per subscriber active, over the growth with
    /// one each, per flow entry more in use; none when that could not be measured.
    bytes_per_active_flow: Option<f64>,
    /// The cases it came from and what they grew, or why it was not measured.
    bytes_per_active_flow_from: String,
    /// The ring cases' mempool: buffers, the bytes each occupies, and the most in use at
    /// once in any case's window (each case has its own in `mempool`).
    mempool_mbufs: u32,
    mempool_bytes_per_mbuf: u32,
    mempool_in_use_peak: Option<u32>,
}

/// A target whose figure could not be compared, and why.
#[derive(Debug, Serialize)]
struct NotCompared {
    name: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Target {
    name: String,
    /// "at least" or "at most".
    bound: &'static str,
    required: f64,
    measured: f64,
    pass: bool,
}

impl Target {
    fn at_least(name: impl Into<String>, required: f64, measured: f64) -> Target {
        Target {
            name: name.into(),
            bound: "at least",
            required,
            measured,
            pass: measured >= required,
        }
    }

    fn at_most(name: impl Into<String>, required: f64, measured: f64) -> Target {
        Target {
            name: name.into(),
            bound: "at most",
            required,
            measured,
            pass: measured <= required,
        }
    }
}

/// Buffers of the ring cases' pool for `workers` workers: what every worker may queue and its
/// rings hold, what the handoff rings hold, and room for the generator's bursts.
fn ring_pool_mbufs(workers: usize) -> u32 {
    let workers = workers as u64;
    let frames = workers * (shaped::QUEUED_BUDGET + 4 * u64::from(shaped::RING_FRAMES))
        + workers * workers.saturating_sub(1) * u64::from(shaped::HANDOFF_RING_FRAMES)
        + 8192;
    // A power of two less one: the size DPDK's rings hold best.
    let mbufs = frames.next_power_of_two() - 1;
    u32::try_from(mbufs).unwrap_or(u32::MAX)
}

/// EAL memory the benchmark's pools and rings need with `workers` workers, MiB.
fn eal_memory_needed_mib(workers: usize) -> u64 {
    let mbufs = u64::from(ring_pool_mbufs(workers)) + u64::from(BRIDGE_MBUFS);
    let flow_mbufs = u64::from(shaped::active_flows_mbufs(
        ACTIVE_FLOW_SUBSCRIBERS,
        ACTIVE_FLOWS,
    ));
    (mbufs * MBUF_BYTES_ESTIMATE + flow_mbufs * shaped::ACTIVE_FLOWS_MBUF_BYTES).div_ceil(1 << 20)
        + EAL_OVERHEAD_MIB
}

/// The EAL's memory options: `mib` MiB on 4 KiB pages (`--no-huge`), or on hugepages, whose
/// files are unlinked once mapped so the pages go back to the kernel when the process ends.
fn eal_memory_args(hugepages: bool, mib: u64) -> Vec<String> {
    let mut args = vec!["-m".to_owned(), mib.to_string()];
    args.push(
        if hugepages {
            "--huge-unlink"
        } else {
            "--no-huge"
        }
        .to_owned(),
    );
    args
}

/// Reports a setting this machine cannot run, and exits with the status of a usage error.
fn refuse(e: &dyn std::error::Error) -> ! {
    eprintln!("sheetcake-bench: {e}");
    std::process::exit(2)
}

fn main() {
    let args = Args::parse();
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .map(|c| c.id)
        .collect();
    let plan = WorkerPlan::new(
        args.workers,
        args.worker_cores.as_deref(),
        args.steering,
        &available,
    )
    .unwrap_or_else(|e| refuse(&e));
    // The bench's EAL takes what its pools need (at least what it has always had); testpmd,
    // a process of its own, needs its own pages beside it.
    let needed_mib = eal_memory_needed_mib(plan.workers());
    let testpmd_mib = if args.shaping_only { 0 } else { TESTPMD_MIB };
    let eal_mib = if args.hugepages {
        let pages =
            machine::check_hugepages(needed_mib + testpmd_mib).unwrap_or_else(|e| refuse(&e));
        EAL_MIB.max(needed_mib).min(pages.free_mib() - testpmd_mib)
    } else {
        EAL_MIB.max(needed_mib)
    };
    let seconds = if args.quick { 2.0 } else { args.seconds };
    let machine = machine::Machine::detect(
        args.hugepages,
        plan.cores.first().copied().unwrap_or(GENERATOR_CORE),
        args.quick,
    );
    println!("sheetcake-bench");
    println!("  cpu      {}", machine.cpu_model);
    println!("  tsc      {:.3} GHz", machine.tsc_hz as f64 / 1e9);
    println!("  dpdk     {}", machine.dpdk_version);
    println!("  revision {}", machine.git_revision);
    println!(
        "  loads    {} (one dependent load, by working set)",
        latency::summary(&machine.load_latency)
    );
    println!(
        "  memory   {eal_mib} MiB for the EAL, {}",
        if args.hugepages {
            "on hugepages"
        } else {
            "on 4 KiB pages (--no-huge)"
        }
    );
    println!(
        "  workers  {} on core(s) {}{}",
        plan.workers(),
        cores_list(&plan.cores),
        if plan.workers() > 1 {
            format!(", steering by {:?}", plan.steering).to_lowercase()
        } else {
            String::new()
        }
    );
    if plan.shared_cores {
        println!(
            "  warning: workers share a core (cores {}, the generator on core {GENERATOR_CORE}): \
             the kernel time-slices them, so the figures are not meaningful (a smoke test); \
             every case is marked shared_cores in the results",
            cores_list(&plan.cores)
        );
    }
    println!();

    // Cases alternate, round after round, and each reports its best round: the machine's
    // noise (other tenants, frequency changes) then hits both alike.
    let rounds = if args.quick { 2 } else { args.rounds };
    let bridge_setup = Bridge::start(&eal_memory_args(args.hugepages, eal_mib));
    let mut testpmd: Option<CaseResult> = None;
    let rounds = if args.shaping_only { 0 } else { rounds };
    let single_core = plan.single_core();
    let testpmd_memory = eal_memory_args(args.hugepages, TESTPMD_MIB);
    let bridge = bridge_setup.measure(single_core, seconds, rounds, || {
        if let Some(t) = run_testpmd(&args.testpmd, &testpmd_memory, single_core, seconds) {
            println!(
                "           testpmd_io {:.2} Mpps, {} cycles/packet",
                t.mpps,
                t.cycles_per_packet
                    .map_or("-".to_owned(), |c| format!("{c:.1}"))
            );
            if testpmd.as_ref().is_none_or(|b| t.mpps > b.mpps) {
                testpmd = Some(t);
            }
        }
    });

    let mut cases: Vec<CaseResult> = bridge.iter().chain(testpmd.iter()).cloned().collect();
    if !cases.is_empty() {
        print_table(&cases);
    }

    let mut targets = Vec::new();
    if let (Some(b), Some(t)) = (&bridge, &testpmd) {
        targets.push(Target::at_least(
            "bridge Mpps / testpmd_io Mpps (1 worker, net_null, 64 B)",
            BRIDGE_VS_TESTPMD_TARGET,
            b.mpps / t.mpps,
        ));
    }

    let shaping = shaping_suite(&args, &plan, &bridge_setup, bridge.as_ref());
    cases.extend(shaping.cases.iter().cloned());
    targets.extend(shaping.targets);
    set_ratios(&mut cases);
    println!();
    println!("all cases (Mpps per worker against the references, which run on one core):");
    print_table(&cases);
    let control = control_suite(
        &args,
        single_core,
        &bridge_setup,
        shaping.pool,
        &mut targets,
    );

    println!();
    for t in &targets {
        println!(
            "target {:<72} {:>8} {:>9.2}  measured {:>9.2}  {}",
            t.name,
            t.bound,
            t.required,
            t.measured,
            if t.pass { "PASS" } else { "FAIL" }
        );
    }
    for t in &shaping.not_compared {
        println!("target {:<72} not compared: {}", t.name, t.reason);
    }

    let results = Results {
        machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cases,
        rte_sched_pairs: shaping.sched_pairs,
        memory: shaping.memory,
        control: Some(control),
        targets,
        targets_not_compared: shaping.not_compared,
    };
    match write_results(&args.results, &results) {
        Ok(path) => println!("\nresults written to {}", path.display()),
        Err(e) => eprintln!("\ncannot write results to {}: {e}", args.results.display()),
    }
}

/// What the shaping cases measured.
struct ShapingSuite {
    cases: Vec<CaseResult>,
    sched_pairs: Option<SchedPairs>,
    memory: Option<Memory>,
    targets: Vec<Target>,
    not_compared: Vec<NotCompared>,
    /// The ring cases' mempool, for the control cases.
    pool: Mempool,
}

/// Load times and change latency (see `control.rs`).
fn control_suite(
    args: &Args,
    worker_core: usize,
    bridge_setup: &Bridge,
    pool: Mempool,
    targets: &mut Vec<Target>,
) -> ControlResults {
    let (eal, hz) = (bridge_setup.eal, bridge_setup.hz);
    let sizes: Vec<u32> = if args.quick {
        vec![10_000]
    } else {
        vec![10_000, 1_000_000]
    };
    let seconds = if args.quick {
        1.0
    } else {
        args.shaping_seconds
    };
    println!();
    println!("control plane: a running worker on core {worker_core} (one worker)");
    let mut load_seconds = std::collections::BTreeMap::new();
    for &n in &sizes {
        let s = control::load_seconds(eal, hz, pool, worker_core, n);
        println!(
            "  load {n:>8} subscribers: {s:.3} s ({:.0} per second)",
            f64::from(n) / s
        );
        load_seconds.insert(n, s);
    }
    let c = control::changes(eal, hz, pool, worker_core, 10_000, seconds);
    println!(
        "  single rate change applied (10000 subscribers, forwarding): p50 {:.1} us, p99 {:.1} us, max {:.1} us over {} changes",
        c.apply_p50_us, c.apply_p99_us, c.apply_max_us, c.samples
    );
    println!(
        "  sustained: {:.0} changes per second; forwarding {:.2} Mpps meanwhile, {:.2} Mpps without",
        c.changes_per_second, c.mpps_during, c.mpps_before
    );
    // At the appliance's rate (once a second), and ten times as often, where the cost (the
    // worker's gauge lines pulled away by the reads) is large enough to see on this machine.
    // One-second windows with the refresh alternate with windows alone, twice as many pairs
    // as the seconds a shaping case is measured.
    let pairs = (2.0 * seconds).round().max(2.0) as usize;
    let refresh: Vec<(u64, control::RefreshCost)> = [1, 10]
        .into_iter()
        .map(|per_second| {
            let r = control::refresh_cost(
                eal,
                hz,
                pool,
                worker_core,
                METRICS_SUBSCRIBERS,
                per_second,
                pairs,
            );
            println!(
                "  metrics refresh {per_second:>2} a second ({METRICS_SUBSCRIBERS} subscribers; each \
                 reads every gauge and asks for the 100 busiest subscribers' statistics; {} \
                 refreshes, {} reports): forwarding {:.2} Mpps meanwhile, {:.2} Mpps without; \
                 each second with it over its neighbours without {:.3} (median of {}, {:.3} to \
                 {:.3})",
                r.refreshes,
                r.reports,
                r.mpps_with_refresh,
                r.mpps_alone,
                r.ratio.median,
                r.ratio.pairs,
                r.ratio.min,
                r.ratio.max
            );
            (per_second, r)
        })
        .collect();
    let r = refresh[0].1;
    // Measured once a second, the loss is a fraction of a percent under a window-to-window
    // noise of several here; ten a second shows ten times the loss, and the target takes a
    // tenth of it (each refresh costs the same, see `scaled_to_once_a_second`).
    let scaled = refresh[1].1.scaled_to_once_a_second();
    println!(
        "  metrics refresh once a second, from ten a second: {scaled:.4} of forwarding without \
         (measured once a second: {:.3})",
        r.ratio.median
    );
    targets.push(Target::at_least(
        "forwarding with the metrics refresh (once a second, from 10/s) / without",
        0.97,
        scaled,
    ));
    if let Some(&s) = load_seconds.get(&1_000_000) {
        targets.push(Target::at_most(
            "1,000,000 subscribers loaded into a running worker (s)",
            5.0,
            s,
        ));
    }
    targets.push(Target::at_most(
        "single change applied, p99 (us)",
        1_000.0,
        c.apply_p99_us,
    ));
    ControlResults {
        load_seconds,
        apply_p50_us: c.apply_p50_us,
        apply_p99_us: c.apply_p99_us,
        apply_max_us: c.apply_max_us,
        apply_samples: c.samples,
        changes_per_second: c.changes_per_second,
        forwarding_mpps_during: c.mpps_during,
        forwarding_mpps_before: c.mpps_before,
        metrics_refresh: r,
        metrics_refresh_10x: refresh[1].1,
        metrics_refresh_once_a_second_from_10x: scaled,
    }
}

/// The cases on ring ports: the generator feeds the worker; see `shaped.rs`.
fn shaping_suite(
    args: &Args,
    plan: &WorkerPlan,
    bridge_setup: &Bridge,
    bridge: Option<&CaseResult>,
) -> ShapingSuite {
    let (eal, hz) = (bridge_setup.eal, bridge_setup.hz);
    let seconds = if args.quick {
        1.0
    } else {
        args.shaping_seconds
    };
    let pool = Mempool::new(
        eal,
        &MempoolConfig {
            name: "bench_ring_mbufs".into(),
            mbufs: ring_pool_mbufs(plan.workers()),
            cache: 256,
            data_room: 2176,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (sweep, flow_sweep, idle_subscribers): (Vec<u32>, Vec<u32>, u32) = if args.quick {
        (vec![1_000, 10_000], vec![8], 100_000)
    } else {
        (
            args.subscribers.clone(),
            args.flows.clone(),
            args.idle_subscribers,
        )
    };
    let base = sweep_traffic(args);
    let traffic_cases = traffic_cases(args, base);
    let unlimited_listed = args.shaping.contains(&ShapingCase::Unlimited);
    let shaped_listed = args.shaping.contains(&ShapingCase::Shaped);
    println!();
    println!(
        "shaping cases: frames from the generator (core {GENERATOR_CORE}) through ring ports, {} worker(s) on core(s) {}, {seconds} s each after {} s of warm-up (shaped: until the rates bind, at most {} s)",
        plan.workers(),
        cores_list(&plan.cores),
        shaped::WARM_UP_SECONDS,
        shaped::BIND_WARM_UP_MAX_SECONDS,
    );
    println!(
        "  sweeps of {} B {} {} frames; traffic cases at 10,000 subscribers: {}",
        PacketSize::of(base.sizes),
        base.name(),
        base.classes(),
        if traffic_cases.is_empty() {
            "none".to_owned()
        } else {
            traffic_cases
                .iter()
                .map(|t| format!("{} B {}", PacketSize::of(t.sizes), t.name()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    // First, before any case frees memory the allocator could hand back unseen: the active
    // flows, and the idle subscribers while the active flows' workers still hold theirs.
    println!(
        "  measuring the memory of {ACTIVE_FLOW_SUBSCRIBERS} subscribers' active flows and of {idle_subscribers} idle subscribers..."
    );
    let (active_flows, idle) = shaped::active_flow_memory(
        eal,
        hz,
        plan.single_core(),
        ACTIVE_FLOW_SUBSCRIBERS,
        ACTIVE_FLOWS,
        || shaped::idle_memory(eal, hz, pool, idle_subscribers),
    );
    let per_subscriber = idle as f64 / f64::from(idle_subscribers);
    let mut count = 0;
    let mut run = |case: shaped::Case, label: Option<&str>| {
        count += 1;
        let mut m = shaped::run(eal, hz, pool, &format!("b{count}"), case, plan, seconds);
        // This machine's speed drifts between runs: a shaped case whose worker took in less
        // than its rates (from the runs before) allow did not bind, and runs once more at
        // half the rates (unless they are at CAKE's floor already: see `below_cake_floor`).
        let retry = match (label, m.result.bound, case.shaping, case.offered) {
            (None, Some(false), shaped::Shaping::Rate(rate), None) => {
                Some(rate).filter(|&r| r > sheetcake_cake::tins::MIN_RATE)
            }
            _ => None,
        };
        if let Some(rate) = retry {
            println!(
                "  {:<15} {} subscribers x {} flows did not bind ({:.2} Mpps in, {:.0} % dropped): again at half the rates",
                "",
                case.subscribers,
                case.flows,
                m.result.mpps,
                100.0 * m.result.binding.map_or(0.0, |b| b.dropped_share),
            );
            count += 1;
            let again = shaped::Case {
                shaping: shaped::Shaping::Rate((rate / 2).max(1)),
                ..case
            };
            m = shaped::run(eal, hz, pool, &format!("b{count}"), again, plan, seconds);
        }
        let drops: Vec<String> = m
            .result
            .drops_mpps
            .iter()
            .map(|(r, d)| format!("{r} {d:.2}"))
            .collect();
        println!(
            "  {:<15} {:>8} subscribers x {:<3} flows {:>5} B {:<10} {:<8} rx {:>6.2} Mpps {:>6.2} Gbit/s  tx {:>6.2} Mpps  {:>6.1} cycles/packet  drops/s (M) [{}]  setup {:.1} s, {:.0} MB",
            label.unwrap_or(m.result.case),
            m.result.subscribers,
            m.result.flows_per_subscriber,
            m.result.packet_size,
            m.result.traffic,
            case.traffic.classes(),
            m.result.mpps,
            m.result.gbps,
            m.result.tx_mpps.unwrap_or(0.0),
            m.result.cycles_per_packet.unwrap_or(0.0),
            drops.join(", "),
            m.setup_seconds,
            m.memory_bytes as f64 / 1e6,
        );
        if let (Some(b), Some(bound)) = (&m.result.binding, m.result.bound) {
            println!(
                "  {:<15} {}: {:.0} % of the subscribers backlogged, {:.0} % of the frames dropped, budget full in {:.0} % of the window's ms, {:.0} frames queued on average, after {:.1} s of warm-up; pool {:.0} (peak {}) of {} buffers in use",
                "",
                if bound { "bound" } else { "NOT bound" },
                100.0 * b.backlogged_share,
                100.0 * b.dropped_share,
                100.0 * b.budget_full_share,
                b.queued_mean,
                b.warm_up_seconds,
                m.result.mempool.map_or(0.0, |p| p.in_use_mean),
                m.result.mempool.map_or(0, |p| p.in_use_peak),
                pool.size(),
            );
        }
        for w in &m.result.per_worker {
            println!(
                "  {:<15} worker {} (core {}): rx {:>6.2} Mpps  tx {:>6.2} Mpps  {:>6.1} cycles/packet  handed off {:.2} Mpps, taken over {:.2} Mpps  drops/s (M) [{}]",
                "",
                w.worker,
                w.core,
                w.rx_mpps,
                w.tx_mpps,
                w.cycles_per_packet,
                w.handed_off_mpps,
                w.taken_over_mpps,
                w.drops_mpps
                    .iter()
                    .map(|(r, d)| format!("{r} {d:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        if let Some(p) = &m.result.probe_latency_us {
            println!(
                "  {:<15} sparse probe through the loaded worker: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us ({} probes)",
                "", p.p50, p.p99, p.p999, p.max, p.samples
            );
        }
        m
    };
    let cases = std::cell::RefCell::new(Vec::new());
    let record = |m: &shaped::Measured| cases.borrow_mut().push(m.result.clone());
    let record_result = |c: CaseResult| cases.borrow_mut().push(c);
    let case = |subscribers, flows, shaping, traffic| shaped::Case {
        subscribers,
        flows,
        shaping,
        probe: false,
        offered: None,
        traffic,
    };
    let ring_bridge = run(
        // One address per worker: the generator spreads addresses over the queues.
        case(plan.workers() as u32, 1, shaped::Shaping::Off, base),
        None,
    );
    record(&ring_bridge);
    // The shaped case by subscribers, for the targets.
    let mut shaped_cases = std::collections::BTreeMap::new();
    // Rates below what arrives for every subscriber: SHAPED_SHARE of its part of the least the
    // worker took in, unlimited or in a calibrating run of the same frames (whose rates are a
    // quarter of the unlimited share). Dropping is cheaper than sending at some scales and
    // dearer at others, so either figure alone can be above what the shaped case takes in;
    // rates above its arrivals would never bind. In bytes per second as CAKE counts them (the
    // IP packet), for frames of `traffic`'s mean length.
    let rate_for = |mpps: f64, n: u32, share: f64, traffic: generator::Traffic| {
        ((share * mpps * 1e6 / f64::from(n) * traffic.mean_shaped_len()) as u64).max(1)
    };
    let mut unlimited_mpps = std::collections::BTreeMap::new();
    let mut calibrated = std::collections::BTreeMap::new();
    for &n in &sweep {
        let unlimited = run(
            case(n, 1, shaped::Shaping::Unlimited, base),
            (!unlimited_listed).then_some("(calibrating)"),
        );
        if unlimited_listed {
            record(&unlimited);
        }
        unlimited_mpps.insert(n, unlimited.result.mpps);
        if !shaped_listed {
            continue;
        }
        let calibration = run(
            case(
                n,
                1,
                shaped::Shaping::Rate(rate_for(unlimited.result.mpps, n, 0.25, base)),
                base,
            ),
            Some("(calibrating)"),
        );
        let least = calibration.result.mpps.min(unlimited.result.mpps);
        calibrated.insert(n, least);
        let shaped = run(
            case(
                n,
                1,
                shaped::Shaping::Rate(rate_for(least, n, shaped::SHAPED_SHARE, base)),
                base,
            ),
            None,
        );
        record(&shaped);
        shaped_cases.insert(n, shaped.result.clone());
    }
    // Other traffic at 10,000 subscribers. Each calibrates its own rates: frames of another
    // size or shape need not arrive as fast as the sweeps' (the generator writes 1518-byte
    // frames slower), and a rate above what arrives never binds.
    match unlimited_mpps.get(&10_000) {
        None if !traffic_cases.is_empty() => {
            println!("  (the traffic cases need 10000 in --subscribers: skipped)")
        }
        None => {}
        Some(&unlimited) => {
            for &traffic in &traffic_cases {
                let n = 10_000;
                if !shaped_listed {
                    let m = run(case(n, 1, shaped::Shaping::Unlimited, traffic), None);
                    record(&m);
                    continue;
                }
                let calibration = run(
                    case(
                        n,
                        1,
                        shaped::Shaping::Rate(rate_for(unlimited, n, 0.25, traffic)),
                        traffic,
                    ),
                    Some("(calibrating)"),
                );
                let least = calibration.result.mpps.min(unlimited);
                let rate = rate_for(least, n, shaped::SHAPED_SHARE, traffic);
                let m = run(case(n, 1, shaped::Shaping::Rate(rate), traffic), None);
                record(&m);
            }
        }
    }
    // DPDK's own scheduler on the same frames and rates, one pipe per subscriber.
    let mut sched_mpps = None;
    // Each run names its own ports and rings: DPDK keeps a name until the process exits.
    let sched_runs = std::cell::Cell::new(0);
    let run_sched = |base_mpps| {
        sched_runs.set(sched_runs.get() + 1);
        rte_sched::run(
            eal,
            hz,
            pool,
            plan.single_core(),
            &format!("sched{}", sched_runs.get()),
            rte_sched::Pipes {
                pipes: SCHED_PIPES,
                rate: rate_for(base_mpps, 10_000, shaped::SHAPED_SHARE, base),
                traffic: base,
            },
            seconds,
        )
    };
    if let Some(&base_mpps) = calibrated.get(&10_000) {
        let c = run_sched(base_mpps);
        println!(
            "  {:<15} {:>8} pipes       x 1   flows {:>5} B {:<10} {:<8} rx {:>6.2} Mpps  tx {:>6.2} Mpps  {:>6.1} cycles/packet  drops/s (M) [{}]",
            c.case,
            c.subscribers,
            c.packet_size,
            c.traffic,
            base.classes(),
            c.mpps,
            c.tx_mpps.unwrap_or(0.0),
            c.cycles_per_packet.unwrap_or(0.0),
            c.drops_mpps
                .iter()
                .map(|(r, d)| format!("{r} {d:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        sched_mpps = Some(c.mpps);
        record_result(c);
    }
    // Latency through a loaded worker: the shaped case's rates, offered at half of what the
    // worker took in there (an overloaded worker's latency is its RX ring's, not its own).
    if let (Some(&n), Some(&base_mpps)) = (
        sweep.iter().find(|&&n| n == 10_000).or(sweep.first()),
        calibrated.get(&10_000).or(calibrated.values().next()),
    ) {
        let offered = LATENCY_LOAD
            * shaped_cases
                .get(&n)
                .map_or(base_mpps, |c: &CaseResult| c.mpps)
            * 1e6;
        let m = run(
            shaped::Case {
                probe: true,
                offered: Some(offered),
                ..case(
                    n,
                    1,
                    shaped::Shaping::Rate(rate_for(base_mpps, n, shaped::SHAPED_SHARE, base)),
                    base,
                )
            },
            None,
        );
        record(&m);
    }
    for &flows in &flow_sweep {
        let n = 10_000;
        let shaping = match calibrated.get(&n) {
            Some(&c) => shaped::Shaping::Rate(rate_for(c, n, shaped::SHAPED_SHARE, base)),
            None if !shaped_listed => shaped::Shaping::Unlimited,
            None => {
                println!("  (the flow sweep needs 10000 in --subscribers: skipped)");
                break;
            }
        };
        let m = run(case(n, flows, shaping, base), None);
        record(&m);
    }

    // The references run on one core: against them, the shaped figure is per worker.
    let workers = plan.workers() as f64;
    // The shaped case at 10,000 subscribers and `rte_sched` in turns, for the target between
    // them: the sweep's shaped case ran minutes before `rte_sched`, and this machine's speed
    // drifts by more than the target's margin over minutes (see `paired.rs`).
    let mut sched_pairs = None;
    if let (Some(first), Some(&base_mpps)) = (sched_mpps, calibrated.get(&10_000)) {
        let rate = rate_for(base_mpps, 10_000, shaped::SHAPED_SHARE, base);
        let mut sched_runs = vec![first];
        let mut shaped_runs = Vec::new();
        let mut ratios = Vec::new();
        let pairs = if args.quick { 1 } else { SCHED_PAIRS };
        for _ in 0..pairs {
            let m = run(
                case(10_000, 1, shaped::Shaping::Rate(rate), base),
                Some("(paired)"),
            );
            let sched = run_sched(base_mpps).mpps;
            println!(
                "  {:<15} {:>8} pipes: rx {sched:>6.2} Mpps",
                "(paired)", SCHED_PIPES
            );
            // A shaped run that did not bind is left out; the references around it stay,
            // each the neighbour of the runs on its other side.
            let before = *sched_runs.last().expect("the first reference");
            sched_runs.push(sched);
            if m.result.bound == Some(true) {
                let mpps = m.result.mpps / workers;
                shaped_runs.push(Some(mpps));
                ratios.push(paired::neighbour_ratio(before, mpps, sched));
            } else {
                shaped_runs.push(None);
            }
        }
        sched_pairs = Some(SchedPairs {
            shaped_mpps: shaped_runs,
            rte_sched_mpps: sched_runs,
            ratio: paired::Paired::from_ratios(ratios),
        });
    }
    let per_worker = if plan.workers() > 1 {
        " per worker"
    } else {
        ""
    };
    let mut targets = Vec::new();
    let mut not_compared = Vec::new();
    // A shaped figure is compared only where its rates bound.
    let mut compare = |name: String, cases: &[u32], target: &dyn Fn(&[f64]) -> Target| {
        let found: Vec<&CaseResult> = cases.iter().filter_map(|n| shaped_cases.get(n)).collect();
        if found.len() < cases.len() {
            return;
        }
        let unbound: Vec<String> = found
            .iter()
            .filter(|c| c.bound != Some(true))
            .map(|c| {
                let b = c.binding.expect("shaped cases report their binding");
                let mut reason = format!(
                    "the shaped case at {} subscribers did not bind ({:.0} % of its subscribers backlogged, {:.0} % of its frames dropped)",
                    c.subscribers,
                    100.0 * b.backlogged_share,
                    100.0 * b.dropped_share
                );
                if let Some(floor) = below_cake_floor(c) {
                    reason.push_str(&floor);
                }
                reason
            })
            .collect();
        if unbound.is_empty() {
            targets.push(target(&found.iter().map(|c| c.mpps).collect::<Vec<_>>()));
        } else {
            not_compared.push(NotCompared {
                name,
                reason: unbound.join("; "),
            });
        }
    };
    if let Some(bridge) = bridge {
        let name =
            format!("shaped Mpps{per_worker} at 10,000 subscribers / bridge Mpps (1 worker, 64 B)");
        compare(name.clone(), &[10_000], &|m| {
            Target::at_least(
                name.clone(),
                SHAPED_VS_BRIDGE_TARGET,
                m[0] / workers / bridge.mpps,
            )
        });
    }
    let name = "shaped Mpps at 1,000,000 subscribers / at 1,000".to_owned();
    compare(name.clone(), &[1_000, 1_000_000], &|m| {
        Target::at_least(name.clone(), SHAPED_SCALE_TARGET, m[1] / m[0])
    });
    let name =
        format!("shaped Mpps{per_worker} at 10,000 subscribers / rte_sched Mpps at 8,192 pipes");
    match &sched_pairs {
        Some(SchedPairs {
            ratio: Some(p),
            shaped_mpps,
            ..
        }) => {
            println!(
                "  shaped at 10,000 subscribers / rte_sched, in turns: {:.3} (median of {}, {:.3} to {:.3}; {} shaped runs did not bind)",
                p.median,
                p.pairs,
                p.min,
                p.max,
                shaped_mpps.iter().filter(|m| m.is_none()).count()
            );
            targets.push(Target::at_least(name, SHAPED_VS_RTE_SCHED_TARGET, p.median));
        }
        Some(SchedPairs { ratio: None, .. }) => not_compared.push(NotCompared {
            name,
            reason: "no shaped run at 10,000 subscribers between the rte_sched runs bound"
                .to_owned(),
        }),
        None => {}
    }
    println!(
        "  idle subscribers: {:.2} GiB for {idle_subscribers}, {per_subscriber:.0} bytes each (both directions)",
        idle as f64 / f64::from(1u32 << 30),
    );
    match &active_flows {
        Ok(a) => println!("  active flows: {:.0} bytes each ({})", a.bytes, a.from),
        Err(why) => println!("  active flows: not measured: {why}"),
    }
    targets.push(Target::at_most(
        "idle subscriber, both directions (bytes, measured from the process)",
        IDLE_SUBSCRIBER_BYTES_TARGET,
        per_subscriber,
    ));
    if idle_subscribers == 1_000_000 {
        targets.push(Target::at_most(
            "1,000,000 idle subscribers (GiB)",
            MILLION_IDLE_GIB_TARGET,
            idle as f64 / f64::from(1u32 << 30),
        ));
    }
    let cases = cases.into_inner();
    let mempool_in_use_peak = cases
        .iter()
        .filter_map(|c| c.mempool.map(|p| p.in_use_peak))
        .max();
    ShapingSuite {
        cases,
        sched_pairs,
        memory: Some(Memory {
            idle_subscribers: u64::from(idle_subscribers),
            idle_bytes_per_subscriber: per_subscriber,
            bytes_per_active_flow: active_flows.as_ref().ok().map(|a| a.bytes),
            bytes_per_active_flow_from: match &active_flows {
                Ok(a) => a.from.clone(),
                Err(why) => format!("not measured: {why}"),
            },
            mempool_mbufs: pool.size(),
            mempool_bytes_per_mbuf: pool.bytes_per_mbuf(),
            mempool_in_use_peak,
        }),
        targets,
        not_compared,
        pool,
    }
}

/// The frames of the sweeps: the first value of every traffic knob.
fn sweep_traffic(args: &Args) -> generator::Traffic {
    let base = generator::Traffic::MIN_IPV4;
    generator::Traffic {
        sizes: args.sizes.first().copied().unwrap_or(base.sizes),
        ip: args.ip.first().copied().unwrap_or(base.ip),
        encap: args.encap.first().copied().unwrap_or(base.encap),
        direction: args.direction.first().copied().unwrap_or(base.direction),
        transport: args.transport,
        dscp: args.dscp,
    }
}

/// The traffic cases at 10,000 subscribers: `base` with one knob changed to each of its other
/// values. `--quick` keeps the last other size and the other direction (the wrappings and
/// IPv6 cost what the plain case costs, and the full suite measures them).
fn traffic_cases(args: &Args, base: generator::Traffic) -> Vec<generator::Traffic> {
    use generator::Traffic;
    let sizes = others(&args.sizes, base.sizes);
    let directions = others(&args.direction, base.direction);
    if args.quick {
        return sizes
            .last()
            .map(|&sizes| Traffic { sizes, ..base })
            .into_iter()
            .chain(
                directions
                    .iter()
                    .map(|&direction| Traffic { direction, ..base }),
            )
            .collect();
    }
    sizes
        .into_iter()
        .map(|sizes| Traffic { sizes, ..base })
        .chain(
            others(&args.ip, base.ip)
                .into_iter()
                .map(|ip| Traffic { ip, ..base }),
        )
        .chain(
            others(&args.encap, base.encap)
                .into_iter()
                .map(|encap| Traffic { encap, ..base }),
        )
        .chain(
            directions
                .into_iter()
                .map(|direction| Traffic { direction, ..base }),
        )
        .collect()
}

/// The values of a knob other than `first`, each once, in the order given.
fn others<T: Copy + PartialEq>(values: &[T], first: T) -> Vec<T> {
    let mut v = Vec::new();
    for &x in values {
        if x != first && !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

/// Runs `work` (a forwarding loop) on `core`, pinned and registered as a DPDK lcore: how every
/// case runs what it measures.
fn run_pinned<T>(eal: &'static Eal, core: usize, work: impl FnOnce() -> T) -> T {
    assert!(
        core_affinity::set_for_current(core_affinity::CoreId { id: core }),
        "cannot pin the forwarding loop to core {core}"
    );
    let _lcore = eal.register_thread().unwrap_or_else(|e| panic!("{e}"));
    work()
}

/// Cores as the command line takes them: "1,2".
fn cores_list(cores: &[usize]) -> String {
    cores
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Each case's Mpps per worker over the `bridge` case's, and the shaped cases' over the
/// `rte_sched` case's, of this run.
fn set_ratios(cases: &mut [CaseResult]) {
    let of = |name: &str, cases: &[CaseResult]| {
        cases
            .iter()
            .find(|c| c.case == name)
            .map(|c| c.mpps / c.workers as f64)
    };
    let (bridge, sched) = (of("bridge", cases), of("rte_sched", cases));
    for c in cases {
        let per_worker = c.mpps / c.workers as f64;
        c.ratio_to_bridge = bridge.map(|b| per_worker / b);
        if c.case.starts_with("shaped") {
            c.ratio_to_rte_sched = sched.map(|r| per_worker / r);
        }
    }
}

fn print_table(cases: &[CaseResult]) {
    println!(
        "  {:<14} {:>11} {:>5} {:>7} {:<10} {:<9} {:>7} {:>8} {:>7} {:>10} {:>7} {:>9} {:>5}",
        "case",
        "subscribers",
        "flows",
        "frame B",
        "traffic",
        "classes",
        "workers",
        "Mpps",
        "Gbit/s",
        "cycles/pkt",
        "/bridge",
        "/rte_sched",
        "bound"
    );
    for c in cases {
        println!(
            "  {:<14} {:>11} {:>5} {:>7} {:<10} {:<9} {:>7} {:>8.2} {:>7.2} {:>10} {:>7} {:>9} {:>5}",
            c.case,
            c.subscribers,
            c.flows_per_subscriber,
            c.packet_size,
            c.traffic,
            c.frames.map_or("-".to_owned(), |t| t.classes()),
            c.workers,
            c.mpps,
            c.gbps,
            c.cycles_per_packet
                .map_or("-".to_owned(), |c| format!("{c:.1}")),
            CaseResult::ratio(c.ratio_to_bridge),
            CaseResult::ratio(c.ratio_to_rte_sched),
            c.bound.map_or("-", |b| if b { "yes" } else { "NO" }),
        );
    }
}

fn write_results(dir: &std::path::Path, results: &Results) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    let latest = dir.join("latest.json");
    std::fs::write(&latest, &json)?;
    let stamp = machine::utc_stamp();
    std::fs::write(dir.join(format!("{stamp}.json")), &json)?;
    Ok(latest)
}

/// sheetcake's worker forwarding between two `net_null` ports, in this process. The EAL and
/// the ports are set up once; [`Bridge::measure`] runs the worker for one window.
struct Bridge {
    eal: &'static Eal,
    hz: u64,
    ports: [Port; 2],
}

impl Bridge {
    /// Starts the EAL with `memory` (its `-m` and page options) and the two ports.
    fn start(memory: &[String]) -> Bridge {
        let eal_args: Vec<String> = ["-l", &GENERATOR_CORE.to_string()]
            .into_iter()
            .map(str::to_owned)
            .chain(memory.iter().cloned())
            .chain(
                [
                    "--no-pci",
                    "--file-prefix=sc-bench",
                    "--vdev=net_null0",
                    "--vdev=net_null1",
                ]
                .map(str::to_owned),
            )
            .collect();
        let eal = Eal::init(&eal_args).unwrap_or_else(|e| {
            // DPDK has said why above (most often: another benchmark holds its lock).
            eprintln!(
                "error: DPDK did not start ({e}); if it says another primary process is \
                 running, another sheetcake-bench is: wait for it, or stop it"
            );
            std::process::exit(1)
        });
        let pool = Mempool::new(
            eal,
            &MempoolConfig {
                name: "bench_mbufs".into(),
                mbufs: BRIDGE_MBUFS,
                cache: 256,
                data_room: 2176,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let config = PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mtu: 1500,
            rss_hash: RSS_IP,
        };
        let port = |name| Port::start(eal, name, &config, pool).unwrap_or_else(|e| panic!("{e}"));
        Bridge {
            eal,
            hz: tsc_hz(eal),
            ports: [port("net_null0"), port("net_null1")],
        }
    }

    /// Forwards for `rounds` windows of `seconds`, calling `between` after each window (with
    /// the worker stopped, so a reference can use the core). Returns the best window (none
    /// without rounds).
    fn measure(
        &self,
        worker_core: usize,
        seconds: f64,
        rounds: usize,
        mut between: impl FnMut(),
    ) -> Option<CaseResult> {
        let [a, b] = &self.ports;
        let pairs = PairQueues::of(a, b).expect("fresh ports");
        let published = PublishedCounters::default();
        let mut worker = Worker::new(pairs, &published, self.hz);
        let mut best: Option<CaseResult> = None;
        for round in 0..rounds {
            let stop = AtomicBool::new(false);
            let (packets, cycles_per_packet, elapsed) = std::thread::scope(|scope| {
                let eal = self.eal;
                let runner = scope.spawn(|| run_pinned(eal, worker_core, || worker.run(&stop)));
                // Warm-up, then the measured window.
                std::thread::sleep(Duration::from_secs(1));
                let c0 = published.read();
                let s0 = a.stats().rx_packets + b.stats().rx_packets;
                let t0 = Instant::now();
                std::thread::sleep(Duration::from_secs_f64(seconds));
                let c1 = published.read();
                let s1 = a.stats().rx_packets + b.stats().rx_packets;
                let elapsed = t0.elapsed().as_secs_f64();
                stop.store(true, Ordering::Relaxed);
                runner.join().expect("worker");
                let forwarded = (c1.rx_packets - c0.rx_packets).max(1);
                let busy = (c1.busy_cycles - c0.busy_cycles) as f64 / forwarded as f64;
                (s1 - s0, busy, elapsed)
            });
            let mpps = packets as f64 / elapsed / 1e6;
            let result = CaseResult {
                case: "bridge",
                subscribers: 0,
                flows_per_subscriber: 0,
                packet_size: PacketSize::Bytes(NULL_FRAME_BYTES),
                traffic: "net_null".into(),
                frames: None,
                workers: 1,
                worker_cores: vec![worker_core],
                shared_cores: worker_core == GENERATOR_CORE,
                steering: None,
                mpps,
                gbps: mpps * (NULL_FRAME_BYTES * 8) as f64 / 1e3,
                cycles_per_packet: Some(cycles_per_packet),
                seconds: elapsed,
                tx_mpps: None,
                drops_mpps: Default::default(),
                probe_latency_us: None,
                per_worker: Vec::new(),
                ratio_to_bridge: Some(1.0),
                ratio_to_rte_sched: None,
                rate_bytes_per_second: None,
                bound: None,
                binding: None,
                mempool: None,
            };
            println!(
                "  round {}: bridge {:.2} Mpps, {:.1} cycles/packet",
                round + 1,
                result.mpps,
                cycles_per_packet
            );
            if best.as_ref().is_none_or(|b| result.mpps > b.mpps) {
                best = Some(result);
            }
            between();
        }
        best
    }
}

/// `dpdk-testpmd` io-forward between two `net_null` ports, one forwarding core, with `memory`
/// (its EAL's `-m` and page options).
fn run_testpmd(
    binary: &str,
    memory: &[String],
    worker_core: usize,
    seconds: f64,
) -> Option<CaseResult> {
    // testpmd prints statistics every --stats-period second, or slower when its main core is
    // busy (every ~2 s here); the first two reports cover start-up and are skipped.
    let wall = Duration::from_secs_f64(seconds + 5.0);
    // testpmd's statistics go through stdio, which a pipe would buffer past the SIGINT that
    // ends the run: stdbuf makes them line-buffered.
    let child = Command::new("stdbuf")
        .args(["-oL", binary])
        .args(["-l", &format!("{GENERATOR_CORE},{worker_core}")])
        .args(memory)
        .args([
            "--no-pci",
            "--file-prefix=sc-bench-testpmd",
            "--vdev=net_null0",
            "--vdev=net_null1",
            "--",
            "--forward-mode=io",
            "--auto-start",
            "--stats-period=1",
            "--nb-cores=1",
            "--total-num-mbufs=16383",
            // Its forwarding statistics at the end then give the forwarding core's busy
            // cycles per packet, as the bridge's are counted.
            "--record-core-cycles",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("testpmd_io skipped: cannot run {binary}: {e} (apt-get install dpdk-dev)");
            return None;
        }
    };
    let pid = child.id().to_string();
    std::thread::sleep(wall);
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // testpmd prints, per port and per report, "Rx-pps: N" (measured over the report's own
    // interval). Sum the two ports of each report after the first two.
    let rates: Vec<f64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Rx-pps:"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    let per_period: Vec<f64> = rates.chunks_exact(2).map(|p| p[0] + p[1]).skip(2).collect();
    if per_period.is_empty() {
        eprintln!("testpmd_io: no statistics in testpmd's output");
        return None;
    }
    let pps = per_period.iter().sum::<f64>() / per_period.len() as f64;
    let mpps = pps / 1e6;
    // On stopping, "CPU cycles/packet=53.14 (total cycles=... / total io packets=...) at 2600
    // MHz Clock": cycles of the bursts that received frames over the frames received, for the
    // whole run (start-up reports included, whose rate is the same).
    let cycles_per_packet = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("CPU cycles/packet="))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
    Some(CaseResult {
        case: "testpmd_io",
        subscribers: 0,
        flows_per_subscriber: 0,
        packet_size: PacketSize::Bytes(NULL_FRAME_BYTES),
        traffic: "net_null".into(),
        frames: None,
        workers: 1,
        worker_cores: vec![worker_core],
        shared_cores: worker_core == GENERATOR_CORE,
        steering: None,
        mpps,
        gbps: mpps * (NULL_FRAME_BYTES * 8) as f64 / 1e3,
        cycles_per_packet,
        seconds: per_period.len() as f64,
        tx_mpps: None,
        drops_mpps: Default::default(),
        probe_latency_us: None,
        per_worker: Vec::new(),
        ratio_to_bridge: None,
        ratio_to_rte_sched: None,
        rate_bytes_per_second: None,
        bound: None,
        binding: None,
        mempool: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use generator::{Direction, Encap, IpVersion, Sizes};

    fn described(traffic: &[generator::Traffic]) -> Vec<String> {
        traffic
            .iter()
            .map(|t| format!("{} {}", PacketSize::of(t.sizes), t.name()))
            .collect()
    }

    #[test]
    fn the_default_knobs_are_the_standard_suite() {
        let args = Args::parse_from(["sheetcake-bench"]);
        let base = sweep_traffic(&args);
        assert_eq!(base, generator::Traffic::MIN_IPV4);
        assert_eq!(
            described(&traffic_cases(&args, base)),
            [
                "1518 ipv4",
                "imix ipv4",
                "64 ipv6",
                "64 ipv4 vlan",
                "64 ipv4 qinq",
                "64 ipv4 pppoe",
                "64 ipv4 up"
            ]
        );
        let quick = Args::parse_from(["sheetcake-bench", "--quick"]);
        assert_eq!(
            described(&traffic_cases(&quick, base)),
            ["imix ipv4", "64 ipv4 up"]
        );
    }

    #[test]
    fn the_first_value_of_each_knob_is_the_sweeps_and_the_others_one_case_each() {
        let args = Args::parse_from([
            "sheetcake-bench",
            "--sizes",
            "imix,64,imix",
            "--ip",
            "6",
            "--encap",
            "pppoe,bare",
            "--direction",
            "upload",
        ]);
        let base = sweep_traffic(&args);
        assert_eq!(
            (base.sizes, base.ip, base.encap, base.direction),
            (Sizes::Imix, IpVersion::V6, Encap::Pppoe, Direction::Upload)
        );
        assert_eq!(
            described(&traffic_cases(&args, base)),
            ["64 ipv6 pppoe up", "imix ipv6 up"]
        );
    }
}
