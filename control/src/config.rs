//! The configuration file: what it may say, its defaults, and its validation.
//!
//! The file is TOML. Unknown keys are errors. Every error names the file, the line, the key and
//! what would have been accepted, because the person reading it may be an on-call network
//! engineer at 3 a.m. `deploy/sheetcake.toml.example` documents every key.

use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// The configuration used when `sheetcake` starts without `--config`: the demo topology that
/// `make run` builds (see `deploy/demo.sh`).
pub const EMBEDDED_DEMO: &str = include_str!("../../deploy/demo.toml");

/// The demo's subscriber file, used with [`EMBEDDED_DEMO`].
pub const EMBEDDED_DEMO_SUBSCRIBERS: &str = include_str!("../../deploy/demo-subscribers.toml");

/// Largest MTU a port may be configured with (jumbo frames), in bytes of IP packet.
pub const MAX_MTU: u16 = 9600;
/// Smallest MTU IPv4 allows (RFC 791).
pub const MIN_MTU: u16 = 68;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// DPDK's Environment Abstraction Layer.
    #[serde(default)]
    pub eal: EalSection,
    /// The control thread.
    #[serde(default)]
    pub control: ControlSection,
    /// The packet workers.
    pub workers: WorkersSection,
    /// The packet-buffer pool.
    #[serde(default)]
    pub mempool: MempoolSection,
    /// Settings shared by every port.
    #[serde(default)]
    pub ports: PortsSection,
    /// Bridged port pairs.
    #[serde(default)]
    pub pairs: Vec<PairSection>,
    /// Per-subscriber shaping.
    #[serde(default)]
    pub shaping: ShapingSection,
    /// The HTTP API and Prometheus metrics.
    #[serde(default)]
    pub api: ApiSection,
    /// What the metrics export.
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// `[api]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address and port of the HTTP API and `/metrics`; "off" turns it off.
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    /// Bearer token every request but `GET /health` must carry; required for an address
    /// other than loopback.
    pub token: Option<Spanned<String>>,
    /// Largest request body accepted, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: Spanned<u64>,
}

/// The API's default address: loopback only, so nothing is exposed until the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9180";

fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_LISTEN.into())
}
fn default_max_body() -> Spanned<u64> {
    // A bulk apply of 300,000 subscribers in the native JSON form.
    Spanned::new(0..0, 64 << 20)
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: default_listen(),
            token: None,
            max_body_bytes: default_max_body(),
        }
    }
}

/// `[metrics]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Subscribers with their own series: the busiest this many (by bytes over the last
    /// refresh), so a box of a million subscribers exports a bounded number of series.
    #[serde(default = "default_subscriber_series")]
    pub subscriber_series: Spanned<u32>,
    /// Subscribers that always have their own series, busy or not (IDs).
    #[serde(default)]
    pub subscribers: Vec<Spanned<String>>,
}

fn default_subscriber_series() -> Spanned<u32> {
    Spanned::new(0..0, 100)
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            subscriber_series: default_subscriber_series(),
            subscribers: Vec::new(),
        }
    }
}

/// The API's settings after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    /// Where to listen (`None`: off).
    pub listen: Option<std::net::SocketAddr>,
    /// The bearer token, if any.
    pub token: Option<String>,
    /// Largest body, bytes.
    pub max_body_bytes: u64,
    /// Busiest subscribers exported with their own series.
    pub subscriber_series: usize,
    /// Subscribers always exported.
    pub always_exported: Vec<String>,
}

/// Most subscribers that may have their own series (each costs about ten series).
pub const MAX_SUBSCRIBER_SERIES: u32 = 10_000;

/// `[shaping]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapingSection {
    /// The subscriber file (relative paths are relative to the configuration file): `.toml`,
    /// `.json` or LibreQoS's `.csv`. Without one, sheetcake bridges without shaping.
    pub subscribers: Option<Spanned<String>>,
    /// LibreQoS's `network.json`, whose nodes become parent nodes.
    pub network: Option<Spanned<String>>,
    /// Reload when the subscriber file (or the network file) changes.
    #[serde(default)]
    pub watch: bool,
    /// tc-cake words every download instance starts from.
    #[serde(default = "default_download_words")]
    pub download: Spanned<String>,
    /// tc-cake words every upload instance starts from.
    #[serde(default = "default_upload_words")]
    pub upload: Spanned<String>,
    /// Active flows a worker can track, over all its subscribers.
    #[serde(default = "default_flows_per_worker")]
    pub flows_per_worker: Spanned<u32>,
    /// Frames a worker may hold queued, over all its subscribers.
    #[serde(default = "default_queued_per_worker")]
    pub queued_per_worker: Spanned<u32>,
    /// Subscriber slots per worker: how many subscribers it can hold, including those added
    /// later by a reload.
    #[serde(default = "default_subscribers_per_worker")]
    pub subscribers_per_worker: Spanned<u32>,
    /// Unicast IP traffic toward no subscriber (core to access): "pass", or the tc-cake words
    /// of a default class.
    #[serde(default = "default_unknown")]
    pub unknown_download: Spanned<String>,
    /// The same from no subscriber (access to core).
    #[serde(default = "default_unknown")]
    pub unknown_upload: Spanned<String>,
}

/// The word that passes unknown traffic through unshaped.
pub const UNKNOWN_PASS: &str = "pass";

fn default_unknown() -> Spanned<String> {
    Spanned::new(0..0, UNKNOWN_PASS.into())
}

fn default_download_words() -> Spanned<String> {
    Spanned::new(0..0, "diffserv4 triple-isolate".into())
}
fn default_upload_words() -> Spanned<String> {
    // Egress semantics, like downloads: where the box itself is the upload bottleneck (the
    // plan rate is below what the modem lets through) this delivers the plan rate. Where the
    // modem already limits uploads to the plan, add `ingress` and set the rate a little below
    // it (spec 4.5); deploy/sheetcake.toml.example explains.
    Spanned::new(0..0, "diffserv4 triple-isolate".into())
}
fn default_flows_per_worker() -> Spanned<u32> {
    Spanned::new(0..0, 65_536)
}
fn default_subscribers_per_worker() -> Spanned<u32> {
    Spanned::new(0..0, 16_384)
}
fn default_queued_per_worker() -> Spanned<u32> {
    Spanned::new(0..0, 16_384)
}

impl Default for ShapingSection {
    fn default() -> Self {
        ShapingSection {
            subscribers: None,
            network: None,
            watch: false,
            download: default_download_words(),
            upload: default_upload_words(),
            flows_per_worker: default_flows_per_worker(),
            queued_per_worker: default_queued_per_worker(),
            subscribers_per_worker: default_subscribers_per_worker(),
            unknown_download: default_unknown(),
            unknown_upload: default_unknown(),
        }
    }
}

/// Shaping settings after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Shaping {
    /// The subscriber source, resolved.
    pub source: Option<crate::subscribers::SubscriberSource>,
    /// Reload when its files change.
    pub watch: bool,
    /// Default words per direction.
    pub defaults: crate::subscribers::Defaults,
    /// Active flows per worker.
    pub flows_per_worker: u32,
    /// Queued frames per worker.
    pub queued_per_worker: u32,
    /// Subscriber slots per worker.
    pub subscribers_per_worker: u32,
    /// The default class for unicast IP traffic of no subscriber, per direction (download,
    /// upload), for the whole box; `None` passes it through unshaped.
    pub unknown: [Option<sheetcake_cake::CakeConfig>; 2],
}

/// Frames each handoff ring between two workers holds: eight bursts, so a worker can hand a
/// full burst from every port to one owner for several loops before the owner must catch up.
pub const HANDOFF_RING_FRAMES: u32 = 256;

/// `[eal]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalSection {
    /// Prefix of DPDK's runtime files; two sheetcake processes on one machine need different ones.
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    /// Extra EAL arguments, appended after the ones sheetcake derives (cores, devices).
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[control]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// The CPU core of the control thread (DPDK's main lcore).
    #[serde(default = "default_control_core")]
    pub core: Spanned<usize>,
    /// Seconds between status lines; 0 turns them off.
    #[serde(default = "default_status_interval")]
    pub status_interval_seconds: Spanned<f64>,
}

/// `[workers]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSection {
    /// One worker per listed CPU core.
    pub cores: Spanned<Vec<usize>>,
}

/// `[mempool]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolSection {
    /// Number of packet buffers; computed from the ports and workers when absent.
    pub mbufs: Option<Spanned<u32>>,
    /// Per-core cache of packet buffers.
    #[serde(default = "default_cache")]
    pub cache: Spanned<u32>,
}

/// `[ports]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsSection {
    /// Largest IP packet carried, in bytes (frames add their L2 headers to it).
    #[serde(default = "default_mtu")]
    pub mtu: Spanned<u16>,
    /// Descriptors per RX queue.
    #[serde(default = "default_descriptors")]
    pub rx_descriptors: Spanned<u16>,
    /// Descriptors per TX queue.
    #[serde(default = "default_descriptors")]
    pub tx_descriptors: Spanned<u16>,
}

/// `[[pairs]]`: two ports bridged to each other.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSection {
    /// A short name for status lines.
    pub name: Spanned<String>,
    /// The port toward the core router / internet.
    pub core: Spanned<String>,
    /// The port toward the subscribers' head-end (CMTS, DSLAM, OLT).
    pub access: Spanned<String>,
}

fn default_file_prefix() -> String {
    "sheetcake".into()
}
fn default_control_core() -> Spanned<usize> {
    Spanned::new(0..0, 0)
}
fn default_status_interval() -> Spanned<f64> {
    Spanned::new(0..0, 5.0)
}
fn default_cache() -> Spanned<u32> {
    Spanned::new(0..0, 256)
}
fn default_mtu() -> Spanned<u16> {
    Spanned::new(0..0, 1500)
}
fn default_descriptors() -> Spanned<u16> {
    Spanned::new(0..0, 1024)
}

impl Default for EalSection {
    fn default() -> Self {
        EalSection {
            file_prefix: default_file_prefix(),
            args: Vec::new(),
        }
    }
}
impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            core: default_control_core(),
            status_interval_seconds: default_status_interval(),
        }
    }
}
impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection {
            mbufs: None,
            cache: default_cache(),
        }
    }
}
impl Default for PortsSection {
    fn default() -> Self {
        PortsSection {
            mtu: default_mtu(),
            rx_descriptors: default_descriptors(),
            tx_descriptors: default_descriptors(),
        }
    }
}

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `<embedded demo>`.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key, dotted (`pairs[0].core`).
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}: {}", self.file, line, self.key, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// All the errors of one file, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// How a port is named: a DPDK virtual device or a PCI NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// `net_af_packet0,iface=eth1`: created from the string with `--vdev`.
    Virtual {
        /// The whole string, passed to `--vdev`.
        spec: String,
        /// The name before the first comma, by which DPDK knows the port.
        name: String,
    },
    /// A PCI address, normalised to `dddd:bb:dd.f`.
    Pci {
        /// The address.
        address: String,
    },
}

impl Device {
    /// The name DPDK gives the port.
    pub fn port_name(&self) -> &str {
        match self {
            Device::Virtual { name, .. } => name,
            Device::Pci { address } => address,
        }
    }

    fn parse(text: &str) -> Result<Device, String> {
        let text = text.trim();
        if let Some(address) = parse_pci(text) {
            return Ok(Device::Pci { address });
        }
        let name = text.split(',').next().unwrap_or_default();
        let driver_ok = name.starts_with("net_")
            && name.len() > 4
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if driver_ok {
            return Ok(Device::Virtual {
                spec: text.to_owned(),
                name: name.to_owned(),
            });
        }
        Err(format!(
            "{text:?} is neither a PCI address (like 0000:03:00.0 or 03:00.0) nor a DPDK virtual \
             device (like net_af_packet0,iface=eth1 or net_ring0)"
        ))
    }
}

/// `dddd:bb:dd.f` or `bb:dd.f`, hexadecimal, normalised to the long form.
fn parse_pci(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (domain, bus, devfn) = match parts.as_slice() {
        [bus, devfn] => ("0000", *bus, *devfn),
        [domain, bus, devfn] => (*domain, *bus, *devfn),
        _ => return None,
    };
    let (dev, func) = devfn.split_once('.')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(domain, 4) && hex(bus, 2) && hex(dev, 2) && hex(func, 1))
        .then(|| format!("{domain}:{bus}:{dev}.{func}").to_ascii_lowercase())
}

/// The cores this process may run on, as they were when it first asked: the EAL pins the
/// control thread to its own core later, and a reload validated then must still see them all.
fn machine_cores() -> &'static [usize] {
    static CORES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CORES.get_or_init(|| {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect()
    })
}

/// A bridged pair after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Its name.
    pub name: String,
    /// `[core, access]`.
    pub ports: [Device; 2],
}

/// A configuration that passed validation: everything the appliance needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where it came from, for messages.
    pub source: String,
    /// Full EAL argument list (without the program name).
    pub eal_args: Vec<String>,
    /// `eal.file_prefix` and `eal.args` as written, to tell a reload what changed.
    pub eal_file_prefix: String,
    pub eal_extra_args: Vec<String>,
    /// Core of the control thread.
    pub control_core: usize,
    /// Worker cores, in worker order.
    pub worker_cores: Vec<usize>,
    /// Mbufs in the pool.
    pub mbufs: u32,
    /// Per-core mbuf cache.
    pub mbuf_cache: u32,
    /// Data room of each mbuf, headroom included.
    pub mbuf_data_room: u16,
    /// L3 MTU.
    pub mtu: u16,
    /// RX descriptors per queue.
    pub rx_descriptors: u16,
    /// TX descriptors per queue.
    pub tx_descriptors: u16,
    /// Seconds between status lines (0: none).
    pub status_interval_seconds: f64,
    /// The bridged pairs.
    pub pairs: Vec<Pair>,
    /// Per-subscriber shaping.
    pub shaping: Shaping,
    /// The HTTP API and metrics.
    pub api: Api,
}

/// Bytes DPDK keeps free at the start of every mbuf (`RTE_PKTMBUF_HEADROOM`).
const MBUF_HEADROOM: u32 = 128;
/// L2 bytes a frame may add to its IP packet: Ethernet (14), four VLAN tags (16), PPPoE (8),
/// rounded up generously so no legal frame ever needs a second segment.
const MAX_L2_OVERHEAD: u32 = 64;
/// The usual DPDK data room for standard frames (`RTE_MBUF_DEFAULT_DATAROOM`).
const DEFAULT_DATA_ROOM: u32 = 2048;

impl Settings {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: None,
                key: "(file)".into(),
                message: format!("cannot read the configuration file: {e}"),
            }])
        })?;
        let mut settings = Settings::parse(&text, &file)?;
        // Relative subscriber paths are relative to the configuration file.
        if let (Some(source), Some(dir)) = (&mut settings.shaping.source, path.parent()) {
            source.path = dir.join(&source.path);
            if let Some(network) = &mut source.network {
                *network = dir.join(&*network);
            }
        }
        Ok(settings)
    }

    /// Validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Settings, ConfigErrors> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, &span));
            ConfigErrors(vec![ConfigError {
                file: file.into(),
                line,
                key: "(syntax)".into(),
                message: e.message().trim().to_owned(),
            }])
        })?;
        Validator {
            text,
            file,
            errors: Vec::new(),
        }
        .validate(config)
    }
}

fn line_of(text: &str, span: &Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn api(&mut self, section: &ApiSection, metrics: &MetricsSection) -> Api {
        let text = section.listen.get_ref().trim();
        let listen = if text == "off" {
            None
        } else {
            match text.parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.error(
                        &section.listen,
                        "api.listen",
                        format!(
                            "{text:?} is not an address and port; expected like \
                             \"{DEFAULT_LISTEN}\", \"[::1]:9180\", \"0.0.0.0:9180\" (with a \
                             token) or \"off\""
                        ),
                    );
                    None
                }
            }
        };
        let token = section
            .token
            .as_ref()
            .map(|t| t.get_ref().trim().to_owned());
        if let Some(t) = &section.token {
            let text = t.get_ref().trim();
            if text.len() < 16 || !text.bytes().all(|b| b.is_ascii_graphic()) {
                self.error(
                    t,
                    "api.token",
                    "expected at least 16 printable characters without spaces (e.g. the output \
                     of `openssl rand -hex 32`)",
                );
            }
        }
        if let Some(a) = listen {
            if !a.ip().is_loopback() && token.is_none() {
                self.error(
                    &section.listen,
                    "api.listen",
                    format!(
                        "{a} is reachable from other machines, so the API needs a token: set \
                         api.token (anyone who can reach the API can change every \
                         subscriber's shaping)"
                    ),
                );
            }
        }
        let max_body = *section.max_body_bytes.get_ref();
        if !(4096..=(1u64 << 30)).contains(&max_body) {
            self.error(
                &section.max_body_bytes,
                "api.max_body_bytes",
                format!("expected 4096 to 1073741824 bytes, got {max_body}"),
            );
        }
        let series = *metrics.subscriber_series.get_ref();
        if series > MAX_SUBSCRIBER_SERIES {
            self.error(
                &metrics.subscriber_series,
                "metrics.subscriber_series",
                format!(
                    "expected 0 to {MAX_SUBSCRIBER_SERIES} subscribers (each adds about ten \
                     series to every scrape), got {series}"
                ),
            );
        }
        Api {
            listen,
            token,
            max_body_bytes: max_body,
            subscriber_series: series as usize,
            always_exported: metrics
                .subscribers
                .iter()
                .map(|s| s.get_ref().trim().to_owned())
                .collect(),
        }
    }

    fn error<T>(&mut self, value: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) {
        let span = value.span();
        let line = (span != (0..0)).then(|| line_of(self.text, &span));
        self.errors.push(ConfigError {
            file: self.file.into(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    fn validate(mut self, config: Config) -> Result<Settings, ConfigErrors> {
        let machine_cores = machine_cores();
        let cores_text = format!("{machine_cores:?}");

        let control_core = *config.control.core.get_ref();
        if !machine_cores.is_empty() && !machine_cores.contains(&control_core) {
            self.error(
                &config.control.core,
                "control.core",
                format!(
                    "core {control_core} does not exist here; this machine has cores {cores_text}"
                ),
            );
        }
        let interval = *config.control.status_interval_seconds.get_ref();
        if !(interval.is_finite() && interval >= 0.0) {
            self.error(
                &config.control.status_interval_seconds,
                "control.status_interval_seconds",
                "expected a number of seconds, 0 or more (0 turns status lines off)",
            );
        }

        let worker_cores = config.workers.cores.get_ref().clone();
        if worker_cores.is_empty() {
            self.error(
                &config.workers.cores,
                "workers.cores",
                "expected at least one core for a worker, e.g. cores = [1]",
            );
        }
        for (i, core) in worker_cores.iter().enumerate() {
            if worker_cores[..i].contains(core) {
                self.error(
                    &config.workers.cores,
                    "workers.cores",
                    format!("core {core} is listed twice; each worker needs a core of its own"),
                );
            }
            if *core == control_core {
                self.error(
                    &config.workers.cores,
                    "workers.cores",
                    format!(
                        "core {core} is also control.core; a worker polls without pause and \
                         needs its own core"
                    ),
                );
            }
            if !machine_cores.is_empty() && !machine_cores.contains(core) {
                self.error(
                    &config.workers.cores,
                    "workers.cores",
                    format!("core {core} does not exist here; this machine has cores {cores_text}"),
                );
            }
        }

        let mtu = *config.ports.mtu.get_ref();
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            self.error(
                &config.ports.mtu,
                "ports.mtu",
                format!("expected {MIN_MTU} to {MAX_MTU} bytes, got {mtu}"),
            );
        }
        for (key, value) in [
            ("ports.rx_descriptors", &config.ports.rx_descriptors),
            ("ports.tx_descriptors", &config.ports.tx_descriptors),
        ] {
            let n = *value.get_ref();
            if !(64..=16384).contains(&n) || !n.is_power_of_two() {
                self.error(
                    value,
                    key,
                    format!("expected a power of two from 64 to 16384, got {n}"),
                );
            }
        }
        let cache = *config.mempool.cache.get_ref();
        if cache > 512 {
            self.error(
                &config.mempool.cache,
                "mempool.cache",
                format!("expected 0 to 512 (DPDK's RTE_MEMPOOL_CACHE_MAX_SIZE), got {cache}"),
            );
        }

        if config.pairs.is_empty() {
            self.errors.push(ConfigError {
                file: self.file.into(),
                line: None,
                key: "pairs".into(),
                message: "expected at least one [[pairs]] section with name, core and access"
                    .into(),
            });
        }
        let mut pairs = Vec::new();
        let mut seen_names: Vec<String> = Vec::new();
        let mut seen_ports: Vec<String> = Vec::new();
        for (i, pair) in config.pairs.iter().enumerate() {
            let name = pair.name.get_ref().trim().to_owned();
            if name.is_empty() || name.contains(char::is_whitespace) {
                self.error(
                    &pair.name,
                    format!("pairs[{i}].name"),
                    "expected a short name without spaces, like \"wan0\"",
                );
            } else if seen_names.contains(&name) {
                self.error(
                    &pair.name,
                    format!("pairs[{i}].name"),
                    format!("the name {name:?} is used by another pair"),
                );
            }
            seen_names.push(name.clone());
            let mut devices = Vec::new();
            for (side, value) in [("core", &pair.core), ("access", &pair.access)] {
                match Device::parse(value.get_ref()) {
                    Ok(device) => {
                        let port = device.port_name().to_owned();
                        if seen_ports.contains(&port) {
                            self.error(
                                value,
                                format!("pairs[{i}].{side}"),
                                format!("port {port} is already used; a port belongs to one pair"),
                            );
                        }
                        seen_ports.push(port);
                        devices.push(device);
                    }
                    Err(message) => self.error(value, format!("pairs[{i}].{side}"), message),
                }
            }
            if let Ok([core, access]) = <[Device; 2]>::try_from(devices) {
                pairs.push(Pair {
                    name,
                    ports: [core, access],
                });
            }
        }

        for (key, value) in [
            ("shaping.download", &config.shaping.download),
            ("shaping.upload", &config.shaping.upload),
        ] {
            if let Err(e) = sheetcake_cake::CakeConfig::parse(value.get_ref()) {
                self.error(value, key, format!("not valid tc-cake options: {e}"));
            }
        }
        let mut unknown = [None, None];
        for (slot, key, value) in [
            (
                0,
                "shaping.unknown_download",
                &config.shaping.unknown_download,
            ),
            (1, "shaping.unknown_upload", &config.shaping.unknown_upload),
        ] {
            let words = value.get_ref().trim();
            if words == UNKNOWN_PASS {
                continue;
            }
            match sheetcake_cake::CakeConfig::parse(words) {
                Ok(_) if config.shaping.subscribers.is_none() => {
                    self.error(
                        value,
                        key,
                        "a default class shapes traffic of no subscriber, which needs \
                         shaping.subscribers (the file may list no subscriber)",
                    );
                }
                Ok(c) => unknown[slot] = Some(c),
                Err(e) => self.error(
                    value,
                    key,
                    format!(
                        "expected \"{UNKNOWN_PASS}\" (unshaped, the default) or the tc-cake \
                         options of a default class, like \"bandwidth 1gbit besteffort\": {e}"
                    ),
                ),
            }
        }
        let flows = *config.shaping.flows_per_worker.get_ref();
        if !(1_024..=16_777_216).contains(&flows) {
            self.error(
                &config.shaping.flows_per_worker,
                "shaping.flows_per_worker",
                format!("expected 1024 to 16777216 active flows, got {flows}"),
            );
        }
        let queued = *config.shaping.queued_per_worker.get_ref();
        if !(1_024..=4_194_304).contains(&queued) {
            self.error(
                &config.shaping.queued_per_worker,
                "shaping.queued_per_worker",
                format!("expected 1024 to 4194304 frames, got {queued}"),
            );
        }

        let slots = *config.shaping.subscribers_per_worker.get_ref();
        if !(1..=16_777_216).contains(&slots) {
            self.error(
                &config.shaping.subscribers_per_worker,
                "shaping.subscribers_per_worker",
                format!("expected 1 to 16777216 subscribers, got {slots}"),
            );
        }

        let workers = worker_cores.len().max(1) as u32;
        let ports = (2 * pairs.len()) as u32;
        let shaping_on = config.shaping.subscribers.is_some();
        let needed = mbufs_needed(
            ports,
            workers,
            u32::from(*config.ports.rx_descriptors.get_ref()),
            u32::from(*config.ports.tx_descriptors.get_ref()),
            cache,
        ) + if shaping_on {
            // Queued frames, the handoff rings between every two workers, and the frames
            // waiting to be handed off.
            workers * queued
                + workers * workers.saturating_sub(1) * HANDOFF_RING_FRAMES
                + workers * workers * TX_PENDING_FRAMES
        } else {
            0
        };
        let mbufs = match &config.mempool.mbufs {
            Some(value) if *value.get_ref() < needed => {
                self.error(
                    value,
                    "mempool.mbufs",
                    format!(
                        "{} mbufs cannot fill {ports} ports x {workers} workers' descriptor \
                         rings, bursts and caches; at least {needed} are needed (or leave the \
                         key out to size the pool automatically)",
                        value.get_ref()
                    ),
                );
                needed
            }
            Some(value) => *value.get_ref(),
            None => needed,
        };

        let source = config.shaping.subscribers.as_ref().and_then(|path| {
            let path = std::path::PathBuf::from(path.get_ref());
            let network = config
                .shaping
                .network
                .as_ref()
                .map(|n| std::path::PathBuf::from(n.get_ref()));
            match crate::subscribers::Format::of(&path) {
                Ok(format) => Some(crate::subscribers::SubscriberSource {
                    path,
                    format,
                    network,
                }),
                Err(message) => {
                    let value = config.shaping.subscribers.as_ref().expect("matched above");
                    self.error(value, "shaping.subscribers", message);
                    None
                }
            }
        });
        if let (Some(network), None) = (&config.shaping.network, &config.shaping.subscribers) {
            self.error(
                network,
                "shaping.network",
                "a network file gives the nodes of a subscriber file; set shaping.subscribers too",
            );
        }
        let api = self.api(&config.api, &config.metrics);

        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }

        let mut eal_args = vec![
            "-l".to_owned(),
            control_core.to_string(),
            format!("--file-prefix={}", config.eal.file_prefix),
        ];
        if pairs
            .iter()
            .flat_map(|p| &p.ports)
            .all(|d| matches!(d, Device::Virtual { .. }))
        {
            // Only virtual ports: keep DPDK's hands off the machine's PCI devices.
            eal_args.push("--no-pci".into());
        }
        for device in pairs.iter().flat_map(|p| &p.ports) {
            match device {
                Device::Virtual { spec, .. } => eal_args.push(format!("--vdev={spec}")),
                Device::Pci { address } => {
                    eal_args.push("-a".into());
                    eal_args.push(address.clone());
                }
            }
        }
        eal_args.extend(config.eal.args.iter().cloned());
        let eal_file_prefix = config.eal.file_prefix.clone();
        let eal_extra_args = config.eal.args.clone();

        let frame = u32::from(mtu) + MAX_L2_OVERHEAD;
        let data_room = MBUF_HEADROOM + DEFAULT_DATA_ROOM.max(frame.next_multiple_of(128));
        Ok(Settings {
            source: self.file.into(),
            eal_args,
            eal_file_prefix,
            eal_extra_args,
            control_core,
            worker_cores,
            mbufs,
            mbuf_cache: cache,
            mbuf_data_room: data_room as u16,
            mtu,
            rx_descriptors: *config.ports.rx_descriptors.get_ref(),
            tx_descriptors: *config.ports.tx_descriptors.get_ref(),
            status_interval_seconds: interval,
            pairs,
            api,
            shaping: Shaping {
                source,
                watch: config.shaping.watch,
                defaults: crate::subscribers::Defaults {
                    download: config.shaping.download.get_ref().clone(),
                    upload: config.shaping.upload.get_ref().clone(),
                },
                flows_per_worker: flows,
                queued_per_worker: queued,
                subscribers_per_worker: slots,
                unknown,
            },
        })
    }
}

/// When a changed key of a reloaded configuration takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// At once: the control thread applies it on the reload.
    Live,
    /// At the next start: the EAL, the ports, the pool, the workers and the API server are
    /// built once, so the running value stays until then.
    Restart,
}

/// A key whose value differs between the running configuration and a reloaded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangedKey {
    /// The key, dotted as in the file (`shaping.subscribers`).
    pub key: &'static str,
    /// When the new value takes effect.
    pub takes: Takes,
}

impl Settings {
    /// The keys whose values differ in `next`, in file order, and when each takes effect.
    ///
    /// Live: what only the control thread reads (the subscriber source and its defaults, the
    /// watch, the metrics guard, the status interval) and the API's request checks (token,
    /// body limit). Everything a worker, a port, the pool, the EAL or the API's socket was
    /// built with needs a restart; so does turning shaping on or off, since the workers were
    /// started with or without subscriber slots, and removing the token of an API other
    /// machines can reach.
    pub fn changes_to(&self, next: &Settings) -> Vec<ChangedKey> {
        use Takes::{Live, Restart};
        let mut changed = Vec::new();
        let mut key = |key: &'static str, differs: bool, takes: Takes| {
            if differs {
                changed.push(ChangedKey { key, takes });
            }
        };
        key(
            "eal.file_prefix",
            self.eal_file_prefix != next.eal_file_prefix,
            Restart,
        );
        key(
            "eal.args",
            self.eal_extra_args != next.eal_extra_args,
            Restart,
        );
        key(
            "control.core",
            self.control_core != next.control_core,
            Restart,
        );
        key(
            "control.status_interval_seconds",
            self.status_interval_seconds != next.status_interval_seconds,
            Live,
        );
        key(
            "workers.cores",
            self.worker_cores != next.worker_cores,
            Restart,
        );
        key("mempool.mbufs", self.mbufs != next.mbufs, Restart);
        key("mempool.cache", self.mbuf_cache != next.mbuf_cache, Restart);
        key("ports.mtu", self.mtu != next.mtu, Restart);
        key(
            "ports.rx_descriptors",
            self.rx_descriptors != next.rx_descriptors,
            Restart,
        );
        key(
            "ports.tx_descriptors",
            self.tx_descriptors != next.tx_descriptors,
            Restart,
        );
        key("pairs", self.pairs != next.pairs, Restart);
        let (now, then) = (&self.shaping, &next.shaping);
        // A source can be swapped for another live; shaping itself cannot start or stop.
        let toggled = now.source.is_some() != then.source.is_some();
        let source_takes = if toggled { Restart } else { Live };
        let file = |s: &Shaping| s.source.as_ref().map(|s| (s.path.clone(), s.format));
        let network = |s: &Shaping| s.source.as_ref().and_then(|s| s.network.clone());
        key("shaping.subscribers", file(now) != file(then), source_takes);
        key(
            "shaping.network",
            network(now) != network(then),
            source_takes,
        );
        key("shaping.watch", now.watch != then.watch, Live);
        key(
            "shaping.download",
            now.defaults.download != then.defaults.download,
            Live,
        );
        key(
            "shaping.upload",
            now.defaults.upload != then.defaults.upload,
            Live,
        );
        key(
            "shaping.flows_per_worker",
            now.flows_per_worker != then.flows_per_worker,
            Restart,
        );
        key(
            "shaping.queued_per_worker",
            now.queued_per_worker != then.queued_per_worker,
            Restart,
        );
        key(
            "shaping.subscribers_per_worker",
            now.subscribers_per_worker != then.subscribers_per_worker,
            Restart,
        );
        key(
            "shaping.unknown_download",
            now.unknown[0] != then.unknown[0],
            Restart,
        );
        key(
            "shaping.unknown_upload",
            now.unknown[1] != then.unknown[1],
            Restart,
        );
        let (now, then) = (&self.api, &next.api);
        key("api.listen", now.listen != then.listen, Restart);
        // The API threads read the token for every request, so a new one applies at once;
        // but the running address keeps listening until a restart, and if other machines
        // can reach it the token must stay.
        let exposed = now.listen.is_some_and(|a| !a.ip().is_loopback());
        let token_takes = if then.token.is_none() && exposed {
            Restart
        } else {
            Live
        };
        key("api.token", now.token != then.token, token_takes);
        key(
            "api.max_body_bytes",
            now.max_body_bytes != then.max_body_bytes,
            Live,
        );
        key(
            "metrics.subscriber_series",
            now.subscriber_series != then.subscriber_series,
            Live,
        );
        key(
            "metrics.subscribers",
            now.always_exported != then.always_exported,
            Live,
        );
        changed
    }

    /// These settings with the live keys among `changed` taken from `next`: what runs after a
    /// reload. The keys that need a restart keep their running values.
    pub fn with_live_keys(&self, next: &Settings, changed: &[ChangedKey]) -> Settings {
        let mut running = self.clone();
        for c in changed.iter().filter(|c| c.takes == Takes::Live) {
            match c.key {
                "control.status_interval_seconds" => {
                    running.status_interval_seconds = next.status_interval_seconds;
                }
                "shaping.subscribers" | "shaping.network" => {
                    running.shaping.source.clone_from(&next.shaping.source);
                }
                "shaping.watch" => running.shaping.watch = next.shaping.watch,
                "shaping.download" => {
                    running.shaping.defaults.download = next.shaping.defaults.download.clone();
                }
                "shaping.upload" => {
                    running.shaping.defaults.upload = next.shaping.defaults.upload.clone();
                }
                "metrics.subscriber_series" => {
                    running.api.subscriber_series = next.api.subscriber_series;
                }
                "metrics.subscribers" => {
                    running.api.always_exported = next.api.always_exported.clone();
                }
                "api.token" => running.api.token.clone_from(&next.api.token),
                "api.max_body_bytes" => running.api.max_body_bytes = next.api.max_body_bytes,
                other => unreachable!("{other} is listed as live but not applied"),
            }
        }
        running
    }
}

/// The smallest pool that can never run dry in steady state: every descriptor of every queue
/// of every port filled, every worker's pending TX buffers full plus one RX burst in hand, and
/// every per-core cache full. Plus one burst per worker of slack.
const TX_PENDING_FRAMES: u32 = sheetcake_dataplane::worker::TX_PENDING as u32;

fn mbufs_needed(ports: u32, workers: u32, rx_desc: u32, tx_desc: u32, cache: u32) -> u32 {
    use sheetcake_dataplane::worker::{BURST_SIZE, TX_PENDING};
    let rings = ports * workers * (rx_desc + tx_desc);
    let pending = workers * ports * TX_PENDING as u32;
    let caches = (workers + 1) * cache;
    let slack = workers * BURST_SIZE as u32;
    rings + pending + caches + slack
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[workers]
cores = [1]

[[pairs]]
name = "demo"
core = "net_ring0"
access = "net_ring1"
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let s = Settings::parse(GOOD, "good.toml").expect("valid");
        assert_eq!(s.mtu, 1500);
        assert_eq!(s.rx_descriptors, 1024);
        assert_eq!(s.tx_descriptors, 1024);
        assert_eq!(s.mbuf_cache, 256);
        assert_eq!(s.status_interval_seconds, 5.0);
        // 2 ports x 1 worker x (1024 + 1024) + 1 x 2 x 64 + 2 x 256 + 32
        assert_eq!(s.mbufs, 4096 + 128 + 512 + 32);
        // Standard frames fit DPDK's default 2048-byte room after the 128-byte headroom.
        assert_eq!(s.mbuf_data_room, 2176);
        assert_eq!(
            s.eal_args,
            [
                "-l",
                "0",
                "--file-prefix=sheetcake",
                "--no-pci",
                "--vdev=net_ring0",
                "--vdev=net_ring1"
            ]
        );
    }

    #[test]
    fn jumbo_mtu_gets_a_single_segment_data_room() {
        let text = format!("{GOOD}\n[ports]\nmtu = 9000\n");
        let s = Settings::parse(&text, "jumbo.toml").expect("valid");
        // 9000 + 64 rounded up to 128 is 9088, plus the 128-byte headroom.
        assert_eq!(s.mbuf_data_room, 9216);
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let text = GOOD.replace("cores = [1]", "cores = [1]\nthreads = 4");
        let err = Settings::parse(&text, "bad.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("bad.toml:4:"), "{msg}");
        assert!(msg.contains("unknown field `threads`"), "{msg}");
    }

    #[test]
    fn every_semantic_error_is_reported_at_once_with_key_and_line() {
        let text = r#"
[workers]
cores = [0, 0]

[ports]
mtu = 20
rx_descriptors = 1000

[[pairs]]
name = "a"
core = "eth0"
access = "net_ring1"

[[pairs]]
name = "a"
core = "03:00.0"
access = "net_ring1"
"#;
        let err = Settings::parse(text, "many.toml").unwrap_err();
        let keys: Vec<(&str, Option<usize>)> =
            err.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert!(keys.contains(&("workers.cores", Some(3))), "{err}");
        assert!(keys.contains(&("ports.mtu", Some(6))), "{err}");
        assert!(keys.contains(&("ports.rx_descriptors", Some(7))), "{err}");
        assert!(keys.contains(&("pairs[0].core", Some(11))), "{err}");
        assert!(keys.contains(&("pairs[1].name", Some(15))), "{err}");
        assert!(keys.contains(&("pairs[1].access", Some(17))), "{err}");
        assert!(err.to_string().contains("listed twice"), "{err}");
        assert!(err.to_string().contains("also control.core"), "{err}");
    }

    #[test]
    fn pci_addresses_are_normalised_and_allowlisted() {
        let text = GOOD
            .replace("\"net_ring0\"", "\"03:00.0\"")
            .replace("\"net_ring1\"", "\"0000:03:00.1\"");
        let s = Settings::parse(&text, "pci.toml").expect("valid");
        assert_eq!(s.pairs[0].ports[0].port_name(), "0000:03:00.0");
        assert!(!s.eal_args.contains(&"--no-pci".to_owned()));
        assert!(s.eal_args.windows(2).any(|w| w == ["-a", "0000:03:00.1"]));
    }

    #[test]
    fn too_small_pool_names_the_minimum() {
        let text = format!("{GOOD}\n[mempool]\nmbufs = 100\n");
        let err = Settings::parse(&text, "pool.toml").unwrap_err().to_string();
        assert!(err.contains("pool.toml:11: mempool.mbufs"), "{err}");
        assert!(err.contains("at least 4768"), "{err}");
    }

    #[test]
    fn unknown_traffic_passes_by_default_or_gets_a_default_class() {
        let s = Settings::parse(GOOD, "good.toml").expect("valid");
        assert_eq!(s.shaping.unknown, [None, None]);
        let text = format!(
            "{GOOD}\n[shaping]\nsubscribers = \"subs.toml\"\nunknown_download = \"bandwidth 500mbit besteffort\"\n"
        );
        let s = Settings::parse(&text, "class.toml").expect("valid");
        let class = s.shaping.unknown[0].expect("a download class");
        assert_eq!(class.bandwidth, Some(500_000_000 / 8));
        assert_eq!(s.shaping.unknown[1], None);
    }

    #[test]
    fn a_bad_default_class_says_what_is_accepted() {
        let text = format!(
            "{GOOD}\n[shaping]\nsubscribers = \"subs.toml\"\nunknown_upload = \"shape it\"\n"
        );
        let err = Settings::parse(&text, "class.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("class.toml:12: shaping.unknown_upload: expected \"pass\" (unshaped, the default) or the tc-cake options"),
            "{err}"
        );
        // Without a subscriber file there is no shaping to put it in.
        let text = format!("{GOOD}\n[shaping]\nunknown_download = \"bandwidth 1gbit\"\n");
        let err = Settings::parse(&text, "class.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs shaping.subscribers"), "{err}");
    }

    #[test]
    fn the_api_stays_on_loopback_unless_a_token_guards_it() {
        let s = Settings::parse(GOOD, "good.toml").expect("valid");
        assert_eq!(s.api.listen, Some(DEFAULT_LISTEN.parse().unwrap()));
        assert_eq!(s.api.subscriber_series, 100);
        let open = format!("{GOOD}\n[api]\nlisten = \"0.0.0.0:9180\"\n");
        let err = Settings::parse(&open, "api.toml").unwrap_err().to_string();
        assert!(err.contains("api.toml:11: api.listen: 0.0.0.0:9180 is reachable from other machines, so the API needs a token"), "{err}");
        let guarded = format!("{open}token = \"0123456789abcdef0123\"\n");
        let s = Settings::parse(&guarded, "api.toml").expect("valid with a token");
        assert_eq!(s.api.token.as_deref(), Some("0123456789abcdef0123"));
        let weak = format!("{GOOD}\n[api]\ntoken = \"secret\"\nlisten = \"localhost\"\n");
        let err = Settings::parse(&weak, "api.toml").unwrap_err().to_string();
        assert!(
            err.contains("api.token: expected at least 16 printable characters"),
            "{err}"
        );
        assert!(
            err.contains("api.listen: \"localhost\" is not an address and port"),
            "{err}"
        );
        let off = format!("{GOOD}\n[api]\nlisten = \"off\"\n");
        assert_eq!(Settings::parse(&off, "api.toml").unwrap().api.listen, None);
    }

    #[test]
    fn the_subscriber_file_format_comes_from_its_extension() {
        let csv = format!(
            "{GOOD}\n[shaping]\nsubscribers = \"ShapedDevices.csv\"\nnetwork = \"network.json\"\n"
        );
        let s = Settings::parse(&csv, "f.toml").expect("valid");
        let source = s.shaping.source.expect("a source");
        assert_eq!(source.format, crate::subscribers::Format::ShapedDevices);
        assert!(source.network.is_some());
        let odd = format!("{GOOD}\n[shaping]\nsubscribers = \"subs.txt\"\n");
        let err = Settings::parse(&odd, "f.toml").unwrap_err().to_string();
        assert!(
            err.contains("f.toml:11: shaping.subscribers: subs.txt has no known extension"),
            "{err}"
        );
    }

    /// The keys that differ between `GOOD` with `before` appended and with `after`.
    fn reload_changes(before: &str, after: &str) -> (Settings, Settings, Vec<ChangedKey>) {
        let now = Settings::parse(&format!("{GOOD}{before}"), "old.toml").expect("valid");
        let next = Settings::parse(&format!("{GOOD}{after}"), "new.toml").expect("valid");
        let changed = now.changes_to(&next);
        (now, next, changed)
    }

    #[test]
    fn an_unchanged_configuration_changes_no_key() {
        let (_, _, changed) = reload_changes("", "");
        assert_eq!(changed, []);
        // The same values written out explicitly are no change either.
        let (_, _, changed) = reload_changes("", "\n[ports]\nmtu = 1500\n");
        assert_eq!(changed, []);
    }

    #[test]
    fn what_only_the_control_thread_reads_changes_live() {
        let before = "\n[shaping]\nsubscribers = \"a.toml\"\n";
        let after = "\n[control]\nstatus_interval_seconds = 0\n\
                     [shaping]\nsubscribers = \"b.csv\"\nnetwork = \"network.json\"\n\
                     watch = true\ndownload = \"besteffort\"\nupload = \"diffserv3\"\n\
                     [metrics]\nsubscriber_series = 5\nsubscribers = [\"vip\"]\n";
        let (now, next, changed) = reload_changes(before, after);
        let keys: Vec<(&str, Takes)> = changed.iter().map(|c| (c.key, c.takes)).collect();
        assert_eq!(
            keys,
            [
                ("control.status_interval_seconds", Takes::Live),
                ("shaping.subscribers", Takes::Live),
                ("shaping.network", Takes::Live),
                ("shaping.watch", Takes::Live),
                ("shaping.download", Takes::Live),
                ("shaping.upload", Takes::Live),
                ("metrics.subscriber_series", Takes::Live),
                ("metrics.subscribers", Takes::Live),
            ]
        );
        // Every live key is applied: what runs then differs from the new file in nothing
        // but the file's name.
        let running = now.with_live_keys(&next, &changed);
        assert_eq!(running.changes_to(&next), []);
        assert_eq!(running.api.subscriber_series, 5);
        assert_eq!(running.api.always_exported, ["vip"]);
        assert_eq!(running.status_interval_seconds, 0.0);
        assert!(running.shaping.watch);
        assert_eq!(
            running.shaping.source.as_ref().map(|s| s.format),
            Some(crate::subscribers::Format::ShapedDevices)
        );
    }

    #[test]
    fn what_the_eal_ports_pool_workers_or_api_were_built_with_needs_a_restart() {
        let before = "\n[shaping]\nsubscribers = \"a.toml\"\n";
        let after = "\n[eal]\nfile_prefix = \"other\"\nargs = [\"--no-huge\"]\n\
                     [control]\ncore = 1\n";
        // The test machine may have two cores: the control and the worker swap theirs.
        let text = GOOD
            .replace("cores = [1]", "cores = [0]")
            .replace("net_ring1", "net_ring2");
        let now = Settings::parse(&format!("{GOOD}{before}"), "old.toml").unwrap();
        let next = Settings::parse(
            &format!(
                "{text}{after}\n[mempool]\ncache = 128\n[ports]\nmtu = 9000\n\
                 rx_descriptors = 512\ntx_descriptors = 512\n\
                 [shaping]\nsubscribers = \"a.toml\"\nflows_per_worker = 2048\n\
                 queued_per_worker = 2048\nsubscribers_per_worker = 10\n\
                 unknown_download = \"bandwidth 1gbit\"\nunknown_upload = \"bandwidth 1gbit\"\n\
                 [api]\nlisten = \"127.0.0.1:9999\"\ntoken = \"0123456789abcdef0123\"\n\
                 max_body_bytes = 8192\n"
            ),
            "new.toml",
        )
        .unwrap();
        let changed = now.changes_to(&next);
        let restart: Vec<&str> = changed
            .iter()
            .filter(|c| c.takes == Takes::Restart)
            .map(|c| c.key)
            .collect();
        assert_eq!(
            restart,
            [
                "eal.file_prefix",
                "eal.args",
                "control.core",
                "workers.cores",
                "mempool.mbufs",
                "mempool.cache",
                "ports.mtu",
                "ports.rx_descriptors",
                "ports.tx_descriptors",
                "pairs",
                "shaping.flows_per_worker",
                "shaping.queued_per_worker",
                "shaping.subscribers_per_worker",
                "shaping.unknown_download",
                "shaping.unknown_upload",
                "api.listen",
            ]
        );
        // Only the API's request checks apply at once; the rest keep their running values.
        let running = now.with_live_keys(&next, &changed);
        assert_eq!(running.api.token.as_deref(), Some("0123456789abcdef0123"));
        assert_eq!(running.api.max_body_bytes, 8192);
        let reverted = Settings {
            api: now.api.clone(),
            ..running
        };
        assert_eq!(reverted, now);
    }

    #[test]
    fn a_token_rotates_live_but_an_exposed_api_keeps_its_token_until_a_restart() {
        let api = |listen: &str, token: &str| {
            let token = if token.is_empty() {
                String::new()
            } else {
                format!("token = \"{token}\"\n")
            };
            format!("\n[api]\nlisten = \"{listen}\"\n{token}")
        };
        let (old, new) = ("0123456789abcdef0123", "fedcba9876543210fedc");
        let takes = |before: &str, after: &str| {
            let (_, _, changed) = reload_changes(before, after);
            changed
                .iter()
                .find(|c| c.key == "api.token")
                .map(|c| c.takes)
        };
        let exposed = "0.0.0.0:9180";
        assert_eq!(
            takes(&api(exposed, old), &api(exposed, new)),
            Some(Takes::Live)
        );
        assert_eq!(
            takes(&api(DEFAULT_LISTEN, ""), &api(DEFAULT_LISTEN, new)),
            Some(Takes::Live)
        );
        assert_eq!(
            takes(&api(DEFAULT_LISTEN, old), &api(DEFAULT_LISTEN, "")),
            Some(Takes::Live)
        );
        // Moving to loopback and dropping the token validates, but the running socket still
        // faces the network until a restart: the token stays.
        assert_eq!(
            takes(&api(exposed, old), &api(DEFAULT_LISTEN, "")),
            Some(Takes::Restart)
        );
    }

    #[test]
    fn turning_shaping_on_or_off_needs_a_restart_swapping_its_file_does_not() {
        let file = |name: &str| format!("\n[shaping]\nsubscribers = \"{name}\"\n");
        let (_, _, on) = reload_changes("", &file("a.toml"));
        let subscribers = ChangedKey {
            key: "shaping.subscribers",
            takes: Takes::Restart,
        };
        // The pool computed for shaping holds the queues too: it changes with it.
        let pool = ChangedKey {
            key: "mempool.mbufs",
            takes: Takes::Restart,
        };
        assert_eq!(on, [pool, subscribers]);
        let (_, _, off) = reload_changes(&file("a.toml"), "");
        assert_eq!(off, [pool, subscribers]);
        let (_, _, swapped) = reload_changes(&file("a.toml"), &file("b.json"));
        assert_eq!(
            swapped,
            [ChangedKey {
                key: "shaping.subscribers",
                takes: Takes::Live
            }]
        );
    }

    #[test]
    fn documented_example_config_is_valid() {
        let text = include_str!("../../deploy/sheetcake.toml.example");
        let s = Settings::parse(text, "sheetcake.toml.example").expect("the example must validate");
        assert_eq!(s.pairs[0].ports[0].port_name(), "0000:03:00.0");
    }

    #[test]
    fn embedded_demo_config_is_valid() {
        Settings::parse(EMBEDDED_DEMO, "<embedded demo>").expect("the demo config must validate");
    }
}
