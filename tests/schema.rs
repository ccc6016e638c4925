//! config/tollgate.schema.json agrees with the loader: every example validates against it and
//! loads; a fixture the loader refuses for an unknown key is refused by the schema too, and
//! fixtures refused for their values (which a schema cannot judge) are well-formed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tollgate::config::{load_file, yaml, Environment};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Validates a JSON document with python's jsonschema (Draft 2020-12); `Err` is the message.
fn validate(doc: &serde_json::Value) -> Result<(), String> {
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(json.load(sys.stdin)), key=str)\n\
        print('\\n'.join(e.json_path + ': ' + e.message for e in errors) if errors else 'valid')";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(root().join("config/tollgate.schema.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with jsonschema is needed (pip install jsonschema)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), doc.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python jsonschema failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text == "valid" {
        Ok(())
    } else {
        Err(text)
    }
}

fn json_of(path: &Path) -> serde_json::Value {
    yaml::to_json(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn env() -> Environment {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let mut vars: Vec<(String, String)> = [
        ("TOLLGATE_ADMIN_TOKEN", "admin-token-of-sixteen-plus"),
        ("TOLLGATE_KEY_K1", key),
        ("TOLLGATE_KEY_K2", key),
        ("TOLLGATE_CALLER_SECRET", "caller-secret-that-is-at-least-32-bytes"),
        ("TOLLGATE_REDIS_URL", "redis://127.0.0.1:6379"),
        ("BILLING_CLIENT_SECRET", "b"),
        ("WEATHER_API_KEY", "w"),
        ("CHAT_API_KEY", "c"),
        ("DEMO_API_KEY", "d"),
        ("TOLLGATE_WEBHOOK_SECRET", "webhook-secret-of-16-plus"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for provider in ["GITHUB", "DATABRICKS", "GOOGLE", "SALESFORCE", "MS"] {
        vars.push((format!("{provider}_CLIENT_ID"), "id".into()));
        vars.push((format!("{provider}_CLIENT_SECRET"), "secret".into()));
    }
    Environment::from_vars(vars)
}

#[test]
fn every_example_validates_and_loads() {
    let mut examples = vec![root().join("config/tollgate.example.yaml")];
    for entry in std::fs::read_dir(root().join("config/examples")).unwrap() {
        examples.push(entry.unwrap().path());
    }
    assert!(examples.len() >= 2);
    for path in examples {
        if let Err(e) = validate(&json_of(&path)) {
            panic!("{} does not match the schema:\n{e}", path.display());
        }
        load_file(&path, &env()).unwrap_or_else(|e| panic!("{} does not load:\n{e}", path.display()));
    }
}

#[test]
fn fixtures_agree_with_the_schema() {
    for entry in std::fs::read_dir(root().join("config/fixtures/broken")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "syntax.yaml" {
            assert!(yaml::to_json(&std::fs::read_to_string(&path).unwrap()).is_err());
            continue;
        }
        let verdict = validate(&json_of(&path));
        match name.as_str() {
            // Structure the schema can judge.
            "unknown-key.yaml"
            | "bad-duration.yaml"
            | "bad-listen.yaml"
            | "empty-token.yaml"
            | "token-crlf.yaml"
            | "client-secret-nul.yaml"
            | "admin-token-control.yaml"
            | "inject-format-lf.yaml"
            | "inject-prefix-tab.yaml"
            | "redis-tls-half-client.yaml"
            | "redis-sentinel-bad-node.yaml"
            | "redis-mode-unknown.yaml"
            | "webhook-unknown-type.yaml" => {
                assert!(verdict.is_err(), "{name} passed the schema")
            }
            // Values only the loader can judge (patterns, references, names, files).
            _ => assert!(verdict.is_ok(), "{name}: {verdict:?}"),
        }
    }
    // The schema is not a rubber stamp: a misspelt key anywhere is refused.
    let mut doc = json_of(&root().join("config/tollgate.example.yaml"));
    doc["connectors"][1]["allowed_domain"] = serde_json::json!(["https://x.example/*"]);
    assert!(validate(&doc).unwrap_err().contains("allowed_domain"));
}
