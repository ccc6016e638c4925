//! Problems found while validating a config: each with its field path, collected so the
//! operator fixes the file in one pass, and the checks every value shares where it enters
//! (secret references resolved, then judged by `field_safe`; durations; sizes; addresses).

use std::net::SocketAddr;
use std::time::Duration;

use super::env::Environment;
use super::units::{parse_duration, parse_size};
use super::Problem;
use crate::secret::Secret;

/// Collects problems with their field paths.
#[derive(Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { path: path.into(), message: message.into(), line: None });
    }

    /// Resolves an optional secret reference, recording a problem on failure. The value must
    /// be usable where it goes (a header field, a form, a URL): not empty, no control bytes.
    pub fn secret(&mut self, env: &Environment, path: &str, value: Option<&str>) -> Option<Secret> {
        let value = value?;
        match env.resolve(value).and_then(|v| field_safe(&v).map(|()| v)) {
            Ok(v) => Some(Secret::new(v)),
            Err(e) => {
                self.add(path, e);
                None
            }
        }
    }

    pub fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        match value.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.add(path, e);
                default
            }
        }
    }

    pub fn size(&mut self, path: &str, value: Option<&str>, default: u64) -> u64 {
        match value.map(parse_size) {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.add(path, e);
                default
            }
        }
    }

    pub fn addr(&mut self, path: &str, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.add(path, format!("`{value}` is not an address like 127.0.0.1:8080"));
                None
            }
        }
    }
}

/// Refuses a value that is empty or holds a control byte (CR, LF, NUL, tab, DEL, ...): written
/// into a header it could end the field or the head. The message never shows the value.
pub(crate) fn field_safe(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    match value.bytes().position(|b| b < 0x20 || b == 0x7f) {
        Some(at) => Err(format!(
            "holds a control character ({}) at byte {at}; values here go into header fields and forms, where CR, LF, NUL and other control bytes are refused",
            control_name(value.as_bytes()[at])
        )),
        None => Ok(()),
    }
}

fn control_name(b: u8) -> String {
    match b {
        b'\r' => "CR".into(),
        b'\n' => "LF".into(),
        0 => "NUL".into(),
        b'\t' => "tab".into(),
        0x7f => "DEL".into(),
        other => format!("0x{other:02x}"),
    }
}
