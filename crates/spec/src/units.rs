//! Scalar types with units that specs write as strings: durations (`30s`, `5m`, `1h30m`) and
//! resource quantities (`16Gi`, `500m`, `1.5`).
//!
//! Both keep the text the user wrote for display and round trips, and expose the parsed value.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration or quantity string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The duration text is not `<number><unit>` pairs.
    #[error(
        "`{0}` is not a duration; write a number with a unit, such as 250ms, 30s, 5m, 1h or 1h30m"
    )]
    Duration(String),
    /// The quantity text is not a number with an optional suffix.
    #[error(
        "`{0}` is not a quantity; write a number with an optional suffix, such as 500m, 2, 1.5, 512Mi or 16Gi"
    )]
    Quantity(String),
}

/// A span of time written as `250ms`, `30s`, `5m`, `1h`, `1h30m` or `1d`.
///
/// Serialised back in the shortest exact form, so round trips are stable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    /// The standard library value.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whether this is a zero-length duration.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(value: std::time::Duration) -> Self {
        // Sub-millisecond precision is not expressible in the spec's syntax.
        Self(std::time::Duration::from_millis(value.as_millis() as u64))
    }
}

impl From<Duration> for std::time::Duration {
    fn from(value: Duration) -> Self {
        value.0
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || UnitError::Duration(text.to_owned());
        let s = text.trim();
        if s.is_empty() {
            return Err(err());
        }
        let mut total_ms: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 {
                return Err(err());
            }
            let number: u128 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let factor: u128 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            total_ms = number
                .checked_mul(factor)
                .and_then(|ms| total_ms.checked_add(ms))
                .ok_or_else(err)?;
        }
        let ms = u64::try_from(total_ms).map_err(|_| err())?;
        Ok(Self::from_millis(ms))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "duration",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as 250ms, 30s, 5m, 1h or 1h30m."
        })
    }
}

/// A resource amount in Kubernetes notation: `500m` (milli), `2`, `1.5`, `512Mi`, `16Gi`, `1G`.
///
/// The text is kept as written; [`Quantity::value`] gives the amount as a number (cores for cpu,
/// bytes for memory).
#[derive(Clone, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
}

impl Quantity {
    /// The amount as a plain number: `500m` is 0.5, `1Ki` is 1024.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The amount rounded up to a whole number (bytes, for memory).
    pub fn ceil_u64(&self) -> u64 {
        self.value.ceil().max(0.0) as u64
    }

    /// The text as written in the spec.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Quantity {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || UnitError::Quantity(text.to_owned());
        let s = text.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return Err(err());
        }
        let base: f64 = number.parse().map_err(|_| err())?;
        let factor = match suffix {
            "" => 1.0,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "Ki" => 1024.0,
            "Mi" => 1024.0 * 1024.0,
            "Gi" => 1024.0 * 1024.0 * 1024.0,
            "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(err()),
        };
        let value = base * factor;
        if !value.is_finite() {
            return Err(err());
        }
        Ok(Self {
            text: s.to_owned(),
            value,
        })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;
        impl serde::de::Visitor<'_> for QuantityVisitor {
            type Value = Quantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 500m, 2, 1.5, 512Mi or 16Gi")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                // `-0.0` passes the schema's minimum of 0 but would print as `-0`.
                let v = if v == 0.0 { 0.0 } else { v };
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(QuantityVisitor)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [
                { "type": "number", "minimum": 0 },
                { "type": "string", "format": "quantity", "pattern": "^[0-9]+(\\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$" }
            ],
            "description": "A quantity such as 500m, 2, 1.5, 512Mi or 16Gi."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_in_canonical_form() {
        for (text, ms, shown) in [
            ("250ms", 250, "250ms"),
            ("30s", 30_000, "30s"),
            ("5m", 300_000, "5m"),
            ("90s", 90_000, "1m30s"),
            ("1h30m", 5_400_000, "1h30m"),
            ("1d", 86_400_000, "1d"),
            ("0s", 0, "0s"),
        ] {
            let d: Duration = text.parse().expect(text);
            assert_eq!(d.get().as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn bad_durations_are_rejected() {
        for text in [
            "",
            "5",
            "s",
            "5x",
            "1.5s",
            "-1s",
            "5 m",
            "99999999999999999999d",
        ] {
            assert!(text.parse::<Duration>().is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn quantities_parse_with_suffixes() {
        for (text, value) in [
            ("500m", 0.5),
            ("2", 2.0),
            ("1.5", 1.5),
            ("1Ki", 1024.0),
            ("16Gi", 16.0 * 1024.0 * 1024.0 * 1024.0),
            ("1G", 1e9),
        ] {
            let q: Quantity = text.parse().expect(text);
            assert!((q.value() - value).abs() < 1e-9, "{text}");
            assert_eq!(q.as_str(), text);
        }
        for text in ["", "Gi", "1.", ".5", "1XB", "-1", "1 Gi"] {
            assert!(text.parse::<Quantity>().is_err(), "{text:?} should fail");
        }
    }
}
