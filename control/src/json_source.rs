//! The native JSON form of subscribers and nodes: the subscriber file's `.json` flavour and the
//! HTTP API's bodies share these shapes.
//!
//! ```json
//! {
//!   "subscribers": [
//!     {"id": "cust-1001", "addresses": ["100.64.0.7", "2001:db8:100:ab00::/56"],
//!      "download": "100mbit", "upload": "20mbit",
//!      "download_options": "diffserv3", "upload_options": "ack-filter", "node": "sg-3"}
//!   ],
//!   "nodes": [{"id": "sg-3", "download": "800mbit", "upload": "100mbit"}]
//! }
//! ```
//!
//! Unknown fields are errors, like in every other source. JSON has no per-field positions in
//! serde, so a value's line is the line where its record starts.

use crate::config::{ConfigError, ConfigErrors};
use crate::records::{NodeRecord, RateText, Records, SubscriberRecord, Value};
use crate::subscribers::LineIndex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A subscriber in JSON.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubscriberJson {
    /// Optional in an API body whose path names the subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub addresses: Vec<String>,
    pub download: String,
    pub upload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_options: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_options: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A parent node in JSON.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeJson {
    /// Optional in an API body whose path names the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub download: String,
    pub upload: String,
}

impl SubscriberJson {
    /// The record, named `label` in errors, starting on `line`.
    pub fn record(&self, label: String, line: Option<usize>) -> SubscriberRecord {
        let v = |text: &str, field| Value::new(text.to_owned(), field, line);
        SubscriberRecord {
            label,
            id: v(self.id.as_deref().unwrap_or(""), "id"),
            addresses: self.addresses.iter().map(|a| v(a, "addresses")).collect(),
            addresses_at: Value::new((), "addresses", line),
            download: Value::new(RateText::Tc(self.download.clone()), "download", line),
            upload: Value::new(RateText::Tc(self.upload.clone()), "upload", line),
            download_options: self
                .download_options
                .as_deref()
                .map(|o| v(o, "download_options")),
            upload_options: self
                .upload_options
                .as_deref()
                .map(|o| v(o, "upload_options")),
            node: self.node.as_deref().map(|n| v(n, "node")),
        }
    }
}

impl NodeJson {
    /// The record, named `label` in errors, starting on `line`.
    pub fn record(&self, label: String, line: Option<usize>) -> NodeRecord {
        NodeRecord {
            label,
            id: Value::new(self.id.clone().unwrap_or_default(), "id", line),
            download: Value::new(RateText::Tc(self.download.clone()), "download", line),
            upload: Value::new(RateText::Tc(self.upload.clone()), "upload", line),
        }
    }
}

/// The document's top level, each record kept as text to learn its line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<'a> {
    #[serde(default, borrow)]
    subscribers: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    nodes: Vec<&'a RawValue>,
}

/// The error serde_json gave for `text`, at its line (relative to `base`, the line `text`
/// starts on within the file).
pub fn syntax_error(file: &str, key: &str, base: usize, e: &serde_json::Error) -> ConfigError {
    ConfigError {
        file: file.into(),
        line: (e.line() > 0).then(|| base + e.line() - 1),
        key: key.into(),
        message: e.to_string(),
    }
}

/// Parses one record of `kind` from `raw`, a slice of `text`.
fn parse_raw<'t, T: Deserialize<'t>>(
    text: &str,
    lines: &LineIndex,
    raw: &'t RawValue,
    file: &str,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<(T, usize)> {
    // The raw value borrows from the text, so its address says where it starts.
    let offset = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    let line = lines.line(offset);
    match serde_json::from_str(raw.get()) {
        Ok(v) => Some((v, line)),
        Err(e) => {
            errors.push(syntax_error(file, key, line, &e));
            None
        }
    }
}

/// A native JSON document's records; `file` names it in errors. Every record that does not
/// have the right shape is reported, not just the first.
pub fn parse_document(text: &str, file: &str) -> Result<Records, ConfigErrors> {
    let doc: Document = serde_json::from_str(text)
        .map_err(|e| ConfigErrors(vec![syntax_error(file, "(syntax)", 1, &e)]))?;
    let lines = LineIndex::new(text);
    let mut errors = Vec::new();
    let mut records = Records::default();
    for (i, raw) in doc.subscribers.iter().enumerate() {
        let label = format!("subscribers[{i}]");
        if let Some((s, line)) =
            parse_raw::<SubscriberJson>(text, &lines, raw, file, &label, &mut errors)
        {
            records.subscribers.push(s.record(label, Some(line)));
        }
    }
    for (i, raw) in doc.nodes.iter().enumerate() {
        let label = format!("nodes[{i}]");
        if let Some((n, line)) = parse_raw::<NodeJson>(text, &lines, raw, file, &label, &mut errors)
        {
            records.nodes.push(n.record(label, Some(line)));
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscribers::{test_defaults, SubscriberSet};

    #[test]
    fn a_document_becomes_the_same_subscribers_as_toml() {
        let json = r#"{
  "subscribers": [
    {"id": "alice", "addresses": ["100.64.0.7", "2001:db8:100:ab00::/56"],
     "download": "20mbit", "upload": "5mbit", "node": "sg-1"},
    {"id": "bob", "addresses": ["100.64.1.0/29"], "download": "100mbit", "upload": "20mbit",
     "upload_options": "ack-filter"}
  ],
  "nodes": [{"id": "sg-1", "download": "30mbit", "upload": "1gbit"}]
}"#;
        let toml = r#"
[[subscriber]]
id = "alice"
addresses = ["100.64.0.7", "2001:db8:100:ab00::/56"]
download = "20mbit"
upload = "5mbit"
node = "sg-1"

[[subscriber]]
id = "bob"
addresses = ["100.64.1.0/29"]
download = "100mbit"
upload = "20mbit"
upload_options = "ack-filter"

[[node]]
id = "sg-1"
download = "30mbit"
upload = "1gbit"
"#;
        let from_json = SubscriberSet::from_records(
            &parse_document(json, "s.json").unwrap(),
            "s.json",
            &test_defaults(),
        )
        .unwrap();
        let from_toml = SubscriberSet::parse(toml, "s.toml", &test_defaults()).unwrap();
        assert_eq!(from_json.subscribers, from_toml.subscribers);
        assert_eq!(from_json.nodes, from_toml.nodes);
    }

    #[test]
    fn every_misshapen_record_is_reported_with_its_line() {
        let json = "{\"subscribers\": [\n{\"id\": \"a\", \"addresses\": [], \"download\": 5, \"upload\": \"1mbit\"},\n{\"id\": \"b\", \"addresses\": [\"100.64.0.1\"], \"download\": \"1mbit\", \"upload\": \"1mbit\", \"plan\": \"gold\"}\n]}";
        let err = parse_document(json, "s.json").unwrap_err().to_string();
        assert!(
            err.contains("s.json:2: subscribers[0]: invalid type: integer `5`"),
            "{err}"
        );
        assert!(
            err.contains("s.json:3: subscribers[1]: unknown field `plan`"),
            "{err}"
        );
    }

    #[test]
    fn semantic_errors_name_the_record_line_and_field() {
        let json = "{\"subscribers\": [\n{\"id\": \"a\", \"addresses\": [\"100.64.0.1\"], \"download\": \"fast\", \"upload\": \"1mbit\"}\n]}";
        let records = parse_document(json, "s.json").unwrap();
        let err = SubscriberSet::from_records(&records, "s.json", &test_defaults())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s.json:2: subscribers[0] (a).download: \"fast\" is not a rate"),
            "{err}"
        );
    }

    #[test]
    fn not_json_at_all_is_one_error_with_a_line() {
        let err = parse_document("{\n\"subscribers\": [,]}", "s.json").unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, Some(2));
    }
}
