//! Starting, watching and stopping the appliance: the control thread's life.
//!
//! The control thread owns the EAL, the mempool and the ports; workers borrow their queues
//! inside a thread scope, so by construction no worker can outlive the ports it polls. After
//! the workers stop, the ports are closed and the pool must be whole again: an mbuf missing at
//! that point is a bug, and sheetcake says so loudly and exits non-zero.

use crate::api::{self, Access, Shared};
use crate::config::{Settings, HANDOFF_RING_FRAMES};
use crate::control_loop::{ControlLoop, Signals};
use crate::live::{worker_seed, LiveShaping};
use crate::log;
use crate::metrics::Snapshot;
use crate::nodes::{NodeBalancer, BALANCE_INTERVAL};
use crate::registry::Registry;
use crate::subscribers::SubscriberSet;
use parking_lot::Mutex;
use sheetcake_dataplane::dpdk::{
    mbuf_ring, tsc_hz, DpdkError, Eal, Mempool, MempoolConfig, Port, PortConfig, PortStats,
    RingGauge, RSS_DESTINATION_ONLY, RSS_SOURCE_ONLY,
};
use sheetcake_dataplane::shaping::{
    instance_gauges, ControlChannel, InstanceGauges, LocalSubscriber, SubscriberTables,
};
use sheetcake_dataplane::worker::{
    DropReason, Handoff, PairQueues, PublishedCounters, ShapingSetup, Worker, WorkerCounters,
};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why the appliance could not run, or ended badly.
#[derive(Debug)]
pub enum RunError {
    /// DPDK refused to start something; the message says what to do.
    Start(String),
    /// Mbufs were missing from the pool after shutdown.
    Leak {
        /// Mbufs still out.
        missing: u32,
    },
    /// Worker counters do not add up (received != sent + dropped).
    Counters(String),
}

impl RunError {
    /// Process exit code: 1 start failure, 3 leak, 4 counter mismatch.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Start(_) => 1,
            RunError::Leak { .. } => 3,
            RunError::Counters(_) => 4,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Start(msg) => write!(f, "cannot start: {msg}"),
            RunError::Leak { missing } => write!(
                f,
                "MBUF LEAK: {missing} packet buffers were not returned to the pool after \
                 shutdown; this is a bug, please report it with the log above"
            ),
            RunError::Counters(msg) => write!(f, "COUNTER MISMATCH: {msg}; this is a bug"),
        }
    }
}

impl From<DpdkError> for RunError {
    fn from(err: DpdkError) -> Self {
        RunError::Start(err.to_string())
    }
}

/// Advice for the start-up failures operators actually meet.
fn eal_advice(err: &DpdkError) -> String {
    format!(
        "{err}; hints: run as root; production needs hugepages (echo 1024 > \
         /proc/sys/vm/nr_hugepages, or 1 GiB pages on the kernel command line), tests and the \
         demo can add \"--no-huge\" to [eal] args; another DPDK process with the same \
         eal.file_prefix may be running"
    )
}

/// Commands queued per worker at most (a reload of more changes waits for the worker).
const COMMAND_QUEUE: usize = 4096;

/// Splits the subscribers over `workers`: the registry places them, and each worker starts
/// with its own in local-slot order.
fn plan_shaping(
    set: SubscriberSet,
    workers: usize,
    capacity: u32,
) -> Result<(Registry, SubscriberTables, Vec<Vec<LocalSubscriber>>), RunError> {
    let mut registry = Registry::new(workers, capacity);
    let plan = registry
        .replace(set)
        .map_err(|r| RunError::Start(r.to_string()))?;
    let mut locals: Vec<Vec<LocalSubscriber>> = (0..workers).map(|_| Vec::new()).collect();
    let mut upserts = plan.upserts;
    upserts.sort_by_key(|u| (u.owner.worker, u.owner.local));
    for u in upserts {
        let (owner, [download, upload]) = (u.owner, u.configs);
        let mine = &mut locals[owner.worker as usize];
        // A fresh registry hands out each worker's slots from 0 up.
        debug_assert_eq!(owner.local as usize, mine.len());
        let id = registry
            .at(owner.worker as usize, owner.local as usize)
            .map(|e| e.subscriber.id.clone())
            .unwrap_or_default();
        mine.push(LocalSubscriber {
            id,
            download,
            upload,
        });
    }
    let tables = plan.tables.unwrap_or_default();
    Ok((registry, tables, locals))
}

/// Runs the appliance until SIGINT or SIGTERM. `config` is the file `settings` came from,
/// which a reload re-reads (`None` for the embedded demo).
pub fn run(
    settings: &Settings,
    config: Option<&std::path::Path>,
    subscribers: Option<SubscriberSet>,
) -> Result<(), RunError> {
    let shared = Arc::new(Shared {
        snapshot: Mutex::new(Arc::new(Snapshot::default())),
        access: Mutex::new(Access::of(&settings.api)),
    });
    let eal = Eal::init(&settings.eal_args).map_err(|e| RunError::Start(eal_advice(&e)))?;
    let hz = tsc_hz(eal);
    let pool = Mempool::new(
        eal,
        &MempoolConfig {
            name: "sheetcake_mbufs".into(),
            mbufs: settings.mbufs,
            cache: settings.mbuf_cache,
            data_room: settings.mbuf_data_room,
        },
    )?;
    let workers = settings.worker_cores.len() as u16;
    let port_config = PortConfig {
        rx_queues: workers,
        tx_queues: workers,
        rx_descriptors: settings.rx_descriptors,
        tx_descriptors: settings.tx_descriptors,
        mtu: settings.mtu,
        rss_hash: RSS_DESTINATION_ONLY,
    };
    // The subscriber is the destination of what enters the core port and the source of what
    // enters the access port: hashing that address alone puts a subscriber's frames on one
    // queue, its owner's when the NIC's hash and the owner's hash agree, else one handoff.
    let access_config = PortConfig {
        rss_hash: RSS_SOURCE_ONLY,
        ..port_config.clone()
    };

    // [pair][core, access]
    let mut ports: Vec<[Port; 2]> = Vec::new();
    for pair in &settings.pairs {
        let core = Port::start(eal, pair.ports[0].port_name(), &port_config, pool)?;
        let access = Port::start(eal, pair.ports[1].port_name(), &access_config, pool)?;
        log::info(format!(
            "pair {}: core {} ({}) <-> access {} ({}) started; core: {}; access: {}",
            pair.name,
            core.device(),
            core.driver(),
            access.device(),
            access.driver(),
            core.rss_spread(),
            access.rss_spread()
        ))
        .emit();
        ports.push([core, access]);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let report = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(|e| RunError::Start(format!("cannot install the SIGHUP handler: {e}")))?;
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&report))
        .map_err(|e| RunError::Start(format!("cannot install the SIGUSR1 handler: {e}")))?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping kills the process outright.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|e| RunError::Start(format!("cannot install the signal handler: {e}")))?;
    }

    let published: Vec<PublishedCounters> =
        (0..workers).map(|_| PublishedCounters::default()).collect();
    let channels: Vec<Arc<ControlChannel>> = (0..workers)
        .map(|_| ControlChannel::new(COMMAND_QUEUE))
        .collect();
    let gauges: Vec<InstanceGauges> = (0..workers)
        .map(|_| instance_gauges(settings.shaping.subscribers_per_worker as usize))
        .collect();
    let (shaping, mut live, mut balancer) = match subscribers {
        Some(set) => {
            let count = set.subscribers.len();
            let (registry, tables, locals) = plan_shaping(
                set,
                usize::from(workers),
                settings.shaping.subscribers_per_worker,
            )?;
            log::info(format!(
                "shaping {count} subscribers over {workers} worker(s): {:?} each",
                locals.iter().map(Vec::len).collect::<Vec<_>>()
            ))
            .emit();
            let nodes = registry.node_list();
            let balancer =
                NodeBalancer::new(&nodes, registry.placed(), gauges.clone(), channels.clone());
            if !balancer.is_idle() {
                log::info(format!(
                    "{} parent node(s): busy subscribers share each node's capacity, \
                     re-balanced every {} ms",
                    nodes.len(),
                    BALANCE_INTERVAL.as_millis()
                ))
                .emit();
            }
            // The embedded demo has no file to reload.
            let live = LiveShaping::new(
                settings.shaping.source.clone(),
                settings.shaping.defaults.clone(),
                registry,
                channels.clone(),
                gauges.clone(),
            );
            let shaping = WorkerShaping {
                tables: Arc::new(tables),
                locals,
                channels: channels.clone(),
                gauges,
            };
            (Some(shaping), Some(live), Some(balancer))
        }
        None => {
            log::info("no subscriber file: bridging without shaping").emit();
            (None, None, None)
        }
    };
    // The API starts once the ports are up, so what it reports exists.
    let (api, calls) = match settings.api.listen {
        Some(listen) => {
            let (server, calls) =
                api::start(listen, Arc::clone(&shared)).map_err(RunError::Start)?;
            log::info(format!(
                "api: listening on http://{}/ (health, v1/..., metrics){}",
                server.address,
                if settings.api.token.is_some() {
                    "; bearer token required"
                } else {
                    ""
                }
            ))
            .emit();
            (Some(server), Some(calls))
        }
        None => {
            log::info("api: off ([api] listen = \"off\")").emit();
            (None, None)
        }
    };
    let control = ControlLoop {
        settings: settings.clone(),
        config_path: config,
        ports: &ports,
        published: &published,
        pool: &pool,
        hz,
        signals: Signals {
            stop: &stop,
            reload: &reload,
            report: &report,
        },
        live: live.as_mut(),
        balancer: balancer.as_mut(),
        calls,
        shared,
        handoff_rings: Vec::new(),
    };
    let finals = run_workers(settings, eal, &ports, &published, control, shaping)?;
    drop(api);

    let mut totals = WorkerCounters::default();
    for counters in &finals {
        totals.rx_packets += counters.rx_packets;
        totals.tx_packets += counters.tx_packets;
        for (sum, n) in totals.dropped.iter_mut().zip(counters.dropped) {
            *sum += n;
        }
    }
    let port_totals: Vec<(String, PortStats)> = ports
        .iter()
        .flat_map(|pair| pair.iter())
        .map(|p| (p.device().to_owned(), p.stats()))
        .collect();
    drop(ports);

    let drops: Vec<String> = DropReason::ALL
        .iter()
        .map(|r| format!("{} {}", r.name(), totals.dropped(*r)))
        .collect();
    log::info(format!(
        "stopped: workers received {} frames, sent {}, dropped {} ({})",
        totals.rx_packets,
        totals.tx_packets,
        totals.dropped_total(),
        drops.join(", ")
    ))
    .emit();
    for (device, s) in &port_totals {
        log::info(format!(
            "  port {device}: rx {} tx {} missed {} rx-errors {} tx-errors {} no-mbuf {}",
            s.rx_packets, s.tx_packets, s.rx_missed, s.rx_errors, s.tx_errors, s.rx_no_mbuf
        ))
        .emit();
    }
    let missing = pool.in_use();
    log::info(format!(
        "mempool: {} of {} mbufs in use after shutdown",
        missing,
        pool.size()
    ))
    .emit();
    if missing != 0 {
        return Err(RunError::Leak { missing });
    }
    if totals.rx_packets != totals.tx_packets + totals.dropped_total() {
        return Err(RunError::Counters(format!(
            "received {} != sent {} + dropped {}",
            totals.rx_packets,
            totals.tx_packets,
            totals.dropped_total()
        )));
    }
    log::info("clean shutdown: every frame received was sent or counted as dropped").emit();
    Ok(())
}

/// Starts one worker per configured core, prints status until asked to stop, and returns each
/// worker's final counters.
fn run_workers(
    settings: &Settings,
    eal: &'static Eal,
    ports: &[[Port; 2]],
    published: &[PublishedCounters],
    mut control: ControlLoop<'_>,
    shaping: Option<WorkerShaping>,
) -> Result<Vec<WorkerCounters>, RunError> {
    let stop = control.signals.stop;
    let hz = control.hz;
    let workers = settings.worker_cores.len();
    // Each worker shapes the unknown traffic it receives with its own default-class instance,
    // at an equal part of the class's rate: RSS spreads that traffic over the workers by
    // address, so the parts add up to the rate when its load is spread evenly.
    let default_class = settings.shaping.unknown.map(|class| {
        class.map(|mut c| {
            c.bandwidth = c.bandwidth.map(|b| (b / workers as u64).max(1));
            c
        })
    });
    // Handoff rings: rings[from][to] for every ordered pair of distinct workers.
    let mut setups: Vec<Option<(ShapingSetup, Handoff)>> = match shaping {
        None => (0..workers).map(|_| None).collect(),
        Some(WorkerShaping {
            tables,
            locals,
            channels,
            gauges,
        }) => {
            let mut to: Vec<Vec<Option<_>>> = (0..workers)
                .map(|_| (0..workers).map(|_| None).collect())
                .collect();
            let mut from: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
            // What waits toward each worker, for the metrics (the control thread reads the
            // rings' indices; the workers keep both ends).
            let mut inbound: Vec<Vec<RingGauge>> = (0..workers).map(|_| Vec::new()).collect();
            for (a, to_a) in to.iter_mut().enumerate() {
                for (b, slot) in to_a.iter_mut().enumerate() {
                    if a == b {
                        continue;
                    }
                    let (producer, consumer) =
                        mbuf_ring(eal, &format!("handoff_{a}_{b}"), HANDOFF_RING_FRAMES)?;
                    *slot = Some(producer);
                    inbound[b].push(consumer.gauge());
                    from[b].push(consumer);
                }
            }
            control.handoff_rings = inbound;
            locals
                .into_iter()
                .zip(to)
                .zip(from)
                .enumerate()
                .map(|(w, ((subscribers, to), from))| {
                    Some((
                        ShapingSetup {
                            tables: Arc::clone(&tables),
                            subscribers,
                            worker: w as u16,
                            flows: settings.shaping.flows_per_worker as usize,
                            queued_budget: u64::from(settings.shaping.queued_per_worker),
                            seed: worker_seed(w),
                            capacity: settings.shaping.subscribers_per_worker as usize,
                            channel: Arc::clone(&channels[w]),
                            gauges: Arc::clone(&gauges[w]),
                            default_class,
                            idle: crate::live::idle_configs(&settings.shaping.defaults),
                        },
                        Handoff { to, from },
                    ))
                })
                .collect()
        }
    };
    // Hand every worker its queue on every port.
    let mut per_worker: Vec<Vec<PairQueues<'_>>> = (0..workers).map(|_| Vec::new()).collect();
    for pair in ports {
        let [core, access] = pair;
        let queues = PairQueues::of(core, access).expect("queues are taken once, here");
        for (w, q) in queues.into_iter().enumerate() {
            per_worker[w].push(q);
        }
    }

    // Workers stop one by one; frames still in a handoff ring are counted by their receiver
    // once every worker has stopped sending.
    let all_stopped = std::sync::Barrier::new(workers);
    std::thread::scope(|scope| {
        let all_stopped = &all_stopped;
        let mut handles = Vec::new();
        for ((w, pairs), core) in per_worker
            .into_iter()
            .enumerate()
            .zip(settings.worker_cores.iter().copied())
        {
            let counters = &published[w];
            let shaping = setups[w].take();
            let handle = std::thread::Builder::new()
                .name(format!("worker{w}"))
                .spawn_scoped(scope, move || -> Result<WorkerCounters, String> {
                    let started = (|| {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                            return Err(format!(
                                "worker {w}: cannot pin the thread to core {core}"
                            ));
                        }
                        let lcore = eal.register_thread().map_err(|e| e.to_string())?;
                        log::info(format!(
                            "worker {w}: running on core {core} (lcore {})",
                            lcore.lcore_id()
                        ))
                        .emit();
                        Ok(lcore)
                    })();
                    let _lcore = match started {
                        Ok(lcore) => lcore,
                        Err(e) => {
                            // Tell the others to stop too, and meet them at the barrier.
                            stop.store(true, Ordering::Relaxed);
                            all_stopped.wait();
                            return Err(e);
                        }
                    };
                    let mut worker = Worker::new(pairs, counters, hz);
                    if let Some((setup, handoff)) = shaping {
                        let building = std::time::Instant::now();
                        let slots = setup.capacity;
                        worker = worker.with_shaping(setup, handoff);
                        log::info(format!(
                            "worker {w}: {slots} subscriber slots ready in {:.2} s; forwarding",
                            building.elapsed().as_secs_f64()
                        ))
                        .emit();
                    }
                    worker.run(stop);
                    all_stopped.wait();
                    Ok(worker.drain_handoffs())
                })
                .map_err(|e| RunError::Start(format!("cannot start worker {w}: {e}")))?;
            handles.push(handle);
        }

        control.run();

        let mut finals = Vec::new();
        for (w, handle) in handles.into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(counters)) => finals.push(counters),
                Ok(Err(msg)) => return Err(RunError::Start(msg)),
                Err(_) => return Err(RunError::Start(format!("worker {w} panicked"))),
            }
        }
        Ok(finals)
    })
}

/// What the workers shape with: the shared tables, each worker's subscribers, and each
/// worker's command channel.
struct WorkerShaping {
    tables: Arc<SubscriberTables>,
    locals: Vec<Vec<LocalSubscriber>>,
    channels: Vec<Arc<ControlChannel>>,
    gauges: Vec<InstanceGauges>,
}
