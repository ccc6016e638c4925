//! The test corpus in tests/corpus/ (copied from the project's shared corpus; see
//! tests/corpus/ORIGIN.md). A missing or unreadable file fails the test that asked for it.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

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
