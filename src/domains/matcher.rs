//! The compiled allowed-domains matcher: every pattern of every connector, built once per
//! config, so a request costs one hash lookup for exact hosts plus one globset match for
//! wildcard hosts, never a scan of every pattern.
//!
//! Host and path are matched separately: the host through the index, then the scheme, port
//! and path of the few candidate rules. A path pattern's only wildcard is `*`, which crosses
//! `/`: a path without one is compared whole, one ending in its only `*` by prefix, and the
//! rest through a compiled glob.

use std::collections::HashMap;

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

use super::pattern::{HostPattern, Pattern};
use super::target::{Host, Target};

/// How a rule matches paths.
#[derive(Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
    Glob(GlobMatcher),
}

impl PathMatch {
    fn new(path: &str) -> Result<PathMatch, globset::Error> {
        Ok(match path.find('*') {
            None => PathMatch::Exact(path.to_string()),
            Some(star) if star + 1 == path.len() => PathMatch::Prefix(path[..star].to_string()),
            Some(_) => PathMatch::Glob(glob(path)?),
        })
    }

    fn is_match(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Glob(g) => g.is_match(path),
        }
    }
}

/// One pattern of one owner (a connector index, or anything the caller numbers).
#[derive(Debug)]
struct Rule {
    owner: usize,
    pattern: Pattern,
    path: PathMatch,
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
    exact: HashMap<Host, Vec<usize>, foldhash::fast::RandomState>,
    wildcard: GlobSet,
    /// Glob index in `wildcard` to rule index.
    wildcard_rules: Vec<usize>,
}

impl AllowList {
    /// Compiles `(owner, pattern)` pairs.
    pub fn build(patterns: impl IntoIterator<Item = (usize, Pattern)>) -> Result<AllowList, globset::Error> {
        let mut rules = Vec::new();
        let mut exact: HashMap<Host, Vec<usize>, _> = HashMap::default();
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
            let path = PathMatch::new(&pattern.path)?;
            rules.push(Rule { owner, pattern, path });
        }
        Ok(AllowList { rules, exact, wildcard: wildcard.build()?, wildcard_rules })
    }

    /// Rules whose host covers the target, in the order they were added. Allocates only for
    /// a host name when there are wildcard patterns.
    fn host_hits<'a>(&'a self, target: &Target) -> impl Iterator<Item = &'a Rule> + 'a {
        let exact: &[usize] = self.exact.get(&target.host).map_or(&[], Vec::as_slice);
        let mut wildcard: Vec<usize> = match &target.host {
            Host::Name(name) if !self.wildcard.is_empty() => {
                self.wildcard.matches(name).into_iter().map(|g| self.wildcard_rules[g]).collect()
            }
            _ => Vec::new(),
        };
        wildcard.sort_unstable();
        // Both lists are ascending: merged, they give the rules in the order they were added.
        let (mut a, mut b) = (0, 0);
        std::iter::from_fn(move || {
            let next = match (exact.get(a), wildcard.get(b)) {
                (Some(&x), Some(&y)) if x < y => {
                    a += 1;
                    x
                }
                (_, Some(&y)) => {
                    b += 1;
                    y
                }
                (Some(&x), None) => {
                    a += 1;
                    x
                }
                (None, None) => return None,
            };
            Some(&self.rules[next])
        })
    }

    /// Every pattern that covers the target, in the order they were added, without collecting.
    pub fn covering_iter<'a: 't, 't>(&'a self, target: &'t Target) -> impl Iterator<Item = Covered<'a>> + 't {
        self.host_hits(target)
            .filter(move |rule| {
                rule.pattern.scheme == target.scheme
                    && rule.pattern.covers_port(target.port)
                    && rule.path.is_match(&target.path)
            })
            .map(|rule| Covered { owner: rule.owner, pattern: &rule.pattern })
    }

    /// Every pattern that covers the target, in the order they were added.
    pub fn covering(&self, target: &Target) -> Vec<Covered<'_>> {
        self.covering_iter(target).collect()
    }

    /// Owners with a pattern covering the target's scheme, host and port, whatever the path:
    /// who could serve requests through a tunnel to that host.
    pub fn owners_for_authority(&self, target: &Target) -> Vec<usize> {
        let mut owners: Vec<usize> = self
            .host_hits(target)
            .filter(|rule| rule.pattern.scheme == target.scheme && rule.pattern.covers_port(target.port))
            .map(|rule| rule.owner)
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// The first pattern of `owner` that covers the target.
    pub fn covering_for(&self, owner: usize, target: &Target) -> Option<&Pattern> {
        self.covering_iter(target).find(|c| c.owner == owner).map(|c| c.pattern)
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
    use crate::domains::addr::AddressPolicy;

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

    /// Whole and prefix comparisons answer exactly what the compiled glob would.
    #[test]
    fn path_shortcuts_agree_with_the_glob() {
        let patterns = ["/", "/*", "/v1/*", "/v1/", "/v1/exact", "/v1*", "/a/*/b", "/*/x*", "/a;b/*", "/*x"];
        let paths =
            ["/", "/v1", "/v1/", "/v1/x", "/v1/x/y", "/v1x", "/v2/x", "/a/q/b", "/a//b", "/q/x1", "/a;b/c", "/ax"];
        let mut shortcuts = 0;
        for pattern in patterns {
            let shortcut = PathMatch::new(pattern).unwrap();
            shortcuts += usize::from(!matches!(shortcut, PathMatch::Glob(_)));
            let full = glob(pattern).unwrap();
            for path in paths {
                assert_eq!(shortcut.is_match(path), full.is_match(path), "{pattern} against {path}");
            }
        }
        assert_eq!(shortcuts, 7);
    }

    #[test]
    fn exact_and_wildcard_rules_keep_their_order() {
        let l = list(&[
            (4, "https://*.example.com/*"),
            (2, "https://api.example.com/*"),
            (3, "https://*.example.com/v1/*"),
        ]);
        assert_eq!(owners(&l, "https://api.example.com/v1/x"), [4, 2, 3]);
        assert_eq!(owners(&l, "https://b.example.com/v1/x"), [4, 3]);
    }
}
