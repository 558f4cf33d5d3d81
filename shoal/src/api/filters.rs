//! The `filters` query parameter, parsed and applied as dockerd and swarmkit do.
//!
//! The parameter is JSON in one of two forms: `{"role":{"manager":true}}` (current) or the
//! legacy `{"role":["manager"]}`. Within one key the values are alternatives (OR), except for
//! label filters, which must all match; different keys must all match (AND).

use std::collections::{BTreeMap, BTreeSet};

use control::objects::{Node, NodeRole};
use serde_json::Value;

use super::errors::HttpError;

/// Parsed filters: key → set of values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

impl Filters {
    /// Parses the raw `filters` parameter (absent or empty means no filter).
    pub fn parse(raw: Option<&str>) -> Result<Filters, HttpError> {
        let raw = raw.unwrap_or("").trim();
        if raw.is_empty() {
            return Ok(Filters::default());
        }
        let invalid = || HttpError::bad_request("invalid filter");
        let Value::Object(map) = serde_json::from_str::<Value>(raw).map_err(|_| invalid())? else {
            return Err(invalid());
        };
        let mut out = BTreeMap::new();
        for (key, values) in map {
            let set: BTreeSet<String> = match values {
                Value::Object(m) => m.into_iter().map(|(v, _)| v).collect(),
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or_else(invalid))
                    .collect::<Result<_, _>>()?,
                _ => return Err(invalid()),
            };
            out.insert(key, set);
        }
        Ok(Filters(out))
    }

    /// Refuses keys outside `accepted`: `invalid filter 'foo'`.
    pub fn validate(&self, accepted: &[&str]) -> Result<(), HttpError> {
        match self.0.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(k) => Err(HttpError::bad_request(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    pub fn get(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.get(key).into_iter().flatten().map(String::as_str)
    }
}

const NODE_FILTERS: &[&str] = &["id", "label", "membership", "name", "node.label", "role"];

/// The `GET /nodes` filter, validated.
#[derive(Debug, Default)]
pub struct NodeFilter {
    ids: Vec<String>,
    names: Vec<String>,
    roles: Vec<NodeRole>,
    /// `membership=pending` matches nothing: every node in the store has been accepted.
    memberships_match: Option<bool>,
    engine_labels: Vec<(String, Option<String>)>,
    node_labels: Vec<(String, Option<String>)>,
}

impl NodeFilter {
    pub fn new(filters: &Filters) -> Result<NodeFilter, HttpError> {
        filters.validate(NODE_FILTERS)?;
        let mut roles = Vec::new();
        for r in filters.get("role").filter(|r| !r.is_empty()) {
            match r.to_ascii_lowercase().as_str() {
                "manager" => roles.push(NodeRole::Manager),
                "worker" => roles.push(NodeRole::Worker),
                _ => return Err(HttpError::bad_request(format!("Invalid role filter value: '{r}'"))),
            }
        }
        let mut memberships_match = None;
        for m in filters.get("membership").filter(|m| !m.is_empty()) {
            let accepted = match m.to_ascii_lowercase().as_str() {
                "accepted" => true,
                "pending" => false,
                _ => return Err(HttpError::bad_request(format!("Invalid membership filter value: '{m}'"))),
            };
            memberships_match = Some(memberships_match.unwrap_or(false) || accepted);
        }
        Ok(NodeFilter {
            ids: filters.get("id").map(str::to_string).collect(),
            names: filters.get("name").map(str::to_string).collect(),
            roles,
            memberships_match,
            engine_labels: filters.get("label").map(split_label).collect(),
            node_labels: filters.get("node.label").map(split_label).collect(),
        })
    }

    pub fn matches(&self, node: &Node) -> bool {
        let prefix_of =
            |wanted: &[String], value: &str| wanted.is_empty() || wanted.iter().any(|w| value.starts_with(w));
        prefix_of(&self.ids, &node.id)
            && prefix_of(&self.names, &node.description.hostname)
            && (self.roles.is_empty() || self.roles.contains(&node.spec.role))
            && self.memberships_match.unwrap_or(true)
            && labels_match(&self.engine_labels, &node.description.engine.labels)
            && labels_match(&self.node_labels, &node.spec.labels)
    }
}

/// `key=value` → `(key, Some(value))`; `key` → `(key, None)` (matches any value).
pub fn split_label(s: &str) -> (String, Option<String>) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (s.to_string(), None),
    }
}

pub fn labels_match(wanted: &[(String, Option<String>)], labels: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| match (labels.get(k), v) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(have), Some(want)) => have == want,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_json_forms() {
        let current = Filters::parse(Some(r#"{"role":{"manager":true},"name":{"a":true,"b":true}}"#)).unwrap();
        let legacy = Filters::parse(Some(r#"{"role":["manager"],"name":["b","a"]}"#)).unwrap();
        assert_eq!(current, legacy);
        assert_eq!(current.get("name").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(Filters::parse(None).unwrap(), Filters::default());
        assert_eq!(Filters::parse(Some("")).unwrap(), Filters::default());
    }

    #[test]
    fn refuses_bad_filters_like_dockerd() {
        for raw in ["{", "[]", r#"{"role":"manager"}"#, r#"{"role":[1]}"#] {
            assert_eq!(Filters::parse(Some(raw)).unwrap_err().message, "invalid filter", "{raw}");
        }
        let f = Filters::parse(Some(r#"{"colour":["red"]}"#)).unwrap();
        assert_eq!(NodeFilter::new(&f).unwrap_err().message, "invalid filter 'colour'");
        let f = Filters::parse(Some(r#"{"role":["boss"]}"#)).unwrap();
        assert_eq!(NodeFilter::new(&f).unwrap_err().message, "Invalid role filter value: 'boss'");
        let f = Filters::parse(Some(r#"{"membership":["maybe"]}"#)).unwrap();
        assert_eq!(NodeFilter::new(&f).unwrap_err().message, "Invalid membership filter value: 'maybe'");
    }

    #[test]
    fn labels_need_every_key_and_value() {
        let labels: BTreeMap<String, String> = [("zone".into(), "a".into()), ("ssd".into(), "".into())].into();
        let want = |specs: &[&str]| specs.iter().map(|s| split_label(s)).collect::<Vec<_>>();
        assert!(labels_match(&want(&[]), &labels));
        assert!(labels_match(&want(&["zone"]), &labels));
        assert!(labels_match(&want(&["zone=a", "ssd"]), &labels));
        assert!(!labels_match(&want(&["zone=b"]), &labels));
        assert!(!labels_match(&want(&["zone=a", "gpu"]), &labels));
    }
}
