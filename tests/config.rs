//! Config loading: the SPEC example loads unchanged, every broken fixture fails with the error
//! it names, secret references resolve per field, and the binary's exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

use tollgate::config::{load_file, Config, Environment, Grant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example_env() -> Environment {
    Environment::from_vars([
        ("TOLLGATE_ADMIN_TOKEN", "admin-token-for-tests"),
        ("TOLLGATE_KEY_K1", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        ("TOLLGATE_CALLER_SECRET", "caller-secret-that-is-at-least-32-bytes"),
        ("GITHUB_CLIENT_ID", "gh-id"),
        ("GITHUB_CLIENT_SECRET", "gh-secret-canary-5150"),
        ("DATABRICKS_CLIENT_ID", "dbx-id"),
        ("BILLING_CLIENT_SECRET", "billing-secret"),
        ("WEATHER_API_KEY", "weather-key-canary-7731"),
        ("DEMO_API_KEY", "demo-key-canary-2024"),
    ])
}

#[test]
fn the_spec_example_loads_unchanged() {
    let config = load_file(&root().join("config/examples/spec.yaml"), &example_env()).unwrap();
    let names: Vec<&str> = config.connectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["github", "databricks", "billing", "weather", "docs-mcp"]);
    assert_eq!(config.resolve_name("github-issues"), config.resolve_name("github"));
    let weather = &config.connectors[3];
    let Grant::Static(token) = &weather.grant else { panic!("weather is static") };
    assert_eq!(token.expose(), "weather-key-canary-7731");
    assert_eq!(weather.inject.header.as_str(), "x-api-key");
    let Grant::AuthorizationCode(gh) = &config.connectors[0].grant else { panic!("github is authorization_code") };
    assert_eq!(gh.token_endpoint.as_deref(), Some("https://github.com/login/oauth/access_token"));
    assert!(config.connectors[1].pin_host);
    // Secrets never show in Debug output.
    let debug = format!("{config:?}");
    for canary in ["gh-secret-canary-5150", "weather-key-canary-7731", "admin-token-for-tests", "caller-secret-that-is"]
    {
        assert!(!debug.contains(canary), "{canary} leaked into Debug");
    }
}

#[test]
fn the_make_run_example_has_the_offline_demo_and_no_discovery_at_start() {
    let config = load_file(&root().join("config/tollgate.example.yaml"), &example_env()).unwrap();
    let names: Vec<&str> = config.connectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["demo", "github", "databricks", "billing", "weather"]);
    let demo = &config.connectors[0];
    let Grant::Static(token) = &demo.grant else { panic!("demo is static") };
    assert_eq!(token.expose(), "demo-key-canary-2024");
    assert_eq!(demo.base_url.as_ref().map(|b| b.to_string()).as_deref(), Some("http://127.0.0.1:8082/"));
    // Nothing in it is discovered at start: discovery is the only network call made before use.
    for connector in &config.connectors {
        if let Grant::AuthorizationCode(o) | Grant::ClientCredentials(o) = &connector.grant {
            assert!(o.issuer.is_none() && o.discovery_url.is_none() && o.mcp_url.is_none(), "{}", connector.name);
        }
    }
}

#[test]
fn the_example_refuses_to_load_without_its_secrets() {
    let err =
        load_file(&root().join("config/tollgate.example.yaml"), &Environment::from_vars([("X", "y")])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("admin_tokens[0]: environment variable TOLLGATE_ADMIN_TOKEN is not set"), "{text}");
    assert!(text.contains("connectors[0].token: environment variable DEMO_API_KEY is not set"), "{text}");
    assert!(text.contains("connectors[4].token: environment variable WEATHER_API_KEY is not set"), "{text}");
}

fn expected_error(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# error: "))
        .unwrap_or_else(|| panic!("{} lacks a `# error:` first line", path.display()))
        .to_string()
}

fn broken_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root().join("config/fixtures/broken")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10);
    files
}

#[test]
fn every_broken_fixture_fails_with_its_error() {
    for path in broken_fixtures() {
        let want = expected_error(&path);
        let err = load_file(&path, &Environment::from_vars([("UNUSED", "x")]))
            .err()
            .unwrap_or_else(|| panic!("{} loaded", path.display()));
        assert!(err.to_string().contains(&want), "{}:\n  want: {want}\n  got:  {err}", path.display());
    }
}

#[test]
fn check_config_and_serve_exit_64_on_a_broken_file() {
    let bin = env!("CARGO_BIN_EXE_tollgate");
    for path in broken_fixtures() {
        // Both commands load the file the same way: the same exit code and the same error,
        // and neither repeats a value the fixture marks as a canary.
        for args in [vec!["check-config"], vec!["serve", "--config"]] {
            let out = Command::new(bin).args(&args).arg(&path).output().unwrap();
            assert_eq!(out.status.code(), Some(64), "{} {}", args[0], path.display());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(&expected_error(&path)), "{} {}: {stderr}", args[0], path.display());
            assert!(!stderr.contains("canary"), "{} {} shows a secret: {stderr}", args[0], path.display());
        }
    }
}

#[test]
fn check_config_accepts_the_example_with_its_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("check-config")
        .arg(root().join("config/tollgate.example.yaml"))
        .env("TOLLGATE_ADMIN_TOKEN", "admin-token-of-sixteen-plus")
        .env("TOLLGATE_KEY_K1", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .env("TOLLGATE_CALLER_SECRET", "caller-secret-that-is-at-least-32-bytes")
        .env("GITHUB_CLIENT_ID", "a")
        .env("GITHUB_CLIENT_SECRET", "b")
        .env("DATABRICKS_CLIENT_ID", "c")
        .env("BILLING_CLIENT_SECRET", "d")
        .env("WEATHER_API_KEY", "e")
        .env("DEMO_API_KEY", "f")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn file_references_are_read_per_field() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("weather-token");
    std::fs::write(&token, "from-a-file\n").unwrap();
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
encryption_keys: [{{ id: k1, secret: "file:{key}" }}]
connectors:
  - name: weather
    token: "file:{token}"
    allowed_domains: ["https://api.weather.example/*"]
"#,
        key = {
            let k = dir.path().join("key");
            std::fs::write(&k, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
            k.display().to_string()
        },
        token = token.display()
    );
    let config = Config::from_yaml(&yaml, &Environment::from_vars([("X", "y")])).unwrap();
    let Grant::Static(t) = &config.connectors[0].grant else { panic!() };
    assert_eq!(t.expose(), "from-a-file");
    assert_eq!(config.encryption_keys[0].key[1], 1);
}

#[test]
fn explain_usage_errors_exit_2() {
    let bin = env!("CARGO_BIN_EXE_tollgate");
    let no_args = Command::new(bin).arg("explain").output().unwrap();
    assert_eq!(no_args.status.code(), Some(2));
    let bad_pattern =
        Command::new(bin).args(["explain", "--allow", "https://*.com/*", "https://a.com/"]).output().unwrap();
    assert_eq!(bad_pattern.status.code(), Some(2));
    let allowed = Command::new(bin)
        .args(["explain", "--allow", "https://*.databricks.com/*", "https://ABC.databricks.com./x/../y?q=1"])
        .output()
        .unwrap();
    assert_eq!(allowed.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(json["url"], "https://abc.databricks.com/y?q=1");
    assert_eq!(json["pattern"], "https://*.databricks.com/*");
}
