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

use crate::config::{ConfigError, ConfigErrors};
use serde::Deserialize;
use sheetcake_cake::config::parse_rate;
use sheetcake_cake::CakeConfig;
use sheetcake_dataplane::classify::{AddressTable, Prefix, SubscriberSlot};
use std::collections::HashMap;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberFile {
    #[serde(default)]
    subscriber: Vec<Record>,
    #[serde(default)]
    node: Vec<NodeRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRecord {
    id: Spanned<String>,
    download: Spanned<String>,
    upload: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
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

/// All the subscribers of a file, and the address table they make.
#[derive(Debug)]
pub struct SubscriberSet {
    /// In file order; the slot of a subscriber is its index.
    pub subscribers: Vec<Subscriber>,
    /// Address to slot.
    pub addresses: AddressTable,
    /// Parent nodes, in file order.
    pub nodes: Vec<Node>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl SubscriberSet {
    /// Reads and validates a subscriber file.
    pub fn load(path: &Path, defaults: &Defaults) -> Result<SubscriberSet, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: None,
                key: "(file)".into(),
                message: format!("cannot read the subscriber file: {e}"),
            }])
        })?;
        Self::parse(&text, &file, defaults)
    }

    /// Validates subscriber-file text; `file` names it in errors.
    pub fn parse(
        text: &str,
        file: &str,
        defaults: &Defaults,
    ) -> Result<SubscriberSet, ConfigErrors> {
        let parsed: SubscriberFile = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.into(),
                line: e.span().map(|s| line_of(text, s.start)),
                key: "(syntax)".into(),
                message: e.message().trim().to_owned(),
            }])
        })?;
        let mut errors = Vec::new();
        let mut error = |span: std::ops::Range<usize>, key: String, message: String| {
            errors.push(ConfigError {
                file: file.into(),
                line: Some(line_of(text, span.start)),
                key,
                message,
            });
        };
        let not_a_rate = |text: &str| {
            format!(
                "{text:?} is not a rate; expected a number with a unit, like 20mbit, 500kbit or \
                 1gbit"
            )
        };
        let mut nodes = Vec::with_capacity(parsed.node.len());
        let mut node_ids: HashMap<String, usize> = HashMap::new();
        for (i, r) in parsed.node.iter().enumerate() {
            let id = r.id.get_ref().trim().to_owned();
            let key = |field: &str| format!("node[{i}] ({id}).{field}");
            if id.is_empty() {
                error(
                    r.id.span(),
                    format!("node[{i}].id"),
                    "expected a non-empty ID".into(),
                );
            } else if let Some(first) = node_ids.insert(id.clone(), i) {
                error(
                    r.id.span(),
                    key("id"),
                    format!("the ID is already used by node[{first}]; IDs must be unique"),
                );
            }
            let mut capacity =
                |rate: &Spanned<String>, name: &str| match parse_rate(rate.get_ref().trim()) {
                    Some(b) if b > 0 => Some(b),
                    _ => {
                        error(rate.span(), key(name), not_a_rate(rate.get_ref()));
                        None
                    }
                };
            let download = capacity(&r.download, "download");
            let upload = capacity(&r.upload, "upload");
            if let (Some(download), Some(upload)) = (download, upload) {
                nodes.push(Node {
                    id,
                    download,
                    upload,
                });
            }
        }
        let mut subscribers = Vec::with_capacity(parsed.subscriber.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        // (prefix, subscriber index, span, key) for the overlap check.
        let mut all_prefixes: Vec<(Prefix, usize, std::ops::Range<usize>, String)> = Vec::new();
        for (i, r) in parsed.subscriber.iter().enumerate() {
            let id = r.id.get_ref().trim().to_owned();
            let key = |field: &str| format!("subscriber[{i}] ({id}).{field}");
            if id.is_empty() {
                error(
                    r.id.span(),
                    format!("subscriber[{i}].id"),
                    "expected a non-empty ID".into(),
                );
            } else if let Some(first) = seen.insert(id.clone(), i) {
                error(
                    r.id.span(),
                    key("id"),
                    format!("the ID is already used by subscriber[{first}]; IDs must be unique"),
                );
            }
            let mut prefixes = Vec::new();
            if r.addresses.get_ref().is_empty() {
                error(
                    r.addresses.span(),
                    key("addresses"),
                    "expected at least one address or prefix".into(),
                );
            }
            for a in r.addresses.get_ref() {
                match Prefix::parse(a.get_ref()) {
                    Ok(p) => {
                        prefixes.push(p);
                        all_prefixes.push((p, i, a.span(), key("addresses")));
                    }
                    Err(e) => error(a.span(), key("addresses"), e.to_string()),
                }
            }
            let mut direction = |rate: &Spanned<String>,
                                 options: &Option<Spanned<String>>,
                                 default_words: &str,
                                 name: &str|
             -> Option<CakeConfig> {
                let bandwidth = match parse_rate(rate.get_ref().trim()) {
                    Some(b) => b,
                    None => {
                        error(rate.span(), key(name), not_a_rate(rate.get_ref()));
                        return None;
                    }
                };
                let mut config = CakeConfig::parse(default_words).ok()?;
                if let Some(words) = options {
                    if let Err(e) = config.apply_words(words.get_ref()) {
                        error(words.span(), key(&format!("{name}_options")), e.to_string());
                        return None;
                    }
                }
                config.bandwidth = Some(bandwidth);
                Some(config)
            };
            let download = direction(
                &r.download,
                &r.download_options,
                &defaults.download,
                "download",
            );
            let upload = direction(&r.upload, &r.upload_options, &defaults.upload, "upload");
            let node = r.node.as_ref().map(|n| n.get_ref().trim().to_owned());
            if let (Some(name), Some(span)) = (&node, r.node.as_ref().map(Spanned::span)) {
                if !node_ids.contains_key(name) {
                    error(
                        span,
                        key("node"),
                        format!(
                            "no [[node]] has the ID {name:?}; expected one of the nodes of this \
                             file ({})",
                            if node_ids.is_empty() {
                                "it has none".to_owned()
                            } else {
                                let mut ids: Vec<&str> =
                                    node_ids.keys().map(String::as_str).collect();
                                ids.sort_unstable();
                                ids.join(", ")
                            }
                        ),
                    );
                }
            }
            if let (Some(download), Some(upload)) = (download, upload) {
                subscribers.push(Subscriber {
                    id,
                    prefixes,
                    download,
                    upload,
                    node,
                });
            }
        }
        // Overlaps: shortest prefixes first, so every address is checked against every prefix
        // that could contain it.
        all_prefixes.sort_by_key(|(p, ..)| match p {
            Prefix::V4(_, len) => (0, *len),
            Prefix::V6(_, len) => (1, *len),
        });
        let mut addresses = AddressTable::new();
        let mut owner_of: HashMap<Prefix, usize> = HashMap::new();
        for (prefix, i, span, key) in &all_prefixes {
            let covering = match prefix.network() {
                Prefix::V4(a, _) => addresses.lookup_v4(a.octets()),
                Prefix::V6(a, _) => addresses.lookup_v6(a.octets()),
            };
            if let Some(SubscriberSlot(other)) = covering {
                if other as usize != *i {
                    let other_id = parsed.subscriber[other as usize].id.get_ref();
                    error(
                        span.clone(),
                        key.clone(),
                        format!(
                            "{prefix} overlaps an address of subscriber[{other}] ({other_id}); a \
                             frame must belong to one subscriber"
                        ),
                    );
                    continue;
                }
            }
            owner_of.insert(*prefix, *i);
            addresses.insert(*prefix, SubscriberSlot(*i as u32));
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.line);
            return Err(ConfigErrors(errors));
        }
        Ok(SubscriberSet {
            subscribers,
            addresses,
            nodes,
        })
    }
}

/// The worker that owns subscriber `id`: a stable hash of the ID over the workers, so a
/// subscriber keeps its worker across restarts and reloads.
pub fn owner_worker(id: &str, workers: usize) -> usize {
    // FNV-1a, 64 bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % workers.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            download: "diffserv4 triple-isolate".into(),
            upload: "diffserv4 triple-isolate ingress".into(),
        }
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
            text.contains("100.64.0.7/32 overlaps an address of subscriber[1]"),
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
            err.contains("subs.toml:7: subscriber[0] (alice).node: no [[node]] has the ID \"sg-9\"; expected one of the nodes of this file (sg-1)"),
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

    #[test]
    fn owners_are_stable_and_spread() {
        assert_eq!(owner_worker("alice", 1), 0);
        let counts = (0..1000).fold([0usize; 4], |mut c, i| {
            c[owner_worker(&format!("cust-{i}"), 4)] += 1;
            c
        });
        assert!(counts.iter().all(|&n| n > 200), "{counts:?}");
        assert_eq!(owner_worker("cust-7", 4), owner_worker("cust-7", 4));
    }
}
