//! The test corpus in tests/corpus/ (copied from the project's shared corpus; see
//! tests/corpus/ORIGIN.md), read into one set of types every corpus test shares. A missing or
//! unreadable file fails the test that asked for it.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A corpus file: its cases (the `conventions` block is the harness's, not read here).
#[derive(Deserialize)]
pub struct Cases<C> {
    pub cases: Vec<C>,
}

/// A case of allowed-domains.yaml or wire.yaml.
#[derive(Deserialize)]
pub struct Case {
    pub id: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub allowed_patterns: Vec<String>,
    pub request: Request,
    pub expected: String,
    /// Outcomes as safe as the expected one.
    #[serde(default)]
    pub acceptable: Vec<String>,
    #[serde(default)]
    pub dns: Vec<Dns>,
    #[serde(default)]
    pub upstream_response: Option<UpstreamResponse>,
}

impl Case {
    /// Whether `outcome` is the expected one or an acceptable one.
    pub fn accepts(&self, outcome: &str) -> bool {
        self.expected == outcome || self.acceptable.iter().any(|a| a == outcome)
    }
}

#[derive(Deserialize)]
pub struct Request {
    /// `absolute-form`, `api-field`, ... (allowed-domains.yaml).
    #[serde(default)]
    pub transport: String,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The request's exact bytes, when the case gives them.
    #[serde(default)]
    pub raw: Option<String>,
}

/// DNS answers a wire case assumes: fixed, or a sequence (rebinding).
#[derive(Deserialize)]
pub struct Dns {
    pub name: String,
    #[serde(default)]
    pub answers: Vec<String>,
    #[serde(default)]
    pub sequence: Vec<Vec<String>>,
}

#[derive(Deserialize, Clone)]
pub struct UpstreamResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

/// A case of patterns.yaml.
#[derive(Deserialize)]
pub struct PatternCase {
    pub id: String,
    pub pattern: String,
    pub expected: String,
}

/// A case of oauth-flows.yaml: its scenario is the test's, by id.
#[derive(Deserialize)]
pub struct OAuthCase {
    pub id: String,
    pub expected: String,
}

/// The cases of allowed-domains.yaml or wire.yaml.
pub fn cases(file: &str) -> Vec<Case> {
    read::<Cases<Case>>(file).cases
}

/// The path of one corpus file.
pub fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(file)
}

/// One corpus file's text.
pub fn text(file: &str) -> String {
    let path = path(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("corpus file {} is missing or unreadable ({e}); see tests/corpus/ORIGIN.md", path.display())
    })
}

/// One corpus file parsed as YAML.
pub fn read<T: DeserializeOwned>(file: &str) -> T {
    serde_yaml::from_str(&text(file)).unwrap_or_else(|e| panic!("corpus file {file} does not parse: {e}"))
}
