//! The command line: `serve`, `check-config`, `explain`, `ca export` and `keys`. Exit codes:
//! 0 success, 1 an explained URL is blocked or rejected (or a store command failed), 2 usage
//! errors, 64 an invalid config.

pub mod keys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{load_file, Environment};

/// Exit status for a config that does not load.
pub const EXIT_BAD_CONFIG: u8 = 64;
/// Exit status for usage errors (as clap uses).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about = "Egress proxy for AI-agent tool traffic")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a config file without starting.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// The interception CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Encryption keys of the stored values: which key seals how many, and re-sealing them
    /// under the first key so an old one can be removed (Redis store).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Would this URL be allowed, and why? Prints one JSON object; no network.
    Explain {
        #[arg(long, value_name = "FILE", conflicts_with = "allow", required_unless_present = "allow")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "NAME", requires = "config")]
        connector: Option<String>,
        #[arg(long, value_name = "PATTERN")]
        allow: Vec<String>,
        #[arg(value_name = "URL")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Counts stored values by the key id they are sealed under (JSON).
    Status {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Re-seals every stored record under the first key in `encryption_keys`, online and
    /// resumable (rerun it after an interruption).
    Rewrap {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Records between progress lines.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the CA certificate (PEM) that runtimes must trust for CONNECT interception.
    Export {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// `ca export`: reads the CA from the configured token store (creating it if this is the
/// first start). The in-memory store's CA lives only inside a running Tollgate: fetch it
/// from `GET /ca.pem` on the admin listener instead.
pub async fn ca_export(file: &Path) -> ExitCode {
    let config = match load_file(file, &Environment::process()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: invalid configuration\n{e}", file.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Some((cert, _)) = &config.interception_ca {
        print!("{cert}");
        return ExitCode::SUCCESS;
    }
    if !matches!(config.store.backend, crate::config::StoreBackend::Redis(_)) {
        eprintln!("tollgate ca export: with the memory store each Tollgate generates its own CA; fetch it from GET /ca.pem on the admin listener");
        return ExitCode::from(1);
    }
    let result = async {
        let store = redis_store(&config)?;
        crate::live::ca::load_or_create(&store).await.map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(ca) => {
            print!("{}", ca.cert_pem());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate ca export: {e}");
            ExitCode::from(1)
        }
    }
}

/// The configured Redis store, for commands that work on it outside `serve`.
pub(crate) fn redis_store(config: &crate::config::Config) -> Result<crate::token::store::redis::RedisStore, String> {
    let crate::config::StoreBackend::Redis(url) = &config.store.backend else {
        return Err("the store is `memory`: nothing is kept between runs".into());
    };
    let sealer = crate::token::crypto::Sealer::new(&config.encryption_keys).map_err(|e| e.to_string())?;
    let metrics = crate::metrics::Metrics::new(std::iter::empty()).map_err(|e| e.to_string())?;
    crate::token::store::redis::RedisStore::open(url.expose(), &config.store, sealer, metrics)
        .map_err(|e| e.to_string())
}

/// Loads `file` for a command, or says why not (exit 64).
pub(crate) fn load_for(command: &str, file: &Path) -> Result<crate::config::Config, ExitCode> {
    load_file(file, &Environment::process()).map_err(|e| {
        eprintln!("tollgate {command}: {}: invalid configuration\n{e}", file.display());
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

/// Runs every command except `serve` (which needs the runtime) and returns the exit code.
pub fn check_config(file: &Path) -> ExitCode {
    match load_file(file, &Environment::process()) {
        Ok(config) => {
            println!(
                "{}: ok ({} connectors, {} allowed-domain patterns)",
                file.display(),
                config.connectors.len(),
                config.allow_list.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid configuration\n{e}", file.display());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

pub fn explain(config: Option<&Path>, connector: Option<&str>, allow: &[String], url: &str) -> ExitCode {
    let result = match config {
        Some(file) => match load_file(file, &Environment::process()) {
            Ok(config) => crate::explain::with_config(&config, connector, url),
            Err(e) => Err(format!("{}: invalid configuration\n{e}", file.display())),
        },
        None => crate::explain::with_patterns(allow, url),
    };
    match result {
        Ok(explanation) => {
            println!("{}", serde_json::to_string(&explanation).unwrap_or_default());
            if explanation.allowed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("tollgate explain: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
