//! URL normalization and allowed-domains matching on arbitrary input: no panic, and
//! normalization is a fixed point (a normalized URL parses back to itself), so the URL that was
//! checked is the URL that is forwarded. The input is also tried as a pattern.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate::domains::{AllowList, Pattern, Target};
use tollgate::domains::addr::AddressPolicy;

const PATTERNS: &[&str] = &[
    "https://api.github.com/*",
    "https://*.databricks.com/*",
    "https://billing.example.com/v1/*",
    "https://mcp.example.com/mcp*",
    "https://*.example.org:8443/a/*/b",
    "https://[2606:4700::1111]/*",
    "https://93.184.216.34/x/*",
];

fn allow_list() -> &'static AllowList {
    static LIST: OnceLock<AllowList> = OnceLock::new();
    LIST.get_or_init(|| {
        let policy = AddressPolicy::default();
        let patterns = PATTERNS
            .iter()
            .enumerate()
            .map(|(i, p)| (i, Pattern::parse(p, false, &policy).unwrap_or_else(|e| panic!("seed pattern {p}: {e}"))));
        AllowList::build(patterns).unwrap_or_else(|e| panic!("seed patterns: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(target) = Target::parse(text) {
        let again = Target::parse(&target.to_string())
            .unwrap_or_else(|e| panic!("normalized {:?} does not parse again: {e}", target.to_string()));
        assert_eq!(again, target, "normalization is not a fixed point");
        let list = allow_list();
        let covering = list.covering(&target);
        for hit in &covering {
            assert!(hit.pattern.covers_host(&target.host), "a covering pattern does not cover the host");
            assert!(list.owners_for_authority(&target).contains(&hit.owner));
        }
        let _ = target.without_query();
        let _ = target.path_and_query();
    }
    if let Ok(pattern) = Pattern::parse(text, true, &AddressPolicy::default()) {
        let _ = AllowList::build([(0, pattern)]);
    }
});
