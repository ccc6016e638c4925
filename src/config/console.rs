//! The `console` block: the pages admins and users work in, under `/console/` on the
//! browser-facing listener.

use std::time::Duration;

use super::problems::Problems;
use super::raw::RawConsole;

#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub enabled: bool,
    /// Origins that may frame the console (`frame-ancestors`); none by default.
    pub embed_origins: Vec<String>,
    /// How long a console session lasts.
    pub session_ttl: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings { enabled: true, embed_origins: Vec::new(), session_ttl: Duration::from_secs(8 * 3600) }
    }
}

pub(crate) fn console(raw: &RawConsole, p: &mut Problems) -> ConsoleSettings {
    let defaults = ConsoleSettings::default();
    let mut embed_origins = Vec::new();
    for (i, origin) in raw.embed_origins.iter().flatten().enumerate() {
        let ok = origin.parse::<http::Uri>().ok().filter(|u| {
            matches!(u.scheme_str(), Some("https") | Some("http"))
                && u.host().is_some()
                && u.path_and_query().is_none_or(|pq| pq.as_str() == "/")
        });
        match ok {
            Some(_) => embed_origins.push(origin.trim_end_matches('/').to_string()),
            None => {
                p.add(format!("console.embed_origins[{i}]"), "must be an origin such as https://agents.example.com")
            }
        }
    }
    let session_ttl = p.duration("console.session_ttl", raw.session_ttl.as_deref(), defaults.session_ttl);
    if session_ttl < Duration::from_secs(60) || session_ttl > Duration::from_secs(7 * 86_400) {
        p.add("console.session_ttl", "must be between 1m and 7d");
    }
    ConsoleSettings { enabled: raw.enabled.unwrap_or(true), embed_origins, session_ttl }
}
