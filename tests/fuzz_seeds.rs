//! The HTTP/1.1 fuzz targets' checks (fuzz/checks/http1.rs) over every committed seed
//! (fuzz/seeds/<target>) and every input that once failed (fuzz/regressions/<target>), as
//! ordinary tests: what the fuzzers found stays fixed without running them.

#[path = "../fuzz/checks/http1.rs"]
mod checks;

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut found = Vec::new();
    for folder in ["seeds", "regressions"] {
        let dir = root.join(folder).join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            found.push((path, bytes));
        }
    }
    found
}

fn run(target: &str, check: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(inputs.len() >= 8, "{target}: the seed corpus looks lost ({} inputs)", inputs.len());
    for (path, bytes) in inputs {
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "{target}: {} fails its check", path.display());
    }
}

#[test]
fn request_head_seeds() {
    run("request_head", checks::request_head);
}

#[test]
fn response_head_seeds() {
    run("response_head", checks::response_head);
}

#[test]
fn chunked_seeds() {
    run("chunked", checks::chunked);
}
