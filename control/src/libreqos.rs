//! LibreQoS's `ShapedDevices.csv` and `network.json`, read into sheetcake's records, so an ISP
//! can move from LibreQoS without rewriting either file.
//!
//! Both readers only translate: they keep where every value was written and check what only
//! they can check (the CSV's columns, that the rows of one circuit agree, the tree's names).
//! The shared checks of [`crate::records`] then judge the records as they judge every source.
//! Each reader collects every error of its file before returning.
//!
//! # `ShapedDevices.csv`
//!
//! One row per device. The first row that is not a comment or blank is the header; columns are
//! found by their header name, not their position, so the 13-column layout, the newer layouts
//! with `Parent Node ID` and `Anchor Node ID` after `Parent Node`, and the optional trailing
//! `sqm` column all read the same. Header names are compared as LibreQoS's own loader compares
//! them: ASCII letters and digits only, case ignored (`Download Max Mbps`, `download_max_mbps`
//! and `DownloadMax` are one column). Columns sheetcake has no use for (`Circuit Name`,
//! `Device ID`, `Device Name`, `MAC`, `Comment`, `Anchor Node ID`, and any other) are ignored.
//!
//! - Lines whose first character is `#` are comments and blank lines are skipped, as are rows
//!   whose every field is empty (spreadsheets export those). Fields are trimmed. Quoting is
//!   the spreadsheets' (see [`crate::csv_text`]); a quote never closed is an error at its line.
//! - Every row must have as many fields as the header, as LibreQoS requires: a comma inside an
//!   unquoted field (a `Comment` such as `Down=cake, Up=fq_codel`) splits it in two.
//! - Rows sharing a `Circuit ID` are one circuit, and a circuit is one sheetcake subscriber
//!   whose ID is the circuit ID. Its addresses are the union of the `IPv4` and `IPv6` columns of
//!   all its rows; each column holds a comma-separated list of addresses or CIDR prefixes.
//!   Rows with an empty `Circuit ID` are never merged: each becomes a record of its own, which
//!   the shared checks reject for its empty ID.
//! - The plan is `Download Max Mbps` / `Upload Max Mbps`, in Mbit/s, decimals allowed.
//! - `Download Min Mbps` / `Upload Min Mbps` must be numbers, not negative and no greater than
//!   the maximum, but are otherwise unused: LibreQoS guarantees circuits their minimum under an HTB tree, while
//!   sheetcake shares a node's capacity among its subscribers in proportion to their plan rates.
//! - Every row of a circuit must give the same four rates and the same `Parent Node`; a row that
//!   disagrees is an error naming its line and the circuit's first row. (LibreQoS raises an error
//!   for a differing parent and warns, then uses the first row, for differing rates.)
//! - `Parent Node` names a node of `network.json` and becomes the subscriber's node; empty means
//!   no node. sheetcake attaches circuits by that name only: `Parent Node ID` is read only to
//!   report a row that gives it without a `Parent Node`, since that circuit would otherwise
//!   silently lose its node.
//! - `sqm`, when present and not empty, is mapped to tc-cake words applied after sheetcake's
//!   defaults. LibreQoS accepts `cake`, `fq_codel` and `none`, or `download/upload` with either
//!   side empty for "the default". `cake` adds nothing; sheetcake also accepts `cake` followed by
//!   tc-cake options (`cake diffserv4`, `cake/cake besteffort`), which it passes on. `fq_codel`
//!   and `none` are errors: sheetcake always shapes with CAKE. Case is ignored. Rows of a circuit
//!   that give an `sqm` must give the same one; rows that leave it empty take the circuit's.
//! - A record's label is `row N`, N being the 1-based file line of the circuit's first row
//!   (comments and blank lines counted); each address carries the line of the row it came from.
//!
//! # `network.json`
//!
//! An object whose keys are node names and whose values are nodes: objects with
//! `downloadBandwidthMbps`, `uploadBandwidthMbps` and optionally `children`, an object of the
//! same form. `{}` is a flat network: no nodes. Every node at every depth becomes a
//! [`NodeRecord`] whose ID is its name, the name `Parent Node` refers to.
//!
//! - sheetcake's nodes do not nest, so each node is given its effective capacity: per direction,
//!   the smallest of its own and every ancestor's, since traffic through a node also passes
//!   through all its ancestors. The rate's line is that of the node that sets it.
//! - `"virtual": true` marks a LibreQoS node that groups but does not shape: its own capacity
//!   limits neither it nor its descendants. Its capacity is that of its nearest ancestors; a
//!   virtual node with no ancestor that shapes is given sheetcake's largest rate, 400 Gbit/s,
//!   the nearest sheetcake comes to "unshaped".
//! - A node name used twice anywhere in the tree is an error: names are how circuits find
//!   their node.
//! - A node without `downloadBandwidthMbps` or `uploadBandwidthMbps` is an error. Rates are
//!   numbers (or strings holding numbers) of Mbit/s.
//! - Any other key inside a node (`type`, `id`, `parent_site`, coordinates…) is ignored:
//!   LibreQoS and its integrations keep their own data there.
//! - A record's label is `node "Site_1/AP_A"`, the path of names from the top of the tree; each
//!   value carries the line where its key is written.

use crate::config::ConfigError;
use crate::csv_text;
use crate::records::{Checker, NodeRecord, RateText, Records, SubscriberRecord, Value, MAX_RATE};
use crate::subscribers::IdMap;
use std::borrow::Cow;
use std::collections::HashMap;

const CIRCUIT_ID: &str = "Circuit ID";
const PARENT_NODE: &str = "Parent Node";
const PARENT_NODE_ID: &str = "Parent Node ID";
const IPV4: &str = "IPv4";
const IPV6: &str = "IPv6";
const DOWNLOAD_MIN: &str = "Download Min Mbps";
const UPLOAD_MIN: &str = "Upload Min Mbps";
const DOWNLOAD_MAX: &str = "Download Max Mbps";
const UPLOAD_MAX: &str = "Upload Max Mbps";
const SQM: &str = "sqm";

/// A column sheetcake reads: its name in LibreQoS's documentation (also the field name of the
/// values read from it) and the normalised header names that mean it.
struct Column {
    name: &'static str,
    aliases: &'static [&'static str],
    required: bool,
}

const COLUMNS: &[Column] = &[
    Column {
        name: CIRCUIT_ID,
        aliases: &["circuitid"],
        required: true,
    },
    Column {
        name: PARENT_NODE,
        aliases: &["parentnode"],
        required: true,
    },
    Column {
        name: PARENT_NODE_ID,
        aliases: &["parentnodeid"],
        required: false,
    },
    Column {
        name: IPV4,
        aliases: &["ipv4"],
        required: true,
    },
    Column {
        name: IPV6,
        aliases: &["ipv6"],
        required: true,
    },
    Column {
        name: DOWNLOAD_MIN,
        aliases: &["downloadminmbps", "downloadmin"],
        required: true,
    },
    Column {
        name: UPLOAD_MIN,
        aliases: &["uploadminmbps", "uploadmin"],
        required: true,
    },
    Column {
        name: DOWNLOAD_MAX,
        aliases: &["downloadmaxmbps", "downloadmax"],
        required: true,
    },
    Column {
        name: UPLOAD_MAX,
        aliases: &["uploadmaxmbps", "uploadmax"],
        required: true,
    },
    Column {
        name: SQM,
        aliases: &["sqm"],
        required: false,
    },
];

/// The header row LibreQoS documents, for error messages.
const EXPECTED_HEADER: &str = "Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,\
    IPv4,IPv6,Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment";

fn error(file: &str, line: Option<usize>, key: impl Into<String>, message: String) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        line,
        key: key.into(),
        message,
    }
}

/// A file's bytes as text, for the readers here: a leading byte-order mark is dropped, and text
/// that is not UTF-8 is an error naming the line of the first bad byte. (LibreQoS guesses among
/// Windows and ISO-8859 code pages; sheetcake does not guess.)
pub fn text_from(bytes: Vec<u8>, file: &str) -> Result<String, ConfigError> {
    // Checked in place: a copy of a million-subscriber file costs its size in fresh pages.
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            Ok(text)
        }
        Err(e) => Err(not_utf8(e.as_bytes(), &e.utf8_error(), file)),
    }
}

/// The error for `bytes` of `file`, which are not UTF-8 where `e` says.
fn not_utf8(bytes: &[u8], e: &std::str::Utf8Error, file: &str) -> ConfigError {
    let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
    let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
    let byte = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
    error(
        file,
        Some(line),
        "(file)",
        format!(
            "the file is not UTF-8 (byte 0x{byte:02x} on this line); save it as UTF-8, \
             which spreadsheet programs offer as \"CSV UTF-8\""
        ),
    )
}

/// A header name as LibreQoS compares it: ASCII letters and digits, lower-case.
fn normalise(header: &str) -> String {
    header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Where each column sheetcake reads is.
struct Layout {
    circuit: usize,
    parent: usize,
    parent_id: Option<usize>,
    ipv4: usize,
    ipv6: usize,
    download_min: usize,
    upload_min: usize,
    download_max: usize,
    upload_max: usize,
    sqm: Option<usize>,
}

impl Layout {
    fn from_header(
        header: &[Cow<str>],
        line: Option<usize>,
        file: &str,
    ) -> Result<Layout, ConfigError> {
        let mut at: HashMap<&'static str, usize> = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            let norm = normalise(name);
            let Some(column) = COLUMNS.iter().find(|c| c.aliases.contains(&norm.as_str())) else {
                continue;
            };
            if let Some(first) = at.insert(column.name, i) {
                return Err(error(
                    file,
                    line,
                    "(header)",
                    format!(
                        "columns {} and {} are both {:?}; expected each column once",
                        first + 1,
                        i + 1,
                        column.name
                    ),
                ));
            }
        }
        let missing: Vec<&str> = COLUMNS
            .iter()
            .filter(|c| c.required && !at.contains_key(c.name))
            .map(|c| c.name)
            .collect();
        let get = |name: &str| at.get(name).copied();
        match (
            get(CIRCUIT_ID),
            get(PARENT_NODE),
            get(IPV4),
            get(IPV6),
            get(DOWNLOAD_MIN),
            get(UPLOAD_MIN),
            get(DOWNLOAD_MAX),
            get(UPLOAD_MAX),
        ) {
            (
                Some(circuit),
                Some(parent),
                Some(ipv4),
                Some(ipv6),
                Some(download_min),
                Some(upload_min),
                Some(download_max),
                Some(upload_max),
            ) if missing.is_empty() => Ok(Layout {
                circuit,
                parent,
                parent_id: get(PARENT_NODE_ID),
                ipv4,
                ipv6,
                download_min,
                upload_min,
                download_max,
                upload_max,
                sqm: get(SQM),
            }),
            _ => {
                let found: Vec<String> = header.iter().map(|h| format!("{h:?}")).collect();
                Err(error(
                    file,
                    line,
                    "(header)",
                    format!(
                        "the header row lacks the column{} {}; it has {}; expected a LibreQoS \
                         header such as {EXPECTED_HEADER}",
                        if missing.len() == 1 { "" } else { "s" },
                        missing.join(", "),
                        if found.is_empty() {
                            "none".to_owned()
                        } else {
                            found.join(", ")
                        }
                    ),
                ))
            }
        }
    }
}

/// One device row, as written: slices of the file's text (copied only where unquoting changed
/// them), so a row costs no allocation until its circuit becomes a record.
struct Row<'a> {
    line: Option<usize>,
    circuit: Cow<'a, str>,
    parent: Cow<'a, str>,
    ipv4: Cow<'a, str>,
    ipv6: Cow<'a, str>,
    download_min: Cow<'a, str>,
    upload_min: Cow<'a, str>,
    download_max: Cow<'a, str>,
    upload_max: Cow<'a, str>,
    sqm: Option<Sqm>,
}

/// An `sqm` value: where it is, its text in lower case, and the tc-cake words it gives each
/// direction.
struct Sqm {
    line: Option<usize>,
    text: String,
    down: Option<String>,
    up: Option<String>,
}

impl Row<'_> {
    /// The row in errors: `row 7 (circuit)` (made only for an error: a million rows would
    /// otherwise format a million names).
    fn name(&self) -> String {
        Checker::record_name(&row_label(self.line), &self.circuit)
    }
}

fn row_label(line: Option<usize>) -> String {
    match line {
        Some(line) => format!("row {line}"),
        None => "row ?".to_owned(),
    }
}

/// The tc-cake words one side of an `sqm` value gives, or why sheetcake cannot honour it.
fn sqm_side(text: &str, side: &str) -> Result<Option<String>, String> {
    let mut words = text.split_whitespace();
    match words.next() {
        None => Ok(None),
        Some("cake") => {
            let rest: Vec<&str> = words.collect();
            Ok(if rest.is_empty() {
                None
            } else {
                Some(rest.join(" "))
            })
        }
        Some(other @ ("fq_codel" | "none")) => Err(format!(
            "{side}{other:?} cannot be honoured: sheetcake always shapes with CAKE; leave the \
             sqm column empty to use sheetcake's defaults, or write cake"
        )),
        Some(other) => Err(format!(
            "{side}{other:?} is not a queue sheetcake offers; expected an empty column, cake \
             (optionally with tc-cake options, like cake diffserv4), or download/upload such as \
             cake/cake besteffort"
        )),
    }
}

/// An `sqm` value: the same words for both directions, or `download/upload`.
fn parse_sqm(text: &str) -> Result<(Option<String>, Option<String>), String> {
    let text = text.trim().to_lowercase();
    match text.split_once('/') {
        Some((down, up)) => Ok((sqm_side(down, "download: ")?, sqm_side(up, "upload: ")?)),
        None => {
            let both = sqm_side(&text, "")?;
            Ok((both.clone(), both))
        }
    }
}

/// Whether two rates are the same: numerically when both are numbers.
fn same_rate(a: &str, b: &str) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.trim() == b.trim(),
    }
}

/// What merging a circuit's further rows needs beyond its record: the minimum rates (which the
/// record does not keep) and the first `sqm` given by any row.
struct Circuit<'a> {
    download_min: Cow<'a, str>,
    upload_min: Cow<'a, str>,
    sqm: Option<Box<Sqm>>,
}

/// The text of a rate the reader wrote (always Mbit/s).
fn mbps_text(rate: &Value<RateText>) -> &str {
    match &rate.value {
        RateText::Mbps(t) | RateText::Tc(t) => t,
    }
}

impl<'a> Circuit<'a> {
    /// A circuit of one row so far, and its record.
    fn start(row: Row<'a>) -> (SubscriberRecord, Circuit<'a>) {
        let line = row.line;
        let mut record = SubscriberRecord {
            label: row_label(line),
            id: Value::new(row.circuit.clone().into_owned(), CIRCUIT_ID, line),
            // Most circuits are one device with an IPv4 address and an IPv6 prefix.
            addresses: Vec::with_capacity(2),
            addresses_at: Value::new((), IPV4, line),
            download: Value::new(
                RateText::Mbps(row.download_max.clone().into_owned()),
                DOWNLOAD_MAX,
                line,
            ),
            upload: Value::new(
                RateText::Mbps(row.upload_max.clone().into_owned()),
                UPLOAD_MAX,
                line,
            ),
            download_options: None,
            upload_options: None,
            node: if row.parent.is_empty() {
                None
            } else {
                Some(Value::new(
                    row.parent.clone().into_owned(),
                    PARENT_NODE,
                    line,
                ))
            },
        };
        add_addresses(&mut record.addresses, &row);
        let mut circuit = Circuit {
            download_min: row.download_min,
            upload_min: row.upload_min,
            sqm: None,
        };
        if let Some(sqm) = row.sqm {
            circuit.take_sqm(&mut record, sqm);
        }
        (record, circuit)
    }

    /// The circuit's `sqm`, given by one of its rows: its words become the record's options;
    /// the circuit keeps the text and line, to compare the other rows' with.
    fn take_sqm(&mut self, record: &mut SubscriberRecord, mut sqm: Sqm) {
        record.download_options = sqm.down.take().map(|w| Value::new(w, SQM, sqm.line));
        record.upload_options = sqm.up.take().map(|w| Value::new(w, SQM, sqm.line));
        self.sqm = Some(Box::new(sqm));
    }

    fn add_sqm(
        &mut self,
        record: &mut SubscriberRecord,
        row: &mut Row,
        file: &str,
        errors: &mut Vec<ConfigError>,
    ) {
        let Some(sqm) = row.sqm.take() else {
            return;
        };
        match &self.sqm {
            None => self.take_sqm(record, sqm),
            Some(first) => {
                if first.text != sqm.text {
                    errors.push(error(
                        file,
                        row.line,
                        format!("{}.{SQM}", row.name()),
                        format!(
                            "{SQM} is {:?} here but {:?} on line {}; every row of circuit {:?} \
                             is one subscriber, so the rows must agree",
                            sqm.text,
                            first.text,
                            first.line.map_or("?".to_owned(), |l| l.to_string()),
                            row.circuit
                        ),
                    ));
                }
            }
        }
    }

    /// Merges a further row of this circuit into its record, reporting what it contradicts.
    fn merge(
        &mut self,
        record: &mut SubscriberRecord,
        mut row: Row<'a>,
        file: &str,
        errors: &mut Vec<ConfigError>,
    ) {
        let parent = record.node.as_ref().map_or("", |n| n.value.as_str());
        let rates = [
            (
                DOWNLOAD_MAX,
                mbps_text(&record.download),
                &*row.download_max,
            ),
            (UPLOAD_MAX, mbps_text(&record.upload), &*row.upload_max),
            (DOWNLOAD_MIN, &*self.download_min, &*row.download_min),
            (UPLOAD_MIN, &*self.upload_min, &*row.upload_min),
        ];
        let mut disagreements: Vec<(&str, &str, &str)> = rates
            .into_iter()
            .filter(|(_, a, b)| !same_rate(a, b))
            .collect();
        if parent != row.parent {
            disagreements.push((PARENT_NODE, parent, &row.parent));
        }
        for (field, theirs, ours) in disagreements {
            errors.push(error(
                file,
                row.line,
                format!("{}.{field}", row.name()),
                format!(
                    "{field} is {ours:?} here but {theirs:?} on line {}, the first row of \
                     circuit {:?}; every row of a circuit is one subscriber, so the rows must agree",
                    record.id.line.map_or("?".to_owned(), |l| l.to_string()),
                    row.circuit
                ),
            ));
        }
        add_addresses(&mut record.addresses, &row);
        self.add_sqm(record, &mut row, file, errors);
    }
}

/// Adds a row's addresses that the circuit does not have yet. A circuit has a handful of
/// addresses, so a scan of those it has costs less than a set per circuit.
fn add_addresses(addresses: &mut Vec<Value<String>>, row: &Row<'_>) {
    for (field, list) in [(IPV4, &row.ipv4), (IPV6, &row.ipv6)] {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !addresses.iter().any(|a| a.value == item) {
                addresses.push(Value::new(item.to_owned(), field, row.line));
            }
        }
    }
}

/// Checks what one row says on its own, reporting to `errors`.
fn check_row(row: &Row<'_>, parent_id: &str, file: &str, errors: &mut Vec<ConfigError>) {
    let mut report = |field: &str, message: String| {
        errors.push(error(
            file,
            row.line,
            format!("{}.{field}", row.name()),
            message,
        ));
    };
    for (max_field, max, min_field, min) in [
        (
            DOWNLOAD_MAX,
            &row.download_max,
            DOWNLOAD_MIN,
            &row.download_min,
        ),
        (UPLOAD_MAX, &row.upload_max, UPLOAD_MIN, &row.upload_min),
    ] {
        // The shared checks would say the same; saying it here reports it with the rest.
        if let Err(message) = RateText::mbps_bytes_per_second(max) {
            report(max_field, message);
        }
        match min.trim().parse::<f64>() {
            Ok(m) if m.is_finite() && m >= 0.0 => {
                if let Ok(x) = max.trim().parse::<f64>() {
                    if m > x {
                        report(
                            min_field,
                            format!(
                                "{m} Mbit/s is more than {max_field} ({x}); expected a minimum \
                                 no greater than the maximum"
                            ),
                        );
                    }
                }
            }
            _ => report(
                min_field,
                format!("{min:?} is not a rate; expected a number of Mbit/s, like 1 or 0.5"),
            ),
        }
    }
    if row.parent.is_empty() && !parent_id.is_empty() {
        report(
            PARENT_NODE_ID,
            format!(
                "{PARENT_NODE_ID} is {parent_id:?} but {PARENT_NODE} is empty; sheetcake finds a \
                 circuit's node by its name, so write the node's name in {PARENT_NODE}"
            ),
        );
    }
}

/// Reads LibreQoS's `ShapedDevices.csv`: one subscriber per circuit, in the order of each
/// circuit's first row; `nodes` is left empty (they are in `network.json`, see
/// [`parse_network_json`]). `file` names the file in errors. The module documentation gives
/// every rule.
pub fn parse_shaped_devices(text: &str, file: &str) -> Result<Records, Vec<ConfigError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv_text::Records::new(text);
    let mut errors = Vec::new();
    let mut layout: Option<(Layout, usize)> = None;
    // A record per circuit, in the order of its first row, and what merging its other rows
    // needs: about one circuit per 80 bytes of file.
    let mut subscribers: Vec<SubscriberRecord> = Vec::with_capacity(text.len() / 80);
    let mut circuits: Vec<Circuit> = Vec::with_capacity(text.len() / 80);
    // Keyed by slices of the text, sized so the map does not rehash as it grows.
    let mut by_id: IdMap<usize, Cow<str>> = IdMap::default();
    by_id.reserve(text.len() / 80);
    let mut record: Vec<Cow<str>> = Vec::new();
    while let Some(read) = reader.next_into(&mut record) {
        let line = match read {
            Ok(line) => Some(line),
            Err(csv_text::Unclosed { line }) => {
                errors.push(error(
                    file,
                    Some(line),
                    "(syntax)",
                    "a field opens a double quote on this line that no later quote closes; \
                     close it, or write a quote inside a quoted field as two (\"\")"
                        .to_owned(),
                ));
                break;
            }
        };
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let Some((columns, width)) = &layout else {
            match Layout::from_header(&record, line, file) {
                Ok(l) => layout = Some((l, record.len())),
                Err(e) => return Err(vec![e]),
            }
            continue;
        };
        if record.len() != *width {
            errors.push(error(
                file,
                line,
                row_label(line),
                format!(
                    "the row has {} fields but the header has {width}; a field holding a comma \
                     must be in double quotes, like \"100.64.0.1, 100.64.0.2\"",
                    record.len()
                ),
            ));
            continue;
        }
        // Every index is below the width the header set, which this record has.
        let mut field = |i: usize| std::mem::take(&mut record[i]);
        let circuit = field(columns.circuit);
        let sqm_text = columns.sqm.map(&mut field).unwrap_or_default();
        let sqm = if sqm_text.is_empty() {
            None
        } else {
            match parse_sqm(&sqm_text) {
                Ok((down, up)) => Some(Sqm {
                    line,
                    text: sqm_text.to_lowercase(),
                    down,
                    up,
                }),
                Err(message) => {
                    let name = Checker::record_name(&row_label(line), &circuit);
                    errors.push(error(file, line, format!("{name}.{SQM}"), message));
                    None
                }
            }
        };
        let row = Row {
            line,
            circuit,
            parent: field(columns.parent),
            ipv4: field(columns.ipv4),
            ipv6: field(columns.ipv6),
            download_min: field(columns.download_min),
            upload_min: field(columns.upload_min),
            download_max: field(columns.download_max),
            upload_max: field(columns.upload_max),
            sqm,
        };
        let parent_id = columns.parent_id.map(&mut field).unwrap_or_default();
        check_row(&row, &parent_id, file, &mut errors);
        match by_id.get(row.circuit.as_ref()).copied() {
            Some(i) if !row.circuit.is_empty() => {
                if let (Some(r), Some(c)) = (subscribers.get_mut(i), circuits.get_mut(i)) {
                    c.merge(r, row, file, &mut errors);
                }
            }
            _ => {
                if !row.circuit.is_empty() {
                    by_id.insert(row.circuit.clone(), circuits.len());
                }
                let (record, circuit) = Circuit::start(row);
                subscribers.push(record);
                circuits.push(circuit);
            }
        }
    }
    if layout.is_none() && errors.is_empty() {
        errors.push(error(
            file,
            None,
            "(header)",
            format!(
                "the file has no header row; expected a LibreQoS header such as {EXPECTED_HEADER}"
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Records {
        subscribers,
        nodes: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// network.json

const DOWNLOAD_BANDWIDTH: &str = "downloadBandwidthMbps";
const UPLOAD_BANDWIDTH: &str = "uploadBandwidthMbps";
const CHILDREN: &str = "children";
const VIRTUAL: &str = "virtual";

/// sheetcake's largest rate in Mbit/s: what a virtual node with no shaping ancestor gets.
const UNLIMITED_MBPS: u64 = MAX_RATE * 8 / 1_000_000;

/// A JSON value as the scanner keeps it: objects keep their keys' order and lines.
enum Json {
    Object(Vec<Member>),
    Number(String),
    String(String),
    Bool(bool),
    Null,
    Array,
}

struct Member {
    key: String,
    line: usize,
    value: Json,
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Object(_) => "an object",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Bool(_) => "true or false",
            Json::Null => "null",
            Json::Array => "an array",
        }
    }
}

/// A JSON reader that keeps the line of every key. It runs only on text serde_json accepted,
/// but stops (returns `None`) rather than panicking on anything it does not expect.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

/// Deeper than serde_json's own recursion limit, so never reached on text it accepted.
const MAX_DEPTH: usize = 256;

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn space(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => break,
            }
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.space();
        (self.peek()? == b).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &str, value: Json) -> Option<Json> {
        let end = self.pos.checked_add(word.len())?;
        (self.text.get(self.pos..end)? == word).then(|| {
            self.pos = end;
            value
        })
    }

    fn string(&mut self) -> Option<String> {
        self.space();
        let start = self.pos;
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        serde_json::from_str(self.text.get(start..self.pos)?).ok()
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.space();
        match self.peek()? {
            b'{' => {
                self.pos += 1;
                let mut members = Vec::new();
                self.space();
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Some(Json::Object(members));
                }
                loop {
                    self.space();
                    let line = self.line;
                    let key = self.string()?;
                    self.eat(b':')?;
                    let value = self.value(depth + 1)?;
                    members.push(Member { key, line, value });
                    self.space();
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b'}' => {
                            self.pos += 1;
                            return Some(Json::Object(members));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                self.space();
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Some(Json::Array);
                }
                loop {
                    self.value(depth + 1)?;
                    self.space();
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Some(Json::Array);
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(Json::String),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Null),
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                ) {
                    self.pos += 1;
                }
                Some(Json::Number(self.text.get(start..self.pos)?.to_owned()))
            }
            _ => None,
        }
    }
}

/// A capacity in force along a path of the tree: the rate as written, and its key's line.
#[derive(Clone)]
struct Capacity {
    bytes: u64,
    text: String,
    line: usize,
}

/// The smaller of an ancestor's capacity and a node's own.
fn smaller(inherited: Option<Capacity>, own: Option<Capacity>) -> Option<Capacity> {
    match (inherited, own) {
        (Some(a), Some(b)) => Some(if b.bytes < a.bytes { b } else { a }),
        (a, b) => a.or(b),
    }
}

struct TreeReader<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
    nodes: Vec<NodeRecord>,
    /// Each name seen, with its node's label and line.
    seen: HashMap<String, (String, usize)>,
}

impl TreeReader<'_> {
    fn report(&mut self, line: usize, key: String, message: String) {
        self.errors.push(error(self.file, Some(line), key, message));
    }

    /// A node's own capacity in one direction, if it gives a good one.
    fn own_capacity(
        &mut self,
        name: &str,
        node_line: usize,
        node: &[Member],
        key: &'static str,
    ) -> Option<Capacity> {
        let Some(member) = node.iter().rev().find(|m| m.key == key) else {
            self.report(
                node_line,
                name.to_owned(),
                format!(
                    "the node has no {key}; expected its capacity in Mbit/s, like \"{key}\": 1000"
                ),
            );
            return None;
        };
        let text = match &member.value {
            Json::Number(t) | Json::String(t) => t.clone(),
            other => {
                let message = format!(
                    "{key} is {}; expected a number of Mbit/s, like 1000",
                    other.kind()
                );
                self.report(member.line, format!("{name}.{key}"), message);
                return None;
            }
        };
        match RateText::mbps_bytes_per_second(&text) {
            Ok(bytes) => Some(Capacity {
                bytes,
                text,
                line: member.line,
            }),
            Err(message) => {
                self.report(member.line, format!("{name}.{key}"), message);
                None
            }
        }
    }

    /// Reads the nodes of one level: `members` of the top object or of a `children` object.
    fn level(
        &mut self,
        members: &[Member],
        path: &str,
        down: Option<&Capacity>,
        up: Option<&Capacity>,
    ) {
        for m in members {
            let full = if path.is_empty() {
                m.key.clone()
            } else {
                format!("{path}/{}", m.key)
            };
            let label = format!("node {full:?}");
            let name = Checker::record_name(&label, &m.key);
            let duplicate = match self.seen.get(&m.key) {
                Some((other, line)) => {
                    let message = format!(
                        "the name {:?} is also {other} on line {line}; nodes are found by name \
                         (the Parent Node column), so each name must be used once in the tree",
                        m.key
                    );
                    self.report(m.line, name.clone(), message);
                    true
                }
                None => {
                    self.seen.insert(m.key.clone(), (label.clone(), m.line));
                    false
                }
            };
            let Json::Object(node) = &m.value else {
                let message = format!(
                    "the node is {}; expected an object with {DOWNLOAD_BANDWIDTH} and \
                     {UPLOAD_BANDWIDTH}",
                    m.value.kind()
                );
                self.report(m.line, name, message);
                continue;
            };
            let own_down = self.own_capacity(&name, m.line, node, DOWNLOAD_BANDWIDTH);
            let own_up = self.own_capacity(&name, m.line, node, UPLOAD_BANDWIDTH);
            let is_virtual = match node.iter().rev().find(|x| x.key == VIRTUAL) {
                None => false,
                Some(Member {
                    value: Json::Bool(b),
                    ..
                }) => *b,
                Some(x) => {
                    let message =
                        format!("{VIRTUAL} is {}; expected true or false", x.value.kind());
                    self.report(x.line, format!("{name}.{VIRTUAL}"), message);
                    false
                }
            };
            let (down, up) = if is_virtual {
                (down.cloned(), up.cloned())
            } else {
                (
                    smaller(down.cloned(), own_down),
                    smaller(up.cloned(), own_up),
                )
            };
            if !duplicate {
                let unlimited = || Capacity {
                    bytes: MAX_RATE,
                    text: UNLIMITED_MBPS.to_string(),
                    line: m.line,
                };
                let rate = |c: &Option<Capacity>, key: &'static str| {
                    c.clone()
                        .or_else(|| is_virtual.then(unlimited))
                        .map(|c| Value::new(RateText::Mbps(c.text), key, Some(c.line)))
                };
                if let (Some(download), Some(upload)) =
                    (rate(&down, DOWNLOAD_BANDWIDTH), rate(&up, UPLOAD_BANDWIDTH))
                {
                    self.nodes.push(NodeRecord {
                        label: label.clone(),
                        id: Value::new(m.key.clone(), "name", Some(m.line)),
                        download,
                        upload,
                    });
                }
            }
            match node.iter().rev().find(|x| x.key == CHILDREN) {
                None
                | Some(Member {
                    value: Json::Null, ..
                }) => {}
                Some(Member {
                    value: Json::Object(children),
                    ..
                }) => self.level(children, &full, down.as_ref(), up.as_ref()),
                Some(x) => {
                    let message = format!(
                        "{CHILDREN} is {}; expected an object whose keys are the child nodes' names",
                        x.value.kind()
                    );
                    self.report(x.line, format!("{name}.{CHILDREN}"), message);
                }
            }
        }
    }
}

/// Reads LibreQoS's `network.json`: every node of the tree, parents before their children, in
/// the file's order, each with its effective capacity (the smallest along its path). `file`
/// names the file in errors. The module documentation gives every rule.
pub fn parse_network_json(text: &str, file: &str) -> Result<Vec<NodeRecord>, Vec<ConfigError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        let line = (e.line() > 0).then(|| e.line());
        return Err(vec![error(
            file,
            line,
            "(syntax)",
            format!("not valid JSON: {e}"),
        )]);
    }
    let mut scanner = Scanner {
        text,
        pos: 0,
        line: 1,
    };
    let top = match scanner.value(0) {
        Some(Json::Object(members)) => members,
        Some(other) => {
            return Err(vec![error(
                file,
                Some(1),
                "(top)",
                format!(
                    "the file holds {}; expected an object whose keys are the top nodes' names, \
                     or {{}} for a flat network",
                    other.kind()
                ),
            )])
        }
        None => {
            return Err(vec![error(
                file,
                None,
                "(syntax)",
                "the JSON could not be read".to_owned(),
            )])
        }
    };
    let mut reader = TreeReader {
        file,
        errors: Vec::new(),
        nodes: Vec::new(),
        seen: HashMap::new(),
    };
    reader.level(&top, "", None, None);
    if reader.errors.is_empty() {
        Ok(reader.nodes)
    } else {
        Err(reader.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,\
        Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment";

    /// A file of `HEADER` (line 1) and `rows` (lines 2, 3, …).
    fn csv(rows: &[&str]) -> String {
        let mut text = HEADER.to_owned();
        for r in rows {
            text.push('\n');
            text.push_str(r);
        }
        text.push('\n');
        text
    }

    fn devices(text: &str) -> Records {
        match parse_shaped_devices(text, "ShapedDevices.csv") {
            Ok(r) => r,
            Err(e) => panic!("unexpected errors: {e:#?}"),
        }
    }

    /// A record's addresses as written.
    fn addresses_of(r: &SubscriberRecord) -> Vec<&str> {
        r.addresses.iter().map(|a| a.value.as_str()).collect()
    }

    fn device_errors(text: &str) -> Vec<ConfigError> {
        match parse_shaped_devices(text, "ShapedDevices.csv") {
            Ok(r) => panic!("expected errors, got {r:#?}"),
            Err(e) => e,
        }
    }

    fn v(text: &str, field: &'static str, line: usize) -> Value<String> {
        Value::new(text.to_owned(), field, Some(line))
    }

    /// LibreQoS's example layout: comments before the header, the `sqm` column, quoted address
    /// lists, IPv6 prefixes, decimal rates, one circuit of two devices, a flat circuit.
    const EXAMPLE: &str = "\
# LibreQoS Shaped Devices Configuration Example
#
# Accepts: \"cake\", \"fq_codel\", \"none\" or directional form \"down_sqm/up_sqm\".
Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment,sqm
1,\"968 Circle St., Gurnee, IL 60031\",1,Device 1,AP_A,,\"100.64.0.1, 100.64.0.14\",fdd7:b724:0:100::/56,1,1,155,20,Standard integer rates,
3,\"255 NW. Newport Ave., Jamestown, NY 14701\",3,Device 3,AP_9,,100.64.0.3,fdd7:b724:0:300::/56,1.25,0.75,10.5,5.25,Fractional rate example,

2794,\"6 Littleton Drive, Ringgold, GA 30736\",5,Device 5,AP_11,,100.64.0.5,fdd7:b724:0:500::/56,1,1,105,18,Standard integer rates,
# a comment between the devices of one circuit
2794,\"6 Littleton Drive, Ringgold, GA 30736\",6,Device 6,AP_11,,100.64.0.6,\"fdd7:b724:0:600::/56, fdd7:b724:0:601::/64\",1,1,105,18,Standard integer rates,
9,\"525 Birchpond St., Romulus, MI 48174\",11,Device 11,,,,,1,1,105,18,,
";

    #[test]
    fn libreqos_example_merges_devices_of_a_circuit() {
        let r = devices(EXAMPLE);
        assert!(r.nodes.is_empty());
        let ids: Vec<&str> = r.subscribers.iter().map(|s| s.id.value.as_str()).collect();
        assert_eq!(ids, ["1", "3", "2794", "9"]);

        let first = &r.subscribers[0];
        assert_eq!(first.label, "row 5");
        assert_eq!(first.id, v("1", "Circuit ID", 5));
        assert_eq!(
            first.addresses,
            [
                v("100.64.0.1", "IPv4", 5),
                v("100.64.0.14", "IPv4", 5),
                v("fdd7:b724:0:100::/56", "IPv6", 5),
            ]
        );
        assert_eq!(first.node, Some(v("AP_A", "Parent Node", 5)));

        let fractional = &r.subscribers[1];
        assert_eq!(
            fractional.download,
            Value::new(RateText::Mbps("10.5".into()), "Download Max Mbps", Some(6))
        );
        assert_eq!(
            fractional.upload,
            Value::new(RateText::Mbps("5.25".into()), "Upload Max Mbps", Some(6))
        );

        assert_eq!(
            r.subscribers[2],
            SubscriberRecord {
                label: "row 8".into(),
                id: v("2794", "Circuit ID", 8),
                addresses: vec![
                    v("100.64.0.5", "IPv4", 8),
                    v("fdd7:b724:0:500::/56", "IPv6", 8),
                    v("100.64.0.6", "IPv4", 10),
                    v("fdd7:b724:0:600::/56", "IPv6", 10),
                    v("fdd7:b724:0:601::/64", "IPv6", 10),
                ],
                addresses_at: Value::new((), "IPv4", Some(8)),
                download: Value::new(RateText::Mbps("105".into()), "Download Max Mbps", Some(8)),
                upload: Value::new(RateText::Mbps("18".into()), "Upload Max Mbps", Some(8)),
                download_options: None,
                upload_options: None,
                node: Some(v("AP_11", "Parent Node", 8)),
            }
        );

        // No parent: a flat circuit. No address: an empty list, for the shared checks to report.
        let flat = &r.subscribers[3];
        assert_eq!(flat.label, "row 11");
        assert_eq!(flat.node, None);
        assert!(flat.addresses.is_empty());
        assert_eq!(flat.addresses_at, Value::new((), "IPv4", Some(11)));
    }

    #[test]
    fn crlf_line_ends_read_the_same() {
        let crlf = EXAMPLE.replace('\n', "\r\n");
        assert_eq!(devices(&crlf), devices(EXAMPLE));
    }

    #[test]
    fn an_address_given_twice_in_a_circuit_is_listed_once() {
        let r = devices(&csv(&[
            "c,,1,,,,\"10.0.0.1, 10.0.0.2,\",,1,1,50,10,",
            "c,,2,,,,10.0.0.2,,1,1,50,10,",
        ]));
        assert_eq!(addresses_of(&r.subscribers[0]), ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn columns_are_found_by_name_in_any_order_and_spelling() {
        let text = "\
 upload_max_mbps , DOWNLOAD MAX MBPS,ipv6,IPv4,Parent Node ID,Anchor Node ID,parent node,Upload Min,Download Min,Circuit ID
20,100,,192.0.2.0/24,n-1,a-1,Tower,1,1,c-9
";
        let r = devices(text);
        let s = &r.subscribers[0];
        assert_eq!(s.id, v("c-9", "Circuit ID", 2));
        assert_eq!(s.addresses, [v("192.0.2.0/24", "IPv4", 2)]);
        assert_eq!(
            s.download,
            Value::new(RateText::Mbps("100".into()), "Download Max Mbps", Some(2))
        );
        assert_eq!(
            s.upload,
            Value::new(RateText::Mbps("20".into()), "Upload Max Mbps", Some(2))
        );
        assert_eq!(s.node, Some(v("Tower", "Parent Node", 2)));
    }

    #[test]
    fn missing_columns_are_one_error_naming_them_and_what_was_found() {
        let e = device_errors(
            "Circuit ID,Parent Node,IPv4,Download Min Mbps,Upload Min Mbps,Download Max Mbps\n\
             1,,10.0.0.1,1,1,10\n",
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, Some(1));
        assert_eq!(e[0].key, "(header)");
        assert!(
            e[0].message.contains("IPv6, Upload Max Mbps"),
            "{}",
            e[0].message
        );
        assert!(
            e[0].message.contains("\"Download Max Mbps\""),
            "{}",
            e[0].message
        );

        let e = device_errors("# only a comment\n\n");
        assert_eq!(e[0].key, "(header)");
    }

    #[test]
    fn a_header_alone_is_no_subscribers() {
        assert_eq!(devices(&csv(&[])), Records::default());
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_counted() {
        let text = "\
# comment

# \"a quote\", and a comma
"
        .to_owned()
            + &csv(&[
                "",
                "# between rows",
                "   ",
                ",,,,,,,,,,,,",
                "x,,1,,,,10.0.0.1,,1,1,50,10,",
            ]);
        let r = devices(&text);
        assert_eq!(r.subscribers.len(), 1);
        assert_eq!(r.subscribers[0].label, "row 9");
        assert_eq!(r.subscribers[0].addresses, [v("10.0.0.1", "IPv4", 9)]);
    }

    #[test]
    fn a_bad_rate_names_its_line_and_column() {
        let e = device_errors(&csv(&[
            "a,,1,,,,10.0.0.1,,1,1,50,10,",
            "b,,2,,,,10.0.0.2,,1,1,fast,10,",
            "c,,3,,,,10.0.0.3,,slow,1,50,10,",
            "d,,4,,,,10.0.0.4,,1,20,50,10,",
        ]));
        let found: Vec<(Option<usize>, &str)> =
            e.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            found,
            [
                (Some(3), "row 3 (b).Download Max Mbps"),
                (Some(4), "row 4 (c).Download Min Mbps"),
                (Some(5), "row 5 (d).Upload Min Mbps"),
            ]
        );
        assert!(e[0].message.contains("\"fast\""));
        assert!(e[1].message.contains("\"slow\""));
        assert!(e[2].message.contains("more than Upload Max Mbps"));
        assert!(e.iter().all(|e| e.file == "ShapedDevices.csv"));
    }

    #[test]
    fn rates_out_of_range_are_reported_with_the_rest() {
        let e = device_errors(&csv(&["a,,1,,,,10.0.0.1,,0,0,0.05,500000,"]));
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["row 2 (a).Download Max Mbps", "row 2 (a).Upload Max Mbps"]
        );
    }

    #[test]
    fn rows_of_a_circuit_must_agree() {
        let e = device_errors(&csv(&[
            "c,,1,,AP_1,,10.0.0.1,,1,1,100,20,",
            "c,,2,,AP_1,,10.0.0.2,,1,1,100.0,20,",
            "c,,3,,AP_2,,10.0.0.3,,1,1,200,20,",
        ]));
        assert_eq!(e.len(), 2, "{e:#?}");
        assert_eq!(e[0].line, Some(4));
        assert_eq!(e[0].key, "row 4 (c).Download Max Mbps");
        assert!(e[0].message.contains("\"200\" here but \"100\" on line 2"));
        assert_eq!(e[1].key, "row 4 (c).Parent Node");
        assert!(e[1]
            .message
            .contains("\"AP_2\" here but \"AP_1\" on line 2"));
    }

    #[test]
    fn rows_without_a_circuit_id_are_not_merged() {
        let r = devices(&csv(&[
            ",,1,,,,10.0.0.1,,1,1,100,20,",
            ",,2,,,,10.0.0.2,,1,1,50,20,",
        ]));
        let labels: Vec<&str> = r.subscribers.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["row 2", "row 3"]);
        assert_eq!(r.subscribers[1].id, v("", "Circuit ID", 3));
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_names_its_line() {
        // LibreQoS's own example has a Comment with an unquoted comma: one field too many.
        let e = device_errors(&csv(&[
            "a,,1,,,,10.0.0.1,,1,1,100,20,Down=cake, Up=fq_codel",
            "b,,2,,,,10.0.0.2,,1,1,100,20",
            "c,,3,,,,\"10.0.0.3,\n10.0.0.4\",,1,1,100,20,",
            "d,,4,,,,10.0.0.5,,1,1,100,20,,",
        ]));
        let found: Vec<Option<usize>> = e.iter().map(|e| e.line).collect();
        assert_eq!(found, [Some(2), Some(3), Some(6)], "{e:#?}");
        assert!(e[0].message.contains("14 fields but the header has 13"));
    }

    #[test]
    fn quoted_fields_read_as_written_and_a_quote_never_closed_names_its_line() {
        let r = devices(&csv(&[
            "\"a\",,1,,,,\"10.0.0.1, 10.0.0.2\",,1,1,100,20,\"say \"\"hi\"\", twice\"",
        ]));
        assert_eq!(r.subscribers[0].id.value, "a");
        assert_eq!(addresses_of(&r.subscribers[0]), ["10.0.0.1", "10.0.0.2"]);
        let e = device_errors(&csv(&[
            "b,,2,,,,10.0.0.2,,1,1,100,20,",
            "c,,3,,,,10.0.0.3,,1,1,100,20,\"no end",
            "d,,4,,,,10.0.0.4,,1,1,100,20,",
        ]));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!((e[0].line, e[0].key.as_str()), (Some(3), "(syntax)"));
        assert!(e[0].message.contains("no later quote closes"), "{e:#?}");
    }

    #[test]
    fn a_parent_node_id_without_a_parent_node_is_an_error() {
        let e = device_errors(
            "Circuit ID,Parent Node,Parent Node ID,IPv4,IPv6,Download Min Mbps,Upload Min Mbps,\
             Download Max Mbps,Upload Max Mbps\n\
             a,,node-17,10.0.0.1,,1,1,100,20\n",
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key, "row 2 (a).Parent Node ID");
    }

    fn with_sqm(values: &[&str]) -> Result<Records, Vec<ConfigError>> {
        let mut text = format!("{HEADER},sqm\n");
        for (i, s) in values.iter().enumerate() {
            text.push_str(&format!("c{i},,{i},,,,10.0.0.{i},,1,1,100,20,,{s}\n"));
        }
        parse_shaped_devices(&text, "ShapedDevices.csv")
    }

    #[test]
    fn sqm_maps_to_cake_words_per_direction() {
        let r = match with_sqm(&[
            "",
            "cake",
            "cake diffserv4",
            "CAKE besteffort/cake diffserv8 nat",
            "cake/",
            "/cake ack-filter",
        ]) {
            Ok(r) => r,
            Err(e) => panic!("{e:#?}"),
        };
        type Words = Option<Value<String>>;
        let words: Vec<(Words, Words)> = r
            .subscribers
            .iter()
            .map(|s| (s.download_options.clone(), s.upload_options.clone()))
            .collect();
        assert_eq!(
            words,
            [
                (None, None),
                (None, None),
                (
                    Some(v("diffserv4", "sqm", 4)),
                    Some(v("diffserv4", "sqm", 4))
                ),
                (
                    Some(v("besteffort", "sqm", 5)),
                    Some(v("diffserv8 nat", "sqm", 5))
                ),
                (None, None),
                (None, Some(v("ack-filter", "sqm", 7))),
            ]
        );
    }

    #[test]
    fn sqm_that_sheetcake_cannot_honour_is_refused() {
        let e = with_sqm(&[
            "fq_codel",
            "cake/none",
            "/fq_codel",
            "htb",
            "cake/fq_codel/cake",
        ])
        .unwrap_err();
        let found: Vec<(Option<usize>, &str)> =
            e.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            found,
            [
                (Some(2), "row 2 (c0).sqm"),
                (Some(3), "row 3 (c1).sqm"),
                (Some(4), "row 4 (c2).sqm"),
                (Some(5), "row 5 (c3).sqm"),
                (Some(6), "row 6 (c4).sqm"),
            ]
        );
        assert!(e[0].message.contains("always shapes with CAKE"));
        assert!(e[0].message.contains("leave the sqm column empty"));
        assert!(e[1].message.starts_with("upload: \"none\""));
        assert!(e[3].message.contains("not a queue sheetcake offers"));
    }

    #[test]
    fn rows_of_a_circuit_must_agree_on_sqm() {
        let text = format!(
            "{HEADER},sqm\n\
             c,,1,,,,10.0.0.1,,1,1,100,20,,\n\
             c,,2,,,,10.0.0.2,,1,1,100,20,,cake diffserv4\n\
             c,,3,,,,10.0.0.3,,1,1,100,20,,\n\
             c,,4,,,,10.0.0.4,,1,1,100,20,,cake besteffort\n"
        );
        let e = parse_shaped_devices(&text, "f").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, Some(5));
        assert!(e[0].message.contains("on line 3"));
        let ok = text.replace("cake besteffort", "cake diffserv4");
        let r = devices(&ok);
        assert_eq!(
            r.subscribers[0].download_options,
            Some(v("diffserv4", "sqm", 3))
        );
    }

    #[test]
    fn text_from_strips_a_bom_and_names_the_line_of_bad_bytes() {
        assert_eq!(
            text_from(b"\xef\xbb\xbfa,b\n".to_vec(), "f"),
            Ok("a,b\n".to_owned())
        );
        let e = text_from(b"a,b\n1,Caf\xe9\n".to_vec(), "f").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("0xe9"));
    }

    // network.json -------------------------------------------------------------------------

    fn nodes(text: &str) -> Vec<NodeRecord> {
        match parse_network_json(text, "network.json") {
            Ok(n) => n,
            Err(e) => panic!("unexpected errors: {e:#?}"),
        }
    }

    fn node_errors(text: &str) -> Vec<ConfigError> {
        match parse_network_json(text, "network.json") {
            Ok(n) => panic!("expected errors, got {n:#?}"),
            Err(e) => e,
        }
    }

    /// (id, download text, download line, upload text, upload line)
    fn summary(n: &[NodeRecord]) -> Vec<(String, String, usize, String, usize)> {
        let text = |r: &Value<RateText>| match &r.value {
            RateText::Mbps(t) | RateText::Tc(t) => t.clone(),
        };
        n.iter()
            .map(|n| {
                (
                    n.id.value.clone(),
                    text(&n.download),
                    n.download.line.unwrap_or(0),
                    text(&n.upload),
                    n.upload.line.unwrap_or(0),
                )
            })
            .collect()
    }

    fn s(
        id: &str,
        d: &str,
        dl: usize,
        u: &str,
        ul: usize,
    ) -> (String, String, usize, String, usize) {
        (id.into(), d.into(), dl, u.into(), ul)
    }

    #[test]
    fn a_nested_tree_gives_every_node_the_smallest_capacity_on_its_path() {
        let text = r#"{
	"Site_1":
		{
		"downloadBandwidthMbps":1000,
		"uploadBandwidthMbps":100,
		"type": "Site",
		"id": "site-1",
		"children":
			{
				"AP_A":
					{
					"downloadBandwidthMbps":500,
					"uploadBandwidthMbps":500,
					"type": "AP",
					"parent_site": "Site_1"
					},
				"Site_3": {
					"downloadBandwidthMbps": 2000, "uploadBandwidthMbps": 50,
					"children": {
						"AP_9": {"downloadBandwidthMbps": 120.5, "uploadBandwidthMbps": "80"}
					}
				}
			}
		},
	"Site_2": {"downloadBandwidthMbps": 300, "uploadBandwidthMbps": 300, "children": {}}
}"#;
        let n = nodes(text);
        assert_eq!(
            summary(&n),
            [
                s("Site_1", "1000", 4, "100", 5),
                s("AP_A", "500", 12, "100", 5),
                s("Site_3", "1000", 4, "50", 18),
                s("AP_9", "120.5", 20, "50", 18),
                s("Site_2", "300", 25, "300", 25),
            ]
        );
        assert_eq!(n[0].label, "node \"Site_1\"");
        assert_eq!(n[0].id, Value::new("Site_1".to_owned(), "name", Some(2)));
        assert_eq!(n[3].label, "node \"Site_1/Site_3/AP_9\"");
        assert_eq!(n[3].id.line, Some(20));
        assert_eq!(n[3].download.field, "downloadBandwidthMbps");
        assert_eq!(n[3].upload.field, "uploadBandwidthMbps");
    }

    #[test]
    fn a_flat_network_has_no_nodes() {
        assert!(nodes("{}").is_empty());
        assert!(nodes("\u{feff} { }\n").is_empty());
    }

    #[test]
    fn a_name_used_twice_anywhere_is_an_error() {
        let e = node_errors(
            r#"{
  "A": {"downloadBandwidthMbps": 100, "uploadBandwidthMbps": 100,
        "children": {"AP": {"downloadBandwidthMbps": 10, "uploadBandwidthMbps": 10}}},
  "B": {"downloadBandwidthMbps": 100, "uploadBandwidthMbps": 100,
        "children": {"AP": {"downloadBandwidthMbps": 10, "uploadBandwidthMbps": 10}}}
}"#,
        );
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(e[0].line, Some(5));
        assert_eq!(e[0].key, "node \"B/AP\" (AP)");
        assert!(e[0].message.contains("also node \"A/AP\" on line 3"));
    }

    #[test]
    fn missing_or_malformed_capacities_name_the_node() {
        let e = node_errors(
            r#"{
  "A": {"uploadBandwidthMbps": 100, "children": {
    "B": {"downloadBandwidthMbps": true, "uploadBandwidthMbps": 0},
    "C": 7
  }},
  "D": {"downloadBandwidthMbps": 1, "uploadBandwidthMbps": 1, "children": [], "virtual": "yes"}
}"#,
        );
        let found: Vec<(Option<usize>, &str)> =
            e.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            found,
            [
                (Some(2), "node \"A\" (A)"),
                (Some(3), "node \"A/B\" (B).downloadBandwidthMbps"),
                (Some(3), "node \"A/B\" (B).uploadBandwidthMbps"),
                (Some(4), "node \"A/C\" (C)"),
                (Some(6), "node \"D\" (D).virtual"),
                (Some(6), "node \"D\" (D).children"),
            ]
        );
        assert!(e[0].message.contains("no downloadBandwidthMbps"));
        assert!(e[1].message.contains("true or false; expected a number"));
    }

    #[test]
    fn virtual_nodes_do_not_limit() {
        let text = r#"{
  "Region": {"downloadBandwidthMbps": 1000, "uploadBandwidthMbps": 1000, "children": {
    "Town": {"virtual": true, "downloadBandwidthMbps": 500, "uploadBandwidthMbps": 500,
      "children": {"AP_A": {"downloadBandwidthMbps": 800, "uploadBandwidthMbps": 200}}}
  }},
  "Group": {"virtual": true, "downloadBandwidthMbps": 5, "uploadBandwidthMbps": 5}
}"#;
        assert_eq!(
            summary(&nodes(text)),
            [
                s("Region", "1000", 2, "1000", 2),
                s("Town", "1000", 2, "1000", 2),
                s("AP_A", "800", 4, "200", 4),
                s("Group", "400000", 6, "400000", 6),
            ]
        );
        assert_eq!(
            RateText::Mbps(UNLIMITED_MBPS.to_string()).bytes_per_second(),
            Ok(MAX_RATE)
        );
    }

    #[test]
    fn bad_json_and_a_top_that_is_not_an_object_are_errors() {
        let e = node_errors("{\n  \"A\": {\"downloadBandwidthMbps\": 1,}\n}");
        assert_eq!(e[0].key, "(syntax)");
        assert_eq!(e[0].line, Some(2));
        let e = node_errors("[]");
        assert_eq!(e[0].key, "(top)");
        let e = node_errors("");
        assert_eq!(e[0].key, "(syntax)");
    }

    #[test]
    fn no_input_makes_either_reader_panic() {
        let json = r#"{"A": {"downloadBandwidthMbps": 1e3, "uploadBandwidthMbps": 5, "x": [1, {"y": null}, "\"\\\u00e9"], "children": {"B\u0041": {"downloadBandwidthMbps": -1, "uploadBandwidthMbps": 2}}}}"#;
        let mut texts: Vec<String> = vec![EXAMPLE.to_owned(), json.to_owned()];
        for whole in [EXAMPLE, json] {
            for (i, _) in whole.char_indices() {
                texts.push(whole[..i].to_owned());
                texts.push(whole[i..].to_owned());
            }
        }
        texts.extend(
            [
                "\"",
                "\"\"\"",
                "#",
                "\r\n\r\n",
                "a\rb\rc",
                "\u{feff}",
                "{\"a\":{\"b\":",
                "[[[[",
            ]
            .map(String::from),
        );
        texts.push("[".repeat(10_000));
        texts.push("{\"a\":".repeat(10_000));
        for t in &texts {
            let _ = parse_shaped_devices(t, "f");
            let _ = parse_network_json(t, "f");
        }
    }
}
