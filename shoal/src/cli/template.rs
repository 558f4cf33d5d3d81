//! A subset of Go's text/template for `--format`, evaluated over JSON values.
//!
//! Supported: text, `{{.}}`, `{{.Field.Sub}}`, `{{json .X}}`, `{{upper .X}}`, `{{lower .X}}`,
//! `{{title .X}}`, `{{if .X}}…{{else}}…{{end}}` and `{{-`/`-}}` whitespace trimming. That covers
//! docker's default formats and the templates people put in scripts; anything else is refused
//! with a parse error instead of being printed wrongly.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// `.` (empty path) or `.A.B`.
    Field(Vec<String>),
    Func(String, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Print(Expr),
    If(Expr, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

/// What a missing field does: `Strict` fails like a Go struct, `Lenient` prints `<no value>`
/// like a Go map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Strict,
    Lenient,
}

enum Token {
    Text(String),
    Action(String),
}

fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_string();
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("unclosed action")?;
        let mut action = &after[..end];
        if let Some(a) = action.strip_prefix('-').filter(|a| a.starts_with(char::is_whitespace)) {
            text = text.trim_end().to_string();
            action = a;
        }
        let mut trim_next = false;
        if let Some(a) = action.strip_suffix('-').filter(|a| a.ends_with(char::is_whitespace)) {
            trim_next = true;
            action = a;
        }
        tokens.push(Token::Text(text));
        tokens.push(Token::Action(action.trim().to_string()));
        rest = &after[end + 2..];
        if trim_next {
            rest = rest.trim_start();
        }
    }
    tokens.push(Token::Text(rest.to_string()));
    Ok(tokens)
}

fn parse_expr(s: &str) -> Result<Expr, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    match words.as_slice() {
        [field] => parse_field(field),
        [func @ ("json" | "upper" | "lower" | "title"), arg] => {
            Ok(Expr::Func(func.to_string(), Box::new(parse_field(arg)?)))
        }
        [func, ..] if !func.starts_with('.') => Err(format!("function {func:?} not defined")),
        _ => Err(format!("unexpected {s:?} in command")),
    }
}

fn parse_field(s: &str) -> Result<Expr, String> {
    if s == "." {
        return Ok(Expr::Field(vec![]));
    }
    let path = s.strip_prefix('.').ok_or_else(|| format!("unexpected {s:?} in operand"))?;
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    if parts.iter().any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_')) {
        return Err(format!("bad field {s:?}"));
    }
    Ok(Expr::Field(parts))
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let wrap = |e: String| format!("template parsing error: template: :1: {e}");
        let tokens = tokenize(src).map_err(wrap)?;
        let mut iter = tokens.into_iter();
        let (nodes, stop) = parse_block(&mut iter).map_err(wrap)?;
        match stop {
            None => Ok(Template { nodes }),
            Some(s) => Err(wrap(format!("unexpected {{{{{s}}}}}"))),
        }
    }

    pub fn render(&self, ctx: &Value, missing: Missing) -> Result<String, String> {
        let mut out = String::new();
        render_nodes(&self.nodes, ctx, missing, &mut out)?;
        Ok(out)
    }
}

/// Parses until `{{else}}`/`{{end}}` (returned) or the end of input (`None`).
fn parse_block(tokens: &mut impl Iterator<Item = Token>) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while let Some(token) = tokens.next() {
        match token {
            Token::Text(t) if t.is_empty() => {}
            Token::Text(t) => nodes.push(Node::Text(t)),
            Token::Action(a) if a == "else" || a == "end" => return Ok((nodes, Some(a))),
            Token::Action(a) => {
                if let Some(cond) = a.strip_prefix("if ") {
                    let cond = parse_expr(cond)?;
                    let (then, stop) = parse_block(tokens)?;
                    let otherwise = match stop.as_deref() {
                        Some("else") => match parse_block(tokens)? {
                            (nodes, Some(end)) if end == "end" => nodes,
                            _ => return Err("unexpected EOF".into()),
                        },
                        Some("end") => vec![],
                        _ => return Err("unexpected EOF".into()),
                    };
                    nodes.push(Node::If(cond, then, otherwise));
                } else {
                    nodes.push(Node::Print(parse_expr(&a)?));
                }
            }
        }
    }
    Ok((nodes, None))
}

fn render_nodes(nodes: &[Node], ctx: &Value, missing: Missing, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Print(e) => out.push_str(&display(&eval(e, ctx, missing)?)),
            Node::If(cond, then, otherwise) => {
                let branch = if truthy(&eval(cond, ctx, missing)?) { then } else { otherwise };
                render_nodes(branch, ctx, missing, out)?;
            }
        }
    }
    Ok(())
}

fn eval(expr: &Expr, ctx: &Value, missing: Missing) -> Result<Value, String> {
    match expr {
        Expr::Field(path) => {
            let mut v = ctx;
            for name in path {
                match v.get(name) {
                    Some(next) => v = next,
                    None if missing == Missing::Lenient => return Ok(Value::Null),
                    None => {
                        return Err(format!(
                            "template: :1: executing \"\" at <.{}>: can't evaluate field {name}",
                            path.join(".")
                        ))
                    }
                }
            }
            Ok(v.clone())
        }
        Expr::Func(name, arg) => {
            let v = eval(arg, ctx, missing)?;
            Ok(Value::String(match name.as_str() {
                "json" => serde_json::to_string(&v).unwrap_or_default(),
                "upper" => display(&v).to_uppercase(),
                "lower" => display(&v).to_lowercase(),
                _ => title(&display(&v)),
            }))
        }
    }
}

fn title(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
        })
        .collect::<Vec<String>>()
        .join(" ")
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How Go's `fmt` prints a value decoded from JSON.
fn display(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(display).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            format!("map[{}]", map.iter().map(|(k, v)| format!("{k}:{}", display(v))).collect::<Vec<_>>().join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, ctx: &Value) -> String {
        Template::parse(src).unwrap().render(ctx, Missing::Strict).unwrap()
    }

    #[test]
    fn renders_fields_functions_and_conditionals() {
        let ctx = json!({"ID": "abc", "Self": true, "Spec": {"Role": "manager", "Labels": {}}, "N": 0});
        assert_eq!(render("{{.ID}}", &ctx), "abc");
        assert_eq!(render("{{ .Spec.Role }}!", &ctx), "manager!");
        assert_eq!(render("{{.ID}} {{if .Self}}*{{else}} {{ end }}\t", &ctx), "abc *\t");
        assert_eq!(render("{{if .N}}yes{{else}}no{{end}}", &ctx), "no");
        assert_eq!(render("{{if .Spec.Labels}}l{{end}}", &ctx), "");
        assert_eq!(render("{{json .Spec}}", &ctx), r#"{"Labels":{},"Role":"manager"}"#);
        assert_eq!(render("{{upper .Spec.Role}} {{title .Spec.Role}}", &ctx), "MANAGER Manager");
        assert_eq!(render("a  {{- .ID -}}  b", &ctx), "aabcb");
    }

    #[test]
    fn missing_fields() {
        let ctx = json!({"ID": "abc"});
        let t = Template::parse("{{.Nope}}").unwrap();
        assert_eq!(t.render(&ctx, Missing::Lenient).unwrap(), "<no value>");
        let e = t.render(&ctx, Missing::Strict).unwrap_err();
        assert!(e.contains("can't evaluate field Nope"), "{e}");
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in ["{{.ID", "{{range .X}}{{end}}", "{{if .X}}", "{{end}}", "{{printf \"%s\" .X}}"] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.starts_with("template parsing error"), "{bad}: {e}");
        }
    }
}
