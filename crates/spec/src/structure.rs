//! Structural checks: the located YAML tree against the JSON Schema of [`DeploymentSpec`].
//!
//! serde stops at the first error; users want them all. So the tree is first walked against the
//! schema that schemars derives from the very types serde will fill, collecting every unknown
//! field (with a did-you-mean), wrong type, bad enum value, missing field and malformed duration,
//! quantity or secret reference. Only a tree that passes is handed to serde.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use crate::DeploymentSpec;
use crate::diagnostic::{Issue, did_you_mean, one_of};
use crate::node::{Node, NodeValue, Position};
use crate::secret::ConfigValue;
use crate::units::{Duration, Quantity};

/// A structural finding and where it is.
pub(crate) struct Located {
    pub at: Position,
    pub issue: Issue,
    /// For an unknown field that is a likely typo of an absent field: that field's path. Errors
    /// about the absent field (missing, nothing to run, ...) would only repeat this one.
    pub meant: Option<String>,
}

/// The spec's JSON Schema with every subschema inlined, built once.
pub fn spec_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let generator = SchemaSettings::draft2020_12()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        generator
            .into_root_schema_for::<DeploymentSpec>()
            .to_value()
    })
}

/// Checks a document against the spec schema and returns every finding.
pub(crate) fn check(document: &Node) -> Vec<Located> {
    let mut out = Vec::new();
    check_node(document, spec_schema(), "", &mut out);
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn push(out: &mut Vec<Located>, at: Position, issue: Issue) {
    out.push(Located {
        at,
        issue,
        meant: None,
    });
}

fn check_node(node: &Node, schema: &Value, path: &str, out: &mut Vec<Located>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if let Some(branches) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    {
        check_alternatives(node, branches, path, out);
        return;
    }
    if let Some(types) = schema.get("type")
        && !type_matches(types, &node.value)
    {
        let format = schema.get("format").and_then(Value::as_str);
        push(out, node.at, type_error(types, format, node, path));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        check_enum(node, allowed, path, out);
        return;
    }
    if let Some(expected) = schema.get("const")
        && &node.value.to_json() != expected
    {
        push(
            out,
            node.at,
            Issue::error(path, format!("must be {expected}")),
        );
        return;
    }
    match &node.value {
        NodeValue::Map(entries) => check_object(node, entries, schema, path, out),
        NodeValue::Seq(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_node(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
            check_count(node, items.len(), schema, path, out);
        }
        NodeValue::Int(_) | NodeValue::Float(_) => check_range(node, schema, path, out),
        NodeValue::String(text) => check_format(node, text, schema, path, out),
        NodeValue::Null | NodeValue::Bool(_) => {}
    }
}

fn type_matches(types: &Value, value: &NodeValue) -> bool {
    let found = value.type_name();
    let accepts = |t: &str| t == found || (t == "number" && found == "integer");
    match types {
        Value::String(t) => accepts(t),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(accepts),
        _ => true,
    }
}

fn type_names(types: &Value) -> Vec<String> {
    match types {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn describe(value: &NodeValue) -> String {
    match value {
        NodeValue::Null => "nothing (the value is empty)".to_owned(),
        NodeValue::Seq(_) => "a list".to_owned(),
        NodeValue::Map(_) => "a mapping".to_owned(),
        NodeValue::String(s) => format!("the string {s:?}"),
        NodeValue::Bool(b) => format!("the boolean {b}"),
        NodeValue::Int(i) => format!("the integer {i}"),
        NodeValue::Float(f) if f.is_nan() => "`.nan` (not a number)".to_owned(),
        NodeValue::Float(f) if f.is_infinite() => "an infinite number".to_owned(),
        NodeValue::Float(f) => format!("the number {f}"),
    }
}

fn a_type(t: &str) -> &'static str {
    match t {
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "array" => "a list",
        "object" => "a mapping",
        _ => "a value",
    }
}

fn type_error(types: &Value, format: Option<&str>, node: &Node, path: &str) -> Issue {
    let expected: Vec<&str> = type_names(types).iter().map(|t| a_type(t)).collect();
    let expected = expected.join(" or ");
    let issue = Issue::error(
        path,
        format!("expected {expected}, found {}", describe(&node.value)),
    );
    match (&node.value, expected.as_str()) {
        (NodeValue::Int(n), _) if format == Some("duration") => {
            issue.help(format!("write it with a unit, for example {n}s or {n}ms"))
        }
        (NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_), "a string") => {
            issue.help("quote the value to make it a string, for example \"8080\"")
        }
        (NodeValue::String(_), "a list") => issue
            .help("write a list, for example [\"python\", \"serve.py\"] or one `- item` per line"),
        (NodeValue::Null, _) => issue.help("give a value or remove the field"),
        _ => issue,
    }
}

fn check_enum(node: &Node, allowed: &[Value], path: &str, out: &mut Vec<Located>) {
    let value = node.value.to_json();
    if allowed.contains(&value) {
        return;
    }
    let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
    let mut issue = Issue::error(
        path,
        format!("{} is not allowed here", describe(&node.value)),
    );
    let mut help = format!("use {}", one_of(&names));
    if let NodeValue::String(s) = &node.value
        && let Some(close) = did_you_mean(s, names.iter().copied())
    {
        help = format!("did you mean `{close}`? Allowed: {}", one_of(&names));
    }
    issue = issue.help(help);
    push(out, node.at, issue);
}

/// The property whose `const` tells the branches of a tagged enum apart (`type` for integrations).
fn discriminator(branches: &[Value]) -> Option<(String, Vec<(String, &Value)>)> {
    let mut field = None;
    let mut tags = Vec::new();
    for branch in branches {
        let props = branch.get("properties")?.as_object()?;
        let (name, tag) = props
            .iter()
            .find_map(|(k, v)| v.get("const").and_then(Value::as_str).map(|c| (k, c)))?;
        match &field {
            None => field = Some(name.clone()),
            Some(f) if f == name => {}
            Some(_) => return None,
        }
        tags.push((tag.to_owned(), branch));
    }
    field.map(|f| (f, tags))
}

fn check_alternatives(node: &Node, branches: &[Value], path: &str, out: &mut Vec<Located>) {
    // A unit-variant enum with documented variants is a oneOf of string consts.
    let consts: Option<Vec<Value>> = branches.iter().map(|b| b.get("const").cloned()).collect();
    if let Some(consts) = consts {
        check_enum(node, &consts, path, out);
        return;
    }
    if let Some((field, tags)) = discriminator(branches) {
        let names: Vec<&str> = tags.iter().map(|(t, _)| t.as_str()).collect();
        let NodeValue::Map(entries) = &node.value else {
            push(
                out,
                node.at,
                Issue::error(
                    path,
                    format!("expected a mapping, found {}", describe(&node.value)),
                ),
            );
            return;
        };
        let Some((_, tag_node)) = entries.iter().find(|(k, _)| k.name == field) else {
            push(
                out,
                node.at,
                Issue::error(path, format!("missing required field `{field}`"))
                    .help(format!("add `{field}:` with one of {}", one_of(&names))),
            );
            return;
        };
        let tag = match &tag_node.value {
            NodeValue::String(s) => s.as_str(),
            _ => "",
        };
        match tags.iter().find(|(t, _)| t == tag) {
            Some((_, branch)) => check_node(node, branch, path, out),
            None => {
                let mut help = format!("use {}", one_of(&names));
                if let Some(close) = did_you_mean(tag, names.iter().copied()) {
                    help = format!("did you mean `{close}`? Allowed: {}", one_of(&names));
                }
                push(
                    out,
                    tag_node.at,
                    Issue::error(
                        join(path, &field),
                        format!("{} is not a known {field}", describe(&tag_node.value)),
                    )
                    .help(help),
                );
            }
        }
        return;
    }
    // Untagged alternatives (an optional value, an int-or-string quantity): the first branch that
    // accepts the node wins; otherwise report against the branch whose type fits, if any.
    let mut best: Option<Vec<Located>> = None;
    for branch in branches {
        let mut trial = Vec::new();
        check_node(node, branch, path, &mut trial);
        if trial.is_empty() {
            return;
        }
        let fits = branch
            .get("type")
            .is_none_or(|t| type_matches(t, &node.value));
        if fits && best.is_none() {
            best = Some(trial);
        }
    }
    match best {
        Some(found) => out.extend(found),
        None => {
            let types: Vec<String> = branches
                .iter()
                .filter_map(|b| b.get("type"))
                .flat_map(type_names)
                .collect();
            let types: Vec<&str> = types.iter().map(|t| a_type(t)).collect();
            push(
                out,
                node.at,
                Issue::error(
                    path,
                    format!(
                        "expected {}, found {}",
                        types.join(" or "),
                        describe(&node.value)
                    ),
                ),
            );
        }
    }
}

fn check_object(
    node: &Node,
    entries: &[(crate::node::Key, Node)],
    schema: &Map<String, Value>,
    path: &str,
    out: &mut Vec<Located>,
) {
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let additional = schema.get("additionalProperties");
    let mut meant = Vec::new();
    for (key, value) in entries {
        let field_path = join(path, &key.name);
        if let Some(field_schema) = properties.get(&key.name) {
            check_node(value, field_schema, &field_path, out);
            continue;
        }
        match additional {
            Some(Value::Bool(false)) => {
                let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                let (help, typo_of) = unknown_field_help(&key.name, path, &known);
                let mut issue = Issue::error(&field_path, format!("unknown field `{}`", key.name));
                if let Some(help) = help {
                    issue = issue.help(help);
                }
                let typo_of = typo_of.filter(|f| !entries.iter().any(|(k, _)| k.name == *f));
                if let Some(field) = typo_of {
                    meant.push(field);
                }
                out.push(Located {
                    at: key.at,
                    issue,
                    meant: typo_of.map(|f| join(path, f)),
                });
            }
            Some(extra) if extra.is_object() => check_node(value, extra, &field_path, out),
            _ => {}
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for field in required.iter().filter_map(Value::as_str) {
            // A likely typo of the field was already reported with a did-you-mean.
            if !entries.iter().any(|(k, _)| k.name == field) && !meant.contains(&field) {
                push(
                    out,
                    node.at,
                    Issue::error(
                        join(path, field),
                        format!("missing required field `{field}`"),
                    ),
                );
            }
        }
    }
}

/// The help for an unknown field `name` in the mapping at `path` whose fields are `known`, and
/// the known field it is probably a typo of.
///
/// A field that exists one level or more below `path` (`maxReplicas` written directly under
/// `resources`) is misplaced rather than misspelled, so that hint wins over a look-alike here.
fn unknown_field_help<'a>(
    name: &str,
    path: &str,
    known: &[&'a str],
) -> (Option<String>, Option<&'a str>) {
    let close = did_you_mean(name, known.iter().copied());
    // Homes are written with `[]` for list items; compare with this path written the same way.
    let here = without_indices(path);
    let homes: Vec<&str> = homes_of(name).into_iter().filter(|h| *h != here).collect();
    let below: Vec<&str> = homes
        .iter()
        .copied()
        .filter(|h| here.is_empty() || h.starts_with(&format!("{here}.")))
        .collect();
    match close {
        Some(close) if close.eq_ignore_ascii_case(name) => {
            (Some(format!("did you mean `{close}`?")), Some(close))
        }
        _ if !below.is_empty() => (Some(belongs_under(name, &below)), None),
        Some(close) => (Some(format!("did you mean `{close}`?")), Some(close)),
        None if !homes.is_empty() => (Some(belongs_under(name, &homes)), None),
        None if known.is_empty() => (None, None),
        None => (
            Some(format!("fields allowed here: {}", one_of(known))),
            None,
        ),
    }
}

/// `integrations[2].path` as `integrations[].path`.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            c if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

fn belongs_under(name: &str, homes: &[&str]) -> String {
    let under: Vec<String> = homes
        .iter()
        .filter(|home| !home.is_empty())
        .map(|home| match home.strip_suffix("[]") {
            Some(list) => format!("an item of `{list}`"),
            None => format!("`{home}`"),
        })
        .collect();
    let mut places = Vec::new();
    if homes.contains(&"") {
        places.push("at the top level of the spec".to_owned());
    }
    match under.len() {
        0 => {}
        1 => places.push(format!("under {}", under[0])),
        n => places.push(format!(
            "under {} or {}",
            under[..n - 1].join(", "),
            under[n - 1]
        )),
    }
    format!("`{name}` belongs {}", places.join(" or "))
}

/// Where fields of this name live in the spec (`""` for the top level), for "belongs under"
/// hints.
fn homes_of(field: &str) -> Vec<&'static str> {
    static HOMES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    let homes = HOMES.get_or_init(|| {
        let mut homes = Vec::new();
        collect_homes(spec_schema(), "", &mut homes);
        homes
    });
    let mut found: Vec<&'static str> = Vec::new();
    for (_, home) in homes
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(field))
    {
        if !found.contains(&home.as_str()) {
            found.push(home.as_str());
        }
    }
    found
}

fn collect_homes(schema: &Value, path: &str, homes: &mut Vec<(String, String)>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            homes.push((name.clone(), path.to_owned()));
            collect_homes(sub, &join(path, name), homes);
        }
    }
    for key in ["anyOf", "oneOf"] {
        for branch in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect_homes(branch, path, homes);
        }
    }
    if let Some(items) = schema.get("items") {
        collect_homes(items, &format!("{path}[]"), homes);
    }
}

fn check_count(
    node: &Node,
    len: usize,
    schema: &Map<String, Value>,
    path: &str,
    out: &mut Vec<Located>,
) {
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && len as u64 > max
    {
        push(
            out,
            node.at,
            Issue::error(path, format!("has {len} items; at most {max} are allowed")),
        );
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (len as u64) < min
    {
        push(
            out,
            node.at,
            Issue::error(path, format!("has {len} items; at least {min} are needed")),
        );
    }
}

fn check_range(node: &Node, schema: &Map<String, Value>, path: &str, out: &mut Vec<Located>) {
    let value = match node.value {
        NodeValue::Int(i) => i as f64,
        NodeValue::Float(f) => f,
        _ => return,
    };
    if !value.is_finite() {
        push(
            out,
            node.at,
            Issue::error(
                path,
                format!("expected a finite number, found {}", describe(&node.value)),
            )
            .help("write a number such as 50 or 0.5"),
        );
        return;
    }
    // schemars gives `u32` fields a minimum but no maximum; the format says what serde accepts.
    let (format_min, format_max) = match schema.get("format").and_then(Value::as_str) {
        Some("uint8") => (Some(0.0), Some(f64::from(u8::MAX))),
        Some("uint16") => (Some(0.0), Some(f64::from(u16::MAX))),
        Some("uint32") => (Some(0.0), Some(f64::from(u32::MAX))),
        Some("int32") => (Some(f64::from(i32::MIN)), Some(f64::from(i32::MAX))),
        _ => (None, None),
    };
    let min = schema.get("minimum").and_then(Value::as_f64).or(format_min);
    let max = schema.get("maximum").and_then(Value::as_f64).or(format_max);
    let outside = min.is_some_and(|m| value < m) || max.is_some_and(|m| value > m);
    if outside {
        let range = match (min, max) {
            (Some(lo), Some(hi)) => format!("from {lo} to {hi}"),
            (Some(lo), None) => format!("{lo} or more"),
            (None, Some(hi)) => format!("{hi} or less"),
            (None, None) => String::new(),
        };
        push(
            out,
            node.at,
            Issue::error(path, format!("{} is out of range", describe(&node.value)))
                .help(format!("use a value {range}")),
        );
    }
}

fn check_format(
    node: &Node,
    text: &str,
    schema: &Map<String, Value>,
    path: &str,
    out: &mut Vec<Located>,
) {
    let problem = match schema.get("format").and_then(Value::as_str) {
        Some("duration") => text.parse::<Duration>().err().map(|e| e.to_string()),
        Some("quantity") => text.parse::<Quantity>().err().map(|e| e.to_string()),
        Some("config-value") => ConfigValue::parse(text).err().map(|e| e.to_string()),
        _ => None,
    };
    if let Some(message) = problem {
        push(out, node.at, Issue::error(path, message));
    }
}
