//! Prometheus metrics: what a scrape of `/metrics` says.
//!
//! The control thread samples everything once per [`REFRESH`] into a [`Snapshot`] (ports,
//! workers' published counters, the pool, the exported subscribers' last reports) and swaps it
//! in whole; a scrape only encodes the snapshot it finds, on an API thread. So a scrape never
//! reaches a worker, never waits for the control thread, and costs the same at any scrape
//! rate. Values are at most one refresh old.
//!
//! Names follow Prometheus conventions: `sheetcake_` prefix, base units (`_bytes`,
//! `_seconds`), `_total` for counters. Per-subscriber series exist only for the busiest
//! `[metrics] subscriber_series` subscribers plus an allow-list (see the configuration): a
//! million subscribers would otherwise be ten million series per scrape.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use sheetcake_cake::tins::{tin_class_name, TIN_CLASSES};
use sheetcake_dataplane::shaping::DirectionReport;
use sheetcake_dataplane::worker::{DropReason, TinCounters, WorkerCounters, TIN_DROP_REASONS};
use std::time::Duration;

/// How often the control thread refreshes the snapshot (and asks the workers for the
/// exported subscribers' statistics).
pub const REFRESH: Duration = Duration::from_secs(1);

/// One port's counters.
#[derive(Debug, Clone)]
pub struct PortSample {
    pub pair: String,
    /// `core` or `access`.
    pub side: &'static str,
    pub device: String,
    pub driver: String,
    pub stats: sheetcake_dataplane::dpdk::PortStats,
}

/// One worker's counters.
#[derive(Debug, Clone)]
pub struct WorkerSample {
    pub worker: usize,
    pub core: usize,
    pub counters: WorkerCounters,
    /// Share of the last refresh interval spent moving frames.
    pub busy_ratio: f64,
    /// TSC ticks per second, to turn cycles into seconds.
    pub hz: u64,
    /// Subscribers it owns.
    pub subscribers: usize,
    /// Commands queued for it and not yet applied.
    pub command_queue_depth: usize,
    /// Frames it may hold queued in its CAKE instances (`[shaping] queued_per_worker`; 0
    /// without shaping).
    pub queued_limit: u64,
    /// Frames waiting in the handoff rings toward it: handed off by other workers and not
    /// yet taken over.
    pub handoff_waiting: usize,
    /// What those rings hold at most.
    pub handoff_capacity: usize,
}

impl WorkerSample {
    /// The packet buffers this worker holds or has waiting for it: queued in its CAKE
    /// instances, waiting in its TX backlogs and outboxes, and in the handoff rings toward it.
    /// Its RX and TX descriptor rings are not counted (the NIC holds those, full all the time
    /// on RX); the configuration bounds them.
    pub fn mbufs_in_use(&self) -> u64 {
        self.counters.queued + self.counters.tx_waiting + self.handoff_waiting as u64
    }
}

/// One exported subscriber's last statistics.
#[derive(Debug, Clone)]
pub struct SubscriberSample {
    pub id: String,
    /// Download, upload.
    pub directions: [DirectionReport; 2],
}

/// Everything a scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub shaping: bool,
    pub subscribers: usize,
    pub ports: Vec<PortSample>,
    pub workers: Vec<WorkerSample>,
    /// Workers that have built their subscriber slots and forward.
    pub workers_running: usize,
    pub mbufs_in_use: u32,
    pub mbufs_capacity: u32,
    pub exported: Vec<SubscriberSample>,
    /// Changes accepted and not yet in force at every worker.
    pub changes_in_flight: usize,
    /// How long the control thread took to make this snapshot.
    pub refresh_seconds: f64,
}

/// Builds one family at a time.
struct Family {
    family: MetricFamily,
}

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut family = MetricFamily::default();
        family.set_name(name.into());
        family.set_help(help.into());
        family.set_field_type(kind);
        Family { family }
    }

    fn counter(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::COUNTER)
    }

    fn gauge(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::GAUGE)
    }

    /// A counter when `counter`, else a gauge.
    fn of(name: &str, help: &str, counter: bool) -> Family {
        if counter {
            Family::counter(name, help)
        } else {
            Family::gauge(name, help)
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut m = Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name((*k).into());
                    l.set_value((*v).into());
                    l
                })
                .collect(),
        );
        match self.family.get_field_type() {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        self.family.mut_metric().push(m);
    }
}

/// The text exposition (format 0.0.4) of `s`.
pub fn encode(s: &Snapshot) -> String {
    let mut families = Vec::new();
    let mut push = |f: Family| {
        if !f.family.get_metric().is_empty() {
            families.push(f.family);
        }
    };

    let mut info = Family::gauge("sheetcake_build_info", "The running version (value 1).");
    info.add(&[("version", s.version)], 1.0);
    push(info);
    let mut uptime = Family::gauge("sheetcake_uptime_seconds", "Seconds since start.");
    uptime.add(&[], s.uptime_seconds);
    push(uptime);
    let mut subscribers = Family::gauge("sheetcake_subscribers", "Subscribers configured.");
    subscribers.add(&[], s.subscribers as f64);
    push(subscribers);
    let mut series = Family::gauge(
        "sheetcake_subscriber_series",
        "Subscribers with their own series in this scrape (the busiest and the allow-list).",
    );
    series.add(&[], s.exported.len() as f64);
    push(series);
    let mut in_use = Family::gauge(
        "sheetcake_mbufs_in_use",
        "Packet buffers out of the pool (descriptor rings, queues, bursts).",
    );
    in_use.add(&[], f64::from(s.mbufs_in_use));
    push(in_use);
    let mut capacity = Family::gauge("sheetcake_mbufs_capacity", "Packet buffers in the pool.");
    capacity.add(&[], f64::from(s.mbufs_capacity));
    push(capacity);
    let mut refresh = Family::gauge(
        "sheetcake_metrics_refresh_duration_seconds",
        "How long the control thread's last once-a-second pass over every subscriber's gauges \
         took (API requests wait meanwhile).",
    );
    refresh.add(&[], s.refresh_seconds);
    push(refresh);

    type PortField = fn(&sheetcake_dataplane::dpdk::PortStats) -> u64;
    let port_fields: [(&str, &str, PortField); 8] = [
        ("received_packets_total", "Frames received.", |p| {
            p.rx_packets
        }),
        ("received_bytes_total", "Bytes received.", |p| p.rx_bytes),
        ("sent_packets_total", "Frames sent.", |p| p.tx_packets),
        ("sent_bytes_total", "Bytes sent.", |p| p.tx_bytes),
        (
            "missed_packets_total",
            "Frames the port dropped because its RX queues were full.",
            |p| p.rx_missed,
        ),
        ("receive_errors_total", "Erroneous frames received.", |p| {
            p.rx_errors
        }),
        ("send_errors_total", "Failed transmissions.", |p| {
            p.tx_errors
        }),
        (
            "no_mbuf_total",
            "Receive buffer allocations that failed (the pool was empty).",
            |p| p.rx_no_mbuf,
        ),
    ];
    for (name, help, field) in port_fields {
        let mut f = Family::counter(&format!("sheetcake_port_{name}"), help);
        for p in &s.ports {
            f.add(
                &[("pair", &p.pair), ("side", p.side), ("device", &p.device)],
                field(&p.stats) as f64,
            );
        }
        push(f);
    }

    type WorkerField = fn(&WorkerSample) -> f64;
    let worker_fields: [(&str, &str, bool, WorkerField); 17] = [
        (
            "busy_ratio",
            "Share of the last second the worker spent moving frames (0 to 1).",
            false,
            |w| w.busy_ratio,
        ),
        (
            "busy_seconds_total",
            "Seconds the worker spent in loops that moved frames.",
            true,
            |w| w.counters.busy_cycles as f64 / w.hz.max(1) as f64,
        ),
        ("received_packets_total", "Frames received.", true, |w| {
            w.counters.rx_packets as f64
        }),
        ("sent_packets_total", "Frames sent.", true, |w| {
            w.counters.tx_packets as f64
        }),
        (
            "shaped_packets_total",
            "Frames queued in a subscriber's (or the default class's) CAKE.",
            true,
            |w| w.counters.shaped_packets as f64,
        ),
        (
            "unshaped_packets_total",
            "Frames passed through unshaped.",
            true,
            |w| w.counters.unshaped_packets as f64,
        ),
        (
            "handed_off_packets_total",
            "Frames handed to the worker that owns their subscriber.",
            true,
            |w| w.counters.handed_off as f64,
        ),
        (
            "taken_over_packets_total",
            "Frames received from other workers for this worker's subscribers.",
            true,
            |w| w.counters.taken_over as f64,
        ),
        (
            "queued_packets",
            "Frames (packet buffers) queued in the worker's CAKE instances.",
            false,
            |w| w.counters.queued as f64,
        ),
        (
            "queued_limit_packets",
            "Frames the worker may hold queued ([shaping] queued_per_worker; 0 without shaping).",
            false,
            |w| w.queued_limit as f64,
        ),
        (
            "tx_waiting_packets",
            "Frames waiting in the worker's TX backlogs (the port's TX queue was full) and \
             outboxes to other workers.",
            false,
            |w| w.counters.tx_waiting as f64,
        ),
        (
            "handoff_ring_packets",
            "Frames waiting in the handoff rings toward the worker (from other workers).",
            false,
            |w| w.handoff_waiting as f64,
        ),
        (
            "handoff_ring_capacity_packets",
            "Frames the handoff rings toward the worker hold at most.",
            false,
            |w| w.handoff_capacity as f64,
        ),
        (
            "mbufs_in_use",
            "Packet buffers the worker holds or has waiting for it: queued, TX-waiting and in \
             the handoff rings toward it (descriptor rings not included; see docs/metrics.md).",
            false,
            |w| w.mbufs_in_use() as f64,
        ),
        ("flows", "Flow entries in use.", false, |w| {
            w.counters.flows_in_use as f64
        }),
        ("subscribers", "Subscribers the worker owns.", false, |w| {
            w.subscribers as f64
        }),
        (
            "command_queue_depth",
            "Commands from the control thread not yet applied.",
            false,
            |w| w.command_queue_depth as f64,
        ),
    ];
    for (name, help, counter, field) in worker_fields {
        let mut f = Family::of(&format!("sheetcake_worker_{name}"), help, counter);
        for w in &s.workers {
            let (worker, core) = (w.worker.to_string(), w.core.to_string());
            f.add(&[("worker", &worker), ("core", &core)], field(w));
        }
        push(f);
    }
    let mut drops = Family::counter(
        "sheetcake_worker_dropped_packets_total",
        "Frames dropped, by reason (see docs/metrics.md).",
    );
    for w in &s.workers {
        let (worker, core) = (w.worker.to_string(), w.core.to_string());
        for r in DropReason::ALL {
            drops.add(
                &[("worker", &worker), ("core", &core), ("reason", r.name())],
                w.counters.dropped(r) as f64,
            );
        }
    }
    push(drops);
    push_tins(&s.workers, &mut push);

    type DirectionField = fn(&DirectionReport) -> f64;
    let subscriber_fields: [(&str, &str, bool, DirectionField); 8] = [
        ("sent_bytes_total", "Bytes the shaper sent.", true, |d| {
            d.stats.sent_bytes as f64
        }),
        ("sent_packets_total", "Frames the shaper sent.", true, |d| {
            d.stats.sent_packets as f64
        }),
        (
            "dropped_packets_total",
            "Frames CAKE dropped (AQM and overflow).",
            true,
            |d| d.stats.drops as f64,
        ),
        (
            "ecn_marked_packets_total",
            "Frames CAKE marked with ECN CE instead of dropping.",
            true,
            |d| d.stats.ecn_marks as f64,
        ),
        (
            "ack_dropped_packets_total",
            "TCP ACKs the ACK filter removed.",
            true,
            |d| d.stats.ack_drops as f64,
        ),
        ("backlog_bytes", "Bytes queued.", false, |d| {
            d.backlog_bytes as f64
        }),
        (
            "delay_seconds",
            "Average queueing delay of the subscriber's busiest tin.",
            false,
            |d| {
                d.tins
                    .iter()
                    .max_by_key(|t| t.stats.bytes)
                    .map_or(0.0, |t| t.stats.avg_delay as f64 / 1e9)
            },
        ),
        (
            "rate_bytes_per_second",
            "The shaper rate in force (a parent node's share included; 0: unlimited).",
            false,
            |d| d.config.bandwidth.unwrap_or(0) as f64,
        ),
    ];
    for (name, help, counter, field) in subscriber_fields {
        let mut f = Family::of(&format!("sheetcake_subscriber_{name}"), help, counter);
        for sub in &s.exported {
            for (direction, d) in ["download", "upload"].iter().zip(&sub.directions) {
                f.add(
                    &[("subscriber", &sub.id), ("direction", direction)],
                    field(d),
                );
            }
        }
        push(f);
    }

    let mut out = Vec::new();
    // Encoding into memory cannot fail but for a bug in the encoder; say so instead of
    // panicking on a scrape.
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        return format!("# sheetcake: the metrics could not be encoded: {e}\n");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Per-tin families: every worker's instances summed by direction and tin class (tc's tin
/// names, so diffserv3's and diffserv4's Voice are one series). A class appears once it has
/// carried or dropped a frame, so a box without diffserv8 subscribers shows no numbered tins.
fn push_tins(workers: &[WorkerSample], push: &mut impl FnMut(Family)) {
    let mut sums = [[TinCounters::default(); TIN_CLASSES]; 2];
    for w in workers {
        for (sum, tins) in sums.iter_mut().zip(&w.counters.tins) {
            for (total, t) in sum.iter_mut().zip(tins) {
                total.sent_packets += t.sent_packets;
                total.sent_bytes += t.sent_bytes;
                total.ecn_marked += t.ecn_marked;
                for (d, x) in total.dropped.iter_mut().zip(t.dropped) {
                    *d += x;
                }
            }
        }
    }
    let seen: Vec<(&str, usize, &TinCounters)> = ["download", "upload"]
        .into_iter()
        .zip(&sums)
        .flat_map(|(direction, tins)| tins.iter().enumerate().map(move |(c, t)| (direction, c, t)))
        .filter(|(_, _, t)| t.sent_packets > 0 || t.dropped.iter().any(|&d| d > 0))
        .collect();
    type TinField = fn(&TinCounters) -> u64;
    let fields: [(&str, &str, TinField); 3] = [
        (
            "sent_packets_total",
            "Frames CAKE sent, all subscribers.",
            |t| t.sent_packets,
        ),
        (
            "sent_bytes_total",
            "Bytes CAKE sent, all subscribers.",
            |t| t.sent_bytes,
        ),
        (
            "ecn_marked_packets_total",
            "Frames CAKE marked with ECN CE instead of dropping, all subscribers.",
            |t| t.ecn_marked,
        ),
    ];
    for (name, help, field) in fields {
        let mut f = Family::counter(&format!("sheetcake_tin_{name}"), help);
        for (direction, class, t) in &seen {
            let tin = tin_class_name(*class);
            f.add(&[("direction", direction), ("tin", tin)], field(t) as f64);
        }
        push(f);
    }
    let mut drops = Family::counter(
        "sheetcake_tin_dropped_packets_total",
        "Frames queued in CAKE and dropped, all subscribers, by reason (AQM, overflow of the \
         memory limit, ACK filter, the worker's buffer budget).",
    );
    for (direction, class, t) in &seen {
        let tin = tin_class_name(*class);
        for (reason, n) in TIN_DROP_REASONS.iter().zip(t.dropped) {
            drops.add(
                &[
                    ("direction", direction),
                    ("tin", tin),
                    ("reason", reason.name()),
                ],
                n as f64,
            );
        }
    }
    push(drops);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_follows_the_naming_conventions() {
        let mut report = sheetcake_dataplane::shaping::SubscriberReport::default();
        report.directions[0].stats.sent_bytes = 1234;
        let mut counters = WorkerCounters {
            queued: 40,
            tx_waiting: 5,
            ..WorkerCounters::default()
        };
        // Voice of diffserv4 (internal tin 3), upload.
        let voice = usize::from(sheetcake_cake::tins::tin_class(
            sheetcake_cake::config::TinMode::Diffserv4,
            3,
        ));
        counters.tins[1][voice].sent_packets = 7;
        counters.tins[1][voice].dropped[0] = 2;
        let s = Snapshot {
            version: "0.1.0",
            shaping: true,
            subscribers: 1,
            workers: vec![WorkerSample {
                worker: 0,
                core: 1,
                counters,
                busy_ratio: 0.5,
                hz: 1_000_000_000,
                subscribers: 1,
                command_queue_depth: 0,
                queued_limit: 16_384,
                handoff_waiting: 3,
                handoff_capacity: 256,
            }],
            exported: vec![SubscriberSample {
                id: "cust \"7\"".into(),
                directions: report.directions.clone(),
            }],
            ..Snapshot::default()
        };
        let text = encode(&s);
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("sheetcake_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
        // Label values are escaped, as the format requires.
        assert!(
            text.contains(
                "sheetcake_subscriber_sent_bytes_total{subscriber=\"cust \\\"7\\\"\",direction=\"download\"} 1234"
            ),
            "{text}"
        );
        assert!(text.contains("sheetcake_worker_busy_ratio{worker=\"0\",core=\"1\"} 0.5"));
        // A worker's buffers: 40 queued in CAKE, 5 waiting for TX, 3 in the rings toward it.
        assert!(text.contains("sheetcake_worker_handoff_ring_packets{worker=\"0\",core=\"1\"} 3"));
        assert!(text.contains("sheetcake_worker_mbufs_in_use{worker=\"0\",core=\"1\"} 48"));
        assert!(
            text.contains("sheetcake_worker_queued_limit_packets{worker=\"0\",core=\"1\"} 16384")
        );
        // Tins: summed per direction and class, only the classes that carried traffic.
        assert!(
            text.contains("sheetcake_tin_sent_packets_total{direction=\"upload\",tin=\"Voice\"} 7")
        );
        assert!(text.contains(
            "sheetcake_tin_dropped_packets_total{direction=\"upload\",tin=\"Voice\",reason=\"aqm\"} 2"
        ));
        assert_eq!(
            text.matches("sheetcake_tin_sent_bytes_total{").count(),
            1,
            "{text}"
        );
    }
}
