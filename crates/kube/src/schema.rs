//! Kubernetes structural schemas from schemars output.
//!
//! A custom resource definition's `openAPIV3Schema` must be *structural*: every property and
//! array item has a `type`, logical junctors (`oneOf`, `anyOf`, `allOf`, `not`) only restrict
//! values of fields that are also declared outside them, and only a subset of JSON Schema's
//! keywords is understood. schemars writes standard JSON Schema, so [`structural`] rewrites it:
//!
//! | schemars writes | Kubernetes wants |
//! | --- | --- |
//! | `type: [T, "null"]`, `anyOf: [S, {type: null}]` | `type: T` / `S`, `nullable: true` |
//! | `oneOf` of `{const: v}` strings (unit enums) | `type: string`, `enum: [v, ...]` |
//! | `oneOf` of objects told apart by a `const` tag (tagged enums) | one object with every property typed, and a `oneOf` that only says which tag requires and forbids which property |
//! | a node with `x-kubernetes-int-or-string` | exactly `anyOf: [{type: integer}, {type: string}]` |
//! | `additionalProperties: false` beside `properties` | nothing: the API server prunes unknown fields |
//! | `$schema`, `title`, `default`, formats Kubernetes does not know | nothing |
//!
//! Defaults are dropped because lull applies its own when it reads a spec; a CRD default would be
//! written into every stored object. [`violations`] checks the rules the API server applies, so
//! tests catch a schema it would refuse.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// Errors of [`structural`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The schema refers to a definition instead of inlining it.
    #[error("{path}: `$ref` to {target}; generate the schema with inline subschemas")]
    Reference {
        /// Where in the schema.
        path: String,
        /// What it refers to.
        target: String,
    },
    /// A construct with no structural equivalent.
    #[error("{path}: {what} has no structural form in a Kubernetes schema")]
    Unsupported {
        /// Where in the schema.
        path: String,
        /// What was found.
        what: String,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats the Kubernetes API server understands. Others are dropped: `duration` is there but
/// means Go durations, which lull's `1d` is not.
const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "password",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
];

/// lull's `config-value` strings: any text that does not start with `secret:`, or `secret:`
/// and a secret name (letters, digits, `-`, `_`, `.`; at most 253). Kubernetes patterns have no
/// look-ahead, so "does not start with `secret:`" is spelt out prefix by prefix; `(?s)` lets
/// plain values span lines.
pub const CONFIG_VALUE_PATTERN: &str = r"(?s)^(|[^s].*|s|s[^e].*|se|se[^c].*|sec|sec[^r].*|secr|secr[^e].*|secre|secre[^t].*|secret|secret[^:].*|secret:\s*[A-Za-z0-9_.-]{1,253}\s*)$";

/// Keywords a structural schema may hold (`JSONSchemaProps` in apiextensions.k8s.io/v1).
const ALLOWED_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "nullable",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "default",
    "example",
    "title",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

/// Keywords that must not appear inside `oneOf`, `anyOf`, `allOf` or `not`.
const FORBIDDEN_IN_JUNCTORS: &[&str] = &[
    "type",
    "description",
    "default",
    "nullable",
    "additionalProperties",
    "title",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
];

const JUNCTORS: &[&str] = &["oneOf", "anyOf", "allOf"];

/// The structural form of a schemars schema (with subschemas inlined).
pub fn structural(schema: &Value) -> Result<Value> {
    convert(schema, "")
}

fn convert(schema: &Value, path: &str) -> Result<Value> {
    let Some(object) = schema.as_object() else {
        return Err(unsupported(path, "a boolean schema"));
    };
    if let Some(target) = object.get("$ref") {
        return Err(Error::Reference {
            path: path.to_owned(),
            target: target.to_string(),
        });
    }
    let mut out = Map::new();
    if let Some(description) = object.get("description") {
        out.insert("description".to_owned(), description.clone());
    }
    if object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.insert("x-kubernetes-int-or-string".to_owned(), Value::Bool(true));
        out.insert(
            "anyOf".to_owned(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
        // The branches may hold no validation, so their checks move to the node, where a
        // `pattern` applies to strings only and a `minimum` to numbers only.
        for branch in object
            .get("anyOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for keyword in ["pattern", "minimum", "maximum"] {
                if let Some(value) = branch.get(keyword) {
                    out.insert(keyword.to_owned(), value.clone());
                }
            }
        }
        return Ok(Value::Object(out));
    }
    for junctor in JUNCTORS {
        if let Some(branches) = object.get(*junctor).and_then(Value::as_array) {
            let merged = alternatives(branches, &format!("{path}/{junctor}"))?;
            // The field's own description wins over one inherited from the alternatives.
            return Ok(with_description(merged, out.remove("description")));
        }
    }
    if let Some(value) = object.get("const") {
        out.insert("enum".to_owned(), json!([value]));
    }
    for (key, value) in object {
        match key.as_str() {
            "description" | "const" | "$schema" | "title" | "default" | "examples" | "$defs"
            | "definitions" | "readOnly" | "writeOnly" | "deprecated" => {}
            "type" => {
                let (kind, nullable) = single_type(value, path)?;
                if let Some(kind) = kind {
                    out.insert("type".to_owned(), Value::String(kind));
                }
                if nullable {
                    out.insert("nullable".to_owned(), Value::Bool(true));
                }
            }
            "format" => match value.as_str() {
                Some(f) if KNOWN_FORMATS.contains(&f) => {
                    out.insert(key.clone(), value.clone());
                }
                // Values beyond the Rust type would pass the API server and then fail to
                // deserialise in every watch that lists them, so the schema bounds them.
                Some("uint32") if !object.contains_key("maximum") => {
                    out.insert("maximum".to_owned(), json!(u32::MAX));
                }
                Some("config-value") => {
                    out.insert("pattern".to_owned(), json!(CONFIG_VALUE_PATTERN));
                }
                _ => {}
            },
            "properties" => {
                let mut properties = Map::new();
                for (name, property) in value.as_object().into_iter().flatten() {
                    properties.insert(name.clone(), convert(property, &format!("{path}.{name}"))?);
                }
                out.insert(key.clone(), Value::Object(properties));
            }
            "items" => {
                out.insert(key.clone(), convert(value, &format!("{path}[]"))?);
            }
            "additionalProperties" => match value {
                // Pruning drops unknown fields; `false` itself is refused beside `properties`.
                Value::Bool(false) => {}
                Value::Bool(true) => {
                    out.insert(
                        "x-kubernetes-preserve-unknown-fields".to_owned(),
                        Value::Bool(true),
                    );
                }
                schema => {
                    out.insert(key.clone(), convert(schema, &format!("{path}.*"))?);
                }
            },
            "not" => return Err(unsupported(path, "`not`")),
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

fn unsupported(path: &str, what: impl Into<String>) -> Error {
    Error::Unsupported {
        path: path.to_owned(),
        what: what.into(),
    }
}

fn with_description(mut schema: Value, description: Option<Value>) -> Value {
    if let (Some(description), Some(object)) = (description, schema.as_object_mut()) {
        object.insert("description".to_owned(), description);
    }
    schema
}

/// The one non-null type of `type`, and whether `null` is allowed too.
fn single_type(value: &Value, path: &str) -> Result<(Option<String>, bool)> {
    match value {
        Value::String(t) if t == "null" => Ok((None, true)),
        Value::String(t) => Ok((Some(t.clone()), false)),
        Value::Array(types) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            let nullable = names.contains(&"null");
            let rest: Vec<&str> = names.into_iter().filter(|t| *t != "null").collect();
            match rest.as_slice() {
                [] => Ok((None, nullable)),
                [one] => Ok((Some((*one).to_owned()), nullable)),
                many => Err(unsupported(path, format!("the type union {many:?}"))),
            }
        }
        other => Err(unsupported(path, format!("the type {other}"))),
    }
}

fn is_null_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// One structural schema for the alternatives of a `oneOf` or `anyOf`.
fn alternatives(branches: &[Value], path: &str) -> Result<Value> {
    let nullable = branches.iter().any(is_null_schema);
    let rest: Vec<&Value> = branches.iter().filter(|b| !is_null_schema(b)).collect();
    let mut merged = match rest.as_slice() {
        [] => return Err(unsupported(path, "a schema that only allows null")),
        [one] => convert(one, path)?,
        many if many
            .iter()
            .all(|b| b.get("const").is_some_and(Value::is_string)) =>
        {
            let values: Vec<Value> = many
                .iter()
                .filter_map(|b| b.get("const"))
                .cloned()
                .collect();
            json!({ "type": "string", "enum": values })
        }
        many if many
            .iter()
            .all(|b| b.get("properties").is_some_and(Value::is_object)) =>
        {
            tagged_union(many, path)?
        }
        _ => return Err(unsupported(path, "a union of unlike alternatives")),
    };
    if nullable && let Some(object) = merged.as_object_mut() {
        object.insert("nullable".to_owned(), Value::Bool(true));
    }
    Ok(merged)
}

/// Object alternatives (serde's internally tagged enums) as one object: the union of their
/// properties, each typed once, the properties every alternative requires, and a `oneOf` of
/// value checks only: which tag value each alternative has, what it requires beyond the common
/// set, and which of the other alternatives' properties it forbids.
fn tagged_union(branches: &[&Value], path: &str) -> Result<Value> {
    let mut properties = Map::new();
    let mut per_branch = Vec::new();
    for (i, branch) in branches.iter().enumerate() {
        let branch_path = format!("{path}[{i}]");
        let converted = convert(branch, &branch_path)?;
        let own = converted
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut tags = Map::new();
        for (name, schema) in &own {
            let is_tag = branch
                .get("properties")
                .and_then(|p| p.get(name))
                .is_some_and(|p| p.get("const").is_some());
            // A tag is an enum of one value per alternative; the union takes every value.
            if is_tag && let Some(values) = schema.get("enum") {
                tags.insert(name.clone(), json!({ "enum": values }));
                let all = properties
                    .entry(name.clone())
                    .or_insert_with(|| json!({ "type": "string", "enum": [] }));
                if let (Some(list), Some(values)) = (
                    all.get_mut("enum").and_then(Value::as_array_mut),
                    values.as_array(),
                ) {
                    list.extend(values.iter().cloned());
                }
                continue;
            }
            match properties.get(name) {
                Some(existing) if !same_shape(existing, schema) => {
                    return Err(unsupported(
                        &format!("{branch_path}.{name}"),
                        "a property typed differently in two alternatives",
                    ));
                }
                Some(_) => {}
                None => {
                    properties.insert(name.clone(), schema.clone());
                }
            }
        }
        let required: BTreeSet<String> = strings(converted.get("required"));
        per_branch.push((own, tags, required));
    }
    let common: BTreeSet<String> = per_branch
        .iter()
        .map(|(_, _, required)| required.clone())
        .reduce(|a, b| a.intersection(&b).cloned().collect())
        .unwrap_or_default();
    let one_of: Vec<Value> = per_branch
        .iter()
        .map(|(own, tags, required)| {
            let mut check = Map::new();
            check.insert("properties".to_owned(), Value::Object(tags.clone()));
            let extra: Vec<&String> = required.difference(&common).collect();
            if !extra.is_empty() {
                check.insert("required".to_owned(), json!(extra));
            }
            let foreign: Vec<Value> = properties
                .keys()
                .filter(|name| !own.contains_key(*name))
                .map(|name| json!({ "required": [name] }))
                .collect();
            if !foreign.is_empty() {
                check.insert("not".to_owned(), json!({ "anyOf": foreign }));
            }
            Value::Object(check)
        })
        .collect();
    let mut out = Map::new();
    out.insert("type".to_owned(), json!("object"));
    out.insert("properties".to_owned(), Value::Object(properties));
    if !common.is_empty() {
        out.insert("required".to_owned(), json!(common));
    }
    out.insert("oneOf".to_owned(), Value::Array(one_of));
    Ok(Value::Object(out))
}

/// Whether two property schemas accept the same values; descriptions may differ.
fn same_shape(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| k.as_str() != "description")
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    strip(a) == strip(b)
}

fn strings(value: Option<&Value>) -> BTreeSet<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Every way `schema` breaks the structural-schema rules, each with where; empty when it is
/// structural.
pub fn violations(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, "", false, &mut out);
    out
}

fn check(schema: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        out.push(format!("{path}: a schema must be an object"));
        return;
    };
    for key in object.keys() {
        if !ALLOWED_KEYWORDS.contains(&key.as_str()) {
            out.push(format!(
                "{path}: `{key}` is not a Kubernetes schema keyword"
            ));
        }
        if in_junctor && FORBIDDEN_IN_JUNCTORS.contains(&key.as_str()) {
            out.push(format!(
                "{path}: `{key}` is not allowed inside oneOf/anyOf/allOf/not"
            ));
        }
    }
    let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !in_junctor {
        match object.get("type") {
            Some(Value::String(t)) if !t.is_empty() => {}
            Some(other) => out.push(format!("{path}: `type` must be one name, found {other}")),
            None if int_or_string || preserve => {}
            None => out.push(format!("{path}: no `type`")),
        }
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: `properties` and `additionalProperties` exclude each other"
        ));
    }
    if int_or_string && let Some(any_of) = object.get("anyOf") {
        let expected = json!([{ "type": "integer" }, { "type": "string" }]);
        if any_of != &expected {
            out.push(format!(
                "{path}: an int-or-string node allows only `anyOf: [{{type: integer}}, {{type: string}}]`"
            ));
        }
    }
    let declared: BTreeSet<&str> = object
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for (name, property) in object
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        check(property, &format!("{path}.{name}"), in_junctor, out);
    }
    if let Some(items) = object.get("items") {
        check(items, &format!("{path}[]"), in_junctor, out);
    }
    if let Some(additional) = object.get("additionalProperties") {
        match additional {
            Value::Bool(_) => out.push(format!(
                "{path}: `additionalProperties` must be a schema, not a boolean"
            )),
            schema => check(schema, &format!("{path}.*"), in_junctor, out),
        }
    }
    let skip_int_or_string = int_or_string;
    for junctor in ["oneOf", "anyOf", "allOf"] {
        if junctor == "anyOf" && skip_int_or_string {
            continue;
        }
        for (i, branch) in object
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let branch_path = format!("{path}/{junctor}[{i}]");
            check(branch, &branch_path, true, out);
            undeclared(branch, &declared, &branch_path, out);
        }
    }
    if let Some(not) = object.get("not") {
        let not_path = format!("{path}/not");
        check(not, &not_path, true, out);
        undeclared(not, &declared, &not_path, out);
    }
}

/// Properties a junctor names that the schema does not declare outside it.
fn undeclared(branch: &Value, declared: &BTreeSet<&str>, path: &str, out: &mut Vec<String>) {
    for name in branch
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|p| p.keys())
    {
        if !declared.contains(name.as_str()) {
            out.push(format!(
                "{path}: property `{name}` is not declared outside the junctor"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_types_become_nullable() {
        let s = structural(&json!({
            "type": "object",
            "properties": { "a": { "type": ["string", "null"], "description": "A." } }
        }))
        .expect("structural");
        assert_eq!(
            s["properties"]["a"],
            json!({ "type": "string", "nullable": true, "description": "A." })
        );
        assert!(violations(&s).is_empty(), "{:?}", violations(&s));
    }

    #[test]
    fn any_of_with_null_is_the_other_schema_made_nullable() {
        let s = structural(&json!({
            "description": "The cpu.",
            "anyOf": [
                { "x-kubernetes-int-or-string": true, "description": "A quantity.",
                  "anyOf": [{ "type": "number", "minimum": 0 },
                            { "type": "string", "pattern": "^[0-9]+$" }] },
                { "type": "null" }
            ]
        }))
        .expect("structural");
        assert_eq!(
            s,
            json!({
                "description": "The cpu.",
                "nullable": true,
                "x-kubernetes-int-or-string": true,
                "anyOf": [{ "type": "integer" }, { "type": "string" }],
                "minimum": 0,
                "pattern": "^[0-9]+$"
            })
        );
        assert!(violations(&s).is_empty(), "{:?}", violations(&s));
    }

    #[test]
    fn int_or_string_keeps_its_checks_at_the_node() {
        let s = structural(&json!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{ "type": "number", "minimum": 0 },
                      { "type": "string", "pattern": "^[0-9]+m?$" }]
        }))
        .expect("structural");
        assert_eq!(s["pattern"], "^[0-9]+m?$");
        assert_eq!(s["minimum"], 0);
        assert!(violations(&s).is_empty(), "{:?}", violations(&s));
    }

    #[test]
    fn lull_formats_become_bounds_and_patterns() {
        let s = structural(&json!({
            "type": "object",
            "properties": {
                "n": { "type": "integer", "format": "uint32", "minimum": 0 },
                "v": { "type": "string", "format": "config-value" }
            }
        }))
        .expect("structural");
        assert_eq!(s["properties"]["n"]["maximum"], json!(u32::MAX));
        let pattern = s["properties"]["v"]["pattern"].as_str().unwrap_or_default();
        assert_eq!(pattern, CONFIG_VALUE_PATTERN);
    }

    #[test]
    fn the_config_value_pattern_accepts_what_lull_parses() {
        // Go's regexp, which the API server uses, and Rust's share this syntax.
        let pattern = regex::Regex::new(CONFIG_VALUE_PATTERN).expect("a valid pattern");
        for text in [
            "",
            "plain",
            "s",
            "se",
            "sec",
            "secr",
            "secre",
            "secret",
            "secretary",
            "sEcret:x",
            "multi\nline",
            "secret:hfToken",
            "secret: a.b-c_d ",
            "secret:",
            "secret:bad name",
            "secret:ä",
            "secret:a/b",
            " secret:x",
        ] {
            let parses = lull_spec::secret::ConfigValue::parse(text).is_ok();
            assert_eq!(pattern.is_match(text), parses, "{text:?}");
        }
        let long = format!("secret:{}", "a".repeat(254));
        assert!(!pattern.is_match(&long));
        assert!(lull_spec::secret::ConfigValue::parse(&long).is_err());
    }

    #[test]
    fn unit_enums_become_string_enums() {
        let s = structural(&json!({
            "description": "Stage.",
            "oneOf": [
                { "const": "dev", "type": "string", "description": "Default." },
                { "const": "prod", "type": "string" }
            ]
        }))
        .expect("structural");
        assert_eq!(
            s,
            json!({ "type": "string", "enum": ["dev", "prod"], "description": "Stage." })
        );
    }

    #[test]
    fn tagged_enums_become_one_object_with_value_checks() {
        let s = structural(&json!({
            "type": "array",
            "items": { "oneOf": [
                { "type": "object", "additionalProperties": false,
                  "properties": {
                      "type": { "const": "s3", "type": "string" },
                      "name": { "type": "string", "description": "Name of the bucket." },
                      "url": { "type": "string" }
                  },
                  "required": ["type", "name", "url"] },
                { "type": "object", "additionalProperties": false,
                  "properties": {
                      "type": { "const": "volume", "type": "string" },
                      "name": { "type": "string", "description": "Name of the volume." },
                      "size": { "type": ["string", "null"] }
                  },
                  "required": ["type", "name"] }
            ]}
        }))
        .expect("structural");
        let items = &s["items"];
        assert_eq!(items["type"], "object");
        assert_eq!(
            items["properties"]["type"],
            json!({ "type": "string", "enum": ["s3", "volume"] })
        );
        assert_eq!(items["properties"]["size"]["nullable"], true);
        assert_eq!(items["required"], json!(["name", "type"]));
        assert_eq!(
            items["oneOf"],
            json!([
                { "properties": { "type": { "enum": ["s3"] } }, "required": ["url"],
                  "not": { "anyOf": [{ "required": ["size"] }] } },
                { "properties": { "type": { "enum": ["volume"] } },
                  "not": { "anyOf": [{ "required": ["url"] }] } }
            ])
        );
        assert!(violations(&s).is_empty(), "{:?}", violations(&s));
    }

    #[test]
    fn unknown_keywords_and_formats_go() {
        let s = structural(&json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Spec",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "n": { "type": "integer", "format": "uint32", "minimum": 0, "default": 3 },
                "d": { "type": "string", "format": "duration", "pattern": "^[0-9]+s$" },
                "x": { "type": "number", "format": "double" },
                "m": { "type": "object", "additionalProperties": { "type": "string" } }
            }
        }))
        .expect("structural");
        assert_eq!(
            s,
            json!({
                "type": "object",
                "properties": {
                    "n": { "type": "integer", "minimum": 0, "maximum": u32::MAX },
                    "d": { "type": "string", "pattern": "^[0-9]+s$" },
                    "x": { "type": "number", "format": "double" },
                    "m": { "type": "object", "additionalProperties": { "type": "string" } }
                }
            })
        );
    }

    #[test]
    fn references_and_type_unions_are_refused() {
        assert!(matches!(
            structural(&json!({ "properties": { "a": { "$ref": "#/$defs/A" } } })),
            Err(Error::Reference { path, .. }) if path == ".a"
        ));
        assert!(matches!(
            structural(&json!({ "type": ["string", "integer"] })),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            structural(&json!({ "oneOf": [{ "type": "string" }, { "type": "integer" }] })),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn violations_name_each_broken_rule() {
        let found = violations(&json!({
            "type": "object",
            "properties": {
                "untyped": { "description": "no type" },
                "union": { "type": ["string", "null"] },
                "c": { "type": "string", "const": "x" },
                "both": { "type": "object", "properties": {}, "additionalProperties": false }
            },
            "oneOf": [{ "type": "object", "properties": { "elsewhere": { "enum": [1] } } }]
        }));
        let text = found.join("\n");
        for expected in [
            ".untyped: no `type`",
            ".union: `type` must be one name",
            ".c: `const` is not a Kubernetes schema keyword",
            ".both: `properties` and `additionalProperties` exclude each other",
            ".both: `additionalProperties` must be a schema",
            "/oneOf[0]: `type` is not allowed inside",
            "/oneOf[0]: property `elsewhere` is not declared outside",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn the_spec_schema_becomes_structural() {
        let s = structural(lull_spec::structure::spec_schema()).expect("structural");
        assert_eq!(violations(&s), Vec::<String>::new());
        assert_eq!(s["type"], "object");
        let integration = &s["properties"]["integrations"]["items"];
        assert_eq!(
            integration["properties"]["type"]["enum"]
                .as_array()
                .map(Vec::len),
            Some(5)
        );
    }
}
