//! A YAML document as a tree of located nodes.
//!
//! serde-saphyr parses the text (with its resource budget on) into this tree, where every key and
//! value keeps its line and column. The loader checks the tree against the spec's schema to report
//! every error at once, and later finds the location of any field path for semantic errors.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl From<serde_saphyr::Location> for Position {
    fn from(l: serde_saphyr::Location) -> Self {
        Self {
            line: l.line(),
            column: l.column(),
        }
    }
}

/// A value and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: NodeValue,
    /// Where it starts.
    pub at: Position,
}

/// A mapping key and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key's text (non-string keys as written: `8000`, `true`).
    pub name: String,
    /// Where it starts.
    pub at: Position,
}

/// The kinds of YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// `~`, `null` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i128),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A string.
    String(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Key, Node)>),
}

impl NodeValue {
    /// The JSON Schema type name of this value, for messages and type checks.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "boolean",
            NodeValue::Int(_) => "integer",
            NodeValue::Float(_) => "number",
            NodeValue::String(_) => "string",
            NodeValue::Seq(_) => "array",
            NodeValue::Map(_) => "object",
        }
    }

    /// The value as JSON without the mapping entries at `skip` (field paths) and below them.
    pub fn to_json_without(&self, skip: &[String]) -> serde_json::Value {
        if skip.is_empty() {
            return self.to_json();
        }
        self.pruned_json("", skip)
    }

    fn pruned_json(&self, path: &str, skip: &[String]) -> serde_json::Value {
        use serde_json::Value;
        match self {
            NodeValue::Seq(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n.value.pruned_json(&format!("{path}[{i}]"), skip))
                    .collect(),
            ),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .filter_map(|(k, v)| {
                        let child = if path.is_empty() {
                            k.name.clone()
                        } else {
                            format!("{path}.{}", k.name)
                        };
                        let broken = skip
                            .iter()
                            .any(|s| *s == child || s.starts_with(&format!("{child}[")));
                        (!broken).then(|| (k.name.clone(), v.value.pruned_json(&child, skip)))
                    })
                    .collect(),
            ),
            other => other.to_json(),
        }
    }

    /// The value as JSON, for typed deserialisation once the tree is known to be valid.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::from(*i as f64)),
            NodeValue::Float(f) => Value::from(*f),
            NodeValue::String(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => {
                Value::Array(items.iter().map(|n| n.value.to_json()).collect())
            }
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.value.to_json()))
                    .collect(),
            ),
        }
    }
}

impl Node {
    /// The node at a field path such as `resources.autoscaling.metrics[1].value`, or the deepest
    /// node on the way there when the path goes further than the document.
    pub fn locate(&self, path: &str) -> Position {
        let mut node = self;
        for step in path_steps(path) {
            let next = match (&node.value, step) {
                (NodeValue::Map(entries), Step::Field(name)) => {
                    entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v)
                }
                (NodeValue::Seq(items), Step::Index(i)) => items.get(i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.at
    }

    /// The position of the key that names a field, when the path ends at a mapping key.
    pub fn locate_key(&self, path: &str) -> Option<Position> {
        let (parent, last) = match path.rfind('.') {
            Some(dot) if !path[dot + 1..].contains('[') => (&path[..dot], &path[dot + 1..]),
            None if !path.contains('[') => ("", path),
            _ => return None,
        };
        let mut node = self;
        for step in path_steps(parent) {
            node = match (&node.value, step) {
                (NodeValue::Map(entries), Step::Field(name)) => {
                    &entries.iter().find(|(k, _)| k.name == name)?.1
                }
                (NodeValue::Seq(items), Step::Index(i)) => items.get(i)?,
                _ => return None,
            };
        }
        match &node.value {
            NodeValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == last)
                .map(|(k, _)| k.at),
            _ => None,
        }
    }
}

enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

fn path_steps(path: &str) -> impl Iterator<Item = Step<'_>> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .flat_map(|segment| {
            let (field, rest) = segment.split_at(segment.find('[').unwrap_or(segment.len()));
            let field = (!field.is_empty()).then_some(Step::Field(field));
            let indices = rest
                .split(['[', ']'])
                .filter(|s| !s.is_empty())
                .filter_map(|i| i.parse().ok())
                .map(Step::Index);
            field.into_iter().chain(indices)
        })
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(deserializer)?;
        Ok(Node {
            value: spanned.value,
            at: spanned.referenced.into(),
        })
    }
}

/// A mapping key as written: `1.10`, `0x1F` and `~` stay those characters, rather than becoming
/// the number or null they would be as values (`1.1`, `31`, `null`), which would silently
/// rename (or merge) keys such as Kubernetes labels.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // As an option first, so a null key gets its own message rather than the parser's.
        deserializer.deserialize_option(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a plain mapping key")
    }

    fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
        Ok(KeyText(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<KeyText, E> {
        Ok(KeyText(v))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<KeyText, D::Error> {
        d.deserialize_str(KeyVisitor)
    }

    fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
        self.visit_none()
    }

    fn visit_none<E: de::Error>(self) -> Result<KeyText, E> {
        Err(E::custom(
            "a mapping key is empty or null (`~`); write a name before the `:`",
        ))
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeValue, E> {
        i128::try_from(v)
            .map(NodeValue::Int)
            .map_err(|_| E::custom("integer is too large"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<NodeValue, E> {
        Err(E::custom("binary values are not supported in a spec"))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((
                Key {
                    name: key.value.0,
                    at: key.referenced.into(),
                },
                value,
            ));
        }
        Ok(NodeValue::Map(entries))
    }
}
