//! Secret references: `${ENV_VAR}` and `file:/path`, resolved one field at a time after the
//! YAML is parsed (never by text substitution), so a value can never change the structure of
//! the file and a parse error can never show one.
//!
//! The environment is passed in, so tests give their own variables instead of mutating the
//! process environment.

use std::collections::HashMap;

/// Where `${NAME}` references are looked up.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: Option<HashMap<String, String>>,
    /// Values are taken as written: no `${VAR}` or `file:` lookups.
    literal: bool,
}

impl Environment {
    /// The process environment.
    pub fn process() -> Self {
        Environment { vars: None, literal: false }
    }

    /// A fixed set of variables (tests, tools).
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment { vars: Some(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect()), literal: false }
    }

    /// No references at all: for values that come from an admin API rather than the
    /// operator's file, which must not read the process environment or files.
    pub fn literal() -> Self {
        Environment { vars: Some(HashMap::new()), literal: true }
    }

    fn var(&self, name: &str) -> Option<String> {
        match &self.vars {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }

    /// Resolves one field's value. Errors name the variable or file, never a value.
    pub fn resolve(&self, value: &str) -> Result<String, String> {
        if self.literal {
            return Ok(value.to_string());
        }
        if let Some(name) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(format!("`${{{name}}}` is not a valid environment variable reference"));
            }
            return match self.var(name) {
                Some(v) if !v.is_empty() => Ok(v),
                Some(_) => Err(format!("environment variable {name} is empty")),
                None => Err(format!("environment variable {name} is not set")),
            };
        }
        if let Some(path) = value.strip_prefix("file:") {
            return std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read secret file {path}: {}", e.kind()));
        }
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let env = Environment::from_vars([("TOKEN", "abc"), ("EMPTY", "")]);
        assert_eq!(env.resolve("${TOKEN}"), Ok("abc".into()));
        assert_eq!(env.resolve("plain"), Ok("plain".into()));
        assert_eq!(env.resolve("x${TOKEN}"), Ok("x${TOKEN}".into()));
        assert!(env.resolve("${MISSING}").unwrap_err().contains("MISSING is not set"));
        assert!(env.resolve("${EMPTY}").is_err());
        assert!(env.resolve("${lower}").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "from-file\n").unwrap();
        assert_eq!(env.resolve(&format!("file:{}", path.display())), Ok("from-file".into()));
        let err = env.resolve("file:/nonexistent/secret").unwrap_err();
        assert!(err.contains("/nonexistent/secret"));
    }
}
