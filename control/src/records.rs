//! Subscriber and node records as a source gives them, before validation.
//!
//! Every source (the TOML subscriber file, LibreQoS's `ShapedDevices.csv` and `network.json`,
//! the native JSON form, an API request) turns its text into these records, keeping where each
//! value came from; one set of checks then turns them into [`Subscriber`]s and [`Node`]s, so a
//! bad rate reads the same whichever way it arrived, and always names its file, line, record
//! and field.

use crate::config::ConfigError;
use crate::subscribers::{Defaults, Node, Subscriber};
use sheetcake_cake::config::parse_rate;
use sheetcake_cake::CakeConfig;
use sheetcake_dataplane::classify::Prefix;

/// A value and where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Value<T> {
    /// What the source said.
    pub value: T,
    /// The field's name in that source (`download`, `Download Max Mbps`).
    pub field: &'static str,
    /// 1-based line of the file, when the source has lines.
    pub line: Option<usize>,
}

impl<T> Value<T> {
    /// `value` from `field` on `line`.
    pub fn new(value: T, field: &'static str, line: Option<usize>) -> Value<T> {
        Value { value, field, line }
    }
}

/// A rate as written: tc's notation (`20mbit`) or a bare number of megabits per second (the
/// CSV columns of LibreQoS).
#[derive(Debug, Clone, PartialEq)]
pub enum RateText {
    /// A number with a tc unit.
    Tc(String),
    /// A number of Mbit/s.
    Mbps(String),
}

/// The slowest plan sheetcake shapes: below it one full-size frame takes longer than CAKE's
/// 100 ms interval to send, and the AQM cannot keep its promise.
pub const MIN_RATE: u64 = 128_000 / 8;
/// The fastest plan or node sheetcake shapes: 400 Gbit/s, beyond any port it drives.
pub const MAX_RATE: u64 = 400_000_000_000 / 8;

impl RateText {
    /// Bytes per second, or what was expected.
    pub fn bytes_per_second(&self) -> Result<u64, String> {
        match self {
            RateText::Tc(text) => {
                let bytes = parse_rate(text.trim()).ok_or_else(|| {
                    format!(
                        "{text:?} is not a rate; expected a number with a unit, like 20mbit, \
                         500kbit or 1gbit"
                    )
                })?;
                in_range(bytes, || text.trim().to_owned())
            }
            RateText::Mbps(text) => Self::mbps_bytes_per_second(text),
        }
    }

    /// Bytes per second of a number of Mbit/s, or what was expected: what
    /// [`RateText::Mbps`] holding `text` gives, without the copy.
    pub fn mbps_bytes_per_second(text: &str) -> Result<u64, String> {
        match text.trim().parse::<f64>() {
            Ok(mbps) if mbps.is_finite() && mbps > 0.0 => {
                in_range((mbps * 1e6 / 8.0).round() as u64, || {
                    format!("{} Mbit/s", text.trim())
                })
            }
            _ => Err(format!(
                "{text:?} is not a rate; expected a number of Mbit/s, like 100 or 2.5"
            )),
        }
    }
}

/// `bytes` if sheetcake shapes at that rate; else an error showing the rate as `shown` writes it.
fn in_range(bytes: u64, shown: impl FnOnce() -> String) -> Result<u64, String> {
    if (MIN_RATE..=MAX_RATE).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "{} is out of range; expected 128kbit to 400gbit",
            shown()
        ))
    }
}

/// One subscriber as a source described it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberRecord {
    /// How the source names the record in errors: `subscriber[3]`, `row 17`.
    pub label: String,
    /// The operator's ID.
    pub id: Value<String>,
    /// Addresses and prefixes, each with where it was written; `addresses_at` is where the
    /// list itself is (for "the list is empty").
    pub addresses: Vec<Value<String>>,
    pub addresses_at: Value<()>,
    /// Plan rates.
    pub download: Value<RateText>,
    pub upload: Value<RateText>,
    /// tc-cake words applied after the defaults.
    pub download_options: Option<Value<String>>,
    pub upload_options: Option<Value<String>>,
    /// The parent node's ID.
    pub node: Option<Value<String>>,
}

/// One parent node as a source described it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// How the source names the record in errors.
    pub label: String,
    /// The operator's ID.
    pub id: Value<String>,
    /// Capacity per direction.
    pub download: Value<RateText>,
    pub upload: Value<RateText>,
}

/// Everything one source said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    /// Subscribers, in source order.
    pub subscribers: Vec<SubscriberRecord>,
    /// Parent nodes, in source order.
    pub nodes: Vec<NodeRecord>,
}

/// Longest ID accepted: IDs become Prometheus labels and URL path segments.
pub const MAX_ID_LEN: usize = 200;

/// A record's name in errors, `row 7 (cust-1)`, formatted only when an error is written.
#[derive(Clone, Copy)]
pub struct RecordName<'r> {
    label: &'r str,
    id: &'r str,
}

impl<'r> RecordName<'r> {
    /// The name of the record `label` whose ID is `id` (empty: none).
    pub fn new(label: &'r str, id: &'r str) -> RecordName<'r> {
        RecordName { label, id }
    }
}

impl std::fmt::Display for RecordName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.id.is_empty() {
            f.write_str(self.label)
        } else {
            write!(f, "{} ({})", self.label, self.id)
        }
    }
}

/// Collects errors for one source.
pub struct Checker<'a> {
    /// The file (or `request body`) errors name.
    pub file: &'a str,
    /// Errors so far.
    pub errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    /// A checker for `file`.
    pub fn new(file: &'a str) -> Checker<'a> {
        Checker {
            file,
            errors: Vec::new(),
        }
    }

    /// Records an error about `value` of the record `record`.
    pub fn error<T>(
        &mut self,
        record: impl std::fmt::Display,
        value: &Value<T>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: self.file.into(),
            line: value.line,
            key: format!("{record}.{}", value.field),
            message: message.into(),
        });
    }

    /// The record's name in errors: its label and, when it has one, its ID.
    pub fn record_name(label: &str, id: &str) -> String {
        RecordName::new(label, id).to_string()
    }

    /// An ID, trimmed, if it is acceptable.
    pub fn id(&mut self, label: &str, id: &Value<String>) -> Option<String> {
        let text = id.value.trim();
        let message = if text.is_empty() {
            "expected a non-empty ID".to_owned()
        } else if text.len() > MAX_ID_LEN {
            format!("the ID is {} bytes long; at most {MAX_ID_LEN}", text.len())
        } else if text.chars().any(char::is_control) {
            "the ID contains control characters; expected printable text".to_owned()
        } else {
            return Some(text.to_owned());
        };
        self.error(label, id, message);
        None
    }

    fn rate(&mut self, record: impl std::fmt::Display, rate: &Value<RateText>) -> Option<u64> {
        match rate.value.bytes_per_second() {
            Ok(b) => Some(b),
            Err(message) => {
                self.error(record, rate, message);
                None
            }
        }
    }

    /// A node, if every field is good.
    pub fn node(&mut self, r: &NodeRecord) -> Option<Node> {
        let id = self.id(&r.label, &r.id);
        let name = RecordName::new(&r.label, id.as_deref().unwrap_or(""));
        let download = self.rate(name, &r.download);
        let upload = self.rate(name, &r.upload);
        Some(Node {
            id: id?,
            download: download?,
            upload: upload?,
        })
    }

    /// A subscriber, if every field is good. `node_exists` says whether a node ID is known;
    /// `node_ids` lists them for the error message. Overlaps with other subscribers are the
    /// caller's to check (they need the others).
    pub fn subscriber(
        &mut self,
        r: &SubscriberRecord,
        defaults: &Defaults,
        node_exists: impl Fn(&str) -> bool,
        node_ids: impl Fn() -> Vec<String>,
    ) -> Option<Subscriber> {
        let id = self.id(&r.label, &r.id);
        // Formatted only for an error: a million records would otherwise format a million names.
        let name = RecordName::new(&r.label, id.as_deref().unwrap_or(""));
        let mut prefixes = Vec::with_capacity(r.addresses.len());
        let mut addresses_ok = true;
        if r.addresses.is_empty() {
            self.error(
                name,
                &r.addresses_at,
                "expected at least one address or prefix",
            );
            addresses_ok = false;
        }
        for a in &r.addresses {
            match Prefix::parse(&a.value) {
                Ok(p) => prefixes.push(p),
                Err(e) => {
                    self.error(name, a, e.to_string());
                    addresses_ok = false;
                }
            }
        }
        let download = self.direction(name, &r.download, &r.download_options, &defaults.download);
        let upload = self.direction(name, &r.upload, &r.upload_options, &defaults.upload);
        let node = match &r.node {
            None => None,
            Some(n) => {
                let wanted = n.value.trim();
                if wanted.is_empty() {
                    None
                } else if node_exists(wanted) {
                    Some(wanted.to_owned())
                } else {
                    let mut ids = node_ids();
                    ids.sort_unstable();
                    self.error(
                        name,
                        n,
                        format!(
                            "no node has the ID {wanted:?}; expected one of the known nodes ({})",
                            if ids.is_empty() {
                                "there are none".to_owned()
                            } else {
                                ids.join(", ")
                            }
                        ),
                    );
                    return None;
                }
            }
        };
        if !addresses_ok {
            return None;
        }
        Some(Subscriber {
            id: id?,
            prefixes,
            download: download?,
            upload: upload?,
            node,
        })
    }

    fn direction(
        &mut self,
        record: RecordName<'_>,
        rate: &Value<RateText>,
        options: &Option<Value<String>>,
        default_words: &str,
    ) -> Option<CakeConfig> {
        let bandwidth = self.rate(record, rate);
        // The defaults were validated with the configuration; still, a record is refused only
        // with an error, so that every record without one is in the set.
        let mut config = match CakeConfig::parse(default_words) {
            Ok(c) => c,
            Err(e) => {
                self.error(
                    record,
                    rate,
                    format!("the configured default options {default_words:?} are not valid: {e}"),
                );
                return None;
            }
        };
        if let Some(words) = options {
            if let Err(e) = config.apply_words(&words.value) {
                self.error(record, words, format!("not valid tc-cake options: {e}"));
                return None;
            }
        }
        config.bandwidth = Some(bandwidth?);
        Some(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_both_notations_and_their_range() {
        let tc = |t: &str| RateText::Tc(t.into()).bytes_per_second();
        let mbps = |t: &str| RateText::Mbps(t.into()).bytes_per_second();
        assert_eq!(tc("20mbit"), Ok(2_500_000));
        assert_eq!(mbps("20"), Ok(2_500_000));
        assert_eq!(mbps("2.5"), Ok(312_500));
        assert_eq!(tc("400gbit"), Ok(MAX_RATE));
        assert_eq!(tc("128kbit"), Ok(MIN_RATE));
        assert!(tc("401gbit").unwrap_err().contains("out of range"));
        assert!(tc("100kbit").unwrap_err().contains("out of range"));
        assert!(mbps("0").unwrap_err().contains("number of Mbit/s"));
        assert!(mbps("fast").unwrap_err().contains("number of Mbit/s"));
        assert!(tc("fast").unwrap_err().contains("number with a unit"));
    }

    #[test]
    fn ids_must_be_printable_and_bounded() {
        let mut c = Checker::new("f");
        let v = |t: &str| Value::new(t.to_owned(), "id", Some(1));
        assert_eq!(c.id("r", &v(" cust-1 ")), Some("cust-1".into()));
        assert_eq!(c.id("r", &v("")), None);
        assert_eq!(c.id("r", &v("a\tb")), None);
        assert_eq!(c.id("r", &v(&"x".repeat(MAX_ID_LEN + 1))), None);
        assert_eq!(c.errors.len(), 3);
        assert_eq!(c.errors[0].key, "r.id");
    }
}
