//! Placement constraints (`--constraint node.role==manager`) as swarmkit parses and matches them.
//!
//! The syntax and the error texts are swarmkit's (`manager/constraint/constraint.go`) so that
//! `docker service create --constraint` fails with the message Docker users know. The API layer
//! rejects bad constraints with [`parse_constraint`]; the scheduler and the orchestrators only
//! ever see valid ones, and (like swarmkit) ignore a list that does not parse.

use crate::objects::{Node, NodeRole};

const NODE_LABEL_PREFIX: &str = "node.labels.";
const ENGINE_LABEL_PREFIX: &str = "engine.labels.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Eq,
    NotEq,
}

/// One `key==value` or `key!=value` expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    pub key: String,
    pub operator: Operator,
    pub value: String,
}

/// Parses one expression. Errors carry swarmkit's wording, e.g. `constraint expected one operator
/// from ==, !=` or `key 'node role' is invalid`.
pub fn parse_constraint(expr: &str) -> Result<Constraint, String> {
    // swarmkit tries "==" before "!=", so "a!==b" splits at "==" and fails on the key "a!".
    for (op, operator) in [("==", Operator::Eq), ("!=", Operator::NotEq)] {
        let Some((key, value)) = expr.split_once(op) else { continue };
        let key = key.trim();
        if !valid_key(key) {
            return Err(format!("key '{key}' is invalid"));
        }
        let value = value.trim();
        if !valid_value(value) {
            return Err(format!("value '{value}' is invalid"));
        }
        return Ok(Constraint { key: key.to_string(), operator, value: value.to_string() });
    }
    Err("constraint expected one operator from ==, !=".to_string())
}

/// Parses a service's constraint list; the first bad expression fails the whole list.
pub fn parse_constraints(exprs: &[String]) -> Result<Vec<Constraint>, String> {
    exprs.iter().map(|e| parse_constraint(e)).collect()
}

/// `^(?i)[a-z_][a-z0-9\-_.]+$`
fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    let Some(first) = chars.next() else { return false };
    if !(first.is_ascii_alphabetic() || first == '_') {
        return false;
    }
    let rest = chars.as_str();
    !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `^(?i)[a-z0-9:\-_\s\.\*\(\)\?\+\[\]\\\^\$\|\/]+$`: no operator characters such as `<`, `>`, `~`.
fn valid_value(value: &str) -> bool {
    !value.is_empty()
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    ':' | '-'
                        | '_'
                        | '.'
                        | '*'
                        | '('
                        | ')'
                        | '?'
                        | '+'
                        | '['
                        | ']'
                        | '\\'
                        | '^'
                        | '$'
                        | '|'
                        | '/'
                        | ' '
                        | '\t'
                        | '\n'
                        | '\r'
                        | '\x0c'
                )
        })
}

fn equal_fold(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || (!a.is_ascii() || !b.is_ascii()) && a.to_lowercase() == b.to_lowercase()
}

fn strip_prefix_fold<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    if key.len() > prefix.len() && key.is_char_boundary(prefix.len()) && equal_fold(&key[..prefix.len()], prefix) {
        Some(&key[prefix.len()..])
    } else {
        None
    }
}

impl Constraint {
    /// Whether `what` satisfies the expression; values compare case-insensitively.
    fn matches_value(&self, what: &str) -> bool {
        let equal = equal_fold(&self.value, what);
        match self.operator {
            Operator::Eq => equal,
            Operator::NotEq => !equal,
        }
    }

    /// Whether `node` satisfies this expression. Unknown keys never match (swarmkit's default).
    pub fn matches(&self, node: &Node) -> bool {
        let key = self.key.as_str();
        let description = &node.description;
        if equal_fold(key, "node.id") {
            self.matches_value(&node.id)
        } else if equal_fold(key, "node.hostname") {
            self.matches_value(&description.hostname)
        } else if equal_fold(key, "node.role") {
            self.matches_value(match node.spec.role {
                NodeRole::Worker => "worker",
                NodeRole::Manager => "manager",
            })
        } else if equal_fold(key, "node.platform.os") {
            self.matches_value(&description.platform.os)
        } else if equal_fold(key, "node.platform.arch") {
            self.matches_value(&description.platform.architecture)
        } else if let Some(label) = strip_prefix_fold(key, NODE_LABEL_PREFIX) {
            // Label names are case-sensitive; a missing label reads as "".
            self.matches_value(node.spec.labels.get(label).map(String::as_str).unwrap_or(""))
        } else if let Some(label) = strip_prefix_fold(key, ENGINE_LABEL_PREFIX) {
            self.matches_value(description.engine.labels.get(label).map(String::as_str).unwrap_or(""))
        } else {
            false
        }
    }
}

/// Whether `node` satisfies every constraint.
pub fn node_matches(constraints: &[Constraint], node: &Node) -> bool {
    constraints.iter().all(|c| c.matches(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testkit::node;

    #[test]
    fn parse_errors_use_swarmkit_wording() {
        let cases = [
            ("node.role=manager", "constraint expected one operator from ==, !="),
            ("node.role>manager", "constraint expected one operator from ==, !="),
            ("node role==manager", "key 'node role' is invalid"),
            ("1node==x", "key '1node' is invalid"),
            ("n==x", "key 'n' is invalid"),
            ("node.role==", "value '' is invalid"),
            ("node.role==man<ager", "value 'man<ager' is invalid"),
            ("a!==b", "key 'a!' is invalid"),
        ];
        for (expr, want) in cases {
            assert_eq!(parse_constraint(expr).unwrap_err(), want, "{expr}");
        }
    }

    #[test]
    fn parse_trims_and_keeps_operator() {
        let c = parse_constraint(" node.labels.zone != eu-1 ").unwrap();
        assert_eq!(c, Constraint { key: "node.labels.zone".into(), operator: Operator::NotEq, value: "eu-1".into() });
        assert!(parse_constraints(&["node.role==worker".into(), "bad".into()]).is_err());
    }

    #[test]
    fn matching_follows_swarmkit() {
        let mut n = node("n1", "host-a");
        n.node.spec.role = NodeRole::Manager;
        n.node.spec.labels.insert("zone".into(), "EU".into());
        n.node.description.engine.labels.insert("disk".into(), "ssd".into());
        n.node.description.platform.os = "linux".into();
        n.node.description.platform.architecture = "x86_64".into();
        let cases = [
            ("node.id==n1", true),
            ("node.id!=n1", false),
            ("NODE.HOSTNAME==HOST-A", true),
            ("node.role==manager", true),
            ("node.role==worker", false),
            ("node.labels.zone==eu", true),
            ("node.labels.ZONE==eu", false),
            ("node.labels.missing!=x", true),
            ("node.labels.missing==x", false),
            ("engine.labels.disk==ssd", true),
            ("engine.labels.disk!=ssd", false),
            ("node.platform.os==linux", true),
            ("node.platform.arch==x86_64", true),
            ("node.unknown==x", false),
        ];
        for (expr, want) in cases {
            let c = parse_constraint(expr).unwrap();
            assert_eq!(c.matches(&n.node), want, "{expr}");
        }
    }
}
