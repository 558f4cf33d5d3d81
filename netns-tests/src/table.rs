//! Parsing the tables `shoal node ls` and `docker node ls` print.
//!
//! Both print left-aligned columns under a header line, and a column may be empty (MANAGER
//! STATUS on a worker), so splitting on whitespace is wrong: cells are cut at the offsets where
//! the header names start. The self row's ID carries a trailing `*`, as in Docker.

/// One row of `node ls`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRow {
    pub id: String,
    /// The row of the node the command ran against (`*` after the ID).
    pub is_self: bool,
    pub hostname: String,
    pub status: String,
    pub availability: String,
    /// `Leader`, `Reachable`, `Unreachable` or empty for a worker.
    pub manager_status: String,
    pub engine_version: String,
}

/// Splits a left-aligned table into header names and rows of cells.
pub fn parse_table(text: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or_else(|| format!("no header line in {text:?}"))?;
    // Column names are separated by two or more spaces; a name may contain one ("MANAGER STATUS").
    let mut starts = Vec::new();
    let mut names = Vec::new();
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !(chars[i] == ' ' && chars.get(i + 1).is_none_or(|c| *c == ' ')) {
            i += 1;
        }
        starts.push(start);
        names.push(chars[start..i].iter().collect::<String>());
    }
    let rows = lines
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            starts
                .iter()
                .enumerate()
                .map(|(k, &s)| {
                    let end = starts.get(k + 1).copied().unwrap_or(chars.len()).min(chars.len());
                    chars
                        .get(s.min(end)..end)
                        .map(|c| c.iter().collect::<String>())
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                })
                .collect()
        })
        .collect();
    Ok((names, rows))
}

/// Parses `node ls` output (Docker's columns: ID, HOSTNAME, STATUS, AVAILABILITY, MANAGER
/// STATUS, ENGINE VERSION).
pub fn parse_node_ls(text: &str) -> Result<Vec<NodeRow>, String> {
    let (names, rows) = parse_table(text)?;
    let col = |name: &str| {
        names.iter().position(|n| n == name).ok_or_else(|| format!("no {name} column in header {names:?} of {text:?}"))
    };
    let (id, host, status, avail, mgr) =
        (col("ID")?, col("HOSTNAME")?, col("STATUS")?, col("AVAILABILITY")?, col("MANAGER STATUS")?);
    let engine = col("ENGINE VERSION").ok();
    Ok(rows
        .into_iter()
        .map(|r| {
            let raw_id = r[id].clone();
            let (id, is_self) = match raw_id.strip_suffix('*') {
                Some(rest) => (rest.trim().to_string(), true),
                None => (raw_id, false),
            };
            NodeRow {
                id,
                is_self,
                hostname: r[host].clone(),
                status: r[status].clone(),
                availability: r[avail].clone(),
                manager_status: r[mgr].clone(),
                engine_version: engine.map(|e| r[e].clone()).unwrap_or_default(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: &[(&str, bool, &str, &str, &str, &str)]) {
        let rows = parse_node_ls(text).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.is_self,
                    r.hostname.as_str(),
                    r.status.as_str(),
                    r.availability.as_str(),
                    r.manager_status.as_str(),
                )
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn docker_table_with_empty_manager_status() {
        check(
            "ID                            HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n\
             x1ks8pcsd0r7mpvscsbgfg7vr *   node1      Ready     Active         Leader           28.2.2\n\
             5s3ssnqzt1ioj0s4ax3qt9w4u     node4      Ready     Drain                           28.2.2\n\
             kq4fys4bb5z1ofbhdxh3dw0jq     node2      Down      Active         Unreachable      28.2.2\n",
            &[
                ("x1ks8pcsd0r7mpvscsbgfg7vr", true, "node1", "Ready", "Active", "Leader"),
                ("5s3ssnqzt1ioj0s4ax3qt9w4u", false, "node4", "Ready", "Drain", ""),
                ("kq4fys4bb5z1ofbhdxh3dw0jq", false, "node2", "Down", "Active", "Unreachable"),
            ],
        );
    }

    #[test]
    fn padded_table_without_engine_column() {
        check(
            " ID       HOSTNAME  STATUS  AVAILABILITY  MANAGER STATUS \n\
             \x20abc *    node1     Ready   Active        Reachable      \n\
             \x20def      node2     Ready   Active                       \n",
            &[("abc", true, "node1", "Ready", "Active", "Reachable"), ("def", false, "node2", "Ready", "Active", "")],
        );
    }

    #[test]
    fn missing_column_is_an_error() {
        assert!(parse_node_ls("ID HOSTNAME\nabc node1\n").is_err());
    }
}
