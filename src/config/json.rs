//! JSON bodies read strictly: an object that names a key twice is refused instead of silently
//! keeping the last value, so what the admin sent and what Tollgate stores can never differ by
//! which duplicate a reader picked. Used for every JSON body the admin API takes.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `body` as JSON, refusing duplicate keys at any depth. The error names the key, never
/// a value.
pub fn parse_strict(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Strict>(body).map(|s| s.0).map_err(|e| e.to_string())
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("the key `{key}` is given twice")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_every_depth() {
        let ok = parse_strict(br#"{"a": [1, -2, 2.5, "x", null, true, {"b": {}}], "c": {"a": 1}}"#).unwrap();
        assert_eq!(ok, serde_json::json!({"a": [1, -2, 2.5, "x", null, true, {"b": {}}], "c": {"a": 1}}));
        for body in [
            &br#"{"token": "a", "token": "b"}"#[..],
            br#"{"x": {"y": 1, "y": 2}}"#,
            br#"[{"k": 1, "k": 1}]"#,
            br#"{"tools": ["a"], "grant": "static", "tools": []}"#,
        ] {
            let err = parse_strict(body).unwrap_err();
            assert!(err.contains("is given twice"), "{err}");
        }
        // The message names the key, never the values.
        let err = parse_strict(br#"{"token": "secret-one", "token": "secret-two"}"#).unwrap_err();
        assert!(err.contains("`token`") && !err.contains("secret-"), "{err}");
        assert!(parse_strict(b"{").is_err());
        assert!(parse_strict(b"{} trailing").is_err());
    }
}
