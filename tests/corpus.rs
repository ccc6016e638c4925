//! The corpus in tests/corpus (read from the files, never copied into code): every
//! allowed-domains case through the library and through the real `tollgate explain` binary,
//! and every pattern case through the config loader.

mod common;

use std::process::Command;

use common::corpus::{cases, Case, Cases, PatternCase};
use tollgate::config::{Config, Environment};
use tollgate::domains::Target;

/// Maps an explain decision to the corpus outcome names.
fn outcome(decision: &str) -> &'static str {
    match decision {
        "allow" => "allow-with-token",
        "block" => "block",
        "reject" => "reject-400",
        other => panic!("unknown decision {other}"),
    }
}

fn check(case: &Case, got: &str, via: &str) {
    let ok = case.accepts(got);
    assert!(
        ok,
        "{} via {via}: got {got}, expected {} (acceptable {:?}) for {:?}",
        case.id, case.expected, case.acceptable, case.request.target
    );
}

#[test]
fn allowed_domains_corpus_through_the_library() {
    let file = Cases { cases: cases("allowed-domains.yaml") };
    assert!(file.cases.len() > 50, "the corpus looks truncated");
    let mut allowed = 0;
    for case in &file.cases {
        let explanation = tollgate::explain::with_patterns(&case.allowed_patterns, &case.request.target)
            .unwrap_or_else(|e| panic!("{}: pattern did not load: {e}", case.id));
        check(case, outcome(explanation.decision), "library");
        if explanation.allowed() {
            allowed += 1;
            // What was checked is what leaves: the normalized URL is a fixed point.
            let again = Target::parse(&explanation.url).unwrap().to_string();
            assert_eq!(again, explanation.url, "{}: normalization is not idempotent", case.id);
        }
    }
    assert!(allowed >= 10, "a matcher that blocks everything must not pass");
}

#[test]
fn allowed_domains_corpus_through_tollgate_explain() {
    let file = Cases { cases: cases("allowed-domains.yaml") };
    for case in &file.cases {
        // The corpus runs NUL-bearing targets through the library only: argv cannot hold NUL.
        if case.request.target.contains('\0') {
            continue;
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.arg("explain");
        for p in &case.allowed_patterns {
            cmd.arg("--allow").arg(p);
        }
        let out = cmd.arg("--").arg(&case.request.target).output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!("{}: explain printed no JSON: {}", case.id, String::from_utf8_lossy(&out.stderr))
        });
        let decision = json["decision"].as_str().unwrap();
        let want_code = if decision == "allow" { 0 } else { 1 };
        assert_eq!(out.status.code(), Some(want_code), "{}: exit code", case.id);
        check(case, outcome(decision), "tollgate explain");
    }
}

fn config_with_pattern(pattern: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
encryption_keys: [{{ id: k1, secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }}]
connectors:
  - name: platform
    grant: static
    token: ${{PLATFORM_TOKEN}}
    allowed_domains: [{}]
"#,
        serde_json::to_string(pattern).unwrap()
    )
}

#[test]
fn patterns_corpus_through_the_config_loader() {
    let file: Cases<PatternCase> = common::corpus::read("patterns.yaml");
    let env = Environment::from_vars([("PLATFORM_TOKEN", "tok")]);
    for case in &file.cases {
        let result = Config::from_yaml(&config_with_pattern(&case.pattern), &env);
        match case.expected.as_str() {
            "reject-config" => {
                let err = result.err().unwrap_or_else(|| panic!("{}: {} was accepted", case.id, case.pattern));
                let text = err.to_string();
                assert!(text.contains("connectors[0].allowed_domains[0]"), "{}: error names no field: {text}", case.id);
            }
            "accept" | "accept-normalized" => {
                let config = result.unwrap_or_else(|e| panic!("{}: refused: {e}", case.id));
                let shown = config.connectors[0].patterns[0].to_string();
                if case.expected == "accept-normalized" {
                    assert_eq!(shown, shown.to_ascii_lowercase(), "{}: host not normalized", case.id);
                    assert_ne!(shown, case.pattern, "{}: nothing was normalized", case.id);
                }
            }
            other => panic!("{}: unknown expectation {other}", case.id),
        }
    }
}
