//! `explain`: would this URL be allowed, and by which pattern, without any network. Used by
//! the `tollgate explain` command; the admin API's explain answers the same way.

use serde::Serialize;

use crate::config::Config;
use crate::domains::addr::AddressPolicy;
use crate::domains::{AllowList, Host, Pattern, Target};

/// The verdict, printed as one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// `allow`, `block` or `reject`.
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The normalized URL, or the input when it could not be parsed.
    pub url: String,
}

impl Explanation {
    pub fn allowed(&self) -> bool {
        self.decision == "allow"
    }

    /// The same answer with the query removed from `url`: what network answers (the admin
    /// API) show, since queries can carry keys and are never matched anyway.
    pub fn without_query(mut self) -> Self {
        if let Some(i) = self.url.find('?') {
            self.url.truncate(i);
        }
        self
    }

    fn block(error: &'static str, connector: Option<String>, url: String) -> Self {
        Explanation { decision: "block", error: Some(error), connector, pattern: None, url }
    }
}

/// Parses the URL; `Err` is the finished `reject` explanation.
fn parse(url: &str) -> Result<Target, Explanation> {
    Target::parse(url).map_err(|_| Explanation {
        decision: "reject",
        error: Some("bad_target"),
        connector: None,
        pattern: None,
        url: url.to_string(),
    })
}

/// IP-literal targets are checked against the address policy without resolving anything.
fn address_allowed(target: &Target, policy: &AddressPolicy) -> bool {
    match target.host {
        Host::V4(ip) => policy.check(ip.into()).is_ok(),
        Host::V6(ip) => policy.check(ip.into()).is_ok(),
        Host::Name(_) => true,
    }
}

/// Explains against a loaded config, optionally for one connector or tool. `Err` names an
/// unknown connector (a usage error).
pub fn with_config(config: &Config, connector: Option<&str>, url: &str) -> Result<Explanation, String> {
    let only = match connector {
        Some(name) => Some(config.resolve_name(name).ok_or_else(|| format!("no connector or tool is named `{name}`"))?),
        None => None,
    };
    let target = match parse(url) {
        Ok(t) => t,
        Err(rejected) => return Ok(rejected),
    };
    let normalized = target.to_string();
    let mut owners: Vec<(usize, &Pattern)> = Vec::new();
    for covered in config.allow_list.covering(&target) {
        if only.is_none_or(|o| o == covered.owner) && !owners.iter().any(|(o, _)| *o == covered.owner) {
            owners.push((covered.owner, covered.pattern));
        }
    }
    let name = |i: usize| config.connectors[i].name.clone();
    Ok(match owners.as_slice() {
        [] => Explanation::block("endpoint_not_allowed", only.map(name), normalized),
        [(i, _)] if !address_allowed(&target, &config.connectors[*i].addresses) => {
            Explanation::block("endpoint_not_allowed", Some(name(*i)), normalized)
        }
        [(i, pattern)] => Explanation {
            decision: "allow",
            error: None,
            connector: Some(name(*i)),
            pattern: Some(pattern.to_string()),
            url: normalized,
        },
        _ => Explanation::block("connector_ambiguous", None, normalized),
    })
}

/// Explains against ad-hoc patterns (`--allow`). `Err` is a pattern that does not load.
pub fn with_patterns(patterns: &[String], url: &str) -> Result<Explanation, String> {
    let policy = AddressPolicy::default();
    let mut parsed = Vec::new();
    for p in patterns {
        parsed.push((0, Pattern::parse(p, false, &policy).map_err(|e| e.to_string())?));
    }
    let list = AllowList::build(parsed).map_err(|e| e.to_string())?;
    let target = match parse(url) {
        Ok(t) => t,
        Err(rejected) => return Ok(rejected),
    };
    let normalized = target.to_string();
    Ok(match list.covering(&target).first() {
        Some(c) if address_allowed(&target, &policy) => Explanation {
            decision: "allow",
            error: None,
            connector: None,
            pattern: Some(c.pattern.to_string()),
            url: normalized,
        },
        _ => Explanation::block("endpoint_not_allowed", None, normalized),
    })
}
