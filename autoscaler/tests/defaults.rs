//! Every knob of the engine has one default: the one the code uses, the one its doc comment
//! states (read from the spec's JSON Schema, whose descriptions are the doc comments) and the one
//! docs/spec.md states.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use lull_autoscaler::engine::Targets;
use lull_spec::{Autoscaling, Behavior};
use serde_json::Value;

/// The `properties` of the first schema object that has `field` among them.
fn properties_with<'a>(
    schema: &'a Value,
    field: &str,
) -> Option<&'a serde_json::Map<String, Value>> {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties")
                && props.contains_key(field)
            {
                return Some(props);
            }
            map.values().find_map(|v| properties_with(v, field))
        }
        Value::Array(items) => items.iter().find_map(|v| properties_with(v, field)),
        _ => None,
    }
}

/// A field's doc comment, on one line.
fn described(props: &serde_json::Map<String, Value>, field: &str) -> String {
    props[field]["description"]
        .as_str()
        .unwrap_or_else(|| panic!("{field} has a doc comment"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// What follows "Default `" up to the next backtick.
fn default_in(text: &str) -> Option<&str> {
    let start = text.find("Default `")? + "Default `".len();
    let len = text[start..].find('`')?;
    Some(&text[start..start + len])
}

/// The default column of the docs/spec.md row for `field`.
fn documented(spec_md: &str, field: &str) -> String {
    let row = spec_md
        .lines()
        .find(|l| l.starts_with(&format!("| `{field}` |")))
        .unwrap_or_else(|| panic!("docs/spec.md has a row for {field}"));
    row.split('|')
        .nth(3)
        .expect("a default column")
        .trim()
        .to_owned()
}

fn seconds(text: &str) -> Duration {
    lull_spec::Duration::from_str(text.trim_matches('`'))
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .get()
}

fn number(text: &str) -> f64 {
    text.trim_matches('`')
        .parse()
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn defaults_match_the_doc_comments_and_docs_spec_md() {
    let spec_md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/spec.md"))
            .expect("docs/spec.md is readable");
    let schema = lull_spec::structure::spec_schema();
    let behavior_docs = properties_with(schema, "panicThreshold").expect("behavior in the schema");
    let autoscaling_docs =
        properties_with(schema, "scaleToZeroAfter").expect("autoscaling in the schema");
    let comment = |props: &serde_json::Map<String, Value>, field: &str| -> String {
        let description = described(props, field);
        default_in(&description)
            .unwrap_or_else(|| panic!("{field}'s doc comment states its default: {description}"))
            .to_owned()
    };
    let row = |field: &str| documented(&spec_md, &format!("resources.autoscaling.{field}"));

    let b = Behavior::default();
    let numbers = [
        ("tolerance", b.tolerance),
        ("panicThreshold", b.panic_threshold),
        ("maxScaleUpRate", b.max_scale_up_rate),
        ("maxScaleDownRate", b.max_scale_down_rate),
        ("activationScale", f64::from(b.activation_scale)),
    ];
    for (field, value) in numbers {
        assert_eq!(
            number(&comment(behavior_docs, field)),
            value,
            "{field}: doc comment"
        );
        assert_eq!(
            number(&row(&format!("behavior.{field}"))),
            value,
            "{field}: docs/spec.md"
        );
    }
    let durations = [
        ("stableWindow", b.stable_window.get()),
        ("panicWindow", b.panic_window.get()),
    ];
    for (field, value) in durations {
        assert_eq!(
            seconds(&comment(behavior_docs, field)),
            value,
            "{field}: doc comment"
        );
        assert_eq!(
            seconds(&row(&format!("behavior.{field}"))),
            value,
            "{field}: docs/spec.md"
        );
    }

    // scaleDownStabilization depends on the targets: 300 s with a resource metric, else the
    // stable window.
    let stabilization = row("behavior.scaleDownStabilization");
    assert!(
        stabilization.starts_with("`300s` when a resource metric")
            && stabilization.ends_with("else `stableWindow`"),
        "{stabilization}"
    );
    let description = described(behavior_docs, "scaleDownStabilization");
    assert!(
        description.contains("Default: `300s` when a resource metric"),
        "{description}"
    );
    let autoscaling: Autoscaling =
        serde_json::from_value(serde_json::json!({ "maxReplicas": 3 })).expect("minimal");
    let mut targets = Targets::new(1, &autoscaling);
    assert_eq!(targets.scale_down_stabilization(), b.stable_window.get());
    targets.metrics.push(lull_spec::MetricTarget {
        metric: lull_spec::MetricKind::Gpu,
        summary: lull_spec::Summary::Average,
        value: 50.0,
        query: None,
    });
    assert_eq!(targets.scale_down_stabilization(), Duration::from_secs(300));

    let after = autoscaling.scale_to_zero_after.get();
    assert_eq!(
        seconds(&comment(autoscaling_docs, "scaleToZeroAfter")),
        after
    );
    assert_eq!(seconds(&row("scaleToZeroAfter")), after);
    assert_eq!(targets.scale_to_zero_after, after);
}
