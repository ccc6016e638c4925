//! A connector's `health_check`: a `GET` that answers `expect` (200 by default) to any valid
//! token, such as the user's own profile (GitHub `GET /user`). "Test connection" runs it with
//! one user's token. The URL must lie inside the connector's allowed domains: the check sends
//! the token there. A template's check is kept only while the connector's own
//! `allowed_domains` still cover it.

use super::problems::Problems;
use super::raw::RawConnector;
use super::templates::Template;
use crate::domains::{AllowList, Pattern, Target};

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub url: String,
    pub target: Target,
    /// The status a healthy connection answers.
    pub expect: u16,
}

fn covered(patterns: &[Pattern], target: &Target) -> bool {
    AllowList::build(patterns.iter().cloned().map(|p| (0, p))).is_ok_and(|list| list.covering_for(0, target).is_some())
}

pub(crate) fn health_check(
    rc: &RawConnector,
    template: Option<&Template>,
    patterns: &[Pattern],
    path: &str,
    p: &mut Problems,
) -> Option<HealthCheck> {
    let Some(raw) = &rc.health_check else {
        let url = template?.health_check?;
        let target = Target::parse(url).ok().filter(|t| covered(patterns, t))?;
        return Some(HealthCheck { url: url.to_string(), target, expect: 200 });
    };
    let field = format!("{path}.health_check");
    let expect = raw.expect.unwrap_or(200);
    if !(200..=599).contains(&expect) {
        p.add(format!("{field}.expect"), "must be an HTTP status between 200 and 599");
    }
    match Target::parse(&raw.url) {
        Ok(target) if covered(patterns, &target) => Some(HealthCheck { url: raw.url.clone(), target, expect }),
        Ok(_) => {
            p.add(
                format!("{field}.url"),
                "must be inside the connector's allowed_domains (the check sends the user's token there)",
            );
            None
        }
        Err(e) => {
            p.add(format!("{field}.url"), format!("is not a URL: {e}"));
            None
        }
    }
}
