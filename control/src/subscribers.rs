//! The subscriber file: who gets shaped, at what rates, with which CAKE options.
//!
//! TOML (see `deploy/subscribers.toml.example`):
//!
//! ```toml
//! [[subscriber]]
//! id = "cust-1001"
//! addresses = ["100.64.0.7", "2001:db8:100:ab00::/56"]
//! download = "20mbit"
//! upload = "5mbit"
//! download_options = "diffserv4"      # optional tc-cake words, after the defaults
//! upload_options = "ack-filter"       # optional
//! node = "cmts-1/sg-3"                # optional: the parent node it sits behind
//!
//! [[node]]
//! id = "cmts-1/sg-3"
//! download = "1gbit"                  # the node's capacity, per direction
//! upload = "200mbit"
//! ```
//!
//! The whole file is validated before anything is used, and every bad record is reported at
//! once with its line, field and what was expected. Addresses may not be shared or overlap
//! between subscribers: a frame must belong to exactly one.

use crate::address_space::{AddressSpace, Overlap};
use crate::config::{ConfigError, ConfigErrors};
use crate::records::{Checker, NodeRecord, RateText, RecordName, Records, SubscriberRecord, Value};
use serde::Deserialize;
use sheetcake_cake::CakeConfig;
use sheetcake_dataplane::classify::{AddressTable, Prefix, SubscriberSlot};
use sheetcake_dataplane::shaping::Fnv1a;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberFile {
    #[serde(default)]
    subscriber: Vec<TomlSubscriber>,
    #[serde(default)]
    node: Vec<TomlNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlNode {
    id: Spanned<String>,
    download: Spanned<String>,
    upload: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlSubscriber {
    id: Spanned<String>,
    addresses: Spanned<Vec<Spanned<String>>>,
    download: Spanned<String>,
    upload: Spanned<String>,
    download_options: Option<Spanned<String>>,
    upload_options: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
}

/// A validated subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscriber {
    /// The operator's ID.
    pub id: String,
    /// Addresses and prefixes.
    pub prefixes: Vec<Prefix>,
    /// CAKE for downloads (core to access).
    pub download: CakeConfig,
    /// CAKE for uploads (access to core).
    pub upload: CakeConfig,
    /// The ID of the parent node it sits behind, if any.
    pub node: Option<String>,
}

/// A parent node: a head-end, a service group, an access point, with its own capacity that
/// the busy subscribers behind it share (see `nodes.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The operator's ID.
    pub id: String,
    /// Capacity toward the subscribers (core to access), bytes per second.
    pub download: u64,
    /// Capacity from the subscribers (access to core), bytes per second.
    pub upload: u64,
}

/// Default CAKE words per direction, from the configuration's `[shaping]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Words every download instance starts from.
    pub download: String,
    /// Words every upload instance starts from.
    pub upload: String,
}

/// All the subscribers of a source, and the address table they make.
#[derive(Debug)]
pub struct SubscriberSet {
    /// In source order; the slot of a subscriber is its index.
    pub subscribers: Vec<Subscriber>,
    /// Address to slot.
    pub addresses: AddressTable,
    /// The same prefixes by slot as ordered intervals, for the registry's overlap checks of
    /// later changes (built while validating, so a reload does not build it twice).
    pub space: AddressSpace<u32>,
    /// Parent nodes, in source order.
    pub nodes: Vec<Node>,
}

/// IDs to what they name, hashed with FNV-1a (see [`Fnv1a`]).
pub type IdMap<V, K = String> = HashMap<K, V, BuildHasherDefault<Fnv1a>>;

/// Byte offsets to 1-based lines, for a file of many records: one pass over the text to find
/// the line starts, then a binary search per lookup (counting newlines from the start for
/// every record made a million-record file take hours).
pub struct LineIndex {
    /// Offset just after each newline.
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        LineIndex {
            starts: text
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1)
                .collect(),
        }
    }

    /// The line of byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset) + 1
    }
}

/// One error for a whole file (it cannot be read, or is not TOML/JSON at all).
pub fn file_error(file: &str, line: Option<usize>, key: &str, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: file.into(),
        line,
        key: key.into(),
        message,
    }])
}

/// The TOML subscriber file's records.
pub fn parse_toml(text: &str, file: &str) -> Result<Records, ConfigErrors> {
    let parsed: SubscriberFile = toml::from_str(text).map_err(|e| {
        file_error(
            file,
            e.span().map(|s| LineIndex::new(text).line(s.start)),
            "(syntax)",
            e.message().trim().to_owned(),
        )
    })?;
    let lines = LineIndex::new(text);
    let at = |span: std::ops::Range<usize>| Some(lines.line(span.start));
    let value = |v: &Spanned<String>, field| Value::new(v.get_ref().clone(), field, at(v.span()));
    let rate = |v: &Spanned<String>, field| {
        Value::new(RateText::Tc(v.get_ref().clone()), field, at(v.span()))
    };
    Ok(Records {
        subscribers: parsed
            .subscriber
            .iter()
            .enumerate()
            .map(|(i, r)| SubscriberRecord {
                label: format!("subscriber[{i}]"),
                id: value(&r.id, "id"),
                addresses: r
                    .addresses
                    .get_ref()
                    .iter()
                    .map(|a| value(a, "addresses"))
                    .collect(),
                addresses_at: Value::new((), "addresses", at(r.addresses.span())),
                download: rate(&r.download, "download"),
                upload: rate(&r.upload, "upload"),
                download_options: r
                    .download_options
                    .as_ref()
                    .map(|o| value(o, "download_options")),
                upload_options: r
                    .upload_options
                    .as_ref()
                    .map(|o| value(o, "upload_options")),
                node: r.node.as_ref().map(|n| value(n, "node")),
            })
            .collect(),
        nodes: parsed
            .node
            .iter()
            .enumerate()
            .map(|(i, r)| NodeRecord {
                label: format!("node[{i}]"),
                id: value(&r.id, "id"),
                download: rate(&r.download, "download"),
                upload: rate(&r.upload, "upload"),
            })
            .collect(),
    })
}

/// The format of a subscriber file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.toml`: sheetcake's own file (`deploy/subscribers.toml.example`).
    Toml,
    /// `.json`: the native JSON form (see `json_source.rs`, `docs/api.md`).
    Json,
    /// `.csv`: LibreQoS's `ShapedDevices.csv`.
    ShapedDevices,
}

impl Format {
    /// The format a path's extension names, or what was expected.
    pub fn of(path: &Path) -> Result<Format, String> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
        {
            Some(e) if e == "toml" => Ok(Format::Toml),
            Some(e) if e == "json" => Ok(Format::Json),
            Some(e) if e == "csv" => Ok(Format::ShapedDevices),
            _ => Err(format!(
                "{} has no known extension; expected .toml (sheetcake's format), .json (the \
                 native JSON form) or .csv (LibreQoS's ShapedDevices.csv)",
                path.display()
            )),
        }
    }
}

/// Where subscribers come from: a file, and optionally LibreQoS's `network.json` for nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberSource {
    /// The subscriber file.
    pub path: std::path::PathBuf,
    /// Its format.
    pub format: Format,
    /// A LibreQoS `network.json` whose nodes join the file's.
    pub network: Option<std::path::PathBuf>,
}

/// A file's text; bad UTF-8 is an error at its line.
fn read(path: &Path, what: &str) -> Result<String, ConfigErrors> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        file_error(
            &file,
            None,
            "(file)",
            format!("cannot read the {what}: {e}"),
        )
    })?;
    crate::libreqos::text_from(bytes, &file).map_err(|e| ConfigErrors(vec![e]))
}

impl SubscriberSource {
    /// Reads and validates the source as a whole.
    pub fn load(&self, defaults: &Defaults) -> Result<SubscriberSet, ConfigErrors> {
        let file = self.path.display().to_string();
        let text = read(&self.path, "subscriber file")?;
        let mut records = match self.format {
            Format::Toml => parse_toml(&text, &file)?,
            Format::Json => crate::json_source::parse_document(&text, &file)?,
            Format::ShapedDevices => {
                crate::libreqos::parse_shaped_devices(&text, &file).map_err(ConfigErrors)?
            }
        };
        if let Some(network) = &self.network {
            let file = network.display().to_string();
            let text = read(network, "network file")?;
            let nodes = crate::libreqos::parse_network_json(&text, &file).map_err(ConfigErrors)?;
            // Checked here, so their errors name the network file.
            let mut check = Checker::new(&file);
            for n in &nodes {
                check.node(n);
            }
            if !check.errors.is_empty() {
                return Err(ConfigErrors(check.errors));
            }
            records.nodes.extend(nodes);
        }
        SubscriberSet::from_records(&records, &file, defaults)
    }

    /// The files to watch for changes.
    pub fn files(&self) -> impl Iterator<Item = &Path> + '_ {
        std::iter::once(self.path.as_path()).chain(self.network.as_deref())
    }
}

impl SubscriberSet {
    /// Validates TOML subscriber-file text; `file` names it in errors.
    pub fn parse(
        text: &str,
        file: &str,
        defaults: &Defaults,
    ) -> Result<SubscriberSet, ConfigErrors> {
        Self::from_records(&parse_toml(text, file)?, file, defaults)
    }

    /// Validates a source's records as a whole: every record on its own, IDs unique, every
    /// node named exists, and no address shared between subscribers. Every error is reported.
    pub fn from_records(
        records: &Records,
        file: &str,
        defaults: &Defaults,
    ) -> Result<SubscriberSet, ConfigErrors> {
        let mut check = Checker::new(file);
        let mut nodes = Vec::with_capacity(records.nodes.len());
        let mut node_ids: IdMap<&NodeRecord, &str> = IdMap::default();
        for r in &records.nodes {
            let checked = check.node(r);
            let id = r.id.value.trim();
            if let Some(first) = node_ids.get(id) {
                let message = format!(
                    "the ID is already used by {}; IDs must be unique",
                    first.label
                );
                check.error(RecordName::new(&r.label, id), &r.id, message);
                continue;
            }
            if !id.is_empty() {
                node_ids.insert(id, r);
            }
            nodes.extend(checked);
        }
        let mut subscribers = Vec::with_capacity(records.subscribers.len());
        let mut seen: IdMap<&SubscriberRecord, &str> = IdMap::default();
        seen.reserve(records.subscribers.len());
        // Every address that parses, held by the index of its record: addresses are checked
        // against the others even when another field is bad, so one pass reports every
        // problem. With no error every record is in the set, so the index is also the slot.
        let mut held: Vec<(Prefix, u32)> = Vec::with_capacity(records.subscribers.len() * 2);
        for (i, r) in records.subscribers.iter().enumerate() {
            let checked = check.subscriber(
                r,
                defaults,
                |id| node_ids.contains_key(id),
                || node_ids.keys().map(|&k| k.to_owned()).collect(),
            );
            let id = r.id.value.trim();
            if let Some(first) = seen.get(id) {
                let message = format!(
                    "the ID is already used by {}; IDs must be unique",
                    first.label
                );
                check.error(RecordName::new(&r.label, id), &r.id, message);
            } else if !id.is_empty() {
                seen.insert(id, r);
            }
            match checked {
                Some(s) => {
                    held.extend(s.prefixes.iter().map(|&p| (p, i as u32)));
                    subscribers.push(s);
                }
                // Those that do not parse were reported by the checker.
                None => held.extend(
                    r.addresses
                        .iter()
                        .filter_map(|at| Prefix::parse(&at.value).ok())
                        .map(|p| (p, i as u32)),
                ),
            }
        }
        let mut addresses = AddressTable::new();
        addresses.reserve_for(held.iter().map(|(p, _)| p));
        for &(p, i) in &held {
            addresses.insert(p, SubscriberSlot(i));
        }
        let space = match AddressSpace::build(held) {
            Ok(space) => space,
            Err(overlaps) => {
                for o in overlaps {
                    overlap_error(&mut check, &records.subscribers, o);
                }
                AddressSpace::new()
            }
        };
        if !check.errors.is_empty() {
            let mut errors = check.errors;
            errors.sort_by_key(|e| e.line);
            return Err(ConfigErrors(errors));
        }
        Ok(SubscriberSet {
            subscribers,
            addresses,
            space,
            nodes,
        })
    }
}

/// Reports two records' prefixes that share addresses, at the record that comes later in the
/// source (the one to change, as a check one record at a time would have found it).
fn overlap_error(check: &mut Checker, records: &[SubscriberRecord], o: Overlap<u32>) {
    let (ours, theirs) = if o.later.1 >= o.earlier.1 {
        (o.later, o.earlier)
    } else {
        (o.earlier, o.later)
    };
    let ((p, i), (q, other)) = (ours, theirs);
    let r = &records[i as usize];
    let message = if other == i {
        format!("{p} overlaps {q}, another of its addresses; list each once")
    } else {
        let other = &records[other as usize];
        format!(
            "{p} overlaps {q} of {} ({}); a frame must belong to one subscriber",
            other.label,
            other.id.value.trim()
        )
    };
    // The address as written, for its line; the record's list if none parses to it.
    match r
        .addresses
        .iter()
        .find(|at| Prefix::parse(&at.value).ok() == Some(p))
    {
        Some(at) => check.error(RecordName::new(&r.label, r.id.value.trim()), at, message),
        None => check.error(
            RecordName::new(&r.label, r.id.value.trim()),
            &r.addresses_at,
            message,
        ),
    }
}

/// The defaults the unit tests shape with: downloads with egress, uploads with ingress
/// semantics, so a test can tell which defaults a direction got.
#[cfg(test)]
pub fn test_defaults() -> Defaults {
    Defaults {
        download: "diffserv4 triple-isolate".into(),
        upload: "diffserv4 triple-isolate ingress".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_counts_lines_from_one() {
        let lines = LineIndex::new("ab\ncd\n\nef");
        let got: Vec<usize> = (0..10).map(|o| lines.line(o)).collect();
        // a b \n | c d \n | \n | e f, and offsets past the end on the last line.
        assert_eq!(got, [1, 1, 1, 2, 2, 2, 3, 4, 4, 4]);
        assert_eq!(LineIndex::new("").line(0), 1);
    }

    fn defaults() -> Defaults {
        test_defaults()
    }

    const GOOD: &str = r#"
[[subscriber]]
id = "alice"
addresses = ["100.64.0.7", "2001:db8:100:ab00::/56"]
download = "20mbit"
upload = "5mbit"

[[subscriber]]
id = "bob"
addresses = ["100.64.1.0/29"]
download = "100mbit"
upload = "20mbit"
upload_options = "ack-filter"
"#;

    #[test]
    fn records_become_subscribers_with_their_rates_and_options() {
        let set = SubscriberSet::parse(GOOD, "subs.toml", &defaults()).unwrap();
        assert_eq!(set.subscribers.len(), 2);
        let alice = &set.subscribers[0];
        assert_eq!(alice.download.bandwidth, Some(2_500_000));
        assert_eq!(alice.upload.bandwidth, Some(625_000));
        assert!(alice.upload.ingress);
        assert!(!alice.download.ingress);
        let bob = &set.subscribers[1];
        assert_eq!(
            bob.upload.ack_filter,
            sheetcake_cake::config::AckFilter::Conservative
        );
        assert_eq!(
            set.addresses.lookup_v4([100, 64, 1, 5]),
            Some(SubscriberSlot(1))
        );
        assert_eq!(
            set.addresses.lookup_v4([100, 64, 0, 7]),
            Some(SubscriberSlot(0))
        );
    }

    #[test]
    fn every_bad_record_is_reported_with_line_and_field() {
        let text = r#"
[[subscriber]]
id = "alice"
addresses = ["100.64.0.7"]
download = "fast"
upload = "5mbit"

[[subscriber]]
id = "alice"
addresses = ["100.64.0.0/24", "10.0.0.1/24"]
download = "20mbit"
upload = "5mbit"
upload_options = "diffserv5"
"#;
        let err = SubscriberSet::parse(text, "subs.toml", &defaults()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("subs.toml:5: subscriber[0] (alice).download: \"fast\" is not a rate"),
            "{text}"
        );
        assert!(
            text.contains("subs.toml:9: subscriber[1] (alice).id: the ID is already used"),
            "{text}"
        );
        assert!(
            text.contains(
                "subs.toml:10: subscriber[1] (alice).addresses: 10.0.0.1/24: bits are set"
            ),
            "{text}"
        );
        assert!(
            text.contains("subs.toml:13: subscriber[1] (alice).upload_options"),
            "{text}"
        );
        assert!(
            text.contains(
                "subs.toml:10: subscriber[1] (alice).addresses: 100.64.0.0/24 overlaps \
                 100.64.0.7/32 of subscriber[0] (alice); a frame must belong to one subscriber"
            ),
            "{text}"
        );
    }

    #[test]
    fn subscribers_name_the_node_they_sit_behind() {
        let text =
            format!("{GOOD}\n[[node]]\nid = \"sg-1\"\ndownload = \"30mbit\"\nupload = \"1gbit\"\n")
                .replace("upload = \"5mbit\"", "upload = \"5mbit\"\nnode = \"sg-1\"");
        let set = SubscriberSet::parse(&text, "subs.toml", &defaults()).unwrap();
        assert_eq!(
            set.nodes,
            [Node {
                id: "sg-1".into(),
                download: 30_000_000 / 8,
                upload: 1_000_000_000 / 8,
            }]
        );
        assert_eq!(set.subscribers[0].node.as_deref(), Some("sg-1"));
        assert_eq!(set.subscribers[1].node, None);
    }

    #[test]
    fn bad_nodes_and_unknown_node_names_are_reported() {
        let text = format!(
            "{GOOD}\n[[node]]\nid = \"sg-1\"\ndownload = \"lots\"\nupload = \"0mbit\"\n\n[[node]]\nid = \"sg-1\"\ndownload = \"1mbit\"\nupload = \"1mbit\"\n"
        )
        .replace("upload = \"5mbit\"", "upload = \"5mbit\"\nnode = \"sg-9\"");
        let err = SubscriberSet::parse(&text, "subs.toml", &defaults())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("subs.toml:7: subscriber[0] (alice).node: no node has the ID \"sg-9\"; expected one of the known nodes (sg-1)"),
            "{err}"
        );
        assert!(
            err.contains("subs.toml:18: node[0] (sg-1).download: \"lots\" is not a rate"),
            "{err}"
        );
        assert!(
            err.contains("subs.toml:19: node[0] (sg-1).upload: \"0mbit\" is not a rate"),
            "{err}"
        );
        assert!(
            err.contains("subs.toml:22: node[1] (sg-1).id: the ID is already used by node[0]"),
            "{err}"
        );
    }

    #[test]
    fn the_documented_example_is_valid() {
        let text = include_str!("../../deploy/subscribers.toml.example");
        let set = SubscriberSet::parse(text, "subscribers.toml.example", &defaults()).unwrap();
        assert_eq!(set.subscribers.len(), 2);
        assert_eq!(set.addresses.len(), 4);
    }

    #[test]
    fn unknown_fields_are_errors() {
        let text = GOOD.replace("upload = \"5mbit\"", "upload = \"5mbit\"\nplan = \"gold\"");
        let err = SubscriberSet::parse(&text, "subs.toml", &defaults())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `plan`"), "{err}");
    }
}
