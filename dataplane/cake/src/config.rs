//! `CakeConfig`: everything one instance can be told, parsed from and printed as the option
//! words of `tc-cake(8)`, so operators can write what they already know:
//! `bandwidth 20mbit diffserv4 dual-dsthost ack-filter docsis rtt 50ms`.

use core::fmt;

/// Nanoseconds per microsecond, millisecond, second.
pub const NS_PER_US: u64 = 1_000;
pub const NS_PER_MS: u64 = 1_000_000;
pub const NS_PER_S: u64 = 1_000_000_000;

/// Tin (DiffServ) modes, spec section 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TinMode {
    /// One tin.
    Besteffort,
    /// Eight tins by IP precedence (DSCP >> 3).
    Precedence,
    /// Bulk, Best Effort, Voice.
    Diffserv3,
    /// Bulk, Best Effort, Video, Voice.
    Diffserv4,
    /// Eight tins by DSCP class.
    Diffserv8,
}

/// Flow isolation modes, spec section 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowMode {
    /// All of a tin's traffic in one queue.
    Flowblind,
    /// By source address.
    Srchost,
    /// By destination address.
    Dsthost,
    /// By source and destination address.
    Hosts,
    /// By 5-tuple.
    Flows,
    /// By 5-tuple, fair between source hosts.
    DualSrchost,
    /// By 5-tuple, fair between destination hosts.
    DualDsthost,
    /// By 5-tuple, fair between source hosts and between destination hosts.
    TripleIsolate,
}

impl FlowMode {
    /// Whether flows are fair between source hosts.
    pub fn src_host_fairness(self) -> bool {
        matches!(self, FlowMode::DualSrchost | FlowMode::TripleIsolate)
    }
    /// Whether flows are fair between destination hosts.
    pub fn dst_host_fairness(self) -> bool {
        matches!(self, FlowMode::DualDsthost | FlowMode::TripleIsolate)
    }
    /// Whether flows hold host entries at all (fair between source or destination hosts).
    pub fn host_fairness(self) -> bool {
        self.src_host_fairness() || self.dst_host_fairness()
    }
}

/// ACK filter modes, spec 5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckFilter {
    /// No filtering.
    Off,
    /// Remove an ACK made redundant only when two candidates are found.
    Conservative,
    /// Also remove a lone redundant ACK directly before the new one.
    Aggressive,
}

/// Link-layer cell framing, spec 1.2 steps 4 and 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No cells.
    None,
    /// ATM: 48-byte payloads in 53-byte cells.
    Atm,
    /// PTM (VDSL2): 64/65 encoding.
    Ptm,
}

/// Overhead compensation, spec 1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overhead {
    /// Charge the Ethernet frame as received (the default) instead of the L3 packet plus
    /// `bytes`.
    pub raw: bool,
    /// Bytes added to the L3 length when not raw (-64..=256).
    pub bytes: i16,
    /// Minimum charged length (0..=256).
    pub mpu: u16,
    /// Cell framing.
    pub framing: Framing,
}

impl Default for Overhead {
    fn default() -> Self {
        Overhead {
            raw: true,
            bytes: 0,
            mpu: 0,
            framing: Framing::None,
        }
    }
}

/// The configuration of one CAKE instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CakeConfig {
    /// Shaper rate in bytes per second; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Estimate the rate from arrivals (spec 6).
    pub autorate_ingress: bool,
    /// CoDel interval, ns (the `rtt`).
    pub interval_ns: u64,
    /// CoDel target, ns.
    pub target_ns: u64,
    /// Tins.
    pub tin_mode: TinMode,
    /// Flow isolation.
    pub flow_mode: FlowMode,
    /// Accepted for compatibility; a bump in the wire sees public addresses (spec 8).
    pub nat: bool,
    /// Clear DSCP after classifying.
    pub wash: bool,
    /// Accepted for compatibility; frames arrive already segmented (spec 1).
    pub split_gso: bool,
    /// ACK filtering.
    pub ack_filter: AckFilter,
    /// Ingress mode (spec 4.5).
    pub ingress: bool,
    /// Overhead compensation.
    pub overhead: Overhead,
    /// Memory limit in bytes of buffer footprint; `None` derives it (spec 5.3).
    pub memlimit: Option<u64>,
    /// Mask applied to the packet mark to pick a tin (0: marks ignored).
    pub fwmark: u32,
}

/// The `internet` RTT preset: 100 ms interval.
pub const DEFAULT_INTERVAL_NS: u64 = 100 * NS_PER_MS;
/// Target is interval / 20 (spec 1.1).
pub const TARGET_DIVISOR: u64 = 20;
/// Smallest target: 1 µs.
pub const MIN_TARGET_NS: u64 = NS_PER_US;

impl Default for CakeConfig {
    fn default() -> Self {
        CakeConfig {
            bandwidth: None,
            autorate_ingress: false,
            interval_ns: DEFAULT_INTERVAL_NS,
            target_ns: DEFAULT_INTERVAL_NS / TARGET_DIVISOR,
            tin_mode: TinMode::Diffserv3,
            flow_mode: FlowMode::TripleIsolate,
            nat: false,
            wash: false,
            split_gso: true,
            ack_filter: AckFilter::Off,
            ingress: false,
            overhead: Overhead::default(),
            memlimit: None,
            fwmark: 0,
        }
    }
}

/// A word the parser did not accept, with what it expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based position of the word.
    pub position: usize,
    /// The word (or the keyword missing its value).
    pub word: String,
    /// What would have been right.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "word {} {:?}: expected {}",
            self.position, self.word, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

const RTT_PRESETS: [(&str, u64); 8] = [
    ("datacentre", 100 * NS_PER_US),
    ("lan", NS_PER_MS),
    ("metro", 10 * NS_PER_MS),
    ("regional", 30 * NS_PER_MS),
    ("internet", 100 * NS_PER_MS),
    ("oceanic", 300 * NS_PER_MS),
    ("satellite", NS_PER_S),
    ("interplanetary", 1000 * NS_PER_S),
];

/// Framing keywords: (word, bytes added, framing set or None for unchanged, mpu set).
const FRAMING_KEYWORDS: [(&str, i16, Option<Framing>, Option<u16>); 13] = [
    ("ipoa-vcmux", 8, Some(Framing::Atm), None),
    ("ipoa-llcsnap", 16, Some(Framing::Atm), None),
    ("bridged-vcmux", 24, Some(Framing::Atm), None),
    ("bridged-llcsnap", 32, Some(Framing::Atm), None),
    ("pppoa-vcmux", 10, Some(Framing::Atm), None),
    ("pppoa-llc", 14, Some(Framing::Atm), None),
    ("pppoe-vcmux", 32, Some(Framing::Atm), None),
    ("pppoe-llcsnap", 40, Some(Framing::Atm), None),
    ("pppoe-ptm", 30, Some(Framing::Ptm), None),
    ("bridged-ptm", 22, Some(Framing::Ptm), None),
    ("docsis", 18, Some(Framing::None), Some(64)),
    ("ethernet", 38, None, Some(84)),
    ("ether-vlan", 4, None, None),
];

/// Overhead limits of tc-cake.
const MIN_OVERHEAD: i64 = -64;
const MAX_OVERHEAD: i64 = 256;
const MAX_MPU: u64 = 256;

impl CakeConfig {
    /// Sets the interval (the RTT) and derives the target from it (spec 1.1).
    pub fn set_rtt(&mut self, interval_ns: u64) {
        self.interval_ns = interval_ns.max(1);
        self.target_ns = (interval_ns / TARGET_DIVISOR).max(MIN_TARGET_NS);
    }

    /// Parses tc-cake option words, applied in order on top of `self`.
    pub fn apply_words(&mut self, text: &str) -> Result<(), ConfigError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut i = 0;
        let err = |i: usize, word: &str, expected: &str| ConfigError {
            position: i + 1,
            word: word.to_owned(),
            expected: expected.to_owned(),
        };
        while i < words.len() {
            let word = words[i];
            let value = |what: &str| -> Result<&str, ConfigError> {
                words
                    .get(i + 1)
                    .copied()
                    .ok_or_else(|| err(i, word, &format!("{what} after {word:?}")))
            };
            let mut consumed = 1;
            match word {
                "bandwidth" => {
                    let v = value("a rate such as 20mbit")?;
                    self.bandwidth =
                        Some(parse_rate_or_bare(v).ok_or_else(|| {
                            err(i + 1, v, "a rate such as 20mbit, 1gbit or 500kbit")
                        })?);
                    consumed = 2;
                }
                "unlimited" => self.bandwidth = None,
                "autorate-ingress" => self.autorate_ingress = true,
                "rtt" => {
                    let v = value("a time such as 50ms")?;
                    let t = parse_time(v)
                        .filter(|t| *t > 0)
                        .ok_or_else(|| err(i + 1, v, "a time such as 50ms, 100ms or 1s"))?;
                    self.set_rtt(t);
                    consumed = 2;
                }
                "besteffort" => self.tin_mode = TinMode::Besteffort,
                "precedence" => self.tin_mode = TinMode::Precedence,
                "diffserv3" => self.tin_mode = TinMode::Diffserv3,
                "diffserv4" => self.tin_mode = TinMode::Diffserv4,
                "diffserv8" => self.tin_mode = TinMode::Diffserv8,
                "flowblind" => self.flow_mode = FlowMode::Flowblind,
                "srchost" => self.flow_mode = FlowMode::Srchost,
                "dsthost" => self.flow_mode = FlowMode::Dsthost,
                "hosts" => self.flow_mode = FlowMode::Hosts,
                "flows" => self.flow_mode = FlowMode::Flows,
                "dual-srchost" => self.flow_mode = FlowMode::DualSrchost,
                "dual-dsthost" => self.flow_mode = FlowMode::DualDsthost,
                "triple-isolate" => self.flow_mode = FlowMode::TripleIsolate,
                "nat" => self.nat = true,
                "nonat" => self.nat = false,
                "wash" => self.wash = true,
                "nowash" => self.wash = false,
                "split-gso" => self.split_gso = true,
                "no-split-gso" => self.split_gso = false,
                "ack-filter" => self.ack_filter = AckFilter::Conservative,
                "ack-filter-aggressive" => self.ack_filter = AckFilter::Aggressive,
                "no-ack-filter" => self.ack_filter = AckFilter::Off,
                "ingress" => self.ingress = true,
                "egress" => self.ingress = false,
                "raw" => {
                    self.overhead.raw = true;
                    self.overhead.bytes = 0;
                }
                "conservative" => {
                    self.overhead.raw = false;
                    self.overhead.bytes = 48;
                    self.overhead.framing = Framing::Atm;
                }
                "overhead" => {
                    let v = value("a number of bytes from -64 to 256")?;
                    let n = v
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (MIN_OVERHEAD..=MAX_OVERHEAD).contains(n))
                        .ok_or_else(|| err(i + 1, v, "a number of bytes from -64 to 256"))?;
                    self.overhead.raw = false;
                    self.overhead.bytes = n as i16;
                    consumed = 2;
                }
                "mpu" => {
                    let v = value("a number of bytes from 0 to 256")?;
                    let n = v
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n <= MAX_MPU)
                        .ok_or_else(|| err(i + 1, v, "a number of bytes from 0 to 256"))?;
                    self.overhead.mpu = n as u16;
                    consumed = 2;
                }
                "atm" => self.overhead.framing = Framing::Atm,
                "ptm" => self.overhead.framing = Framing::Ptm,
                "noatm" => self.overhead.framing = Framing::None,
                "memlimit" => {
                    let v = value("a size such as 32mb")?;
                    self.memlimit = Some(
                        parse_size(v)
                            .filter(|n| *n > 0)
                            .ok_or_else(|| err(i + 1, v, "a size such as 4mb, 512kb or 1gb"))?,
                    );
                    consumed = 2;
                }
                "fwmark" => {
                    let v = value("a mask such as 0xff")?;
                    let parsed = match v.strip_prefix("0x") {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => v.parse::<u32>().ok(),
                    };
                    self.fwmark =
                        parsed.ok_or_else(|| err(i + 1, v, "a mask such as 0xff or 255"))?;
                    consumed = 2;
                }
                _ => {
                    if let Some((_, interval)) = RTT_PRESETS.iter().find(|(n, _)| *n == word) {
                        self.set_rtt(*interval);
                    } else if let Some((_, add, framing, mpu)) =
                        FRAMING_KEYWORDS.iter().find(|(n, ..)| *n == word)
                    {
                        if self.overhead.raw {
                            self.overhead.raw = false;
                            self.overhead.bytes = 0;
                        }
                        self.overhead.bytes = (self.overhead.bytes + add).min(MAX_OVERHEAD as i16);
                        if let Some(f) = framing {
                            self.overhead.framing = *f;
                        }
                        if let Some(m) = mpu {
                            self.overhead.mpu = *m;
                        }
                    } else {
                        return Err(err(
                            i,
                            word,
                            "a tc-cake option (bandwidth, unlimited, rtt, besteffort, diffserv3, \
                             diffserv4, diffserv8, precedence, flowblind, srchost, dsthost, \
                             hosts, flows, dual-srchost, dual-dsthost, triple-isolate, nat, wash, \
                             ack-filter, ack-filter-aggressive, ingress, egress, overhead, mpu, \
                             atm, ptm, noatm, raw, conservative, a framing keyword such as \
                             docsis or pppoe-ptm, memlimit, fwmark, or an rtt preset)",
                        ));
                    }
                }
            }
            i += consumed;
        }
        Ok(())
    }

    /// Parses tc-cake option words on top of the defaults.
    pub fn parse(text: &str) -> Result<CakeConfig, ConfigError> {
        let mut c = CakeConfig::default();
        c.apply_words(text)?;
        Ok(c)
    }
}

/// Parses a tc rate into bytes per second: `bit`, `kbit`, `mbit`, `gbit`, `tbit` (powers of
/// 1000), `kibit`... (powers of 1024), `bps`, `kbps`, `mbps`, `gbps` (bytes per second), and
/// a bare number of bits per second.
pub fn parse_rate(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = if split == 0 {
        return None;
    } else {
        text.split_at(split)
    };
    let number: f64 = number.parse().ok()?;
    let bits_per_unit: f64 = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "kibit" => 1024.0,
        "mibit" => 1024.0 * 1024.0,
        "gibit" => 1024.0 * 1024.0 * 1024.0,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return None,
    };
    let bytes = number * bits_per_unit / 8.0;
    (1.0..1e15).contains(&bytes).then_some(bytes.round() as u64)
}

/// A rate in bytes per second as tc writes it: the largest unit that keeps it exact (`20Mbit`,
/// `1500Kbit`, `12345672bit`), so [`parse_rate`] reads back the same number.
pub fn format_rate(bytes_per_second: u64) -> String {
    let bits = bytes_per_second * 8;
    let (value, unit) = [
        (1_000_000_000, "Gbit"),
        (1_000_000, "Mbit"),
        (1_000, "Kbit"),
    ]
    .into_iter()
    .find(|(scale, _)| bits.is_multiple_of(*scale))
    .map_or((bits, "bit"), |(scale, unit)| (bits / scale, unit));
    format!("{value}{unit}")
}

fn parse_rate_or_bare(text: &str) -> Option<u64> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .ok()
            .map(|bits| bits / 8)
            .filter(|b| *b > 0);
    }
    parse_rate(text)
}

/// Parses a tc time into ns: `s`, `sec`, `ms`, `msec`, `us`, `usec`, `ns`; a bare number is
/// microseconds, as in tc.
pub fn parse_time(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let ns_per_unit = match unit {
        "" | "us" | "usec" => 1e3,
        "s" | "sec" | "secs" => 1e9,
        "ms" | "msec" | "msecs" => 1e6,
        "ns" | "nsec" => 1.0,
        _ => return None,
    };
    let ns = number * ns_per_unit;
    (ns.is_finite() && ns < 1e16).then_some(ns.round() as u64)
}

/// Parses a tc size into bytes: `b`, `k`/`kb`, `m`/`mb`, `g`/`gb` (powers of 1024); a bare
/// number is bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale)
}

impl fmt::Display for CakeConfig {
    /// Canonical words: every setting, in a fixed order, so the output parses back to the same
    /// configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bandwidth {
            Some(bytes) => write!(f, "bandwidth {}", format_rate(bytes))?,
            None => write!(f, "unlimited")?,
        }
        if self.autorate_ingress {
            write!(f, " autorate-ingress")?;
        }
        let tin = match self.tin_mode {
            TinMode::Besteffort => "besteffort",
            TinMode::Precedence => "precedence",
            TinMode::Diffserv3 => "diffserv3",
            TinMode::Diffserv4 => "diffserv4",
            TinMode::Diffserv8 => "diffserv8",
        };
        let flow = match self.flow_mode {
            FlowMode::Flowblind => "flowblind",
            FlowMode::Srchost => "srchost",
            FlowMode::Dsthost => "dsthost",
            FlowMode::Hosts => "hosts",
            FlowMode::Flows => "flows",
            FlowMode::DualSrchost => "dual-srchost",
            FlowMode::DualDsthost => "dual-dsthost",
            FlowMode::TripleIsolate => "triple-isolate",
        };
        let (rtt, unit) = [(1_000_000, "ms"), (1_000, "us")]
            .into_iter()
            .find(|(scale, _)| self.interval_ns.is_multiple_of(*scale))
            .map_or((self.interval_ns, "ns"), |(scale, unit)| {
                (self.interval_ns / scale, unit)
            });
        write!(f, " {tin} {flow} rtt {rtt}{unit}")?;
        write!(f, " {}", if self.nat { "nat" } else { "nonat" })?;
        write!(f, " {}", if self.wash { "wash" } else { "nowash" })?;
        write!(
            f,
            " {}",
            if self.split_gso {
                "split-gso"
            } else {
                "no-split-gso"
            }
        )?;
        write!(
            f,
            " {}",
            match self.ack_filter {
                AckFilter::Off => "no-ack-filter",
                AckFilter::Conservative => "ack-filter",
                AckFilter::Aggressive => "ack-filter-aggressive",
            }
        )?;
        write!(f, " {}", if self.ingress { "ingress" } else { "egress" })?;
        if self.overhead.raw {
            write!(f, " raw")?;
        } else {
            write!(f, " overhead {}", self.overhead.bytes)?;
        }
        write!(f, " mpu {}", self.overhead.mpu)?;
        write!(
            f,
            " {}",
            match self.overhead.framing {
                Framing::None => "noatm",
                Framing::Atm => "atm",
                Framing::Ptm => "ptm",
            }
        )?;
        if let Some(limit) = self.memlimit {
            write!(f, " memlimit {limit}b")?;
        }
        if self.fwmark != 0 {
            write!(f, " fwmark {:#x}", self.fwmark)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec_table() {
        let c = CakeConfig::default();
        assert_eq!(c.bandwidth, None);
        assert_eq!(c.interval_ns, 100 * NS_PER_MS);
        assert_eq!(c.target_ns, 5 * NS_PER_MS);
        assert_eq!(c.tin_mode, TinMode::Diffserv3);
        assert_eq!(c.flow_mode, FlowMode::TripleIsolate);
        assert!(c.overhead.raw);
        assert_eq!(c.ack_filter, AckFilter::Off);
    }

    #[test]
    fn operators_words_parse() {
        let c =
            CakeConfig::parse("bandwidth 20mbit diffserv4 dual-dsthost ack-filter docsis rtt 50ms")
                .unwrap();
        assert_eq!(c.bandwidth, Some(2_500_000));
        assert_eq!(c.tin_mode, TinMode::Diffserv4);
        assert_eq!(c.flow_mode, FlowMode::DualDsthost);
        assert_eq!(c.ack_filter, AckFilter::Conservative);
        assert_eq!(c.interval_ns, 50 * NS_PER_MS);
        assert_eq!(c.target_ns, 2_500 * NS_PER_US);
        assert_eq!(
            c.overhead,
            Overhead {
                raw: false,
                bytes: 18,
                mpu: 64,
                framing: Framing::None
            }
        );
    }

    #[test]
    fn rtt_presets_follow_table_1_1() {
        for (word, target_us, interval_us) in [
            ("datacentre", 5, 100),
            ("lan", 50, 1_000),
            ("metro", 500, 10_000),
            ("regional", 1_500, 30_000),
            ("internet", 5_000, 100_000),
            ("oceanic", 15_000, 300_000),
            ("satellite", 50_000, 1_000_000),
            ("interplanetary", 50_000_000, 1_000_000_000),
        ] {
            let c = CakeConfig::parse(word).unwrap();
            assert_eq!(c.target_ns, target_us * NS_PER_US, "{word}");
            assert_eq!(c.interval_ns, interval_us * NS_PER_US, "{word}");
        }
    }

    #[test]
    fn framing_keywords_add_in_order() {
        // pppoe-ptm adds 30 with PTM; ether-vlan adds 4 twice.
        let c = CakeConfig::parse("pppoe-ptm ether-vlan ether-vlan").unwrap();
        assert_eq!(c.overhead.bytes, 38);
        assert_eq!(c.overhead.framing, Framing::Ptm);
        // overhead sets absolutely, then keywords add.
        let c = CakeConfig::parse("overhead 10 bridged-llcsnap").unwrap();
        assert_eq!((c.overhead.bytes, c.overhead.framing), (42, Framing::Atm));
        let c = CakeConfig::parse("bridged-llcsnap overhead 10").unwrap();
        assert_eq!((c.overhead.bytes, c.overhead.framing), (10, Framing::Atm));
        let c = CakeConfig::parse("conservative").unwrap();
        assert_eq!((c.overhead.bytes, c.overhead.framing), (48, Framing::Atm));
        let c = CakeConfig::parse("ethernet").unwrap();
        assert_eq!((c.overhead.bytes, c.overhead.mpu), (38, 84));
        let c = CakeConfig::parse("docsis raw").unwrap();
        assert!(c.overhead.raw);
    }

    #[test]
    fn rates_times_and_sizes_use_tc_units() {
        assert_eq!(parse_rate("20mbit"), Some(2_500_000));
        assert_eq!(parse_rate("1gbit"), Some(125_000_000));
        assert_eq!(parse_rate("10Mbps"), Some(10_000_000));
        assert_eq!(parse_rate("256kbit"), Some(32_000));
        assert_eq!(parse_rate_or_bare("8000"), Some(1_000));
        assert_eq!(parse_rate("fast"), None);
        for bytes in [2_500_000, 187_500, 1_543_209, 125_000_000_000] {
            assert_eq!(parse_rate(&format_rate(bytes)), Some(bytes));
        }
        assert_eq!(format_rate(2_500_000), "20Mbit");
        assert_eq!(format_rate(187_500), "1500Kbit");
        assert_eq!(format_rate(1_543_209), "12345672bit");
        assert_eq!(parse_time("50ms"), Some(50 * NS_PER_MS));
        assert_eq!(parse_time("2s"), Some(2 * NS_PER_S));
        assert_eq!(parse_time("300"), Some(300 * NS_PER_US));
        assert_eq!(parse_size("32mb"), Some(32 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
    }

    #[test]
    fn bad_words_are_named_with_what_was_expected() {
        let e = CakeConfig::parse("bandwidth 20mbit diffserv5").unwrap_err();
        assert_eq!(e.position, 3);
        assert_eq!(e.word, "diffserv5");
        assert!(e.expected.contains("diffserv4"));
        let e = CakeConfig::parse("bandwidth").unwrap_err();
        assert!(e.to_string().contains("a rate such as 20mbit"), "{e}");
        let e = CakeConfig::parse("overhead 300").unwrap_err();
        assert_eq!((e.position, e.word.as_str()), (2, "300"));
        let e = CakeConfig::parse("rtt 0ms").unwrap_err();
        assert_eq!(e.word, "0ms");
    }

    #[test]
    fn printed_words_parse_back_to_the_same_config() {
        for words in [
            "",
            "bandwidth 20mbit diffserv4 dual-dsthost ack-filter docsis rtt 50ms",
            "unlimited besteffort flowblind wash ingress conservative memlimit 8mb",
            "bandwidth 1gbit diffserv8 hosts ack-filter-aggressive pppoe-ptm ether-vlan fwmark 0xff",
            "bandwidth 256kbit precedence srchost overhead -4 mpu 72 atm nat satellite",
        ] {
            let c = CakeConfig::parse(words).unwrap();
            let printed = c.to_string();
            assert_eq!(CakeConfig::parse(&printed).unwrap(), c, "{words} -> {printed}");
        }
    }
}
