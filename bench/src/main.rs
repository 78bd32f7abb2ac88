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
/// Shaped at 1,000,000 subscribers: at least this share of the 1,000-subscriber figure.
const SHAPED_SCALE_TARGET: f64 = 0.80;
/// An idle subscriber, both directions: at most this many bytes (issue 6).
const IDLE_SUBSCRIBER_BYTES_TARGET: f64 = 4096.0;
/// The load of the latency case, as a share of the shaped case's throughput.
const LATENCY_LOAD: f64 = 0.5;
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
    /// Seconds each shaping case is measured (after a second of warm-up).
    #[arg(long, default_value_t = 3.0)]
    shaping_seconds: f64,
    /// Subscribers whose idle memory is measured.
    #[arg(long, default_value_t = 1_000_000)]
    idle_subscribers: u32,
    /// Runs the shaping cases only (no bridge or testpmd reference, so no ratio to them):
    /// for profiling one case with `perf record -C <worker core>`.
    #[arg(long)]
    shaping_only: bool,
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
    memory: Option<Memory>,
    control: Option<ControlResults>,
    targets: Vec<Target>,
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
    /// side does the metrics refresh's work once a second (as the appliance does), and
    /// without (Mpps); the same at ten times a second.
    metrics_refresh_mpps_during: f64,
    metrics_refresh_mpps_before: f64,
    metrics_refresh_10x_mpps_during: f64,
    metrics_refresh_10x_mpps_before: f64,
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
    /// Resident growth over a run with every flow active, per flow.
    bytes_per_active_flow: Option<f64>,
    /// The mempool: buffers and the bytes each occupies.
    mempool_mbufs: u32,
    mempool_bytes_per_mbuf: u32,
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
    (mbufs * MBUF_BYTES_ESTIMATE).div_ceil(1 << 20) + EAL_OVERHEAD_MIB
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
            println!("           testpmd_io {:.2} Mpps", t.mpps);
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

    let results = Results {
        machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cases,
        memory: shaping.memory,
        control: Some(control),
        targets,
    };
    match write_results(&args.results, &results) {
        Ok(path) => println!("\nresults written to {}", path.display()),
        Err(e) => eprintln!("\ncannot write results to {}: {e}", args.results.display()),
    }
}

/// What the shaping cases measured.
struct ShapingSuite {
    cases: Vec<CaseResult>,
    memory: Option<Memory>,
    targets: Vec<Target>,
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
                seconds,
            );
            println!(
                "  metrics refresh {per_second:>2} a second ({METRICS_SUBSCRIBERS} subscribers; each \
                 reads every gauge and asks for the 100 busiest subscribers' statistics; {} \
                 refreshes, {} reports): forwarding {:.2} Mpps meanwhile, {:.2} Mpps without \
                 ({:.3})",
                r.refreshes,
                r.reports,
                r.mpps_with_refresh,
                r.mpps_alone,
                r.mpps_with_refresh / r.mpps_alone
            );
            (per_second, r)
        })
        .collect();
    let r = refresh[0].1;
    targets.push(Target::at_least(
        "forwarding with the metrics refresh (once a second) / without",
        0.97,
        r.mpps_with_refresh / r.mpps_alone,
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
        metrics_refresh_mpps_during: r.mpps_with_refresh,
        metrics_refresh_mpps_before: r.mpps_alone,
        metrics_refresh_10x_mpps_during: refresh[1].1.mpps_with_refresh,
        metrics_refresh_10x_mpps_before: refresh[1].1.mpps_alone,
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
    println!();
    println!(
        "shaping cases: frames from the generator (core {GENERATOR_CORE}) through ring ports, {} worker(s) on core(s) {}, {seconds} s each after 1 s of warm-up",
        plan.workers(),
        cores_list(&plan.cores)
    );
    // First, before any case frees memory the allocator could hand back unseen.
    println!("  measuring the memory of {idle_subscribers} idle subscribers...");
    // The flow pool first: the idle subscribers' freed instances would hold it unseen, while
    // the pool (one large mapping) goes back to the kernel when freed.
    let bytes_per_active_flow = Some(shaped::bytes_per_flow());
    let idle = shaped::idle_memory(eal, hz, pool, idle_subscribers);
    let per_subscriber = idle as f64 / f64::from(idle_subscribers);
    let mut count = 0;
    let mut run = |case: shaped::Case, label: Option<&str>| {
        count += 1;
        let m = shaped::run(eal, hz, pool, &format!("b{count}"), case, plan, seconds);
        let drops: Vec<String> = m
            .result
            .drops_mpps
            .iter()
            .map(|(r, d)| format!("{r} {d:.2}"))
            .collect();
        println!(
            "  {:<15} {:>8} subscribers x {:<3} flows {:>5} B {:<10} rx {:>6.2} Mpps {:>6.2} Gbit/s  tx {:>6.2} Mpps  {:>6.1} cycles/packet  drops/s (M) [{}]  setup {:.1} s, {:.0} MB",
            label.unwrap_or(m.result.case),
            m.result.subscribers,
            m.result.flows_per_subscriber,
            m.result.packet_size,
            m.result.traffic,
            m.result.mpps,
            m.result.gbps,
            m.result.tx_mpps.unwrap_or(0.0),
            m.result.cycles_per_packet.unwrap_or(0.0),
            drops.join(", "),
            m.setup_seconds,
            m.memory_bytes as f64 / 1e6,
        );
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
    let ring_bridge = run(
        shaped::Case {
            // One address per worker: the generator spreads addresses over the queues.
            subscribers: plan.workers() as u32,
            flows: 1,
            shaping: shaped::Shaping::Off,
            probe: false,
            offered: None,
            traffic: generator::Traffic::MIN_IPV4,
        },
        None,
    );
    record(&ring_bridge);
    let mut shaped_mpps = std::collections::BTreeMap::new();
    // Rates that keep every queue non-empty: a share of what the worker can take in while
    // shaping, found by a first, calibrating run (its rates a quarter of the unlimited share,
    // which the worker may or may not keep up with).
    let rate_for = |mpps: f64, n: u32, share: f64| {
        ((share * mpps * 1e6 / f64::from(n) * generator::FRAME_BYTES as f64) as u64).max(1)
    };
    let mut calibrated = std::collections::BTreeMap::new();
    for &n in &sweep {
        let unlimited = run(
            shaped::Case {
                subscribers: n,
                flows: 1,
                shaping: shaped::Shaping::Unlimited,
                probe: false,
                offered: None,
                traffic: generator::Traffic::MIN_IPV4,
            },
            None,
        );
        record(&unlimited);
        let calibration = run(
            shaped::Case {
                subscribers: n,
                flows: 1,
                shaping: shaped::Shaping::Rate(rate_for(unlimited.result.mpps, n, 0.25)),
                probe: false,
                offered: None,
                traffic: generator::Traffic::MIN_IPV4,
            },
            Some("(calibrating)"),
        );
        calibrated.insert(n, calibration.result.mpps);
        let shaped = run(
            shaped::Case {
                subscribers: n,
                flows: 1,
                shaping: shaped::Shaping::Rate(rate_for(
                    calibration.result.mpps,
                    n,
                    shaped::SHAPED_SHARE,
                )),
                probe: false,
                offered: None,
                traffic: generator::Traffic::MIN_IPV4,
            },
            None,
        );
        record(&shaped);
        shaped_mpps.insert(n, shaped.result.mpps);
    }
    // Frame sizes and wrappings at 10,000 subscribers, the rates of the 64-byte calibration in
    // frames (so scaled by each traffic's mean frame size).
    if let Some(&base) = calibrated.get(&10_000) {
        use generator::{Encap, Sizes, Traffic};
        let plain = |sizes, ipv6, encap| Traffic {
            sizes,
            ipv6,
            encap,
            upload: false,
        };
        let upload = Traffic {
            upload: true,
            ..Traffic::MIN_IPV4
        };
        // Quick runs keep one mixed-size and one upload case: the wrappings and IPv6 cost what
        // the plain case costs, and the full suite measures them.
        let variants: Vec<Traffic> = if args.quick {
            vec![plain(Sizes::Imix, false, Encap::Bare), upload]
        } else {
            vec![
                plain(Sizes::Max, false, Encap::Bare),
                plain(Sizes::Imix, false, Encap::Bare),
                plain(Sizes::Min, true, Encap::Bare),
                plain(Sizes::Min, false, Encap::Vlan),
                plain(Sizes::Min, false, Encap::QinQ),
                plain(Sizes::Min, false, Encap::Pppoe),
                upload,
            ]
        };
        for traffic in variants {
            let scale = traffic.sizes.mean() / generator::FRAME_BYTES as f64;
            let rate = (rate_for(base, 10_000, shaped::SHAPED_SHARE) as f64 * scale) as u64;
            let m = run(
                shaped::Case {
                    subscribers: 10_000,
                    flows: 1,
                    shaping: shaped::Shaping::Rate(rate),
                    probe: false,
                    offered: None,
                    traffic,
                },
                None,
            );
            record(&m);
        }
    }
    // DPDK's own scheduler on the same frames and rates, one pipe per subscriber.
    let mut sched_mpps = None;
    if let Some(&base) = calibrated.get(&10_000) {
        let rate = rate_for(base, 10_000, shaped::SHAPED_SHARE);
        let c = rte_sched::run(
            eal,
            hz,
            pool,
            plan.single_core(),
            SCHED_PIPES,
            rate,
            seconds,
        );
        println!(
            "  {:<15} {:>8} pipes       x 1   flows    64 B ipv4       rx {:>6.2} Mpps  tx {:>6.2} Mpps  {:>6.1} cycles/packet  drops/s (M) [{}]",
            c.case,
            c.subscribers,
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
    if let (Some(&n), Some(&base)) = (
        sweep.iter().find(|&&n| n == 10_000).or(sweep.first()),
        calibrated.get(&10_000).or(calibrated.values().next()),
    ) {
        let offered = LATENCY_LOAD * shaped_mpps.get(&n).copied().unwrap_or(base) * 1e6;
        let m = run(
            shaped::Case {
                subscribers: n,
                flows: 1,
                shaping: shaped::Shaping::Rate(rate_for(base, n, shaped::SHAPED_SHARE)),
                probe: true,
                offered: Some(offered),
                traffic: generator::Traffic::MIN_IPV4,
            },
            None,
        );
        record(&m);
    }
    for &flows in &flow_sweep {
        let n = 10_000;
        let Some(&base) = calibrated.get(&n) else {
            println!("  (the flow sweep needs 10000 in --subscribers: skipped)");
            break;
        };
        let m = run(
            shaped::Case {
                subscribers: n,
                flows,
                shaping: shaped::Shaping::Rate(rate_for(base, n, shaped::SHAPED_SHARE)),
                probe: false,
                offered: None,
                traffic: generator::Traffic::MIN_IPV4,
            },
            None,
        );
        record(&m);
    }

    // The references run on one core: against them, the shaped figure is per worker.
    let workers = plan.workers() as f64;
    let per_worker = if plan.workers() > 1 {
        " per worker"
    } else {
        ""
    };
    let mut targets = Vec::new();
    if let (Some(&s), Some(bridge)) = (shaped_mpps.get(&10_000), bridge) {
        targets.push(Target::at_least(
            format!("shaped Mpps{per_worker} at 10,000 subscribers / bridge Mpps (1 worker, 64 B)"),
            SHAPED_VS_BRIDGE_TARGET,
            s / workers / bridge.mpps,
        ));
    }
    if let (Some(&s), Some(r)) = (shaped_mpps.get(&10_000), sched_mpps) {
        targets.push(Target::at_least(
            format!(
                "shaped Mpps{per_worker} at 10,000 subscribers / rte_sched Mpps at 8,192 pipes"
            ),
            SHAPED_VS_RTE_SCHED_TARGET,
            s / workers / r,
        ));
    }
    if let (Some(&small), Some(&large)) = (shaped_mpps.get(&1_000), shaped_mpps.get(&1_000_000)) {
        targets.push(Target::at_least(
            "shaped Mpps at 1,000,000 subscribers / at 1,000",
            SHAPED_SCALE_TARGET,
            large / small,
        ));
    }
    println!(
        "  idle subscribers: {:.2} GiB for {idle_subscribers}, {per_subscriber:.0} bytes each (both directions){}",
        idle as f64 / f64::from(1u32 << 30),
        bytes_per_active_flow.map_or(String::new(), |b| format!("; {b:.0} bytes per active flow"))
    );
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
    ShapingSuite {
        cases: cases.into_inner(),
        memory: Some(Memory {
            idle_subscribers: u64::from(idle_subscribers),
            idle_bytes_per_subscriber: per_subscriber,
            bytes_per_active_flow,
            mempool_mbufs: pool.size(),
            mempool_bytes_per_mbuf: pool.bytes_per_mbuf(),
        }),
        targets,
        pool,
    }
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

fn print_table(cases: &[CaseResult]) {
    println!(
        "  {:<12} {:>7} {:>9} {:>10} {:>9} {:>12}",
        "case", "workers", "frame B", "Mpps", "Gbit/s", "cycles/pkt"
    );
    for c in cases {
        println!(
            "  {:<12} {:>7} {:>9} {:>10.2} {:>9.2} {:>12}",
            c.case,
            c.workers,
            c.packet_size,
            c.mpps,
            c.gbps,
            c.cycles_per_packet
                .map_or("-".to_owned(), |c| format!("{c:.1}"))
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
    Some(CaseResult {
        case: "testpmd_io",
        subscribers: 0,
        flows_per_subscriber: 0,
        packet_size: PacketSize::Bytes(NULL_FRAME_BYTES),
        traffic: "net_null".into(),
        workers: 1,
        worker_cores: vec![worker_core],
        shared_cores: worker_core == GENERATOR_CORE,
        steering: None,
        mpps,
        gbps: mpps * (NULL_FRAME_BYTES * 8) as f64 / 1e3,
        cycles_per_packet: None,
        seconds: per_period.len() as f64,
        tx_mpps: None,
        drops_mpps: Default::default(),
        probe_latency_us: None,
        per_worker: Vec::new(),
    })
}
