//! Table and `--format` output shaped like the docker CLI's formatter package.
//!
//! Tables go through [`tabwrite`], which reproduces Go's `text/tabwriter` as docker configures
//! it (minimum width 10, padding 3), so columns line up byte for byte with docker's.

use control::objects::{Node, SwarmInfo, TlsInfo};
use serde_json::{json, Value};

use super::template::{Missing, Template};

/// docker's default `node ls` format.
pub const NODE_TABLE_FORMAT: &str = "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\\t{{.Hostname}}\\t{{.Status}}\\t{{.Availability}}\\t{{.ManagerStatus}}\\t{{.EngineVersion}}";
const NODE_RAW_FORMAT: &str = "node_id: {{.ID}}\\nhostname: {{.Hostname}}\\nstatus: {{.Status}}\\navailability: {{.Availability}}\\nmanager_status: {{.ManagerStatus}}\\n";

/// Go's `text/tabwriter` with docker's settings: each tab-terminated cell is padded to its
/// column's widest cell plus `padding`, at least `min_width`; a line's last cell is not aligned.
pub fn tabwrite(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    // Columns are aligned over blocks of consecutive lines that have a cell in that column.
    let widths = column_widths(&lines, min_width, padding);
    for (i, cells) in lines.iter().enumerate() {
        for (c, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < cells.len() {
                let pad = widths[i][c].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
    out
}

fn column_widths(lines: &[Vec<&str>], min_width: usize, padding: usize) -> Vec<Vec<usize>> {
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len()]).collect();
    let max_cols = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    for col in 0..max_cols {
        let mut i = 0;
        while i < lines.len() {
            if lines[i].len() <= col + 1 {
                i += 1;
                continue;
            }
            let start = i;
            while i < lines.len() && lines[i].len() > col + 1 {
                i += 1;
            }
            let width =
                lines[start..i].iter().map(|l| l[col].chars().count() + padding).max().unwrap_or(0).max(min_width);
            for w in &mut widths[start..i] {
                w[col] = width;
            }
        }
    }
    widths
}

/// `sortorder.NaturalLess` as an ordering: digit runs compare as numbers ("node2" < "node10")
/// and sort before other characters ("web2.1" < "web.1").
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (ra, rb) = (run(a), run(b));
                let (na, nb) = (trim_zeros(&a[..ra]), trim_zeros(&b[..rb]));
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)).then(ra.cmp(&rb));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
                (a, b) = (&a[ra..], &b[rb..]);
            }
            (Some(x), Some(y)) if x.is_ascii_digit() != y.is_ascii_digit() => {
                return if x.is_ascii_digit() { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater };
            }
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => (a, b) = (&a[1..], &b[1..]),
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros.min(digits.len().saturating_sub(1))..]
}

/// docker's `formatter.PrettyPrint` for strings: the first letter upper case, the rest lower
/// case ("ready" → "Ready", "… +0000 UTC" → "… +0000 utc").
pub fn capitalize_first(s: &str) -> String {
    let mut c = s.chars();
    match (c.next(), c.as_str()) {
        (None, _) => String::new(),
        (Some(f), "") => f.to_lowercase().collect(),
        (Some(f), rest) => f.to_uppercase().chain(rest.to_lowercase().chars()).collect(),
    }
}

/// docker's `TLSStatus` column: whether the node's certificate chains to the current root.
fn tls_status(node: &Node, swarm: &SwarmInfo) -> &'static str {
    let cluster_tls = swarm
        .cluster
        .as_ref()
        .and_then(|c| c.get("TLSInfo"))
        .and_then(|t| serde_json::from_value::<TlsInfo>(t.clone()).ok())
        .unwrap_or_default();
    let node_tls = &node.description.tls_info;
    if cluster_tls == TlsInfo::default() || *node_tls == TlsInfo::default() {
        "Unknown"
    } else if *node_tls == cluster_tls {
        "Ready"
    } else {
        "Needs Rotation"
    }
}

/// The JSON name of an API enum value (`NodeState::Ready` → `ready`).
pub fn api_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// What a `node ls` template sees for one node (docker's `nodeContext`), keys in Go's order.
/// `swarm` is `/info`'s `Swarm` (the current node's ID and the cluster's trust root).
pub fn node_row(node: &Node, swarm: &SwarmInfo) -> Value {
    let manager_status = match &node.manager_status {
        Some(ms) if ms.leader => "Leader".to_string(),
        Some(ms) => capitalize_first(&api_name(&ms.reachability)),
        None => String::new(),
    };
    json!({
        "Availability": capitalize_first(&api_name(&node.spec.availability)),
        "EngineVersion": node.description.engine.engine_version,
        "Hostname": node.description.hostname,
        "ID": node.id,
        "ManagerStatus": manager_status,
        "Self": !swarm.node_id.is_empty() && node.id == swarm.node_id,
        "Status": capitalize_first(&api_name(&node.status.state)),
        "TLSStatus": tls_status(node, swarm),
    })
}

fn node_headers() -> Value {
    json!({
        "Availability": "AVAILABILITY",
        "EngineVersion": "ENGINE VERSION",
        "Hostname": "HOSTNAME",
        "ID": "ID",
        "ManagerStatus": "MANAGER STATUS",
        "Self": "",
        "Status": "STATUS",
        "TLSStatus": "TLS STATUS",
    })
}

/// docker's `newFormat` for `node ls`: `table`, `json`, `raw` or a template; `-q` → IDs.
pub fn node_list_format(format: Option<&str>, quiet: bool) -> String {
    match format.unwrap_or("table") {
        "table" | "" if quiet => "{{.ID}}".into(),
        "table" | "" => NODE_TABLE_FORMAT.into(),
        "raw" if quiet => "node_id: {{.ID}}".into(),
        "raw" => NODE_RAW_FORMAT.into(),
        "json" => "json".into(),
        other => other.into(),
    }
}

/// Renders rows through a docker-style format: `table …` gets a header and tabwriter, `json` is
/// one object per line, anything else is a template applied per row.
pub fn render_rows(format: &str, rows: &[Value], headers: &Value) -> Result<String, String> {
    let (is_table, body) = match format {
        "json" => (false, "{{json .}}"),
        f => match f.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, f),
        },
    };
    let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
    let template = Template::parse(&body)?;
    let mut out = String::new();
    for row in rows {
        out.push_str(&template.render(row, Missing::Strict)?);
        out.push('\n');
    }
    if !is_table {
        return Ok(out);
    }
    let header = template.render(headers, Missing::Lenient)?;
    Ok(tabwrite(&format!("{header}\n{out}"), 10, 3))
}

/// `node ls` output: nodes sorted naturally by hostname, the current node marked.
pub fn render_node_list(nodes: &[Node], swarm: &SwarmInfo, format: &str) -> Result<String, String> {
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(&a.description.hostname, &b.description.hostname));
    let rows: Vec<Value> = sorted.iter().map(|n| node_row(n, swarm)).collect();
    render_rows(format, &rows, &node_headers())
}

/// Each error on its own line, as docker reports a command that failed for some of its arguments.
pub fn joined(errors: Vec<String>) -> anyhow::Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(errors.join("\n")))
    }
}

/// docker's `inspect` of several objects: every one found is printed (a JSON array, or the
/// template once per object), then the errors of those that were not.
pub async fn inspect_all<T, F, Fut>(
    names: &[String],
    format: &str,
    out: &mut dyn std::io::Write,
    fetch: F,
) -> anyhow::Result<()>
where
    T: serde::Serialize,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let (mut found, mut errors) = (Vec::new(), Vec::new());
    for name in names {
        match fetch(name.clone()).await {
            Ok(item) => found.push(item),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let text = match format {
        "" | "json" => inspect_json(&found),
        template => inspect_template(template, &found).map_err(|e| anyhow::anyhow!(e))?,
    };
    out.write_all(text.as_bytes())?;
    joined(errors)
}

/// `node inspect` without `--pretty`: a JSON array indented by four spaces, like docker's.
pub fn inspect_json<T: serde::Serialize>(items: &[T]) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    serde::Serialize::serialize(items, &mut ser).expect("API objects serialize");
    let mut s = String::from_utf8(buf).expect("JSON is UTF-8");
    s.push('\n');
    s
}

/// `node inspect --format TEMPLATE` (lenient like docker's raw-JSON fallback).
pub fn inspect_template<T: serde::Serialize>(format: &str, items: &[T]) -> Result<String, String> {
    let template = Template::parse(&format.replace("\\t", "\t").replace("\\n", "\n"))?;
    let mut out = String::new();
    for item in items {
        let v = serde_json::to_value(item).map_err(|e| e.to_string())?;
        out.push_str(&template.render(&v, Missing::Lenient)?);
        out.push('\n');
    }
    Ok(out)
}

/// `go-units.BytesSize`: binary units with four significant digits ("3.686GiB").
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let (mut size, mut i) = (size, 0);
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", go_g4(size), UNITS[i])
}

/// Go's `%.4g` for values below 10000.
fn go_g4(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    let decimals = (3 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
