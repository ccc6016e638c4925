//! Connectors stored in the token store beside the file's, managed through the admin API
//! (`PUT`/`DELETE /admin/connectors/{name}`). They are written in the same shape as a file
//! connector, plus the names of their tools, and become part of the running config exactly
//! like the file's: validated by the same code, merged after the file's connectors.
//!
//! This file is their shape and their validation; `live::stored` keeps them in the token store
//! and every replica's state follows the record there.
//!
//! What they must not do: read the process environment or files (their secrets are literal
//! values, never `${VAR}` or `file:` references, so an admin cannot send the proxy's own
//! secrets to a token endpoint of their choosing), weaken the address policy (`unsafe_*` keys
//! belong to the file, which the operator controls), or shadow a name the file uses (the file
//! wins; the stored connector is skipped with a warning).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::connector::validate_connector;
use super::problems::Problems;
use super::raw::RawConnector;
use super::validate::check_name;
use super::{Config, ConfigError, Connector, Environment, Problem};
use crate::domains::AllowList;
use crate::secret::Secret;

/// Keys whose values are secrets: kept when an update omits them, never shown.
pub const SECRET_FIELDS: &[&str] = &["client_secret", "token"];

/// One stored connector as written through the admin API.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredConnector {
    /// The connector's fields, as in the config file; secrets in clear (the record is sealed).
    pub spec: Map<String, Value>,
    #[serde(default)]
    pub tools: Vec<String>,
    /// Unix seconds of the last change.
    #[serde(default)]
    pub updated_at: u64,
}

impl fmt::Debug for StoredConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredConnector")
            .field("name", &self.name())
            .field("tools", &self.tools)
            .finish_non_exhaustive()
    }
}

impl StoredConnector {
    pub fn name(&self) -> &str {
        self.spec.get("name").and_then(Value::as_str).unwrap_or("")
    }

    /// Builds a connector from an admin `PUT` body. Secret fields missing from the body keep
    /// their `previous` values; `null` removes them. `name` in the body, when present, must be
    /// the one in the path.
    pub fn from_body(name: &str, body: &[u8], previous: Option<&StoredConnector>, now: u64) -> Result<Self, String> {
        let mut spec = match super::json::parse_strict(body) {
            Ok(Value::Object(spec)) => spec,
            Ok(_) => {
                return Err("the body must be a JSON object with the connector's fields, as in the config file".into())
            }
            Err(e) => return Err(format!("the body is not valid JSON: {e}")),
        };
        match spec.get("name") {
            None => {
                spec.insert("name".into(), Value::String(name.to_string()));
            }
            Some(Value::String(n)) if n == name => {}
            Some(_) => return Err(format!("`name` in the body must be `{name}`, the name in the path")),
        }
        let tools = match spec.remove("tools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .into_iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| "`tools` must be a list of names".to_string()))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("`tools` must be a list of names".into()),
        };
        for field in SECRET_FIELDS {
            match (spec.get(*field), previous.and_then(|p| p.spec.get(*field))) {
                (None, Some(kept)) => {
                    spec.insert(field.to_string(), kept.clone());
                }
                (Some(Value::Null), _) => {
                    spec.remove(*field);
                }
                _ => {}
            }
        }
        Ok(StoredConnector { spec, tools, updated_at: now })
    }

    /// Validates the connector on its own: the same rules as a file connector, secrets taken
    /// literally, `unsafe_*` keys refused.
    pub fn validate(&self) -> Result<Connector, ConfigError> {
        let name = self.name().to_string();
        let path = format!("connectors.{name}");
        let mut p = Problems::default();
        for key in self.spec.keys().filter(|k| k.starts_with("unsafe_")) {
            p.add(format!("{path}.{key}"), "unsafe_* settings are accepted only in the config file");
        }
        for field in SECRET_FIELDS {
            if self.spec.get(*field).is_some_and(|v| !v.is_string()) {
                // Checked here so the parser's message, which quotes values, never sees a secret.
                p.add(format!("{path}.{field}"), "must be a string");
                return Err(ConfigError { problems: p.0 });
            }
        }
        let raw: Option<RawConnector> = match serde_json::from_value(Value::Object(self.spec.clone())) {
            Ok(raw) => Some(raw),
            Err(e) => {
                // serde_json's message names the field; it never holds a value.
                p.add(path.clone(), e.to_string());
                None
            }
        };
        let connector = raw.and_then(|raw| validate_connector(&raw, &path, &Environment::literal(), &mut p));
        match connector {
            Some(c) if p.0.is_empty() => Ok(c),
            _ => Err(ConfigError { problems: p.0 }),
        }
    }

    /// Problems with this connector's names next to the file's names and the other stored
    /// connectors' (`taken`).
    pub fn name_problems(&self, taken: &HashMap<String, usize>) -> Vec<Problem> {
        let mut p = Problems::default();
        let mut taken = taken.clone();
        check_name(&mut p, &format!("connectors.{}.name", self.name()), self.name(), &taken);
        taken.insert(self.name().to_string(), usize::MAX);
        for (i, tool) in self.tools.iter().enumerate() {
            check_name(&mut p, &format!("connectors.{}.tools[{i}]", self.name()), tool, &taken);
            taken.insert(tool.clone(), usize::MAX);
        }
        p.0
    }

    /// The client secret or static token, for the admin view (`•••• last4`).
    pub fn secret(&self, field: &str) -> Option<Secret> {
        self.spec.get(field).and_then(Value::as_str).map(Secret::new)
    }
}

/// Every stored connector, at one version of the record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredSet {
    /// The record's version; 0 when there is none.
    pub version: u64,
    pub connectors: Vec<StoredConnector>,
}

/// The file's config with the stored connectors appended: indexes of the file's connectors
/// stay as they were (API keys refer to them). A stored connector that no longer validates or
/// whose names the file now uses is left out, with a warning.
pub fn merge(file: &Config, stored: &StoredSet) -> Result<Config, String> {
    let mut connectors = file.connectors[..file.file_connectors].to_vec();
    let mut names = file.file_names();
    let mut seen = HashSet::new();
    for sc in &stored.connectors {
        let problems = sc.name_problems(&names);
        let validated = if problems.is_empty() { sc.validate() } else { Err(ConfigError { problems }) };
        match validated {
            Ok(c) if seen.insert(sc.name().to_string()) => {
                let index = connectors.len();
                names.insert(c.name.clone(), index);
                for tool in &sc.tools {
                    names.insert(tool.clone(), index);
                }
                connectors.push(Arc::new(c));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(connector = sc.name(), error = %e, "stored connector left out"),
        }
    }
    let patterns = connectors.iter().enumerate().flat_map(|(i, c)| c.patterns.iter().cloned().map(move |p| (i, p)));
    let allow_list = AllowList::build(patterns).map_err(|e| format!("allowed_domains did not compile: {e}"))?;
    Ok(file.with_connectors(connectors, names, allow_list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap_or_default()
    }

    #[test]
    fn secrets_are_kept_unless_replaced_or_removed() {
        let first = StoredConnector::from_body(
            "crm",
            &body(serde_json::json!({"grant": "static", "token": "tok-1", "allowed_domains": ["https://crm.example/*"], "tools": ["crm-notes"]})),
            None,
            1,
        )
        .unwrap();
        assert_eq!(first.name(), "crm");
        assert_eq!(first.tools, vec!["crm-notes".to_string()]);
        let kept = StoredConnector::from_body(
            "crm",
            &body(serde_json::json!({"grant": "static", "allowed_domains": ["https://crm.example/v2/*"]})),
            Some(&first),
            2,
        )
        .unwrap();
        assert_eq!(kept.secret("token").map(|s| s.expose().to_string()), Some("tok-1".into()));
        let removed =
            StoredConnector::from_body("crm", &body(serde_json::json!({"token": null})), Some(&first), 3).unwrap();
        assert!(removed.secret("token").is_none());
        assert!(StoredConnector::from_body("crm", &body(serde_json::json!({"name": "other"})), None, 1).is_err());
        assert!(StoredConnector::from_body("crm", b"[1]", None, 1).is_err());
    }

    #[test]
    fn secrets_are_literal_and_unsafe_keys_refused() {
        let literal = StoredConnector::from_body(
            "crm",
            &body(serde_json::json!({"token": "${HOME}", "allowed_domains": ["https://crm.example/*"]})),
            None,
            1,
        )
        .unwrap();
        match literal.validate().unwrap().grant {
            super::super::Grant::Static(token) => assert_eq!(token.expose(), "${HOME}"),
            other => panic!("{other:?}"),
        }
        let risky = StoredConnector::from_body(
            "crm",
            &body(serde_json::json!({"token": "t", "allowed_domains": ["https://crm.example/*"], "unsafe_allow_ranges": ["10.0.0.0/8"]})),
            None,
            1,
        )
        .unwrap();
        let err = risky.validate().unwrap_err().to_string();
        assert!(err.contains("connectors.crm.unsafe_allow_ranges"), "{err}");
        let unknown =
            StoredConnector::from_body("crm", &body(serde_json::json!({"tokn": "t"})), None, 1).unwrap().validate();
        assert!(unknown.unwrap_err().to_string().contains("tokn"));
        let numeric =
            StoredConnector::from_body("crm", &body(serde_json::json!({"client_secret": 987654321})), None, 1)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
        assert!(numeric.contains("client_secret") && !numeric.contains("987654321"), "{numeric}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let sc =
            StoredConnector::from_body("crm", &body(serde_json::json!({"token": "canary-secret"})), None, 1).unwrap();
        assert!(!format!("{sc:?}").contains("canary-secret"));
    }
}
