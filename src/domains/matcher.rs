//! The compiled allowed-domains matcher: every pattern of every connector, built once per
//! config, so a request costs one hash lookup for exact hosts plus one globset match for
//! wildcard hosts, never a scan of every pattern.
//!
//! Host and path are matched separately: the host through the index, then the scheme, port
//! and path of the few candidate rules. The path is matched with its own compiled glob where
//! `*` crosses `/`.

use std::collections::HashMap;

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

use super::pattern::{HostPattern, Pattern};
use super::target::{Host, Target};

/// One pattern of one owner (a connector index, or anything the caller numbers).
#[derive(Debug)]
struct Rule {
    owner: usize,
    pattern: Pattern,
    path: GlobMatcher,
}

/// A pattern that covers a target.
#[derive(Debug, Clone, Copy)]
pub struct Covered<'a> {
    pub owner: usize,
    pub pattern: &'a Pattern,
}

/// Every allowed-domain pattern, indexed by host.
#[derive(Debug)]
pub struct AllowList {
    rules: Vec<Rule>,
    exact: HashMap<Host, Vec<usize>>,
    wildcard: GlobSet,
    /// Glob index in `wildcard` to rule index.
    wildcard_rules: Vec<usize>,
}

impl AllowList {
    /// Compiles `(owner, pattern)` pairs.
    pub fn build(patterns: impl IntoIterator<Item = (usize, Pattern)>) -> Result<AllowList, globset::Error> {
        let mut rules = Vec::new();
        let mut exact: HashMap<Host, Vec<usize>> = HashMap::new();
        let mut wildcard = GlobSetBuilder::new();
        let mut wildcard_rules = Vec::new();
        for (owner, pattern) in patterns {
            let index = rules.len();
            match &pattern.host {
                HostPattern::Exact(host) => exact.entry(host.clone()).or_default().push(index),
                HostPattern::Wildcard(suffix) => {
                    // Host names hold only [a-z0-9._-], so the glob has no other metacharacter.
                    wildcard.add(glob(&format!("*.{suffix}"))?.glob().clone());
                    wildcard_rules.push(index);
                }
            }
            let path = glob(&pattern.path)?;
            rules.push(Rule { owner, pattern, path });
        }
        Ok(AllowList { rules, exact, wildcard: wildcard.build()?, wildcard_rules })
    }

    /// Every pattern that covers the target, in the order they were added.
    pub fn covering(&self, target: &Target) -> Vec<Covered<'_>> {
        let mut hits: Vec<usize> = self.exact.get(&target.host).cloned().unwrap_or_default();
        if let Host::Name(name) = &target.host {
            hits.extend(self.wildcard.matches(name).into_iter().map(|g| self.wildcard_rules[g]));
        }
        hits.sort_unstable();
        hits.into_iter()
            .map(|i| &self.rules[i])
            .filter(|rule| {
                rule.pattern.scheme == target.scheme
                    && rule.pattern.covers_port(target.port)
                    && rule.path.is_match(&target.path)
            })
            .map(|rule| Covered { owner: rule.owner, pattern: &rule.pattern })
            .collect()
    }

    /// Owners with a pattern covering the target's scheme, host and port, whatever the path:
    /// who could serve requests through a tunnel to that host.
    pub fn owners_for_authority(&self, target: &Target) -> Vec<usize> {
        let mut hits: Vec<usize> = self.exact.get(&target.host).cloned().unwrap_or_default();
        if let Host::Name(name) = &target.host {
            hits.extend(self.wildcard.matches(name).into_iter().map(|g| self.wildcard_rules[g]));
        }
        let mut owners: Vec<usize> = hits
            .into_iter()
            .map(|i| &self.rules[i])
            .filter(|rule| rule.pattern.scheme == target.scheme && rule.pattern.covers_port(target.port))
            .map(|rule| rule.owner)
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// The first pattern of `owner` that covers the target.
    pub fn covering_for(&self, owner: usize, target: &Target) -> Option<&Pattern> {
        self.covering(target).into_iter().find(|c| c.owner == owner).map(|c| c.pattern)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn glob(text: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(GlobBuilder::new(text).literal_separator(false).backslash_escape(false).build()?.compile_matcher())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::addr::AddressPolicy;

    fn list(patterns: &[(usize, &str)]) -> AllowList {
        AllowList::build(
            patterns.iter().map(|(o, p)| (*o, Pattern::parse(p, false, &AddressPolicy::default()).unwrap())),
        )
        .unwrap()
    }

    fn owners(list: &AllowList, url: &str) -> Vec<usize> {
        list.covering(&Target::parse(url).unwrap()).iter().map(|c| c.owner).collect()
    }

    #[test]
    fn hosts_ports_and_paths() {
        let l = list(&[
            (0, "https://*.databricks.com/*"),
            (1, "https://api.platform.com/v1/*"),
            (2, "https://api.platform.com:8443/*"),
            (3, "https://api.platform.com/v1/exact"),
        ]);
        assert_eq!(owners(&l, "https://a.databricks.com/x"), [0]);
        assert_eq!(owners(&l, "https://a.b.databricks.com/"), [0]);
        assert!(owners(&l, "https://databricks.com/").is_empty());
        assert!(owners(&l, "https://a.databricks.com.evil.io/").is_empty());
        assert!(owners(&l, "https://evildatabricks.com/").is_empty());
        assert_eq!(owners(&l, "https://api.platform.com/v1/"), [1]);
        assert_eq!(owners(&l, "https://api.platform.com/v1/exact"), [1, 3]);
        assert!(owners(&l, "https://api.platform.com/v1").is_empty());
        assert!(owners(&l, "https://api.platform.com/v1x").is_empty());
        assert!(owners(&l, "http://api.platform.com:443/v1/x").is_empty());
        assert_eq!(owners(&l, "https://api.platform.com:8443/v2"), [2]);
        assert!(owners(&l, "https://api.platform.com/v2").is_empty());
    }
}
