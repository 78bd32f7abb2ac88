//! Per-subscriber statistics as operators know them: the layout of `tc -s qdisc show` for a
//! cake qdisc, one block per direction, tins in columns.

use sheetcake_cake::config::TinMode;
use sheetcake_cake::tins::{tin_class, tin_class_name, tin_order};
use sheetcake_dataplane::shaping::{DirectionReport, SubscriberReport};
use std::fmt::Write;

/// The tins' names in tin order, as tc prints them.
pub fn tin_names(mode: TinMode) -> Vec<String> {
    tin_order(mode)
        .iter()
        .map(|&t| tin_class_name(usize::from(tin_class(mode, t))).to_string())
        .collect()
}

/// A rate in tc's units (bytes per second in, bits per second out).
fn rate(bytes_per_second: Option<u64>) -> String {
    match bytes_per_second {
        None => "unlimited".into(),
        Some(b) => {
            let bits = b as f64 * 8.0;
            if bits >= 1e9 {
                format!("{:.4}Gbit", bits / 1e9)
            } else if bits >= 1e6 {
                format!("{:.4}Mbit", bits / 1e6)
            } else {
                format!("{:.4}Kbit", bits / 1e3)
            }
            .replace(".0000", "")
        }
    }
}

/// A time in tc's units, from nanoseconds.
fn time(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2}s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else {
        format!("{}us", ns / 1_000)
    }
}

/// A size in tc's units.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}Mb", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}Kb", bytes >> 10)
    } else {
        format!("{bytes}b")
    }
}

/// One direction, in tc's layout.
fn direction(out: &mut String, id: &str, name: &str, d: &DirectionReport) {
    let s = &d.stats;
    let _ = writeln!(out, "subscriber {id} {name}: cake {}", d.config);
    let _ = writeln!(
        out,
        " Sent {} bytes {} pkt (dropped {}, overlimits {} requeues 0)",
        s.sent_bytes, s.sent_packets, s.drops, s.overlimits
    );
    let _ = writeln!(
        out,
        " backlog {}b {}p requeues 0",
        d.backlog_bytes, d.backlog_packets
    );
    let _ = writeln!(
        out,
        " memory used: {} of {}",
        size(d.memory.1),
        size(d.memory.2)
    );
    if d.config.autorate_ingress {
        let _ = writeln!(
            out,
            " capacity estimate: {}",
            rate(Some(s.capacity_estimate))
        );
    }
    if s.sent_packets > 0 {
        let _ = writeln!(
            out,
            " min/max network layer size: {:>12} / {:>7}",
            s.min_network_len, s.max_network_len
        );
        let _ = writeln!(
            out,
            " min/max overhead-adjusted size: {:>8} / {:>7}",
            s.min_adjusted_len, s.max_adjusted_len
        );
    }
    let _ = writeln!(
        out,
        " average network hdr offset: {:>12}",
        s.avg_network_offset
    );
    // Names are in tin order, as the reports are.
    let names = tin_names(d.config.tin_mode);
    let _ = write!(out, "  {:<10}", "");
    for name in &names {
        let _ = write!(out, " {name:>12}");
    }
    let _ = writeln!(out);
    let mut row = |label: &str, cell: &dyn Fn(&sheetcake_cake::TinReport) -> String| {
        let _ = write!(out, "  {label:<10}");
        for t in &d.tins {
            let _ = write!(out, " {:>12}", cell(t));
        }
        let _ = writeln!(out);
    };
    row("thresh", &|t| rate(t.rate));
    row("target", &|t| time(t.target));
    row("interval", &|t| time(t.interval));
    row("pk_delay", &|t| time(t.stats.peak_delay));
    row("av_delay", &|t| time(t.stats.avg_delay));
    row("sp_delay", &|t| time(t.stats.sparse_delay));
    row("backlog", &|t| format!("{}b", t.backlog_bytes));
    row("pkts", &|t| t.stats.packets.to_string());
    row("bytes", &|t| t.stats.bytes.to_string());
    row("way_inds", &|t| t.stats.way_indirect_hits.to_string());
    row("way_miss", &|t| t.stats.way_misses.to_string());
    row("way_cols", &|t| t.stats.way_collisions.to_string());
    row("drops", &|t| t.stats.drops.to_string());
    row("marks", &|t| t.stats.ecn_marks.to_string());
    row("ack_drop", &|t| t.stats.ack_drops.to_string());
    row("sp_flows", &|t| t.sparse_flows.to_string());
    row("bk_flows", &|t| t.bulk_flows.to_string());
    row("un_flows", &|t| t.unresponsive_flows.to_string());
    row("max_len", &|t| t.stats.max_packet_len.to_string());
    row("quantum", &|t| t.flow_quantum.to_string());
}

/// Both directions of subscriber `id`.
pub fn format(id: &str, report: &SubscriberReport) -> String {
    let mut out = String::new();
    for (name, d) in ["download", "upload"].iter().zip(&report.directions) {
        direction(&mut out, id, name, d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheetcake_cake::{Cake, CakeConfig, InstanceSetup};

    #[test]
    fn a_report_reads_like_tc_for_each_direction_with_tins_in_columns() {
        let config = CakeConfig::parse("bandwidth 20mbit diffserv3").unwrap();
        let cakes = [
            Cake::new(config, InstanceSetup::new(0, 1)),
            Cake::new(config, InstanceSetup::new(1, 1)),
        ];
        let mut report = SubscriberReport::new(0);
        report.fill(&cakes);
        let text = format("cust-7", &report);
        assert!(
            text.contains("subscriber cust-7 download: cake bandwidth 20Mbit"),
            "{text}"
        );
        assert!(text.contains("subscriber cust-7 upload:"), "{text}");
        assert!(
            text.contains(" Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0)"),
            "{text}"
        );
        // Tin order Bulk, Best Effort, Voice; thresholds 1/16, 1, 1/4 of 20 Mbit/s (spec 2);
        // Bulk's target is 1.5 MTU times at 1.25 Mbit/s: 1.5 x 1514 x 8 / 1.25e6 = 14.53 ms.
        let header = text.lines().find(|l| l.contains("Best Effort")).unwrap();
        assert!(
            header.find("Bulk").unwrap() < header.find("Best Effort").unwrap()
                && header.find("Best Effort").unwrap() < header.find("Voice").unwrap(),
            "{header}"
        );
        let thresh = text.lines().find(|l| l.contains("thresh")).unwrap();
        assert!(
            thresh.contains("1.2500Mbit") && thresh.contains("20Mbit") && thresh.contains("5Mbit"),
            "{thresh}"
        );
        let target = text.lines().find(|l| l.contains("target")).unwrap();
        assert!(target.contains("14.53ms"), "{target}");
        assert!(text.contains("memory used: 0b of 4Mb"), "{text}");
    }
}
