//! A connector's `inject` rule: which header carries the credential and how (`format` around
//! `{token}`). Headers that frame or route the request cannot be written.

use http::{HeaderName, HeaderValue};

use super::problems::Problems;
use super::raw::RawConnector;

/// How the credential is written into the request: `header: prefix{token}suffix`.
#[derive(Debug, Clone)]
pub struct Injection {
    pub header: HeaderName,
    pub prefix: String,
    pub suffix: String,
}

/// Headers an injection rule may not write: they frame or route the request.
const FORBIDDEN_INJECT: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "keep-alive",
    "cookie",
];

pub(crate) fn injection(rc: &RawConnector, path: &str, p: &mut Problems) -> Option<Injection> {
    let at = |field: &str| format!("{path}.inject.{field}");
    let header_text = rc.inject.as_ref().and_then(|i| i.header.clone()).unwrap_or_else(|| "Authorization".into());
    let format = rc.inject.as_ref().and_then(|i| i.format.clone()).unwrap_or_else(|| "Bearer {token}".into());
    let header = match HeaderName::try_from(header_text.as_str()) {
        Ok(h) if !FORBIDDEN_INJECT.contains(&h.as_str()) && !h.as_str().starts_with("x-tollgate-") => h,
        _ => {
            p.add(at("header"), format!("`{header_text}` cannot carry a credential"));
            return None;
        }
    };
    let Some((prefix, suffix)) = format.split_once("{token}") else {
        p.add(at("format"), "must contain `{token}` once, e.g. \"Bearer {token}\"");
        return None;
    };
    if suffix.contains("{token}") {
        p.add(at("format"), "must contain `{token}` once");
        return None;
    }
    // The prefix and suffix are written around the token as they are: no control byte, and
    // only what a field value may hold.
    let control = format.bytes().any(|b| b < 0x20 || b == 0x7f);
    if control || HeaderValue::from_str(&format).is_err() {
        p.add(
            at("format"),
            "may hold only header-safe characters around `{token}`: no CR, LF, NUL, tab or other control bytes",
        );
        return None;
    }
    Some(Injection { header, prefix: prefix.to_string(), suffix: suffix.to_string() })
}
